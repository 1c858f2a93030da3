/*
 * compose_test.c: the e-mails' content (api/compose.c). Every template, in
 * Japanese and in English, composes into a message whose subject
 * (encoded-words) and body (base64) decode to the expected text; the
 * Japanese auth-code mail byte-exact; every line within 76 characters; CR or
 * LF in any value cannot add a header; loading refuses a missing template,
 * an unknown placeholder and bad settings, naming what is wrong.
 */
#include "accounts.h"
#include "compose.h"
#include "kr_limits.h"
#include "mailer.h"
#include "schema.h"
#include "test_domain.h"
#include "test_util.h"

#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <dirent.h>

#define TEMPLATES KR_SOURCE_DIR "/api/templates"
/* 2026-12-06 00:00:00 UTC = 09:00 JST */
#define T0 (1796515200ull * 1000000000ull)

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static struct compose_set *load_default(void)
{
    struct compose_opts o = {.templates_dir = TEMPLATES,
                             .login_url = "https://kiroku.example.jp/login",
                             .support = "support@kiroku.example.jp",
                             .payment_url = "https://pay.example.jp/a/{application}"};
    struct compose_set *s;
    char why[256];
    kr_err err = compose_load(&o, &s, why, sizeof why);
    if (err)
        fail_msg("compose_load: %s", why);
    return s;
}

/* A message split into its decoded parts. */
struct decoded {
    char headers[4096]; /* the header block, unfolded, CRLF line ends */
    char subject[KR_MAIL_SUBJECT_MAX + 1];
    char body[KR_MAIL_TEXT_MAX + 1];
    size_t body_n;
};

/* Decodes the Subject's encoded-words (each "=?UTF-8?B?...?=") into d->subject. */
static void decode_subject(const char *hdr, struct decoded *d)
{
    size_t n = 0;
    for (const char *p = strstr(hdr, "=?UTF-8?B?"); p; p = strstr(p, "=?UTF-8?B?")) {
        p += 10;
        const char *e = strstr(p, "?=");
        assert_non_null(e);
        size_t got;
        assert_int_equal(sodium_base642bin((unsigned char *)d->subject + n,
                                           sizeof d->subject - 1 - n, p, (size_t)(e - p), NULL,
                                           &got, NULL, sodium_base64_VARIANT_ORIGINAL),
                         0);
        n += got;
        p = e + 2;
    }
    d->subject[n] = '\0';
}

