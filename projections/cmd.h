/*
 * cmd.h: what command handlers share (internal to projections/). A handler
 * gets a `struct cmd`: the caller, the arguments, a read transaction over the
 * views, and the result writer. It decides events with cmd_event, appends
 * them with cmd_commit, and writes its result with the res_* helpers after
 * the commit succeeded.
 */
#ifndef KR_CMD_H
#define KR_CMD_H

#include "domain.h"

struct cmd_event {
    struct kr_payload *p;
    uint64_t tenant;
    uint64_t expected; /* the stream version the decision was made on */
    uint64_t seq;      /* set by cmd_commit (synchronous mode) */
    uint64_t version;  /* the stream's version after this event */
};

struct cmd {
    struct kr_domain *d;
    const struct kr_caller *who;
    const struct kr_payload *args;
    struct kr_diag *diag;
    MDB_txn *txn; /* read transaction over the views and the journal */
    uint64_t now; /* the domain clock when the command started (UTC ns) */
    bool async;   /* DOM_ASYNC: cmd_commit submits and returns */
    /* dom_exec_async: cmd_commit submits with this completion (one append) */
    dom_done_fn done;
    void *done_arg;
    bool submitted; /* cmd_commit submitted with done */
    msgpack_packer res;
    struct cmd_event ev[KR_CMD_EVENTS_MAX];
    size_t nev;
    struct kr_payload *scratch; /* for cmd_read */
};

typedef kr_err (*cmd_fn)(struct cmd *c);

/* Every op's handler, cmd_<op> ('.' as '_') in the module of its area
 * (cmd_<area>.c), declared from the schema's list (KR_OP_HANDLERS in the
 * generated schema_gen.h); domain.c's table maps op ids to them, so an op
 * without a handler is a link error naming the missing function. */
#define KR_CMD_DECLARE(name)        kr_err name(struct cmd *c)
#define KR_CMD_DECLARE_OP(op, name) KR_CMD_DECLARE(name);
KR_OP_HANDLERS(KR_CMD_DECLARE_OP)
#undef KR_CMD_DECLARE_OP

/* Sets *c->diag and returns err. */
kr_err cmd_fail(struct cmd *c, kr_err err, const char *field, const char *why);

/* A stored record that does not decode (d says what and where in it):
 * KR_ECORRUPT, with c's diagnostics naming the record's seq and event ("record
 * 42 (account.created): pd: does not open with the tenant's key"). The caller
 * gets `internal` (the details are for the operator: dom_exec_flags reports
 * them on stderr). */
kr_err cmd_corrupt(struct cmd *c, uint64_t seq, const char *event, const struct kr_diag *d);

/* A new event of type ev for tenant, decided on stream version `expected`
 * (0 = a new stream). Returns its payload to fill; NULL (KR_ENOMEM) if out
 * of memory or past KR_CMD_EVENTS_MAX. */
struct kr_payload *cmd_event(struct cmd *c, int ev, uint64_t tenant, uint64_t expected);

/* Encodes and appends the events as one atomic append. Personal fields are
 * sealed with each event's tenant key. KR_ECONFLICT if a stream moved on. */
KR_MUST_CHECK kr_err cmd_commit(struct cmd *c);

/* The tenant's data key (made when `create` and missing). */
KR_MUST_CHECK kr_err cmd_key(struct cmd *c, uint64_t tenant, bool create, struct kr_data_key *out);

/* Reads record seq and decodes it as event ev with its tenant's key into p
 * (personal fields opened). KR_ENOTFOUND if erased; KR_ECORRUPT (through
 * cmd_corrupt, so with the seq) if it does not decode. */
KR_MUST_CHECK kr_err cmd_read(struct cmd *c, uint64_t seq, int ev, struct kr_payload *p);

/* A fresh random 128-bit id. */
void cmd_new_id(struct cmd *c, uint8_t id[16]);

/* The version of stream "<prefix>/<hex id>" of tenant in the command's read
 * transaction (0 if none): the journal's stream index is where versions
 * live; views keep them only where a row changes with every event anyway. */
KR_MUST_CHECK kr_err cmd_stream_version(struct cmd *c, uint64_t tenant, const char *prefix,
                                        const uint8_t id[16], uint64_t *version);

/* The caller's permission check beyond the op's schema entry (e.g. a
 * permission an op needs only for some arguments). */
bool cmd_has_perm(const struct cmd *c, int perm);

/* Result writing. */
void res_map(struct cmd *c, uint32_t n);
void res_key(struct cmd *c, int fld);
void res_keyname(struct cmd *c, const char *name);
void res_val(struct cmd *c, int fld, const struct kr_value *v); /* key and value */
void res_u64(struct cmd *c, int fld, uint64_t x);
void res_bool(struct cmd *c, int fld, bool x);
void res_bytes(struct cmd *c, int fld, const void *p, size_t n);
void res_str(struct cmd *c, int fld, const char *s, size_t n);
void res_enum(struct cmd *c, int fld, uint64_t idx);
void res_nil(struct cmd *c, int fld);
/* The page's cursor: the last key's n bytes when there is more, else nil. */
void res_cursor(struct cmd *c, bool more, const void *last, size_t n);

/* Paging: the limit argument or KR_PAGE_DEFAULT. */
uint32_t cmd_limit(const struct cmd *c);

#endif
