/*
 * merkle.c: frontier, post-order node numbering, and RFC 6962 proofs from
 * stored perfect subtrees.
 *
 * Design notes
 * - Proofs follow the RFC 6962 recursion literally, but only to record which
 *   leaf ranges their elements cover (one per tree level, so at most 64 plus
 *   the consistency proof's starting node). Each range's hash is then folded
 *   from the stored perfect subtrees covering it. Below the first split the
 *   path takes to the left, every range is a perfect subtree, i.e. one read;
 *   only one range per proof needs a fold, so a proof costs at most about 128
 *   reads and 64 hashes, whatever the tree size.
 * - Verification is RFC 9162's bit-walking algorithm, transcribed step by step
 *   rather than rebuilt from the recursion above, so that generation and
 *   verification are independent and a bug in one is caught by the other.
 * - Every loop runs at most once per bit of a 64-bit size.
 */
#include "merkle.h"

#include "kr_limits.h"

#include <stdbool.h>
#include <string.h>

/* Elements of a proof: one per level of a tree of < 2^64 leaves, plus the
 * consistency proof's starting node. */
#define MRK_STEPS_MAX (64 + 1)
_Static_assert(MRK_STEPS_MAX <= KR_PROOF_MAX, "KR_PROOF_MAX must hold any proof");

/* A proof element: the RFC 6962 hash of leaves [begin, end). */
struct span {
    uint64_t begin, end;
};

static uint64_t pow2(unsigned level)
{
    return (uint64_t)1 << level;
}

/* The RFC 6962 split point: the largest power of two below n, for n >= 2. */
static uint64_t split_point(uint64_t n)
{
    return pow2(63u - (unsigned)__builtin_clzll(n - 1));
}

static void empty_root(uint8_t out[KR_HASH_LEN])
{
    kr_sha256(out, "", 0);
}

/* ---- Frontier ---- */

void mrk_frontier_init(struct mrk_frontier *f)
{
    memset(f, 0, sizeof *f);
}

/* Adds the perfect subtree (level, f->size >> level), merging it with its left
 * neighbours of equal size like a binary counter's carry. The caller has
 * checked alignment and that the size does not overflow, so a clear bit at or
 * above `level` ends the loop before bit 64. */
static void frontier_push(struct mrk_frontier *f, unsigned level, const uint8_t hash[KR_HASH_LEN],
                          mrk_emit_fn emit, void *ctx)
{
    uint8_t acc[KR_HASH_LEN];
    memcpy(acc, hash, KR_HASH_LEN);
    uint64_t index = f->size >> level;
    unsigned l = level;
    while (f->size & pow2(l)) {
        kr_node_hash(acc, f->node[l], acc);
        l++;
        index >>= 1;
        if (emit)
            emit(ctx, l, index, acc);
    }
    memcpy(f->node[l], acc, KR_HASH_LEN);
    f->size += pow2(level);
}

void mrk_frontier_append(struct mrk_frontier *f, const uint8_t leaf_hash[KR_HASH_LEN],
                         mrk_emit_fn emit, void *ctx)
{
    KR_ASSERT(f->size < UINT64_MAX);
    if (emit)
        emit(ctx, 0, f->size, leaf_hash);
    frontier_push(f, 0, leaf_hash, emit, ctx);
}

kr_err mrk_frontier_append_subtree(struct mrk_frontier *f, unsigned level,
                                   const uint8_t hash[KR_HASH_LEN], mrk_emit_fn emit, void *ctx)
{
    if (level >= 64 || (f->size & (pow2(level) - 1)) != 0)
        return KR_EINVAL;
    if (f->size > UINT64_MAX - pow2(level))
        return KR_ETOOLARGE;
    frontier_push(f, level, hash, emit, ctx);
    return KR_OK;
}

void mrk_frontier_root(const struct mrk_frontier *f, uint8_t out[KR_HASH_LEN])
{
    if (f->size == 0) {
        empty_root(out);
        return;
    }
    /* The RFC tree of n leaves is its perfect subtrees joined right to left:
     * the smallest is the deepest right child. */
    unsigned l = (unsigned)__builtin_ctzll(f->size);
    uint8_t acc[KR_HASH_LEN];
    memcpy(acc, f->node[l], KR_HASH_LEN);
    for (l++; l < 64; l++)
        if (f->size & pow2(l))
            kr_node_hash(acc, f->node[l], acc);
    memcpy(out, acc, KR_HASH_LEN);
}

/* ---- Node numbering ---- */

