"""Backend selection and the backend contract: one API, one set of signatures."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastmlp
from fastmlp.backends import BACKEND_API, BACKEND_MODULES

ALL_BACKENDS = ("c", "numba", "numpy")


def test_every_backend_is_available():
    # CI must exercise all three: a missing one would silently drop a third of the suite.
    assert fastmlp.available_backends() == list(ALL_BACKENDS)
    for name in ALL_BACKENDS:
        importlib.import_module(BACKEND_MODULES[name])


def test_default_backend_is_c(monkeypatch):
    monkeypatch.delenv("FASTMLP_BACKEND", raising=False)
    # the process-wide choice may have been made before this test; check the rule itself
    from fastmlp import _backend

    monkeypatch.setattr(_backend, "_default", None)
    assert fastmlp.get_backend() == "c"


@pytest.fixture
def restore_default():
    from fastmlp import _backend

    old = _backend._default
    yield
    _backend._default = old


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_set_backend_changes_the_process_wide_backend(name, restore_default):
    fastmlp.set_backend(name)
    assert fastmlp.get_backend() == name
    seen = []
    t = threading.Thread(target=lambda: seen.append(fastmlp.get_backend()))
    t.start()
    t.join()
    assert seen == [name]  # process-wide: other threads see it too


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_use_backend_changes_and_restores(name, restore_default):
    fastmlp.set_backend("c")
    with fastmlp.use_backend(name) as module:
        assert fastmlp.get_backend() == name
        assert module.NAME == name
        with fastmlp.use_backend("numpy"):
            assert fastmlp.get_backend() == "numpy"
        assert fastmlp.get_backend() == name
    assert fastmlp.get_backend() == "c"


def test_use_backend_restores_on_exception(restore_default):
    fastmlp.set_backend("c")
    with pytest.raises(KeyError), fastmlp.use_backend("numpy"):
        assert fastmlp.get_backend() == "numpy"
        raise KeyError("boom")
    assert fastmlp.get_backend() == "c"


def test_use_backend_does_not_leak_into_other_threads(restore_default):
    fastmlp.set_backend("c")
    entered, checked = threading.Event(), threading.Event()
    seen = {}

    def other():
        entered.wait(10)
        seen["other"] = fastmlp.get_backend()
        checked.set()

    t = threading.Thread(target=other)
    t.start()
    with fastmlp.use_backend("numpy"):
        entered.set()
        assert checked.wait(10)
        seen["self"] = fastmlp.get_backend()
    t.join()
    assert seen == {"other": "c", "self": "numpy"}


def test_use_backend_in_a_thread_does_not_change_the_main_thread(restore_default):
    fastmlp.set_backend("c")
    inside, release = threading.Event(), threading.Event()

    def worker():
        with fastmlp.use_backend("numba"):
            inside.set()
            release.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert inside.wait(10)
        assert fastmlp.get_backend() == "c"
    finally:
        release.set()
        t.join()


def test_ops_run_on_the_active_backend(monkeypatch):
    # fastmlp.ops must dispatch to the selected module, not a fixed one
    from fastmlp.backends import numpy_backend

    calls = []
    original = numpy_backend.softmax

    def spy(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(numpy_backend, "softmax", spy)
    with fastmlp.use_backend("numpy"):
        fastmlp.ops.softmax(np.zeros((2, 3)))
    with fastmlp.use_backend("c"):
        fastmlp.ops.softmax(np.zeros((2, 3)))
    assert len(calls) == 1


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_backend_module_has_the_whole_api(name):
    module = importlib.import_module(BACKEND_MODULES[name])
    missing = [attr for attr in BACKEND_API if not hasattr(module, attr)]
    assert not missing
    assert module.NAME == name


def _parameters(func):
    return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]


PUBLIC_FUNCTIONS = [a for a in BACKEND_API if a not in ("NAME", "Network")]
NETWORK_METHODS = ("configure", "train_step", "loss_gradient", "train_epoch", "forward")


@pytest.mark.parametrize("name", ["numba", "c"])
@pytest.mark.parametrize("function", PUBLIC_FUNCTIONS)
def test_signatures_match_the_reference(name, function):
    reference = importlib.import_module(BACKEND_MODULES["numpy"])
    module = importlib.import_module(BACKEND_MODULES[name])
    try:
        got = inspect.signature(getattr(module, function))
    except (TypeError, ValueError):
        pytest.skip(f"{name}.{function} exposes no signature (compiled without binding)")
    # names, kinds and defaults (a Cython function's annotations are C types: not compared)
    assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == _parameters(
        getattr(reference, function)
    )


@pytest.mark.parametrize("name", ["numba", "c"])
@pytest.mark.parametrize("method", NETWORK_METHODS)
def test_network_engine_methods_match_the_reference(name, method):
    reference = importlib.import_module(BACKEND_MODULES["numpy"]).Network
    engine = importlib.import_module(BACKEND_MODULES[name]).Network
    assert hasattr(engine, method)
    assert hasattr(engine, "step")
    try:
        got = _parameters(getattr(engine, method))
    except (TypeError, ValueError):
        pytest.skip(f"{name}.Network.{method} exposes no signature")
    assert got == _parameters(getattr(reference, method))


@pytest.mark.parametrize("value", ["scalar", "baseline", "avx2", "avx512", "sse9", ""])
def test_fastmlp_simd_variable_selects_the_kernel_set(value):
    """FASTMLP_SIMD picks the micro-kernel set at import (a fresh process); a set this CPU
    cannot run, or an unknown name, warns and falls back to the best set."""
    from fastmlp.backends import _c_kernels

    script = ("import warnings\n"
              "with warnings.catch_warnings(record=True) as w:\n"
              "    warnings.simplefilter('always')\n"
              "    import fastmlp  # loads the compiled backend (threadpoolctl must see it)\n"
              "    from fastmlp.backends import _c_kernels as c\n"
              "shown = fastmlp.show_config(file=open('/dev/null', 'w'))['simd kernels']\n"
              "print('RESULT', c.simd_level(), len(w), shown, sep='|')")
    env = dict(os.environ, FASTMLP_SIMD=value)
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    result = [line for line in res.stdout.splitlines() if line.startswith("RESULT|")]
    _, level, warned, shown = result[-1].split("|")
    best = _c_kernels.simd_levels()[-1]
    runnable = value in _c_kernels.simd_levels()
    assert level == (value if runnable else best)
    assert int(warned) == (0 if runnable or value == "" else 1)
    assert shown.startswith(level)
