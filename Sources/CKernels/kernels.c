#include "ckernels.h"

/* No contraction of a*b + c into one rounding where the source does not ask for it. */
#pragma STDC FP_CONTRACT OFF

#include <math.h>
#include <string.h>

/* Sign-magnitude float words to unsigned integers that order like the floats, and back; zigzag. */
static inline uint32_t ordered32(uint32_t u) { return u ^ ((0u - (u >> 31)) | 0x80000000u); }
static inline uint32_t unordered32(uint32_t o) { return o ^ (((o >> 31) - 1u) | 0x80000000u); }
static inline uint32_t zigzag32(uint32_t d) { return (d << 1) ^ (0u - (d >> 31)); }
static inline uint32_t unzigzag32(uint32_t z) { return (z >> 1) ^ (0u - (z & 1u)); }

static void ungroup_u32_plain(const uint32_t *restrict words, const uint32_t *restrict ref, const uint32_t *restrict positions,
                              uint32_t *restrict dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = unordered32(ordered32(ref[i]) + unzigzag32(words[positions[i]]));
}

void mrepo_group_u32(const uint32_t *restrict src, const uint32_t *restrict ref, const uint32_t *restrict positions,
                     uint32_t *restrict words, size_t n) {
    for (size_t i = 0; i < n; i++) words[positions[i]] = zigzag32(ordered32(src[i]) - ordered32(ref[i]));
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>

/* AVX2, and the OS saving the YMM registers. */
static int detect_avx2(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const unsigned int osxsave = 1u << 27, avx = 1u << 28;
    if ((c & (osxsave | avx)) != (osxsave | avx)) return 0;
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6u) != 6u) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b & (1u << 5)) != 0;
}

__attribute__((target("avx2")))
static void ungroup_u32_avx2(const uint32_t *restrict words, const uint32_t *restrict ref, const uint32_t *restrict positions,
                             uint32_t *restrict dst, size_t n) {
    const __m256i sign = _mm256_set1_epi32((int)0x80000000u), one = _mm256_set1_epi32(1), zero = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i p = _mm256_loadu_si256((const __m256i *)(positions + i));
        __m256i z = _mm256_i32gather_epi32((const int *)words, p, 4);
        __m256i r = _mm256_loadu_si256((const __m256i *)(ref + i));
        /* ordered(r) = r ^ ((0 - (r >> 31)) | sign) */
        __m256i o = _mm256_xor_si256(r, _mm256_or_si256(_mm256_srai_epi32(r, 31), sign));
        /* unzigzag(z) = (z >> 1) ^ (0 - (z & 1)) */
        __m256i d = _mm256_xor_si256(_mm256_srli_epi32(z, 1), _mm256_sub_epi32(zero, _mm256_and_si256(z, one)));
        __m256i s = _mm256_add_epi32(o, d);
        /* unordered(s) = s ^ (((s >> 31) - 1) | sign) */
        __m256i u = _mm256_xor_si256(s, _mm256_or_si256(_mm256_sub_epi32(_mm256_srli_epi32(s, 31), one), sign));
        _mm256_storeu_si256((__m256i *)(dst + i), u);
    }
    ungroup_u32_plain(words, ref + i, positions + i, dst + i, n - i);
}

/* FMA3 and AVX, and the OS saving the YMM registers (OSXSAVE, XCR0 bits 1 and 2). */
static int detect_fma(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const unsigned int fma = 1u << 12, osxsave = 1u << 27, avx = 1u << 28;
    if ((c & (fma | osxsave | avx)) != (fma | osxsave | avx)) return 0;
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6u) == 6u;
}

__attribute__((target("avx,fma")))
static void add_product_fma(float *restrict out, const float *restrict x, float w, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = __builtin_fmaf(x[i], w, out[i]);
}
#else
static int detect_avx2(void) { return 0; }
static void ungroup_u32_avx2(const uint32_t *restrict words, const uint32_t *restrict ref, const uint32_t *restrict positions,
                             uint32_t *restrict dst, size_t n) {
    ungroup_u32_plain(words, ref, positions, dst, n);
}
static int detect_fma(void) { return 0; }
static void add_product_fma(float *restrict out, const float *restrict x, float w, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = fmaf(x[i], w, out[i]);
}
#endif

