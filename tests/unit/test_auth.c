/*
 * test_auth.c - unit tests for accounts and logins (server/auth.c, auth_db.c, auth_session.c).
 *
 * Design: each test is a small function.  The pure helpers (roles, rules, hashes, session
 * ids, cookies) are called directly; the SQL layer runs on a private in-memory database with
 * a made-up clock; the server side (auth_t) runs for real: a libuv loop, a store on a file in
 * a scratch directory (test_scratch.h) with auth_migrate() as its init hook, Argon2id on the thread
 * pool, and the loop is run until each callback has fired.  CHECK() records a failure and goes on;
 * the exit status is 1 if any failed.  Argon2id costs ~0.1 s per hash, so the whole file takes a
 * few seconds; nothing here measures time.
 */
#include "auth.h"

#include "config.h"
#include "test_scratch.h"
#include "store.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            fprintf(stderr, "%s:%d: CHECK_STR failed: %s == \"%s\", expected \"%s\"\n", __FILE__,  \
                    __LINE__, #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                         \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define CHECK_HAS(err, frag)                                                                       \
    do {                                                                                           \
        if (!strstr((err), (frag))) {                                                              \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, (err),  \
                    (frag));                                                                       \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* ---- roles ---- */

static void test_roles(void)
{
    CHECK_STR(auth_role_name(AUTH_ROLE_ADMIN), "admin");
    CHECK_STR(auth_role_name(AUTH_ROLE_SUPERVISOR), "supervisor");
    CHECK_STR(auth_role_name(AUTH_ROLE_EDITOR), "editor");
    CHECK_STR(auth_role_name(AUTH_ROLE_AGENT), "agent");
    CHECK(auth_role_name(AUTH_ROLE_NONE) == NULL);
    CHECK(auth_role_name((auth_role_t)99) == NULL);
    for (int r = AUTH_ROLE_ADMIN; r <= AUTH_ROLE_AGENT; r++)
        CHECK((int)auth_role_parse(auth_role_name((auth_role_t)r)) == r);
    CHECK(auth_role_parse("Admin") == AUTH_ROLE_NONE);
    CHECK(auth_role_parse("root") == AUTH_ROLE_NONE);
    CHECK(auth_role_parse("") == AUTH_ROLE_NONE);
    CHECK(auth_role_parse(NULL) == AUTH_ROLE_NONE);
}

/* The matrix of docs/auth.md, cell by cell: A admin, S supervisor, E editor, G agent. */
static void test_permission_matrix(void)
{
    static const struct {
        const char *cap;
        const char *roles;
    } want[] = {
        {"kb.read", "ASEG"},   {"kb.write", "AE"},        {"flows.reload", "AE"},
        {"agent.chat", "ASG"}, {"agent.supervise", "AS"}, {"dashboard.view", "ASE"},
        {"users.manage", "A"},
    };
    static const char letters[] = {[AUTH_ROLE_ADMIN] = 'A',
                                   [AUTH_ROLE_SUPERVISOR] = 'S',
                                   [AUTH_ROLE_EDITOR] = 'E',
                                   [AUTH_ROLE_AGENT] = 'G'};
    auth_cap_t cap;

    CHECK(sizeof(want) / sizeof(want[0]) == AUTH_CAP_COUNT);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        CHECK(auth_cap_parse(want[i].cap, &cap) == 0);
        CHECK_STR(auth_cap_name(cap), want[i].cap);
        for (int r = AUTH_ROLE_ADMIN; r <= AUTH_ROLE_AGENT; r++) {
            int expect = strchr(want[i].roles, letters[r]) != NULL;
            if (auth_allows((auth_role_t)r, cap) != expect) {
                fprintf(stderr, "matrix: %s for %s should be %d\n", want[i].cap,
                        auth_role_name((auth_role_t)r), expect);
                failures++;
            }
        }
        CHECK(auth_allows(AUTH_ROLE_NONE, cap) == 0);
        CHECK(auth_allows((auth_role_t)42, cap) == 0);
    }
    CHECK(auth_cap_parse("kb.delete", &cap) == AUTH_EINVAL);
    CHECK(auth_cap_parse("", &cap) == AUTH_EINVAL);
    CHECK(auth_cap_name(AUTH_CAP_COUNT) == NULL);
    CHECK(auth_allows(AUTH_ROLE_ADMIN, AUTH_CAP_COUNT) == 0);
}

/* ---- input rules ---- */

static void test_username_rules(void)
{
    char out[AUTH_USERNAME_MAX + 1], err[128] = "", long_name[80];

    CHECK(auth_username_normalize("Alice", out, err, sizeof(err)) == 0);
    CHECK_STR(out, "alice");
    CHECK(auth_username_normalize("wang.xiao-ming_2@cs", out, err, sizeof(err)) == 0);
    CHECK_STR(out, "wang.xiao-ming_2@cs");
    CHECK(auth_username_normalize("7x", out, err, sizeof(err)) == 0);
    memset(long_name, 'a', 64);
    long_name[64] = '\0';
    CHECK(auth_username_normalize(long_name, out, err, sizeof(err)) == 0);
    long_name[64] = 'a';
    long_name[65] = '\0';
    CHECK(auth_username_normalize(long_name, out, err, sizeof(err)) == AUTH_EINVAL);
    CHECK_HAS(err, "2 to 64");
    CHECK(auth_username_normalize("a", out, err, sizeof(err)) == AUTH_EINVAL);
    CHECK(auth_username_normalize("", out, err, sizeof(err)) == AUTH_EINVAL);
    CHECK(auth_username_normalize(NULL, out, err, sizeof(err)) == AUTH_EINVAL);
    CHECK(auth_username_normalize("-alice", out, err, sizeof(err)) == AUTH_EINVAL);
    CHECK_HAS(err, "start with a letter or a digit");
    CHECK(auth_username_normalize(".alice", out, err, sizeof(err)) == AUTH_EINVAL);
    CHECK(auth_username_normalize("al ice", out, err, sizeof(err)) == AUTH_EINVAL);
    CHECK_HAS(err, "only letters");
    CHECK(auth_username_normalize("al/ice", out, err, sizeof(err)) == AUTH_EINVAL);
    CHECK(auth_username_normalize("王小明", out, err, sizeof(err)) == AUTH_EINVAL);
    CHECK(auth_username_normalize("alice\n", out, err, sizeof(err)) == AUTH_EINVAL);
}

