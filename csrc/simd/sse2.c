/* The micro-kernels for baseline x86-64 (SSE2, no FMA: a multiply and an add). */
#if defined(__x86_64__) && defined(__GNUC__)
#include <emmintrin.h>
#include <stdint.h>

#include "../fastmlp.h"
#include "simd.h"

#define MR 4
#define NV 3

/* SSE2 has no masked loads and stores: edge vectors go through a small buffer */
FM_MASKED_COPY(float, __m128, _mm_loadu_ps, _mm_storeu_ps, 4)
FM_MASKED_COPY(double, __m128d, _mm_loadu_pd, _mm_storeu_pd, 2)

static inline float fm_hsum128_ps(__m128 s)
{
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}
static inline double fm_hsum128_pd(__m128d s)
{
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

#define REAL float
#define VEC __m128
#define LANES 4
#define MASK int
#define V_ZERO() _mm_setzero_ps()
#define V_SET1(x) _mm_set1_ps(x)
#define V_LOAD(p) _mm_loadu_ps(p)
#define V_STORE(p, v) _mm_storeu_ps(p, v)
#define V_MASK(n) (n)
#define V_LOADM(p, m) fm_loadm_float(p, (unsigned)(m))
#define V_STOREM(p, m, v) fm_storem_float(p, (unsigned)(m), v)
#define V_FMA(a, b, c) _mm_add_ps(_mm_mul_ps(a, b), c)
#define V_ADD(a, b) _mm_add_ps(a, b)
#define V_MUL(a, b) _mm_mul_ps(a, b)
#define V_SUB(a, b) _mm_sub_ps(a, b)
#define V_GT(a, b) _mm_cmpgt_ps(a, b)
#define V_LE(a, b) _mm_cmple_ps(a, b)
#define V_NAN(a) _mm_cmpunord_ps(a, a)
#define V_SEL(c, t, f) _mm_or_ps(_mm_and_ps(c, t), _mm_andnot_ps(c, f))
#define V_HSUM(v) fm_hsum128_ps(v)
#define MG_NAME(x) fm_mg_f32_sse2_##x
#include "microgemm.inc"
#include "undef.h"

#define REAL double
#define VEC __m128d
#define LANES 2
#define MASK int
#define V_ZERO() _mm_setzero_pd()
#define V_SET1(x) _mm_set1_pd(x)
#define V_LOAD(p) _mm_loadu_pd(p)
#define V_STORE(p, v) _mm_storeu_pd(p, v)
#define V_MASK(n) (n)
#define V_LOADM(p, m) fm_loadm_double(p, (unsigned)(m))
#define V_STOREM(p, m, v) fm_storem_double(p, (unsigned)(m), v)
#define V_FMA(a, b, c) _mm_add_pd(_mm_mul_pd(a, b), c)
#define V_ADD(a, b) _mm_add_pd(a, b)
#define V_MUL(a, b) _mm_mul_pd(a, b)
#define V_SUB(a, b) _mm_sub_pd(a, b)
#define V_GT(a, b) _mm_cmpgt_pd(a, b)
#define V_LE(a, b) _mm_cmple_pd(a, b)
#define V_NAN(a) _mm_cmpunord_pd(a, a)
#define V_SEL(c, t, f) _mm_or_pd(_mm_and_pd(c, t), _mm_andnot_pd(c, f))
#define V_HSUM(v) fm_hsum128_pd(v)
#define MG_NAME(x) fm_mg_f64_sse2_##x
#include "microgemm.inc"
#include "undef.h"
#endif
