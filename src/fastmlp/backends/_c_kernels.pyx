# cython: language_level=3, cdivision=True
# (boundscheck, wraparound and initializedcheck come from CMakeLists.txt: off in a release
# build, on with FASTMLP_SANITIZE. A directive in this header would override theirs.)
"""The "c" backend: the C core of csrc/ behind the backend API.

This layer only converts arrays to pointers, releases the GIL around each C call and
maps the returned status to an exception. Shapes, dtypes and label ranges were checked
by fastmlp._validation before anything reaches here; the typed memoryviews below still
refuse a wrong dtype or a non-contiguous array instead of misreading it.
"""
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from libc.stdint cimport int32_t, int64_t, uintptr_t

import numpy as np

from fastmlp.backends._c_kernels cimport *

NAME = "c"

ctypedef fused real:
    float
    double

cdef fm_blas BLAS


def _load_blas():
    """Take sgemm/dgemm from SciPy's exported BLAS (the same OpenBLAS NumPy's SciPy uses)."""
    from scipy.linalg import cython_blas
    capi = cython_blas.__pyx_capi__
    BLAS.sgemm = <fm_sgemm_fn>PyCapsule_GetPointer(capi["sgemm"], PyCapsule_GetName(capi["sgemm"]))
    BLAS.dgemm = <fm_dgemm_fn>PyCapsule_GetPointer(capi["dgemm"], PyCapsule_GetName(capi["dgemm"]))


_load_blas()


ctypedef int (*_get_threads_fn)() noexcept nogil
ctypedef void (*_set_threads_fn)(int) noexcept nogil


def _library_of(address):
    """The path of the shared library holding a function's address (dladdr); None where
    there is no dladdr."""
    import ctypes

    class DlInfo(ctypes.Structure):
        _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                    ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]

    try:
        info = DlInfo()
        if not ctypes.CDLL(None).dladdr(ctypes.c_void_p(address), ctypes.byref(info)):
            return None
    except (OSError, AttributeError):
        return None
    return info.fname.decode() if info.fname else None


def _openblas_threads():
    """(get_num_threads, set_num_threads) of the OpenBLAS behind SciPy's sgemm (looked up
    from cython_blas, whose dependencies include it), or None for another BLAS."""
    import ctypes

    path = _library_of(<uintptr_t>BLAS.sgemm)
    try:
        library = ctypes.CDLL(path) if path else None
    except OSError:
        library = None
    for prefix in ("scipy_openblas", "openblas"):
        try:
            return (getattr(library, prefix + "_get_num_threads"),
                    getattr(library, prefix + "_set_num_threads"))
        except AttributeError:
            continue
    return None


def blas_library():
    """The path of the BLAS library whose sgemm/dgemm fastmlp calls through SciPy's
    cython_blas: OpenBLAS's own file when found, else cython_blas's; None without dladdr."""
    import ctypes

    functions = _openblas_threads()
    if functions is not None:
        return _library_of(ctypes.cast(functions[0], ctypes.c_void_p).value)
    return _library_of(<uintptr_t>BLAS.sgemm)


def _find_blas_threads():
    """Install OpenBLAS's get/set_num_threads, so that a step running BLAS calls on
    fastmlp's threads can hold OpenBLAS to one thread meanwhile; returns the setter's name.
    Another BLAS, or no dladdr (not POSIX): left alone (None)."""
    import ctypes

    functions = _openblas_threads()
    if functions is None:
        return None
    get, set_ = functions
    BLAS.get_num_threads = <_get_threads_fn><uintptr_t>ctypes.cast(get, ctypes.c_void_p).value
    BLAS.set_num_threads = <_set_threads_fn><uintptr_t>ctypes.cast(set_, ctypes.c_void_p).value
    return set_.__name__


# the function that holds SciPy's BLAS to one thread in a tiled step (None: not found)
BLAS_THREADS_CONTROL = _find_blas_threads()


SIMD_LEVELS = tuple(fm_simd_name(i).decode() for i in range(4))  # lowest first
SIMD_ENV_VAR = "FASTMLP_SIMD"


def blas_single(bint enter):
    """Enter (True) or leave (False) a region that holds SciPy's OpenBLAS to one thread:
    the pool's depth-counted hold, which the steps on several blocks take too (another
    BLAS: nothing)."""
    fm_pool_blas_single(BLAS.get_num_threads, BLAS.set_num_threads, enter)


def pool_size():
    """Worker threads the C core's pool has started (besides the callers)."""
    return fm_pool_size()