static void decode(const char *msg, size_t n, struct decoded *d)
{
    memset(d, 0, sizeof *d);
    assert_int_equal(strlen(msg), n);
    /* Every line ends in CRLF, and is at most 76 characters but To:. */
    for (const char *p = msg; *p;) {
        const char *e = strstr(p, "\r\n");
        assert_non_null(e);
        if (strncmp(p, "To: ", 4) != 0)
            assert_true(e - p <= 76);
        for (const char *q = p; q < e; q++)
            assert_true(*q != '\r' && *q != '\n');
        p = e + 2;
    }
    const char *end = strstr(msg, "\r\n\r\n");
    assert_non_null(end);
    size_t hn = (size_t)(end - msg) + 2;
    assert_true(hn < sizeof d->headers);
    memcpy(d->headers, msg, hn);
    const char *subj = strstr(d->headers, "\r\nSubject: ");
    assert_non_null(subj);
    const char *subj_end = subj + 2;
    while ((subj_end = strstr(subj_end, "\r\n")) && subj_end[2] == ' ')
        subj_end += 2;
    char folded[4096];
    snprintf(folded, sizeof folded, "%.*s", (int)(subj_end - subj), subj);
    decode_subject(folded, d);
    assert_int_equal(sodium_base642bin((unsigned char *)d->body, sizeof d->body - 1, end + 4,
                                       strlen(end + 4), "\r\n", &d->body_n, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    d->body[d->body_n] = '\0';
}

/* The header lines (names at a line start) of the header block. */
static int header_count(const char *headers, const char *name)
{
    int count = 0;
    size_t n = strlen(name);
    for (const char *p = headers; p && *p; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL)
        if (strncmp(p, name, n) == 0)
            count++;
    return count;
}

static void compose_ok(const struct compose_set *s, const struct compose_msg *m, struct decoded *d)
{
    char *out = malloc(KR_MAIL_MESSAGE_MAX);
    assert_non_null(out);
    size_t n;
    assert_int_equal(compose_message(s, m, out, KR_MAIL_MESSAGE_MAX, &n), KR_OK);
    decode(out, n, d);
    free(out);
}

static struct compose_msg auth_msg(enum compose_lang lang)
{
    struct compose_msg m = {.template_id = KR_TEMPLATE_AUTH_CODE,
                            .lang = lang,
                            .to = "hanako@shop.example.jp",
                            .date = T0,
                            .v = {.code = "483920",
                                  .code_expires = T0 + 15ull * 60 * 1000000000ull,
                                  .notice_kind = -1,
                                  .severity = -1}};
    for (int i = 0; i < 16; i++)
        m.message[i] = (uint8_t)(0xa0 + i);
    return m;
}

static void test_auth_code_ja_exact(void **state)
{
    (void)state;
    struct compose_set *s = load_default();
    struct compose_msg m = auth_msg(COMPOSE_LANG_JA);
    struct decoded *d = malloc(sizeof *d);
    compose_ok(s, &m, d);
    assert_string_equal(d->subject, "【kiroku】お申し込みの認証コード");
    assert_string_equal(d->body, "kiroku へのお申し込みありがとうございます。\r\n"
                                 "\r\n"
                                 "認証コード: 483920\r\n"
                                 "有効期限: 2026年12月6日 09:15 (日本時間)\r\n"
                                 "\r\n"
                                 "お申し込み画面でこの認証コードを入力し、お申し込みを完了して"
                                 "ください。\r\n"
                                 "お心当たりのない場合は、このメールを破棄してください。\r\n"
                                 "\r\n"
                                 "お問い合わせ: support@kiroku.example.jp\r\n"
                                 "\r\n"
                                 "----- English -----\r\n"
                                 "\r\n"
                                 "Thank you for signing up for kiroku.\r\n"
                                 "\r\n"
                                 "Auth code: 483920\r\n"
                                 "Expires: 6 Dec 2026 09:15 JST (UTC+9)\r\n"
                                 "\r\n"
                                 "Enter this code on the sign-up page to complete your sign-up.\r\n"
                                 "If you did not sign up, please ignore this e-mail.\r\n"
                                 "\r\n"
                                 "Support: support@kiroku.example.jp\r\n");
    assert_string_equal(d->headers,
                        "Date: Sun, 06 Dec 2026 09:00:00 +0900\r\n"
                        "From: kiroku <noreply@kiroku.invalid>\r\n"
                        "To: <hanako@shop.example.jp>\r\n"
                        "Subject: =?UTF-8?B?44CQa2lyb2t144CR44GK55Sz44GX6L6844G/44Gu6KqN6Ki8?=\r\n"
                        " =?UTF-8?B?44Kz44O844OJ?=\r\n"
                        "Message-ID: <a0a1a2a3a4a5a6a7a8a9aaabacadaeaf@kiroku.invalid>\r\n"
                        "MIME-Version: 1.0\r\n"
                        "Content-Type: text/plain; charset=UTF-8\r\n"
                        "Content-Transfer-Encoding: base64\r\n");
    free(d);
    compose_free(s);
}

static void test_auth_code_en_only(void **state)
{
    (void)state;
    struct compose_set *s = load_default();
    struct compose_msg m = auth_msg(COMPOSE_LANG_EN);
    struct decoded *d = malloc(sizeof *d);
    compose_ok(s, &m, d);
    assert_string_equal(d->subject, "[kiroku] Your sign-up auth code");
    assert_non_null(strstr(d->body, "Auth code: 483920\r\n"));
    assert_null(strstr(d->body, "認証コード"));
    assert_null(strstr(d->body, "English"));
    free(d);
    compose_free(s);
}

/* The Japanese incident notice, byte-exact: title, severity, summary,
 * detection and deadline in JST, what the tenant should do. */
static void test_incident_notice_ja_exact(void **state)
{
    (void)state;
    struct compose_set *s = load_default();
    struct compose_msg m = auth_msg(COMPOSE_LANG_JA);
    m.template_id = KR_TEMPLATE_INCIDENT_NOTICE;
    m.v = (struct compose_values){.title = "不正アクセス",
                                  .summary = "認証情報が不正に使われました。",
                                  .severity = KR_SEVERITY_HIGH,
                                  .notice_kind = -1,
                                  .detected = T0 - 3600ull * 1000000000ull,
                                  .deadline = T0 + 71ull * 3600 * 1000000000ull};
    struct decoded *d = malloc(sizeof *d);
    compose_ok(s, &m, d);
    assert_string_equal(d->subject, "【kiroku】インシデントのお知らせ: 不正アクセス");
    const char *ja = "kiroku をご利用のお客様へ\r\n"
                     "\r\n"
                     "お客様のデータに影響するおそれのあるインシデントが発生しました。\r\n"
                     "\r\n"
                     "件名: 不正アクセス\r\n"
                     "重大度: 高\r\n"
                     "概要: 認証情報が不正に使われました。\r\n"
                     "検知日時: 2026年12月6日 08:00 (日本時間)\r\n"
                     "通知期限: 2026年12月9日 08:00 (日本時間)\r\n"
                     "\r\n"
                     "お客様にお願いしたいこと:\r\n"
                     "- パスワードを変更し、身に覚えのないログインや操作がないか監査ログをご確認"
                     "ください。\r\n"
                     "- 不審な点があれば、インシデント報告またはお問い合わせ先からご連絡ください。"
                     "\r\n"
                     "\r\n"
                     "経過はログイン後のインシデント一覧でもご確認いただけます: "
                     "https://kiroku.example.jp/login\r\n"
                     "\r\n"
                     "お問い合わせ: support@kiroku.example.jp\r\n"
                     "\r\n"
                     "----- English -----\r\n"
                     "\r\n";
    assert_int_equal(strncmp(d->body, ja, strlen(ja)), 0);
    assert_non_null(strstr(d->body + strlen(ja),
                           "Detected: 6 Dec 2026 08:00 JST (UTC+9)\r\n"
                           "Notice deadline: 9 Dec 2026 08:00 JST (UTC+9)\r\n"));
    free(d);
    compose_free(s);
}

/* Python's e-mail parser (an independent reader of RFC 5322, 2047 and
 * 2045) decodes the Japanese auth-code mail to the same subject and text,
 * and finds one recipient and the Message-ID. */
static void test_python_reads(void **state)
{
    (void)state;
    struct compose_set *s = load_default();
    struct compose_msg m = auth_msg(COMPOSE_LANG_JA);
    char *out = malloc(KR_MAIL_MESSAGE_MAX), *err = malloc(KR_MAIL_MESSAGE_MAX);
    assert_true(out && err);
    size_t n;
    assert_int_equal(compose_message(s, &m, out, KR_MAIL_MESSAGE_MAX, &n), KR_OK);
    char dir[512], path[600];
    kr_test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/m.eml", dir);
    write_file(path, out);
    const char *args[] = {
        "-c",
        "import sys, email\n"
        "from email import policy\n"
        "m = email.message_from_bytes(open(sys.argv[1], 'rb').read(), policy=policy.strict)\n"
        "assert not m.defects, m.defects\n"
        "print(m['To'].addresses[0].addr_spec, len(m['To'].addresses))\n"
        "print(m['Message-ID'])\n"
        "print(m['Subject'])\n"
        "body = m.get_content()\n"
        "assert '\\n' not in body.replace('\\r\\n', ''), 'a bare line end'\n"
        "sys.stdout.write(body.replace('\\r\\n', '\\n'))\n",
        path, NULL};
    int rc = kr_test_run("/usr/bin/python3", args, out, err, KR_MAIL_MESSAGE_MAX);
    if (rc != 0)
        fail_msg("python3: %d: %s", rc, err);
    const char *head = "hanako@shop.example.jp 1\n"
                       "<a0a1a2a3a4a5a6a7a8a9aaabacadaeaf@kiroku.invalid>\n"
                       "【kiroku】お申し込みの認証コード\n"
                       "kiroku へのお申し込みありがとうございます。\n"
                       "\n"
                       "認証コード: 483920\n"
                       "有効期限: 2026年12月6日 09:15 (日本時間)\n";
    if (strncmp(out, head, strlen(head)) != 0)
        fail_msg("python3 read:\n%s", out);
    assert_non_null(strstr(out, "\n----- English -----\n\nThank you for signing up"));
    free(out);
    free(err);
    kr_test_rmrf(dir);
    compose_free(s);
}

/* Every template in both languages: its subject and body decode, every
 * placeholder filled, the values where they belong. */
static void test_every_template(void **state)
{
    (void)state;
    struct compose_set *s = load_default();
    struct decoded *d = malloc(sizeof *d);
    static const struct {
        int id;
        const char *ja_subject, *en_subject, *ja_needle, *en_needle;
    } cases[] = {
        {KR_TEMPLATE_AUTH_CODE, "【kiroku】お申し込みの認証コード",
         "[kiroku] Your sign-up auth code", "認証コード: 483920", "Auth code: 483920"},
        {KR_TEMPLATE_ACCOUNT_INFO, "【kiroku】アカウント情報のお知らせ",
         "[kiroku] Your account information", "テナントコード: shop-0042",
         "Tenant name: 株式会社サンプル商店"},
        {KR_TEMPLATE_PAYMENT_LINK, "【kiroku】お支払い手続きのご案内",
         "[kiroku] Complete your payment",
         "https://pay.example.jp/a/00112233445566778899aabbccddeeff",
         "https://pay.example.jp/a/00112233445566778899aabbccddeeff"},
        {KR_TEMPLATE_NOTICE_OF_CHANGE, "【kiroku】脆弱性のお知らせ: OpenSSL の更新",
         "[kiroku] Notice of a vulnerability: OpenSSL の更新",
         "適用日時: 2026年12月7日 09:00 (日本時間)", "Effective: 7 Dec 2026 09:00 JST (UTC+9)"},
        {KR_TEMPLATE_INCIDENT_NOTICE, "【kiroku】インシデントのお知らせ: 不正アクセス",
         "[kiroku] Incident notice: 不正アクセス", "重大度: 高\r\n概要: 調査中です",
         "Notice deadline: 9 Dec 2026 09:00 JST (UTC+9)"},
        {KR_TEMPLATE_INCIDENT_UPDATE, "【kiroku】インシデントの続報: 不正アクセス",
         "[kiroku] Incident update: 不正アクセス", "検知日時: 2026年12月6日 09:00 (日本時間)",
         "Severity: high"},
        {KR_TEMPLATE_INCIDENT_RESOLVED, "【kiroku】インシデント解決のお知らせ: 不正アクセス",
         "[kiroku] Incident resolved: 不正アクセス", "解決の内容: 調査中です",
         "Resolution: 調査中です"},
    };
    _Static_assert(sizeof cases / sizeof cases[0] == KR_TEMPLATE__COUNT, "every template");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int lang = 0; lang < COMPOSE_LANG__COUNT; lang++) {
            struct compose_msg m = auth_msg((enum compose_lang)lang);
            m.template_id = cases[i].id;
            m.v.tenant_name = "株式会社サンプル商店";
            m.v.tenant_code = "shop-0042";
            m.v.application_hex = "00112233445566778899aabbccddeeff";
            m.v.title =
                cases[i].id == KR_TEMPLATE_NOTICE_OF_CHANGE ? "OpenSSL の更新" : "不正アクセス";
            m.v.body = "更新を適用します。\nサービスは停止しません。";
            m.v.summary = "調査中です";
            m.v.notice_kind = KR_NOTICE_KIND_VULNERABILITY;
            m.v.severity = KR_SEVERITY_HIGH;
            m.v.effective = T0 + 24ull * 3600 * 1000000000ull;
            m.v.detected = T0;
            m.v.deadline = T0 + 72ull * 3600 * 1000000000ull;
            compose_ok(s, &m, d);
            bool ja = lang == COMPOSE_LANG_JA;
            assert_string_equal(d->subject, ja ? cases[i].ja_subject : cases[i].en_subject);
            if (ja)
                assert_non_null(strstr(d->body, cases[i].ja_needle));
            /* the English is in both: after the Japanese, or alone */
            assert_non_null(strstr(d->body, cases[i].en_needle));
            assert_int_equal(strstr(d->body, "----- English -----") != NULL, ja);
            assert_null(strchr(d->body, '{'));
            assert_null(strstr(d->body, ": -\r\n")); /* every value given was filled */
            /* bare LF in a value became CRLF */
            for (size_t k = 0; k < d->body_n; k++)
                if (d->body[k] == '\n')
                    assert_true(k > 0 && d->body[k - 1] == '\r');
        }
    }
    free(d);
    compose_free(s);
}

