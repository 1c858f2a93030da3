/*
 * kr_limits.h: every bound kiroku puts on inputs, buffers, lists and queues, in one
 * place, each with the reason for its value. Code checks against these names,
 * never against bare numbers.
 */
#ifndef KR_LIMITS_H
#define KR_LIMITS_H

/* ---- Records (journal/record.h) ---- */

/* A stream name ("contact/<32 hex>"): aggregate type, '/', a 128-bit id in hex,
 * with room for longer aggregate names. Also bounds the LMDB key of the stream
 * index well below LMDB's 511-byte key limit. */
#define KR_STREAM_MAX 128
/* An event type ("account.password_changed"): dotted lower-case words. */
#define KR_TYPE_MAX 64
/* An actor id ("account/<32 hex>", "operator/<32 hex>", "system"). */
#define KR_ACTOR_MAX 64
/* One event's payload. Events are facts, not files; 64 KiB holds any contact
 * with all its attributes, and keeps a commit batch's memory bounded. */
#define KR_PAYLOAD_MAX ((size_t)64 * 1024)
/* An encoded record header: fixed fields plus the three strings above. */
#define KR_HEADER_MAX 512u
/* An encoded record: header, payload, and msgpack framing. */
#define KR_RECORD_MAX (KR_HEADER_MAX + KR_PAYLOAD_MAX + 16u)

/* ---- E-mail addresses (projections/payload.c) ---- */

/* The local part of an addr-spec (RFC 5321 section 4.5.3.1.1). */
#define KR_EMAIL_LOCAL_MAX 64u
/* One label of its domain (RFC 1035 section 2.3.4). The whole address is bounded
 * by the email field's max in schemas/fields.json (254, RFC 5321). */
#define KR_EMAIL_LABEL_MAX 63u

/* ---- Appends and the writer (journal/journal.h) ---- */

/* Events in one atomic append. A command yields a handful of events; the bound
 * keeps the conflict check quadratic-safe and one append's memory small. */
#define KR_APPEND_MAX_EVENTS 256
/* Events in one write transaction. Bounds the writer's batch memory and the
 * latency a batch adds; at ~0.35 ms per fsync this allows >10M events/s. */
#define KR_BATCH_MAX_EVENTS 4096
/* Payload bytes in one write transaction, so a batch of large events still
 * commits in bounded time and memory. */
#define KR_BATCH_MAX_BYTES ((size_t)8 * 1024 * 1024)
/* Signer threads at most, whatever the core count: signing is CPU-bound, and
 * more threads than cores only take CPU time from the single writer. */
#define KR_SIGNERS_MAX 64
/* Events signed and waiting for the writer. Submitters block beyond it: this is
 * the journal's back-pressure, and it bounds queued memory. */
#define KR_QUEUE_MAX_EVENTS 65536

/* ---- Checkpoints (journal/note.h) ---- */

/* The origin line of a checkpoint ("kiroku/<32 hex>"). */
#define KR_ORIGIN_MAX 128
/* A whole signed note: origin, size, root, a few extension lines and up to
 * KR_NOTE_MAX_SIGS signature lines. */
#define KR_NOTE_MAX 2048u
/* Signature lines read from one note; the C2SP spec lets verifiers cap this. */
#define KR_NOTE_MAX_SIGS 16
/* Keep one checkpoint per this many records or nanoseconds, besides the newest. */
#define KR_CHECKPOINT_EVERY_RECORDS 10000u
#define KR_CHECKPOINT_EVERY_NS      1000000000ull
/* Records a writable open checks at most (decode, chain, tree, commitment,
 * signature) after the newest kept checkpoint: one is kept per
 * KR_CHECKPOINT_EVERY_RECORDS records or per second, and a batch may carry a
 * kept one past that by up to KR_BATCH_MAX_EVENTS. The cap keeps the start
 * bounded (well under a second) even if the checkpoints database lost entries. */
#define KR_START_CHECK_MAX (KR_CHECKPOINT_EVERY_RECORDS + KR_BATCH_MAX_EVENTS)
/* DIR/checkpoint trails the durable journal by at most this long, idle or
 * not: the writer rewrites it after a commit at most once per this interval,
 * and an idle writer with the file behind wakes to write it when the interval
 * since the last write is over. */
#define KR_CHECKPOINT_FILE_NS 1000000000ull

/* ---- Keys (journal/keys.h) ---- */

/* Signing keys a journal may have had: rotations are rare (yearly or on
 * compromise), so 1024 is far beyond need and keeps the key table a flat array. */
#define KR_KEYS_MAX 1024
/* Key ids jrn_new_epoch tries when the key hook finds each taken by another
 * node's key (jrn_key_hook: KR_EEXIST). */
#define KR_KEY_MADE_TRIES 64u
/* Discarded records an old primary names on stderr when it rejoins (all are
 * in its DIR/discarded-*.json report). */
#define KR_REJOIN_STDERR_MAX 20u
/* How often a node (serve --node) looks at its lease, its stream and its
 * publisher to decide whether to change role, in milliseconds. */
#define KR_NODE_POLL_MS 200u
/* How often a node without its journal's current signing key (serve --node;
 * it stays a follower) looks for it again in DIR/keys and the keyring, in
 * milliseconds. */
#define KR_NODE_KEY_RETRY_MS 5000u

/* ---- Storage ---- */

/* Default LMDB map size: address space only, the file grows as data is written.
 * 64 GiB holds ~100M records of 200-byte payloads. */
#define KR_MAP_SIZE_DEFAULT (64ull << 30)
/* A data directory path. */
#define KR_PATH_MAX 1024

