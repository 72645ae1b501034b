"""Fixtures of the one suite every backend runs: backend x dtype x memory layout.

- ``backend``: each name in fastmlp.available_backends(), active for the test through
  ``fastmlp.use_backend`` (so fastmlp.ops and new NetworkPlans use it);
- ``dtype``: float32 and float64; tolerances per dtype are in helpers.RTOL / helpers.ATOL;
- ``layout``: "C", "F" and "strided" inputs (see helpers.as_layout);
- ``rng``: a seeded generator, fresh per test.

test_backends.py fails when any of c, numba, numpy does not import, so a missing backend
cannot silently shrink the parametrisation.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import DTYPE_IDS, DTYPES, LAYOUTS

import fastmlp

AVAILABLE_BACKENDS = tuple(fastmlp.available_backends())


@pytest.fixture(params=AVAILABLE_BACKENDS, ids=lambda n: f"backend={n}")
def backend(request):
    """The backend's name; it is the active backend for the whole test."""
    with fastmlp.use_backend(request.param):
        yield request.param


@pytest.fixture(params=DTYPES, ids=DTYPE_IDS)
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture(params=LAYOUTS, ids=lambda s: f"layout={s}")
def layout(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


@pytest.fixture
def c_kernels():
    """The compiled extension module (for its gemm and small-gemm switch)."""
    from fastmlp.backends import _c_kernels

    return _c_kernels


@pytest.fixture(params=[0, 10**9], ids=["gemm=blas", "gemm=small"])
def gemm_path(request, c_kernels):
    """Force the C backend's gemm onto BLAS (threshold 0) or its built-in small kernel."""
    old = c_kernels.get_small_gemm_flops()
    c_kernels.set_small_gemm_flops(request.param)
    try:
        yield request.param
    finally:
        c_kernels.set_small_gemm_flops(old)


@pytest.fixture(params=["scalar", "baseline", "avx2", "avx512"], ids=lambda s: f"simd={s}")
def simd(request, c_kernels):
    """Each micro-kernel set of the C backend that this CPU can run (the others skip),
    selected for the test's duration, as FASTMLP_SIMD would select it."""
    if request.param not in c_kernels.simd_levels():
        pytest.skip(f"this CPU cannot run the {request.param} kernels")
    old = c_kernels.simd_level()
    c_kernels.select_simd(request.param)
    try:
        yield request.param
    finally:
        c_kernels.select_simd(old)


@pytest.fixture(scope="module")
def dask_client():
    """A distributed.Client on a LocalCluster of 2 single-threaded worker processes
    (loopback only), started for the module's tests and closed after them; the tests
    that take it are skipped when the `dask` extra is not installed."""
    pytest.importorskip("dask", reason="the 'dask' extra is not installed")
    distributed = pytest.importorskip("distributed",
                                      reason="the 'dask' extra is not installed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        yield client
