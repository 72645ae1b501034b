/* Picks the micro-kernel set for the running CPU (see simd.h). */
#include "simd.h"

#include "../fastmlp.h"

static const char *const level_names[FM_SIMD_COUNT] = {"scalar", "baseline", "avx2",
                                                        "avx512"};

static const fm_simd_kernels kernel_sets[FM_SIMD_COUNT] = {
    {FM_SIMD_SCALAR, 0, 0},
#if defined(__x86_64__) && defined(__GNUC__)
    {FM_SIMD_BASELINE, fm_mg_f32_sse2_gemm, fm_mg_f64_sse2_gemm},
    {FM_SIMD_AVX2, fm_mg_f32_avx2_gemm, fm_mg_f64_avx2_gemm},
    {FM_SIMD_AVX512, fm_mg_f32_avx512_gemm, fm_mg_f64_avx512_gemm},
#else
    {FM_SIMD_SCALAR, 0, 0},
    {FM_SIMD_SCALAR, 0, 0},
    {FM_SIMD_SCALAR, 0, 0},
#endif
};

static const fm_simd_kernels *active;

int fm_simd_supported(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    /* __builtin_cpu_supports also checks that the OS saves the wider registers */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        return FM_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return FM_SIMD_AVX2;
    return FM_SIMD_BASELINE;
#else
    return FM_SIMD_SCALAR;
#endif
}

int fm_simd_select(int level)
{
    const int best = fm_simd_supported();
    if (level < 0 || level > best) level = best;
    __atomic_store_n(&active, &kernel_sets[level], __ATOMIC_RELEASE);
    return level;
}

int fm_simd_active(void)
{
    return fm_simd_kernels_active()->level;
}

const char *fm_simd_name(int level)
{
    return level >= 0 && level < FM_SIMD_COUNT ? level_names[level] : "unknown";
}

const fm_simd_kernels *fm_simd_kernels_active(void)
{
    const fm_simd_kernels *set = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
    if (set == 0) {
        fm_simd_select(-1);
        set = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
    }
    return set;
}
