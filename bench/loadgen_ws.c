/*
 * loadgen_ws.c - the load generator's own WebSocket client codec and JSON scanner.
 *
 * Why not libwebsockets' client API: each lws client connection carries a wsi (a few hundred
 * bytes), an rx buffer sized by the protocol, and lws's per-connection timers and state, and lws
 * serialises client connects through its own DNS/connect state machine.  For 15,000 sockets
 * driven from one small process on a 2-core machine shared with the server under test, the
 * client must cost far less than the server.  A raw libuv TCP socket plus this codec costs one
 * uv_tcp_t and a small struct per conversation, parses frames straight out of one shared read
 * buffer, and timestamps each frame where it arrives.
 *
 * Everything here is a pure function over caller-owned buffers (no allocation, no I/O):
 *   lg_sha1 / lg_base64          Sec-WebSocket-Accept
 *   lg_ws_request                the GET /chat upgrade with Sec-WebSocket-Protocol
 *   lg_ws_response               checks 101, Upgrade, Connection, Accept and the subprotocol
 *   lg_ws_encode / lg_ws_decode  masked client frames out; unmasked server frames in
 *   lg_json_scan                 the top-level fields of a flat protocol frame
 *   lg_json_escape               a customer line as a JSON string body
 */
#include "loadgen.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- SHA-1 (FIPS 180-4) ---- */

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80], a, b, c, d, e;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20)
            f = (b & c) | (~b & d), k = 0x5A827999u;
        else if (i < 40)
            f = b ^ c ^ d, k = 0x6ED9EBA1u;
        else if (i < 60)
            f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDCu;
        else
            f = b ^ c ^ d, k = 0xCA62C1D6u;
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