def simd_levels():
    """The micro-kernel sets this CPU can run, lowest first ("scalar" is plain C loops)."""
    return SIMD_LEVELS[:fm_simd_supported() + 1]


def simd_level():
    """The name of the micro-kernel set in use."""
    return fm_simd_name(fm_simd_active()).decode()


def select_simd(name=None):
    """Use the micro-kernel set `name` (one of simd_levels()), or the best one for None.
    Process-wide; meant for tests and benchmarks (FASTMLP_SIMD sets it at import)."""
    if name is None:
        return fm_simd_name(fm_simd_select(-1)).decode()
    if name not in SIMD_LEVELS:
        raise ValueError(f"{SIMD_ENV_VAR}: unknown kernel set {name!r}; expected one of "
                         f"{list(SIMD_LEVELS)}")
    if name not in simd_levels():
        raise ValueError(f"{SIMD_ENV_VAR}: this CPU cannot run the {name!r} kernels; it "
                         f"supports {list(simd_levels())}")
    return fm_simd_name(fm_simd_select(SIMD_LEVELS.index(name))).decode()


def _select_simd_from_environment():
    import os
    import warnings

    name = os.environ.get(SIMD_ENV_VAR, "").strip().lower() or None
    try:
        select_simd(name)
    except ValueError as exc:
        warnings.warn(f"{exc}; using {select_simd(None)!r}", RuntimeWarning, stacklevel=3)


_select_simd_from_environment()


# Products of up to this many multiply-adds run on the micro-kernels, larger ones on
# OpenBLAS, per kernel set; measured with bench/gemm_crossover.py (1 thread, float32 and
# float64, the step shapes of bench/mlpbench.py): the AVX-512 kernels match or beat
# OpenBLAS's SkylakeX kernels up to the lecture's MNIST products (100x784x100) and a bit
# beyond; the plain C loops only win on tiny products.
SMALL_GEMM_FLOPS = {"scalar": 65536, "baseline": 65536, "avx2": 1 << 21, "avx512": 1 << 24}
# ... and a weight gradient (op(A) = A^T) counts 1/this of its multiply-adds (float32,
# float64): the AVX-512 float32 kernels beat OpenBLAS on it up to 784x512x1024 (mid's
# dW0: 0.92x its time) but not at 1024x2048x4096 (2x); in float64 they lose from 512^3.
TRANS_A_DISCOUNT = {"avx512": (32, 1)}
BLAS.small_gemm_flops = SMALL_GEMM_FLOPS[simd_level()]
BLAS.trans_a_discount[0], BLAS.trans_a_discount[1] = TRANS_A_DISCOUNT.get(simd_level(), (1, 1))


def set_small_gemm_flops(int64_t flops):
    """Products of at most `flops` multiply-adds use the built-in kernels, not BLAS."""
    if flops < 0:
        raise ValueError(f"flops: expected a non-negative integer, got {flops}")
    BLAS.small_gemm_flops = flops


def get_small_gemm_flops():
    return BLAS.small_gemm_flops


cdef int check(fm_status status) except -1:
    if status == FM_OK:
        return 0
    if status == FM_ELABEL:
        raise ValueError("y: class labels must lie in [0, n_classes)")
    raise ValueError("fastmlp C core rejected its arguments (a size or option out of range)")


def gemm(const real[:, ::1] A, const real[:, ::1] B, real[:, ::1] out, bint trans_a=False,
         bint trans_b=False, double alpha=1, double beta=0):
    """out = alpha op(A) @ op(B) + beta out (used by tests to check every gemm path)."""
    cdef int64_t m = out.shape[0], n = out.shape[1]
    cdef int64_t k = A.shape[0] if trans_a else A.shape[1]
    cdef fm_status st
    with nogil:
        if real is float:
            st = fm_gemm_f32(&BLAS, trans_a, trans_b, m, n, k, <float>alpha, &A[0, 0],
                             A.shape[1], &B[0, 0], B.shape[1], <float>beta, &out[0, 0], n)
        else:
            st = fm_gemm_f64(&BLAS, trans_a, trans_b, m, n, k, alpha, &A[0, 0], A.shape[1],
                             &B[0, 0], B.shape[1], beta, &out[0, 0], n)
    check(st)


def activation_forward(int act, double alpha, const real[:, ::1] Z, real[:, ::1] out):
    """out = f(Z)."""
    cdef fm_status st
    with nogil:
        if real is float:
            st = fm_activation_forward_f32(act, alpha, Z.shape[0], Z.shape[1], &Z[0, 0], NULL,
                                           &out[0, 0])
        else:
            st = fm_activation_forward_f64(act, alpha, Z.shape[0], Z.shape[1], &Z[0, 0], NULL,
                                           &out[0, 0])
    check(st)


