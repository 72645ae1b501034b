/* The float32 instantiation of every templated kernel in kernels/. */
#define REAL float
#define FM_SFX f32
#define FM_BLAS_GEMM sgemm
#define FM_SIMD_GEMM gemm_f32
#include "kernels/all.inc"