uint64_t mrk_postorder(unsigned level, uint64_t index)
{
    KR_ASSERT(level < 64 && (index >> (63 - level)) == 0);
    /* A tree of N leaves has completed 2N - popcount(N) nodes. The node is
     * completed by leaf N - 1, N = (index + 1) << level, and that append goes
     * on to complete one parent per trailing one bit of index. At N = 2^63, 2N
     * wraps to 0, but the result is below 2^64, so unsigned wrap-around still
     * gives it exactly. */
    uint64_t n = (index + 1) << level;
    uint64_t parents_after = (uint64_t)__builtin_ctzll(~index);
    return 2 * n - (uint64_t)__builtin_popcountll(n) - 1 - parents_after;
}

/* ---- Proofs from stored nodes ---- */

kr_err mrk_subtree_hash(mrk_node_fn get, void *ctx, uint64_t begin, uint64_t end,
                        uint8_t out[KR_HASH_LEN])
{
    if (begin > end)
        return KR_EINVAL;
    uint64_t n = end - begin;
    if (n == 0) {
        empty_root(out);
        return KR_OK;
    }
    unsigned top = 63u - (unsigned)__builtin_clzll(n);
    if (begin & (pow2(top) - 1))
        return KR_EINVAL;
    /* Perfect subtrees for the set bits of n, largest at begin; fold from the
     * right end. Each starts at begin plus larger powers of two, so it is
     * aligned to its own size: a stored node. */
    uint8_t acc[KR_HASH_LEN], left[KR_HASH_LEN];
    uint64_t pos = end;
    bool first = true;
    for (unsigned l = 0; l <= top; l++) {
        if (!(n & pow2(l)))
            continue;
        pos -= pow2(l);
        kr_err err = get(ctx, l, pos >> l, first ? acc : left);
        if (err)
            return err;
        if (!first)
            kr_node_hash(acc, left, acc);
        first = false;
    }
    memcpy(out, acc, KR_HASH_LEN);
    return KR_OK;
}

kr_err mrk_root(mrk_node_fn get, void *ctx, uint64_t size, uint8_t out[KR_HASH_LEN])
{
    return mrk_subtree_hash(get, ctx, 0, size, out);
}

/* Hashes the ranges the RFC recursion recorded, top-down, into proof in the
 * RFC's output order, which is the reverse (each recursion level appends its
 * element after the deeper ones). */
static kr_err fill_proof(mrk_node_fn get, void *ctx, const struct span *path, size_t len,
                         uint8_t proof[][KR_HASH_LEN], size_t cap, size_t *n)
{
    if (len > cap)
        return KR_ETOOLARGE;
    for (size_t i = 0; i < len; i++) {
        const struct span *s = &path[len - 1 - i];
        kr_err err = mrk_subtree_hash(get, ctx, s->begin, s->end, proof[i]);
        if (err)
            return err;
    }
    *n = len;
    return KR_OK;
}

kr_err mrk_inclusion_proof(mrk_node_fn get, void *ctx, uint64_t index, uint64_t size,
                           uint8_t proof[][KR_HASH_LEN], size_t cap, size_t *n)
{
    *n = 0;
    if (index >= size)
        return KR_EINVAL;
    /* PATH(m, D[lo:hi]): split at k; the sibling half is the element, recurse
     * into the half holding the leaf. */
    struct span path[MRK_STEPS_MAX];
    size_t len = 0;
    uint64_t lo = 0, hi = size;
    while (hi - lo > 1) {
        uint64_t k = split_point(hi - lo);
        KR_ASSERT(len < MRK_STEPS_MAX);
        if (index - lo < k) {
            path[len++] = (struct span){lo + k, hi};
            hi = lo + k;
        } else {
            path[len++] = (struct span){lo, lo + k};
            lo += k;
        }
    }
    return fill_proof(get, ctx, path, len, proof, cap, n);
}

