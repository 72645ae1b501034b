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
    """The backend module called `name`, imported on first use (ImportError if it cannot)."""
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
    """The backends that import on this machine.

    Returns
    -------
    list of str
        Their names, in preference order (``"c"``, ``"numba"``, ``"numpy"``).
    """
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
    """The backend that :mod:`fastmlp.ops` and new plans use here and now.

    The block's :func:`use_backend` in this thread, else the process-wide choice:
    :func:`set_backend`'s, else ``FASTMLP_BACKEND``, else the first of ``"c"``,
    ``"numba"``, ``"numpy"`` that imports (with a warning, once, when the compiled
    backend does not).

    Returns
    -------
    str
        ``"c"``, ``"numba"`` or ``"numpy"``.
    """
    global _default
    name = _override.get()
    if name is not None:
        return name
    if _default is None:
        _default = _choose_default()
    return _default


def set_backend(name):
    """Make `name` the process-wide backend.

    It applies to :mod:`fastmlp.ops` calls and to plans and models built afterwards (a
    plan keeps the backend it was built on).

    Parameters
    ----------
    name : {"c", "numba", "numpy"}
        The backend; it must import on this machine.

    Raises
    ------
    ValueError
        For an unknown name.
    ImportError
        When that backend cannot be imported (the message says why).
    """
    global _default
    load(name)
    _default = name


@contextlib.contextmanager
def use_backend(name):
    """Run a block with `name` as the backend, in this thread (or asyncio task) only.

    Parameters
    ----------
    name : {"c", "numba", "numpy"}
        The backend; it must import on this machine.

    Yields
    ------
    module
        The backend's module (rarely needed: ``with use_backend("numpy"):``).

    Examples
    --------
    >>> import numpy as np
    >>> import fastmlp
    >>> with fastmlp.use_backend("numpy"):
    ...     A = fastmlp.ops.dense_forward(np.ones((2, 3)), np.ones((3, 4)), np.zeros(4))
    """
    load(name)
    token = _override.set(name)
    try:
        yield load(name)
    finally:
        _override.reset(token)


def active():
    """The active backend's module."""
    return load(get_backend())
