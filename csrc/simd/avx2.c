/* The micro-kernels for AVX2 + FMA: 16 registers, 6 x 2 vectors of accumulators. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <stdint.h>

#include "../fastmlp.h"
#include "simd.h"

#ifdef FM_SANITIZE /* ASan does not see masked vector accesses: checked copies instead */
FM_MASKED_COPY(float, __m256, _mm256_loadu_ps, _mm256_storeu_ps, 8)
FM_MASKED_COPY(double, __m256d, _mm256_loadu_pd, _mm256_storeu_pd, 4)
#endif

#define MR 6
#define NV 2

static inline float fm_hsum256_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}
static inline double fm_hsum256_pd(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

#define REAL float
#define VEC __m256
#define LANES 8
#define MASK __m256i
#define V_ZERO() _mm256_setzero_ps()
#define V_SET1(x) _mm256_set1_ps(x)
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, v) _mm256_storeu_ps(p, v)
#define V_MASK(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define V_LOADM(p, m) _mm256_maskload_ps(p, m)
#define V_STOREM(p, m, v) _mm256_maskstore_ps(p, m, v)
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_ADD(a, b) _mm256_add_ps(a, b)
#define V_MUL(a, b) _mm256_mul_ps(a, b)
#define V_SUB(a, b) _mm256_sub_ps(a, b)
#define V_GT(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define V_LE(a, b) _mm256_cmp_ps(a, b, _CMP_LE_OQ)
#define V_NAN(a) _mm256_cmp_ps(a, a, _CMP_UNORD_Q)
#define V_SEL(c, t, f) _mm256_blendv_ps(f, t, c)
#define V_HSUM(v) fm_hsum256_ps(v)
#ifdef FM_SANITIZE
#undef V_LOADM
#undef V_STOREM
#define V_LOADM(p, m) fm_loadm_float(p, (unsigned)__builtin_popcount(_mm256_movemask_ps(_mm256_castsi256_ps(m))))
#define V_STOREM(p, m, v) fm_storem_float(p, (unsigned)__builtin_popcount(_mm256_movemask_ps(_mm256_castsi256_ps(m))), v)
#endif
#define MG_NAME(x) fm_mg_f32_avx2_##x
#include "microgemm.inc"
#include "undef.h"

#define REAL double
#define VEC __m256d
#define LANES 4
#define MASK __m256i
#define V_ZERO() _mm256_setzero_pd()
#define V_SET1(x) _mm256_set1_pd(x)
#define V_LOAD(p) _mm256_loadu_pd(p)
#define V_STORE(p, v) _mm256_storeu_pd(p, v)
#define V_MASK(n) _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3))
#define V_LOADM(p, m) _mm256_maskload_pd(p, m)
#define V_STOREM(p, m, v) _mm256_maskstore_pd(p, m, v)
#define V_FMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define V_ADD(a, b) _mm256_add_pd(a, b)
#define V_MUL(a, b) _mm256_mul_pd(a, b)
#define V_SUB(a, b) _mm256_sub_pd(a, b)
#define V_GT(a, b) _mm256_cmp_pd(a, b, _CMP_GT_OQ)
#define V_LE(a, b) _mm256_cmp_pd(a, b, _CMP_LE_OQ)
#define V_NAN(a) _mm256_cmp_pd(a, a, _CMP_UNORD_Q)
#define V_SEL(c, t, f) _mm256_blendv_pd(f, t, c)
#define V_HSUM(v) fm_hsum256_pd(v)
#ifdef FM_SANITIZE
#undef V_LOADM
#undef V_STOREM
#define V_LOADM(p, m) fm_loadm_double(p, (unsigned)__builtin_popcount(_mm256_movemask_pd(_mm256_castsi256_pd(m))))
#define V_STOREM(p, m, v) fm_storem_double(p, (unsigned)__builtin_popcount(_mm256_movemask_pd(_mm256_castsi256_pd(m))), v)
#endif
#define MG_NAME(x) fm_mg_f64_avx2_##x
#include "microgemm.inc"
#include "undef.h"
#endif