static void test_password_policy(void)
{
    char err[128] = "", big[AUTH_PASSWORD_MAX_BYTES + 2];

    CHECK(auth_password_policy("0123456789", NULL, err, sizeof(err)) == 0);
    CHECK(auth_password_policy("correct horse", "alice", err, sizeof(err)) == 0);
    CHECK(auth_password_policy("012345678", NULL, err, sizeof(err)) == AUTH_EINVAL);
    CHECK_HAS(err, "at least 10 characters");
    CHECK(auth_password_policy("", NULL, err, sizeof(err)) == AUTH_EINVAL);
    CHECK(auth_password_policy(NULL, NULL, err, sizeof(err)) == AUTH_EINVAL);
    /* characters, not bytes: ten Chinese characters pass, nine (27 bytes) do not */
    CHECK(auth_password_policy("我的密码是很长的句子", NULL, err, sizeof(err)) == 0);
    CHECK(auth_password_policy("我的密码是很长的句", NULL, err, sizeof(err)) == AUTH_EINVAL);
    CHECK(auth_password_policy("0123456789\xff", NULL, err, sizeof(err)) == AUTH_EINVAL);
    CHECK_HAS(err, "UTF-8");
    CHECK(auth_password_policy("0123456789\t", NULL, err, sizeof(err)) == AUTH_EINVAL);
    CHECK_HAS(err, "control");
    CHECK(auth_password_policy("0123456789\xc2\x85", NULL, err, sizeof(err)) == AUTH_EINVAL);
    CHECK(auth_password_policy("Wang.Xiaoming", "wang.xiaoming", err, sizeof(err)) == AUTH_EINVAL);
    CHECK_HAS(err, "username");
    memset(big, 'x', AUTH_PASSWORD_MAX_BYTES);
    big[AUTH_PASSWORD_MAX_BYTES] = '\0';
    CHECK(auth_password_policy(big, NULL, err, sizeof(err)) == 0);
    big[AUTH_PASSWORD_MAX_BYTES] = 'x';
    big[AUTH_PASSWORD_MAX_BYTES + 1] = '\0';
    CHECK(auth_password_policy(big, NULL, err, sizeof(err)) == AUTH_EINVAL);
    CHECK_HAS(err, "1024 bytes");
}

static void test_display_name(void)
{
    char err[128] = "", big[300];

    CHECK(auth_display_name_check("王小明", err, sizeof(err)) == 0);
    CHECK(auth_display_name_check("Alice Wong", err, sizeof(err)) == 0);
    CHECK(auth_display_name_check("", err, sizeof(err)) == AUTH_EINVAL);
    CHECK_HAS(err, "blank");
    CHECK(auth_display_name_check("\xe3\x80\x80 ", err, sizeof(err)) == AUTH_EINVAL);
    CHECK(auth_display_name_check("a\nb", err, sizeof(err)) == AUTH_EINVAL);
    CHECK_HAS(err, "control");
    CHECK(auth_display_name_check("\xe7\x8e", err, sizeof(err)) == AUTH_EINVAL);
    CHECK_HAS(err, "UTF-8");
    /* 64 Chinese characters (192 bytes) pass, 65 do not */
    big[0] = '\0';
    for (int i = 0; i < 64; i++)
        strcat(big, "王");
    CHECK(auth_display_name_check(big, err, sizeof(err)) == 0);
    strcat(big, "王");
    CHECK(auth_display_name_check(big, err, sizeof(err)) == AUTH_EINVAL);
    CHECK_HAS(err, "64 characters");
}

/* ---- passwords ---- */

static void test_hash_and_verify(void)
{
    char h1[AUTH_HASH_MAX], h2[AUTH_HASH_MAX], rehash[AUTH_HASH_MAX] = "x";

    CHECK(auth_password_hash("correct horse battery", h1) == 0);
    CHECK(strncmp(h1, "$argon2id$v=19$m=65536,t=2,p=1$", 31) == 0);
    CHECK(auth_password_hash("correct horse battery", h2) == 0);
    CHECK(strcmp(h1, h2) != 0); /* a fresh salt each time */
    CHECK(auth_password_verify(h1, "correct horse battery", rehash) == 0);
    CHECK_STR(rehash, ""); /* current limits: nothing to upgrade */
    CHECK(auth_password_verify(h2, "correct horse battery", NULL) == 0);
    CHECK(auth_password_verify(h1, "correct horse batterY", rehash) == AUTH_EDENIED);
    CHECK(auth_password_verify(h1, "", rehash) == AUTH_EDENIED);
    CHECK(auth_password_verify("not a hash", "correct horse battery", rehash) == AUTH_EDENIED);
    CHECK(auth_password_verify("", "x", rehash) == AUTH_EDENIED);
    CHECK(auth_password_verify(NULL, "x", rehash) == AUTH_EDENIED);
    /* Chinese passwords are bytes like any other */
    CHECK(auth_password_hash("我的密码是很长的句子", h1) == 0);
    CHECK(auth_password_verify(h1, "我的密码是很长的句子", NULL) == 0);
    CHECK(auth_password_verify(h1, "我的密码是很长的句", NULL) == AUTH_EDENIED);
}

