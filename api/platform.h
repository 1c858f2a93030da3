/*
 * platform.h: a tenant shard's importer of the platform journal (`kiroku
 * serve --nats URLS --shard S --platform`, setting cluster.platform).
 *
 * The platform shard (KR_PLATFORM_SHARD, projections/domain.h) is an
 * ordinary kiroku journal with its own stream, lease and nodes, where
 * operators publish notices, open, notify, update and resolve incidents
 * and manage operator accounts. Every tenant shard's primary follows it and
 * imports those records into its own journal, so its tenants and their
 * masters see them there and operators log in there with their platform
 * account (docs/operations.md, "The platform journal").
 *
 * How. The importer keeps a copy of the platform journal in DIR/platform: a
 * domain of its own opened without appends, kept level with the platform's
 * stream by an api_follower (follower.h), so every platform record is
 * verified exactly as a follower verifies it (signature, prev link,
 * checkpoint) before it is applied there. After each applied range the
 * importer thread reads the copy's new records in order and imports the
 * notice, incident and operator account records into the shard's domain
 * (dom_platform_import, projections/platform_import.h), resuming after the
 * highest origin the shard's views hold: each platform record is imported
 * once, across restarts and failovers (a new primary resumes from its views).
 *
 * Where the copy starts: DIR/platform must hold a journal restored from a
 * backup generation of the platform shard (kiroku backup on a platform
 * node, kiroku restore GEN --data DIR/platform), or the copy a previous
 * importer kept. Without one api_platform_start refuses with KR_ENOTFOUND
 * and a line saying what to restore. A copy holding a secret key file
 * (DIR/platform/keys/NAME.key: a backup carries the platform's signing key
 * and KEK) is refused with KR_EEXIST: a tenant shard must not hold the
 * platform's secrets, and the copy verifies with public keys only. A stream that no longer reaches
 * back to the copy's size stops the copy as it stops any follower (the backup needed is named).
 *
 * Operator accounts (platform_import.h) need the shard's tenant-0 data key
 * to be the platform's: one key for the deployment, shared through the
 * keyring (KIROKU_KEYS) by every `serve --nats`. A record that does not open
 * with it is skipped and counted (status `unreadable`), and stderr says once
 * what to do; an operator whose e-mail a local operator of the shard holds
 * is skipped, said on stderr.
 *
 * Faults. A platform record or checkpoint that does not verify stops the
 * copy (nothing after the last verified checkpoint is applied) and so the
 * importer: nothing after it is imported. An import that fails for a
 * passing reason (conflicts past the retries, storage full or busy) is
 * tried again after KR_PLATFORM_POLL_MS, said on stderr; one that fails
 * for another (the shard's journal stopped, a view that cannot apply it) stops
 * the importer too. Either way the status says the seq and why, the
 * `stopped` callback tells the owner, and the shard goes on serving its
 * tenants with what it imported.
 *
 * A shard's follower nodes keep their copy level too (copy_only), so that
 * a node promoted to primary resumes importing from a current copy.
 *
 * Threads: the follower's thread, the importer's own, and one NATS
 * connection for the shard map when the caller gives none; the status and
 * the endpoint from any thread.
 */
#ifndef KR_API_PLATFORM_H
#define KR_API_PLATFORM_H

#include "domain.h"
#include "kr_error.h"
#include "kr_limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kr_shardmap;

struct api_platform_options {
    const char *nats;             /* the NATS servers, "nats://h:p[,...]" (required; copied) */
    const char *dir;              /* the shard's data directory: the copy is DIR/platform */
    struct kr_domain *d;          /* the shard's domain, taking appends; must outlive it */
    struct kr_shardmap *m;        /* for the platform's endpoint; NULL = the importer
                                   * opens the map itself (without one, when the
                                   * bucket does not exist, the endpoint is not known) */
    const struct kr_clock *clock; /* the copy's domain clock; NULL = system */
    /* Keep the copy level only (a follower node of the shard, so that it
     * has a current copy when it is promoted): no importer, d unused (may
     * be NULL), nothing marked importing. */
    bool copy_only;
    /* Called once, on the importer's thread, when it stops on its own (a
     * fault); NULL = none. */
    void (*stopped)(void *arg);
    void *arg;
};

struct api_platform_status {
    uint64_t copied;   /* records in the platform copy (verified and applied) */
    uint64_t scanned;  /* the last platform seq the importer looked at */
    uint64_t origin;   /* the highest platform seq imported (the shard's views) */
    uint64_t imported; /* records imported since the start */
    /* operator account records skipped since the start because their sealed
     * fields do not open with the shard's tenant-0 key (not the platform's) */
    uint64_t unreadable;
    bool stopped; /* stopped by a fault: err, seq and what say why */
    kr_err err;
    uint64_t seq;   /* the platform record (or checkpoint size) the fault is at */
    char what[320]; /* the reason, for the operator */
};

struct api_platform;

/* Opens the copy in DIR/platform, marks d as importing (dom_set_importing:
 * the platform's ops are refused there naming the platform's endpoint),
 * starts the copy's follower and the importer. Errors, each with a line in
 * why (cap bytes): KR_ENOTFOUND (DIR/platform holds no journal: restore a
 * platform backup there), KR_EINVAL (bad URLs), the copy's open errors
 * (KR_EBUSY: another process has it), KR_EEXIST (a secret key in the
 * copy), KR_ENOMEM, KR_EIO. */
KR_MUST_CHECK kr_err api_platform_start(const struct api_platform_options *o,
                                        struct api_platform **out, char *why, size_t cap);

void api_platform_status(struct api_platform *p, struct api_platform_status *out);

/* The platform shard's client endpoint as the shard map has it (an empty
 * string when not known): dom_set_importing's callback, arg the importer. */
void api_platform_endpoint(void *p, char *out, size_t cap);

/* Stops the importer (an import under way finishes), the follower, closes
 * the copy and frees p. Call before closing d. Accepts NULL. */
void api_platform_stop(struct api_platform *p);

#endif