def activation_backward(int act, double alpha, const real[:, ::1] dA, const real[:, ::1] A,
                        const real[:, ::1] Z, real[:, ::1] out):
    """out = dA * f'(.) from the saved output A, or the pre-activation Z (may be None for
    the activations that do not read it)."""
    cdef fm_status st
    cdef int64_t n = A.shape[0] * A.shape[1]
    cdef const real *z = NULL if Z is None else &Z[0, 0]
    with nogil:
        if real is float:
            st = fm_activation_backward_f32(act, alpha, n, &dA[0, 0], &A[0, 0], z, &out[0, 0])
        else:
            st = fm_activation_backward_f64(act, alpha, n, &dA[0, 0], &A[0, 0], z, &out[0, 0])
    check(st)


def maxout_forward(int64_t pieces, const real[:, ::1] Z, real[:, ::1] out):
    """out (rows x units) = the max of each unit's pieces, Z (rows x units pieces)."""
    cdef fm_status st
    with nogil:
        if real is float:
            st = fm_maxout_forward_f32(out.shape[0], out.shape[1], pieces, &Z[0, 0],
                                       &out[0, 0])
        else:
            st = fm_maxout_forward_f64(out.shape[0], out.shape[1], pieces, &Z[0, 0],
                                       &out[0, 0])
    check(st)


def maxout_backward(int64_t pieces, const real[:, ::1] dA, const real[:, ::1] Z,
                    real[:, ::1] out):
    """out (the shape of Z) = dA at each unit's winning piece, 0 at the others."""
    cdef fm_status st
    with nogil:
        if real is float:
            st = fm_maxout_backward_f32(dA.shape[0], dA.shape[1], pieces, &dA[0, 0], &Z[0, 0],
                                        &out[0, 0])
        else:
            st = fm_maxout_backward_f64(dA.shape[0], dA.shape[1], pieces, &dA[0, 0], &Z[0, 0],
                                        &out[0, 0])
    check(st)


def dense_forward(const real[:, ::1] X, const real[:, ::1] W, const real[::1] b, int act,
                  double alpha, real[:, ::1] out, real[:, ::1] Z):
    """out = f(X @ W + b); Z (None: not kept) = X @ W + b."""
    cdef fm_status st
    cdef real *z = NULL if Z is None else &Z[0, 0]
    with nogil:
        if real is float:
            st = fm_dense_forward_f32(&BLAS, X.shape[0], X.shape[1], W.shape[1], &X[0, 0],
                                      &W[0, 0], &b[0], act, alpha, &out[0, 0], z)
        else:
            st = fm_dense_forward_f64(&BLAS, X.shape[0], X.shape[1], W.shape[1], &X[0, 0],
                                      &W[0, 0], &b[0], act, alpha, &out[0, 0], z)
    check(st)


def dense_backward(const real[:, ::1] dA, const real[:, ::1] X, const real[:, ::1] W,
                   const real[:, ::1] A, const real[:, ::1] Z, int act, double alpha, double l2,
                   double l1, real[:, ::1] dZ, real[:, ::1] dX, real[:, ::1] dW, real[::1] db):
    """dZ = dA * f'(A) (f'(Z) where the activation needs it; Z may be None otherwise);
    dW = X.T @ dZ + penalty; db = dZ.sum(0); dX = dZ @ W.T (dX may be None)."""
    cdef fm_status st
    cdef real *dx = NULL if dX is None else &dX[0, 0]
    cdef const real *z = NULL if Z is None else &Z[0, 0]
    with nogil:
        if real is float:
            st = fm_dense_backward_f32(&BLAS, X.shape[0], X.shape[1], W.shape[1], &dA[0, 0],
                                       &X[0, 0], &W[0, 0], &A[0, 0], z, act, alpha, l2, l1,
                                       &dZ[0, 0], dx, &dW[0, 0], &db[0], NULL)
        else:
            st = fm_dense_backward_f64(&BLAS, X.shape[0], X.shape[1], W.shape[1], &dA[0, 0],
                                       &X[0, 0], &W[0, 0], &A[0, 0], z, act, alpha, l2, l1,
                                       &dZ[0, 0], dx, &dW[0, 0], &db[0], NULL)
    check(st)


