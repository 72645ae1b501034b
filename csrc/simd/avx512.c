/* The micro-kernels for AVX-512 (F, VL, DQ): 32 registers, lane masks for the edges. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <stdint.h>

#include "../fastmlp.h"
#include "simd.h"

#ifdef FM_SANITIZE /* ASan does not see masked vector accesses: checked copies instead */
FM_MASKED_COPY(float, __m512, _mm512_loadu_ps, _mm512_storeu_ps, 16)
FM_MASKED_COPY(double, __m512d, _mm512_loadu_pd, _mm512_storeu_pd, 8)
#endif

#define MR 8
#define NV 3

#define REAL float
#define VEC __m512
#define LANES 16
#define MASK __mmask16
#define V_ZERO() _mm512_setzero_ps()
#define V_SET1(x) _mm512_set1_ps(x)
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, v) _mm512_storeu_ps(p, v)
#define V_MASK(n) ((__mmask16)((1u << (n)) - 1u))
#define V_LOADM(p, m) _mm512_maskz_loadu_ps(m, p)
#define V_STOREM(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_ADD(a, b) _mm512_add_ps(a, b)
#define V_MUL(a, b) _mm512_mul_ps(a, b)
#define V_SUB(a, b) _mm512_sub_ps(a, b)
#define V_GT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define V_LE(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ)
#define V_NAN(a) _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q)
#define V_SEL(c, t, f) _mm512_mask_blend_ps(c, f, t)
#define V_HSUM(v) _mm512_reduce_add_ps(v)
#ifdef FM_SANITIZE
#undef V_LOADM
#undef V_STOREM
#define V_LOADM(p, m) fm_loadm_float(p, (unsigned)__builtin_popcount(m))
#define V_STOREM(p, m, v) fm_storem_float(p, (unsigned)__builtin_popcount(m), v)
#endif
#define MG_NAME(x) fm_mg_f32_avx512_##x
#include "microgemm.inc"
#include "undef.h"

#define REAL double
#define VEC __m512d
#define LANES 8
#define MASK __mmask8
#define V_ZERO() _mm512_setzero_pd()
#define V_SET1(x) _mm512_set1_pd(x)
#define V_LOAD(p) _mm512_loadu_pd(p)
#define V_STORE(p, v) _mm512_storeu_pd(p, v)
#define V_MASK(n) ((__mmask8)((1u << (n)) - 1u))
#define V_LOADM(p, m) _mm512_maskz_loadu_pd(m, p)
#define V_STOREM(p, m, v) _mm512_mask_storeu_pd(p, m, v)
#define V_FMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#define V_ADD(a, b) _mm512_add_pd(a, b)
#define V_MUL(a, b) _mm512_mul_pd(a, b)
#define V_SUB(a, b) _mm512_sub_pd(a, b)
#define V_GT(a, b) _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ)
#define V_LE(a, b) _mm512_cmp_pd_mask(a, b, _CMP_LE_OQ)
#define V_NAN(a) _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q)
#define V_SEL(c, t, f) _mm512_mask_blend_pd(c, f, t)
#define V_HSUM(v) _mm512_reduce_add_pd(v)
#ifdef FM_SANITIZE
#undef V_LOADM
#undef V_STOREM
#define V_LOADM(p, m) fm_loadm_double(p, (unsigned)__builtin_popcount(m))
#define V_STOREM(p, m, v) fm_storem_double(p, (unsigned)__builtin_popcount(m), v)
#endif
#define MG_NAME(x) fm_mg_f64_avx512_##x
#include "microgemm.inc"
#include "undef.h"
#endif
