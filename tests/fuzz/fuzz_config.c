/*
 * fuzz_config.c - libFuzzer target for settings parsing (server/config.c).
 *
 * config.c is included here (as the unit tests may include a .c file) so that every parsed
 * config_t can be checked against the one table of settings itself.
 *
 * Input: a config file, then optionally a NUL byte and command-line arguments separated by NUL
 * bytes (argv strings cannot hold NUL, so this is every possible argv).  The file part is
 * written to a private file and given to config_load_file; then the arguments go through
 * config_parse_args.  A `--config X` / `--config=X` argument is pointed at that same private
 * file, so the fuzzer never reads other files (/dev/zero would never end: README.md).
 *
 * What must hold: no crash or leak; 0 or -1; on -1 a non-empty message, and for a file one that
 * starts with "path:line:" or "path:"; on 0 every setting satisfies its row (integers within
 * [min, max], strings present, within their length range and among their choices); every
 * argument that is not a setting flag or its value comes back, in order, at the front of argv;
 * config_free leaves no string.
 */
#include "fuzz_util.h"

#include "../../server/config.c"

#define FZ_MAX_INPUT (64 * 1024)
#define MAX_ARGS 64

static char cfg_path[512];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(cfg_path, sizeof(cfg_path), "%s/redress.conf", fz_tmpdir());
    return 0;
}

/* Every field of c satisfies its row of the settings table. */
static void check_settings(const config_t *c)
{
    const char *base = (const char *)c;
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *s = &settings[i];
        if (s->type == T_INT) {
            int v = *(const int *)(base + s->offset);
            FZ_CHECK(v >= s->min && v <= s->max, "%s = %d outside [%ld, %ld]", s->name, v, s->min,
                     s->max);
            continue;
        }
        const char *v = *(char *const *)(base + s->offset);
        FZ_CHECK(v != NULL, "%s is NULL", s->name);
        size_t len = strlen(v);
        FZ_CHECK(!(s->min > 0 && len < (size_t)s->min), "%s shorter than %ld", s->name, s->min);
        FZ_CHECK(!(s->max > 0 && len > (size_t)s->max), "%s longer than %ld", s->name, s->max);
        FZ_CHECK(!s->choices || choice_ok(s->choices, v), "%s = \"%s\" not in %s", s->name, v,
                 s->choices);
    }
}

/* config.c's rule: --config and flags whose name has a dot are settings; any other argument
 * (including "--" and flags such as --role) belongs to the command and stays in the rest. */
static int is_setting_flag(const char *a)
{
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
        return 0;
    size_t klen = strcspn(a + 2, "=");
    return (klen == 6 && strncmp(a + 2, "config", 6) == 0) || memchr(a + 2, '.', klen) != NULL;
}

static void check_error(int rc, const char *err, size_t errlen)
{
    FZ_CHECK(rc == -1, "returned %d", rc);
    size_t n = strnlen(err, errlen);
    FZ_CHECK(n > 0 && n < errlen, "error without a message");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    config_t c;
    char err[1024];
    char *argv[MAX_ARGS], *orig[MAX_ARGS];
    int argc = 0, rest = -1;

    if (size > FZ_MAX_INPUT)
        return -1;
    char *copy = fz_strndup0(data, size); /* argv strings point into it */
    size_t flen = strlen(copy);
    fz_write(fz_tmpdir(), "redress.conf", data, flen, NULL, 0);
    for (size_t i = flen + 1; i < size && argc < MAX_ARGS;) {
        argv[argc++] = copy + i;
        i += strlen(copy + i) + 1;
    }
    /* --config always names our file */
    static char config_eq[600];
    snprintf(config_eq, sizeof(config_eq), "--config=%s", cfg_path);
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            argv[++i] = cfg_path;
        else if (strncmp(argv[i], "--config=", 9) == 0)
            argv[i] = config_eq;
    }
    memcpy(orig, argv, sizeof(char *) * (size_t)argc);

    FZ_CHECK(config_defaults(&c) == 0, "config_defaults");
    check_settings(&c);

    err[0] = '\0';
    int rc = config_load_file(&c, cfg_path, err, sizeof(err));
    if (rc == 0) {
        FZ_CHECK(c.config_file && strcmp(c.config_file, cfg_path) == 0, "config_file not set");
    } else {
        check_error(rc, err, sizeof(err));
        FZ_CHECK(strncmp(err, cfg_path, strlen(cfg_path)) == 0 && err[strlen(cfg_path)] == ':',
                 "file error does not start with the path: %s", err);
    }
    check_settings(&c); /* a failed load may have applied earlier lines: still all valid */

    err[0] = '\0';
    rc = config_parse_args(&c, argc, argv, &rest, err, sizeof(err));
    if (rc == 0) {
        FZ_CHECK(rest >= 0 && rest <= argc, "rest %d of %d", rest, argc);
        int k = 0;
        for (int i = 0; i < argc; i++) {
            const char *a = orig[i];
            if (is_setting_flag(a)) {
                if (!strchr(a, '='))
                    i++; /* the flag's value */
                continue;
            }
            FZ_CHECK(k < rest && argv[k] == a, "argument %d \"%s\" not kept in order", i, a);
            k++;
        }
        FZ_CHECK(k == rest, "%d non-flag arguments, rest says %d", k, rest);
    } else {
        check_error(rc, err, sizeof(err));
    }
    check_settings(&c);

    char db[64];
    int dbr = config_db_path(&c, db, sizeof(db));
    FZ_CHECK(dbr == 0 || dbr == -1, "config_db_path returned %d", dbr);
    if (dbr == 0)
        FZ_CHECK(strlen(db) < sizeof(db), "db path overflow");

    config_free(&c);
    const char *base = (const char *)&c;
    for (size_t i = 0; i < NSETTINGS; i++)
        if (settings[i].type == T_STR)
            FZ_CHECK(*(char *const *)(base + settings[i].offset) == NULL, "%s not freed",
                     settings[i].name);
    FZ_CHECK(c.config_file == NULL, "config_file not freed");
    free(copy);
    return 0;
}
