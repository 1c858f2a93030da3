/*
 * merkle_test.c: tests for journal/merkle.c.
 *
 * Three sources of truth that do not depend on the module: transparency-dev's
 * test vectors and the known roots of their eight-leaf tree
 * (tests/vectors/rfc6962), and a literal recursive transcription of
 * RFC 6962 section 2.1 below, against which every proof of every tree of up to
 * REF_MAX leaves is compared. A proof is also checked to fail when anything in
 * it changes, except where the RFC says it must not (see path shapes below).
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "hash.h"
#include "kr_error.h"
#include "kr_limits.h"
#include "merkle.h"

/* Trees compared exhaustively against the reference. 130 crosses 128, so
 * every split shape up to seven levels and the step to an eighth are covered. */
#define REF_MAX 130
/* Stored nodes of a tree of REF_MAX leaves: 2n - popcount(n). */
#define STORE_MAX (2 * REF_MAX)
/* The vector files are under 1 KiB each; the bound only guards the buffer. */
#define VEC_FILE_MAX (64 * 1024)
/* rfc6962/inclusion/additional/0/x.json is the deepest: three levels. */
#define VEC_DEPTH_MAX 4
/* At least this many vector files, so an empty or moved directory fails. */
#define VEC_FILES_MIN 50

/* ---- An in-memory node store, keyed by post-order like the journal's ---- */

struct store {
    uint8_t node[STORE_MAX][KR_HASH_LEN];
    uint64_t count; /* nodes stored; each is emitted with key == count */
    uint64_t limit; /* store_get() asserts its node lies within [0, limit) */
};

static void store_emit(void *ctx, unsigned level, uint64_t index, const uint8_t hash[KR_HASH_LEN])
{
    struct store *s = ctx;
    assert_int_equal(mrk_postorder(level, index), s->count);
    assert_true(s->count < STORE_MAX);
    memcpy(s->node[s->count++], hash, KR_HASH_LEN);
}

static kr_err store_get(void *ctx, unsigned level, uint64_t index, uint8_t out[KR_HASH_LEN])
{
    struct store *s = ctx;
    assert_true(level < 64);
    /* Complete within the tree size asked about: (index + 1) << level <= limit. */
    assert_true(index < (s->limit >> level));
    uint64_t key = mrk_postorder(level, index);
    assert_true(key < s->count);
    memcpy(out, s->node[key], KR_HASH_LEN);
    return KR_OK;
}

static void test_leaf(uint8_t out[KR_HASH_LEN], uint64_t i)
{
    uint8_t data[8];
    for (int b = 0; b < 8; b++)
        data[b] = (uint8_t)(i >> (8 * b));
    kr_leaf_hash(out, data, sizeof data);
}

/* ---- Reference: RFC 6962 section 2.1, transcribed ---- */

struct proof {
    size_t n;
    uint8_t hash[KR_PROOF_MAX + 2][KR_HASH_LEN]; /* room to extend a proof */
    /* Per element: 'L' or 'R' for a left or right sibling, 'S' for the
     * consistency proof's starting node. Verification's outcome depends only
     * on this shape and the hashes, so a proof also verifies for another
     * (index, size) or (size1, size2) of the same shape. */
    char shape[KR_PROOF_MAX + 1];
};

static uint64_t ref_split(uint64_t n)
{
    uint64_t k = 1;
    while (k * 2 < n)
        k *= 2;
    return k;
}

/* MTH(D[n]). */
static void ref_mth(const uint8_t (*leaf)[KR_HASH_LEN], uint64_t n, uint8_t out[KR_HASH_LEN])
{
    if (n == 0) {
        kr_sha256(out, "", 0);
    } else if (n == 1) {
        memcpy(out, leaf[0], KR_HASH_LEN);
    } else {
        uint64_t k = ref_split(n);
        uint8_t l[KR_HASH_LEN], r[KR_HASH_LEN];
        ref_mth(leaf, k, l);
        ref_mth(leaf + k, n - k, r);
        kr_node_hash(out, l, r);
    }
}

static void ref_push(struct proof *p, const uint8_t (*leaf)[KR_HASH_LEN], uint64_t n, char kind)
{
    assert_true(p->n < KR_PROOF_MAX);
    if (leaf)
        ref_mth(leaf, n, p->hash[p->n]);
    p->shape[p->n++] = kind;
    p->shape[p->n] = '\0';
}

/* PATH(m, D[n]); with leaf NULL only the shape is computed. */
static void ref_path(uint64_t m, const uint8_t (*leaf)[KR_HASH_LEN], uint64_t n, struct proof *p)
{
    if (n <= 1)
        return;
    uint64_t k = ref_split(n);
    if (m < k) {
        ref_path(m, leaf, k, p);
        ref_push(p, leaf ? leaf + k : NULL, n - k, 'R');
    } else {
        ref_path(m - k, leaf ? leaf + k : NULL, n - k, p);
        ref_push(p, leaf, k, 'L');
    }
}

/* SUBPROOF(m, D[n], b). */
static void ref_subproof(uint64_t m, const uint8_t (*leaf)[KR_HASH_LEN], uint64_t n, bool b,
                         struct proof *p)
{
    if (m == n) {
        if (!b)
            ref_push(p, leaf, n, 'S');
        return;
    }
    uint64_t k = ref_split(n);
    if (m <= k) {
        ref_subproof(m, leaf, k, b, p);
        ref_push(p, leaf ? leaf + k : NULL, n - k, 'R');
    } else {
        ref_subproof(m - k, leaf ? leaf + k : NULL, n - k, false, p);
        ref_push(p, leaf, k, 'L');
    }
}

static void ref_inclusion(uint64_t m, const uint8_t (*leaf)[KR_HASH_LEN], uint64_t n,
                          struct proof *p)
{
    p->n = 0;
    p->shape[0] = '\0';
    ref_path(m, leaf, n, p);
}

