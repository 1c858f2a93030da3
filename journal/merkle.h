/*
 * merkle.h: the journal's Merkle tree (RFC 6962 / RFC 9162 hashing, SHA-256).
 *
 * Three pieces:
 * - the frontier, the few hashes a writer keeps to extend the tree one leaf at
 *   a time and to compute its root;
 * - the post-order number of each perfect subtree, under which the journal
 *   stores every subtree root as it is completed, so stored nodes are written
 *   in key order (LMDB's cheap MDB_APPEND);
 * - inclusion and consistency proofs built from those stored nodes, and their
 *   verification against signed roots.
 *
 * Terms. The perfect subtree (level, index) is the complete binary tree over
 * the 2^level leaves [index << level, (index + 1) << level); level 0 is a leaf
 * hash. The tree of n leaves is covered by the perfect subtrees of the set bits
 * of n, largest first, so any root and any proof element is a fold of at most
 * 64 stored nodes, and no node ever changes once stored.
 *
 * Nothing here allocates, and stack use is fixed whatever the tree size
 * (under 2 KiB, plus what the caller's callbacks use).
 */
#ifndef KR_MERKLE_H
#define KR_MERKLE_H

#include "hash.h"
#include "kr_error.h"

#include <stddef.h>
#include <stdint.h>

/* ---- Frontier ---- */

/* The perfect subtrees that make up the tree of `size` leaves: node[l] is the
 * root of the one of 2^l leaves, present iff bit l of size is set; other
 * entries are stale. Caller-owned, plain data: copy it with memcpy or
 * assignment, no _fini needed. */
struct mrk_frontier {
    uint64_t size;
    uint8_t node[64][KR_HASH_LEN];
};

/* Called for every perfect subtree root as it is completed, in post-order (the
 * order of mrk_postorder()). `hash` is valid only during the call. */
typedef void (*mrk_emit_fn)(void *ctx, unsigned level, uint64_t index,
                            const uint8_t hash[KR_HASH_LEN]);

/* Makes f the frontier of the empty tree. */
void mrk_frontier_init(struct mrk_frontier *f);

/* Appends one leaf hash. Unless emit is NULL, calls it for the leaf itself
 * (level 0, index = the old size) and then for each subtree the leaf completes,
 * by increasing level. The tree must hold fewer than 2^64 - 1 leaves (asserted;
 * at a billion appends a second that is 584 years away). */
void mrk_frontier_append(struct mrk_frontier *f, const uint8_t leaf_hash[KR_HASH_LEN],
                         mrk_emit_fn emit, void *ctx);

/* Appends the root of a perfect subtree of 2^level leaves computed elsewhere
 * (a verification worker's chunk, or a stored node when reopening). Emits only
 * the nodes above `level` that this completes, not the given node.
 * Errors: KR_EINVAL if level >= 64 or f->size is not a multiple of 2^level;
 * KR_ETOOLARGE if the tree would reach 2^64 leaves. f is unchanged on error. */
KR_MUST_CHECK kr_err mrk_frontier_append_subtree(struct mrk_frontier *f, unsigned level,
                                                 const uint8_t hash[KR_HASH_LEN], mrk_emit_fn emit,
                                                 void *ctx);

/* The RFC 6962 root of the tree of f->size leaves; SHA-256 of the empty string
 * for the empty tree. `out` may point into f. */
void mrk_frontier_root(const struct mrk_frontier *f, uint8_t out[KR_HASH_LEN]);

/* ---- Node numbering ---- */

/* How many perfect subtree roots are completed before (level, index) when
 * leaves are appended in order: the node's rank in post-order. Leaf i is
 * 2i - popcount(i). Used as the key of stored nodes, so keys grow as nodes are
 * written. Defined for the nodes of trees of up to 2^63 leaves, that is
 * (index + 1) << level <= 2^63 (asserted). */
uint64_t mrk_postorder(unsigned level, uint64_t index);

/* ---- Proofs from stored nodes ---- */

/* Reads the stored root of perfect subtree (level, index) into out. The
 * functions below ask only for subtrees that lie entirely inside the tree size
 * they were given. Any error returned is passed back unchanged (a missing node
 * should be KR_ECORRUPT: it must exist). */