/* CR or LF in any value never starts a header: the subject is encoded (line
 * ends become spaces), the body base64; a recipient with one is refused. */
static void test_header_injection(void **state)
{
    (void)state;
    struct compose_set *s = load_default();
    struct decoded *d = malloc(sizeof *d);
    struct compose_msg m = auth_msg(COMPOSE_LANG_JA);
    m.template_id = KR_TEMPLATE_INCIDENT_NOTICE;
    m.v.title = "x\r\nBcc: evil@attacker.example\r\n\r\nforged";
    m.v.summary = "y\r\nBcc: evil@attacker.example";
    m.v.code = "1\nBcc: evil@attacker.example";
    compose_ok(s, &m, d);
    assert_int_equal(header_count(d->headers, "Bcc:"), 0);
    assert_int_equal(header_count(d->headers, "To:"), 1);
    assert_int_equal(header_count(d->headers, "Subject:"), 1);
    assert_null(strstr(d->headers, "evil"));
    assert_string_equal(d->subject,
                        "【kiroku】インシデントのお知らせ: x Bcc: evil@attacker.example  forged");
    char out[8192];
    size_t n;
    static const char *const bad_to[] = {"a@b.example\r\nBcc: evil@attacker.example",
                                         "a@b.example\n",
                                         "a@b.example\r",
                                         "a b@c.example",
                                         "<a@b.example>",
                                         "a@b.example,c@d.example",
                                         ""};
    for (size_t i = 0; i < sizeof bad_to / sizeof bad_to[0]; i++) {
        m.to = bad_to[i];
        assert_int_equal(compose_message(s, &m, out, sizeof out, &n), KR_EINVAL);
        assert_int_equal(n, 0);
    }
    m.to = NULL;
    assert_int_equal(compose_message(s, &m, out, sizeof out, &n), KR_EINVAL);
    free(d);
    compose_free(s);
}