static void test_rehash(void)
{
    char weak[AUTH_HASH_MAX], old_alg[AUTH_HASH_MAX], rehash[AUTH_HASH_MAX];
    const char *pw = "correct horse battery";

    /* made with weaker limits: still verifies, and comes back as a current hash */
    CHECK(crypto_pwhash_argon2id_str(weak, pw, strlen(pw), crypto_pwhash_argon2id_OPSLIMIT_MIN,
                                     crypto_pwhash_argon2id_MEMLIMIT_MIN) == 0);
    CHECK(auth_password_verify(weak, pw, rehash) == 0);
    CHECK(strncmp(rehash, "$argon2id$v=19$m=65536,t=2,p=1$", 31) == 0);
    CHECK(auth_password_verify(rehash, pw, NULL) == 0);
    CHECK(crypto_pwhash_str_needs_rehash(rehash, crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE,
                                         crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE) == 0);
    /* a wrong password never produces a rehash */
    strcpy(rehash, "x");
    CHECK(auth_password_verify(weak, "wrong password!", rehash) == AUTH_EDENIED);
    CHECK_STR(rehash, "");
    /* Argon2i (another algorithm) upgrades to Argon2id */
    CHECK(crypto_pwhash_argon2i_str(old_alg, pw, strlen(pw), crypto_pwhash_argon2i_OPSLIMIT_MIN,
                                    crypto_pwhash_argon2i_MEMLIMIT_MIN) == 0);
    CHECK(auth_password_verify(old_alg, pw, rehash) == 0);
    CHECK(strncmp(rehash, "$argon2id$", 10) == 0);
}

static void test_dummy_hash(void)
{
    const char *d = auth_dummy_hash();
    CHECK(strlen(d) < AUTH_HASH_MAX);
    /* same algorithm and limits as real hashes, so it costs the same to check */
    CHECK(strncmp(d, "$argon2id$v=19$m=65536,t=2,p=1$", 31) == 0);
    CHECK(crypto_pwhash_str_needs_rehash(d, crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE,
                                         crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE) == 0);
    CHECK(auth_password_verify(d, "correct horse battery", NULL) == AUTH_EDENIED);
}

/* ---- session ids ---- */

static void test_session_ids(void)
{
    char a[AUTH_TOKEN_HEX + 1], b[AUTH_TOKEN_HEX + 1], bad[AUTH_TOKEN_HEX + 2];
    unsigned char ha[AUTH_TOKEN_HASH_BYTES], ha2[AUTH_TOKEN_HASH_BYTES], hb[AUTH_TOKEN_HASH_BYTES],
        raw[AUTH_TOKEN_BYTES], want[AUTH_TOKEN_HASH_BYTES];

    CHECK(auth_token_new(a) == 0);
    CHECK(auth_token_new(b) == 0);
    CHECK(strlen(a) == AUTH_TOKEN_HEX);
    CHECK(strspn(a, "0123456789abcdef") == AUTH_TOKEN_HEX);
    CHECK(strcmp(a, b) != 0);
    CHECK(auth_token_hash(a, ha) == 0);
    CHECK(auth_token_hash(a, ha2) == 0);
    CHECK(auth_token_hash(b, hb) == 0);
    CHECK(memcmp(ha, ha2, sizeof(ha)) == 0);
    CHECK(memcmp(ha, hb, sizeof(ha)) != 0);
    /* the stored form is BLAKE2b-256 of the 16 raw bytes, not of the hex text */
    CHECK(sodium_hex2bin(raw, sizeof(raw), a, AUTH_TOKEN_HEX, NULL, NULL, NULL) == 0);
    crypto_generichash(want, sizeof(want), raw, sizeof(raw), NULL, 0);
    CHECK(memcmp(ha, want, sizeof(ha)) == 0);
    /* a known vector, so the stored form cannot change unnoticed */
    CHECK(auth_token_hash("000102030405060708090a0b0c0d0e0f", ha) == 0);
    for (int i = 0; i < AUTH_TOKEN_BYTES; i++)
        raw[i] = (unsigned char)i;
    crypto_generichash(want, sizeof(want), raw, sizeof(raw), NULL, 0);
    CHECK(memcmp(ha, want, sizeof(ha)) == 0);
    /* only exactly 32 lowercase hex digits */
    CHECK(auth_token_hash("000102030405060708090A0B0C0D0E0F", ha) == AUTH_EINVAL);
    CHECK(auth_token_hash("000102030405060708090a0b0c0d0e0", ha) == AUTH_EINVAL);
    snprintf(bad, sizeof(bad), "%s0", a);
    CHECK(auth_token_hash(bad, ha) == AUTH_EINVAL);
    CHECK(auth_token_hash("00010203040506070809 a0b0c0d0e0f", ha) == AUTH_EINVAL);
    CHECK(auth_token_hash("g00102030405060708090a0b0c0d0e0f", ha) == AUTH_EINVAL);
    CHECK(auth_token_hash("", ha) == AUTH_EINVAL);
    CHECK(auth_token_hash(NULL, ha) == AUTH_EINVAL);
}

/* ---- cookies ---- */

static void test_cookie_parse(void)
{
    char v[64], big[AUTH_COOKIE_HEADER_MAX + 64];
    const char *n = AUTH_COOKIE_NAME;

    CHECK(auth_cookie_get("redress_session=abc", n, v, sizeof(v)) == 0);
    CHECK_STR(v, "abc");
    CHECK(auth_cookie_get("a=1; redress_session=abc; b=2", n, v, sizeof(v)) == 0);
    CHECK_STR(v, "abc");
    CHECK(auth_cookie_get("a=1;redress_session=abc;b=2", n, v, sizeof(v)) == 0);
    CHECK_STR(v, "abc");
    CHECK(auth_cookie_get("  a=1 ;\tredress_session = abc \t; b=2", n, v, sizeof(v)) == 0);
    CHECK_STR(v, "abc");
    CHECK(auth_cookie_get("redress_session=\"abc\"", n, v, sizeof(v)) == 0);
    CHECK_STR(v, "abc");
    /* a name that merely contains or extends ours is another cookie */
    CHECK(auth_cookie_get("xredress_session=1; redress_session_old=2", n, v, sizeof(v)) == 1);
    CHECK(auth_cookie_get("a=redress_session=3", n, v, sizeof(v)) == 1);
    /* '=' inside a value belongs to the value */
    CHECK(auth_cookie_get("redress_session=a=b", n, v, sizeof(v)) == 0);
    CHECK_STR(v, "a=b");
    /* pairs without '=' and empty values are skipped; the first usable one wins */
    CHECK(auth_cookie_get("junk; redress_session=; redress_session=\"\"; redress_session=x2", n, v,
                          sizeof(v)) == 0);
    CHECK_STR(v, "x2");
    CHECK(auth_cookie_get("redress_session=first; redress_session=second", n, v, sizeof(v)) == 0);
    CHECK_STR(v, "first");
    /* a value too long for the buffer is skipped, not truncated */
    CHECK(auth_cookie_get("redress_session=0123456789; redress_session=ok", n, v, 8) == 0);
    CHECK_STR(v, "ok");
    CHECK(auth_cookie_get("redress_session=0123456789", n, v, 8) == 1);
    CHECK(auth_cookie_get("", n, v, sizeof(v)) == 1);
    CHECK(auth_cookie_get(";;; ;", n, v, sizeof(v)) == 1);
    CHECK(auth_cookie_get("redress_session", n, v, sizeof(v)) == 1);
    CHECK(auth_cookie_get(NULL, n, v, sizeof(v)) == AUTH_EINVAL);
    /* oversized headers are refused outright */
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "redress_session=abc; x=", 23);
    CHECK(auth_cookie_get(big, n, v, sizeof(v)) == AUTH_EINVAL);
    big[AUTH_COOKIE_HEADER_MAX] = '\0';
    CHECK(auth_cookie_get(big, n, v, sizeof(v)) == 0);
    CHECK_STR(v, "abc");
}

