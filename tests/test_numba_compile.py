"""The Numba backend says once, on stderr, that it compiles, and only when it does.

Each test runs a fresh interpreter on its own NUMBA_CACHE_DIR: a cold cache compiles (the
message, exactly once however many kernels compile), the same directory then loads from
the cache (no message). The kernels used are the cheapest (the SGD and momentum updates):
a few seconds per interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

numba_backend = pytest.importorskip("fastmlp.backends.numba_backend")

MESSAGE = "fastmlp: compiling the Numba backend"

# two kernels, two compiles on a cold cache: one message
SCRIPT = """
import numpy as np
import fastmlp
from fastmlp import ops

with fastmlp.use_backend("numba"):
    p = np.ones(8, np.float32)
    ops.sgd_update(p, np.ones_like(p), 0.1)
    ops.momentum_update(p, np.ones_like(p), np.zeros_like(p), 0.1)
print("ok")
"""


def _run(cache_dir, **env):
    environ = {k: v for k, v in os.environ.items() if k != numba_backend.QUIET_ENV_VAR}
    environ.update(NUMBA_CACHE_DIR=str(cache_dir), **env)
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=environ, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    return result.stderr


def test_a_cold_cache_says_so_once_and_a_warm_one_says_nothing(tmp_path):
    cold = _run(tmp_path)
    assert cold.count(MESSAGE) == 1, cold
    line = next(line for line in cold.splitlines() if MESSAGE in line)
    assert "once" in line and str(tmp_path) in line  # where the cache is
    warm = _run(tmp_path)
    assert MESSAGE not in warm, warm


def test_the_environment_variable_silences_it(tmp_path):
    quiet = _run(tmp_path, **{numba_backend.QUIET_ENV_VAR: "1"})
    assert MESSAGE not in quiet, quiet
