/* engine/kv.h — the paged KV cache: one pool of fixed-size blocks shared by every sequence.
 * A block holds SP_KV_BLOCK consecutive positions of K and V for every layer. A sequence is a block
 * table (its positions in order) plus the tokens it holds. Full blocks are content-addressed: their
 * key is a hash of (the previous block's key, the block's tokens), so a block stands for a whole
 * prefix, and a new sequence whose tokens begin like any earlier one attaches those blocks instead
 * of recomputing them. Blocks are reference-counted; a shared or addressed block is read-only and a
 * sequence about to write into one copies it first (copy-on-write). Released addressed blocks stay
 * cached (least recently used first out) until the pool needs room. K/V are f32, or int8 with one
 * scale per (position, kv head) (SP_KV_Q8). The pool is sized once from a byte budget. Not thread-
 * safe: the engine thread owns it. */
#ifndef SP_ENGINE_KV_H
#define SP_ENGINE_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SP_KV_BLOCK 16 /* positions per block */

typedef enum { SP_KV_F32 = 0, SP_KV_Q8 = 1 } sp_kv_type;

typedef struct sp_kv sp_kv;
typedef struct sp_kv_seq sp_kv_seq;

typedef struct {
    int32_t total, used, cached, free; /* blocks: referenced / unreferenced but addressed / empty */
    uint64_t hit_tokens;               /* prompt tokens served from addressed blocks, ever */
    uint64_t evictions, cow_copies;
    int32_t spilled;                   /* addressed blocks held in the spill file now */
    uint64_t spill_writes, spill_reads;
} sp_kv_stats;

/* A pool of as many blocks as fit in mem_bytes (at least min_blocks are required, else NULL and err
 * says how much memory that needs). n_layer layers of n_head_kv heads of head_dim floats. */
sp_kv *sp_kv_new(int32_t n_layer, int32_t n_head_kv, int32_t head_dim, sp_kv_type type, size_t mem_bytes,
                 int32_t min_blocks, char *err, size_t errlen);
void sp_kv_free(sp_kv *kv);
/* Bytes one block takes (all layers, K and V, scales included). */
size_t sp_kv_block_bytes(int32_t n_layer, int32_t n_head_kv, int32_t head_dim, sp_kv_type type);
sp_kv_type sp_kv_get_type(const sp_kv *kv);
void sp_kv_get_stats(const sp_kv *kv, sp_kv_stats *out);
/* Spill to flash: released addressed blocks leave RAM for a file in dir (created, unlinked at once:
 * nothing outlives the process) when evicted for room, or when idle longer than idle_s (see
 * sp_kv_spill_idle); a later prompt that begins the same way reads them back instead of recomputing.
 * At most max_bytes of file; the oldest spilled blocks are dropped past that. false (+ err) when the
 * file cannot be made. */
bool sp_kv_set_spill(sp_kv *kv, const char *dir, uint64_t max_bytes, char *err, size_t errlen);
/* Spill (and free the RAM of) cached blocks released more than idle_s seconds before `now`
 * (seconds, any monotonic clock the caller also passes to sp_kv_seq_free). Returns blocks spilled. */
int32_t sp_kv_spill_idle(sp_kv *kv, double now, double idle_s);
/* The time sp_kv_seq_free and truncate stamp on released blocks (default 0: set it before freeing). */
void sp_kv_set_clock(sp_kv *kv, double now);

/* Blocks a sequence could still get: free ones plus cached ones that can be evicted. */
int32_t sp_kv_available(const sp_kv *kv);

/* An empty sequence of at most max_tokens positions. */
sp_kv_seq *sp_kv_seq_new(sp_kv *kv, int32_t max_tokens);
/* Releases its blocks (addressed ones stay cached). */
void sp_kv_seq_free(sp_kv_seq *s);
int32_t sp_kv_seq_len(const sp_kv_seq *s);
sp_kv_type sp_kv_seq_type(const sp_kv_seq *s);
const int32_t *sp_kv_seq_tokens(const sp_kv_seq *s);
/* On an empty sequence: attach the longest run of cached full blocks that begins `tokens`, leaving at
 * least one token to compute (its logits are needed). Returns the positions attached: k blocks give
 * min(k * SP_KV_BLOCK, n - 1); when the cut falls inside the last block it is copied on write. */
int32_t sp_kv_seq_attach_prefix(sp_kv_seq *s, const int32_t *tokens, int32_t n);
/* How many blocks attach_prefix would find for tokens (no change to anything). */
int32_t sp_kv_count_cached(const sp_kv *kv, const int32_t *tokens, int32_t n);
/* A new sequence sharing every block of s (the last, partial one too: copy on write). */
sp_kv_seq *sp_kv_seq_fork(sp_kv_seq *s);
/* Drop positions >= n. */
void sp_kv_seq_truncate(sp_kv_seq *s, int32_t n);
/* New blocks needed to append n tokens (copy-on-write of the last block counted). */
int32_t sp_kv_seq_blocks_needed(const sp_kv_seq *s, int32_t n);
/* Make positions [len, len + n) writable: allocate blocks, copy shared ones. false: pool exhausted
 * (nothing changed) or max_tokens exceeded. */
bool sp_kv_seq_reserve(sp_kv_seq *s, int32_t n);
/* After the forward pass wrote K/V of positions [len, len + n): append the tokens; blocks that became
 * full are addressed (and shared with any later sequence that begins the same way). */
void sp_kv_seq_commit(sp_kv_seq *s, const int32_t *tokens, int32_t n);

/* Storage of one position: K and V rows (n_head_kv * head_dim values) of layer il at position pos
 * (reserved or committed). f32 pools: floats; q8 pools: int8 values, with *k_scale / *v_scale
 * pointing at the n_head_kv scales (NULL arguments allowed for f32). */
void *sp_kv_k(const sp_kv_seq *s, int il, int32_t pos, float **k_scale);
void *sp_kv_v(const sp_kv_seq *s, int il, int32_t pos, float **v_scale);
/* Block-level view for attention: number of blocks covering n positions, and for block b of layer
 * il the base of its K and V (positions SP_KV_BLOCK apart by sp_kv_pos_stride elements) and scales
 * ([pos][n_head_kv] floats; NULL for f32). */
int64_t sp_kv_pos_stride(const sp_kv *kv); /* elements between positions = n_head_kv * head_dim */
void sp_kv_block_view(const sp_kv_seq *s, int il, int32_t b, const void **k, const void **v,
                      const float **k_scale, const float **v_scale);

#endif
