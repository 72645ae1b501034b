"""How many threads a training step may use: one policy for every plan and model.

A plan's (or model's) own ``n_threads`` wins. Otherwise a call made in a task that joblib
runs on one of its worker threads (the threading backend, or a Parallel nested in a
worker) uses 1 thread, and holds the BLAS behind SciPy to 1 thread while it runs: its
sibling tasks share the process's cores, so the search is the parallelism. Process
workers need no rule of ours: joblib's loky workers and Dask's nannies start them with
``OMP_NUM_THREADS`` (and ``OPENBLAS_NUM_THREADS``) set for their share of the cores.
Elsewhere the process default applies, which is, in this order, what
``set_num_threads()`` set, ``FASTMLP_NUM_THREADS``, ``OMP_NUM_THREADS``, or the CPUs this
process may run on. The environment variables and the CPUs are read when first needed and
again after ``set_num_threads(None)``, not at every step (reading them cost 2 us, a tenth
of a small network's step). The C backend's results are the same for any number of
threads, so the default can use every core without changing anyone's numbers.
"""

from __future__ import annotations

import numbers
import os
import sys
import threading

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
    ``n_threads``, except in tasks that joblib runs on worker threads (they use 1). The
    C backend's results are the same bits for any count.

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
        The count a step uses when its plan or model names none, except in a task that
        joblib runs on a worker thread (a threading-backend search), where such a step
        uses 1.
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


def in_joblib_worker_thread():
    """True in a task that joblib runs on a worker thread of this process.

    joblib marks the tasks it runs on its workers with a nested backend (nesting level 1
    or more); a task on a thread other than the main one shares the process with its
    siblings (a loky worker runs its tasks on its main thread, in a process of its own).
    Main-thread calls cost a thread check; others one joblib lookup (about 2 us).
    """
    if threading.current_thread() is threading.main_thread():
        return False
    parallel = sys.modules.get("joblib.parallel")  # no joblib imported: no joblib task
    if parallel is None:
        return False
    backend, _ = parallel.get_active_backend()
    return bool(getattr(backend, "nesting_level", 0))


def resolve(n_threads):
    """The thread count for a plan's n_threads (None: 1 in a joblib worker thread, else
    the process default)."""
    return call_threads(n_threads)[0]


def call_threads(n_threads):
    """(threads, hold_blas) for one call of a plan whose n_threads is n_threads:
    hold_blas says whether to hold the BLAS to one thread during the call (in a joblib
    worker thread, see the module's docstring)."""
    shared = in_joblib_worker_thread()
    if n_threads is not None:
        return _positive(n_threads, "n_threads"), shared
    return (1 if shared else get_num_threads()), shared


_blas_single = []  # the C core's BLAS hold, once looked up ([None]: no compiled backend)


def hold_blas(enter):
    """Enter (True) or leave (False) a region that holds the BLAS behind SciPy (OpenBLAS)
    to one thread; the first region in saves its count, the last one out restores it, so
    overlapping regions in several threads are safe (threadpoolctl's limits, which each
    restore what they saw, are not). Nothing without the compiled backend."""
    if not _blas_single:
        try:
            from fastmlp.backends._c_kernels import blas_single
        except ImportError:
            blas_single = None
        _blas_single.append(blas_single)
    if _blas_single[0] is not None:
        _blas_single[0](enter)


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