/* PROOF(m, D[n]) = SUBPROOF(m, D[n], true), defined for 0 < m < n. */
static void ref_consistency(uint64_t m, const uint8_t (*leaf)[KR_HASH_LEN], uint64_t n,
                            struct proof *p)
{
    p->n = 0;
    p->shape[0] = '\0';
    if (m > 0 && m < n)
        ref_subproof(m, leaf, n, true, p);
}

/* Whether an inclusion proof of `shape` must verify for (index, size). */
static bool inclusion_shape_fits(const char *shape, uint64_t index, uint64_t size)
{
    if (index >= size)
        return false;
    struct proof q;
    ref_inclusion(index, NULL, size, &q);
    return strcmp(q.shape, shape) == 0;
}

/* Whether a consistency proof of `shape` (0 < m < n) must verify for
 * (size1, size2), given the roots of m and n, which differ. */
static bool consistency_shape_fits(const char *shape, uint64_t size1, uint64_t size2)
{
    if (size1 == 0 || size1 >= size2)
        return false;
    struct proof q;
    ref_consistency(size1, NULL, size2, &q);
    return strcmp(q.shape, shape) == 0;
}

/* ---- Test vectors (transparency-dev/merkle testdata) ---- */

/* The eight leaf inputs and the roots of their first 0..8 (README.md). */
static const char *const readme_leaf_hex[8] = {
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
};
static const char *const readme_root_hex[9] = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

static size_t from_hex(uint8_t *out, size_t cap, const char *hex)
{
    size_t len = 0;
    assert_int_equal(sodium_hex2bin(out, cap, hex, strlen(hex), NULL, &len, NULL), 0);
    return len;
}

/* The eight-leaf tree, stored, and its roots. */
struct readme_tree {
    struct store store;
    uint8_t root[9][KR_HASH_LEN];
};

static void readme_tree_build(struct readme_tree *t)
{
    memset(t, 0, sizeof *t);
    struct mrk_frontier f;
    mrk_frontier_init(&f);
    for (size_t i = 0; i <= 8; i++) {
        assert_int_equal(from_hex(t->root[i], KR_HASH_LEN, readme_root_hex[i]), KR_HASH_LEN);
        if (i == 8)
            break;
        uint8_t data[16], leaf[KR_HASH_LEN];
        size_t len = from_hex(data, sizeof data, readme_leaf_hex[i]);
        kr_leaf_hash(leaf, data, len);
        mrk_frontier_append(&f, leaf, store_emit, &t->store);
    }
}

struct vec_ctx {
    struct readme_tree tree;
    int files;
    int passed;        /* wantErr false, and verified */
    int rejected;      /* wantErr true, and rejected */
    int malformed;     /* files with a value that is not a 32-byte hash */
    int cross_checked; /* happy paths whose proof we also generated */
    char text[VEC_FILE_MAX];
    char quoted[VEC_FILE_MAX + 256];
};

/* jansson keeps integers in a long long and rejects larger literals, and two
 * vectors carry leafIdx 2^64 - 1. Quote digit runs too long for a long long so
 * they reach vec_u64() as strings. (The vectors hold no negative or fractional
 * numbers, so this ignores those.) */
static void quote_long_numbers(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    bool in_string = false, escaped = false;
    for (size_t i = 0; in[i];) {
        assert_true(o + 3 < cap);
        char c = in[i];
        if (in_string) {
            out[o++] = c;
            i++;
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c >= '0' && c <= '9') {
            size_t j = i;
            while (in[j] >= '0' && in[j] <= '9')
                j++;
            bool quote = j - i > 18;
            assert_true(o + (j - i) + 3 < cap);
            if (quote)
                out[o++] = '"';
            memcpy(out + o, in + i, j - i);
            o += j - i;
            if (quote)
                out[o++] = '"';
            i = j;
        } else {
            in_string = c == '"';
            out[o++] = c;
            i++;
        }
    }
    out[o] = '\0';
}

static uint64_t vec_u64(const json_t *doc, const char *key, const char *path)
{
    const json_t *v = json_object_get(doc, key);
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < 0)
            fail_msg("%s: negative %s", path, key);
        return (uint64_t)x;
    }
    if (!json_is_string(v))
        fail_msg("%s: %s is not a number", path, key);
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        fail_msg("%s: %s is not a 64-bit number", path, key);
    return (uint64_t)x;
}

/* Decodes a base64 hash. A value that is not 32 bytes cannot be passed to the
 * API. Upstream's Go verifier rejects such a leaf hash, but hashes such proof
 * elements as they come and compares roots with bytes.Equal, and one vector
 * (equal sizes, the same 12-byte root twice) expects success. So a short value
 * stands in as a hash of its bytes under a tag: it equals no real node hash,
 * but equal values stay equal. Returns whether it was a 32-byte hash. */