static void test_cookie_format(void)
{
    char out[256], tiny[16];

    CHECK(auth_cookie_format(out, sizeof(out), "0123456789abcdef0123456789abcdef", 43200, 0) == 0);
    CHECK_STR(out, "redress_session=0123456789abcdef0123456789abcdef; Path=/; Max-Age=43200; "
                   "HttpOnly; SameSite=Strict");
    CHECK(auth_cookie_format(out, sizeof(out), "00", 60, 1) == 0);
    CHECK_STR(out, "redress_session=00; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure");
    CHECK(auth_cookie_format(out, sizeof(out), NULL, 60, 0) == 0);
    CHECK_STR(out, "redress_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
    CHECK(auth_cookie_format(tiny, sizeof(tiny), "00", 60, 0) == AUTH_EINVAL);
}

/* ---- the SQL layer ---- */

static sqlite3 *mem_db(void)
{
    sqlite3 *db = NULL;
    char err[256] = "";
    if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL) != SQLITE_OK ||
        auth_migrate(db, err, sizeof(err)) != 0) {
        fprintf(stderr, "cannot open a test database: %s\n", err);
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static long long count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    long long n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void test_migrate(void)
{
    sqlite3 *db = mem_db();
    char err[256] = "";

    if (!db) {
        failures++;
        return;
    }
    CHECK(auth_migrate(db, err, sizeof(err)) == 0); /* again: nothing to do */
    CHECK(count(db, "SELECT COUNT(*) FROM auth_schema") == 1);
    CHECK(count(db, "SELECT MAX(version) FROM auth_schema") == 1);
    CHECK(count(db, "SELECT COUNT(*) FROM sqlite_master WHERE name IN"
                    " ('users','auth_sessions','auth_failures')") == 3);
    /* the schema itself refuses what the code never writes */
    CHECK(sqlite3_exec(db,
                       "INSERT INTO users(username, role, password_hash, created_at, updated_at)"
                       " VALUES ('x', 'root', 'h', 0, 0)",
                       NULL, NULL, NULL) == SQLITE_CONSTRAINT);
    CHECK(sqlite3_exec(db,
                       "INSERT INTO auth_sessions(token_hash, user_id, created_at, last_seen,"
                       " expires_at) VALUES (x'00', 1, 0, 0, 0)",
                       NULL, NULL, NULL) == SQLITE_CONSTRAINT);
    sqlite3_close(db);
}

typedef struct listed {
    int n;
    char names[4][AUTH_USERNAME_MAX + 1];
    int sessions[4];
} listed;

static int collect(const auth_account_t *a, void *arg)
{
    listed *l = arg;
    if (l->n < 4) {
        snprintf(l->names[l->n], sizeof(l->names[0]), "%s", a->username);
        l->sessions[l->n] = a->active_sessions;
    }
    l->n++;
    return 0;
}

static void test_db_accounts(void)
{
    sqlite3 *db = mem_db();
    auth_account_t a;
    char hash[AUTH_HASH_MAX], token[AUTH_TOKEN_HEX + 1];
    long long id = 0, id2 = 0, sid = 0;
    int revoked = -1;
    listed l = {0};

    if (!db) {
        failures++;
        return;
    }
    CHECK(auth_db_user_add(db, "zoe", "佐伊", AUTH_ROLE_AGENT, "h1", 1000, &id) == 0);
    CHECK(id > 0);
    CHECK(auth_db_user_add(db, "zoe", "", AUTH_ROLE_ADMIN, "h2", 1000, NULL) == AUTH_EEXIST);
    CHECK(auth_db_user_add(db, "amy", "Amy", AUTH_ROLE_EDITOR, "h3", 1001, &id2) == 0);
    CHECK(auth_db_user_add(db, "bob", "", AUTH_ROLE_NONE, "h4", 1001, NULL) == AUTH_EINVAL);
    CHECK(auth_db_user_add(db, "bob", "", (auth_role_t)9, "h4", 1001, NULL) == AUTH_EINVAL);

    CHECK(auth_db_user_get(db, "zoe", &a, hash) == 0);
    CHECK(a.id == id && a.role == AUTH_ROLE_AGENT && !a.disabled && a.created_at == 1000);
    CHECK_STR(a.display_name, "佐伊");
    CHECK_STR(hash, "h1");
    CHECK(auth_db_user_get(db, "nobody", &a, NULL) == AUTH_ENOENT);
    CHECK(auth_db_user_get(db, "ZOE", &a, NULL) == AUTH_ENOENT); /* callers normalise */

    /* sessions: created live, counted, revoked by a password change */
    CHECK(auth_db_session_create(db, id, "10.0.0.1", 2000, 3600, token, &sid) == 0);
    CHECK(sid > 0 && strlen(token) == AUTH_TOKEN_HEX);
    CHECK(count(db, "SELECT COUNT(*) FROM auth_sessions WHERE revoked = 0") == 1);
    CHECK(count(db, "SELECT expires_at FROM auth_sessions") == 5600);
    CHECK(auth_db_user_list(db, 2000, collect, &l) == 0);
    CHECK(l.n == 2);
    CHECK_STR(l.names[0], "amy");
    CHECK_STR(l.names[1], "zoe");
    CHECK(l.sessions[0] == 0 && l.sessions[1] == 1);
    CHECK(auth_db_user_set_password(db, "zoe", "h9", 2100) == 0);
    CHECK(auth_db_user_get(db, "zoe", &a, hash) == 0);
    CHECK_STR(hash, "h9");
    CHECK(a.updated_at == 2100);
    CHECK(count(db, "SELECT COUNT(*) FROM auth_sessions WHERE revoked = 0") == 0);
    CHECK(auth_db_user_set_password(db, "nobody", "h", 2100) == AUTH_ENOENT);

    /* a hash upgrade keeps the sessions and only replaces the hash it expects */
    CHECK(auth_db_session_create(db, id, "", 2200, 3600, token, &sid) == 0);
    CHECK(auth_db_user_upgrade_hash(db, id, "h9", "h10", 2201) == 1);
    CHECK(auth_db_user_upgrade_hash(db, id, "h9", "h11", 2202) == 0);
    CHECK(auth_db_user_get(db, "zoe", &a, hash) == 0);
    CHECK_STR(hash, "h10");
    CHECK(count(db, "SELECT COUNT(*) FROM auth_sessions WHERE revoked = 0") == 1);

    /* disabling ends every session and says how many; enabling does not bring them back */
    CHECK(auth_db_session_create(db, id, "", 2200, 3600, token, &sid) == 0);
    CHECK(auth_db_session_create(db, id2, "", 2200, 3600, token, NULL) == 0);
    CHECK(auth_db_user_set_disabled(db, "zoe", 1, 2300, &revoked) == 0);
    CHECK(revoked == 2);
    CHECK(auth_db_user_get(db, "zoe", &a, NULL) == 0 && a.disabled == 1);
    CHECK(count(db, "SELECT COUNT(*) FROM auth_sessions WHERE revoked = 0") == 1); /* amy's */
    CHECK(auth_db_user_set_disabled(db, "zoe", 0, 2400, &revoked) == 0);
    CHECK(revoked == 0);
    CHECK(auth_db_user_get(db, "zoe", &a, NULL) == 0 && a.disabled == 0);
    CHECK(count(db, "SELECT COUNT(*) FROM auth_sessions WHERE revoked = 0") == 1);
    CHECK(auth_db_user_set_disabled(db, "nobody", 1, 2400, &revoked) == AUTH_ENOENT);

    /* revoke one; revoking twice says so; prune removes ended sessions only */
    CHECK(auth_db_session_revoke(db, sid) == AUTH_ENOENT); /* already revoked by disable */
    CHECK(auth_db_session_create(db, id, "", 3000, 100, token, &sid) == 0);
    CHECK(auth_db_session_revoke(db, sid) == 0);
    CHECK(auth_db_session_revoke(db, sid) == AUTH_ENOENT);
    CHECK(auth_db_session_revoke(db, 999999) == AUTH_ENOENT);
    CHECK(auth_db_session_prune(db, 3050) == 0);
    CHECK(auth_db_session_prune(db, 3101) == 1);
    CHECK(count(db, "SELECT COUNT(*) FROM auth_sessions") == 4);
    CHECK(count(db, "SELECT COUNT(*) FROM auth_sessions WHERE expires_at < 3101") == 0);
    sqlite3_close(db);
}

static void test_limiter(void)
{
    sqlite3 *db = mem_db();
    auth_limits_t lim = {.max_user = 5, .max_ip = 9, .window_s = 900};
    int retry = 0;

    if (!db) {
        failures++;
        return;
    }
    /* four failures: the fifth attempt may still start */
    for (int i = 0; i < 4; i++)
        CHECK(auth_db_failure_add(db, "alice", "10.0.0.1", 1000 + i * 10, 900) == 0);
    CHECK(auth_db_limit_check(db, &lim, "alice", "10.0.0.1", 0, 0, 1100, &retry) == 0);
    /* ... but not while one attempt is still being checked: it counts as a failure, so the
     * wait is until the oldest of the four (at 1000) leaves the window */
    CHECK(auth_db_limit_check(db, &lim, "alice", "10.0.0.1", 1, 0, 1100, &retry) == AUTH_ELIMITED);
    CHECK(retry == 800);
    /* five attempts in progress and none recorded: a second (they end soon) */
    CHECK(auth_db_limit_check(db, &lim, "bob", "10.0.0.1", 5, 0, 1100, &retry) == AUTH_ELIMITED);
    CHECK(retry == 1);
    /* five failures: refused until the oldest (at 1000) leaves the window at 1900 */
    CHECK(auth_db_failure_add(db, "alice", "10.0.0.1", 1040, 900) == 0);
    CHECK(auth_db_limit_check(db, &lim, "alice", "10.0.0.1", 0, 0, 1100, &retry) == AUTH_ELIMITED);
    CHECK(retry == 800);
    CHECK(auth_db_limit_check(db, &lim, "alice", "10.0.0.1", 0, 0, 1899, &retry) == AUTH_ELIMITED);
    CHECK(retry == 1);
    CHECK(auth_db_limit_check(db, &lim, "alice", "10.0.0.1", 0, 0, 1900, &retry) == 0);
    /* with one attempt pending, the second-oldest failure (1010) must go too */
    CHECK(auth_db_limit_check(db, &lim, "alice", "10.0.0.1", 1, 0, 1900, &retry) == AUTH_ELIMITED);
    CHECK(retry == 10);
    /* other usernames from another address are not affected */
    CHECK(auth_db_limit_check(db, &lim, "bob", "10.0.0.2", 0, 0, 1100, &retry) == 0);
    /* per address: spraying many usernames from one address trips max_ip */
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof(name), "user%d", i);
        CHECK(auth_db_failure_add(db, name, "10.0.0.1", 1050, 900) == 0);
    }
    CHECK(auth_db_limit_check(db, &lim, "carol", "10.0.0.1", 0, 0, 1100, &retry) == 0);
    CHECK(auth_db_failure_add(db, "dave", "10.0.0.1", 1060, 900) == 0);
    CHECK(auth_db_limit_check(db, &lim, "carol", "10.0.0.1", 0, 0, 1100, &retry) == AUTH_ELIMITED);
    CHECK(retry == 800); /* the 9th newest failure is alice's at 1000 */
    CHECK(auth_db_limit_check(db, &lim, "carol", "10.0.0.2", 0, 0, 1100, &retry) == 0);
    /* max_ip 0 turns the per-address limit off (behind a reverse proxy) */
    lim.max_ip = 0;
    CHECK(auth_db_limit_check(db, &lim, "carol", "10.0.0.1", 0, 50, 1100, &retry) == 0);
    lim.max_ip = 9;
    /* a successful login forgets the username's failures (from every address) */
    CHECK(auth_db_failures_reset(db, "alice") == 0);
    CHECK(auth_db_limit_check(db, &lim, "alice", "10.0.0.2", 0, 0, 1100, &retry) == 0);
    CHECK(count(db, "SELECT COUNT(*) FROM auth_failures WHERE username = 'alice'") == 0);
    /* recording a failure forgets those older than the window */
    CHECK(count(db, "SELECT COUNT(*) FROM auth_failures") == 4);
    CHECK(auth_db_failure_add(db, "erin", "10.0.0.9", 1960, 900) == 0);
    CHECK(count(db, "SELECT COUNT(*) FROM auth_failures") == 1);
    sqlite3_close(db);
}

