/* The float64 instantiation of every templated kernel in kernels/. */
#define REAL double
#define FM_SFX f64
#define FM_BLAS_GEMM dgemm
#include "kernels/all.inc"
