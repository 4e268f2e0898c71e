/*
 * fuzz_flow.c - libFuzzer target for loading rules in the Lua sandbox (server/flow*.c).
 *
 * Input: up to five rules files separated by lines "--%%" (a Lua comment, so a seed stays
 * readable Lua).  They are written, in order, to
 *     flows/main.lua  lib/util.lua  lexicon/words.lua  escalation.lua  flows/second.lua
 * of a private rules directory (files of the previous input are removed first), and
 * flow_check_dir() loads and checks them exactly as `redress flow check` and a reload do:
 * compile as text, run every file's top level in the sandbox, validate flow tables, scan step
 * sources.  Inputs over FZ_MAX_INPUT bytes are skipped.
 *
 * What must hold, for any input:
 *   no crash, no sanitizer report, no leak (libFuzzer's LeakSanitizer);
 *   no hang: the instruction budget ends runaway code (flow.max_instructions is set to 200000,
 *   the memory cap to 16 MiB) and libFuzzer's -timeout catches the rest;
 *   the result is 0 or FLOW_ERULES / FLOW_ENOMEM with a message;
 *   no escape: while the rules load, tripwires replace the libc calls the io/os/package
 *   libraries would need (system, popen, exec*, fork, dlopen, remove, rename, unlink and
 *   fopen for writing, except libFuzzer's own crash files) and abort if one is reached;
 *   afterwards the rules directory must hold exactly the files written and the working
 *   directory must be unchanged.  os.exit would end
 *   the process, which libFuzzer reports as a crash.
 */
#include "fuzz_util.h"

#include "config.h"
#include "flow.h"
#include "log.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdarg.h>

#define FZ_MAX_INPUT (64 * 1024)
#define SEPARATOR "\n--%%\n"
#define NFILES 5

static const char *const files[NFILES] = {"flows/main.lua", "lib/util.lua", "lexicon/words.lua",
                                          "escalation.lua", "flows/second.lua"};

static config_t cfg;
static char cwd[4096];
static volatile int armed; /* 1 while flow_check_dir runs */

/* ---- tripwires: any of these reached from flow code is a sandbox escape ---- */

#define TRIP(name)                                                                                 \
    do {                                                                                           \
        if (armed) {                                                                               \
            armed = 0; /* libFuzzer may itself write files while it reports */                     \
            fprintf(stderr, "\nSANDBOX ESCAPE: rules code reached %s()\n", name);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define REAL(ret, name, ...)                                                                       \
    static ret (*real)(__VA_ARGS__);                                                               \
    if (!real)                                                                                     \
        *(void **)&real = dlsym(RTLD_NEXT, name);                                                  \
    FZ_CHECK(real != NULL, "dlsym %s", name)

int system(const char *cmd)
{
    TRIP("system");
    REAL(int, "system", const char *);
    return real(cmd);
}

FILE *popen(const char *cmd, const char *mode)
{
    TRIP("popen");
    REAL(FILE *, "popen", const char *, const char *);
    return real(cmd, mode);
}

int execve(const char *path, char *const argv[], char *const envp[])
{
    TRIP("execve");
    REAL(int, "execve", const char *, char *const[], char *const[]);
    return real(path, argv, envp);
}

int execv(const char *path, char *const argv[])
{
    TRIP("execv");
    REAL(int, "execv", const char *, char *const[]);
    return real(path, argv);
}

int execvp(const char *file, char *const argv[])
{
    TRIP("execvp");
    REAL(int, "execvp", const char *, char *const[]);
    return real(file, argv);
}

pid_t fork(void)
{
    TRIP("fork");
    REAL(pid_t, "fork", void);
    return real();
}

void *dlopen(const char *file, int mode)
{
    TRIP("dlopen");
    REAL(void *, "dlopen", const char *, int);
    return real(file, mode);
}

int remove(const char *path)
{
    TRIP("remove");
    REAL(int, "remove", const char *);
    return real(path);
}

int rename(const char *from, const char *to)
{
    TRIP("rename");
    REAL(int, "rename", const char *, const char *);
    return real(from, to);
}

int unlink(const char *path)
{
    TRIP("unlink");
    REAL(int, "unlink", const char *);
    return real(path);
}

/* libFuzzer itself writes its crash, timeout, leak and oom files with fopen, also from its
 * signal handlers while rules code runs: those paths (-artifact_prefix / -exact_artifact_path,
 * read in LLVMFuzzerInitialize) are allowed, nothing else. */
static char artifact_prefix[1024], artifact_exact[1024];

static int is_artifact(const char *path)
{
    static const char *const kinds[] = {"crash-", "timeout-",   "leak-",
                                        "oom-",   "slow-unit-", "minimized-from-"};
    if (artifact_exact[0] && strcmp(path, artifact_exact) == 0)
        return 1;
    size_t n = strlen(artifact_prefix);
    if (strncmp(path, artifact_prefix, n) != 0)
        return 0;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strncmp(path + n, kinds[i], strlen(kinds[i])) == 0)
            return 1;
    return 0;
}

FILE *fopen(const char *path, const char *mode)
{
    if (strpbrk(mode, "wa+") && !is_artifact(path))
        TRIP("fopen for writing");
    REAL(FILE *, "fopen", const char *, const char *);
    return real(path, mode);
}

/* ---- harness ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    for (int i = 1; i < *argc; i++) {
        const char *a = (*argv)[i];
        if (strncmp(a, "-artifact_prefix=", 17) == 0)
            snprintf(artifact_prefix, sizeof(artifact_prefix), "%s", a + 17);
        else if (strncmp(a, "-exact_artifact_path=", 21) == 0)
            snprintf(artifact_exact, sizeof(artifact_exact), "%s", a + 21);
    }
    FZ_CHECK(config_defaults(&cfg) == 0, "config_defaults");
    cfg.lua_max_instructions = 200000;
    cfg.lua_max_memory_mb = 16;
    log_set_level("error"); /* a rejected file is the common case, not news */
    FZ_CHECK(getcwd(cwd, sizeof(cwd)) != NULL, "getcwd");
    const char *dir = fz_tmpdir();
    char sub[512];
    const char *subs[] = {"flows", "lib", "lexicon"};
    for (int i = 0; i < 3; i++) {
        snprintf(sub, sizeof(sub), "%s/%s", dir, subs[i]);
        FZ_CHECK(mkdir(sub, 0700) == 0, "mkdir %s", sub);
    }
    return 0;
}