/* ---- the server side: auth_t on a real loop and store ---- */

typedef struct rig {
    uv_loop_t loop;
    config_t cfg;
    store_t *store;
    auth_t *auth;
    sqlite3 *side; /* a second connection, like the CLI's */
    long long hooked;
    int hook_calls;
} rig;

static int init_conn(sqlite3 *db, int is_writer, void *arg, char *err, size_t errlen)
{
    (void)arg;
    return is_writer ? auth_migrate(db, err, errlen) : 0;
}

static void on_logout_hook(void *arg, long long session_id)
{
    rig *r = arg;
    r->hooked = session_id;
    r->hook_calls++;
}

static int rig_open(rig *r, const char *name)
{
    char dir[256], err[512] = "", path[512];

    memset(r, 0, sizeof(*r));
    if (scratch_config(&r->cfg, name, dir, sizeof(dir), err, sizeof(err)) != 0 ||
        uv_loop_init(&r->loop) != 0)
        goto fail;
    if (store_open(&r->store, &r->loop, &r->cfg, init_conn, NULL, err, sizeof(err)) != 0 ||
        auth_new(&r->auth, &r->cfg, &r->loop, r->store, err, sizeof(err)) != 0)
        goto fail;
    auth_set_logout_hook(r->auth, on_logout_hook, r);
    if (config_db_path(&r->cfg, path, sizeof(path)) != 0 ||
        sqlite3_open(path, &r->side) != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(r->side, 5000);
    return 0;
fail:
    fprintf(stderr, "rig: %s\n", err);
    return -1;
}

static void rig_close(rig *r)
{
    auth_close(r->auth);
    if (r->store)
        store_close(r->store);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&r->loop) == 0);
    sqlite3_close(r->side);
    config_free(&r->cfg);
}

