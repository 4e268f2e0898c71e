/*
 * auth.c - the pure parts of accounts and logins: roles, the permission matrix, input rules,
 * Argon2id password hashes, session ids, cookies.  No database, no event loop, no globals
 * beyond constant tables; every function is safe on any thread after auth_init().
 *
 * Roles and capabilities
 *   A role is a fixed set of capabilities: matrix[role] is a bit set over auth_cap_t.  The
 *   table below is the one documented in docs/auth.md; change both together (test_auth checks
 *   every cell).
 *
 * Passwords
 *   auth_password_hash() -> "$argon2id$v=19$m=65536,t=2,p=1$salt$hash" (libsodium's
 *   crypto_pwhash_argon2id_str with the INTERACTIVE limits: 2 passes over 64 MiB, about a tenth
 *   of a second).  auth_password_verify() accepts any Argon2 string libsodium knows and, on a
 *   match, asks crypto_pwhash_str_needs_rehash() whether the stored string uses other limits
 *   (or Argon2i); if so it returns a fresh hash for the caller to store.  Both are slow on
 *   purpose: callers run them on the libuv thread pool (auth_session.c) or in the CLI.
 *
 * Session ids
 *   16 bytes from randombytes_buf(), shown as 32 lowercase hex digits (the cookie value).  The
 *   database keeps only BLAKE2b-256 of the 16 bytes, so a copy of the database cannot be
 *   replayed as cookies; the id has 128 bits of entropy, so the hash needs no key or salt.
 */
#include "auth.h"

#include "util.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define OPSLIMIT crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE
#define MEMLIMIT crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE

/* ---- roles and capabilities ---- */

static const char *const role_names[] = {
    [AUTH_ROLE_ADMIN] = "admin",
    [AUTH_ROLE_SUPERVISOR] = "supervisor",
    [AUTH_ROLE_EDITOR] = "editor",
    [AUTH_ROLE_AGENT] = "agent",
};

static const char *const cap_names[AUTH_CAP_COUNT] = {
    [AUTH_CAP_KB_READ] = "kb.read",
    [AUTH_CAP_KB_WRITE] = "kb.write",
    [AUTH_CAP_FLOWS_RELOAD] = "flows.reload",
    [AUTH_CAP_AGENT_CHAT] = "agent.chat",
    [AUTH_CAP_AGENT_SUPERVISE] = "agent.supervise",
    [AUTH_CAP_DASHBOARD_VIEW] = "dashboard.view",
    [AUTH_CAP_USERS_MANAGE] = "users.manage",
};

#define CAP(c) (1u << (c))

/* The permission matrix (docs/auth.md, "Roles"). */
static const unsigned matrix[] = {
    [AUTH_ROLE_NONE] = 0,
    [AUTH_ROLE_ADMIN] = (1u << AUTH_CAP_COUNT) - 1,
    [AUTH_ROLE_SUPERVISOR] = CAP(AUTH_CAP_KB_READ) | CAP(AUTH_CAP_AGENT_CHAT) |
                             CAP(AUTH_CAP_AGENT_SUPERVISE) | CAP(AUTH_CAP_DASHBOARD_VIEW),
    [AUTH_ROLE_EDITOR] = CAP(AUTH_CAP_KB_READ) | CAP(AUTH_CAP_KB_WRITE) |
                         CAP(AUTH_CAP_FLOWS_RELOAD) | CAP(AUTH_CAP_DASHBOARD_VIEW),
    [AUTH_ROLE_AGENT] = CAP(AUTH_CAP_KB_READ) | CAP(AUTH_CAP_AGENT_CHAT),
};

#define NROLES (sizeof(role_names) / sizeof(role_names[0]))

const char *auth_role_name(auth_role_t role)
{
    if ((unsigned)role >= NROLES || role == AUTH_ROLE_NONE)
        return NULL;
    return role_names[role];
}