/* A long subject is split into encoded-words on character boundaries, a
 * message over the buffer is KR_ETOOLARGE and leaves nothing behind. */
static void test_long_values(void **state)
{
    (void)state;
    struct compose_set *s = load_default();
    struct decoded *d = malloc(sizeof *d);
    struct compose_msg m = auth_msg(COMPOSE_LANG_JA);
    m.template_id = KR_TEMPLATE_NOTICE_OF_CHANGE;
    char title[KR_FLD_TITLE_MAX + 1] = "";
    for (int i = 0; i < 66; i++) /* 198 bytes of 3-byte characters */
        strcat(title, "あ");
    char *body = malloc(KR_FLD_BODY_MAX + 1);
    memset(body, 'b', KR_FLD_BODY_MAX);
    body[KR_FLD_BODY_MAX] = '\0';
    m.v.title = title;
    m.v.body = body;
    m.v.notice_kind = KR_NOTICE_KIND_CHANGE;
    compose_ok(s, &m, d);
    char want[512];
    snprintf(want, sizeof want, "【kiroku】変更のお知らせ: %s", title);
    assert_string_equal(d->subject, want);
    assert_non_null(strstr(d->body, body));
    char small[1024];
    size_t n = 1;
    assert_int_equal(compose_message(s, &m, small, sizeof small, &n), KR_ETOOLARGE);
    assert_int_equal(n, 0);
    assert_int_equal(small[0], '\0');
    m.template_id = KR_TEMPLATE__COUNT;
    assert_int_equal(compose_message(s, &m, small, sizeof small, &n), KR_EINVAL);
    free(body);
    free(d);
    compose_free(s);
}