/* Adds an account through the side connection, as the CLI would. */
static void add_user(rig *r, const char *name, auth_role_t role, const char *pw, int weak)
{
    char hash[AUTH_HASH_MAX];
    if (weak)
        CHECK(crypto_pwhash_argon2id_str(hash, pw, strlen(pw), crypto_pwhash_argon2id_OPSLIMIT_MIN,
                                         crypto_pwhash_argon2id_MEMLIMIT_MIN) == 0);
    else
        CHECK(auth_password_hash(pw, hash) == 0);
    CHECK(auth_db_user_add(r->side, name, name, role, hash, now_s(), NULL) == 0);
}

typedef struct outcome {
    int done;
    auth_login_result_t res;
} outcome;

static void on_login(void *arg, const auth_login_result_t *res)
{
    outcome *o = arg;
    o->done++;
    o->res = *res;
}

static void wait_for(rig *r, const int *done, int n)
{
    while (*done < n)
        uv_run(&r->loop, UV_RUN_ONCE);
}

/* Logs in and waits.  Returns auth_login's result; *o has the outcome when it was 0. */
static int login(rig *r, const char *user, const char *pw, const char *ip, outcome *o, int *retry)
{
    char err[128] = "";
    int rc;
    memset(o, 0, sizeof(*o));
    rc = auth_login(r->auth, user, pw, ip, on_login, o, retry, err, sizeof(err));
    if (rc == 0)
        wait_for(r, &o->done, 1);
    return rc;
}

static void cookie_for(char *out, size_t n, const char *token)
{
    snprintf(out, n, "theme=dark; redress_session=%s; lang=zh-CN", token);
}