/* ---- Reading ---- */

/* Records fetched under one read transaction by a cursor page, so a slow
 * consumer never pins old pages for long. */
#define KR_CURSOR_PAGE 256
/* Merkle proofs: a tree of up to 2^64 leaves needs at most 64 hashes for an
 * inclusion proof and 2*64 for a consistency proof. */
#define KR_PROOF_MAX 128

/* ---- Views ---- */

/* Records applied to the views per write transaction when they are rebuilt or
 * catch up at open: large enough that commits (one fsync each) do not dominate
 * a rebuild, small enough that one transaction's dirty pages stay in memory. */
#define KR_REBUILD_TXN_RECORDS 131072u
/* Tenants index entries one write transaction of the format-1 -> 2 migration
 * rewrites: a few MB of dirty pages, like a view rebuild's transaction. */
#define KR_MIGRATE_TXN_ENTRIES 131072u
/* Records one write transaction of the stream index migration (format 2 -> 3)
 * indexes: each writes a link and a head, a few MB of dirty pages. */
#define KR_MIGRATE_TXN_RECORDS 65536u
/* Links one seek from a stream's head to one of its versions follows: the
 * skew-binary jumps reach any version below 2^b in at most 3b - 5 steps
 * (checked exhaustively for b <= 12; the worst case, from 2^b - b + 1 down to
 * version 2, takes 181 for b = 62, JRN_SIZE_MAX); more is a damaged index. */
#define KR_STREAM_SEEK_MAX 256u
/* Records one jrn_strip write transaction examines (and at most rewrites).
 * It runs between the writer's batches, holding LMDB's write lock: a few MB of
 * dirty pages and one fsync, so appends wait tens of milliseconds at most. */
#define KR_STRIP_TXN_RECORDS 4096u

/* ---- Commands (projections/domain.h) ---- */

/* Events one command appends: sign-up completion is the largest (signup,
 * tenant, master account, e-mail), login two; 16 leaves room. */
#define KR_CMD_EVENTS_MAX 16
/* An event payload without personal data that kiroku writes by itself
 * (access.denied, session.touched, outbox.sent, tenant.erased): a few ids
 * and an op name; the largest is alert.raised, with 32 seqs of evidence and
 * a summary line of up to 255 bytes (under 700 bytes). */
#define KR_PLAIN_EVENT_MAX 1024u
/* Times a command is decided again after another command changed what it read. */
#define KR_CMD_RETRIES 8
/* Items in one page of a list op when the caller gives no limit. */
#define KR_PAGE_DEFAULT 100u
/* Asynchronous commands in flight at once (seeding); submitters wait beyond it. */
#define KR_CMD_INFLIGHT_MAX 4096u

/* ---- Accounts (projections/accounts.h) ---- */

/* Argon2id hashes or verifications running at once in one process. Each
 * holds the cost's memory (64 MiB at libsodium's INTERACTIVE limits), so a
 * burst of logins holds at most 4 x 64 MiB = 256 MiB; the rest queue. Two
 * cores cannot run more than two at full speed anyway. */
#define KR_PWHASH_CONCURRENT_MAX 4u
/* Logins waiting for one of those places. Past it a login is refused at once
 * (`unavailable`, try again) rather than holding a server worker: a flood of
 * logins can then occupy at most this many of the API's 64 workers, and
 * everything else goes on being served. */
#define KR_PWHASH_WAITERS_MAX 16u

/* ---- Sign-up (projections/cmd_signup.c, projections/rate.h) ---- */

/* signup.apply is anonymous and each application is a signed record and a
 * new tenant data key, so it is limited per e-mail address and per source
 * address (the caller's peer address; unknown sources, ipc:// and
 * in-process callers, share one count) within a window of one hour.
 * A person who mistyped retries a few times: 3 per address. An office
 * behind one NAT address signs up a handful of businesses at most: 20 per
 * source. A flood is refused (`rate_limited`, with when to retry) after
 * that, and the expiry of unconfirmed applications (retention.h) clears
 * what got through. */
#define KR_SIGNUP_WINDOW_NS      (3600ull * 1000000000ull)
#define KR_SIGNUP_PER_EMAIL_MAX  3u
#define KR_SIGNUP_PER_SOURCE_MAX 20u
/* Counters of one limiter (each 32 bytes: 128 KiB), so the distinct
 * addresses one window remembers; a key probes KR_RATE_PROBES of them, and
 * one take counts against at most KR_RATE_KEYS_MAX keys. */
#define KR_RATE_SLOTS    4096u
#define KR_RATE_PROBES   16u
#define KR_RATE_KEYS_MAX 4u
/* Unconfirmed applications the expiry job erases in one run; the rest wait
 * for the next. Their keys are destroyed together and the keystore rewritten
 * once (a compacting copy, about 100 bytes per tenant); then each has its
 * few records stripped and one event appended (one durable commit each):
 * 10,000 keeps a daily run to minutes, and is far above what the per-source
 * limits let even many sources apply in a day. */
#define KR_SIGNUP_EXPIRE_BATCH_MAX 10000u

/* Open sessions of one account: a person uses a few devices. A login past it
 * ends the oldest (session.closed, superseded), so closing every session of
 * an account (deletion, lock, password change) fits one append. */
#define KR_SESSIONS_PER_ACCOUNT_MAX 8u

/* ---- Contacts, tags, attributes (projections/contacts.h) ---- */

/* Tags on one contact: contacts.get lists them all in one reply, so the list
 * stays bounded (contacts.tag refuses more). 1000 tags of 64-byte names make
 * a reply of about 100 KiB. */