static bool vec_hash(const json_t *v, uint8_t out[KR_HASH_LEN], const char *path)
{
    if (!json_is_string(v))
        fail_msg("%s: hash is not a string", path);
    const char *s = json_string_value(v);
    uint8_t buf[256];
    size_t len = 0;
    if (sodium_base642bin(buf, sizeof buf, s, strlen(s), NULL, &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        fail_msg("%s: bad base64 \"%s\"", path, s);
    if (len == KR_HASH_LEN) {
        memcpy(out, buf, KR_HASH_LEN);
        return true;
    }
    struct kr_sha256_ctx c;
    kr_sha256_init(&c);
    kr_sha256_update(&c, "not a hash", 10);
    kr_sha256_update(&c, buf, len);
    kr_sha256_final(&c, out);
    return false;
}

/* A proof array; null or absent is the empty proof. */
static bool vec_proof(const json_t *doc, struct proof *p, const char *path)
{
    const json_t *v = json_object_get(doc, "proof");
    p->n = 0;
    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_array(v) || json_array_size(v) > KR_PROOF_MAX)
        fail_msg("%s: proof is not an array of at most KR_PROOF_MAX", path);
    bool genuine = true;
    for (size_t i = 0; i < json_array_size(v); i++)
        genuine &= vec_hash(json_array_get(v, i), p->hash[p->n++], path);
    return genuine;
}

static bool vec_want_err(const json_t *doc, const char *path)
{
    const json_t *v = json_object_get(doc, "wantErr");
    if (!json_is_boolean(v))
        fail_msg("%s: wantErr is not a boolean", path);
    return json_is_true(v);
}

static void vec_outcome(struct vec_ctx *vc, const char *path, bool want_err, bool genuine,
                        kr_err rc)
{
    if (want_err == (rc == KR_OK))
        fail_msg("%s: wantErr %s but got %s", path, want_err ? "true" : "false", kr_errname(rc));
    if (!genuine && !want_err)
        print_message("note: %s passes with a value that is not a 32-byte hash\n", path);
    vc->malformed += !genuine;
    if (want_err)
        vc->rejected++;
    else
        vc->passed++;
}

static void run_inclusion_vector(struct vec_ctx *vc, const json_t *doc, const char *path)
{
    uint64_t index = vec_u64(doc, "leafIdx", path);
    uint64_t size = vec_u64(doc, "treeSize", path);
    uint8_t root[KR_HASH_LEN], leaf[KR_HASH_LEN];
    static struct proof p;
    bool leaf_ok = vec_hash(json_object_get(doc, "leafHash"), leaf, path);
    bool genuine = vec_hash(json_object_get(doc, "root"), root, path);
    genuine &= vec_proof(doc, &p, path) && leaf_ok;
    bool want_err = vec_want_err(doc, path);
    /* A leaf hash of the wrong size is rejected before verification, as
     * upstream does. */
    kr_err rc = KR_ECORRUPT;
    if (leaf_ok)
        rc = mrk_verify_inclusion(leaf, index, size, (const uint8_t(*)[KR_HASH_LEN])p.hash, p.n,
                                  root);
    vec_outcome(vc, path, want_err, genuine, rc);

    /* A happy path over the README tree: we must generate the same proof. */
    if (!want_err && size <= 8 && memcmp(root, vc->tree.root[size], KR_HASH_LEN) == 0) {
        uint8_t got[KR_PROOF_MAX][KR_HASH_LEN];
        size_t n;
        vc->tree.store.limit = size;
        assert_int_equal(
            mrk_inclusion_proof(store_get, &vc->tree.store, index, size, got, KR_PROOF_MAX, &n),
            KR_OK);
        assert_int_equal(n, p.n);
        assert_memory_equal(got, p.hash, n * KR_HASH_LEN);
        vc->cross_checked++;
    }
}

static void run_consistency_vector(struct vec_ctx *vc, const json_t *doc, const char *path)
{
    uint64_t size1 = vec_u64(doc, "size1", path);
    uint64_t size2 = vec_u64(doc, "size2", path);
    uint8_t root1[KR_HASH_LEN], root2[KR_HASH_LEN];
    static struct proof p;
    bool genuine = vec_hash(json_object_get(doc, "root1"), root1, path);
    genuine &= vec_hash(json_object_get(doc, "root2"), root2, path);
    genuine &= vec_proof(doc, &p, path);
    bool want_err = vec_want_err(doc, path);
    kr_err rc = mrk_verify_consistency(size1, size2, root1, root2,
                                       (const uint8_t(*)[KR_HASH_LEN])p.hash, p.n);
    vec_outcome(vc, path, want_err, genuine, rc);

    if (!want_err && size2 <= 8 && memcmp(root1, vc->tree.root[size1], KR_HASH_LEN) == 0 &&
        memcmp(root2, vc->tree.root[size2], KR_HASH_LEN) == 0) {
        uint8_t got[KR_PROOF_MAX][KR_HASH_LEN];
        size_t n;
        vc->tree.store.limit = size2;
        assert_int_equal(
            mrk_consistency_proof(store_get, &vc->tree.store, size1, size2, got, KR_PROOF_MAX, &n),
            KR_OK);
        assert_int_equal(n, p.n);
        assert_memory_equal(got, p.hash, n * KR_HASH_LEN);
        vc->cross_checked++;
    }
}

typedef void (*vec_run_fn)(struct vec_ctx *vc, const json_t *doc, const char *path);

static void run_vector_file(struct vec_ctx *vc, const char *path, vec_run_fn run)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fail_msg("%s: %s", path, strerror(errno));
        return;
    }
    size_t len = fread(vc->text, 1, sizeof vc->text - 1, fp);
    assert_true(feof(fp) && !ferror(fp));
    fclose(fp);
    vc->text[len] = '\0';
    quote_long_numbers(vc->text, vc->quoted, sizeof vc->quoted);
    json_error_t jerr;
    json_t *doc = json_loads(vc->quoted, 0, &jerr);
    if (!json_is_object(doc))
        fail_msg("%s:%d: %s", path, jerr.line, jerr.text);
    run(vc, doc, path);
    json_decref(doc);
    vc->files++;
}

static void walk_vectors(struct vec_ctx *vc, const char *dir, int depth, vec_run_fn run)
{
    assert_true(depth <= VEC_DEPTH_MAX);
    DIR *d = opendir(dir);
    if (!d) {
        fail_msg("%s: %s", dir, strerror(errno));
        return; /* fail_msg() does not return; this tells the analyzer */
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[KR_PATH_MAX];
        int w = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        assert_true(w > 0 && (size_t)w < sizeof path);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        size_t nlen = strlen(e->d_name);
        if (S_ISDIR(st.st_mode))
            walk_vectors(vc, path, depth + 1, run);
        else if (nlen > 5 && strcmp(e->d_name + nlen - 5, ".json") == 0)
            run_vector_file(vc, path, run);
    }
    closedir(d);
}