def softmax(const real[:, ::1] Z, bint log, real[:, ::1] out):
    """out = softmax(Z) or log_softmax(Z) along rows."""
    cdef fm_status st
    with nogil:
        if real is float:
            st = fm_softmax_f32(Z.shape[0], Z.shape[1], &Z[0, 0], log, &out[0, 0])
        else:
            st = fm_softmax_f64(Z.shape[0], Z.shape[1], &Z[0, 0], log, &out[0, 0])
    check(st)


def softmax_cross_entropy(const real[:, ::1] Z, const int64_t[::1] y,
                          const real[::1] sample_weight, real[:, ::1] dZ):
    """Mean (weighted) softmax cross-entropy of Z on labels y; its gradient into dZ."""
    cdef fm_status st
    cdef double loss = 0
    cdef const real *w = NULL if sample_weight is None else &sample_weight[0]
    with nogil:
        if real is float:
            st = fm_softmax_cross_entropy_f32(Z.shape[0], Z.shape[1], &Z[0, 0], &y[0], w,
                                              &loss, &dZ[0, 0])
        else:
            st = fm_softmax_cross_entropy_f64(Z.shape[0], Z.shape[1], &Z[0, 0], &y[0], w,
                                              &loss, &dZ[0, 0])
    check(st)
    return loss


ctypedef fm_status (*_loss_f32)(int64_t, int64_t, const float*, const float*, double*,
                                float*) noexcept nogil
ctypedef fm_status (*_loss_f64)(int64_t, int64_t, const double*, const double*, double*,
                                double*) noexcept nogil


cdef double _elementwise_loss(_loss_f32 f32, _loss_f64 f64, const real[:, ::1] Z,
                              const real[:, ::1] Y, real[:, ::1] dZ) except? -1:
    """One of the losses with the signature (rows, cols, Z, Y, loss, dZ): its mean over
    the rows, and its gradient into dZ."""
    cdef fm_status st
    cdef double loss = 0
    with nogil:
        if real is float:
            st = f32(Z.shape[0], Z.shape[1], &Z[0, 0], &Y[0, 0], &loss, &dZ[0, 0])
        else:
            st = f64(Z.shape[0], Z.shape[1], &Z[0, 0], &Y[0, 0], &loss, &dZ[0, 0])
    check(st)
    return loss


def sigmoid_binary_cross_entropy(const real[:, ::1] Z, const real[:, ::1] Y, real[:, ::1] dZ):
    """Sigmoid BCE with logits Z on targets Y; its gradient into dZ."""
    return _elementwise_loss(fm_sigmoid_bce_f32, fm_sigmoid_bce_f64, Z, Y, dZ)


def poisson(const real[:, ::1] Z, const real[:, ::1] Y, real[:, ::1] dZ):
    """Half Poisson deviance of log-means Z on counts Y; its gradient into dZ."""
    return _elementwise_loss(fm_poisson_f32, fm_poisson_f64, Z, Y, dZ)


def absolute_error(const real[:, ::1] P, const real[:, ::1] Y, real[:, ::1] dP):
    """sum|P - Y| / rows; its (sub)gradient into dP."""
    return _elementwise_loss(fm_absolute_error_f32, fm_absolute_error_f64, P, Y, dP)


def huber(const real[:, ::1] P, const real[:, ::1] Y, real[:, ::1] dP):
    """The Huber loss (delta 1) of P against Y, a mean over rows; its gradient into dP."""
    return _elementwise_loss(fm_huber_f32, fm_huber_f64, P, Y, dP)


def mean_squared_error(const real[:, ::1] P, const real[:, ::1] Y, real[:, ::1] dP):
    """sum((P - Y)**2) / (2 rows); its gradient into dP."""
    return _elementwise_loss(fm_mse_f32, fm_mse_f64, P, Y, dP)


def multiclass_hinge(const real[:, ::1] Z, const int64_t[::1] y, const real[::1] sample_weight,
                     double margin, bint squared, real[:, ::1] dZ):
    """Mean (weighted) multiclass SVM loss of scores Z on labels y; its gradient into dZ."""
    cdef fm_status st
    cdef double loss = 0
    cdef const real *w = NULL if sample_weight is None else &sample_weight[0]
    with nogil:
        if real is float:
            st = fm_multiclass_hinge_f32(Z.shape[0], Z.shape[1], &Z[0, 0], &y[0], w, margin,
                                         squared, &loss, &dZ[0, 0])
        else:
            st = fm_multiclass_hinge_f64(Z.shape[0], Z.shape[1], &Z[0, 0], &y[0], w, margin,
                                         squared, &loss, &dZ[0, 0])
    check(st)
    return loss