#define KR_CONTACT_TAGS_MAX 1000u
/* Attribute definitions of one tenant: attributes.list answers them in one
 * reply and contacts.get may list a value for each (1000 x 1000-byte values:
 * about 1 MiB, under the API's reply cap). */
#define KR_ATTRIBUTES_MAX 1000u
/* Items of one list page at most: the "limit" field's maximum (fields.json),
 * so a page's ids fit a fixed array on the stack. */
#define KR_PAGE_MAX 1000u

/* ---- Notices, incidents, audit, outbox (projections/notices.h) ---- */

/* Unread notices a login reply carries, newest first: the dashboard shows a
 * handful; the rest are in notices.list. */
#define KR_LOGIN_NOTICES_MAX 20u
/* Incidents in one incidents.list reply (it has no cursor; open and
 * resolved): far more incidents affecting one tenant than anyone could read. */
#define KR_INCIDENTS_LIST_MAX 1000u
/* Rows an operator's list (incidents.all, incidents.reports, notices.all)
 * looks at for one page: a filter that keeps few rows returns a short page
 * and a cursor rather than walking every incident ever opened. */
#define KR_OPERATOR_SCAN_MAX 10000u
/* Incidents in the login reply, newest first (incidents.list has them all):
 * what a dashboard shows at a glance. */
#define KR_LOGIN_INCIDENTS_MAX 20u
/* Entries (opening, updates, resolution) in one incidents.history reply,
 * and records of the incident's stream looked at for them (its
 * notifications are there too, one per affected tenant and channel). */
#define KR_INCIDENT_HISTORY_MAX      200u
#define KR_INCIDENT_HISTORY_SCAN_MAX 100000u
/* Pending notifications in one incidents.overdue reply, earliest deadline
 * first; acting on the first thousand shrinks the list for the next call. */
#define KR_DUE_LIST_MAX 1000u
/* Audit rows one audit.list call examines (matching or not) before it
 * returns a cursor, so a filter that matches nothing cannot make one request
 * scan a tenant's whole history. */
#define KR_AUDIT_SCAN_MAX 10000u
/* Record bytes in one journal.read reply: records are up to 64 KiB, so a
 * page of 1000 is cut short here (the caller continues from the last seq). */
#define KR_JOURNAL_READ_BYTES_MAX ((size_t)4 * 1024 * 1024)
/* Notices one notices_unread call looks at (read or not) before it stops. */
#define KR_NOTICES_SCAN_MAX 10000u
/* Accounts looked at to find a tenant's master (for an incident e-mail). */
#define KR_MASTER_SCAN_MAX 100000u
/* Messages one outbox_pending call hands over at most (when max is 0). */
#define KR_OUTBOX_BATCH_MAX 1000u
/* Incidents one pass of a tenant shard's deadline scheduler passes over
 * because the platform notifies their tenants (dom_incident_mail): each is a
 * seek and one record read. Past it the pass ends there; the platform's
 * notifications, as they are imported, take those incidents out of the way. */
#define KR_INCIDENT_DUE_SKIP_MAX 10000u

/* ---- API (api/) ---- */

/* One request message: NNG_OPT_RECVMAXSZ of every server socket, and checked
 * again before decoding. The largest arguments of any op (notices.publish:
 * title, body and a list of 1000 tenants) are about 27 KiB; 64 KiB leaves
 * room and keeps the memory a connection can make the server hold small. */
#define KR_API_REQUEST_MAX ((size_t)64 * 1024)
/* One reply: journal.read answers up to KR_JOURNAL_READ_BYTES_MAX of records
 * plus their framing; clients set their receive cap to this. The server
 * builds each reply in a buffer with this ceiling (journal/wbuf.h), so a
 * result that would pass it fails while it is built. */
#define KR_API_REPLY_MAX ((size_t)8 * 1024 * 1024)
/* The reply buffer a worker keeps between requests; a larger one (built for
 * a large reply) is wiped and freed after it is sent. 64 KiB holds every
 * reply but pages of exports and journal reads, so most requests allocate
 * nothing, and 64 idle workers hold 4 MiB, not 64 x 8 MiB. */
#define KR_API_REPLY_KEEP ((size_t)64 * 1024)
/* Nesting of a request: the request map, the args map, a list argument. */
#define KR_API_DEPTH_MAX 3u
/* Array elements and map pairs in one request, counted by kr_mp_check before
 * anything decodes it: the largest legitimate request (a list of 1000
 * tenants and a handful of keys) stays far below. */
#define KR_API_ITEMS_MAX 2048u
/* Connections open at once on the client endpoint; more are closed as they
 * arrive. Each holds a descriptor and nng's buffers; Debian's default soft
 * limit of 1024 descriptors must also cover LMDB, the journal, the operator
 * endpoint and logs (serve raises the soft limit to the hard one). */
#define KR_API_CONNS_MAX 512u
/* Connections open at once on the operator endpoint: counted apart from the
 * client endpoint's, so a flood there cannot lock the operator out. */
#define KR_API_OPERATOR_CONNS_MAX 32u
/* Connections from one peer address (tcp and tls+tcp) at once, by default:
 * one host cannot take the whole client endpoint; offices behind one NAT
 * address still fit. ipc:// peers have no address and are not counted. */
#define KR_API_CONNS_PER_PEER_DEFAULT 64u
/* A connection that sent no complete request for this long is closed
 * (serve --idle-timeout); nng clients reconnect when they next send. */
#define KR_API_IDLE_TIMEOUT_MS_DEFAULT 10000
#define KR_API_IDLE_TIMEOUT_MS_MAX     (3600 * 1000)
/* Requests of one connection being served at once: a client pipelining more
 * is answered `unavailable` for the rest (sent only if the connection takes
 * it at once), so one connection cannot hold every worker. */
