#include "ckernels.h"

#include <pthread.h>
#include <string.h>

/* CRC-32C (Castagnoli; reflected polynomial 0x82F63B78, initial value and final XOR all ones), the
 * checksum of iSCSI, ext4 metadata and btrfs. The running value follows zlib's crc32 convention:
 * start from 0, feed the pieces in order. */

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void make_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 8; t++) table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xFFu];
    }
}

/* Eight bytes per step through eight tables (slicing-by-8). */
uint32_t mrepo_crc32c_portable(uint32_t crc, const void *data, size_t n) {
    pthread_once(&table_once, make_table);
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= c;
        c = table[7][lo & 0xFF] ^ table[6][(lo >> 8) & 0xFF] ^ table[5][(lo >> 16) & 0xFF] ^ table[4][lo >> 24]
          ^ table[3][hi & 0xFF] ^ table[2][(hi >> 8) & 0xFF] ^ table[1][(hi >> 16) & 0xFF] ^ table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ table[0][(c ^ *p++) & 0xFF];
    return ~c;
}

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>

static int detect_sse42(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & (1u << 20)) != 0;
}

/* Three streams at once: the crc32 instruction takes three cycles and can start one per cycle, so
 * blocks of 3 × SEGMENT bytes are checksummed as three segments in step, then joined. Joining shifts
 * a state over SEGMENT zero bytes, a linear map on the 32 state bits, tabled byte by byte. */
enum { SEGMENT = 4096 };
static uint32_t shift_table[4][256];
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;

/* The raw state (no inversions) after SEGMENT zero bytes, from `state`. */
static uint32_t zeros_slow(uint32_t state) {
    for (int i = 0; i < SEGMENT; i++) state = (state >> 8) ^ table[0][state & 0xFF];
    return state;
}

static void make_shift_table(void) {
    pthread_once(&table_once, make_table);
    uint32_t basis[32];
    for (int i = 0; i < 32; i++) basis[i] = zeros_slow(1u << i);
    for (int k = 0; k < 4; k++) {
        for (uint32_t v = 0; v < 256; v++) {
            uint32_t r = 0;
            for (int bit = 0; bit < 8; bit++) {
                if (v & (1u << bit)) r ^= basis[8 * k + bit];
            }
            shift_table[k][v] = r;
        }
    }
}

static inline uint32_t shift_segment(uint32_t s) {
    return shift_table[0][s & 0xFF] ^ shift_table[1][(s >> 8) & 0xFF] ^ shift_table[2][(s >> 16) & 0xFF] ^ shift_table[3][s >> 24];
}

/* The processor's crc32 instruction, eight bytes at a time. */
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t c = ~crc;
    if (n >= 3 * SEGMENT) {
        pthread_once(&shift_once, make_shift_table);
        while (n >= 3 * SEGMENT) {
            uint64_t c1 = 0, c2 = 0;
            for (size_t i = 0; i < SEGMENT; i += 8) {
                uint64_t v0, v1, v2;
                memcpy(&v0, p + i, 8);
                memcpy(&v1, p + SEGMENT + i, 8);
                memcpy(&v2, p + 2 * SEGMENT + i, 8);
                c = _mm_crc32_u64(c, v0);
                c1 = _mm_crc32_u64(c1, v1);
                c2 = _mm_crc32_u64(c2, v2);
            }
            c = shift_segment(shift_segment((uint32_t)c) ^ (uint32_t)c1) ^ (uint32_t)c2;
            p += 3 * SEGMENT;
            n -= 3 * SEGMENT;
        }
    }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#else
static int detect_sse42(void) { return 0; }
static uint32_t crc32c_sse42(uint32_t crc, const void *data, size_t n) { return mrepo_crc32c_portable(crc, data, n); }
#endif

static volatile int has_sse42 = -1;

uint32_t mrepo_crc32c(uint32_t crc, const void *data, size_t n) {
    int v = has_sse42;
    if (v < 0) {
        v = detect_sse42();
        has_sse42 = v;
    }
    return v ? crc32c_sse42(crc, data, n) : mrepo_crc32c_portable(crc, data, n);
}