static void test_login_flow(void)
{
    rig r;
    outcome o;
    auth_user_t u;
    auth_account_t acct;
    char cookie[128], hash[AUTH_HASH_MAX], err[128];
    int retry = 0;

    if (rig_open(&r, "flow") != 0) {
        failures++;
        return;
    }
    add_user(&r, "alice", AUTH_ROLE_EDITOR, "correct horse battery", 1);

    /* wrong password and unknown user: the same answer */
    CHECK(login(&r, "alice", "wrong horse battery", "10.0.0.1", &o, &retry) == 0);
    CHECK(o.done == 1 && o.res.rc == AUTH_EDENIED);
    CHECK(login(&r, "nobody", "correct horse battery", "10.0.0.1", &o, &retry) == 0);
    CHECK(o.done == 1 && o.res.rc == AUTH_EDENIED);
    CHECK(count(r.side, "SELECT COUNT(*) FROM auth_failures") == 2);

    /* the right one (usernames are case-insensitive): a session, failures forgotten, and the
     * weak hash upgraded */
    CHECK(login(&r, "Alice", "correct horse battery", "10.0.0.1", &o, &retry) == 0);
    CHECK(o.done == 1 && o.res.rc == AUTH_OK);
    CHECK_STR(o.res.user.username, "alice");
    CHECK(o.res.user.role == AUTH_ROLE_EDITOR);
    CHECK(o.res.user.session_id > 0);
    CHECK(strlen(o.res.token) == AUTH_TOKEN_HEX);
    CHECK(count(r.side, "SELECT COUNT(*) FROM auth_failures WHERE username = 'alice'") == 0);
    CHECK(count(r.side, "SELECT COUNT(*) FROM auth_failures WHERE username = 'nobody'") == 1);
    CHECK(auth_db_user_get(r.side, "alice", &acct, hash) == 0);
    CHECK(strncmp(hash, "$argon2id$v=19$m=65536,t=2,p=1$", 31) == 0);
    CHECK(auth_password_verify(hash, "correct horse battery", NULL) == 0);
    /* the database holds the hash of the id, never the id */
    CHECK(count(r.side, "SELECT COUNT(*) FROM auth_sessions WHERE typeof(token_hash) = 'blob'"
                        " AND length(token_hash) = 32") == 1);

    /* the cookie finds the session */
    cookie_for(cookie, sizeof(cookie), o.res.token);
    CHECK(auth_session_lookup(r.auth, cookie, &u) == 0);
    CHECK(u.session_id == o.res.user.session_id);
    CHECK_STR(u.username, "alice");
    CHECK(u.role == AUTH_ROLE_EDITOR);
    CHECK(auth_session_valid(r.auth, u.session_id) == 1);
    CHECK(auth_session_lookup(r.auth, "", &u) == AUTH_ENOENT);
    CHECK(auth_session_lookup(r.auth, "redress_session=00000000000000000000000000000000", &u) ==
          AUTH_ENOENT);
    CHECK(auth_session_lookup(r.auth, "redress_session=nothex", &u) == AUTH_ENOENT);
    CHECK(auth_session_lookup(r.auth, NULL, &u) == AUTH_EINVAL);

    /* input errors are reported before anything runs */
    CHECK(auth_login(r.auth, "a b", "x", "", on_login, &o, &retry, err, sizeof(err)) ==
          AUTH_EINVAL);
    CHECK_HAS(err, "username");
    CHECK(auth_login(r.auth, "alice", "", "", on_login, &o, &retry, err, sizeof(err)) ==
          AUTH_EINVAL);
    CHECK_HAS(err, "password");
    CHECK(count(r.side, "SELECT COUNT(*) FROM auth_failures") == 1);
    rig_close(&r);
}

static void on_logout(void *arg, int rc, long long session_id)
{
    outcome *o = arg;
    o->done++;
    o->res.rc = rc;
    o->res.user.session_id = session_id;
}

static void test_logout_and_revocation(void)
{
    rig r;
    outcome o, a2, lo;
    auth_user_t u;
    char cookie[128], cookie2[128];
    int retry = 0;

    if (rig_open(&r, "logout") != 0) {
        failures++;
        return;
    }
    add_user(&r, "bob", AUTH_ROLE_AGENT, "correct horse battery", 0);
    CHECK(login(&r, "bob", "correct horse battery", "10.0.0.2", &o, &retry) == 0);
    CHECK(o.res.rc == AUTH_OK);
    CHECK(login(&r, "bob", "correct horse battery", "10.0.0.3", &a2, &retry) == 0);
    CHECK(a2.res.rc == AUTH_OK);
    CHECK(strcmp(o.res.token, a2.res.token) != 0);
    cookie_for(cookie, sizeof(cookie), o.res.token);
    cookie_for(cookie2, sizeof(cookie2), a2.res.token);

    /* logout ends that session only, and tells the hook which one */
    memset(&lo, 0, sizeof(lo));
    CHECK(auth_logout(r.auth, cookie, on_logout, &lo) == 0);
    wait_for(&r, &lo.done, 1);
    CHECK(lo.res.rc == 0);
    CHECK(lo.res.user.session_id == o.res.user.session_id);
    CHECK(r.hook_calls == 1 && r.hooked == o.res.user.session_id);
    CHECK(auth_session_lookup(r.auth, cookie, &u) == AUTH_ENOENT);
    CHECK(auth_session_valid(r.auth, o.res.user.session_id) == 0);
    CHECK(auth_session_lookup(r.auth, cookie2, &u) == 0);
    /* a second logout with the old cookie finds nothing to end */
    CHECK(auth_logout(r.auth, cookie, on_logout, &lo) == AUTH_ENOENT);
    CHECK(auth_logout(r.auth, NULL, on_logout, &lo) == AUTH_EINVAL);
    CHECK(r.hook_calls == 1);

    /* the CLI disables the account: its other session stops at once, and the right password
     * now gets AUTH_EDISABLED (no failure recorded) */
    CHECK(auth_db_user_set_disabled(r.side, "bob", 1, now_s(), NULL) == 0);
    CHECK(auth_session_lookup(r.auth, cookie2, &u) == AUTH_ENOENT);
    CHECK(login(&r, "bob", "correct horse battery", "10.0.0.2", &o, &retry) == 0);
    CHECK(o.res.rc == AUTH_EDISABLED);
    CHECK(login(&r, "bob", "wrong horse battery", "10.0.0.2", &o, &retry) == 0);
    CHECK(o.res.rc == AUTH_EDENIED);
    CHECK(count(r.side, "SELECT COUNT(*) FROM auth_failures") == 1);
    rig_close(&r);
}