#define KR_API_PIPE_INFLIGHT_MAX 8u
/* Bytes of replies waiting for one connection to take them (beyond the one
 * reply the transport is writing, at most KR_API_REPLY_MAX): a reply that
 * would pass it closes the connection, as a send timeout does. */
#define KR_API_PIPE_QUEUED_MAX ((size_t)16 * 1024 * 1024)
/* The same over every connection of one peer address (tcp, tls+tcp): a peer
 * cannot multiply the bound above by opening connections. */
#define KR_API_PEER_QUEUED_MAX ((size_t)64 * 1024 * 1024)
/* Period of the server's janitor thread, which closes idle connections and
 * those marked for closing (workers never close connections themselves). */
#define KR_API_JANITOR_MS 100
/* After the janitor shut a connection's socket down, how long nng gets to
 * notice and close it before the janitor closes it through nng. */
#define KR_API_CLOSE_GRACE_MS 1000
/* Descriptors looked at to find a tcp connection's socket (/proc/self/fd). */
#define KR_API_FD_SCAN_MAX 65536u
/* At stop, how long open connections get to close before the sockets do. */
#define KR_API_STOP_CONNS_MS 3000
/* Connections the janitor closes in one pass (the rest in the next). */
#define KR_API_JANITOR_BATCH 64u
/* How long `kiroku serve` may take to stop after the daily job ended (the
 * requests running, the connections, the journal's close) before it exits
 * 3 instead of waiting for kill -9. */
#define KR_SERVE_STOP_MAX_MS 60000
/* Requests in flight at once on the client endpoint (`serve --inflight`):
 * one nng context each, waiting for a request, its decision, its append's
 * group commit or its send. Writes in flight are what a group commit can
 * gather; each costs a context and its buffers, not a thread. Their appends
 * (at most KR_CMD_EVENTS_MAX events each) stay under KR_QUEUE_MAX_EVENTS,
 * so submitting never waits on the journal's queue. */
#define KR_API_INFLIGHT_DEFAULT 256u
#define KR_API_INFLIGHT_MAX     2048u
_Static_assert(KR_API_INFLIGHT_MAX *KR_CMD_EVENTS_MAX < KR_QUEUE_MAX_EVENTS,
               "the API's appends in flight fit the journal's queue");
/* Threads of the client endpoint that decide requests (`serve --workers`):
 * decode, authenticate, read the views, submit the append. They never wait
 * for a flush, so about one per core is enough (`kiroku bench api`). */
#define KR_API_WORKERS_DEFAULT 4u
#define KR_API_WORKERS_MAX     256u
/* Threads of the client endpoint's pool, for ops that may wait: Argon2id
 * (KR_PWHASH_CONCURRENT_MAX run, KR_PWHASH_WAITERS_MAX wait their fair turn,
 * one more is refused), heavy reads (exports), ops answered from their
 * commit. */
#define KR_API_POOL_THREADS (KR_PWHASH_CONCURRENT_MAX + KR_PWHASH_WAITERS_MAX + 1u)
/* The operator endpoint: few people, few requests (threads of each kind,
 * and requests in flight). */
#define KR_API_OPERATOR_WORKERS  2u
#define KR_API_OPERATOR_INFLIGHT 16u
/* Listen URLs of the client endpoint. */
#define KR_API_LISTEN_MAX 8u
/* A listen URL (an ipc:// path is at most 107 bytes; host names 253). */
#define KR_API_URL_MAX 512u
/* How long a reply may wait for a client that does not read: the connection
 * is closed after it, so a stalled reader cannot hold a worker. */
#define KR_API_SEND_TIMEOUT_MS 5000
/* After the last in-flight request is answered at shutdown, time for the
 * transports to write the queued replies before the sockets close. */
#define KR_API_DRAIN_MS 200
/* A PEM certificate, key or CA file read for TLS: a chain of a few
 * certificates. */
#define KR_API_PEM_MAX ((size_t)64 * 1024)
/* The e-mail worker's period: sign-up codes should arrive within seconds. */
#define KR_MAILER_PERIOD_MS 1000
/* Rounds of dom_notice_mail per period (KR_OUTBOX_BATCH_MAX each), so a
 * burst of owed notices cannot keep the worker from delivering. */
#define KR_MAILER_NOTICE_ROUNDS 8u
/* Rounds of dom_incident_mail per run of serve's minute job
 * (KR_OUTBOX_BATCH_MAX each): an incident for every tenant is e-mailed to
 * 8,000 tenants a minute, and the scheduler's other jobs still get their turn. */
#define KR_INCIDENT_MAIL_ROUNDS 8u
/* E-mail content (api/compose.c). A template file: a subject and a body of
 * a few paragraphs. */
#define KR_MAIL_TEMPLATE_MAX ((size_t)8 * 1024)
/* A message's body text before encoding: both languages' bodies, each with a
 * notice body (10000 bytes) or summary at most, fit with room to spare. */
#define KR_MAIL_TEXT_MAX ((size_t)64 * 1024)
/* A message's subject text before encoding: a template line and a title. */
#define KR_MAIL_SUBJECT_MAX 1024u
/* A whole composed message: headers, and the body text in base64 (4/3 of
 * KR_MAIL_TEXT_MAX and a CRLF per line). */
#define KR_MAIL_MESSAGE_MAX ((size_t)96 * 1024)
/* Bytes of subject per RFC 2047 encoded-word: 48 base64 characters, so
 * " =?UTF-8?B?...?=" after "Subject:" stays under 76 characters a line. */