ctypedef fm_status (*_weighted_loss_f32)(int64_t, int64_t, const float*, const float*,
                                         const float*, double*, float*) noexcept nogil
ctypedef fm_status (*_weighted_loss_f64)(int64_t, int64_t, const double*, const double*,
                                         const double*, double*, double*) noexcept nogil


cdef double _weighted_loss(_weighted_loss_f32 f32, _weighted_loss_f64 f64, const real[:, ::1] Z,
                           const real[:, ::1] Y, const real[::1] sample_weight,
                           real[:, ::1] dZ) except? -1:
    """One of the losses with the signature (rows, cols, Z, Y, sample_weight, loss, dZ): its
    (weighted) mean over the rows, and its gradient into dZ."""
    cdef fm_status st
    cdef double loss = 0
    cdef const real *w = NULL if sample_weight is None else &sample_weight[0]
    with nogil:
        if real is float:
            st = f32(Z.shape[0], Z.shape[1], &Z[0, 0], &Y[0, 0], w, &loss, &dZ[0, 0])
        else:
            st = f64(Z.shape[0], Z.shape[1], &Z[0, 0], &Y[0, 0], w, &loss, &dZ[0, 0])
    check(st)
    return loss


def categorical_cross_entropy(const real[:, ::1] Z, const real[:, ::1] T,
                              const real[::1] sample_weight, real[:, ::1] dZ):
    """Mean (weighted) cross-entropy of softmax(Z) on target rows T; its gradient into dZ."""
    return _weighted_loss(fm_categorical_cross_entropy_f32, fm_categorical_cross_entropy_f64,
                          Z, T, sample_weight, dZ)


def kl_divergence(const real[:, ::1] Z, const real[:, ::1] T, const real[::1] sample_weight,
                  real[:, ::1] dZ):
    """Mean (weighted) KL(T || softmax(Z)); its gradient into dZ."""
    return _weighted_loss(fm_kl_divergence_f32, fm_kl_divergence_f64, Z, T, sample_weight, dZ)


def log_cosh(const real[:, ::1] P, const real[:, ::1] Y, const real[::1] sample_weight,
             real[:, ::1] dP):
    """Mean (weighted) sum of log(cosh(P - Y)) over rows; its gradient into dP."""
    return _weighted_loss(fm_log_cosh_f32, fm_log_cosh_f64, P, Y, sample_weight, dP)


cdef fm_optimizer _optimizer(int kind, double lr, double momentum, double beta1, double beta2,
                             double eps, double weight_decay, double rho, double momentum_decay,
                             double clip_value, double clip_norm, double grad_scale):
    cdef fm_optimizer opt
    opt.kind = kind
    opt.learning_rate = lr
    opt.momentum = momentum
    opt.beta1 = beta1
    opt.beta2 = beta2
    opt.eps = eps
    opt.weight_decay = weight_decay
    opt.rho = rho
    opt.momentum_decay = momentum_decay
    opt.mu_product = -1  # Nadam's product of the schedule: computed from the step
    opt.clip_value = clip_value
    opt.clip_norm = clip_norm
    opt.grad_scale = grad_scale
    return opt


def all_finite(X, int n_threads=1):
    """Whether every element of the C-contiguous float array X is finite, checked on up to
    n_threads threads."""
    return _all_finite(X.reshape(-1), n_threads)


def _all_finite(const real[::1] flat, int n_threads):
    cdef int ok
    cdef int64_t n = flat.shape[0]
    if n == 0:
        return True
    with nogil:
        if real is float:
            ok = fm_all_finite_f32(n, &flat[0], n_threads)
        else:
            ok = fm_all_finite_f64(n, &flat[0], n_threads)
    return bool(ok)


def classification_counts(const real[:, ::1] Z, const int64_t[::1] y, int64_t k,
                          int64_t[:, ::1] confusion):
    """The confusion matrix of Z's first maxima against y into confusion; returns (rows
    whose label is among the k highest scores, rows with a NaN)."""
    cdef fm_status st
    cdef int64_t top_k = 0, nan_rows = 0
    cdef int64_t rows = Z.shape[0], cols = Z.shape[1]
    if y.shape[0] != rows or confusion.shape[0] != cols or confusion.shape[1] != cols:
        raise ValueError("classification_counts: mismatched shapes")
    with nogil:
        if real is float:
            st = fm_classification_counts_f32(rows, cols, &Z[0, 0] if rows else NULL,
                                              &y[0] if rows else NULL, k, &confusion[0, 0],
                                              &top_k, &nan_rows)
        else:
            st = fm_classification_counts_f64(rows, cols, &Z[0, 0] if rows else NULL,
                                              &y[0] if rows else NULL, k, &confusion[0, 0],
                                              &top_k, &nan_rows)
    check(st)
    return top_k, nan_rows