static void test_session_expiry_and_touch(void)
{
    rig r;
    outcome o;
    auth_user_t u;
    char cookie[128], sql[256];
    int retry = 0;

    if (rig_open(&r, "expiry") != 0) {
        failures++;
        return;
    }
    add_user(&r, "carol", AUTH_ROLE_SUPERVISOR, "correct horse battery", 0);
    CHECK(login(&r, "carol", "correct horse battery", "", &o, &retry) == 0);
    CHECK(o.res.rc == AUTH_OK);
    cookie_for(cookie, sizeof(cookie), o.res.token);

    /* last_seen two minutes old: the lookup succeeds and writes it (through the store) */
    snprintf(sql, sizeof(sql), "UPDATE auth_sessions SET last_seen = %lld WHERE id = %lld",
             (long long)(now_s() - 120), o.res.user.session_id);
    CHECK(sqlite3_exec(r.side, sql, NULL, NULL, NULL) == SQLITE_OK);
    CHECK(auth_session_lookup(r.auth, cookie, &u) == 0);
    snprintf(sql, sizeof(sql), "SELECT last_seen >= %lld FROM auth_sessions WHERE id = %lld",
             (long long)(now_s() - 5), o.res.user.session_id);
    for (int i = 0; i < 2500 && count(r.side, sql) != 1; i++) {
        uv_run(&r.loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    CHECK(count(r.side, sql) == 1);

    /* unused for longer than auth.session_idle_s: gone */
    snprintf(sql, sizeof(sql), "UPDATE auth_sessions SET last_seen = %lld WHERE id = %lld",
             (long long)(now_s() - r.cfg.auth_session_idle_s), o.res.user.session_id);
    CHECK(sqlite3_exec(r.side, sql, NULL, NULL, NULL) == SQLITE_OK);
    CHECK(auth_session_lookup(r.auth, cookie, &u) == AUTH_ENOENT);

    /* fresh, but past expires_at: gone */
    snprintf(sql, sizeof(sql),
             "UPDATE auth_sessions SET last_seen = %lld, expires_at = %lld WHERE id = %lld",
             (long long)now_s(), (long long)now_s(), o.res.user.session_id);
    CHECK(sqlite3_exec(r.side, sql, NULL, NULL, NULL) == SQLITE_OK);
    CHECK(auth_session_lookup(r.auth, cookie, &u) == AUTH_ENOENT);
    snprintf(sql, sizeof(sql), "UPDATE auth_sessions SET expires_at = %lld WHERE id = %lld",
             (long long)now_s() + 60, o.res.user.session_id);
    CHECK(sqlite3_exec(r.side, sql, NULL, NULL, NULL) == SQLITE_OK);
    CHECK(auth_session_lookup(r.auth, cookie, &u) == 0);

    /* a password change (CLI) ends it */
    CHECK(auth_db_user_set_password(r.side, "carol", "$argon2id$x", now_s()) == 0);
    CHECK(auth_session_lookup(r.auth, cookie, &u) == AUTH_ENOENT);
    rig_close(&r);
}

static void test_rate_limit(void)
{
    rig r;
    outcome o, par[5];
    int retry = 0, done = 0;
    char err[128];

    if (rig_open(&r, "limit") != 0) {
        failures++;
        return;
    }
    add_user(&r, "dave", AUTH_ROLE_AGENT, "correct horse battery", 0);
    /* five wrong passwords started together: the limiter counts them while they run, so a
     * sixth cannot start even though no failure is recorded yet */
    for (int i = 0; i < 5; i++) {
        memset(&par[i], 0, sizeof(par[i]));
        CHECK(auth_login(r.auth, "dave", "wrong horse battery", "10.0.0.4", on_login, &par[i],
                         &retry, err, sizeof(err)) == 0);
    }
    CHECK(auth_login(r.auth, "dave", "correct horse battery", "10.0.0.5", on_login, &o, &retry, err,
                     sizeof(err)) == AUTH_ELIMITED);
    CHECK(retry == 1);
    for (int i = 0; i < 5; i++) {
        wait_for(&r, &par[i].done, 1);
        done += par[i].res.rc == AUTH_EDENIED;
    }
    CHECK(done == 5);
    /* now recorded: refused for about the window, even with the right password */
    CHECK(login(&r, "dave", "correct horse battery", "10.0.0.5", &o, &retry) == AUTH_ELIMITED);
    CHECK(retry > r.cfg.auth_failure_window_s - 60 && retry <= r.cfg.auth_failure_window_s);
    /* another username from another address is not affected */
    add_user(&r, "erin", AUTH_ROLE_AGENT, "correct horse battery", 0);
    CHECK(login(&r, "erin", "correct horse battery", "10.0.0.6", &o, &retry) == 0);
    CHECK(o.res.rc == AUTH_OK);
    rig_close(&r);
}

static void test_close_with_login_in_flight(void)
{
    rig r;
    outcome o;
    int retry = 0;
    char err[128];

    if (rig_open(&r, "close") != 0) {
        failures++;
        return;
    }
    add_user(&r, "fay", AUTH_ROLE_AGENT, "correct horse battery", 0);
    memset(&o, 0, sizeof(o));
    CHECK(auth_login(r.auth, "fay", "correct horse battery", "", on_login, &o, &retry, err,
                     sizeof(err)) == 0);
    /* shut down while the hash runs: the callback still comes, once, with AUTH_ECLOSED, and
     * nothing leaks (AddressSanitizer) */
    auth_close(r.auth);
    store_close(r.store);
    r.auth = NULL;
    r.store = NULL;
    uv_run(&r.loop, UV_RUN_DEFAULT);
    CHECK(o.done == 1);
    CHECK(o.res.rc == AUTH_ECLOSED);
    rig_close(&r);
}

int main(void)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"roles", test_roles},
        {"permission_matrix", test_permission_matrix},
        {"username_rules", test_username_rules},
        {"password_policy", test_password_policy},
        {"display_name", test_display_name},
        {"hash_and_verify", test_hash_and_verify},
        {"rehash", test_rehash},
        {"dummy_hash", test_dummy_hash},
        {"session_ids", test_session_ids},
        {"cookie_parse", test_cookie_parse},
        {"cookie_format", test_cookie_format},
        {"migrate", test_migrate},
        {"db_accounts", test_db_accounts},
        {"limiter", test_limiter},
        {"login_flow", test_login_flow},
        {"logout_and_revocation", test_logout_and_revocation},
        {"session_expiry_and_touch", test_session_expiry_and_touch},
        {"rate_limit", test_rate_limit},
        {"close_with_login_in_flight", test_close_with_login_in_flight},
    };
    size_t n = sizeof(tests) / sizeof(tests[0]);

    if (auth_init() != 0 || scratch_make() != 0) {
        perror("setup");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        int before = failures;
        tests[i].fn();
        printf("%s %s\n", failures == before ? "ok  " : "FAIL", tests[i].name);
    }
    scratch_remove();
    printf("%zu tests, %d failed checks\n", n, failures);
    return failures ? 1 : 0;
}