static void test_vectors(void **state)
{
    (void)state;
    static struct vec_ctx vc;
    memset(&vc, 0, sizeof vc);
    readme_tree_build(&vc.tree);
    walk_vectors(&vc, KR_SOURCE_DIR "/tests/vectors/rfc6962/inclusion", 0, run_inclusion_vector);
    int inclusion_files = vc.files;
    walk_vectors(&vc, KR_SOURCE_DIR "/tests/vectors/rfc6962/consistency", 0,
                 run_consistency_vector);
    print_message("vectors: %d inclusion + %d consistency files, %d verified, %d rejected, "
                  "%d with malformed hashes, %d proofs regenerated\n",
                  inclusion_files, vc.files - inclusion_files, vc.passed, vc.rejected, vc.malformed,
                  vc.cross_checked);
    assert_true(vc.files > VEC_FILES_MIN);
    assert_true(inclusion_files > 0 && vc.files > inclusion_files);
    assert_true(vc.passed > 0 && vc.rejected > 0 && vc.cross_checked > 0);
}

/* ---- Roots ---- */

static void test_readme_roots(void **state)
{
    (void)state;
    static struct store s;
    memset(&s, 0, sizeof s);
    struct mrk_frontier f;
    mrk_frontier_init(&f);
    uint8_t expect[KR_HASH_LEN], got[KR_HASH_LEN];
    for (size_t size = 0; size <= 8; size++) {
        assert_int_equal(from_hex(expect, sizeof expect, readme_root_hex[size]), KR_HASH_LEN);
        mrk_frontier_root(&f, got);
        assert_memory_equal(got, expect, KR_HASH_LEN);
        s.limit = size;
        assert_int_equal(mrk_root(store_get, &s, size, got), KR_OK);
        assert_memory_equal(got, expect, KR_HASH_LEN);
        if (size == 8)
            break;
        uint8_t data[16], leaf[KR_HASH_LEN];
        size_t len = from_hex(data, sizeof data, readme_leaf_hex[size]);
        kr_leaf_hash(leaf, data, len);
        mrk_frontier_append(&f, leaf, store_emit, &s);
    }
    /* 8 leaves: 2 * 8 - popcount(8) nodes, emitted in post-order (store_emit). */
    assert_int_equal(s.count, 15);
    assert_int_equal(f.size, 8);
    /* root(f) == node[3] when the size is a power of two; out may alias f. */
    mrk_frontier_root(&f, f.node[0]);
    assert_memory_equal(f.node[0], f.node[3], KR_HASH_LEN);
}

/* ---- Post-order numbering ---- */

static void count_emit(void *ctx, unsigned level, uint64_t index, const uint8_t hash[KR_HASH_LEN])
{
    (void)hash;
    uint64_t *count = ctx;
    assert_int_equal(mrk_postorder(level, index), *count);
    (*count)++;
}

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: reproducible, no global state. */
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void test_postorder(void **state)
{
    (void)state;
    /* Brute force: the emit order of 5000 appends is post-order by definition. */
    struct mrk_frontier f;
    mrk_frontier_init(&f);
    uint64_t count = 0;
    uint8_t leaf[KR_HASH_LEN] = {0};
    for (uint64_t i = 0; i < 5000; i++)
        mrk_frontier_append(&f, leaf, count_emit, &count);
    assert_int_equal(count, 2 * 5000 - (uint64_t)__builtin_popcountll(5000));

    /* Large values against a second formula: the node completes right after
     * its last leaf L, which is leaf number 2L - popcount(L), and after the
     * nodes at levels 1..level-1 above L. */
    uint64_t seed = 1;
    for (int i = 0; i < 100000; i++) {
        /* The first 64 take the largest index at each level. */
        unsigned level = i < 64 ? (unsigned)i : (unsigned)(rng_next(&seed) % 64);
        uint64_t max_index = UINT64_MAX >> level >> 1; /* (index + 1) << level <= 2^63 */
        uint64_t index = i < 64 ? max_index : rng_next(&seed) & max_index;
        uint64_t last = ((index + 1) << level) - 1;
        assert_int_equal(mrk_postorder(level, index),
                         2 * last - (uint64_t)__builtin_popcountll(last) + level);
        if (level == 0)
            assert_int_equal(mrk_postorder(0, index),
                             2 * index - (uint64_t)__builtin_popcountll(index));
    }
    assert_int_equal(mrk_postorder(63, 0), UINT64_MAX - 1);
}

/* ---- Proofs against the reference ---- */

struct ref_tree {
    uint8_t leaf[REF_MAX][KR_HASH_LEN];
    uint8_t root[REF_MAX + 1][KR_HASH_LEN];
    struct store store;
};

static void ref_tree_build(struct ref_tree *t)
{
    memset(t, 0, sizeof *t);
    struct mrk_frontier f;
    mrk_frontier_init(&f);
    for (uint64_t i = 0; i <= REF_MAX; i++) {
        uint8_t got[KR_HASH_LEN];
        ref_mth((const uint8_t(*)[KR_HASH_LEN])t->leaf, i, t->root[i]);
        mrk_frontier_root(&f, got);
        assert_memory_equal(got, t->root[i], KR_HASH_LEN);
        if (i == REF_MAX)
            break;
        test_leaf(t->leaf[i], i);
        mrk_frontier_append(&f, t->leaf[i], store_emit, &t->store);
    }
}

static kr_err verify_incl(const struct ref_tree *t, uint64_t index, uint64_t size,
                          const struct proof *p, const uint8_t root[KR_HASH_LEN])
{
    return mrk_verify_inclusion(t->leaf[index % REF_MAX], index, size,
                                (const uint8_t(*)[KR_HASH_LEN])p->hash, p->n, root);
}

/* The proof verifies, and fails when anything changes, unless the change
 * keeps its shape (which the RFC algorithm cannot tell apart). Returns how
 * many changed sizes or indices legitimately still verified. */
