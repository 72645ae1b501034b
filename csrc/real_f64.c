/* The float64 instantiation of every templated kernel in kernels/. */
#define REAL double
#define FM_SFX f64
#define FM_BLAS_GEMM dgemm
#define FM_SIMD_GEMM gemm_f64
#include "kernels/all.inc"