#define KR_MAIL_WORD_BYTES 36u
/* Characters per line of the base64 body (RFC 2045: at most 76). */
#define KR_MAIL_B64_LINE 76u
/* mail.from: "From: " and it on one line of at most 76 characters. */
#define KR_MAIL_FROM_MAX 70u
/* The Message-ID's host: "Message-ID: <32 hex@host>" within 76 characters. */
#define KR_MAIL_HOST_MAX 29u
/* The other mail settings (URLs, the support contact). */
#define KR_MAIL_SETTING_MAX 512u
/* Pending e-mails one delivery round looks at when a relay is configured
 * (pages of KR_OUTBOX_BATCH_MAX): most wait for their retry time, and a
 * round must end in bounded time; the rest wait for the next round. */
#define KR_MAILER_SCAN_MAX 8000u
/* Records of one e-mail's stream read to find its retry schedule (queued,
 * then one per failed attempt): a backoff capped at smtp.retry_max_s over
 * smtp.give_up_h makes at most a few thousand. */
#define KR_MAILER_STREAM_MAX 100000u
/* An SMTP session's default time limit (smtp.timeout_s). */
#define KR_SMTP_TIMEOUT_S_DEFAULT 30u
/* smtp.timeout_s at most: a stop waits for the attempt running, and must
 * end within KR_SERVE_STOP_MAX_MS. */
#define KR_SMTP_TIMEOUT_S_MAX 50u
/* An addr-spec in MAIL FROM or RCPT TO (RFC 5321's path limit). */
#define KR_SMTP_ADDRESS_MAX 254u
/* The relay's URL (smtp.url). */
#define KR_SMTP_URL_MAX 512u
/* The relay's password file (smtp.password_file): one line. */
#define KR_SMTP_PASSWORD_MAX 256u

/* ---- Publishing to NATS JetStream (api/cluster.h) ---- */

/* The stream's max age: 14 days by default, and never more than 29, so no
 * message (ciphertext of an erased tenant included) outlives the 30-day
 * erasure deadline. */
#define KR_CLUSTER_MAX_AGE_S_DEFAULT (14ull * 86400u)
#define KR_CLUSTER_MAX_AGE_S_MAX     (29ull * 86400u)
/* Replicas a stream may ask for (JetStream itself allows 5). */
#define KR_CLUSTER_REPLICAS_MAX 5u
/* The --nats list, in bytes (the servers in it: KR_NATS_URLS_MAX). */
#define KR_CLUSTER_URLS_MAX 1024u
/* A shard name ([a-z0-9-]{1,32}), and the stream or subject made of it. */
#define KR_CLUSTER_SHARD_MAX 32u
#define KR_CLUSTER_NAME_MAX  64u
/* The duplicate window of the stream: a restart re-publishing a message it
 * had sent just before is a no-op within it. */
#define KR_CLUSTER_DUP_WINDOW_NS (120ull * 1000000000ull)
/* Connecting and setting up the stream at start, retried until then. */
#define KR_CLUSTER_START_TIMEOUT_MS 30000u
/* How long one publish waits for JetStream's acknowledgement before it is
 * retried (same message id and expected sequence), and the connect timeout. */
#define KR_CLUSTER_PUB_WAIT_MS 5000
/* Retries of a failed publish wait from the first to the second, doubling. */
#define KR_CLUSTER_BACKOFF_MIN_MS 20u
#define KR_CLUSTER_BACKOFF_MAX_MS 2000u
/* A live range longer than this many records (a publisher that fell
 * behind) is cut at the journal's kept checkpoints instead, as a backlog is,
 * so a follower never holds more than about this many unverified records. */
#define KR_CLUSTER_RANGE_RECORDS KR_CHECKPOINT_EVERY_RECORDS
/* Durable sizes remembered with the time they became durable (for the lag
 * in seconds): when more are waiting, the newest is widened instead. */
#define KR_CLUSTER_DURABLE_TIMES 256u
/* Latency samples kept for percentiles (chunks and ranges). */
#define KR_CLUSTER_SAMPLES 65536u
/* At a stop, serve waits this long for what is durable to be published. */
#define KR_SERVE_PUBLISH_GRACE_MS 5000u
/* A publisher that keeps failing says so on stderr at most this often. */
#define KR_CLUSTER_LOG_EVERY_NS (30ull * 1000000000ull)

/* ---- The keyring's erasure (api/keyring.h) ---- */

/* After a tenant's key is erased from the keyring bucket, this many bytes of
 * filler are written through the bucket (and purged) so that every
 * nats-server compacts the bucket's RAFT log, which still holds the key's
 * bytes: nats-server 2.9 snapshots a stream's RAFT group once more than
 * 8 MiB were applied since its last snapshot (else every 2 to 3 minutes). */
#define KR_KEYRING_SCRUB_BYTES (12u * 1024u * 1024u)
/* One filler value: half of NATS' default max_payload (1 MiB). */
#define KR_KEYRING_SCRUB_CHUNK (512u * 1024u)

/* ---- Verification ---- */

/* Records handed to one verification worker at a time; a power of two so each
 * chunk is a perfect Merkle subtree and workers can run independently. */
#define KR_VERIFY_CHUNK_LOG2 14

/* A saved verification state (kiroku verify --save-state / --since), read
 * whole before parsing. It holds up to KR_KEYS_MAX key records (each at most
 * KR_RECORD_MAX, in practice a few hundred bytes), the last record, a signed
 * note and 16 bytes per tenant: 32 MiB covers the key limit and about a
 * million tenants, far beyond a deployment's. */