void lg_sha1(const void *data, size_t len, unsigned char out[20])
{
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    const unsigned char *p = data;
    unsigned char tail[128];
    size_t full = len / 64 * 64, rest = len - full, tlen;
    uint64_t bits = (uint64_t)len * 8;

    for (size_t i = 0; i < full; i += 64)
        sha1_block(h, p + i);
    memset(tail, 0, sizeof(tail));
    memcpy(tail, p + full, rest);
    tail[rest] = 0x80;
    tlen = rest + 1 + 8 <= 64 ? 64 : 128;
    for (int i = 0; i < 8; i++)
        tail[tlen - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t i = 0; i < tlen; i += 64)
        sha1_block(h, tail + i);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

size_t lg_base64(const unsigned char *in, size_t len, char *out, size_t outlen)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t need = (len + 2) / 3 * 4, o = 0;
    if (outlen < need + 1)
        return 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

/* ---- upgrade ---- */

static uint64_t next_rand(uint64_t *s)
{
    uint64_t x = *s; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

void lg_ws_make_key(uint64_t *rng, char key[LG_WS_KEY_LEN + 1])
{
    unsigned char raw[16];
    uint64_t a = next_rand(rng), b = next_rand(rng);
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    lg_base64(raw, sizeof(raw), key, LG_WS_KEY_LEN + 1);
}

void lg_ws_accept(const char *key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char buf[128];
    unsigned char md[20];
    int n = snprintf(buf, sizeof(buf), "%s%s", key, guid);
    lg_sha1(buf, (size_t)n, md);
    lg_base64(md, sizeof(md), out, 29);
}

int lg_ws_request(char *buf, size_t buflen, const char *host, int port, const char *path,
                  const char *protocol, const char *key)
{
    int n = snprintf(buf, buflen,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: %s\r\n"
                     "\r\n",
                     path, host, port, key, protocol);
    return (n < 0 || (size_t)n >= buflen) ? -1 : n;
}

static void fail(char *err, size_t errlen, const char *what, const char *p, size_t n)
{
    if (err && errlen)
        snprintf(err, errlen, "%s%.*s", what, (int)(n > 80 ? 80 : n), p ? p : "");
}

/* 1 when the comma-separated header value v[0..n) contains token (case-insensitive). */
static int has_token(const char *v, size_t n, const char *token)
{
    size_t tl = strlen(token);
    for (size_t i = 0; i + tl <= n; i++)
        if (strncasecmp(v + i, token, tl) == 0 && (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ') &&
            (i + tl == n || v[i + tl] == ',' || v[i + tl] == ' '))
            return 1;
    return 0;
}

int lg_ws_response(const char *buf, size_t len, const char *key, const char *protocol, char *err,
                   size_t errlen)
{
    const char *end = NULL;
    char want[29];
    int got_upgrade = 0, got_connection = 0, got_accept = 0, got_protocol = 0;

    for (size_t i = 0; i + 3 < len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
            end = buf + i + 4;
            break;
        }
    if (!end) {
        if (len > 8192) {
            fail(err, errlen, "upgrade response head over 8 KiB", NULL, 0);
            return -1;
        }
        return 0;
    }
    const char *eol = memchr(buf, '\r', (size_t)(end - buf));
    size_t l0 = (size_t)(eol - buf);
    if (l0 < 12 || strncmp(buf, "HTTP/1.1 101", 12) != 0) {
        fail(err, errlen, "upgrade refused: ", buf, l0);
        return -1;
    }
    lg_ws_accept(key, want);
    for (const char *p = eol + 2; p < end - 2;) {
        const char *e = memchr(p, '\r', (size_t)(end - p));
        const char *colon = memchr(p, ':', (size_t)(e - p));
        if (colon) {
            size_t nl = (size_t)(colon - p);
            const char *v = colon + 1;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            size_t vl = (size_t)(e - v);
            while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            if (nl == 7 && strncasecmp(p, "upgrade", 7) == 0)
                got_upgrade = vl == 9 && strncasecmp(v, "websocket", 9) == 0;
            else if (nl == 10 && strncasecmp(p, "connection", 10) == 0)
                got_connection = has_token(v, vl, "upgrade");
            else if (nl == 20 && strncasecmp(p, "sec-websocket-accept", 20) == 0)
                got_accept = vl == 28 && memcmp(v, want, 28) == 0;
            else if (nl == 22 && strncasecmp(p, "sec-websocket-protocol", 22) == 0)
                got_protocol = vl == strlen(protocol) && memcmp(v, protocol, vl) == 0;
        }
        p = e + 2;
    }
    if (!got_upgrade || !got_connection) {
        fail(err, errlen, "101 without Upgrade: websocket / Connection: Upgrade", NULL, 0);
        return -1;
    }
    if (!got_accept) {
        fail(err, errlen, "wrong or missing Sec-WebSocket-Accept", NULL, 0);
        return -1;
    }
    if (!got_protocol) {
        fail(err, errlen, "server did not select subprotocol ", protocol, strlen(protocol));
        return -1;
    }
    return (int)(end - buf);
}

/* ---- frames ---- */

size_t lg_ws_frame_size(size_t len)
{
    return 2 + 4 + len + (len > 65535 ? 8 : len > 125 ? 2 : 0);
}

size_t lg_ws_encode(unsigned char *out, int opcode, const void *payload, size_t len, uint32_t mask)
{
    size_t o = 0;
    unsigned char m[4];
    const unsigned char *p = payload;

    out[o++] = (unsigned char)(0x80 | (opcode & 0x0f));
    if (len <= 125) {
        out[o++] = (unsigned char)(0x80 | len);
    } else if (len <= 65535) {
        out[o++] = 0x80 | 126;
        out[o++] = (unsigned char)(len >> 8);
        out[o++] = (unsigned char)len;
    } else {
        out[o++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[o++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    memcpy(m, &mask, 4);
    memcpy(out + o, m, 4);
    o += 4;
    for (size_t i = 0; i < len; i++)
        out[o + i] = p[i] ^ m[i & 3];
    return o + len;
}

long lg_ws_decode(const unsigned char *buf, size_t len, size_t max_payload, lg_frame_t *f,
                  const char **err)
{
    size_t hdr = 2;
    uint64_t plen;

    if (len < 2)
        return 0;
    f->fin = buf[0] >> 7;
    f->opcode = buf[0] & 0x0f;
    if (buf[0] & 0x70) {
        *err = "reserved bits set";
        return -1;
    }
    if (f->opcode > 2 && (f->opcode < 8 || f->opcode > 10)) {
        *err = "unknown opcode";
        return -1;
    }
    if (buf[1] & 0x80) {
        *err = "masked frame from the server";
        return -1;
    }
    plen = buf[1] & 0x7f;
    if (plen == 126) {
        if (len < 4)
            return 0;
        plen = (uint64_t)buf[2] << 8 | buf[3];
        hdr = 4;
    } else if (plen == 127) {
        if (len < 10)
            return 0;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = plen << 8 | buf[2 + i];
        hdr = 10;
        if (plen >> 63) {
            *err = "64-bit length with the top bit set";
            return -1;
        }
    }
    if (f->opcode >= 8 && (!f->fin || plen > 125)) {
        *err = "fragmented or over-long control frame";
        return -1;
    }
    if (plen > max_payload) {
        *err = "frame larger than the limit";
        return -1;
    }
    if (len - hdr < plen)
        return 0;
    f->payload = buf + hdr;
    f->len = (size_t)plen;
    return (long)(hdr + plen);
}

/* ---- JSON ---- */

typedef struct scan {
    const char *p, *end;
} scan;

static void ws_skip(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex4(const char *p, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        *v = *v << 4 | (unsigned)d;
    }
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 63));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 63));
        o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63));
    o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* Parses a string at s->p (on the opening quote).  Decodes it into out (cut to outlen - 1
 * bytes) when out is not NULL; the raw body span goes to *raw / *rawlen.  0 or -1. */
static int scan_string(scan *s, char *out, size_t outlen, const char **raw, size_t *rawlen)
{
    size_t o = 0;
    if (s->p >= s->end || *s->p != '"')
        return -1;
    s->p++;
    *raw = s->p;
    while (s->p < s->end && *s->p != '"') {
        char tmp[8];
        size_t n = 0;
        unsigned char c = (unsigned char)*s->p;
        if (c < 0x20)
            return -1;
        if (c != '\\') {
            tmp[0] = (char)c;
            n = 1;
            s->p++;
        } else {
            if (s->end - s->p < 2)
                return -1;
            char e = s->p[1];
            s->p += 2;
            switch (e) {
            case '"':
            case '\\':
            case '/':
                tmp[0] = e;
                n = 1;
                break;
            case 'b':
                tmp[0] = '\b';
                n = 1;
                break;
            case 'f':
                tmp[0] = '\f';
                n = 1;
                break;
            case 'n':
                tmp[0] = '\n';
                n = 1;
                break;
            case 'r':
                tmp[0] = '\r';
                n = 1;
                break;
            case 't':
                tmp[0] = '\t';
                n = 1;
                break;
            case 'u': {
                unsigned cp, lo;
                if (s->end - s->p < 4 || hex4(s->p, &cp) != 0)
                    return -1;
                s->p += 4;
                if (cp >= 0xD800 && cp < 0xDC00) {
                    if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' ||
                        hex4(s->p + 2, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                        return -1;
                    s->p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp < 0xE000) {
                    return -1;
                }
                n = put_utf8(tmp, cp);
                break;
            }
            default:
                return -1;
            }
        }
        if (out && o + n < outlen) {
            memcpy(out + o, tmp, n);
            o += n;
        }
    }
    if (s->p >= s->end)
        return -1;
    *rawlen = (size_t)(s->p - *raw);
    s->p++;
    if (out && outlen)
        out[o] = '\0';
    return 0;
}

/* Skips one value of any kind.  0 or -1. */
static int skip_value(scan *s, int depth)
{
    const char *raw;
    size_t rawlen;

    ws_skip(s);
    if (s->p >= s->end || depth > 64)
        return -1;
    char c = *s->p;
    if (c == '"')
        return scan_string(s, NULL, 0, &raw, &rawlen);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        s->p++;
        ws_skip(s);
        if (s->p < s->end && *s->p == close) {
            s->p++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                ws_skip(s);
                if (scan_string(s, NULL, 0, &raw, &rawlen) != 0)
                    return -1;
                ws_skip(s);
                if (s->p >= s->end || *s->p != ':')
                    return -1;
                s->p++;
            }
            if (skip_value(s, depth + 1) != 0)
                return -1;
            ws_skip(s);
            if (s->p >= s->end)
                return -1;
            if (*s->p == close) {
                s->p++;
                return 0;
            }
            if (*s->p != ',')
                return -1;
            s->p++;
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        s->p++;
        while (s->p < s->end && (isdigit((unsigned char)*s->p) || *s->p == '.' || *s->p == 'e' ||
                                 *s->p == 'E' || *s->p == '+' || *s->p == '-'))
            s->p++;
        return 0;
    }
    static const char *const lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lits[i]);
        if ((size_t)(s->end - s->p) >= n && memcmp(s->p, lits[i], n) == 0) {
            s->p += n;
            return 0;
        }
    }
    return -1;
}