auth_role_t auth_role_parse(const char *name)
{
    for (unsigned i = 1; name && i < NROLES; i++)
        if (strcmp(name, role_names[i]) == 0)
            return (auth_role_t)i;
    return AUTH_ROLE_NONE;
}

const char *auth_cap_name(auth_cap_t cap)
{
    return (unsigned)cap < AUTH_CAP_COUNT ? cap_names[cap] : NULL;
}

int auth_cap_parse(const char *name, auth_cap_t *out)
{
    for (unsigned i = 0; name && i < AUTH_CAP_COUNT; i++)
        if (strcmp(name, cap_names[i]) == 0) {
            *out = (auth_cap_t)i;
            return 0;
        }
    return AUTH_EINVAL;
}

int auth_allows(auth_role_t role, auth_cap_t cap)
{
    if ((unsigned)role >= NROLES || (unsigned)cap >= AUTH_CAP_COUNT)
        return 0;
    return (matrix[role] & CAP(cap)) != 0;
}

/* ---- input rules ---- */

static void say(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

int auth_username_normalize(const char *in, char *out, char *err, size_t errlen)
{
    size_t n = in ? strlen(in) : 0;

    if (n < 2 || n > AUTH_USERNAME_MAX) {
        say(err, errlen, "username: 2 to 64 characters");
        return AUTH_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-' && c != '@'))) {
            say(err, errlen,
                i == 0 ? "username: must start with a letter or a digit"
                       : "username: only letters a-z, digits and . _ - @ are allowed");
            return AUTH_EINVAL;
        }
        out[i] = c;
    }
    out[n] = '\0';
    return 0;
}

/* 1 when UTF-8 text s holds a C0/C1 control character or DEL. */
static int has_control(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    for (; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return 1;
        if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) /* U+0080..U+009F */
            return 1;
    }
    return 0;
}

int auth_password_policy(const char *password, const char *username, char *err, size_t errlen)
{
    const char *s = password ? password : "";
    size_t n = strlen(s);

    if (n > AUTH_PASSWORD_MAX_BYTES) {
        say(err, errlen, "password: longer than 1024 bytes");
        return AUTH_EINVAL;
    }
    if (!util_utf8_valid(s, n)) {
        say(err, errlen, "password: not valid UTF-8");
        return AUTH_EINVAL;
    }
    if (util_utf8_chars(s) < AUTH_PASSWORD_MIN_CHARS) {
        say(err, errlen, "password: at least 10 characters are required");
        return AUTH_EINVAL;
    }
    if (has_control(s)) {
        say(err, errlen, "password: control characters are not allowed");
        return AUTH_EINVAL;
    }
    if (username && strcasecmp(s, username) == 0) {
        say(err, errlen, "password: must not be the username");
        return AUTH_EINVAL;
    }
    return 0;
}

int auth_display_name_check(const char *name, char *err, size_t errlen)
{
    const char *s = name ? name : "";
    size_t n = strlen(s);

    if (!util_utf8_valid(s, n)) {
        say(err, errlen, "display name: not valid UTF-8");
        return AUTH_EINVAL;
    }
    if (n > AUTH_DISPLAY_MAX_BYTES || util_utf8_chars(s) > AUTH_DISPLAY_MAX_CHARS) {
        say(err, errlen, "display name: at most 64 characters");
        return AUTH_EINVAL;
    }
    if (util_blank(s)) {
        say(err, errlen, "display name: must not be blank");
        return AUTH_EINVAL;
    }
    if (has_control(s)) {
        say(err, errlen, "display name: control characters are not allowed");
        return AUTH_EINVAL;
    }
    return 0;
}

/* ---- passwords ---- */

int auth_init(void)
{
    return sodium_init() < 0 ? AUTH_ERR : 0;
}

int auth_password_hash(const char *password, char *out)
{
    if (crypto_pwhash_argon2id_str(out, password, strlen(password), OPSLIMIT, MEMLIMIT) != 0)
        return AUTH_ERR;
    return 0;
}