/* Counts the directory entries of dir/sub other than . and .. */
static int count_entries(const char *dir, const char *sub)
{
    char path[512];
    snprintf(path, sizeof(path), "%s%s%s", dir, sub[0] ? "/" : "", sub);
    DIR *d = opendir(path);
    FZ_CHECK(d != NULL, "rules directory %s is gone", path);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = fz_tmpdir();
    char path[512], err[2048];

    if (size > FZ_MAX_INPUT)
        return -1;
    for (int i = 0; i < NFILES; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        FZ_CHECK(unlink(path) == 0 || errno == ENOENT, "unlink %s", path);
    }

    /* split at the separators; part i goes to files[i] */
    const uint8_t *p = data, *end = data + size;
    int nfiles = 0, per_dir[3] = {0, 0, 0}; /* flows, lib, lexicon */
    int top = 0;                            /* files at the top (escalation.lua) */
    const size_t seplen = strlen(SEPARATOR);
    while (nfiles < NFILES) {
        const uint8_t *sep = memmem(p, (size_t)(end - p), SEPARATOR, seplen);
        const uint8_t *stop = sep && nfiles < NFILES - 1 ? sep : end;
        fz_write(dir, files[nfiles], p, (size_t)(stop - p), NULL, 0);
        const char *f = files[nfiles];
        if (strncmp(f, "flows/", 6) == 0)
            per_dir[0]++;
        else if (strncmp(f, "lib/", 4) == 0)
            per_dir[1]++;
        else if (strncmp(f, "lexicon/", 8) == 0)
            per_dir[2]++;
        else
            top++;
        nfiles++;
        if (stop == end)
            break;
        p = stop + seplen;
    }

    err[0] = '\0';
    armed = 1;
    int rc = flow_check_dir(&cfg, dir, err, sizeof(err));
    armed = 0;

    FZ_CHECK(rc == 0 || rc == FLOW_ERULES || rc == FLOW_ENOMEM, "flow_check_dir returned %d: %s",
             rc, err);
    FZ_CHECK(rc == 0 || strnlen(err, sizeof(err)) > 0, "error %d without a message", rc);
    FZ_CHECK(strnlen(err, sizeof(err)) < sizeof(err), "message not terminated");

    /* nothing appeared or vanished in the rules directory, and we are where we were */
    FZ_CHECK(count_entries(dir, "flows") == per_dir[0], "files changed in flows/");
    FZ_CHECK(count_entries(dir, "lib") == per_dir[1], "files changed in lib/");
    FZ_CHECK(count_entries(dir, "lexicon") == per_dir[2], "files changed in lexicon/");
    FZ_CHECK(count_entries(dir, "") == 3 + top, "files changed in the rules directory");
    char now[4096];
    FZ_CHECK(getcwd(now, sizeof(now)) != NULL && strcmp(now, cwd) == 0,
             "working directory changed");
    return 0;
}
