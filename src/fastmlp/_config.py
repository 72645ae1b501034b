"""show_config(): what fastmlp runs on here, so a user can see why gemm is slow."""

from __future__ import annotations

import os
import platform

_VARIABLES = ("FASTMLP_BACKEND", "FASTMLP_SIMD", "FASTMLP_NUM_THREADS", "OPENBLAS_CORETYPE",
              "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def show_config(file=None):
    """Print the backend, the SIMD micro-kernel set in use, fastmlp's threads, the BLAS
    behind gemm, its kernels and threads, and the environment variables that change them.
    Returns the same facts as a dict."""
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
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                key = f"blas ({os.path.basename(pool['filepath'])})"
                info[key] = (
                    f"{pool.get('internal_api')} {pool.get('version')}, "
                    f"kernels {pool.get('architecture')}, {pool.get('num_threads')} threads"
                )
    except ImportError:
        info["blas"] = "install threadpoolctl to see the BLAS library and its kernels"
    for var in _VARIABLES:
        if var in os.environ:
            info[var] = os.environ[var]
    if os.environ.get("OPENBLAS_CORETYPE", "").lower() == "haswell":
        info["note"] = "OPENBLAS_CORETYPE=Haswell forces AVX2 kernels (about half of AVX-512 gemm speed)"
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:<{width}} : {value}", file=file)
    return info
