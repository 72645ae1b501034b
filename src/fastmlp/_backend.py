"""Which backend runs the kernels: "c" (compiled), "numba", or "numpy" (the reference).

The FASTMLP_BACKEND environment variable wins when set; otherwise the first of c,
numba, numpy that imports, with a warning (once) when the compiled backend is missing.
set_backend() changes the process-wide choice; use_backend() overrides it for a block
of code in the current thread (or asyncio task) only.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import threading
import warnings

from fastmlp.backends import BACKEND_API, BACKEND_MODULES

BACKENDS = tuple(BACKEND_MODULES)  # preference order
ENV_VAR = "FASTMLP_BACKEND"

_lock = threading.Lock()
_modules: dict = {}
_errors: dict = {}
_default = None
_override = contextvars.ContextVar("fastmlp_backend", default=None)


def load(name):
    """The backend module called `name`, imported on first use."""
    if name not in BACKEND_MODULES:
        raise ValueError(f"backend: unknown {name!r}; expected one of {list(BACKENDS)}")
    with _lock:
        if name not in _modules and name not in _errors:
            try:
                module = importlib.import_module(BACKEND_MODULES[name])
                missing = [a for a in BACKEND_API if not hasattr(module, a)]
                if missing:
                    raise ImportError(f"backend {name!r} lacks {missing}")
                _modules[name] = module
            except ImportError as exc:
                _errors[name] = exc
        if name in _errors:
            raise ImportError(f"fastmlp backend {name!r} is unavailable: {_errors[name]}")
        return _modules[name]


def available_backends():
    """Names of the backends that import on this machine, in preference order."""
    names = []
    for name in BACKENDS:
        try:
            load(name)
            names.append(name)
        except ImportError:
            pass
    return names


def _choose_default():
    requested = os.environ.get(ENV_VAR, "").strip().lower()
    if requested:
        if requested not in BACKEND_MODULES:
            raise ValueError(
                f"{ENV_VAR}={requested!r} is not a backend; expected one of {list(BACKENDS)}"
            )
        load(requested)  # raises with the reason when it cannot import
        return requested
    for name in BACKENDS:
        try:
            load(name)
        except ImportError as exc:
            first_error = _errors.get(BACKENDS[0], exc)
            continue
        if name != BACKENDS[0]:
            warnings.warn(
                f"fastmlp: the compiled backend is unavailable ({first_error}); "
                f"using the {name!r} backend",
                RuntimeWarning,
                stacklevel=3,
            )
        return name
    raise ImportError("fastmlp: no backend could be imported")


def get_backend():
    """The name of the backend that fastmlp.ops and new NetworkPlans use here and now."""
    global _default
    name = _override.get()
    if name is not None:
        return name
    if _default is None:
        _default = _choose_default()
    return _default


def set_backend(name):
    """Make `name` the process-wide backend (it must import)."""
    global _default
    load(name)
    _default = name


@contextlib.contextmanager
def use_backend(name):
    """Run a block with `name` as the backend, in this thread only."""
    load(name)
    token = _override.set(name)
    try:
        yield load(name)
    finally:
        _override.reset(token)


def active():
    """The active backend module."""
    return load(get_backend())
