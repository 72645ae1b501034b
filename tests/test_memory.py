"""A training step allocates nothing that stays: the plan's buffers are made once."""

import tracemalloc

import numpy as np
import pytest

import fastmlp
from fastmlp.datasets import make_spiral


@pytest.mark.parametrize("backend", ["c"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_train_step_does_not_grow_memory(backend, dtype):
    X, y = make_spiral(100, 3, seed=0, dtype=dtype)
    plan = fastmlp.NetworkPlan(
        [2, 100, 3], "relu", optimizer="adam", batch_size=300, dtype=dtype, seed=0, backend=backend
    )
    for _ in range(50):  # warm up caches of the first calls
        plan.train_step(X, y)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(1000):
            plan.train_step(X, y)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    # One stray small object is noise; a leak of even 8 bytes a step would be 8000.
    assert grown < 2048, f"{grown} bytes grew over 1000 steps"


def test_workspace_bytes_counts_every_buffer():
    plan = fastmlp.NetworkPlan(
        [784, 100, 10], "sigmoid", optimizer="adam", batch_size=100, dtype=np.float32, seed=0
    )
    weights = 784 * 100 + 100 + 100 * 10 + 10
    padded = 784 * 100 + 112 + 1008 + 16  # each block's copy, in whole 64-byte lines
    activations = 100 * (100 + 10)
    # the C engine: a copy of the gradients per row block (threads), 16 at most
    blocks = getattr(type(plan._engine), "max_blocks", 0)
    expected = (
        4
        * (
            weights * 4 + blocks * padded  # W and b, their gradients, Adam's m, v; blocks
            + activations * 2  # A and dA
            + 100 * 784 + 100  # the gathered batch and its sample weights
        )
        + 8 * 100
    )  # int64 labels
    assert plan.workspace_bytes == expected