#define KR_VSTATE_MAX ((size_t)32 * 1024 * 1024)
/* Tenants a saved state can carry the record counts of (16 bytes each). */
#define KR_VSTATE_TENANTS_MAX ((uint64_t)1 << 20)

/* ---- Keystore (projections/keystore.h) ---- */

/* Unwrapped tenant data keys cached in memory (locked, guarded pages; 48 bytes
 * each, so 192 KiB, well within Debian's default 8 MiB RLIMIT_MEMLOCK). Enough
 * for the tenants active at once on one server; a miss costs one LMDB read and
 * one AEAD open, a few microseconds. */
#define KR_KEYCACHE_MAX 4096u
/* Entries of one cache set: a lookup compares at most this many tenant ids
 * under the cache lock, and eviction picks the least recently used of them. */
#define KR_KEYCACHE_WAYS 8u
/* The keystore's LMDB map: address space only. A tenant takes about 100 bytes
 * (its wrapped key, or its destruction record), so 1 GiB holds millions. */
#define KR_KEYSTORE_MAP_SIZE (1ull << 30)
/* Reader slots of the keystore environment: cache misses of a server's worker
 * threads at once, plus tools; as for the journal. */
#define KR_KEYSTORE_READERS 512u
/* Draws kr_rng_below (journal/rng.h) makes before it stops rejecting: with a
 * working source, 64 rejections in a row have a chance below 2^-64; a fake
 * source that returns zeros forever must not hang its caller. */
#define KR_RNG_BELOW_TRIES 64u

/* ---- Backups (tools/backup.h) ---- */

/* Generations kept: one per JST day, the newest seven (a week of dailies,
 * the white paper's promise); older ones are removed by each backup. */
#define KR_BACKUP_GENERATIONS 7u
/* Entries a backups directory may hold that a listing looks at: generations,
 * leftovers of interrupted runs and anything else. More is refused rather
 * than read without end. */
#define KR_BACKUP_DIR_ENTRIES_MAX 4096u
/* Files in one generation: the journal, the keystore, the checkpoint, the
 * KEK and two files (secret and public) per journal key. */
#define KR_BACKUP_FILES_MAX (2u * KR_KEYS_MAX + 8u)
/* A file path inside a generation ("keys/journal-1024.key" and the like). */
#define KR_BACKUP_PATH_MAX 64u
/* Key records a manifest carries (journal.created and one per key change). */
#define KR_BACKUP_KEYRECS_MAX KR_KEYS_MAX
/* One key record: a header and a small payload (a key; for a new epoch also
 * the previous epoch's checkpoint note). */
#define KR_BACKUP_KEYREC_MAX (KR_HEADER_MAX + KR_NOTE_MAX + 1024u)
/* The manifest: about 150 bytes per file and the base64 of each key record,
 * so 8 MiB holds every generation the bounds above allow. Read whole and
 * refused unread beyond this. */
#define KR_BACKUP_MANIFEST_MAX ((size_t)8 << 20)

/* ---- Retention (projections/retention.h) ---- */

/* Cancelled tenants one retention run looks at and reports: each due one is
 * erased in turn; more than this many due at once are left for the next run
 * (or an immediate rerun), so a run and its reply stay bounded. */
#define KR_RETENTION_TENANTS_MAX 1000u
/* Files of DIR/outbox one erasure looks at: the mailer writes one per
 * e-mail; beyond this the step fails (KR_ETOOLARGE) rather than scan
 * without end, and the tenant stays due. */
#define KR_RETENTION_OUTBOX_FILES_MAX 1000000u
/* Closed sessions one log truncation strips (16 bytes each, so 1.6 MiB),
 * and account resets it reads (32 bytes each): more are left for the next
 * day's run. */
#define KR_RETENTION_SESSIONS_MAX 100000u
/* The longest log retention period an operator may configure (10 years). */
#define KR_LOG_RETENTION_DAYS_MAX 3660u
/* Backup generations backups.list reports (backups keep 7). */
#define KR_BACKUP_GENERATIONS_MAX 64u

/* ---- Tenant exports (journal/export.h) ---- */

/* An export file a verifier reads: it is parsed whole in memory (a JSON tree
 * costs a few times the text), so 256 MiB keeps a hostile file's cost within a
 * laptop's memory. A larger history is exported in several seq ranges. */
#define KR_EXPORT_FILE_MAX ((size_t)256 * 1024 * 1024)
/* What the exporter writes into one file at most: below KR_EXPORT_FILE_MAX with
 * room for the entries it estimates before cutting the document short. */
#define KR_EXPORT_BUILD_BYTES_MAX ((size_t)192 * 1024 * 1024)
/* Records in one export: each is checked with a signature and a proof (about
 * 0.1 ms), so a file verifies in seconds. */
#define KR_EXPORT_RECORDS_MAX 100000u
/* Checkpoints in one export: records are proved against the first kept
 * checkpoint that covers them (one is kept at least per second of activity);
 * past this many, the rest against the newest. */
#define KR_EXPORT_CHECKPOINTS_MAX 1024u
/* A saved export state (exp_state_parse): its members and a checkpoint note
 * (escaped in JSON, at most 6 bytes a byte). */
#define KR_EXPORT_STATE_MAX ((size_t)1024 + (size_t)6 * KR_NOTE_MAX)
/* Hashes in one inclusion proof: 64 cover a tree of 2^64 leaves. */
#define KR_EXPORT_PROOF_MAX 64u
/* Records in one audit.export reply, and their bytes: records are up to
 * 64 KiB (88 KiB in base64, with a proof of 3 KiB), so the byte bound is
 * what cuts a page of large records short, under KR_API_REPLY_MAX. */