int lg_json_scan(const char *str, size_t len, lg_msg_t *m)
{
    scan s = {str, str + len};
    memset(m, 0, sizeof(*m));
    ws_skip(&s);
    if (s.p >= s.end || *s.p != '{')
        return -1;
    s.p++;
    ws_skip(&s);
    if (s.p < s.end && *s.p == '}')
        return 0;
    for (;;) {
        char key[16];
        const char *raw;
        size_t rawlen;
        ws_skip(&s);
        if (scan_string(&s, key, sizeof(key), &raw, &rawlen) != 0)
            return -1;
        ws_skip(&s);
        if (s.p >= s.end || *s.p != ':')
            return -1;
        s.p++;
        ws_skip(&s);
        char *field = NULL;
        size_t flen = 0;
        if (strcmp(key, "type") == 0)
            field = m->type, flen = sizeof(m->type);
        else if (strcmp(key, "id") == 0)
            field = m->id, flen = sizeof(m->id);
        else if (strcmp(key, "from") == 0)
            field = m->from, flen = sizeof(m->from);
        else if (strcmp(key, "state") == 0)
            field = m->state, flen = sizeof(m->state);
        else if (strcmp(key, "code") == 0)
            field = m->code, flen = sizeof(m->code);
        if (s.p < s.end && *s.p == '"' && (field || strcmp(key, "text") == 0)) {
            if (scan_string(&s, field, flen, &raw, &rawlen) != 0)
                return -1;
            if (!field) {
                m->text = raw;
                m->text_len = rawlen;
            }
        } else if (strcmp(key, "seq") == 0 && s.p < s.end &&
                   (*s.p == '-' || isdigit((unsigned char)*s.p))) {
            long long v = 0;
            int neg = *s.p == '-';
            if (neg)
                s.p++;
            if (s.p >= s.end || !isdigit((unsigned char)*s.p))
                return -1;
            while (s.p < s.end && isdigit((unsigned char)*s.p) && v < (1LL << 53))
                v = v * 10 + (*s.p++ - '0');
            if (s.p < s.end &&
                (isdigit((unsigned char)*s.p) || *s.p == '.' || *s.p == 'e' || *s.p == 'E'))
                return -1; /* not a plain integer we can hold */
            m->seq = neg ? -v : v;
            m->has_seq = 1;
        } else if (skip_value(&s, 1) != 0) {
            return -1;
        }
        ws_skip(&s);
        if (s.p >= s.end)
            return -1;
        if (*s.p == '}')
            break;
        if (*s.p != ',')
            return -1;
        s.p++;
    }
    s.p++;
    ws_skip(&s);
    return s.p == s.end ? 0 : -1;
}

long lg_json_escape(char *out, size_t outlen, const char *in)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        char tmp[8];
        size_t n;
        if (*p == '"' || *p == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)*p;
            n = 2;
        } else if (*p == '\n') {
            memcpy(tmp, "\\n", 2);
            n = 2;
        } else if (*p == '\t') {
            memcpy(tmp, "\\t", 2);
            n = 2;
        } else if (*p == '\r') {
            memcpy(tmp, "\\r", 2);
            n = 2;
        } else if (*p < 0x20) {
            n = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", *p);
        } else {
            tmp[0] = (char)*p;
            n = 1;
        }
        if (o + n + 1 > outlen)
            return -1;
        memcpy(out + o, tmp, n);
        o += n;
    }
    if (o + 1 > outlen)
        return -1;
    out[o] = '\0';
    return (long)o;
}
