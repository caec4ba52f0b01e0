/* engine/kv.c — the paged KV cache (kv.h): the block pool, per-sequence block tables, the prefix
 * index (key → block) and the LRU list of released blocks that are still addressed.
 *
 * Memory: one anonymous mapping for the whole pool, reserved up front and touched only as blocks
 * are first used (free blocks are handed out lowest first), so a large budget costs address space,
 * not RAM, until it is needed. Block b, layer il holds K [SP_KV_BLOCK][stride], V likewise, then for
 * q8 pools the K and V scales [SP_KV_BLOCK][n_head_kv].
 *
 * Block states: free (on the free stack) → used (ref > 0) → released: back to free, or, when
 * addressed, onto the LRU list (ref 0, still findable by key) until evicted for a new allocation.
 *
 * Spill (optional): an addressed block leaving RAM (evicted, or idle too long) is written to a slot
 * of an unlinked file and stays findable by key in a second index; a prefix lookup that finds it
 * there reads it back into a fresh block. The oldest spilled blocks are dropped when the file is full. */
#include "engine/kv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NIL (-1)

typedef struct {
    int32_t ref;
    bool addressed;
    uint64_t key, parent;         /* when addressed: this block's key and the previous block's */
    int32_t toks[SP_KV_BLOCK];    /* when addressed: its tokens (keys are checked against them) */
    int32_t prev, next;           /* LRU links (ref == 0 && addressed) */
    int32_t hnext;                /* hash chain */
    double released_at;           /* when it went onto the LRU list */
} blk;

typedef struct {                  /* a block in the spill file: slot i of the file is entry i */
    bool used;
    uint64_t key, parent, age;
    int32_t toks[SP_KV_BLOCK];
    int32_t hnext;
} spill_ent;

struct sp_kv {
    int32_t n_layer, n_head_kv, head_dim;
    sp_kv_type type;
    int64_t stride;               /* elements per position: n_head_kv * head_dim */
    size_t esz;                   /* bytes per element: 4 (f32) or 1 (q8) */
    size_t data_bytes;            /* K (or V) of one layer of one block */
    size_t scale_bytes;           /* K (or V) scales of one layer of one block (q8) */
    size_t layer_bytes, block_bytes;
    uint8_t *mem;
    size_t mem_len;
    int32_t n_blocks;
    blk *b;
    int32_t *free_stack, n_free;
    int32_t lru_head, lru_tail, n_cached; /* head: least recently released */
    int32_t *buckets;
    uint32_t mask;
    sp_kv_stats st;
    double clock;
    /* spill file */
    int spill_fd;
    int32_t spill_cap, spill_n;
    spill_ent *sp;
    int32_t *sp_buckets;
    uint32_t sp_mask;
    uint64_t sp_age;
};

struct sp_kv_seq {
    sp_kv *kv;
    int32_t max_tokens, len;
    int32_t *tokens;              /* [max_tokens] */
    int32_t *blocks;              /* [max blocks] */
    uint64_t *keys;               /* key of each full block (valid for blocks below len / SP_KV_BLOCK) */
    int32_t n_blocks;
};

/* ---- keys ---- */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#define KEY_ROOT 0x6a09e667f3bcc908ull /* the parent of a sequence's first block */

static uint64_t block_key(uint64_t parent, const int32_t *toks) {
    uint64_t h = mix64(parent ^ 0x9E3779B97F4A7C15ull);
    for (int i = 0; i < SP_KV_BLOCK; i++) h = mix64(h + (uint32_t)toks[i] + 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1));
    return h;
}

/* ---- pool ---- */

size_t sp_kv_block_bytes(int32_t n_layer, int32_t n_head_kv, int32_t head_dim, sp_kv_type type) {
    size_t per_pos = (size_t)n_head_kv * (size_t)head_dim * (type == SP_KV_Q8 ? 1 : sizeof(float));
    if (type == SP_KV_Q8) per_pos += (size_t)n_head_kv * sizeof(float);
    return (size_t)n_layer * 2 * SP_KV_BLOCK * per_pos;
}

