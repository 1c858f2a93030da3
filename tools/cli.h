/*
 * cli.h: what the kiroku subcommands share: option parsing helpers, the data
 * directory default and output in text or JSON.
 */
#ifndef KR_CLI_H
#define KR_CLI_H

#include "clock.h"
#include "kr_error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Where the data lives when --data is not given: inside the working tree, so
 * the first run needs no set-up. KIROKU_DATA overrides it. */
#define CLI_DATA_DEFAULT "var/kiroku"

/* Exit codes: 0 success, 1 the checked thing is bad (verify found a fault),
 * 2 usage error, 3 operational error (could not open, I/O...). */
enum { CLI_OK = 0, CLI_BAD = 1, CLI_USAGE = 2, CLI_FAIL = 3 };

/* The options every command takes, for its getopt_long table. */
#define CLI_COMMON_OPTIONS                                                                         \
    {"data", required_argument, 0, 'd'}, {"json", no_argument, 0, 'j'},                            \
    {                                                                                              \
        "help", no_argument, 0, 'h'                                                                \
    }

/* What the common options set. */
struct cli_common {
    const char *data; /* --data, or NULL */
    bool json;        /* --json */
};

/* Returned by cli_common_option when parsing goes on. */
#define CLI_CONTINUE (-1)

/* Handles getopt_long's result c for a common option. Returns CLI_CONTINUE
 * after --data or --json, CLI_OK after printing usage for --help, and
 * CLI_USAGE after printing usage to stderr for anything else (an unknown or
 * malformed option). */
int cli_common_option(int c, const char *usage, struct cli_common *co);

/* Prints usage to stderr and returns CLI_USAGE. */
int cli_usage(const char *usage);

/* The data directory: --data value, else $KIROKU_DATA, else the default. */
const char *cli_data_dir(const char *flag);

/* Parses a decimal unsigned integer within [min, max]; false otherwise. */
bool cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Prints "kiroku: <what>: <error text>" to stderr and returns CLI_FAIL. */
int cli_fail(const char *what, kr_err err);

/* For a journal that could not be opened in dir: says what to do about the
 * common cases (none there, in use) and returns CLI_FAIL. */
int cli_fail_open(const char *dir, kr_err err);

/* Writes s as a JSON string literal (with quotes) to f, by the one escaper
 * (jsonmp_escape: invalid UTF-8 becomes \ufffd). */
void cli_json_str(FILE *f, const char *s, size_t len);

/* Monotonic seconds, for timing. */
double cli_now(void);

/* A fresh empty directory under $TMPDIR (or /tmp) into dir, for a scratch
 * journal of a benchmark. */
KR_MUST_CHECK kr_err cli_scratch_dir(char *dir, size_t cap);
/* Removes dir and everything under it (best effort; symlinks not followed). */
void cli_rmtree(const char *dir);

/* The clock a command runs on: the real one, or, when KIROKU_CLOCK_OFFSET
 * is set (clock.h, docs/operations.md), the real one plus that offset (or
 * starting at the instant "@SECONDS" names: kr_clock_override_parse), which
 * fills *oc and sets *out = &oc->clock (*out = NULL for real time). A
 * command that does not take the override passes allowed = false: then a set
 * variable is refused. On refusal or a malformed value prints why (naming
 * `what`) and returns false. */
bool cli_clock(const char *what, bool allowed, struct kr_offset_clock *oc,
               const struct kr_clock **out);

/* Subcommands: argc/argv start at the subcommand's own name. */
int cmd_init(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_seed(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_serve(int argc, char **argv);       /* cmd_serve.c */
int cmd_call(int argc, char **argv);        /* cmd_call.c */
int cmd_certs(int argc, char **argv);       /* cmd_certs.c */
int cmd_backup(int argc, char **argv);      /* cmd_backup.c: backup, backup list|check */
int cmd_restore(int argc, char **argv);     /* cmd_backup.c */
int cmd_retention(int argc, char **argv);   /* cmd_retention.c */
int cmd_maintenance(int argc, char **argv); /* cmd_retention.c */
int cmd_export(int argc, char **argv);      /* cmd_audit.c */
int cmd_audit(int argc, char **argv);       /* cmd_audit.c: audit verify, audit report */
int cmd_follow(int argc, char **argv);      /* cmd_follow.c */
int cmd_shards(int argc, char **argv);      /* cmd_shards.c: the shard map and leases */
int cmd_operators(int argc, char **argv);   /* cmd_operators.c: operators add, list */

/* Where `kiroku call` sends requests without --url: the client endpoint. */
#define CLI_CALL_URL_DEFAULT "tcp://127.0.0.1:7450"

/* `bench replay` and `bench query` (bench_domain.c); cmd_bench dispatches. */
int bench_replay(int argc, char **argv);
int bench_query(int argc, char **argv);
/* `bench api` (bench_api.c): the API server over tcp loopback. */
int bench_api(int argc, char **argv);
/* `bench backup` (cmd_backup.c): backup_run against mdb_copy -c, restore. */
int bench_backup(int argc, char **argv);
/* `bench follow` (bench_follow.c): a follower catching up with a stream. */
int bench_follow(int argc, char **argv);
/* `bench failover` (bench_failover.c): a primary killed, a node taking over. */
int bench_failover(int argc, char **argv);
/* `bench replicate` (bench_replicate.c): appends in async and quorum mode
 * against a 3-node NATS JetStream cluster. */
int bench_replicate(int argc, char **argv);

struct journal;
/* Appends `events` events of 200 bytes to j as `bench append` does (16
 * producers, 64 in flight each): a fast way to make a large journal. */
KR_MUST_CHECK kr_err bench_fill(struct journal *j, uint64_t events);
/* `bench append --producers P --window W --events N` on a temporary journal:
 * its events_per_s (the ceiling `bench api` prints its writes beside). */
KR_MUST_CHECK kr_err bench_append_rate(uint64_t events, unsigned producers, unsigned window,
                                       double *events_per_s);
/* What one `bench append` run on an open journal measured. */
struct bench_append_figures {
    uint64_t events; /* acknowledged */
    double seconds, events_per_s;
    uint32_t p50_us, p99_us; /* submission to completion */
    uint64_t failures;
    kr_err err; /* the first failed append's error, else KR_OK */
};
/* The `bench append` load (P producers, W in flight each, payload bytes) on
 * the open journal j, whatever its options (a publisher's hook included). */
KR_MUST_CHECK kr_err bench_append_on(struct journal *j, uint64_t events, unsigned producers,
                                     unsigned window, size_t payload,
                                     struct bench_append_figures *out);

/* ---- Demo data: cli_seed and its bounds are in seed.h ---- */

#endif