/* Loading refuses what would give a broken e-mail, naming the file. */
static void test_load_refuses(void **state)
{
    (void)state;
    char dir[512], path[700], why[512];
    kr_test_tmpdir(dir, sizeof dir);
    char tdir[600];
    snprintf(tdir, sizeof tdir, "%s/t", dir);
    kr_test_copytree(TEMPLATES, tdir);
    struct compose_opts o = {.templates_dir = tdir};
    struct compose_set *s;
    assert_int_equal(compose_load(&o, &s, why, sizeof why), KR_OK);
    compose_free(s);

    snprintf(path, sizeof path, "%s/en/incident_update.txt", tdir);
    write_file(path, "Subject: Update {titel}\n\nBody\n");
    assert_int_equal(compose_load(&o, &s, why, sizeof why), KR_EINVAL);
    assert_null(s);
    assert_non_null(strstr(why, "en/incident_update.txt"));
    assert_non_null(strstr(why, "{titel}"));

    write_file(path, "Subject: Update\n\nBody {title\n");
    assert_int_equal(compose_load(&o, &s, why, sizeof why), KR_EINVAL);
    assert_non_null(strstr(why, "unclosed"));

    write_file(path, "Update {title}\n\nBody\n");
    assert_int_equal(compose_load(&o, &s, why, sizeof why), KR_EINVAL);
    assert_non_null(strstr(why, "Subject"));

    write_file(path, "Subject: Update\r\n\r\nBody\n");
    assert_int_equal(compose_load(&o, &s, why, sizeof why), KR_EINVAL);
    assert_non_null(strstr(why, "control character"));

    /* Messages that could outgrow the buffers with the longest values */
    write_file(path, "Subject: {body}\n\nBody\n");
    assert_int_equal(compose_load(&o, &s, why, sizeof why), KR_ETOOLARGE);
    assert_non_null(strstr(why, "KR_MAIL_SUBJECT_MAX"));
    write_file(path, "Subject: x\n\n{body}{body}{body}{body}\n");
    assert_int_equal(compose_load(&o, &s, why, sizeof why), KR_ETOOLARGE);
    assert_non_null(strstr(why, "incident_update.txt: the body could exceed KR_MAIL_TEXT_MAX"));

    write_file(path, "Subject: \xff\xfe\n\nBody\n");
    assert_int_equal(compose_load(&o, &s, why, sizeof why), KR_EINVAL);
    assert_non_null(strstr(why, "UTF-8"));

    assert_int_equal(unlink(path), 0);
    assert_int_equal(compose_load(&o, &s, why, sizeof why), KR_ENOTFOUND);
    assert_non_null(strstr(why, "en/incident_update.txt"));

    /* settings */
    o.templates_dir = TEMPLATES;
    static const char *const bad_from[] = {"kiroku <a@b.example>\r\nBcc: x@y", "no-at-sign",
                                           "a@b@c", "Name <a@b.example", "a,b@c.example"};
    for (size_t i = 0; i < sizeof bad_from / sizeof bad_from[0]; i++) {
        o.from = bad_from[i];
        assert_int_equal(compose_load(&o, &s, why, sizeof why), KR_EINVAL);
        assert_non_null(strstr(why, "mail.from"));
    }
    o.from = "Support <support@kiroku.example.jp>";
    o.payment_url = "https://pay.example.jp/{app}";
    assert_int_equal(compose_load(&o, &s, why, sizeof why), KR_EINVAL);
    assert_non_null(strstr(why, "mail.payment_url"));
    o.payment_url = NULL;
    o.support = "support\n@x";
    assert_int_equal(compose_load(&o, &s, why, sizeof why), KR_EINVAL);
    assert_non_null(strstr(why, "service.support"));
    o.support = NULL;
    assert_int_equal(compose_load(&o, &s, why, sizeof why), KR_OK);
    struct compose_msg m = auth_msg(COMPOSE_LANG_EN);
    struct decoded *d = malloc(sizeof *d);
    compose_ok(s, &m, d);
    assert_non_null(strstr(d->headers, "\r\nFrom: Support <support@kiroku.example.jp>\r\n"));
    assert_non_null(strstr(
        d->headers, "\r\nMessage-ID: <a0a1a2a3a4a5a6a7a8a9aaabacadaeaf@kiroku.example.jp>\r\n"));
    assert_non_null(strstr(d->body, "Support: -\r\n")); /* not configured */
    free(d);
    compose_free(s);
    kr_test_rmrf(dir);
}

