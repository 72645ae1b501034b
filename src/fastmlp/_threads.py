"""How many threads a training step may use: one policy for every plan and model.

A plan's (or model's) own ``n_threads`` wins; otherwise the process default, which is, in
this order, what ``set_num_threads()`` set, ``FASTMLP_NUM_THREADS``, ``OMP_NUM_THREADS``,
or the CPUs this process may run on. The environment variables and the CPUs are read when
first needed and again after ``set_num_threads(None)``, not at every step (reading them
cost 2 us, a tenth of a small network's step). The C backend's results are the same for
any number of threads, so the default can use every core without changing anyone's
numbers.
"""

from __future__ import annotations

import numbers
import os

ENV_VARS = ("FASTMLP_NUM_THREADS", "OMP_NUM_THREADS")
_process_default = None  # set_num_threads()
_environment_default = None  # the variables / CPUs, once read


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: expected a positive integer or None, got {value!r}")
    return int(value)


def set_num_threads(n):
    """Set the process default thread count for steps and predictions.

    It applies to every plan, model and drop-in that does not name its own
    ``n_threads``. The C backend's results are the same bits for any count.

    Parameters
    ----------
    n : int or None
        A positive count, or None: back to the environment variables
        (``FASTMLP_NUM_THREADS``, ``OMP_NUM_THREADS``) or the CPUs available, read again.

    Raises
    ------
    ValueError
        For anything but a positive integer or None.
    """
    global _process_default, _environment_default
    _process_default = None if n is None else _positive(n, "n_threads")
    _environment_default = None


def available_cpus():
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def get_num_threads():
    """The process default thread count.

    What :func:`set_num_threads` set, else ``FASTMLP_NUM_THREADS``, else
    ``OMP_NUM_THREADS``, else the CPUs this process may run on (the variables and CPUs
    are read when first needed and again after ``set_num_threads(None)``).

    Returns
    -------
    int
        The count a step uses when its plan or model names none.
    """
    global _environment_default
    if _process_default is not None:
        return _process_default
    if _environment_default is None:
        _environment_default = _from_environment()
    return _environment_default


def _from_environment():
    for var in ENV_VARS:
        text = os.environ.get(var, "").strip()
        if text:
            try:
                return _positive(int(text), var)
            except ValueError:
                raise ValueError(f"{var}: expected a positive integer, got {text!r}") from None
    return available_cpus()


def resolve(n_threads):
    """The thread count for a plan's n_threads (None: the process default)."""
    return get_num_threads() if n_threads is None else _positive(n_threads, "n_threads")


def _register_with_threadpoolctl():
    """Let threadpoolctl see and cap fastmlp's pool (user_api "fastmlp"):
    ``threadpool_limits(1)`` and joblib's worker limits then hold fastmlp to their count."""
    try:
        import threadpoolctl
    except ImportError:
        return
    if not hasattr(threadpoolctl, "register"):  # threadpoolctl < 3.4
        return

    class FastmlpController(threadpoolctl.LibController):
        user_api = "fastmlp"
        internal_api = "fastmlp"
        filename_prefixes = ("_c_kernels",)

        def get_num_threads(self):
            return get_num_threads()

        def set_num_threads(self, num_threads):
            set_num_threads(max(1, int(num_threads)))

        def get_version(self):
            from fastmlp import __version__

            return __version__

    threadpoolctl.register(FastmlpController)
    # threadpoolctl finds a controller's library among those loaded when a limit is
    # entered: load it now (35 ms), or a limit entered before the first plan misses it
    try:
        import fastmlp.backends._c_kernels  # noqa: F401
    except ImportError:  # no compiled backend: nothing of ours to cap
        pass


_register_with_threadpoolctl()