static int check_inclusion(const struct ref_tree *t, uint64_t index, uint64_t size, struct proof *p)
{
    const uint8_t *root = t->root[size];
    assert_int_equal(verify_incl(t, index, size, p, root), KR_OK);

    for (size_t i = 0; i < p->n; i++) {
        uint8_t bit = (uint8_t)(1u << (i % 8));
        p->hash[i][(i * 7) % KR_HASH_LEN] ^= bit;
        assert_int_equal(verify_incl(t, index, size, p, root), KR_ECORRUPT);
        p->hash[i][(i * 7) % KR_HASH_LEN] ^= bit;
    }
    uint8_t bad_root[KR_HASH_LEN];
    memcpy(bad_root, root, KR_HASH_LEN);
    bad_root[31] ^= 0x80;
    assert_int_equal(verify_incl(t, index, size, p, bad_root), KR_ECORRUPT);
    if (size > 1) /* another leaf at the same position */
        assert_int_equal(mrk_verify_inclusion(t->leaf[(index + 1) % size], index, size,
                                              (const uint8_t(*)[KR_HASH_LEN])p->hash, p->n, root),
                         KR_ECORRUPT);

    int same_shape = 0;
    const uint64_t other_index[] = {index - 1, index + 1, index ^ 1, index ^ 2, index + size};
    for (size_t i = 0; i < sizeof other_index / sizeof other_index[0]; i++) {
        uint64_t j = other_index[i];
        if (j == index || j > UINT64_MAX / 2)
            continue;
        bool fits = inclusion_shape_fits(p->shape, j, size);
        if (j < size) /* the path's shape spells out the index */
            assert_false(fits);
        kr_err rc = mrk_verify_inclusion(t->leaf[index], j, size,
                                         (const uint8_t(*)[KR_HASH_LEN])p->hash, p->n, root);
        assert_int_equal(rc, fits ? KR_OK : KR_ECORRUPT);
        same_shape += fits;
    }
    const uint64_t other_size[] = {size - 1, size + 1, size + 2, 2 * size, size / 2, 0};
    for (size_t i = 0; i < sizeof other_size / sizeof other_size[0]; i++) {
        uint64_t s = other_size[i];
        if (s == size)
            continue;
        bool fits = inclusion_shape_fits(p->shape, index, s);
        assert_int_equal(verify_incl(t, index, s, p, root), fits ? KR_OK : KR_ECORRUPT);
        same_shape += fits;
    }

    /* Truncated and extended. */
    if (p->n > 0) {
        p->n--;
        assert_int_equal(verify_incl(t, index, size, p, root), KR_ECORRUPT);
        p->n++;
    }
    memcpy(p->hash[p->n], p->n > 0 ? p->hash[p->n - 1] : root, KR_HASH_LEN);
    p->n++;
    assert_int_equal(verify_incl(t, index, size, p, root), KR_ECORRUPT);
    memset(p->hash[p->n - 1], 0, KR_HASH_LEN);
    assert_int_equal(verify_incl(t, index, size, p, root), KR_ECORRUPT);
    p->n--;
    return same_shape;
}

static kr_err verify_cons(const struct proof *p, uint64_t size1, uint64_t size2,
                          const uint8_t root1[KR_HASH_LEN], const uint8_t root2[KR_HASH_LEN])
{
    return mrk_verify_consistency(size1, size2, root1, root2,
                                  (const uint8_t(*)[KR_HASH_LEN])p->hash, p->n);
}

static int check_consistency(const struct ref_tree *t, uint64_t m, uint64_t n, struct proof *p)
{
    const uint8_t *r1 = t->root[m], *r2 = t->root[n];
    if (m == 0) {
        /* Nothing to prove from the empty tree; the vectors reject it. */
        assert_int_equal(verify_cons(p, m, n, r1, r2), KR_ECORRUPT);
        return 0;
    }
    assert_int_equal(verify_cons(p, m, n, r1, r2), KR_OK);
    if (m == n) {
        uint8_t other[KR_HASH_LEN];
        memcpy(other, r1, KR_HASH_LEN);
        other[0] ^= 1;
        assert_int_equal(verify_cons(p, m, n, r1, other), KR_ECORRUPT);
        memcpy(p->hash[0], r1, KR_HASH_LEN);
        p->n = 1;
        assert_int_equal(verify_cons(p, m, n, r1, r2), KR_ECORRUPT);
        p->n = 0;
        return 0;
    }

    for (size_t i = 0; i < p->n; i++) {
        uint8_t bit = (uint8_t)(1u << (i % 8));
        p->hash[i][(i * 5) % KR_HASH_LEN] ^= bit;
        assert_int_equal(verify_cons(p, m, n, r1, r2), KR_ECORRUPT);
        p->hash[i][(i * 5) % KR_HASH_LEN] ^= bit;
    }
    assert_int_equal(verify_cons(p, m, n, r2, r1), KR_ECORRUPT);
    assert_int_equal(verify_cons(p, m, n, r1, r1), KR_ECORRUPT);
    assert_int_equal(verify_cons(p, m, n, r2, r2), KR_ECORRUPT);
    assert_int_equal(verify_cons(p, n, m, r1, r2), KR_ECORRUPT);

    int same_shape = 0;
    const uint64_t other[][2] = {{m - 1, n}, {m + 1, n},     {m, n - 1},     {m, n + 1},
                                 {m, 2 * n}, {2 * m, 2 * n}, {m + 1, n + 1}, {0, n}};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        uint64_t s1 = other[i][0], s2 = other[i][1];
        if (s1 == m && s2 == n)
            continue;
        bool fits = consistency_shape_fits(p->shape, s1, s2);
        assert_int_equal(verify_cons(p, s1, s2, r1, r2), fits ? KR_OK : KR_ECORRUPT);
        same_shape += fits;
    }

    p->n--;
    assert_int_equal(verify_cons(p, m, n, r1, r2), KR_ECORRUPT);
    p->n++;
    /* Dropping the first element. */
    struct proof q = *p;
    memmove(q.hash[0], q.hash[1], (q.n - 1) * KR_HASH_LEN);
    q.n--;
    assert_int_equal(verify_cons(&q, m, n, r1, r2), KR_ECORRUPT);
    /* Prepending root1, appending a copy or zeros. */
    q = *p;
    memmove(q.hash[1], q.hash[0], q.n * KR_HASH_LEN);
    memcpy(q.hash[0], r1, KR_HASH_LEN);
    q.n++;
    assert_int_equal(verify_cons(&q, m, n, r1, r2), KR_ECORRUPT);
    q = *p;
    memcpy(q.hash[q.n], q.hash[q.n - 1], KR_HASH_LEN);
    q.n++;
    assert_int_equal(verify_cons(&q, m, n, r1, r2), KR_ECORRUPT);
    memset(q.hash[q.n - 1], 0, KR_HASH_LEN);
    assert_int_equal(verify_cons(&q, m, n, r1, r2), KR_ECORRUPT);
    return same_shape;
}