typedef kr_err (*mrk_node_fn)(void *ctx, unsigned level, uint64_t index, uint8_t out[KR_HASH_LEN]);

/* The root of the tree of `size` leaves, from at most 64 stored nodes; SHA-256
 * of the empty string for size 0. Errors: those of get. */
KR_MUST_CHECK kr_err mrk_root(mrk_node_fn get, void *ctx, uint64_t size, uint8_t out[KR_HASH_LEN]);

/* The RFC 6962 hash MTH of leaves [begin, end), folded from the perfect
 * subtrees that cover it. begin must be a multiple of the largest power of two
 * not above end - begin, so that those subtrees are stored nodes; every range
 * in the RFC 6962 recursion, [k * 2^m, min(n, (k + 1) * 2^m)), is. An empty
 * range gives SHA-256 of the empty string.
 * Errors: KR_EINVAL if begin > end or begin is not so aligned; those of get. */
KR_MUST_CHECK kr_err mrk_subtree_hash(mrk_node_fn get, void *ctx, uint64_t begin, uint64_t end,
                                      uint8_t out[KR_HASH_LEN]);

/* The audit path of leaf `index` in the tree of `size` leaves (RFC 6962
 * section 2.1.1 PATH), ordered from the leaf's sibling up to the root's child,
 * as in RFC 9162 and Certificate Transparency. Writes *n <= 64 hashes to proof
 * (so KR_PROOF_MAX always suffices). On error *n is 0 and proof's contents are
 * unspecified.
 * Errors: KR_EINVAL if index >= size; KR_ETOOLARGE if cap < the path length;
 * those of get. */
KR_MUST_CHECK kr_err mrk_inclusion_proof(mrk_node_fn get, void *ctx, uint64_t index, uint64_t size,
                                         uint8_t proof[][KR_HASH_LEN], size_t cap, size_t *n);

/* The consistency proof between the trees of size1 and size2 leaves (RFC 6962
 * section 2.1.2 PROOF(size1, D[size2])), in RFC order. Writes *n <= 65 hashes
 * to proof (so KR_PROOF_MAX always suffices); empty when size1 is 0 or equal
 * to size2, which need no proof. On error *n is 0 and proof's contents are
 * unspecified.
 * Errors: KR_EINVAL if size1 > size2; KR_ETOOLARGE if cap < the proof length;
 * those of get. */
KR_MUST_CHECK kr_err mrk_consistency_proof(mrk_node_fn get, void *ctx, uint64_t size1,
                                           uint64_t size2, uint8_t proof[][KR_HASH_LEN], size_t cap,
                                           size_t *n);

/* ---- Verification ----
 *
 * Both functions take everything but the pointers as untrusted input: any
 * index, size, proof length or hash a proof does not bear out is KR_ECORRUPT.
 * They follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step, and agree
 * with transparency-dev/merkle's test vectors (tests/vectors/rfc6962).
 * KR_EINVAL is only for a NULL hash pointer, or proof NULL with n > 0. */

/* KR_OK iff `proof` shows that leaf_hash is leaf `index` of the tree of `size`
 * leaves whose root is `root`. Note that this does not pin the size: a proof
 * can also verify for another size whose tree has the same shape along the
 * path, which is why a checkpoint signs size and root together. */
KR_MUST_CHECK kr_err mrk_verify_inclusion(const uint8_t leaf_hash[KR_HASH_LEN], uint64_t index,
                                          uint64_t size, const uint8_t proof[][KR_HASH_LEN],
                                          size_t n, const uint8_t root[KR_HASH_LEN]);

/* KR_OK iff `proof` shows that the tree of size1 leaves with root root1 is a
 * prefix of the tree of size2 leaves with root root2. Equal sizes need an
 * empty proof and equal roots. size1 == 0 is KR_ECORRUPT: every tree extends
 * the empty one, so there is nothing to check, and a caller asking has most
 * likely read a size wrong (the test vectors reject it too). */
KR_MUST_CHECK kr_err mrk_verify_consistency(uint64_t size1, uint64_t size2,
                                            const uint8_t root1[KR_HASH_LEN],
                                            const uint8_t root2[KR_HASH_LEN],
                                            const uint8_t proof[][KR_HASH_LEN], size_t n);

#endif
