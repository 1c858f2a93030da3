/*
 * natskv.c: key-value buckets of NATS JetStream (see natskv.h).
 *
 * Design notes. Writes go through js_Publish rather than kvStore_Update so
 * that the server's error code comes back: only "wrong last sequence" means
 * the condition failed; any other failure may be a write that happened
 * whose acknowledgement was lost, and callers must read again rather than
 * conclude.
 */
#include "natskv.h"

#include "kr_limits.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

kr_err nkv_err(natsStatus s)
{
    switch (s) {
    case NATS_OK:
        return KR_OK;
    case NATS_NOT_FOUND:
        return KR_ENOTFOUND;
    case NATS_NO_MEMORY:
        return KR_ENOMEM;
    case NATS_INVALID_ARG:
        return KR_EINVAL;
    default:
        return KR_EIO;
    }
}

kr_err nkv_connect(const char *urls, natsConnection **out)
{
    char buf[KR_NATS_URLS_MAX * 128];
    const char *list[KR_NATS_URLS_MAX];
    int n = 0;
    *out = NULL;
    if (!urls || strlen(urls) >= sizeof buf)
        return KR_EINVAL;
    memcpy(buf, urls, strlen(urls) + 1);
    for (char *save = NULL, *u = strtok_r(buf, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
        if (n == (int)KR_NATS_URLS_MAX || strncmp(u, "nats://", 7) != 0)
            return KR_EINVAL;
        list[n++] = u;
    }
    if (n == 0)
        return KR_EINVAL;
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetServers(o, list, n);
    if (s == NATS_OK)
        s = natsOptions_SetNoRandomize(o, true);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, (int64_t)KR_KV_WAIT_MS * 10);
    if (s == NATS_OK)
        s = natsConnection_Connect(out, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        *out = NULL;
        return s == NATS_INVALID_ARG || s == NATS_ADDRESS_MISSING ? KR_EINVAL : KR_EIO;
    }
    return KR_OK;
}

kr_err nkv_bucket(jsCtx *js, const char *bucket, uint8_t history, int64_t ttl_ms, int replicas,
                  kvStore **out, int64_t *ttl_ms_out)
{
    *out = NULL;
    natsStatus s = js_KeyValue(out, js, bucket);
    if (s == NATS_NOT_FOUND && replicas >= 0) {
        kvConfig cfg;
        kvConfig_Init(&cfg);
        cfg.Bucket = bucket;
        cfg.History = history;
        cfg.TTL = ttl_ms * 1000000; /* the client counts it in nanoseconds */
        cfg.Replicas = replicas > 0 ? replicas : 1;
        cfg.StorageType = js_FileStorage;
        s = js_CreateKeyValue(out, js, &cfg);
        if (s != NATS_OK) /* another node made it meanwhile */
            s = js_KeyValue(out, js, bucket);
    }
    if (s != NATS_OK) {
        *out = NULL;
        return nkv_err(s);
    }
    if (ttl_ms_out) {
        kvStatus *st = NULL;
        s = kvStore_Status(&st, *out);
        if (s != NATS_OK) {
            kvStore_Destroy(*out);
            *out = NULL;
            return nkv_err(s);
        }
        *ttl_ms_out = kvStatus_TTL(st) / 1000000;
        kvStatus_Destroy(st);
    }
    return KR_OK;
}

kr_err nkv_write(jsCtx *js, const char *bucket, const char *key, const void *v, size_t len,
                 uint64_t expect, int64_t wait_ms, uint64_t *rev)
{
    char subj[KR_SHARDMAP_CODE_MAX + KR_SHARD_NAME_MAX + 64];
    int n = snprintf(subj, sizeof subj, "$KV.%s.%s", bucket, key);
    if (n < 0 || (size_t)n >= sizeof subj || len > (size_t)INT32_MAX)
        return KR_EINVAL;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = wait_ms;
    if (expect == 0)
        po.ExpectNoMessage = true;
    else
        po.ExpectLastSubjectSeq = expect;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_Publish(&ack, js, subj, v, (int)len, &po, &jerr);
    if (s == NATS_OK) {
        if (rev)
            *rev = ack->Sequence;
        jsPubAck_Destroy(ack);
        return KR_OK;
    }
    jsPubAck_Destroy(ack);
    return jerr == JSStreamWrongLastSequenceErr ? KR_ECONFLICT : nkv_err(s);
}

static bool name_ok(const char *s, size_t max, bool upper_dot)
{
    size_t n = strnlen(s, max + 1);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                  (upper_dot && ((ch >= 'A' && ch <= 'Z') || ch == '.' || ch == '_'));
        if (!ok)
            return false;
    }
    return true;
}

bool nkv_shard_name_ok(const char *s)
{
    return s && name_ok(s, KR_SHARD_NAME_MAX, false);
}

bool nkv_node_name_ok(const char *s)
{
    return s && name_ok(s, KR_NODE_NAME_MAX, true);
}

bool nkv_endpoint_ok(const char *s, size_t len)
{
    if (!s || len == 0 || len > KR_ENDPOINT_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\')
            return false;
    return true;
}

void nkv_pause(void)
{
    struct timespec ts = {0, (long)KR_KV_PAUSE_MS * 1000000L};
    nanosleep(&ts, NULL);
}