kr_err mrk_consistency_proof(mrk_node_fn get, void *ctx, uint64_t size1, uint64_t size2,
                             uint8_t proof[][KR_HASH_LEN], size_t cap, size_t *n)
{
    *n = 0;
    if (size1 > size2)
        return KR_EINVAL;
    if (size1 == 0 || size1 == size2)
        return KR_OK;
    /* SUBPROOF(m, D[lo:hi], b), m = size1 - lo: until the old tree ends exactly
     * at hi, split at k and recurse into the half where it ends. `whole` is the
     * RFC's b: it stays true while the old tree is the left half taken whole,
     * i.e. its root is one the verifier already has. */
    struct span path[MRK_STEPS_MAX];
    size_t len = 0;
    uint64_t lo = 0, hi = size2;
    bool whole = true;
    while (hi != size1) {
        uint64_t k = split_point(hi - lo);
        KR_ASSERT(len < MRK_STEPS_MAX);
        if (size1 - lo <= k) {
            path[len++] = (struct span){lo + k, hi};
            hi = lo + k;
        } else {
            path[len++] = (struct span){lo, lo + k};
            lo += k;
            whole = false;
        }
    }
    if (!whole) {
        KR_ASSERT(len < MRK_STEPS_MAX);
        path[len++] = (struct span){lo, hi};
    }
    return fill_proof(get, ctx, path, len, proof, cap, n);
}

/* ---- Verification (RFC 9162 2.1.3.2 and 2.1.4.2) ----
 *
 * fn and sn walk up the tree from the node being proven and from the last
 * leaf. An odd fn means the path's node is a right child, so the element is
 * its left sibling; fn == sn means the node is the last at its level and has
 * no right sibling, so levels are skipped until it does. Each element shifts
 * sn right at least once, so a proof longer than 64 stops at sn == 0. */

kr_err mrk_verify_inclusion(const uint8_t leaf_hash[KR_HASH_LEN], uint64_t index, uint64_t size,
                            const uint8_t proof[][KR_HASH_LEN], size_t n,
                            const uint8_t root[KR_HASH_LEN])
{
    if (!leaf_hash || !root || (n > 0 && !proof))
        return KR_EINVAL;
    /* 1. */
    if (index >= size)
        return KR_ECORRUPT;
    /* 2., 3. */
    uint64_t fn = index, sn = size - 1;
    uint8_t r[KR_HASH_LEN];
    memcpy(r, leaf_hash, KR_HASH_LEN);
    /* 4. */
    for (size_t i = 0; i < n; i++) {
        if (sn == 0)
            return KR_ECORRUPT;
        if ((fn & 1) || fn == sn) {
            kr_node_hash(r, proof[i], r);
            while (fn != 0 && !(fn & 1)) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            kr_node_hash(r, r, proof[i]);
        }
        fn >>= 1;
        sn >>= 1;
    }
    /* 5. */
    if (sn != 0 || memcmp(r, root, KR_HASH_LEN) != 0)
        return KR_ECORRUPT;
    return KR_OK;
}

kr_err mrk_verify_consistency(uint64_t size1, uint64_t size2, const uint8_t root1[KR_HASH_LEN],
                              const uint8_t root2[KR_HASH_LEN], const uint8_t proof[][KR_HASH_LEN],
                              size_t n)
{
    if (!root1 || !root2 || (n > 0 && !proof))
        return KR_EINVAL;
    /* The RFC defines proofs for 0 < size1 < size2; the rest as in
     * transparency-dev/merkle's VerifyConsistency and its test vectors. */
    if (size1 > size2 || size1 == 0)
        return KR_ECORRUPT;
    if (size1 == size2) {
        if (n != 0 || memcmp(root1, root2, KR_HASH_LEN) != 0)
            return KR_ECORRUPT;
        return KR_OK;
    }
    /* 1. */
    if (n == 0)
        return KR_ECORRUPT;
    /* 2. Prepending root1 when size1 is a power of two is done by starting
     * from it instead of from proof[0]. */
    size_t i = 0;
    const uint8_t *seed = (size1 & (size1 - 1)) == 0 ? root1 : proof[i++];
    /* 3., 4. */
    uint64_t fn = size1 - 1, sn = size2 - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    /* 5. */
    uint8_t fr[KR_HASH_LEN], sr[KR_HASH_LEN];
    memcpy(fr, seed, KR_HASH_LEN);
    memcpy(sr, seed, KR_HASH_LEN);
    /* 6. */
    for (; i < n; i++) {
        if (sn == 0)
            return KR_ECORRUPT;
        if ((fn & 1) || fn == sn) {
            kr_node_hash(fr, proof[i], fr);
            kr_node_hash(sr, proof[i], sr);
            while (fn != 0 && !(fn & 1)) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            kr_node_hash(sr, sr, proof[i]);
        }
        fn >>= 1;
        sn >>= 1;
    }
    /* 7. */
    if (sn != 0 || memcmp(fr, root1, KR_HASH_LEN) != 0 || memcmp(sr, root2, KR_HASH_LEN) != 0)
        return KR_ECORRUPT;
    return KR_OK;
}
