/*
 * The instruction-set-specific micro-kernels and the table that picks one set of them.
 * Each set (sse2.c, avx2.c, avx512.c) is compiled with its own target flags; dispatch.c
 * checks the running CPU once and points fm_simd_kernels_active() at the best set it can
 * run (or a lower one that the caller asks for). The table is the C core's one piece of
 * global state: filled once, read-only afterwards.
 */
#ifndef FASTMLP_SIMD_H
#define FASTMLP_SIMD_H

#include <stdint.h>

/*
 * What a product does to its result before the one store, while it is in registers:
 * forward, C = act(C + bias) for act identity, relu or leaky_relu; backward, C = C * f'(gate)
 * (gate: the layer's saved outputs, m x n with row stride ld_gate) for gate_act identity,
 * relu, leaky_relu, sigmoid, tanh or elu, with the formulas of kernels/activation.inc.
 * FM_EPILOGUE_NONE in act or gate_act: that part is off.
 */
#define FM_EPILOGUE_NONE (-1)
typedef struct {
    const void *bias;
    int act;
    const void *gate;
    int64_t ld_gate;
    int gate_act;
    double alpha; /* leaky_relu / elu */
} fm_epilogue;

#define FM_MICROGEMM_ARGS(REAL)                                                        \
    int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, REAL alpha,             \
        const REAL *A, int64_t lda, const REAL *B, int64_t ldb, REAL beta, REAL *C,    \
        int64_t ldc, const fm_epilogue *ep

/* C = epilogue(alpha op(A) op(B) + beta C), ep may be NULL; returns 0 (nothing done) when
   it leaves the shape to the caller. */
typedef int (*fm_microgemm_f32_fn)(FM_MICROGEMM_ARGS(float));
typedef int (*fm_microgemm_f64_fn)(FM_MICROGEMM_ARGS(double));

typedef struct {
    int level;                      /* fm_simd_level */
    fm_microgemm_f32_fn gemm_f32;   /* NULL: the portable C loops of kernels/gemm.inc */
    fm_microgemm_f64_fn gemm_f64;
} fm_simd_kernels;

const fm_simd_kernels *fm_simd_kernels_active(void);

/* Loads and stores of the first n lanes through a small buffer: SSE2's masked access, and
   every instruction set's in the sanitizer build (ASan checks memcpy, not masked vector
   instructions). Defines fm_loadm_T(p, n) and fm_storem_T(p, n, v). */
#include <string.h>
#define FM_MASKED_COPY(T, VT, LOADU, STOREU, W)                                        \
    static inline VT fm_loadm_##T(const T *p, unsigned n)                              \
    {                                                                                  \
        T t[W] = {0};                                                                  \
        memcpy(t, p, n * sizeof(T));                                                   \
        return LOADU(t);                                                               \
    }                                                                                  \
    static inline void fm_storem_##T(T *p, unsigned n, VT v)                           \
    {                                                                                  \
        T t[W];                                                                        \
        STOREU(t, v);                                                                  \
        memcpy(p, t, n * sizeof(T));                                                   \
    }

#define FM_DECLARE_MICROGEMM(ISA)                                                      \
    int fm_mg_f32_##ISA##_gemm(FM_MICROGEMM_ARGS(float));                              \
    int fm_mg_f64_##ISA##_gemm(FM_MICROGEMM_ARGS(double));
FM_DECLARE_MICROGEMM(sse2)
FM_DECLARE_MICROGEMM(avx2)
FM_DECLARE_MICROGEMM(avx512)
#undef FM_DECLARE_MICROGEMM

#endif /* FASTMLP_SIMD_H */
