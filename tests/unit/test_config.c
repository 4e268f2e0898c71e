/*
 * test_config.c - unit tests for server/config.c, the one table of settings.
 *
 * Design: each test is a small function that builds its own config_t from
 * config_defaults(), exercises one entry point (config_set, config_load_file,
 * config_parse_args, config_db_path, config_print_help) and frees it with config_free(),
 * so AddressSanitizer's leak check covers every path.  Files are written under a private
 * mkdtemp() directory that main() removes at the end.  CHECK() records a failure and goes
 * on, so one run reports every broken expectation; the exit status is 1 if any failed.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
static char tmpdir[] = "/tmp/redress-test-config-XXXXXX";

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

/* The error text must contain the given fragment (typically the key's name). */
#define CHECK_HAS(err, frag)                                                                       \
    do {                                                                                           \
        if (!strstr((err), (frag))) {                                                              \
            fprintf(stderr, "%s:%d: error \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,   \
                    (err), (frag));                                                                \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* Writes text to tmpdir/name and stores the path in out.  Returns 0 or -1. */
static int write_file(const char *name, const char *text, char *out, size_t outlen)
{
    FILE *f;
    int rc = -1;

    if ((size_t)snprintf(out, outlen, "%s/%s", tmpdir, name) >= outlen)
        return -1;
    f = fopen(out, "w");
    if (!f)
        return -1;
    if (fputs(text, f) >= 0)
        rc = 0;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

static void test_defaults(void)
{
    config_t c;

    CHECK(config_defaults(&c) == 0);
    CHECK_STR(c.listen_host, "127.0.0.1");
    CHECK(c.listen_port == 8080);
    CHECK(c.max_connections == 20000);
    CHECK_STR(c.data_dir, "./data");
    CHECK_STR(c.db_path, "redress.db");
    CHECK_STR(c.web_root, REDRESS_SOURCE_DIR "/web");
    CHECK_STR(c.rules_dir, REDRESS_SOURCE_DIR "/rules");
    CHECK_STR(c.kb_seed, REDRESS_SOURCE_DIR "/kb/sample");
    CHECK(c.max_message_bytes == 16384);
    CHECK(c.max_text_chars == 2000);
    CHECK(c.rate_per_sec == 10);
    CHECK(c.rate_burst == 30);
    CHECK(c.idle_timeout_s == 300);
    CHECK(c.ping_interval_s == 30);
    CHECK(c.hello_timeout_s == 20);
    CHECK(c.session_memory_s == 600);
    CHECK_STR(c.synchronous, "normal");
    CHECK(c.batch_max == 512);
    CHECK(c.lua_max_instructions == 1000000);
    CHECK(c.lua_max_memory_mb == 1024);
    CHECK(c.checkpoint_pages == 1000);
    CHECK_STR(c.log_level, "notice");
    CHECK(c.config_file == NULL);
    config_free(&c);
    CHECK(c.listen_host == NULL && c.log_level == NULL);
}

static void test_set_ok(void)
{
    config_t c;
    char err[256] = "";

    CHECK(config_defaults(&c) == 0);
    CHECK(config_set(&c, "listen.port", "0", err, sizeof(err)) == 0);
    CHECK(c.listen_port == 0);
    CHECK(config_set(&c, "listen.port", "65535", err, sizeof(err)) == 0);
    CHECK(c.listen_port == 65535);
    CHECK(config_set(&c, "limits.rate_burst", "3", err, sizeof(err)) == 0);
    CHECK(c.rate_burst == 3);
    CHECK(config_set(&c, "data.dir", "/var/lib/redress", err, sizeof(err)) == 0);
    CHECK_STR(c.data_dir, "/var/lib/redress");
    CHECK(config_set(&c, "store.synchronous", "full", err, sizeof(err)) == 0);
    CHECK_STR(c.synchronous, "full");
    CHECK(config_set(&c, "log.level", "debug", err, sizeof(err)) == 0);
    CHECK_STR(c.log_level, "debug");
    /* kb.seed may be empty (no seed); its minimum length is 0. */
    CHECK(config_set(&c, "kb.seed", "", err, sizeof(err)) == 0);
    CHECK_STR(c.kb_seed, "");
    config_free(&c);
}

static void test_set_range(void)
{
    config_t c;
    char err[256];

    CHECK(config_defaults(&c) == 0);
    err[0] = '\0';
    CHECK(config_set(&c, "listen.port", "65536", err, sizeof(err)) == -1);
    CHECK_HAS(err, "listen.port");
    CHECK_HAS(err, "out of range");
    CHECK(c.listen_port == 8080);
    err[0] = '\0';
    CHECK(config_set(&c, "listen.port", "-1", err, sizeof(err)) == -1);
    CHECK_HAS(err, "listen.port");
    err[0] = '\0';
    CHECK(config_set(&c, "limits.max_message_bytes", "255", err, sizeof(err)) == -1);
    CHECK_HAS(err, "limits.max_message_bytes");
    CHECK(c.max_message_bytes == 16384);
    err[0] = '\0';
    CHECK(config_set(&c, "limits.rate_per_sec", "0", err, sizeof(err)) == -1);
    CHECK_HAS(err, "limits.rate_per_sec");
    /* Beyond long and int: must be an error, never a silent wrap. */
    err[0] = '\0';
    CHECK(config_set(&c, "limits.max_connections", "99999999999999999999999", err, sizeof(err)) ==
          -1);
    CHECK_HAS(err, "limits.max_connections");
    CHECK(c.max_connections == 20000);
    config_free(&c);
}

static void test_set_type(void)
{
    static const char *const bad[] = {"", "abc", "12x", "1.5", " ", "0x10"};
    config_t c;
    char err[256];

    CHECK(config_defaults(&c) == 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        CHECK(config_set(&c, "limits.idle_timeout_s", bad[i], err, sizeof(err)) == -1);
        CHECK_HAS(err, "limits.idle_timeout_s");
        CHECK_HAS(err, "integer");
    }
    CHECK(c.idle_timeout_s == 300);
    config_free(&c);
}

static void test_set_choice_and_length(void)
{
    config_t c;
    char err[256];
    char longhost[300];

    CHECK(config_defaults(&c) == 0);
    err[0] = '\0';
    CHECK(config_set(&c, "store.synchronous", "sometimes", err, sizeof(err)) == -1);
    CHECK_HAS(err, "store.synchronous");
    CHECK_HAS(err, "normal|full");
    CHECK_STR(c.synchronous, "normal");
    err[0] = '\0';
    /* A prefix of a choice is not the choice. */
    CHECK(config_set(&c, "log.level", "deb", err, sizeof(err)) == -1);
    CHECK_HAS(err, "log.level");
    err[0] = '\0';
    CHECK(config_set(&c, "data.dir", "", err, sizeof(err)) == -1);
    CHECK_HAS(err, "data.dir");
    CHECK_STR(c.data_dir, "./data");
    memset(longhost, 'h', sizeof(longhost) - 1);
    longhost[sizeof(longhost) - 1] = '\0';
    err[0] = '\0';
    CHECK(config_set(&c, "listen.host", longhost, err, sizeof(err)) == -1);
    CHECK_HAS(err, "listen.host");
    CHECK_STR(c.listen_host, "127.0.0.1");
    config_free(&c);
}

static void test_set_unknown(void)
{
    config_t c;
    char err[256] = "";

    CHECK(config_defaults(&c) == 0);
    CHECK(config_set(&c, "limits.no_such_thing", "1", err, sizeof(err)) == -1);
    CHECK_HAS(err, "limits.no_such_thing");
    CHECK_HAS(err, "unknown");
    /* A NULL error buffer is allowed. */
    CHECK(config_set(&c, "nope", "1", NULL, 0) == -1);
    config_free(&c);
}

static void test_load_file_ok(void)
{
    config_t c;
    char path[512], err[512] = "";

    CHECK(write_file("ok.conf",
                     "# redress settings\n"
                     "\n"
                     "   listen.port = 9001   \n"
                     "limits.rate_burst=7\n"
                     "\tdata.dir = \"/srv/redress data\"\n"
                     "  # indented comment\n"
                     "log.level = info",
                     path, sizeof(path)) == 0);
    CHECK(config_defaults(&c) == 0);
    CHECK(config_load_file(&c, path, err, sizeof(err)) == 0);
    CHECK_STR(err, "");
    CHECK(c.listen_port == 9001);
    CHECK(c.rate_burst == 7);
    CHECK_STR(c.data_dir, "/srv/redress data");
    CHECK_STR(c.log_level, "info");
    CHECK_STR(c.config_file, path);
    config_free(&c);
}

static void test_load_file_errors(void)
{
    config_t c;
    char path[512], err[512], want[600];

    CHECK(config_defaults(&c) == 0);

    CHECK(write_file("noeq.conf", "# ok\nlisten.port = 1\nthis line has no equals\n", path,
                     sizeof(path)) == 0);
    err[0] = '\0';
    CHECK(config_load_file(&c, path, err, sizeof(err)) == -1);
    snprintf(want, sizeof(want), "%s:3:", path);
    CHECK_HAS(err, want);
    CHECK(c.config_file == NULL);

    CHECK(write_file("unknown.conf", "\nbogus.key = 1\n", path, sizeof(path)) == 0);
    err[0] = '\0';
    CHECK(config_load_file(&c, path, err, sizeof(err)) == -1);
    snprintf(want, sizeof(want), "%s:2:", path);
    CHECK_HAS(err, want);
    CHECK_HAS(err, "bogus.key");

    CHECK(write_file("range.conf", "limits.rate_burst = 3\nlimits.rate_per_sec = 0\n", path,
                     sizeof(path)) == 0);
    err[0] = '\0';
    CHECK(config_load_file(&c, path, err, sizeof(err)) == -1);
    snprintf(want, sizeof(want), "%s:2:", path);
    CHECK_HAS(err, want);
    CHECK_HAS(err, "limits.rate_per_sec");

    CHECK(write_file("choice.conf", "store.synchronous = off\n", path, sizeof(path)) == 0);
    err[0] = '\0';
    CHECK(config_load_file(&c, path, err, sizeof(err)) == -1);
    snprintf(want, sizeof(want), "%s:1:", path);
    CHECK_HAS(err, want);
    CHECK_HAS(err, "store.synchronous");

    snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmpdir);
    err[0] = '\0';
    CHECK(config_load_file(&c, path, err, sizeof(err)) == -1);
    CHECK_HAS(err, path);
    CHECK_HAS(err, "No such file");
    config_free(&c);
}

static void test_load_file_long_line(void)
{
    config_t c;
    char path[512], err[512] = "", want[600];
    size_t n = 9000;
    char *text = malloc(n + 32);

    CHECK(text != NULL);
    if (!text)
        return;
    strcpy(text, "listen.port = 1\ndata.dir = ");
    size_t len = strlen(text);
    memset(text + len, 'x', n);
    text[len + n] = '\n';
    text[len + n + 1] = '\0';
    CHECK(write_file("long.conf", text, path, sizeof(path)) == 0);
    free(text);
    CHECK(config_defaults(&c) == 0);
    CHECK(config_load_file(&c, path, err, sizeof(err)) == -1);
    snprintf(want, sizeof(want), "%s:2:", path);
    CHECK_HAS(err, want);
    config_free(&c);
}

static void test_args_forms(void)
{
    config_t c;
    char err[512] = "";
    int rest = -1;
    char *argv[] = {"serve", "--listen.port=0",  "--limits.rate_burst", "3",
                    "extra", "--log.level=warn", "--data.dir",          "--weird"};
    int n = (int)(sizeof(argv) / sizeof(argv[0]));

    CHECK(config_defaults(&c) == 0);
    CHECK(config_parse_args(&c, n, argv, &rest, err, sizeof(err)) == 0);
    CHECK_STR(err, "");
    CHECK(c.listen_port == 0);
    CHECK(c.rate_burst == 3);
    CHECK_STR(c.log_level, "warn");
    /* `--key value` takes the next word even when it starts with "--". */
    CHECK_STR(c.data_dir, "--weird");
    CHECK(rest == 2);
    CHECK_STR(argv[0], "serve");
    CHECK_STR(argv[1], "extra");
    config_free(&c);
}

static void test_args_value_with_equals(void)
{
    config_t c;
    char err[512] = "";
    int rest = -1;
    char *argv[] = {"--data.dir=/a=b", "--kb.seed="};

    CHECK(config_defaults(&c) == 0);
    CHECK(config_parse_args(&c, 2, argv, &rest, err, sizeof(err)) == 0);
    CHECK_STR(c.data_dir, "/a=b");
    CHECK_STR(c.kb_seed, "");
    CHECK(rest == 0);
    config_free(&c);
}

static void test_args_unknown_flag(void)
{
    config_t c;
    char err[512] = "";
    int rest = -1;
    char *argv[] = {"serve", "--listen.prot=1"};

    CHECK(config_defaults(&c) == 0);
    CHECK(config_parse_args(&c, 2, argv, &rest, err, sizeof(err)) == -1);
    CHECK_HAS(err, "--listen.prot");
    CHECK(c.listen_port == 8080);
    config_free(&c);
}

static void test_args_missing_value(void)
{
    config_t c;
    char err[512] = "";
    int rest = -1;
    char *argv[] = {"serve", "--listen.port"};

    CHECK(config_defaults(&c) == 0);
    CHECK(config_parse_args(&c, 2, argv, &rest, err, sizeof(err)) == -1);
    CHECK_HAS(err, "--listen.port");
    CHECK_HAS(err, "value");
    config_free(&c);
}

static void test_args_bad_value(void)
{
    config_t c;
    char err[512] = "";
    int rest = -1;
    char *argv[] = {"--limits.hello_timeout_s", "0"};

    CHECK(config_defaults(&c) == 0);
    CHECK(config_parse_args(&c, 2, argv, &rest, err, sizeof(err)) == -1);
    CHECK_HAS(err, "limits.hello_timeout_s");
    CHECK(c.hello_timeout_s == 20);
    config_free(&c);
}

static void test_args_config_file(void)
{
    config_t c;
    char path[512], err[512] = "";
    int rest = -1;

    CHECK(write_file("args.conf", "listen.port = 7000\nlimits.rate_burst = 9\nlog.level = error\n",
                     path, sizeof(path)) == 0);
    /* The file is applied where it stands: earlier flags are overridden by it, later ones win. */
    char *argv[] = {"--listen.port=1", "--config", path, "--limits.rate_burst", "4", "serve"};
    CHECK(config_defaults(&c) == 0);
    CHECK(config_parse_args(&c, 6, argv, &rest, err, sizeof(err)) == 0);
    CHECK_STR(err, "");
    CHECK(c.listen_port == 7000);
    CHECK(c.rate_burst == 4);
    CHECK_STR(c.log_level, "error");
    CHECK_STR(c.config_file, path);
    CHECK(rest == 1);
    CHECK_STR(argv[0], "serve");
    config_free(&c);
}

static void test_args_config_file_errors(void)
{
    config_t c;
    char path[512], err[512], want[600];
    int rest = -1;

    CHECK(write_file("argsbad.conf", "listen.port = 7000\nlisten.port = many\n", path,
                     sizeof(path)) == 0);
    char flag[600];
    snprintf(flag, sizeof(flag), "--config=%s", path);
    char *argv[] = {flag};
    CHECK(config_defaults(&c) == 0);
    err[0] = '\0';
    CHECK(config_parse_args(&c, 1, argv, &rest, err, sizeof(err)) == -1);
    snprintf(want, sizeof(want), "%s:2:", path);
    CHECK_HAS(err, want);
    CHECK_HAS(err, "listen.port");

    char missing[600];
    snprintf(missing, sizeof(missing), "%s/missing.conf", tmpdir);
    char *argv2[] = {"--config", missing};
    err[0] = '\0';
    CHECK(config_parse_args(&c, 2, argv2, &rest, err, sizeof(err)) == -1);
    CHECK_HAS(err, missing);

    char *argv3[] = {"serve", "--config"};
    err[0] = '\0';
    CHECK(config_parse_args(&c, 2, argv3, &rest, err, sizeof(err)) == -1);
    CHECK_HAS(err, "--config");
    config_free(&c);
}

static void test_db_path(void)
{
    config_t c;
    char out[256], small[8];

    CHECK(config_defaults(&c) == 0);
    CHECK(config_set(&c, "data.dir", "/tmp/d", NULL, 0) == 0);
    CHECK(config_db_path(&c, out, sizeof(out)) == 0);
    CHECK_STR(out, "/tmp/d/redress.db");
    CHECK(config_set(&c, "data.db", "/abs/x.db", NULL, 0) == 0);
    CHECK(config_db_path(&c, out, sizeof(out)) == 0);
    CHECK_STR(out, "/abs/x.db");
    CHECK(config_set(&c, "data.db", ":memory:", NULL, 0) == 0);
    CHECK(config_db_path(&c, out, sizeof(out)) == 0);
    CHECK_STR(out, ":memory:");
    CHECK(config_set(&c, "data.db", "rel/y.db", NULL, 0) == 0);
    CHECK(config_db_path(&c, small, sizeof(small)) == -1);
    config_free(&c);
}

static void test_help_lists_settings(void)
{
    FILE *f = tmpfile();
    char buf[8192];
    size_t n;

    CHECK(f != NULL);
    if (!f)
        return;
    config_print_help(f);
    rewind(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    CHECK_HAS(buf, "--listen.port");
    CHECK_HAS(buf, "--limits.max_message_bytes");
    CHECK_HAS(buf, "--store.synchronous");
    CHECK_HAS(buf, "--log.level");
    CHECK_HAS(buf, "16384");
}

static void test_free_twice_and_refill(void)
{
    config_t c;

    CHECK(config_defaults(&c) == 0);
    CHECK(config_set(&c, "data.dir", "/x", NULL, 0) == 0);
    config_free(&c);
    config_free(&c);
    CHECK(config_defaults(&c) == 0);
    CHECK_STR(c.data_dir, "./data");
    config_free(&c);
}

static void remove_tmpdir(void)
{
    static const char *const names[] = {"ok.conf",     "noeq.conf", "unknown.conf", "range.conf",
                                        "choice.conf", "long.conf", "args.conf",    "argsbad.conf"};
    char path[600];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(tmpdir);
}

int main(void)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"defaults", test_defaults},
        {"set_ok", test_set_ok},
        {"set_range", test_set_range},
        {"set_type", test_set_type},
        {"set_choice_and_length", test_set_choice_and_length},
        {"set_unknown", test_set_unknown},
        {"load_file_ok", test_load_file_ok},
        {"load_file_errors", test_load_file_errors},
        {"load_file_long_line", test_load_file_long_line},
        {"args_forms", test_args_forms},
        {"args_value_with_equals", test_args_value_with_equals},
        {"args_unknown_flag", test_args_unknown_flag},
        {"args_missing_value", test_args_missing_value},
        {"args_bad_value", test_args_bad_value},
        {"args_config_file", test_args_config_file},
        {"args_config_file_errors", test_args_config_file_errors},
        {"db_path", test_db_path},
        {"help_lists_settings", test_help_lists_settings},
        {"free_twice_and_refill", test_free_twice_and_refill},
    };
    size_t n = sizeof(tests) / sizeof(tests[0]);

    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        int before = failures;
        tests[i].fn();
        printf("%s %s\n", failures == before ? "ok  " : "FAIL", tests[i].name);
    }
    remove_tmpdir();
    printf("%zu tests, %d failed checks\n", n, failures);
    return failures ? 1 : 0;
}