def log_loss(const real[:, ::1] Z, const int64_t[::1] y, const real[::1] sample_weight):
    """The mean (weighted) softmax cross-entropy of logits Z on labels y, its value alone."""
    cdef fm_status st
    cdef double loss = 0
    cdef const real *w = NULL if sample_weight is None else &sample_weight[0]
    if y.shape[0] != Z.shape[0] or (sample_weight is not None and
                                    sample_weight.shape[0] != Z.shape[0]):
        raise ValueError("log_loss: mismatched shapes")
    with nogil:
        if real is float:
            st = fm_log_loss_f32(Z.shape[0], Z.shape[1], &Z[0, 0], &y[0], w, &loss)
        else:
            st = fm_log_loss_f64(Z.shape[0], Z.shape[1], &Z[0, 0], &y[0], w, &loss)
    check(st)
    return loss


def regression_sums(const real[:, ::1] P, const real[:, ::1] Y, double[::1] ss_res,
                    double[::1] ss_tot):
    """Per output: sum (P - Y)^2 into ss_res and sum (Y - mean)^2 into ss_tot."""
    cdef fm_status st
    cdef int64_t rows = P.shape[0], cols = P.shape[1]
    if Y.shape[0] != rows or Y.shape[1] != cols or ss_res.shape[0] != cols or \
            ss_tot.shape[0] != cols:
        raise ValueError("regression_sums: mismatched shapes")
    with nogil:
        if real is float:
            st = fm_regression_sums_f32(rows, cols, &P[0, 0], &Y[0, 0], &ss_res[0],
                                        &ss_tot[0])
        else:
            st = fm_regression_sums_f64(rows, cols, &P[0, 0], &Y[0, 0], &ss_res[0],
                                        &ss_tot[0])
    check(st)


def optimizer_update(int kind, double lr, double momentum, double beta1, double beta2,
                     double eps, double weight_decay, double rho, double momentum_decay,
                     double clip_value, double grad_scale, int64_t step, real[::1] param,
                     const real[::1] grad, real[::1] state1, real[::1] state2, bint decay):
    """One fused in-place update of the flat parameter array `param` (see optimizer.inc):
    its gradient clipped into [-clip_value, clip_value] (0: not) and times grad_scale."""
    cdef fm_optimizer opt = _optimizer(kind, lr, momentum, beta1, beta2, eps, weight_decay,
                                       rho, momentum_decay, clip_value, 0, grad_scale)
    cdef real *s1 = NULL if state1 is None else &state1[0]
    cdef real *s2 = NULL if state2 is None else &state2[0]
    cdef fm_status st
    with nogil:
        if real is float:
            st = fm_optimizer_update_f32(&opt, step, param.shape[0], &param[0], &grad[0], s1,
                                         s2, decay)
        else:
            st = fm_optimizer_update_f64(&opt, step, param.shape[0], &param[0], &grad[0], s1,
                                         s2, decay)
    check(st)


cdef uintptr_t _address(object array) except? 0:
    if array is None:
        return 0
    return array.__array_interface__["data"][0]