static void test_proofs_against_reference(void **state)
{
    (void)state;
    static struct ref_tree t;
    ref_tree_build(&t);
    const uint8_t(*leaf)[KR_HASH_LEN] = (const uint8_t(*)[KR_HASH_LEN])t.leaf;
    static struct proof want, got;
    int incl_same_shape = 0, cons_same_shape = 0, proofs = 0;

    for (uint64_t size = 1; size <= REF_MAX; size++) {
        uint8_t root[KR_HASH_LEN];
        t.store.limit = size;
        assert_int_equal(mrk_root(store_get, &t.store, size, root), KR_OK);
        assert_memory_equal(root, t.root[size], KR_HASH_LEN);

        for (uint64_t index = 0; index < size; index++) {
            ref_inclusion(index, leaf, size, &want);
            assert_int_equal(mrk_inclusion_proof(store_get, &t.store, index, size, got.hash,
                                                 KR_PROOF_MAX, &got.n),
                             KR_OK);
            assert_int_equal(got.n, want.n);
            assert_memory_equal(got.hash, want.hash, want.n * KR_HASH_LEN);
            if (want.n > 0) {
                assert_int_equal(mrk_inclusion_proof(store_get, &t.store, index, size, got.hash,
                                                     want.n - 1, &got.n),
                                 KR_ETOOLARGE);
                assert_int_equal(got.n, 0);
            }
            incl_same_shape += check_inclusion(&t, index, size, &want);
            proofs++;
        }
        assert_int_equal(
            mrk_inclusion_proof(store_get, &t.store, size, size, got.hash, KR_PROOF_MAX, &got.n),
            KR_EINVAL);

        for (uint64_t size1 = 0; size1 <= size; size1++) {
            ref_consistency(size1, leaf, size, &want);
            assert_int_equal(mrk_consistency_proof(store_get, &t.store, size1, size, got.hash,
                                                   KR_PROOF_MAX, &got.n),
                             KR_OK);
            assert_int_equal(got.n, want.n);
            assert_memory_equal(got.hash, want.hash, want.n * KR_HASH_LEN);
            if (want.n > 0)
                assert_int_equal(mrk_consistency_proof(store_get, &t.store, size1, size, got.hash,
                                                       want.n - 1, &got.n),
                                 KR_ETOOLARGE);
            cons_same_shape += check_consistency(&t, size1, size, &want);
            proofs++;
        }
        assert_int_equal(mrk_consistency_proof(store_get, &t.store, size + 1, size, got.hash,
                                               KR_PROOF_MAX, &got.n),
                         KR_EINVAL);
    }
    print_message("proofs: %d checked; a changed size or index still verified (same path "
                  "shape) %d times for inclusion, %d for consistency\n",
                  proofs, incl_same_shape, cons_same_shape);
}

static void test_subtree_hash(void **state)
{
    (void)state;
    static struct ref_tree t;
    ref_tree_build(&t);
    t.store.limit = REF_MAX;
    for (uint64_t begin = 0; begin <= 64; begin++) {
        for (uint64_t end = begin; end <= REF_MAX; end++) {
            uint64_t n = end - begin, top = 1;
            while (top * 2 <= n)
                top *= 2;
            uint8_t got[KR_HASH_LEN], want[KR_HASH_LEN];
            kr_err rc = mrk_subtree_hash(store_get, &t.store, begin, end, got);
            if (n > 0 && begin % top != 0) {
                assert_int_equal(rc, KR_EINVAL);
                continue;
            }
            assert_int_equal(rc, KR_OK);
            ref_mth((const uint8_t(*)[KR_HASH_LEN])t.leaf + begin, n, want);
            assert_memory_equal(got, want, KR_HASH_LEN);
        }
    }
    uint8_t out[KR_HASH_LEN];
    assert_int_equal(mrk_subtree_hash(store_get, &t.store, 5, 4, out), KR_EINVAL);
}

/* ---- Merging independently computed chunks ---- */

/* Emits a chunk-local node as the node it is in the whole tree. */
struct chunk_ctx {
    struct store *store;
    unsigned log2;  /* the chunk holds 2^log2 leaves */
    uint64_t chunk; /* its index */
};

static void chunk_emit(void *ctx, unsigned level, uint64_t index, const uint8_t hash[KR_HASH_LEN])
{
    struct chunk_ctx *c = ctx;
    assert_true(level <= c->log2);
    store_emit(c->store, level, (c->chunk << (c->log2 - level)) + index, hash);
}

