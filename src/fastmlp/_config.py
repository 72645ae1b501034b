"""show_config(): what fastmlp runs on here, so a user can see why gemm is slow."""

from __future__ import annotations

import os
import platform

# what changes fastmlp's speed from outside, and how (shown set or not)
_VARIABLES = {
    "FASTMLP_BACKEND": "the default backend: c, numba or numpy",
    "FASTMLP_SIMD": "cap the micro-kernels: scalar, baseline, avx2 or avx512",
    "FASTMLP_NUM_THREADS": "threads per training step and large prediction",
    "FASTMLP_NUMBA_QUIET": "1: no message when the Numba backend compiles",
    "NUMBA_CACHE_DIR": "where Numba caches the compiled kernels",
    "OPENBLAS_CORETYPE": "OpenBLAS's kernels (e.g. Haswell forces AVX2 on an AVX-512 CPU)",
    "OPENBLAS_NUM_THREADS": "OpenBLAS's threads (read when the library loads)",
    "OMP_NUM_THREADS": "OpenBLAS's threads when OPENBLAS_NUM_THREADS is unset",
    "MKL_NUM_THREADS": "MKL's threads, for a NumPy or SciPy built on MKL",
}


def show_config(file=None):
    """Print what fastmlp runs on here, and return it.

    The backend, the SIMD micro-kernel set in use, fastmlp's threads, the BLAS behind
    gemm, its kernels and threads, and the environment variables that change them.
    ``python -m fastmlp config`` prints the same.

    Parameters
    ----------
    file : file-like, optional
        Where to print (default: sys.stdout).

    Returns
    -------
    dict of str to str
        The same facts, by name.
    """
    from fastmlp import _backend, _threads

    info = {
        "fastmlp backend": _backend.get_backend(),
        "available backends": ", ".join(_backend.available_backends()),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
    }
    try:
        from fastmlp.backends import _c_kernels

        info["simd kernels"] = (f"{_c_kernels.simd_level()} (this CPU: "
                                f"{', '.join(_c_kernels.simd_levels())})")
        info["threads"] = (f"{_threads.get_num_threads()} per step by default "
                           f"({_threads.available_cpus()} CPUs available; pool: "
                           f"{_c_kernels.pool_size()} worker threads started)")
    except ImportError:
        info["simd kernels"] = "n/a (the compiled backend does not import)"
    gemm = _gemm_library()
    gemm = gemm and os.path.realpath(gemm)
    info["gemm calls"] = (f"{gemm} (through SciPy's cython_blas; large products; small "
                          "ones run on fastmlp's micro-kernels)" if gemm else
                          "SciPy's cython_blas (its library not found here)")
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                mine = gemm and os.path.realpath(pool["filepath"]) == os.path.realpath(gemm)
                key = f"blas ({os.path.basename(pool['filepath'])})"
                info[key] = (
                    f"{pool.get('internal_api')} {pool.get('version')}, "
                    f"kernels {pool.get('architecture')}, {pool.get('num_threads')} threads"
                    + ("  <- fastmlp's gemm" if mine else "  (NumPy's or another's)")
                )
    except ImportError:
        info["blas"] = "install threadpoolctl to see the BLAS library and its kernels"
    for var, effect in _VARIABLES.items():
        info[var] = f"{os.environ.get(var, '(unset)')}  -- {effect}"
    if os.environ.get("OPENBLAS_CORETYPE", "").lower() == "haswell":
        info["note"] = "OPENBLAS_CORETYPE=Haswell forces AVX2 kernels (about half of AVX-512 gemm speed)"
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:<{width}} : {value}", file=file)
    return info


def _gemm_library():
    try:
        from fastmlp.backends import _c_kernels
    except ImportError:
        return None
    return _c_kernels.blas_library()