cdef class Network:
    """The compiled engine of a NetworkPlan: pointers into the plan's NumPy buffers.

    The plan owns every array (weights, gradients, optimizer state, workspace); this
    object keeps them alive and hands their addresses to fm_network_* calls.
    """

    cdef fm_network net
    cdef bint is_f32
    cdef object _keep
    cdef object _nadam_schedule  # (beta1, momentum_decay) of net.nadam_product
    cdef tuple _widths  # the hidden layers' W columns (a forward work slot's row)
    checks_labels = True  # fm_softmax_cross_entropy rejects labels out of range
    # a step's batch runs in up to this many row blocks, each with its own gradient
    # buffers (the plan allocates them: "block_dW", "block_db")
    max_blocks = FM_MAX_BLOCKS
    max_layers = FM_MAX_LAYERS

    @staticmethod
    def block_stride(int64_t n):
        """Elements between two blocks' copies of an n-element gradient (whole lines)."""
        return FM_BLOCK_STRIDE(n)

    def __init__(self, plan):
        keep = []

        def table(arrays):
            addresses = np.array([_address(a) for a in arrays], dtype=np.uintp)
            keep.append(addresses)
            return addresses.__array_interface__["data"][0]

        sizes = np.ascontiguousarray(plan.layer_sizes, dtype=np.int64)
        activations = np.ascontiguousarray(plan._activation_codes, dtype=np.int32)
        alphas = np.ascontiguousarray(plan._activation_alphas, dtype=np.float64)
        keep += [sizes, activations, alphas, plan._buffers]
        if plan.dtype == np.float32:
            self.is_f32 = True
        elif plan.dtype == np.float64:
            self.is_f32 = False
        else:
            raise TypeError(f"dtype: expected float32 or float64, got {plan.dtype}")
        self.net.n_layers = len(plan.layer_sizes) - 1
        self._widths = tuple(W.shape[1] for W in plan._buffers["W"][:-1])
        self.net.sizes = <const int64_t *><uintptr_t>_address(sizes)
        self.net.activations = <const int32_t *><uintptr_t>_address(activations)
        self.net.alphas = <const double *><uintptr_t>_address(alphas)
        self.net.loss = plan._loss_code
        self.net.margin = plan.margin
        self.net.max_batch = plan.batch_size
        buffers = plan._buffers
        self.net.W = <void **><uintptr_t>table(buffers["W"])
        self.net.b = <void **><uintptr_t>table(buffers["b"])
        self.net.dW = <void **><uintptr_t>table(buffers["dW"])
        self.net.db = <void **><uintptr_t>table(buffers["db"])
        self.net.state1_W = <void **><uintptr_t>table(buffers["state1_W"])
        self.net.state1_b = <void **><uintptr_t>table(buffers["state1_b"])
        self.net.state2_W = <void **><uintptr_t>table(buffers["state2_W"])
        self.net.state2_b = <void **><uintptr_t>table(buffers["state2_b"])
        self.net.A = <void **><uintptr_t>table(buffers["A"])
        self.net.dA = <void **><uintptr_t>table(buffers["dA"])
        self.net.Z = <void **><uintptr_t>table(buffers["Z"])
        self.net.X_batch = <void *>_address(buffers["X_batch"])
        self.net.y_batch = <void *>_address(buffers["y_batch"])
        self.net.w_batch = <void *>_address(buffers["w_batch"])
        self.net.blas = &BLAS
        self.net.dropout = plan.dropout
        self.net.D = NULL if not plan.dropout else <void **><uintptr_t>table(buffers["D"])
        blocks = buffers.get("block_dW")
        self.net.max_blocks = 0 if blocks is None else blocks[0].shape[0]
        self.net.block_dW = NULL if blocks is None else <void **><uintptr_t>table(blocks)
        self.net.block_db = NULL if blocks is None else \
            <void **><uintptr_t>table(buffers["block_db"])
        self.net.n_threads = 1
        self._keep = keep
        self.configure(plan)

    def configure(self, plan):
        """Copy the plan's scalar settings (learning rate, penalties, activity penalties, step,
        dropout key) into the engine."""
        opt = plan.optimizer
        self.net.opt = _optimizer(opt.code, opt.learning_rate, opt.momentum, opt.beta1,
                                  opt.beta2, opt.eps, opt.weight_decay, opt.rho,
                                  opt.momentum_decay, opt.clip_value or 0, opt.clip_norm or 0,
                                  1)
        if (opt.beta1, opt.momentum_decay) != self._nadam_schedule:
            self.net.nadam_step = 0  # Nadam's cached product: recomputed from mu_1
            self._nadam_schedule = (opt.beta1, opt.momentum_decay)
        self.net.l2 = plan.l2
        self.net.l1 = plan.l1
        self.net.penalty_over_weight = plan.penalty == "per_sample"
        self.net.max_norm = plan.max_norm or 0
        self.net.activity_l2 = plan.activity_l2
        self.net.activity_l1 = plan.activity_l1
        self.net.step = plan.step
        self.net.dropout_key = plan._dropout_key

    def set_threads(self, int n):
        """Threads for the next steps (the results are the same for any)."""
        self.net.n_threads = n if n > 0 else 1

    @property
    def step(self):
        return self.net.step

    def train_step(self, X, y, w=None):
        """Forward, loss, backward and update on one batch (sample weights w, or None);
        returns the loss."""
        return self._step(X, y, w, True)

    def loss_gradient(self, X, y, w=None):
        """The batch's loss, and its gradients into the plan's dW and db, without an
        update."""
        return self._step(X, y, w, False)

    def _step(self, X, y, w, bint update):
        cdef const float[:, ::1] xf
        cdef const double[:, ::1] xd
        cdef const float[::1] wf
        cdef const double[::1] wd
        cdef const void *yp = _y_pointer(y)
        cdef int64_t rows = X.shape[0]
        cdef double loss = 0
        cdef fm_status st
        if self.is_f32:
            xf = X
            wf = w
            with nogil:
                if update:
                    st = fm_network_train_step_f32(&self.net, rows, &xf[0, 0], yp,
                                                   NULL if wf is None else &wf[0], &loss)
                else:
                    st = fm_network_loss_gradient_f32(&self.net, rows, &xf[0, 0], yp,
                                                      NULL if wf is None else &wf[0], &loss)
        else:
            xd = X
            wd = w
            with nogil:
                if update:
                    st = fm_network_train_step_f64(&self.net, rows, &xd[0, 0], yp,
                                                   NULL if wd is None else &wd[0], &loss)
                else:
                    st = fm_network_loss_gradient_f64(&self.net, rows, &xd[0, 0], yp,
                                                      NULL if wd is None else &wd[0], &loss)
        check(st)
        return loss

    def train_epoch(self, X, y, w, const int64_t[::1] order, int64_t batch_size,
                    double[::1] batch_losses, double[::1] metric_out=None):
        """One epoch over the rows `order` selects, in that order (None: every row as
        stored), in batches, with sample weights w (or None); returns the mean loss per
        row. metric_out (n_out,), if given, receives the running training metric
        (fm_output_metric)."""
        cdef const float[:, ::1] xf
        cdef const double[:, ::1] xd
        cdef const float[::1] wf
        cdef const double[::1] wd
        cdef const void *yp = _y_pointer(y)
        cdef int64_t rows = X.shape[0]
        cdef const int64_t *op = NULL if order is None else &order[0]
        cdef int64_t n_order = 0 if order is None else order.shape[0]
        cdef double *lp = NULL if batch_losses is None else &batch_losses[0]
        cdef double *mp = NULL
        cdef double loss = 0
        cdef fm_status st
        if metric_out is not None:
            if metric_out.shape[0] != self.net.sizes[self.net.n_layers]:
                raise ValueError(f"metric_out: expected {self.net.sizes[self.net.n_layers]} "
                                 f"elements, got {metric_out.shape[0]}")
            mp = &metric_out[0]
        if self.is_f32:
            xf = X
            wf = w
            with nogil:
                st = fm_network_train_epoch_f32(&self.net, rows, &xf[0, 0], yp,
                                                NULL if wf is None else &wf[0], op, n_order,
                                                batch_size, lp, &loss, mp)
        else:
            xd = X
            wd = w
            with nogil:
                st = fm_network_train_epoch_f64(&self.net, rows, &xd[0, 0], yp,
                                                NULL if wd is None else &wd[0], op, n_order,
                                                batch_size, lp, &loss, mp)
        check(st)
        return loss

    def forward(self, X, out, work_a, work_b, int64_t chunk_rows):
        """out = the network's output for X, chunk_rows rows at a time; work_a and work_b
        hold one or more slots of chunk_rows x (widest hidden layer), one per thread."""
        cdef const float[:, ::1] xf
        cdef const double[:, ::1] xd
        cdef float[:, ::1] of
        cdef double[:, ::1] od
        cdef float[::1] af, bf
        cdef double[::1] ad, bd
        cdef int64_t rows = X.shape[0]
        cdef fm_status st
        cdef int64_t slot = chunk_rows * max(self._widths, default=1)
        cdef int slots = min(work_a.shape[0], work_b.shape[0]) // slot
        if slots < 1:
            raise ValueError(f"work: expected at least {slot} elements per buffer")
        if self.is_f32:
            xf, of, af, bf = X, out, work_a, work_b
            with nogil:
                st = fm_network_forward_f32(&self.net, rows, &xf[0, 0], &of[0, 0], &af[0],
                                            &bf[0], chunk_rows, slots)
        else:
            xd, od, ad, bd = X, out, work_a, work_b
            with nogil:
                st = fm_network_forward_f64(&self.net, rows, &xd[0, 0], &od[0, 0], &ad[0],
                                            &bd[0], chunk_rows, slots)
        check(st)


cdef const void *_y_pointer(object y) except NULL:
    """Address of labels (int64) or targets (the plan's dtype), both C-contiguous."""
    if not y.flags.c_contiguous:
        raise ValueError("y: expected a C-contiguous array")
    cdef const unsigned char[::1] raw = y.reshape(-1).view(np.uint8)
    return <const void *>&raw[0]
