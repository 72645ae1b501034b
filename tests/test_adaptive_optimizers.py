"""RMSprop, Adagrad, Adadelta, Adamax and Nadam, and gradient clipping on every optimizer.

- each ops update, a few steps in place, against its formula written out here in float64
  (and against torch.optim when torch is importable), with clip_value and grad_scale;
- global_norm_scale against min(1, c / ||g||) over every array;
- NetworkPlan steps of every new optimizer, with and without clipping, on every backend
  and dtype against the NumPy reference engine; the C engine the same bits on 1 and 2
  threads; clip_norm's update equal to the unclipped gradient scaled by hand;
- Adagrad's accumulator starting from initial_accumulator_value; every hyper-parameter
  and clipping option validated, with the argument named.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import fastmlp
from fastmlp import ops
from fastmlp.optimizers import get_optimizer

NEW = ["rmsprop", "adagrad", "adadelta", "adamax", "nadam"]
ALL = ["sgd", "momentum", "nesterov", "adam", "adamw", *NEW]
SHAPE = (5, 3)


def _mu(beta1, psi, t):
    return beta1 * (1 - 0.5 * 0.96 ** (t * psi))


def _reference(name, steps, p, grads, h):
    """The documented update in float64, step by step (t from 1)."""
    s1, s2 = np.full_like(p, h.get("initial", 0.0)), np.zeros_like(p)
    product = 1.0
    for t, g in enumerate(grads, start=1):
        if h.get("clip_value"):
            g = np.clip(g, -h["clip_value"], h["clip_value"])
        g = g * h.get("grad_scale", 1.0)
        lr, eps = h["lr"], h["eps"]
        if name == "rmsprop":
            s1 = h["rho"] * s1 + (1 - h["rho"]) * g**2
            p = p - lr * g / (np.sqrt(s1) + eps)
        elif name == "adagrad":
            s1 = s1 + g**2
            p = p - lr * g / (np.sqrt(s1) + eps)
        elif name == "adadelta":
            s1 = h["rho"] * s1 + (1 - h["rho"]) * g**2
            d = np.sqrt(s2 + eps) / np.sqrt(s1 + eps) * g
            s2 = h["rho"] * s2 + (1 - h["rho"]) * d**2
            p = p - lr * d
        elif name == "adamax":
            s1 = h["beta1"] * s1 + (1 - h["beta1"]) * g
            s2 = np.maximum(h["beta2"] * s2, np.abs(g) + eps)
            p = p - lr / (1 - h["beta1"] ** t) * s1 / s2
        else:  # nadam
            b1, b2, psi = h["beta1"], h["beta2"], h["momentum_decay"]
            mu_t, mu_next = _mu(b1, psi, t), _mu(b1, psi, t + 1)
            product *= mu_t
            s1 = b1 * s1 + (1 - b1) * g
            s2 = b2 * s2 + (1 - b2) * g**2
            m_hat = mu_next * s1 / (1 - product * mu_next) + (1 - mu_t) * g / (1 - product)
            p = p - lr * m_hat / (np.sqrt(s2 / (1 - b2**t)) + eps)
    return p, s1, s2


HYPER = {
    "rmsprop": {"lr": 0.01, "rho": 0.8, "eps": 1e-3},
    "adagrad": {"lr": 0.1, "eps": 1e-3, "initial": 0.1},
    "adadelta": {"lr": 0.5, "rho": 0.9, "eps": 1e-3},
    "adamax": {"lr": 0.01, "beta1": 0.8, "beta2": 0.9, "eps": 1e-3},
    "nadam": {"lr": 0.01, "beta1": 0.8, "beta2": 0.9, "eps": 1e-3, "momentum_decay": 0.3},
}


def _ops_step(name, p, s1, s2, g, t, h, **clip):
    if name == "rmsprop":
        return ops.rmsprop_update(p, g, s1, h["lr"], h["rho"], h["eps"], **clip)
    if name == "adagrad":
        return ops.adagrad_update(p, g, s1, h["lr"], h["eps"], **clip)
    if name == "adadelta":
        return ops.adadelta_update(p, g, s1, s2, h["lr"], h["rho"], h["eps"], **clip)
    if name == "adamax":
        return ops.adamax_update(p, g, s1, s2, t, h["lr"], h["beta1"], h["beta2"], h["eps"],
                                 **clip)
    return ops.nadam_update(p, g, s1, s2, t, h["lr"], h["beta1"], h["beta2"], h["eps"],
                            h["momentum_decay"], **clip)


@pytest.mark.parametrize("clip", [{}, {"clip_value": 0.5}, {"grad_scale": 0.25},
                                  {"clip_value": 0.5, "grad_scale": 0.25}],
                         ids=["plain", "clip_value", "grad_scale", "both"])
@pytest.mark.parametrize("name", NEW)
def test_update_matches_its_formula(backend, dtype, rng, name, clip):
    h = HYPER[name]
    p = rng.standard_normal(SHAPE).astype(dtype)
    s1 = np.full(SHAPE, h.get("initial", 0.0), dtype)
    s2 = np.zeros(SHAPE, dtype)
    grads = [rng.standard_normal(SHAPE).astype(dtype) for _ in range(4)]
    expected = _reference(name, 4, p.astype(np.float64), [g.astype(np.float64) for g in grads],
                          {**h, **clip})
    ids = id(p), id(s1), id(s2)
    for t, g in enumerate(grads, start=1):
        before = g.copy()
        assert _ops_step(name, p, s1, s2, g, t, h, **clip) is p
        np.testing.assert_array_equal(g, before)  # grad is never written
    assert (id(p), id(s1), id(s2)) == ids
    assert_close(p, expected[0], dtype)
    assert_close(s1, expected[1], dtype)
    if name in ("adadelta", "adamax", "nadam"):
        assert_close(s2, expected[2], dtype)
    if clip.get("clip_value"):  # the clipping bites: some gradient element is beyond it
        assert max(np.abs(g).max() for g in grads) > clip["clip_value"]


@pytest.mark.parametrize("name", NEW)
def test_update_matches_torch_optim(backend, name, rng):
    torch = pytest.importorskip("torch")
    # torch keeps its scalar state (step, Nadam's mu_product) in the default dtype
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _compare_with_torch(torch, name, rng)
    finally:
        torch.set_default_dtype(default)


def _compare_with_torch(torch, name, rng):
    h = HYPER[name]
    p = rng.standard_normal(SHAPE)
    grads = [rng.standard_normal(SHAPE) for _ in range(5)]
    tp = torch.tensor(p.copy(), dtype=torch.float64, requires_grad=True)
    make = {
        "rmsprop": lambda: torch.optim.RMSprop([tp], lr=h["lr"], alpha=h["rho"], eps=h["eps"]),
        "adagrad": lambda: torch.optim.Adagrad([tp], lr=h["lr"], eps=h["eps"],
                                               initial_accumulator_value=h["initial"]),
        "adadelta": lambda: torch.optim.Adadelta([tp], lr=h["lr"], rho=h["rho"], eps=h["eps"]),
        "adamax": lambda: torch.optim.Adamax([tp], lr=h["lr"], betas=(h["beta1"], h["beta2"]),
                                             eps=h["eps"]),
        "nadam": lambda: torch.optim.NAdam([tp], lr=h["lr"], betas=(h["beta1"], h["beta2"]),
                                           eps=h["eps"], momentum_decay=h["momentum_decay"]),
    }
    opt = make[name]()
    s1 = np.full(SHAPE, h.get("initial", 0.0))
    s2 = np.zeros(SHAPE)
    for t, g in enumerate(grads, start=1):
        tp.grad = torch.tensor(g)
        opt.step()
        _ops_step(name, p, s1, s2, g, t, h)
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_defaults_follow_the_documented_sources():
    assert get_optimizer("rmsprop").learning_rate == 1e-3
    assert get_optimizer("rmsprop").rho == 0.9
    adagrad = get_optimizer("adagrad")
    assert (adagrad.learning_rate, adagrad.eps, adagrad.initial_accumulator_value) == (
        1e-2, 1e-10, 0.0)
    adadelta = get_optimizer("adadelta")
    assert (adadelta.learning_rate, adadelta.rho, adadelta.eps) == (1.0, 0.95, 1e-6)
    assert get_optimizer("adamax").learning_rate == 2e-3
    nadam = get_optimizer("nadam")
    assert (nadam.learning_rate, nadam.momentum_decay) == (2e-3, 4e-3)
    assert [get_optimizer(n).n_states for n in NEW] == [1, 1, 2, 2, 2]


def test_global_norm_scale(rng):
    grads = [rng.standard_normal((4, 3)), rng.standard_normal(3).astype(np.float32)]
    norm = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
    assert ops.global_norm_scale(grads, norm / 4) == pytest.approx(0.25, rel=1e-12)
    assert ops.global_norm_scale(grads, norm * 2) == 1.0
    # the clip value in each array's dtype, as the kernels clip
    clipped = [np.clip(g, -g.dtype.type(0.3), g.dtype.type(0.3)).astype(np.float64)
               for g in grads]
    cnorm = np.sqrt(sum(float(np.sum(g**2)) for g in clipped))
    assert ops.global_norm_scale(grads, 0.1, clip_value=0.3) == pytest.approx(0.1 / cnorm,
                                                                               rel=1e-12)
    assert ops.global_norm_scale([np.array([np.nan, 1.0])], 0.1) == 1.0


# -- NetworkPlan --------------------------------------------------------------------------

CLIPS = {"none": {}, "value": {"clip_value": 0.02}, "norm": {"clip_norm": 0.05},
         "both": {"clip_value": 0.02, "clip_norm": 0.03}}


def _data(dtype, n=48, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, k, n)


def _trained(backend, name, clip, dtype, steps=4, n_threads=None, sizes=(6, 16, 3), X=None,
             y=None):
    if X is None:
        X, y = _data(dtype)
    plan = fastmlp.NetworkPlan(list(sizes), "tanh", optimizer=get_optimizer(name, **clip),
                               batch_size=len(X), dtype=dtype, seed=3, l2=1e-2,
                               backend=backend, n_threads=n_threads)
    losses = [plan.train_step(X, y) for _ in range(steps)]
    return plan, losses


@pytest.mark.parametrize("clip", list(CLIPS), ids=[f"clip={c}" for c in CLIPS])
@pytest.mark.parametrize("name", ALL)
def test_plan_steps_match_the_numpy_reference(backend, dtype, name, clip):
    if backend == "numpy" and clip == "both":
        pytest.skip("the reference itself")
    plan, losses = _trained(backend, name, CLIPS[clip], dtype)
    ref, ref_losses = _trained("numpy", name, CLIPS[clip], dtype)
    unclipped, _ = _trained("numpy", name, {}, dtype)
    tol = {"rtol": 1e-4, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(losses, ref_losses, **tol)
    np.testing.assert_allclose(plan.parameters, ref.parameters, **tol)
    for a, b in zip(plan.optimizer_state()["state1_W"], ref.optimizer_state()["state1_W"]):
        if a is not None:
            np.testing.assert_allclose(a, b, **tol)
    if clip != "none" and dtype == np.float64:
        # the clipping changes the training by far more than the tolerance (little for the
        # optimizers that a uniform scale leaves alone but for eps)
        assert np.max(np.abs(ref.parameters - unclipped.parameters)) > 1e-9


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_clip_norm_scales_every_gradient_by_one_factor(backend, dtype, name):
    """One step with clip_norm equals one step on the unclipped gradient (penalty included)
    times min(1, c / ||g||) over ALL arrays, computed here from loss_and_gradient."""
    X, y = _data(dtype)
    probe, _ = _trained("numpy", "sgd", {}, dtype, steps=0)
    _, g = probe.loss_and_gradient(X, y)
    g = g.astype(np.float64)
    c = 0.2 * np.linalg.norm(g)
    plan, _ = _trained(backend, name, {"clip_norm": c, "learning_rate": 0.1}, dtype, steps=1)
    p0 = probe.parameters.astype(np.float64)
    if name == "sgd":
        expected = p0 - 0.1 * 0.2 * g
    else:  # Adam's first step: m_hat = g', v_hat = g'^2
        gs = 0.2 * g
        expected = p0 - 0.1 * gs / (np.abs(gs) + 1e-8)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(plan.parameters, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", NEW + ["adamw"])
def test_c_steps_are_the_same_bits_on_one_and_two_threads(dtype, name):
    """784-100-10 at batch 100: the step runs in row blocks on the threads and its update
    in several slices (with clip_norm, two passes and the norm summed over the slices)."""
    if "c" not in fastmlp.available_backends():
        pytest.skip("no C backend")
    rng = np.random.default_rng(1)
    X = rng.standard_normal((100, 784)).astype(dtype)
    y = rng.integers(0, 10, 100)
    runs = []
    for n_threads in (1, 2):
        plan, losses = _trained("c", name, {"clip_norm": 0.5, "clip_value": 0.05}, dtype,
                                steps=3, n_threads=n_threads, sizes=(784, 100, 10), X=X, y=y)
        runs.append((losses, plan.parameters.copy()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_nadam_resumes_its_schedule_from_a_restored_state(backend, dtype):
    """The product mu_1 ... mu_t is a function of t: a plan given another's state at step
    t continues bit for bit."""
    X, y = _data(dtype)
    whole, _ = _trained(backend, "nadam", {}, dtype, steps=6)
    first, _ = _trained(backend, "nadam", {}, dtype, steps=3)
    second, _ = _trained(backend, "nadam", {}, dtype, steps=0)
    second.set_weights(first.weights)
    second.set_optimizer_state(first.optimizer_state())
    for _ in range(3):
        second.train_step(X, y)
    np.testing.assert_array_equal(second.parameters, whole.parameters)


def test_adagrad_state_starts_from_the_initial_accumulator(backend, dtype):
    opt = get_optimizer("adagrad", initial_accumulator_value=0.25)
    plan = fastmlp.NetworkPlan([4, 5, 2], "relu", optimizer=opt, dtype=dtype, backend=backend)
    for key in ("state1_W", "state1_b"):
        for a in plan.optimizer_state()[key]:
            np.testing.assert_array_equal(a, np.full_like(a, 0.25))
    assert all(a is None for a in plan.optimizer_state()["state2_W"])


@pytest.mark.parametrize("name", ["rmsprop", "nadam"])
def test_mlp_fit_with_batch_norm_uses_the_new_optimizers_and_clipping(backend, name):
    X, y = _data(np.float32, n=64)
    model = fastmlp.MLP((8,), batch_norm=True, seed=0)
    model.fit(X, y, epochs=3, batch_size=16, optimizer=name, clip_norm=0.5, clip_value=0.1,
              verbose=0)
    assert np.all(np.isfinite(model.history["loss"]))
    assert model.history["loss"][-1] < model.history["loss"][0]


# -- validation ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, options, argument", [
    ("rmsprop", {"rho": 1.0}, "rho"),
    ("adadelta", {"rho": -0.1}, "rho"),
    ("adagrad", {"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
    ("adagrad", {"eps": 0.0}, "eps"),
    ("adamax", {"beta2": 1.0}, "beta2"),
    ("nadam", {"momentum_decay": float("nan")}, "momentum_decay"),
    ("sgd", {"clip_value": 0.0}, "clip_value"),
    ("adam", {"clip_norm": -1.0}, "clip_norm"),
    ("nadam", {"clip_norm": float("inf")}, "clip_norm"),
])
def test_invalid_hyper_parameters_name_the_argument(name, options, argument):
    with pytest.raises(ValueError, match=argument):
        get_optimizer(name, **options)


def test_invalid_ops_arguments_name_the_argument():
    p, g, s = np.zeros(3), np.ones(3), np.zeros(3)
    with pytest.raises(ValueError, match="rho"):
        ops.rmsprop_update(p, g, s, rho=1.5)
    with pytest.raises(ValueError, match="step"):
        ops.nadam_update(p, g, s, np.zeros(3), 0)
    with pytest.raises(ValueError, match="clip_value"):
        ops.adagrad_update(p, g, s, clip_value=-1)
    with pytest.raises(ValueError, match="grad_scale"):
        ops.adamax_update(p, g, s, np.zeros(3), 1, grad_scale=0.0)
    with pytest.raises(ValueError, match="u: must not overlap v"):
        ops.adadelta_update(p, g, s, s)
    with pytest.raises(ValueError, match="grad: must not overlap param"):
        ops.sgd_update(p, p, 0.1)
    with pytest.raises(TypeError, match="clip_norm"):
        ops.global_norm_scale([g], "1")