static void assert_frontier_equal(const struct mrk_frontier *a, const struct mrk_frontier *b)
{
    assert_int_equal(a->size, b->size);
    for (unsigned l = 0; l < 64; l++)
        if (a->size & ((uint64_t)1 << l))
            assert_memory_equal(a->node[l], b->node[l], KR_HASH_LEN);
    uint8_t ra[KR_HASH_LEN], rb[KR_HASH_LEN];
    mrk_frontier_root(a, ra);
    mrk_frontier_root(b, rb);
    assert_memory_equal(ra, rb, KR_HASH_LEN);
}

static void test_merge_chunks(void **state)
{
    (void)state;
    static struct ref_tree t;
    ref_tree_build(&t);
    static struct store a, b;
    struct mrk_frontier fa, fb;

    memset(&a, 0, sizeof a);
    mrk_frontier_init(&fa);
    for (uint64_t i = 0; i < REF_MAX; i++)
        mrk_frontier_append(&fa, t.leaf[i], store_emit, &a);

    const unsigned logs[] = {0, 1, 2, 3, 5, 7};
    for (size_t li = 0; li < sizeof logs / sizeof logs[0]; li++) {
        unsigned k = logs[li];
        uint64_t chunk_size = (uint64_t)1 << k, chunks = REF_MAX >> k;
        memset(&b, 0, sizeof b);
        mrk_frontier_init(&fb);
        for (uint64_t c = 0; c < chunks; c++) {
            struct mrk_frontier fc;
            mrk_frontier_init(&fc);
            struct chunk_ctx cc = {&b, k, c};
            for (uint64_t i = 0; i < chunk_size; i++)
                mrk_frontier_append(&fc, t.leaf[c * chunk_size + i], chunk_emit, &cc);
            assert_int_equal(fc.size, chunk_size);
            assert_int_equal(mrk_frontier_append_subtree(&fb, k, fc.node[k], store_emit, &b),
                             KR_OK);
        }
        for (uint64_t i = chunks * chunk_size; i < REF_MAX; i++)
            mrk_frontier_append(&fb, t.leaf[i], store_emit, &b);
        assert_frontier_equal(&fa, &fb);
        assert_int_equal(b.count, a.count);
        assert_memory_equal(b.node, a.node, a.count * KR_HASH_LEN);
    }

    /* Subtrees of mixed sizes, at random aligned levels, without emit. */
    uint64_t seed = 7;
    for (int round = 0; round < 200; round++) {
        mrk_frontier_init(&fb);
        while (fb.size < REF_MAX) {
            unsigned max = fb.size ? (unsigned)__builtin_ctzll(fb.size) : 63;
            while (fb.size + ((uint64_t)1 << max) > REF_MAX)
                max--;
            unsigned level = (unsigned)(rng_next(&seed) % (max + 1));
            uint8_t h[KR_HASH_LEN];
            ref_mth((const uint8_t(*)[KR_HASH_LEN])t.leaf + fb.size, (uint64_t)1 << level, h);
            assert_int_equal(mrk_frontier_append_subtree(&fb, level, h, NULL, NULL), KR_OK);
        }
        assert_frontier_equal(&fa, &fb);
    }
}

static void test_frontier_errors(void **state)
{
    (void)state;
    struct mrk_frontier f, before;
    uint8_t h[KR_HASH_LEN] = {1};
    mrk_frontier_init(&f);
    mrk_frontier_append(&f, h, NULL, NULL);
    mrk_frontier_append(&f, h, NULL, NULL);
    before = f;
    assert_int_equal(mrk_frontier_append_subtree(&f, 2, h, NULL, NULL), KR_EINVAL);
    assert_int_equal(mrk_frontier_append_subtree(&f, 64, h, NULL, NULL), KR_EINVAL);
    assert_memory_equal(&f, &before, sizeof f);
    assert_int_equal(mrk_frontier_append_subtree(&f, 1, h, NULL, NULL), KR_OK);
    assert_int_equal(f.size, 4);

    /* 2^64 - 8 leaves: one more subtree of 8 would make 2^64. */
    mrk_frontier_init(&f);
    f.size = UINT64_MAX << 3;
    before = f;
    assert_int_equal(mrk_frontier_append_subtree(&f, 3, h, NULL, NULL), KR_ETOOLARGE);
    assert_memory_equal(&f, &before, sizeof f);
    assert_int_equal(mrk_frontier_append_subtree(&f, 2, h, NULL, NULL), KR_OK);
    assert_int_equal(mrk_frontier_append_subtree(&f, 1, h, NULL, NULL), KR_OK);
    assert_int_equal(mrk_frontier_append_subtree(&f, 0, h, NULL, NULL), KR_OK);
    assert_int_equal(f.size, UINT64_MAX);
    assert_int_equal(mrk_frontier_append_subtree(&f, 0, h, NULL, NULL), KR_ETOOLARGE);
    assert_int_equal(f.size, UINT64_MAX);

    mrk_frontier_init(&f);
    assert_int_equal(mrk_frontier_append_subtree(&f, 63, h, NULL, NULL), KR_OK);
    assert_int_equal(mrk_frontier_append_subtree(&f, 63, h, NULL, NULL), KR_ETOOLARGE);
    assert_int_equal(mrk_frontier_append_subtree(&f, 62, h, NULL, NULL), KR_OK);
    uint8_t root[KR_HASH_LEN], want[KR_HASH_LEN];
    mrk_frontier_root(&f, root);
    kr_node_hash(want, h, h);
    assert_memory_equal(root, want, KR_HASH_LEN);
}

