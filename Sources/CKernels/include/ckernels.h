/* Element-wise loops that need instructions Swift cannot ask for per function (fused
 * multiply-add), chosen at run time by what the processor offers. Results are the same bits
 * either way: fmaf rounds once, in hardware or in software. */
#ifndef MREPO_CKERNELS_H
#define MREPO_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

/* out[i] = fmaf(x[i], w, out[i]) for i < n. */
void mrepo_add_product(float *out, const float *x, float w, size_t n);

/* Whether mrepo_add_product uses the processor's FMA instructions. */
int mrepo_has_hardware_fma(void);

/* The exponent-grouped delta of 32-bit float words (ChunkCodec's integerDeltaByExponent), with the
 * grouped order given as each element's position:
 *   ungroup: dst[i] = unordered(ordered(ref[i]) + unzigzag(words[positions[i]]))
 *   group:   words[positions[i]] = zigzag(ordered(src[i]) - ordered(ref[i]))
 * Integer arithmetic only: every code path gives the same bits. */
void mrepo_ungroup_u32(const uint32_t *words, const uint32_t *ref, const uint32_t *positions, uint32_t *dst, size_t n);
void mrepo_group_u32(const uint32_t *src, const uint32_t *ref, const uint32_t *positions, uint32_t *words, size_t n);

/* The same grouping without positions, by counting (the order of docs/format.md §5.4: stable by
 * (bucket, i mod 4), bucket = (ref[i] >> shift) & mask):
 *   group:   words[k] = zigzag(ordered(src[i]) - ordered(ref[i])) for the i at grouped place k
 *   ungroup: the inverse, into dst
 * words and dst must not overlap the other arguments. Return 0, doing nothing, when mask > 255
 * (the caller's generic code then runs); 1 otherwise. */
int mrepo_group_uint16_t(const uint16_t *src, const uint16_t *ref, size_t n, unsigned shift, unsigned mask, uint16_t *words);
int mrepo_ungroup_uint16_t(const uint16_t *words, const uint16_t *ref, size_t n, unsigned shift, unsigned mask, uint16_t *dst);
int mrepo_group_uint32_t(const uint32_t *src, const uint32_t *ref, size_t n, unsigned shift, unsigned mask, uint32_t *words);
int mrepo_ungroup_uint32_t(const uint32_t *words, const uint32_t *ref, size_t n, unsigned shift, unsigned mask, uint32_t *dst);

/* CRC-32C of n bytes, continuing `crc` (0 to start): the processor's instruction where it has one
 * (SSE4.2), else tables; the same value either way. */
uint32_t mrepo_crc32c(uint32_t crc, const void *data, size_t n);
uint32_t mrepo_crc32c_portable(uint32_t crc, const void *data, size_t n);

/* Guarded file mappings (mapguard.c): a page past the end of a file that shrank reads as zeros
 * instead of raising SIGBUS. install: once per process, before threads start (also done by the
 * first guard); guard: returns a slot (or -1: unguarded); shrank: whether a page of the mapping
 * was replaced; unguard: before munmap. */
void mrepo_guard_install(void);
int mrepo_guard_mapping(const void *start, size_t length);
int mrepo_mapping_shrank(int slot);
void mrepo_unguard_mapping(int slot);

/* Spawning an evaluation against a signal that ends them (spawnguard.c): begin before the spawn;
 * end after its group is in the table, returning a signal the caller must now act on (0: none);
 * signal_defers, from the handler: nonzero when a spawn in progress will act on it instead. */
void mrepo_spawn_begin(void);
int mrepo_spawn_end(void);
int mrepo_signal_defers(int signal);

#endif