int auth_password_verify(const char *hash, const char *password, char *rehash)
{
    if (rehash)
        rehash[0] = '\0';
    if (!hash || strnlen(hash, AUTH_HASH_MAX) >= AUTH_HASH_MAX ||
        crypto_pwhash_str_verify(hash, password, strlen(password)) != 0)
        return AUTH_EDENIED;
    /* 1: other limits or Argon2i; -1: not a string of ours at all (cannot happen after a
     * successful verify, but then a fresh hash is the right answer too). */
    if (rehash && crypto_pwhash_argon2id_str_needs_rehash(hash, OPSLIMIT, MEMLIMIT) != 0 &&
        auth_password_hash(password, rehash) != 0)
        rehash[0] = '\0'; /* out of memory: keep the old hash, the login still succeeds */
    return 0;
}

const char *auth_dummy_hash(void)
{
    /* Argon2id of 64 random hex digits that were thrown away; test_auth checks that it uses
     * the current limits. */
    return "$argon2id$v=19$m=65536,t=2,p=1$xBL+c1pBBQaAWpmf1hWWjA$"
           "kg6XVYm66MctB5SoENXxPpmBuAuhZOn+XFE0hCNuPlI";
}

/* ---- session ids ---- */

int auth_token_new(char *hex)
{
    unsigned char raw[AUTH_TOKEN_BYTES];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(hex, AUTH_TOKEN_HEX + 1, raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int auth_token_hash(const char *hex, unsigned char *out)
{
    unsigned char raw[AUTH_TOKEN_BYTES];

    if (!hex || strnlen(hex, AUTH_TOKEN_HEX + 1) != AUTH_TOKEN_HEX)
        return AUTH_EINVAL;
    for (int i = 0; i < AUTH_TOKEN_BYTES; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return AUTH_EINVAL;
        raw[i] = (unsigned char)(hi << 4 | lo);
    }
    crypto_generichash(out, AUTH_TOKEN_HASH_BYTES, raw, sizeof(raw), NULL, 0);
    sodium_memzero(raw, sizeof(raw));
    return 0;
}

/* ---- cookies ---- */

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int auth_cookie_get(const char *header, const char *name, char *out, size_t outlen)
{
    size_t namelen = strlen(name);
    const char *p = header;

    if (!header || strnlen(header, AUTH_COOKIE_HEADER_MAX + 1) > AUTH_COOKIE_HEADER_MAX)
        return AUTH_EINVAL;
    while (*p) {
        const char *end = strchr(p, ';'), *eq, *k0, *k1, *v0, *v1;
        if (!end)
            end = p + strlen(p);
        eq = memchr(p, '=', (size_t)(end - p));
        if (eq) {
            for (k0 = p; k0 < eq && is_blank(*k0); k0++)
                ;
            for (k1 = eq; k1 > k0 && is_blank(k1[-1]); k1--)
                ;
            for (v0 = eq + 1; v0 < end && is_blank(*v0); v0++)
                ;
            for (v1 = end; v1 > v0 && is_blank(v1[-1]); v1--)
                ;
            if (v1 - v0 >= 2 && *v0 == '"' && v1[-1] == '"') {
                v0++;
                v1--;
            }
            if ((size_t)(k1 - k0) == namelen && memcmp(k0, name, namelen) == 0 && v1 > v0 &&
                (size_t)(v1 - v0) < outlen) {
                memcpy(out, v0, (size_t)(v1 - v0));
                out[v1 - v0] = '\0';
                return 0;
            }
        }
        p = *end ? end + 1 : end;
    }
    return 1;
}

int auth_cookie_format(char *out, size_t outlen, const char *token, int max_age, int secure)
{
    int n = snprintf(out, outlen, "%s=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Strict%s",
                     AUTH_COOKIE_NAME, token ? token : "", token ? max_age : 0,
                     secure ? "; Secure" : "");
    return n < 0 || (size_t)n >= outlen ? AUTH_EINVAL : 0;
}
