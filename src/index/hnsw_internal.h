/* hnsw_internal.h — the HNSW layout shared by the graph code (hnsw.c) and the snapshot file
 * (hnsw_file.c). Not for other users: the public contract is hnsw.h.
 *
 * Nodes live in fixed-size records inside chunks of 2^chunk_bits slots (4096, fewer where records
 * are so wide that a chunk would pass HNSW_CHUNK_MAX_BYTES: the first image of a 65536-dimension
 * index must not cost gigabytes), so growing the index never moves a vector a reader may be
 * looking at. A record is:
 *   walk vector | hnsw_node (24 bytes) | layer-0 links: uint32 count + 2m slots | [float32 vector]
 * padded to a multiple of 64 bytes, in 64-byte aligned chunks: every vector starts on a cache line,
 * so a 64-byte (AVX-512) load never straddles two lines and a distance touches the fewest lines.
 * The walk vector is what the graph walk computes its distances on, next to the node and links it
 * reads with it: an int8 vector with one scale per vector (in the node). For int8 storage it is
 * the stored vector itself (the record ends after the links); for float32 storage it is an int8
 * copy of the float32 vector, whose float32 original follows the links (64-byte aligned) and is
 * read to rank a search's final candidates exactly, for exact scans, to build (graphs built on
 * approximate distances lost recall on real embeddings) and to save. The copy quarters the bytes
 * of a memory-bound search (a bfloat16 copy, the version-4 layout, halved them); it is derived
 * from the float32 vector at insert and at load (a snapshot's copy is not trusted).
 * Upper-layer links (levels 1..level, each uint32 count + m slots) are one allocation per node;
 * most nodes (1 - 1/m of them) have none. */
#ifndef IMGSEARCH_HNSW_INTERNAL_H
#define IMGSEARCH_HNSW_INTERNAL_H

#include <pthread.h>

#include "index/distance.h"
#include "index/hnsw.h"
#include "util/idmap.h"

#define HNSW_CHUNK_BITS 12
#define HNSW_CHUNK_MAX_BYTES ((size_t)32 << 20)
#define HNSW_MAX_LEVEL 16
#define HNSW_NONE UINT32_MAX

enum { SLOT_FREE = 0, SLOT_LIVE = 1, SLOT_DEAD = 2 };

typedef struct {
    int64_t id;
    uint32_t *upper; /* levels 1..level, (1 + m) uint32 each; NULL at level 0 */
    float scale;     /* int8 storage: component = value × scale */
    uint8_t level;
    uint8_t state;   /* SLOT_* */
    uint16_t unused;
} hnsw_node;

typedef struct search_buf search_buf;

struct hnsw_index {
    hnsw_params p;
    int m0;                 /* layer-0 links: 2m */
    size_t rec_size, node_offset, l0_offset, vec_offset; /* offsets within a record (walk vector at 0) */
    size_t vec_bytes, walk_bytes; /* the stored vector's bytes (float32 or int8), the walk vector's */
    uint32_t ahead;         /* neighbours whose whole walk vector the beam search prefetches ahead */
    uint32_t ahead_exact;   /* the same for float32 vectors (building) */
    dot_f32_fn dot;         /* kernels resolved once */
    dot_i8_fn dot8;
    uint8_t **chunks;       /* chunk table; grows under the write lock */
    size_t nchunks, chunks_cap;
    unsigned chunk_bits;    /* slots per chunk: 1 << chunk_bits */
    uint32_t nslots;        /* slots ever handed out (high-water mark) */
    uint32_t *free_slots;   /* slots of repaired deletes, reused first */
    size_t nfree, free_cap;
    size_t count, ndead;    /* live and marked-deleted nodes */
    uint32_t entry;         /* HNSW_NONE when the graph is empty */
    int max_level;
    idmap where;            /* id → slot, live nodes only */
    uint64_t rng;           /* writer only */
    double level_mult;
    size_t upper_bytes;
    pthread_rwlock_t lock;  /* readers vs the writer's publish steps */
    pthread_mutex_t pool_lock;
    search_buf *pool;       /* idle per-search scratch buffers */
};

/* Slot s's whole record (rec_size bytes, 64-byte aligned). */
static inline uint8_t *hnsw_rec(const hnsw_index *h, uint32_t s) {
    return h->chunks[s >> h->chunk_bits] + (size_t)(s & ((1u << h->chunk_bits) - 1)) * h->rec_size;
}

static inline hnsw_node *hnsw_node_at(const hnsw_index *h, uint32_t s) {
    return (hnsw_node *)(hnsw_rec(h, s) + h->node_offset);
}

/* The link list of slot s on level: [0] = count, then the slots. */
static inline uint32_t *hnsw_links(const hnsw_index *h, uint32_t s, int level) {
    if (level == 0) return (uint32_t *)(hnsw_rec(h, s) + h->l0_offset);
    return hnsw_node_at(h, s)->upper + (size_t)(level - 1) * (size_t)(1 + h->p.m);
}

/* The stored vector: float32 (after the links) or int8 (the walk vector itself, with its node's
 * scale). */
static inline void *hnsw_vec(const hnsw_index *h, uint32_t s) { return hnsw_rec(h, s) + h->vec_offset; }

/* float32 storage: rewrites slot s's int8 walk copy and its scale from its float32 vector
 * (insert, load). */
void hnsw_fill_walk(hnsw_index *h, uint32_t s);

static inline int hnsw_max_links(const hnsw_index *h, int level) { return level ? h->p.m : h->m0; }

/* Validates parameters and fills the derived layout fields; false when out of range. */
bool hnsw_layout(hnsw_index *h, const hnsw_params *p);
/* Allocates chunks until slot s has a home (caller holds the write lock or is sole owner). */
int hnsw_reserve(hnsw_index *h, uint32_t s);
/* The checksum a snapshot ends with, of its len bytes before it (hnsw_file.c), so that tests and
 * fuzz/fuzz_hnsw.c can make a modified snapshot consistent and reach the checks behind it. */
uint64_t hnsw_file_checksum(const void *data, size_t len);

#endif
