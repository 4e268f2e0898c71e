/*
 * loadgen_test.c - unit tests for the load generator's pure parts: SHA-1 / base64 and the
 * Sec-WebSocket-Accept value (RFC 6455 example), the upgrade response check, client frame
 * encoding, server frame decoding (every length form, every refusal), the flat JSON scanner and
 * escaper, the latency histogram, and the named counters.
 *
 * Includes the .c files to reach their statics (house style for unit tests).  Each test is one
 * function; main() runs them all and exits non-zero when any check failed.
 */
#include "loadgen_stats.c"
#include "loadgen_ws.c"

#include <stdlib.h>

static int failures, checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__, __func__, #cond); \
        }                                                                                          \
    } while (0)

static void hex(const unsigned char *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

static void test_sha1_vectors(void)
{
    unsigned char md[20];
    char h[41];
    static const struct {
        const char *in, *out;
    } v[] = {
        {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
        /* 64 bytes: the padding needs a second block */
        {"0123456789012345678901234567890123456789012345678901234567890123",
         "cf0800f7644ace3cb4c3fa33388d3ba0ea3c8b6e"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        lg_sha1(v[i].in, strlen(v[i].in), md);
        hex(md, 20, h);
        CHECK(strcmp(h, v[i].out) == 0);
    }
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    lg_sha1(a, 1000000, md);
    hex(md, 20, h);
    CHECK(strcmp(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f") == 0);
    free(a);
}

static void test_sha1_block_boundaries(void)
{
    /* lengths around 55/56/64 bytes take the one- and two-block padding paths; the digests
     * come from Python's hashlib over bytes (i * 7 + 1) & 255 */
    static const struct {
        size_t n;
        const char *out;
    } v[] = {
        {55, "04bb34aef4880b625e6b1564a014abd25fc02bfe"},
        {56, "83b9fcb6d3e3b20f376ab989a1b6353bcc6c0f44"},
        {57, "2a1102af8a806e1fe19c618ee2b4721b38d5c797"},
        {63, "ab15090e8dbe512f3733350f9623ab11f9b5165b"},
        {64, "54305ee7e4c7bc5a96afc6d1994fc52d9bcb665f"},
        {65, "5985422a25357371ebd2a7f6ecd7eebed43db42c"},
        {119, "6839d6c27f22ed884ac43ae6bd3bfcee9e04b938"},
        {120, "8c40517a14ab8b78fd4b8958f4e31254a34c3fb0"},
        {128, "22485dc0d1e1d6e9e93e4a2a4667b8e979456379"},
    };
    unsigned char buf[130], md[20];
    char h[41];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)(i * 7 + 1);
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        lg_sha1(buf, v[i].n, md);
        hex(md, 20, h);
        CHECK(strcmp(h, v[i].out) == 0);
    }
}

static void test_base64(void)
{
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    char b[16];
    for (int i = 0; i < 7; i++) {
        size_t n = lg_base64((const unsigned char *)in[i], strlen(in[i]), b, sizeof(b));
        CHECK(n == strlen(out[i]) && strcmp(b, out[i]) == 0);
    }
    CHECK(lg_base64((const unsigned char *)"foobar", 6, b, 8) == 0); /* needs 9 */
}

static void test_accept_rfc_example(void)
{
    char acc[29];
    lg_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", acc);
    CHECK(strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
}

static void test_make_key(void)
{
    uint64_t rng = 12345;
    char k1[LG_WS_KEY_LEN + 1], k2[LG_WS_KEY_LEN + 1];
    lg_ws_make_key(&rng, k1);
    lg_ws_make_key(&rng, k2);
    CHECK(strlen(k1) == LG_WS_KEY_LEN && strcmp(k1 + 22, "==") == 0);
    CHECK(strcmp(k1, k2) != 0);
}

static void test_request(void)
{
    char buf[512];
    int n = lg_ws_request(buf, sizeof(buf), "127.0.0.1", 8080, "/chat", "redress.chat.v1",
                          "dGhlIHNhbXBsZSBub25jZQ==");
    CHECK(n > 0 && (size_t)n == strlen(buf));
    CHECK(strncmp(buf, "GET /chat HTTP/1.1\r\n", 20) == 0);
    CHECK(strstr(buf, "\r\nSec-WebSocket-Protocol: redress.chat.v1\r\n") != NULL);
    CHECK(strstr(buf, "\r\nSec-WebSocket-Version: 13\r\n") != NULL);
    CHECK(n >= 4 && strcmp(buf + n - 4, "\r\n\r\n") == 0);
    volatile size_t small = 40; /* not a constant: a Release build would warn of the truncation
                                   this checks */
    CHECK(lg_ws_request(buf, small, "127.0.0.1", 8080, "/chat", "p", "k") == -1);
}

static const char *key = "dGhlIHNhbXBsZSBub25jZQ==";

static void test_response_ok(void)
{
    char err[160];
    const char *r = "HTTP/1.1 101 Switching Protocols\r\n"
                    "upgrade: WebSocket\r\n"
                    "CONNECTION: keep-alive, Upgrade\r\n"
                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                    "Sec-WebSocket-Protocol: redress.chat.v1\r\n"
                    "\r\n"
                    "\x81\x02{}";
    int n = lg_ws_response(r, strlen(r), key, "redress.chat.v1", err, sizeof(err));
    CHECK(n == (int)(strlen(r) - 4));
    /* every prefix of the head is "not yet" */
    for (int i = 0; i < n; i++)
        CHECK(lg_ws_response(r, (size_t)i, key, "redress.chat.v1", err, sizeof(err)) == 0);
}

static void test_response_refusals(void)
{
    char err[160];
    const char *forbidden = "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n";
    CHECK(lg_ws_response(forbidden, strlen(forbidden), key, "p", err, sizeof(err)) == -1);
    CHECK(strstr(err, "403") != NULL);

    const char *bad_accept =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"
        "Sec-WebSocket-Protocol: redress.chat.v1\r\n\r\n";
    CHECK(lg_ws_response(bad_accept, strlen(bad_accept), key, "redress.chat.v1", err,
                         sizeof(err)) == -1);
    CHECK(strstr(err, "Accept") != NULL);

    const char *no_proto =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    CHECK(lg_ws_response(no_proto, strlen(no_proto), key, "redress.chat.v1", err, sizeof(err)) ==
          -1);
    CHECK(strstr(err, "subprotocol") != NULL);

    const char *no_upgrade = "HTTP/1.1 101 Switching Protocols\r\n"
                             "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                             "Sec-WebSocket-Protocol: redress.chat.v1\r\n\r\n";
    CHECK(lg_ws_response(no_upgrade, strlen(no_upgrade), key, "redress.chat.v1", err,
                         sizeof(err)) == -1);

    char big[9000];
    memset(big, 'x', sizeof(big));
    CHECK(lg_ws_response(big, sizeof(big), key, "p", err, sizeof(err)) == -1);
}

/* Builds an unmasked server frame into out; returns its length. */
static size_t server_frame(unsigned char *out, int b0, const unsigned char *p, size_t len)
{
    size_t o = 0;
    out[o++] = (unsigned char)b0;
    if (len <= 125) {
        out[o++] = (unsigned char)len;
    } else if (len <= 65535) {
        out[o++] = 126;
        out[o++] = (unsigned char)(len >> 8);
        out[o++] = (unsigned char)len;
    } else {
        out[o++] = 127;
        for (int i = 7; i >= 0; i--)
            out[o++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    memcpy(out + o, p, len);
    return o + len;
}

static void test_encode_masked(void)
{
    static const size_t sizes[] = {0, 1, 125, 126, 1000, 65535, 65536, 70000};
    unsigned char *payload = malloc(70000), *out = malloc(70000 + 14);
    for (size_t i = 0; i < 70000; i++)
        payload[i] = (unsigned char)(i * 31);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t len = sizes[k], hdr = len <= 125 ? 2 : len <= 65535 ? 4 : 10;
        size_t n = lg_ws_encode(out, LG_OP_TEXT, payload, len, 0xA1B2C3D4u);
        CHECK(n == lg_ws_frame_size(len));
        CHECK(n == hdr + 4 + len);
        CHECK(out[0] == 0x81);       /* FIN + text */
        CHECK((out[1] & 0x80) != 0); /* masked */
        const unsigned char *m = out + hdr;
        int same = 1;
        for (size_t i = 0; i < len; i++)
            same &= (unsigned char)(out[hdr + 4 + i] ^ m[i & 3]) == payload[i];
        CHECK(same);
    }
    free(payload);
    free(out);
}

static void test_decode_lengths(void)
{
    static const size_t sizes[] = {0, 5, 125, 126, 65535, 65536, 100000};
    unsigned char *p = malloc(100000), *buf = malloc(100000 + 10);
    memset(p, 'x', 100000);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        lg_frame_t f;
        const char *err = NULL;
        size_t n = server_frame(buf, 0x81, p, sizes[k]);
        CHECK(lg_ws_decode(buf, n, 1 << 20, &f, &err) == (long)n);
        CHECK(f.fin == 1 && f.opcode == LG_OP_TEXT && f.len == sizes[k]);
        CHECK(lg_ws_decode(buf, n - 1, 1 << 20, &f, &err) == 0 || n == 2);
        CHECK(lg_ws_decode(buf, 1, 1 << 20, &f, &err) == 0);
    }
    free(p);
    free(buf);
}

static void test_decode_refusals(void)
{
    unsigned char buf[300], p[200];
    lg_frame_t f;
    const char *err;
    memset(p, 0, sizeof(p));

    server_frame(buf, 0x81, p, 3);
    buf[1] |= 0x80; /* masked from the server */
    CHECK(lg_ws_decode(buf, 9, 1 << 20, &f, &err) == -1);
    size_t n = server_frame(buf, 0xC1, p, 3); /* RSV1 */
    CHECK(lg_ws_decode(buf, n, 1 << 20, &f, &err) == -1);
    n = server_frame(buf, 0x83, p, 3); /* opcode 3 */
    CHECK(lg_ws_decode(buf, n, 1 << 20, &f, &err) == -1);
    n = server_frame(buf, 0x89, p, 126); /* ping over 125 */
    CHECK(lg_ws_decode(buf, n, 1 << 20, &f, &err) == -1);
    n = server_frame(buf, 0x09, p, 3); /* fragmented ping */
    CHECK(lg_ws_decode(buf, n, 1 << 20, &f, &err) == -1);
    n = server_frame(buf, 0x81, p, 200);
    CHECK(lg_ws_decode(buf, n, 100, &f, &err) == -1);
    CHECK(err && strstr(err, "limit"));
    unsigned char huge[10] = {0x81, 127, 0x80, 0, 0, 0, 0, 0, 0, 1};
    CHECK(lg_ws_decode(huge, sizeof(huge), 1 << 20, &f, &err) == -1);
}

static void test_decode_stream(void)
{
    /* two frames back to back, then a close with a code */
    unsigned char buf[64];
    size_t n = server_frame(buf, 0x01, (const unsigned char *)"ab", 2);
    n += server_frame(buf + n, 0x80, (const unsigned char *)"cd", 2);
    n += server_frame(buf + n, 0x88, (const unsigned char *)"\x03\xe8", 2);
    lg_frame_t f;
    const char *err;
    long a = lg_ws_decode(buf, n, 100, &f, &err);
    CHECK(a == 4 && f.fin == 0 && f.opcode == LG_OP_TEXT && memcmp(f.payload, "ab", 2) == 0);
    long b = lg_ws_decode(buf + a, n - (size_t)a, 100, &f, &err);
    CHECK(b == 4 && f.fin == 1 && f.opcode == LG_OP_CONT && memcmp(f.payload, "cd", 2) == 0);
    long c = lg_ws_decode(buf + a + b, n - (size_t)(a + b), 100, &f, &err);
    CHECK(c == 4 && f.opcode == LG_OP_CLOSE && (f.payload[0] << 8 | f.payload[1]) == 1000);
}

static void test_json_scan_frames(void)
{
    lg_msg_t m;
    const char *ack = "{\"type\":\"ack\",\"id\":\"m-17\",\"seq\":42}";
    CHECK(lg_json_scan(ack, strlen(ack), &m) == 0);
    CHECK(strcmp(m.type, "ack") == 0 && strcmp(m.id, "m-17") == 0 && m.has_seq && m.seq == 42);

    const char *msg = " { \"seq\" : 7 , \"type\":\"message\",\"from\":\"bot\","
                      "\"options\":[\"是\",\"否\",{\"x\":[1,2,{\"y\":null}]}],"
                      "\"text\":\"非常抱歉\\n\\\"退款\\\"\",\"ts\":\"2026\",\"n\":-1.5e3,"
                      "\"ok\":true } ";
    CHECK(lg_json_scan(msg, strlen(msg), &m) == 0);
    CHECK(strcmp(m.type, "message") == 0 && strcmp(m.from, "bot") == 0 && m.seq == 7);
    CHECK(m.text && m.text_len == strlen("非常抱歉\\n\\\"退款\\\""));
    CHECK(strncmp(m.text, "非常抱歉", strlen("非常抱歉")) == 0);

    const char *st = "{\"type\":\"status\",\"seq\":3,\"state\":\"queued\","
                     "\"detail\":{\"position\":3,\"wait_s\":120},\"ts\":\"x\"}";
    CHECK(lg_json_scan(st, strlen(st), &m) == 0);
    CHECK(strcmp(m.state, "queued") == 0 && m.seq == 3);

    const char *er =
        "{\"type\":\"error\",\"code\":\"rate_limited\",\"message\":\"m\",\"id\":\"m-1\"}";
    CHECK(lg_json_scan(er, strlen(er), &m) == 0);
    CHECK(strcmp(m.code, "rate_limited") == 0 && strcmp(m.id, "m-1") == 0 && !m.has_seq);
}

static void test_json_scan_escapes(void)
{
    lg_msg_t m;
    const char *u = "{\"type\":\"\\u0061ck\",\"id\":\"\\u4e2d\\ud83d\\ude00\"}";
    CHECK(lg_json_scan(u, strlen(u), &m) == 0);
    CHECK(strcmp(m.type, "ack") == 0);
    CHECK(strcmp(m.id, "中\xF0\x9F\x98\x80") == 0);
    const char *lone = "{\"id\":\"\\ude00\"}";
    CHECK(lg_json_scan(lone, strlen(lone), &m) == -1);
    /* a long value is cut to the field and still terminated */
    char longid[300];
    int n = snprintf(longid, sizeof(longid), "{\"id\":\"%0200d\"}", 0);
    CHECK(lg_json_scan(longid, (size_t)n, &m) == 0 && strlen(m.id) == sizeof(m.id) - 1);
}

static void test_json_scan_malformed(void)
{
    static const char *bad[] = {
        "",
        "[]",
        "{",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{\"a\":1}x",
        "{\"a\":tru}",
        "{\"a\":\"\x01\"}",
        "{\"seq\":1.5}",
        "{\"a\":[1,}",
        "{\"a\":\"\\x\"}",
        "{a:1}",
        "{\"a\":{\"b\":1}",
    };
    lg_msg_t m;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(lg_json_scan(bad[i], strlen(bad[i]), &m) == -1);
    CHECK(lg_json_scan("{}", 2, &m) == 0 && m.type[0] == '\0');
    /* nesting deeper than 64 is refused rather than recursing without end */
    char deep[300];
    size_t o = 0;
    o += (size_t)sprintf(deep, "{\"a\":");
    for (int i = 0; i < 100; i++)
        deep[o++] = '[';
    for (int i = 0; i < 100; i++)
        deep[o++] = ']';
    deep[o++] = '}';
    CHECK(lg_json_scan(deep, o, &m) == -1);
}

static void test_json_escape(void)
{
    char out[64];
    CHECK(lg_json_escape(out, sizeof(out), "a\"b\\c\nd\x01") == (long)strlen(out));
    CHECK(strcmp(out, "a\\\"b\\\\c\\nd\\u0001") == 0);
    CHECK(lg_json_escape(out, sizeof(out), "") == 0 && out[0] == '\0');
    CHECK(lg_json_escape(out, 4, "abcd") == -1);
    CHECK(lg_json_escape(out, 5, "abcd") == 4);
    /* round trip through the scanner */
    char frame[128];
    lg_msg_t m;
    lg_json_escape(out, sizeof(out), "x\"y\\z");
    int n = snprintf(frame, sizeof(frame), "{\"id\":\"%s\"}", out);
    CHECK(lg_json_scan(frame, (size_t)n, &m) == 0 && strcmp(m.id, "x\"y\\z") == 0);
}

static void test_hist_buckets(void)
{
    uint64_t lo, hi, prev_hi = 0;
    for (int i = 0; i < LG_HIST_BUCKETS; i++) {
        lg_hist_range(i, &lo, &hi);
        CHECK(i == 0 || lo == prev_hi + 1); /* contiguous */
        CHECK(lg_hist_index(lo) == i && lg_hist_index(hi) == i);
        CHECK(i < 64 || (double)(hi - lo + 1) / (double)lo <= 1.0 / 32 + 1e-9);
        prev_hi = hi;
    }
    CHECK(lg_hist_index(UINT64_MAX) == LG_HIST_BUCKETS - 1);
    CHECK(hi == (1ULL << 40) - 1);
}

static void test_hist_quantiles(void)
{
    lg_hist_t *h = calloc(1, sizeof(*h)), *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    CHECK(lg_hist_quantile(h, 0.5) == 0);
    for (uint64_t v = 1; v <= 10000; v++) {
        lg_hist_add(h, v * 100);
        lg_hist_add(v % 2 ? a : b, v * 100);
    }
    uint64_t p50 = lg_hist_quantile(h, 0.5), p99 = lg_hist_quantile(h, 0.99);
    CHECK(p50 >= 500000 && p50 <= 500000 * 1.032);
    CHECK(p99 >= 990000 && p99 <= 990000 * 1.032);
    CHECK(lg_hist_quantile(h, 1.0) == 1000000);
    CHECK(lg_hist_quantile(h, 0.0) == 100 || lg_hist_quantile(h, 0.0) <= 103);
    lg_hist_merge(a, b);
    CHECK(a->count == h->count && a->sum_us == h->sum_us && a->max_us == h->max_us);
    CHECK(memcmp(a->bucket, h->bucket, sizeof(h->bucket)) == 0);
    free(h);
    free(a);
    free(b);
}

static void test_counters(void)
{
    lg_counter_t tab[LG_MAX_CODES];
    int n = 0;
    char name[16];
    lg_count(tab, &n, "1000");
    lg_count(tab, &n, "1000");
    CHECK(n == 1 && tab[0].n == 2);
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        lg_count(tab, &n, name);
    }
    CHECK(n == LG_MAX_CODES);
    CHECK(strcmp(tab[LG_MAX_CODES - 1].name, "other") == 0);
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        total += tab[i].n;
    CHECK(total == 42);
}

static void test_report_is_json(void)
{
    lg_stats_t *st = calloc(1, sizeof(*st));
    lg_report_t r = {.mode = "closed",
                     .target = "127.0.0.1:1/chat",
                     .conns = 3,
                     .window_s = 2,
                     .note = "a \"quoted\" note",
                     .st = st};
    char *buf = NULL;
    size_t len = 0;
    lg_msg_t m;
    st->window_turns = 10;
    lg_hist_add(&st->turn, 1500);
    lg_count(st->errors, &st->nerrors, "rate_limited");
    FILE *f = open_memstream(&buf, &len);
    lg_report_json(f, &r);
    fclose(f);
    CHECK(lg_json_scan(buf, len, &m) == 0); /* well-formed, nested objects and all */
    CHECK(strstr(buf, "\"turns_per_s\":5.0") != NULL);
    CHECK(strstr(buf, "\"rate_limited\":1") != NULL);
    CHECK(strstr(buf, "\"buckets\":[[1472,1503,1]]") != NULL);
    free(buf);
    free(st);
}

int main(void)
{
    test_sha1_vectors();
    test_sha1_block_boundaries();
    test_base64();
    test_accept_rfc_example();
    test_make_key();
    test_request();
    test_response_ok();
    test_response_refusals();
    test_encode_masked();
    test_decode_lengths();
    test_decode_refusals();
    test_decode_stream();
    test_json_scan_frames();
    test_json_scan_escapes();
    test_json_scan_malformed();
    test_json_escape();
    test_hist_buckets();
    test_hist_quantiles();
    test_counters();
    test_report_is_json();
    printf("loadgen_test: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