static void add_product_soft(float *restrict out, const float *restrict x, float w, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = fmaf(x[i], w, out[i]);
}

/* -1 unknown, else the answer (a benign race: every thread computes the same value). */
static volatile int has_fma = -1;

int mrepo_has_hardware_fma(void) {
    int v = has_fma;
    if (v < 0) {
        v = detect_fma();
        has_fma = v;
    }
    return v;
}

void mrepo_add_product(float *out, const float *x, float w, size_t n) {
    if (mrepo_has_hardware_fma()) {
        add_product_fma(out, x, w, n);
    } else {
        add_product_soft(out, x, w, n);
    }
}

static volatile int has_avx2 = -1;

void mrepo_ungroup_u32(const uint32_t *words, const uint32_t *ref, const uint32_t *positions, uint32_t *dst, size_t n) {
    int v = has_avx2;
    if (v < 0) {
        v = detect_avx2();
        has_avx2 = v;
    }
    if (v) {
        ungroup_u32_avx2(words, ref, positions, dst, n);
    } else {
        ungroup_u32_plain(words, ref, positions, dst, n);
    }
}

/* Exponent grouping without positions (docs/format.md §5.4): the stable order by (bucket of
 * ref[i], i mod 4, i), bucket = (ref[i] >> shift) & mask. A counting sort: counts per (lane,
 * bucket) give each run's start; then, a block at a time, the residuals and buckets are computed
 * in straight (vectorised) loops and the words scattered (grouping) or gathered (ungrouping) in a
 * tight loop of their own: the arithmetic kept out of the loop whose stores and loads depend on
 * the counters. */
#define GROUP_BLOCK 1024

#define GROUPING_KERNELS(W, BITS)                                                                                   \
static inline W ordered_##W(W u) { return (W)(u ^ ((W)(0u - (u >> (BITS - 1))) | (W)((W)1 << (BITS - 1)))); }     \
static inline W unordered_##W(W o) { return (W)(o ^ ((W)((o >> (BITS - 1)) - 1u) | (W)((W)1 << (BITS - 1)))); }   \
static inline W zigzag_##W(W d) { return (W)((W)(d << 1) ^ (W)(0u - (d >> (BITS - 1)))); }                        \
static inline W unzigzag_##W(W z) { return (W)((z >> 1) ^ (W)(0u - (z & 1u))); }                                  \
                                                                                                                    \
/* next[lane * buckets + bucket]: where the run of (bucket, lane) starts. */                                        \
static void group_starts_##W(const W *restrict ref, size_t n, unsigned shift, unsigned mask, uint32_t *restrict next) { \
    const unsigned buckets = mask + 1;                                                                              \
    memset(next, 0, 4 * buckets * sizeof(uint32_t));                                                                \
    uint32_t *c0 = next, *c1 = next + buckets, *c2 = next + 2 * buckets, *c3 = next + 3 * buckets;                  \
    size_t i = 0;                                                                                                   \
    for (; i + 4 <= n; i += 4) {                                                                                    \
        c0[(ref[i] >> shift) & mask]++;                                                                             \
        c1[(ref[i + 1] >> shift) & mask]++;                                                                         \
        c2[(ref[i + 2] >> shift) & mask]++;                                                                         \
        c3[(ref[i + 3] >> shift) & mask]++;                                                                         \
    }                                                                                                               \
    for (; i < n; i++) next[(i & 3) * buckets + ((ref[i] >> shift) & mask)]++;                                      \
    uint32_t running = 0;                                                                                           \
    for (unsigned b = 0; b < buckets; b++) {                                                                        \
        for (unsigned lane = 0; lane < 4; lane++) {                                                                 \
            uint32_t count = next[lane * buckets + b];                                                              \
            next[lane * buckets + b] = running;                                                                     \
            running += count;                                                                                       \
        }                                                                                                           \
    }                                                                                                               \
}                                                                                                                   \
                                                                                                                    \