/* kiroku serve refuses to start when a template is missing or malformed,
 * saying which (mail.templates_dir in the configuration file). */
static void test_serve_refuses(void **state)
{
    (void)state;
    char root[512], data[600], tdir[600], conf[600], path[700], lc[700], lo[700];
    kr_test_tmpdir(root, sizeof root);
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(tdir, sizeof tdir, "%s/t", root);
    snprintf(conf, sizeof conf, "%s/kiroku.conf", root);
    snprintf(lc, sizeof lc, "ipc://%s/c.sock", root);
    snprintf(lo, sizeof lo, "ipc://%s/o.sock", root);
    kr_test_copytree(TEMPLATES, tdir);
    char line[700];
    snprintf(line, sizeof line, "mail.templates_dir = %s\n", tdir);
    write_file(conf, line);
    assert_int_equal(chmod(conf, 0600), 0);
    enum { CAP = 64 * 1024 };
    char *out = malloc(CAP), *err = malloc(CAP);
    assert_true(out && err);
    const char *init[] = {"init", "--data", data, NULL};
    assert_int_equal(kr_test_run(KR_KIROKU_BIN, init, out, err, CAP), 0);
    const char *serve[] = {"serve",    "--data", data,         "--config", conf,
                           "--listen", lc,       "--operator", lo,         NULL};
    snprintf(path, sizeof path, "%s/ja/payment_link.txt", tdir);
    write_file(path, "Subject: {payment}\n\nBody\n");
    assert_int_not_equal(kr_test_run(KR_KIROKU_BIN, serve, out, err, CAP), 0);
    assert_non_null(strstr(err, "mail templates: "));
    assert_non_null(strstr(err, "ja/payment_link.txt: unknown or unclosed placeholder {payment}"));
    assert_int_equal(unlink(path), 0);
    assert_int_not_equal(kr_test_run(KR_KIROKU_BIN, serve, out, err, CAP), 0);
    assert_non_null(strstr(err, "ja/payment_link.txt"));
    free(out);
    free(err);
    kr_test_rmrf(root);
}

