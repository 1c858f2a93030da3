/*
 * ceiling.h: what this machine's cores can do, measured in the same run as a
 * benchmark, so that its figure is printed as a ratio that holds on any
 * machine (docs/benchmarks.md).
 *
 * Each ceiling runs `threads` threads (0 = one per online CPU) for about
 * `seconds` and returns the total rate per second, or 0 if a thread could
 * not start or run (no memory, a signature that did not verify). The work per item is the journal's
 * own per-record work, with nothing around it: no queue, no lock, no disk.
 */
#ifndef KR_CEILING_H
#define KR_CEILING_H

#include <stddef.h>

/* Signing: SHA-256 of a payload of `payload` bytes (the commitment), the
 * record's signing input (jrn_record_sign_input) and an Ed25519 signature
 * over it: what a signer thread does per append. */
double ceiling_sign(unsigned threads, size_t payload, double seconds);

/* Verifying: the commitment's SHA-256, the signing input and an Ed25519
 * verification: what full verification does per record at the least. */
double ceiling_verify(unsigned threads, size_t payload, double seconds);

/* The threads a ceiling uses for `threads` (0 = one per online CPU). */
unsigned ceiling_threads(unsigned threads);

#endif