#define KR_EXPORT_OP_RECORDS_MAX 1000u
#define KR_EXPORT_OP_BYTES_MAX   ((size_t)4 * 1024 * 1024)

/* ---- Metrics and health over HTTP (api/http.h, api/metrics.h) ---- */

/* Connections the operators' HTTP endpoint holds at once: scrapers and
 * probes, a handful each; more is a flood, refused by libmicrohttpd. */
#define KR_HTTP_CONNS_MAX 32u
/* Connections from one address at once: a scraper and a probe or two. */
#define KR_HTTP_CONNS_PER_IP 8u
/* A connection that sends nothing for this long is closed (seconds). */
#define KR_HTTP_TIMEOUT_S 10u
/* A request's headers and body: only GETs with short paths are served. */
#define KR_HTTP_MEMORY_LIMIT ((size_t)32 * 1024)
/* A /metrics or /healthz page: one line per op and result moved, per event
 * type, and the histograms: well under this even with every counter set. */
#define KR_METRICS_PAGE_MAX ((size_t)512 * 1024)
/* Records a scrape reads to count events by type (the rest on the next
 * scrape): a scrape stays in the tens of milliseconds behind a burst. */
#define KR_METRICS_SCAN_MAX 100000u
/* Records of the backups stream looked at for the newest backup.completed
 * (failed backups in between count against it). */
#define KR_METRICS_BACKUP_SCAN 16u
/* Security alerts (projections/alerts.h). Subjects (rule, tenant, account)
 * watched at once: 1024 slots of about 1 KiB each, a megabyte; a flood of
 * more subjects than that within one window evicts the quietest. */
#define KR_ALERT_SLOTS 1024u
/* Records one alert names as evidence, and so the most a rule may count
 * (an alert's evidence field holds 32 seqs). */
#define KR_ALERT_EVIDENCE_MAX 32u
/* The most records the bulk export rule may count before it fires (it sums
 * the newest KR_ALERT_EVIDENCE_MAX pages of an export, each at most
 * KR_PAGE_MAX records, so a higher count could never be reached). */
#define KR_ALERT_RECORDS_MAX 32000u
/* Windows of a tenant's history before the request_rate rule may fire
 * (its usual rate must be known), and the most empty windows it ages the
 * usual rate by at once (after that the usual is as good as zero). */
#define KR_ALERT_RATE_HISTORY   4u
#define KR_ALERT_RATE_DECAY_MAX 64u
/* The longest window a rule may have: a week (backup_missed's age; the
 * rules over records keep at most KR_ALERT_EVIDENCE_MAX records each, however
 * long their window). */
#define KR_ALERT_WINDOW_MAX_S 604800u
/* Incident notifications one scan looks at for incident_due and
 * incident_overdue: the soonest deadlines first. */
#define KR_ALERT_DUE_MAX 1000u
/* Records of the backups stream read back to find the last completed backup
 * (a longer run of failures is a missed backup anyway). */
#define KR_ALERT_BACKUP_LOOKBACK 64u
/* Records one scan call reads before it stores its cursor and returns, so a
 * large backlog is worked through in steps serve can stop between. */
#define KR_ALERT_SCAN_BATCH 10000u

/* ---- Replication (journal/replica.h) ---- */

/* Bytes of one replication message: NATS' default max_payload is 1 MiB
 * (1,048,576) and must also carry the message's headers (msg id, Kiroku-First,
 * Kiroku-Last, Kiroku-Epoch: well under 1 KiB), so a chunk stays below a
 * round 1,000,000. A record (KR_RECORD_MAX) plus a note (KR_NOTE_MAX) and the
 * envelope always fit, so a chunk always holds at least one record. */
#define KR_REPL_MSG_MAX 1000000u
/* Records of one chunk: a writer batch's worth (KR_BATCH_MAX_EVENTS), so a
 * decoder's record arrays stay small (two pointers each) and a batch of small
 * records still travels in one message. */
#define KR_REPL_CHUNK_RECORDS 4096u
/* Records, and bytes, a follower holds without a checkpoint that verifies
 * them (one apply session, one LMDB write transaction): a range longer than
 * this is a fault, not a reason to grow without bound. A publisher never
 * needs more: the writer signs a checkpoint per batch (at most
 * KR_BATCH_MAX_EVENTS records) and keeps one at least every
 * KR_CHECKPOINT_EVERY_RECORDS records, so a backlog splits at kept
 * checkpoints (jrn_checkpoint_after) well within it. */
#define KR_REPL_PENDING_MAX       65536u
#define KR_REPL_PENDING_BYTES_MAX ((size_t)256 * 1024 * 1024)
/* Threads jrn_replica_add_chunk checks signatures on, at most (a chunk's
 * records split evenly), and the fewest records worth a thread of their own
 * (starting a thread costs about what a few signature checks do). */
#define KR_REPL_VERIFY_THREADS_MAX    16u
#define KR_REPL_VERIFY_PER_THREAD_MIN 32u

/* ---- Following a journal's stream (api/follower.h, `kiroku follow`) ---- */

/* How long one wait for the next stream message lasts before the follower
 * looks at whether it is asked to stop (its stop latency). */
#define KR_FOLLOW_WAIT_MS 200
/* Connecting and finding where to start are retried with backoff from
 * 100 ms, doubling up to this, forever: a NATS outage is waited out. */
#define KR_FOLLOW_RETRY_MAX_MS 5000u
/* A NATS request (stream info, a direct get) that takes longer fails and is
 * retried: bounded so that stopping is never held up for long. */