static void test_verify_arguments(void **state)
{
    (void)state;
    uint8_t h[KR_HASH_LEN] = {0};
    uint8_t proof[1][KR_HASH_LEN] = {{0}};
    const uint8_t(*cp)[KR_HASH_LEN] = (const uint8_t(*)[KR_HASH_LEN])proof;
    assert_int_equal(mrk_verify_inclusion(NULL, 0, 1, NULL, 0, h), KR_EINVAL);
    assert_int_equal(mrk_verify_inclusion(h, 0, 1, NULL, 0, NULL), KR_EINVAL);
    assert_int_equal(mrk_verify_inclusion(h, 0, 2, NULL, 1, h), KR_EINVAL);
    assert_int_equal(mrk_verify_inclusion(h, 0, 1, NULL, 0, h), KR_OK);
    assert_int_equal(mrk_verify_inclusion(h, 1, 1, NULL, 0, h), KR_ECORRUPT);
    assert_int_equal(mrk_verify_inclusion(h, 0, 0, NULL, 0, h), KR_ECORRUPT);
    assert_int_equal(mrk_verify_inclusion(h, 0, 1, cp, 1, h), KR_ECORRUPT);
    assert_int_equal(mrk_verify_consistency(1, 2, NULL, h, cp, 1), KR_EINVAL);
    assert_int_equal(mrk_verify_consistency(1, 2, h, NULL, cp, 1), KR_EINVAL);
    assert_int_equal(mrk_verify_consistency(1, 2, h, h, NULL, 1), KR_EINVAL);
    assert_int_equal(mrk_verify_consistency(1, 1, h, h, NULL, 0), KR_OK);
    assert_int_equal(mrk_verify_consistency(0, 0, h, h, NULL, 0), KR_ECORRUPT);
    assert_int_equal(mrk_verify_consistency(2, 1, h, h, NULL, 0), KR_ECORRUPT);
    assert_int_equal(mrk_verify_consistency(1, 2, h, h, NULL, 0), KR_ECORRUPT);
}

/* ---- Trees of up to 2^64 - 1 leaves ---- */

/* All leaves equal, so the perfect subtree of 2^l leaves has the same root
 * h[l] wherever it is, and trees of any size can be stored in 64 hashes. */
struct uniform {
    uint8_t h[64][KR_HASH_LEN];
    uint64_t limit;
    int reads;
};

static kr_err uniform_get(void *ctx, unsigned level, uint64_t index, uint8_t out[KR_HASH_LEN])
{
    struct uniform *u = ctx;
    assert_true(level < 64);
    assert_true(index < (u->limit >> level));
    memcpy(out, u->h[level], KR_HASH_LEN);
    u->reads++;
    return KR_OK;
}

static void uniform_root(struct uniform *u, uint64_t size, uint8_t out[KR_HASH_LEN])
{
    u->limit = size;
    assert_int_equal(mrk_root(uniform_get, u, size, out), KR_OK);
    /* The same from a frontier of subtrees, largest first. */
    struct mrk_frontier f;
    mrk_frontier_init(&f);
    for (int l = 63; l >= 0; l--)
        if (size & ((uint64_t)1 << l))
            assert_int_equal(mrk_frontier_append_subtree(&f, (unsigned)l, u->h[l], NULL, NULL),
                             KR_OK);
    uint8_t fr[KR_HASH_LEN];
    mrk_frontier_root(&f, fr);
    assert_memory_equal(fr, out, KR_HASH_LEN);
}

static void test_huge_trees(void **state)
{
    (void)state;
    static struct uniform u;
    kr_leaf_hash(u.h[0], "x", 1);
    for (int l = 1; l < 64; l++)
        kr_node_hash(u.h[l], u.h[l - 1], u.h[l - 1]);

    const uint64_t sizes[] = {UINT64_MAX,
                              UINT64_MAX - 1,
                              (uint64_t)1 << 63,
                              ((uint64_t)1 << 63) + 1,
                              ((uint64_t)1 << 63) - 1,
                              0x5555555555555555u,
                              0xaaaaaaaaaaaaaaaau,
                              ((uint64_t)1 << 40) + 3};
    uint64_t seed = 99;
    static uint8_t proof[KR_PROOF_MAX][KR_HASH_LEN];
    const uint8_t(*cp)[KR_HASH_LEN] = (const uint8_t(*)[KR_HASH_LEN])proof;
    size_t longest_consistency = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        uint64_t size = sizes[si];
        uint8_t root[KR_HASH_LEN];
        uniform_root(&u, size, root);
        const uint64_t idx[] = {
            0, 1, size / 2, size / 3, size - 2, size - 1, rng_next(&seed) % size};
        for (size_t i = 0; i < sizeof idx / sizeof idx[0]; i++) {
            size_t n;
            u.limit = size;
            u.reads = 0;
            assert_int_equal(
                mrk_inclusion_proof(uniform_get, &u, idx[i], size, proof, KR_PROOF_MAX, &n), KR_OK);
            assert_true(n <= 64 && u.reads <= 128);
            assert_int_equal(mrk_verify_inclusion(u.h[0], idx[i], size, cp, n, root), KR_OK);
        }
        const uint64_t size1[] = {1,        2,        3,        size / 2,
                                  size / 3, size - 2, size - 1, rng_next(&seed) % size + 1};
        for (size_t i = 0; i < sizeof size1 / sizeof size1[0]; i++) {
            uint8_t root1[KR_HASH_LEN];
            size_t n;
            uniform_root(&u, size1[i], root1);
            u.limit = size;
            u.reads = 0;
            assert_int_equal(
                mrk_consistency_proof(uniform_get, &u, size1[i], size, proof, KR_PROOF_MAX, &n),
                KR_OK);
            assert_true(n <= 65 && u.reads <= 130);
            if (n > longest_consistency)
                longest_consistency = n;
            assert_int_equal(mrk_verify_consistency(size1[i], size, root1, root, cp, n), KR_OK);
        }
    }
    assert_true(longest_consistency >= 60);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),         cmocka_unit_test(test_readme_roots),
        cmocka_unit_test(test_postorder),       cmocka_unit_test(test_proofs_against_reference),
        cmocka_unit_test(test_subtree_hash),    cmocka_unit_test(test_merge_chunks),
        cmocka_unit_test(test_frontier_errors), cmocka_unit_test(test_verify_arguments),
        cmocka_unit_test(test_huge_trees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