int mrepo_group_##W(const W *src, const W *ref, size_t n, unsigned shift, unsigned mask, W *words) {               \
    if (mask > 255) return 0;                                                                                       \
    uint32_t next[4 * 256];                                                                                         \
    group_starts_##W(ref, n, shift, mask, next);                                                                    \
    const unsigned buckets = mask + 1;                                                                              \
    uint32_t *c0 = next, *c1 = next + buckets, *c2 = next + 2 * buckets, *c3 = next + 3 * buckets;                  \
    W residual[GROUP_BLOCK];                                                                                        \
    uint8_t bucket[GROUP_BLOCK];                                                                                    \
    for (size_t start = 0; start < n; start += GROUP_BLOCK) {                                                       \
        const size_t m = n - start < GROUP_BLOCK ? n - start : GROUP_BLOCK;                                        \
        const W *restrict s = src + start, *restrict r = ref + start;                                               \
        for (size_t k = 0; k < m; k++) {                                                                            \
            residual[k] = zigzag_##W((W)(ordered_##W(s[k]) - ordered_##W(r[k])));                                  \
            bucket[k] = (uint8_t)((r[k] >> shift) & mask);                                                          \
        }                                                                                                           \
        /* start is a multiple of 4, so k's lane is the element's. */                                               \
        size_t k = 0;                                                                                               \
        for (; k + 4 <= m; k += 4) {                                                                                \
            words[c0[bucket[k]]++] = residual[k];                                                                   \
            words[c1[bucket[k + 1]]++] = residual[k + 1];                                                           \
            words[c2[bucket[k + 2]]++] = residual[k + 2];                                                           \
            words[c3[bucket[k + 3]]++] = residual[k + 3];                                                           \
        }                                                                                                           \
        for (; k < m; k++) words[next[(k & 3) * buckets + bucket[k]]++] = residual[k];                              \
    }                                                                                                               \
    return 1;                                                                                                       \
}                                                                                                                   \
                                                                                                                    \
int mrepo_ungroup_##W(const W *words, const W *ref, size_t n, unsigned shift, unsigned mask, W *dst) {             \
    if (mask > 255) return 0;                                                                                       \
    uint32_t next[4 * 256];                                                                                         \
    group_starts_##W(ref, n, shift, mask, next);                                                                    \
    const unsigned buckets = mask + 1;                                                                              \
    uint32_t *c0 = next, *c1 = next + buckets, *c2 = next + 2 * buckets, *c3 = next + 3 * buckets;                  \
    uint8_t bucket[GROUP_BLOCK];                                                                                    \
    for (size_t start = 0; start < n; start += GROUP_BLOCK) {                                                       \
        const size_t m = n - start < GROUP_BLOCK ? n - start : GROUP_BLOCK;                                        \
        const W *restrict r = ref + start;                                                                          \
        W *restrict d = dst + start;                                                                                \
        for (size_t k = 0; k < m; k++) bucket[k] = (uint8_t)((r[k] >> shift) & mask);                               \
        size_t k = 0;                                                                                               \
        for (; k + 4 <= m; k += 4) {                                                                                \
            d[k] = words[c0[bucket[k]]++];                                                                          \
            d[k + 1] = words[c1[bucket[k + 1]]++];                                                                  \
            d[k + 2] = words[c2[bucket[k + 2]]++];                                                                  \
            d[k + 3] = words[c3[bucket[k + 3]]++];                                                                  \
        }                                                                                                           \
        for (; k < m; k++) d[k] = words[next[(k & 3) * buckets + bucket[k]]++];                                     \
        for (k = 0; k < m; k++) d[k] = unordered_##W((W)(ordered_##W(r[k]) + unzigzag_##W(d[k])));                 \
    }                                                                                                               \
    return 1;                                                                                                       \
}

GROUPING_KERNELS(uint16_t, 16)
GROUPING_KERNELS(uint32_t, 32)