#define KR_FOLLOW_REQUEST_MS 2000

/* ---- Several machines: the lease and the shard map (api/lease.h,
 * api/shardmap.h) ---- */
/* A node's name in the lease: [A-Za-z0-9._-], short enough to read in a log
 * line and in a not_primary message. */
#define KR_NODE_NAME_MAX 64u
/* A client endpoint named in the lease, a shard map entry or a redirect: one
 * or a few URLs separated by commas (tls+tcp://host.example:7000,...). */
#define KR_ENDPOINT_MAX 512u
/* A shard's name: [a-z0-9-]{1,32} (the JetStream stream is named after it). */
#define KR_SHARD_NAME_MAX 32u
/* A lease value (JSON: node, endpoint, epoch, size): anything longer is not
 * one of ours and is read as a malformed holder. */
#define KR_LEASE_VALUE_MAX 1024u
/* The lease's time to live (cluster.lease_ttl): the failover time is about
 * this plus catch-up. At least a second (renewals go every third of it, and
 * each needs a JetStream round trip), at most ten minutes (a dead primary
 * blocks writes that long). */
#define KR_LEASE_TTL_DEFAULT_MS 10000u
#define KR_LEASE_TTL_MIN_MS     1000u
#define KR_LEASE_TTL_MAX_MS     600000u
/* How long one JetStream request of the lease or the shard map may take
 * before it counts as failed (retried later): a third of the smallest TTL. */
#define KR_KV_WAIT_MS 300u
/* How long a watch of the lease or the shard map waits for an update before
 * its thread looks whether it is asked to stop: closing one waits about this
 * long. The thread, not the closer, stops the watch (libnats 3.4.1's
 * kvWatcher_Next leaks the update it holds when kvWatcher_Stop comes from
 * another thread meanwhile: fixed upstream in nats.c 1a99478a). */
#define KR_KV_WATCH_POLL_MS 100u
/* NATS servers one --nats list names (each URL at most 127 bytes). */
#define KR_NATS_URLS_MAX 16u
/* A watch whose connection is down fails at once: its thread waits this long
 * before it asks again. */
#define KR_KV_PAUSE_MS 50u
/* Shards the shard map knows (shard.<name> keys): placement compares them
 * all at each sign-up. */
#define KR_SHARDS_MAX 64u
/* Tenants the shard map's cache holds (tenant.<id> and code.<code> keys): 16
 * bytes a tenant, a few tens of megabytes at most. A map with more refuses
 * new entries into the cache (lookups then ask the bucket). */
#define KR_SHARDMAP_TENANTS_MAX (1u << 21)
/* How long opening the shard map may take to load the bucket into its cache
 * (a million tenants load in seconds). */
#define KR_SHARDMAP_LOAD_MS 60000u
/* Placements one kr_shardmap_publish call writes (each a JetStream round
 * trip), so a call on a large backlog stays within seconds. */
#define KR_SHARDMAP_PUBLISH_MAX 1000u
/* A shard takes a sign-up itself while it holds at most this many tenants
 * more than the placement policy's choice (else it redirects the sign-up
 * there), so a redirected sign-up is not sent on again by placements made
 * meanwhile. */
#define KR_SHARDMAP_PLACE_SLACK 16u
/* How often a primary publishes its new tenants into the shard map
 * (api/shardnode.h): a new tenant's logins are redirected from other shards
 * within about this long. */
#define KR_SHARDNODE_PUBLISH_MS 2000u
/* A tenant code in a code.<code> key: the schema's tenant_code bound. */
#define KR_SHARDMAP_CODE_MAX 32u

/* ---- The JSON gateway over HTTP (api/gateway.h) ---- */

/* A request body the gateway takes (POST /api/OP, /session): an op's
 * arguments fit one event payload, and JSON may spell each byte as a 6-byte
 * \u escape (jsonmp.h JSONMP_ARGS_MAX). Larger is 413 before it is read. */
#define KR_GATEWAY_BODY_MAX ((size_t)6 * KR_PAYLOAD_MAX)
/* Memory libmicrohttpd gives one connection for its request line, headers
 * and read buffer (the body is handed over as it arrives): a request whose
 * headers do not fit is refused by libmicrohttpd (431). */
#define KR_GATEWAY_MEMORY_LIMIT ((size_t)64 * 1024)
/* Connections one gateway listener holds at once, each with its thread (the
 * ops may wait: Argon2id, a flush): the nng client endpoint's cap. */
#define KR_GATEWAY_CONNS_MAX KR_API_CONNS_MAX
/* A connection that sends nothing for this long is closed (seconds), unless
 * serve's --idle-timeout says otherwise. */
#define KR_GATEWAY_TIMEOUT_S 10u
/* The console's files embedded into the binary (api/console/): what a
 * gateway serves at / and /NAME. */
#define KR_GATEWAY_FILE_NAME_MAX 64u

/* ---- The platform journal a tenant shard imports (api/platform.h) ---- */
/* How long the importer sleeps when the platform copy applied nothing new
 * before looking again (it is woken at once after each applied range): its
 * stop latency. */
#define KR_PLATFORM_POLL_MS 500u
/* Platform records one importer round reads before it looks at whether it
 * is asked to stop, so a long backlog never holds a stop up. */
#define KR_PLATFORM_ROUND_MAX 1000u

/* ---- kiroku operators add (tools/cmd_operators.c) ---- */
/* The longest line --password-stdin reads: a password is at most 128 bytes
 * (kr_password_check) plus a line end; a longer line is refused, not cut. */
#define KR_OPERATORS_PASSWORD_LINE_MAX 130u

#endif