sp_kv *sp_kv_new(int32_t n_layer, int32_t n_head_kv, int32_t head_dim, sp_kv_type type, size_t mem_bytes,
                 int32_t min_blocks, char *err, size_t errlen) {
    size_t bb = sp_kv_block_bytes(n_layer, n_head_kv, head_dim, type);
    size_t nb = mem_bytes / bb;
    if (nb > (size_t)INT32_MAX / 2) nb = (size_t)INT32_MAX / 2;
    if ((int64_t)nb < (int64_t)min_blocks || nb == 0) {
        if (err)
            snprintf(err, errlen, "KV cache: %zu bytes hold %zu blocks of %d positions, but %d are needed (%zu bytes)",
                     mem_bytes, nb, SP_KV_BLOCK, min_blocks > 0 ? min_blocks : 1,
                     (size_t)(min_blocks > 0 ? min_blocks : 1) * bb);
        return NULL;
    }
    sp_kv *kv = calloc(1, sizeof *kv);
    if (!kv) goto oom;
    kv->n_layer = n_layer, kv->n_head_kv = n_head_kv, kv->head_dim = head_dim, kv->type = type;
    kv->stride = (int64_t)n_head_kv * head_dim;
    kv->esz = type == SP_KV_Q8 ? 1 : sizeof(float);
    kv->data_bytes = SP_KV_BLOCK * (size_t)kv->stride * kv->esz;
    kv->scale_bytes = type == SP_KV_Q8 ? SP_KV_BLOCK * (size_t)n_head_kv * sizeof(float) : 0;
    kv->layer_bytes = 2 * (kv->data_bytes + kv->scale_bytes);
    kv->block_bytes = bb;
    kv->n_blocks = (int32_t)nb;
    kv->mem_len = nb * bb;
    kv->mem = mmap(NULL, kv->mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (kv->mem == MAP_FAILED) {
        kv->mem = NULL;
        goto oom;
    }
    kv->b = calloc(nb, sizeof *kv->b);
    kv->free_stack = malloc(nb * sizeof *kv->free_stack);
    uint32_t nbuck = 16;
    while (nbuck < nb * 2) nbuck *= 2;
    kv->buckets = malloc(nbuck * sizeof *kv->buckets);
    if (!kv->b || !kv->free_stack || !kv->buckets) goto oom;
    kv->mask = nbuck - 1;
    for (uint32_t i = 0; i < nbuck; i++) kv->buckets[i] = NIL;
    for (int32_t i = 0; i < kv->n_blocks; i++) kv->free_stack[i] = kv->n_blocks - 1 - i; /* pop gives 0, 1, ... */
    kv->n_free = kv->n_blocks;
    kv->lru_head = kv->lru_tail = NIL;
    kv->spill_fd = -1;
    return kv;
oom:
    if (err) snprintf(err, errlen, "KV cache: out of memory for %zu blocks", nb);
    sp_kv_free(kv);
    return NULL;
}

void sp_kv_free(sp_kv *kv) {
    if (!kv) return;
    if (kv->mem) munmap(kv->mem, kv->mem_len);
    if (kv->spill_fd >= 0) close(kv->spill_fd);
    free(kv->b); free(kv->free_stack); free(kv->buckets);
    free(kv->sp); free(kv->sp_buckets);
    free(kv);
}

sp_kv_type sp_kv_get_type(const sp_kv *kv) { return kv->type; }
int64_t sp_kv_pos_stride(const sp_kv *kv) { return kv->stride; }
int32_t sp_kv_available(const sp_kv *kv) { return kv->n_free + kv->n_cached; }

void sp_kv_get_stats(const sp_kv *kv, sp_kv_stats *out) {
    *out = kv->st;
    out->total = kv->n_blocks;
    out->free = kv->n_free;
    out->cached = kv->n_cached;
    out->used = kv->n_blocks - kv->n_free - kv->n_cached;
    out->spilled = kv->spill_n;
}

void sp_kv_set_clock(sp_kv *kv, double now) { kv->clock = now; }

static void lru_unlink(sp_kv *kv, int32_t id) {
    blk *b = &kv->b[id];
    if (b->prev != NIL) kv->b[b->prev].next = b->next; else kv->lru_head = b->next;
    if (b->next != NIL) kv->b[b->next].prev = b->prev; else kv->lru_tail = b->prev;
    b->prev = b->next = NIL;
    kv->n_cached--;
}

static void lru_push(sp_kv *kv, int32_t id) {
    blk *b = &kv->b[id];
    b->next = NIL;
    b->prev = kv->lru_tail;
    if (kv->lru_tail != NIL) kv->b[kv->lru_tail].next = id; else kv->lru_head = id;
    kv->lru_tail = id;
    kv->n_cached++;
}

static void index_remove(sp_kv *kv, int32_t id) {
    int32_t *pp = &kv->buckets[kv->b[id].key & kv->mask];
    while (*pp != id) pp = &kv->b[*pp].hnext;
    *pp = kv->b[id].hnext;
    kv->b[id].addressed = false;
}

static int32_t index_find(const sp_kv *kv, uint64_t key, uint64_t parent, const int32_t *toks) {
    for (int32_t id = kv->buckets[key & kv->mask]; id != NIL; id = kv->b[id].hnext) {
        const blk *b = &kv->b[id];
        if (b->key == key && b->parent == parent && !memcmp(b->toks, toks, sizeof b->toks)) return id;
    }
    return NIL;
}

static void index_add(sp_kv *kv, int32_t id, uint64_t key, uint64_t parent, const int32_t *toks) {
    blk *b = &kv->b[id];
    b->key = key, b->parent = parent;
    memcpy(b->toks, toks, sizeof b->toks);
    b->addressed = true;
    int32_t *head = &kv->buckets[key & kv->mask];
    b->hnext = *head;
    *head = id;
}

static void spill_block(sp_kv *kv, int32_t id);
static uint8_t *block_mem(const sp_kv *kv, int32_t id) { return kv->mem + (size_t)id * kv->block_bytes; }

/* A block for writing (ref 1): a free one, else the least recently released cached one. */
static int32_t block_alloc(sp_kv *kv) {
    int32_t id;
    if (kv->n_free) {
        id = kv->free_stack[--kv->n_free];
    } else if (kv->lru_head != NIL) {
        id = kv->lru_head;
        lru_unlink(kv, id);
        spill_block(kv, id);
        index_remove(kv, id);
        kv->st.evictions++;
    } else {
        return NIL;
    }
    kv->b[id].ref = 1;
    kv->b[id].addressed = false;
    kv->b[id].prev = kv->b[id].next = NIL;
    return id;
}

/* ---- spill ---- */

static int32_t spill_find(const sp_kv *kv, uint64_t key, uint64_t parent, const int32_t *toks) {
    if (kv->spill_fd < 0) return NIL;
    for (int32_t e = kv->sp_buckets[key & kv->sp_mask]; e != NIL; e = kv->sp[e].hnext) {
        const spill_ent *x = &kv->sp[e];
        if (x->key == key && x->parent == parent && !memcmp(x->toks, toks, sizeof x->toks)) return e;
    }
    return NIL;
}

static void spill_remove(sp_kv *kv, int32_t e) {
    int32_t *pp = &kv->sp_buckets[kv->sp[e].key & kv->sp_mask];
    while (*pp != e) pp = &kv->sp[*pp].hnext;
    *pp = kv->sp[e].hnext;
    kv->sp[e].used = false;
    kv->spill_n--;
}

/* Write addressed block id to the spill file (the oldest spilled block makes room when it is full). */
static void spill_block(sp_kv *kv, int32_t id) {
    const blk *b = &kv->b[id];
    if (kv->spill_fd < 0 || !b->addressed || spill_find(kv, b->key, b->parent, b->toks) != NIL) return;
    int32_t e = NIL;
    uint64_t oldest = UINT64_MAX;
    for (int32_t i = 0; i < kv->spill_cap; i++) {
        if (!kv->sp[i].used) { e = i; break; }
        if (kv->sp[i].age < oldest) oldest = kv->sp[i].age, e = i;
    }
    if (e == NIL) return;
    if (kv->sp[e].used) spill_remove(kv, e);
    size_t n = kv->block_bytes;
    const uint8_t *p = block_mem(kv, id);
    off_t off = (off_t)e * (off_t)n;
    while (n) {
        ssize_t k = pwrite(kv->spill_fd, p, n, off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return; /* disk full or failing: this block is simply not kept */
        p += k, n -= (size_t)k, off += k;
    }
    spill_ent *x = &kv->sp[e];
    x->used = true;
    x->key = b->key, x->parent = b->parent, x->age = ++kv->sp_age;
    memcpy(x->toks, b->toks, sizeof x->toks);
    int32_t *head = &kv->sp_buckets[x->key & kv->sp_mask];
    x->hnext = *head;
    *head = e;
    kv->spill_n++;
    kv->st.spill_writes++;
}

bool sp_kv_set_spill(sp_kv *kv, const char *dir, uint64_t max_bytes, char *err, size_t errlen) {
    int32_t cap = (int32_t)(max_bytes / kv->block_bytes < (uint64_t)INT32_MAX / 4 ? max_bytes / kv->block_bytes : INT32_MAX / 4);
    if (cap <= 0) {
        if (err) snprintf(err, errlen, "KV spill: %llu bytes hold no block of %zu bytes", (unsigned long long)max_bytes, kv->block_bytes);
        return false;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/kv-spill-%d.tmp", dir, (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (err) snprintf(err, errlen, "KV spill: cannot create %s: %s", path, strerror(errno));
        return false;
    }
    unlink(path); /* lives only as long as the process */
    uint32_t nb = 16;
    while (nb < (uint32_t)cap * 2u) nb *= 2;
    kv->sp = calloc((size_t)cap, sizeof *kv->sp);
    kv->sp_buckets = malloc(nb * sizeof *kv->sp_buckets);
    if (!kv->sp || !kv->sp_buckets) {
        close(fd);
        free(kv->sp), free(kv->sp_buckets);
        kv->sp = NULL, kv->sp_buckets = NULL;
        if (err) snprintf(err, errlen, "KV spill: out of memory");
        return false;
    }
    for (uint32_t i = 0; i < nb; i++) kv->sp_buckets[i] = NIL;
    kv->sp_mask = nb - 1;
    kv->spill_cap = cap;
    kv->spill_fd = fd;
    return true;
}

static void block_ref(sp_kv *kv, int32_t id) {
    if (kv->b[id].ref++ == 0) lru_unlink(kv, id); /* a cached block comes back into use */
}

static void block_release(sp_kv *kv, int32_t id) {
    blk *b = &kv->b[id];
    if (--b->ref > 0) return;
    b->released_at = kv->clock;
    if (b->addressed) lru_push(kv, id);
    else kv->free_stack[kv->n_free++] = id;
}

/* Read spilled entry e back into a new block, addressed and referenced once (by the caller). */
static int32_t spill_restore(sp_kv *kv, int32_t e) {
    kv->sp[e].age = UINT64_MAX; /* the allocation below may spill: never into this slot, not yet read */
    int32_t id = block_alloc(kv);
    spill_ent x = kv->sp[e];
    spill_remove(kv, e);
    if (id == NIL) return NIL;
    size_t n = kv->block_bytes;
    uint8_t *p = block_mem(kv, id);
    off_t off = (off_t)e * (off_t)n;
    while (n) {
        ssize_t k = pread(kv->spill_fd, p, n, off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) { /* unreadable: the prefix is computed again */
            kv->free_stack[kv->n_free++] = id;
            kv->b[id].ref = 0;
            return NIL;
        }
        p += k, n -= (size_t)k, off += k;
    }
    index_add(kv, id, x.key, x.parent, x.toks);
    kv->st.spill_reads++;
    return id;
}

int32_t sp_kv_spill_idle(sp_kv *kv, double now, double idle_s) {
    int32_t n = 0;
    if (kv->spill_fd < 0) return 0;
    while (kv->lru_head != NIL && kv->b[kv->lru_head].released_at < now - idle_s) {
        int32_t id = kv->lru_head;
        lru_unlink(kv, id);
        spill_block(kv, id);
        index_remove(kv, id);
        madvise(block_mem(kv, id), kv->block_bytes, MADV_DONTNEED); /* give the RAM back */
        kv->free_stack[kv->n_free++] = id;
        n++;
    }
    return n;
}

/* ---- sequences ---- */

sp_kv_seq *sp_kv_seq_new(sp_kv *kv, int32_t max_tokens) {
    sp_kv_seq *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    int32_t max_blocks = (max_tokens + SP_KV_BLOCK - 1) / SP_KV_BLOCK;
    s->kv = kv;
    s->max_tokens = max_tokens;
    s->tokens = malloc((size_t)(max_tokens > 0 ? max_tokens : 1) * sizeof *s->tokens);
    s->blocks = malloc((size_t)(max_blocks > 0 ? max_blocks : 1) * sizeof *s->blocks);
    s->keys = malloc((size_t)(max_blocks > 0 ? max_blocks : 1) * sizeof *s->keys);
    if (!s->tokens || !s->blocks || !s->keys) {
        sp_kv_seq_free(s);
        return NULL;
    }
    return s;
}

void sp_kv_seq_free(sp_kv_seq *s) {
    if (!s) return;
    for (int32_t i = 0; i < s->n_blocks; i++) block_release(s->kv, s->blocks[i]);
    free(s->tokens); free(s->blocks); free(s->keys);
    free(s);
}

int32_t sp_kv_seq_len(const sp_kv_seq *s) { return s->len; }
sp_kv_type sp_kv_seq_type(const sp_kv_seq *s) { return s->kv->type; }
const int32_t *sp_kv_seq_tokens(const sp_kv_seq *s) { return s->tokens; }

/* Cached full blocks that begin tokens[0, n), at most max, in RAM or spilled. With ids: each found
 * block is referenced at once (so reading a later one back cannot evict it) and its id and key
 * stored; spilled ones are read back. Without: only counted. */
static int32_t find_prefix(sp_kv *kv, const int32_t *tokens, int32_t n, int32_t max, int32_t *ids, uint64_t *keys) {
    uint64_t parent = KEY_ROOT;
    int32_t k = 0, n_spilled = 0;
    while (k < max && (int64_t)(k + 1) * SP_KV_BLOCK <= n) {
        const int32_t *t = tokens + (int64_t)k * SP_KV_BLOCK;
        uint64_t key = block_key(parent, t);
        int32_t id = index_find(kv, key, parent, t), e = NIL;
        if (id == NIL && (e = spill_find(kv, key, parent, t)) == NIL) break;
        if (ids) { /* RAM blocks as ids, spilled ones as -2 - entry, for now */
            ids[k] = id != NIL ? id : -2 - e;
            keys[k] = key;
            n_spilled += id == NIL;
        }
        parent = key;
        k++;
    }
    if (!ids) return k;
    /* reference what is in RAM first, so reading the spilled ones back cannot evict a block of this
     * very prefix; then read them back in order */
    for (int32_t i = 0; i < k; i++)
        if (ids[i] >= 0) block_ref(kv, ids[i]);
    for (int32_t i = 0; n_spilled && i < k; i++) {
        if (ids[i] >= 0) continue;
        int32_t id = spill_restore(kv, -2 - ids[i]);
        if (id == NIL) { /* unreadable, or no block: the prefix ends before it */
            for (int32_t j = i + 1; j < k; j++)
                if (ids[j] >= 0) block_release(kv, ids[j]);
            return i;
        }
        ids[i] = id;
    }
    return k;
}

int32_t sp_kv_count_cached(const sp_kv *kv, const int32_t *tokens, int32_t n) {
    return find_prefix((sp_kv *)kv, tokens, n, INT32_MAX, NULL, NULL); /* counting changes nothing */
}

int32_t sp_kv_seq_attach_prefix(sp_kv_seq *s, const int32_t *tokens, int32_t n) {
    if (s->len || s->n_blocks || n <= 1) return 0;
    int32_t max_blocks = (s->max_tokens + SP_KV_BLOCK - 1) / SP_KV_BLOCK;
    int32_t k = find_prefix(s->kv, tokens, n, max_blocks, s->blocks, s->keys);
    s->n_blocks = k;
    int32_t got = (int32_t)((int64_t)k * SP_KV_BLOCK < n - 1 ? (int64_t)k * SP_KV_BLOCK : n - 1);
    if (got > s->max_tokens) got = s->max_tokens;
    memcpy(s->tokens, tokens, (size_t)got * sizeof *tokens);
    s->len = got;
    sp_kv_seq_truncate(s, got); /* drops a block the cut left empty */
    s->kv->st.hit_tokens += (uint64_t)got;
    return got;
}

sp_kv_seq *sp_kv_seq_fork(sp_kv_seq *s) {
    sp_kv_seq *f = sp_kv_seq_new(s->kv, s->max_tokens);
    if (!f) return NULL;
    memcpy(f->tokens, s->tokens, (size_t)s->len * sizeof *s->tokens);
    memcpy(f->blocks, s->blocks, (size_t)s->n_blocks * sizeof *s->blocks);
    memcpy(f->keys, s->keys, (size_t)s->n_blocks * sizeof *s->keys);
    for (int32_t i = 0; i < s->n_blocks; i++) block_ref(s->kv, s->blocks[i]);
    f->n_blocks = s->n_blocks;
    f->len = s->len;
    return f;
}

void sp_kv_seq_truncate(sp_kv_seq *s, int32_t n) {
    if (n < 0) n = 0;
    if (n > s->len) return;
    int32_t keep = (n + SP_KV_BLOCK - 1) / SP_KV_BLOCK;
    while (s->n_blocks > keep) block_release(s->kv, s->blocks[--s->n_blocks]);
    s->len = n;
}

static bool writable(const sp_kv *kv, int32_t id) { return kv->b[id].ref == 1 && !kv->b[id].addressed; }

int32_t sp_kv_seq_blocks_needed(const sp_kv_seq *s, int32_t n) {
    int32_t total = (int32_t)(((int64_t)s->len + n + SP_KV_BLOCK - 1) / SP_KV_BLOCK);
    int32_t need = total > s->n_blocks ? total - s->n_blocks : 0;
    int32_t first = s->len / SP_KV_BLOCK;
    if (n > 0 && first < s->n_blocks && !writable(s->kv, s->blocks[first])) need++;
    return need;
}

bool sp_kv_seq_reserve(sp_kv_seq *s, int32_t n) {
    sp_kv *kv = s->kv;
    if (n <= 0) return true;
    if ((int64_t)s->len + n > s->max_tokens) return false;
    if (sp_kv_seq_blocks_needed(s, n) > sp_kv_available(kv)) return false;
    int32_t first = s->len / SP_KV_BLOCK;
    if (first < s->n_blocks && !writable(kv, s->blocks[first])) { /* copy on write */
        int32_t old = s->blocks[first];
        block_ref(kv, old); /* keep it out of the allocator's reach while copying */
        int32_t id = block_alloc(kv);
        memcpy(block_mem(kv, id), block_mem(kv, old), kv->block_bytes);
        block_release(kv, old);
        block_release(kv, old);
        s->blocks[first] = id;
        kv->st.cow_copies++;
    }
    int32_t total = (int32_t)(((int64_t)s->len + n + SP_KV_BLOCK - 1) / SP_KV_BLOCK);
    while (s->n_blocks < total) s->blocks[s->n_blocks++] = block_alloc(kv);
    return true;
}

void sp_kv_seq_commit(sp_kv_seq *s, const int32_t *tokens, int32_t n) {
    sp_kv *kv = s->kv;
    int32_t old = s->len;
    memcpy(s->tokens + old, tokens, (size_t)n * sizeof *tokens);
    s->len = old + n;
    for (int32_t i = old / SP_KV_BLOCK; i < s->len / SP_KV_BLOCK; i++) { /* blocks that became full */
        const int32_t *t = s->tokens + (int64_t)i * SP_KV_BLOCK;
        uint64_t parent = i ? s->keys[i - 1] : KEY_ROOT;
        uint64_t key = block_key(parent, t);
        s->keys[i] = key;
        int32_t id = s->blocks[i];
        /* already addressed (attached, or a forked sibling's), or the same prefix is cached under
         * another block (computed by a concurrent sequence): this one stays private */
        if (kv->b[id].addressed || index_find(kv, key, parent, t) != NIL) continue;
        index_add(kv, id, key, parent, t);
    }
}

/* ---- storage ---- */

static uint8_t *layer_mem(const sp_kv_seq *s, int il, int32_t b) {
    return block_mem(s->kv, s->blocks[b]) + (size_t)il * s->kv->layer_bytes;
}

void *sp_kv_k(const sp_kv_seq *s, int il, int32_t pos, float **k_scale) {
    const sp_kv *kv = s->kv;
    uint8_t *L = layer_mem(s, il, pos / SP_KV_BLOCK);
    int32_t off = pos % SP_KV_BLOCK;
    if (k_scale) *k_scale = kv->scale_bytes ? (float *)(void *)(L + 2 * kv->data_bytes) + (int64_t)off * kv->n_head_kv : NULL;
    return L + (size_t)off * (size_t)kv->stride * kv->esz;
}

void *sp_kv_v(const sp_kv_seq *s, int il, int32_t pos, float **v_scale) {
    const sp_kv *kv = s->kv;
    uint8_t *L = layer_mem(s, il, pos / SP_KV_BLOCK);
    int32_t off = pos % SP_KV_BLOCK;
    if (v_scale)
        *v_scale = kv->scale_bytes ? (float *)(void *)(L + 2 * kv->data_bytes + kv->scale_bytes) + (int64_t)off * kv->n_head_kv : NULL;
    return L + kv->data_bytes + (size_t)off * (size_t)kv->stride * kv->esz;
}

void sp_kv_block_view(const sp_kv_seq *s, int il, int32_t b, const void **k, const void **v,
                      const float **k_scale, const float **v_scale) {
    const sp_kv *kv = s->kv;
    const uint8_t *L = layer_mem(s, il, b);
    *k = L;
    *v = L + kv->data_bytes;
    if (k_scale) *k_scale = kv->scale_bytes ? (const float *)(const void *)(L + 2 * kv->data_bytes) : NULL;
    if (v_scale) *v_scale = kv->scale_bytes ? (const float *)(const void *)(L + 2 * kv->data_bytes + kv->scale_bytes) : NULL;
}