/* The mail in DIR/outbox to `to` whose subject is `subject`, decoded into d
 * (exactly one such). */
static void outbox_mail(struct td *t, const char *to, const char *subject, struct decoded *d)
{
    char dir[700], path[1000], hdr[300];
    snprintf(dir, sizeof dir, "%s/outbox", t->dir);
    snprintf(hdr, sizeof hdr, "\r\nTo: <%s>\r\n", to);
    DIR *dh = opendir(dir);
    assert_non_null(dh);
    char *text = malloc(KR_MAIL_MESSAGE_MAX);
    struct decoded *one = malloc(sizeof *one);
    assert_true(text && one);
    int found = 0;
    for (struct dirent *e; (e = readdir(dh)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        size_t n = fread(text, 1, KR_MAIL_MESSAGE_MAX - 1, f);
        fclose(f);
        text[n] = '\0';
        decode(text, n, one);
        if (strstr(one->headers, hdr) && strcmp(one->subject, subject) == 0) {
            *d = *one;
            found++;
        }
    }
    closedir(dh);
    free(text);
    free(one);
    if (found != 1)
        fail_msg("%d mails to %s titled %s", found, to, subject);
}

/* What follows needle in text up to the line end, into out. */
static void line_after(const char *text, const char *needle, char *out, size_t cap)
{
    const char *p = strstr(text, needle);
    assert_non_null(p);
    p += strlen(needle);
    size_t n = strcspn(p, "\r\n");
    assert_true(n < cap);
    memcpy(out, p, n);
    out[n] = '\0';
}

/* Signs up email (in language lang, or none given if lang < 0) the whole
 * way, checking the payment-link and auth-code mails on the way. Returns
 * the tenant. */
static uint64_t signup_lang(struct td *t, const char *email, int lang, const char *name,
                            struct decoded *d)
{
    struct kr_caller anon = td_anonymous(), op = td_operator();
    bool en = lang == KR_LANGUAGE_EN;
    uint8_t app[16];
    char hex[33], want[200], code[32];
    struct kr_payload *a = td_args(t);
    kr_set_str(a, KR_FLD_EMAIL, email);
    if (lang >= 0)
        kr_set_u64(a, KR_FLD_LANGUAGE, (uint64_t)lang);
    assert_int_equal(td_exec(t, &anon, KR_OP_SIGNUP_APPLY), KR_OK);
    td_get_id(t, "application", app);
    assert_int_equal(mailer_run(t->d, NULL), KR_OK);
    outbox_mail(t, email,
                en ? "[kiroku] Complete your payment" : "【kiroku】お支払い手続きのご案内", d);
    sodium_bin2hex(hex, sizeof hex, app, 16);
    snprintf(want, sizeof want, "https://pay.example.jp/a/%s\r\n", hex);
    assert_non_null(strstr(d->body, want));
    assert_int_equal(strstr(d->body, "お支払い手続きを行ってください") == NULL, en);

    a = td_args(t);
    kr_set_bytes(a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(a, KR_FLD_PAYMENT_REF, "pay-1");
    assert_int_equal(td_exec(t, &op, KR_OP_SIGNUP_CONFIRM_PAYMENT), KR_OK);
    assert_int_equal(mailer_run(t->d, NULL), KR_OK);
    outbox_mail(t, email,
                en ? "[kiroku] Your sign-up auth code" : "【kiroku】お申し込みの認証コード", d);
    line_after(d->body, "Auth code: ", code, sizeof code);
    assert_int_equal(strstr(d->body, "認証コード: ") == NULL, en);

    a = td_args(t);
    kr_set_bytes(a, KR_FLD_APPLICATION, app, 16);
    kr_set_str(a, KR_FLD_AUTH_CODE, code);
    kr_set_str(a, KR_FLD_PASSWORD, "a-long-password-4711");
    kr_set_str(a, KR_FLD_TENANT_NAME, name);
    assert_int_equal(td_exec(t, &anon, KR_OP_SIGNUP_COMPLETE), KR_OK);
    assert_int_equal(mailer_run(t->d, NULL), KR_OK);
    outbox_mail(t, email,
                en ? "[kiroku] Your account information" : "【kiroku】アカウント情報のお知らせ", d);
    snprintf(want, sizeof want, "Tenant name: %s\r\n", name);
    assert_non_null(strstr(d->body, want));
    assert_non_null(strstr(d->body, "Login URL: https://kiroku.example.jp/login\r\n"));
    MDB_txn *txn;
    uint64_t tenant;
    assert_int_equal(mdb_txn_begin(jrn_env(t->d->j), NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(va_signup_tenant(&t->d->views, txn, app, &tenant), KR_OK);
    mdb_txn_abort(txn);
    return tenant;
}

/* signup.apply e-mails the payment link; the language given there (default
 * ja) is the language of every e-mail of the sign-up and, kept with the
 * tenant, of the incident notices later; a notice names its title,
 * severity, summary and times. */
static void test_language_and_payment(void **state)
{
    (void)state;
    struct td *t = td_new(7);
    struct compose_set *s = load_default();
    compose_install(s);
    struct decoded *d = malloc(sizeof *d);
    uint64_t ten[2];
    ten[0] = signup_lang(t, "en@shop.example.jp", KR_LANGUAGE_EN, "Shop A", d);
    ten[1] = signup_lang(t, "ja@shop.example.jp", -1, "株式会社サンプル", d);

    struct kr_caller op = td_operator();
    uint64_t detected = kr_clock_now(t->d->clock) - 3600ull * 1000000000ull;
    struct kr_payload *a = td_args(t);
    kr_set_u64(a, KR_FLD_INCIDENT_SCOPE, KR_INCIDENT_SCOPE_BREACH);
    kr_set_u64(a, KR_FLD_SEVERITY, KR_SEVERITY_CRITICAL);
    kr_set_str(a, KR_FLD_TITLE, "不正アクセス");
    kr_set_str(a, KR_FLD_SUMMARY, "認証情報が不正に使われました。");
    kr_set_u64(a, KR_FLD_DETECTED, detected);
    kr_set_u64(a, KR_FLD_AUDIENCE, KR_AUDIENCE_LISTED);
    kr_set_tenants(a, KR_FLD_TENANTS, ten, 2);
    assert_int_equal(td_exec(t, &op, KR_OP_INCIDENTS_OPEN), KR_OK);
    uint8_t inc[16];
    td_get_id(t, "incident", inc);
    for (int i = 0; i < 2; i++) {
        a = td_args(t);
        kr_set_bytes(a, KR_FLD_INCIDENT, inc, 16);
        kr_set_u64(a, KR_FLD_TENANT, ten[i]);
        kr_set_u64(a, KR_FLD_CHANNEL, KR_CHANNEL_EMAIL);
        assert_int_equal(td_exec(t, &op, KR_OP_INCIDENTS_NOTIFY), KR_OK);
    }
    assert_int_equal(mailer_run(t->d, NULL), KR_OK);
    outbox_mail(t, "en@shop.example.jp", "[kiroku] Incident notice: 不正アクセス", d);
    assert_null(strstr(d->body, "重大度"));
    assert_non_null(strstr(d->body, "Severity: critical\r\n"
                                    "Summary: 認証情報が不正に使われました。\r\n"));
    char when[100];
    line_after(d->body, "Notice deadline: ", when, sizeof when);
    assert_non_null(strstr(when, " JST (UTC+9)"));
    outbox_mail(t, "ja@shop.example.jp", "【kiroku】インシデントのお知らせ: 不正アクセス", d);
    assert_non_null(strstr(d->body, "重大度: 緊急\r\n"));
    line_after(d->body, "通知期限: ", when, sizeof when);
    assert_non_null(strstr(when, " (日本時間)"));
    assert_non_null(strstr(d->body, "Severity: critical\r\n"));

    compose_install(NULL);
    compose_free(s);
    free(d);
    td_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_code_ja_exact),
        cmocka_unit_test(test_auth_code_en_only),
        cmocka_unit_test(test_incident_notice_ja_exact),
        cmocka_unit_test(test_python_reads),
        cmocka_unit_test(test_every_template),
        cmocka_unit_test(test_header_injection),
        cmocka_unit_test(test_long_values),
        cmocka_unit_test(test_load_refuses),
        cmocka_unit_test(test_serve_refuses),
        cmocka_unit_test(test_language_and_payment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
