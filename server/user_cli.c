/*
 * user_cli.c - `redress user ...`: staff accounts from the command line.
 *
 *   redress user add USERNAME --role=ROLE [--name=NAME]   password read from stdin
 *   redress user passwd USERNAME                          password read from stdin; ends the
 *                                                         account's sessions
 *   redress user list                                     one line per account
 *   redress user disable USERNAME                         ends the account's sessions
 *   redress user enable USERNAME
 *
 * Options also come as `--role ROLE`, `-r ROLE`, `--name NAME`, `-n NAME`.
 *
 * Passwords.  From a terminal: asked twice with echo off (restored on SIGINT/SIGTERM too).
 * From a pipe or file: the first line (without its line ending), so scripts and tests can
 * `printf '%s\n' "$pw" | redress user add ...`.  There is no default password and no
 * password on the command line (it would show in ps and in shell history).
 *
 * Design.  Each command opens the database named by the settings (config_db_path; data.dir
 * is created when data.db is relative) with WAL, foreign keys and a 5 s busy timeout, so it
 * can run next to a live server; runs auth_migrate(); does one change through auth_db.c; and
 * closes.  The server sees the change on its next lookup (a disabled account's sessions stop
 * working at once).  Exit codes: 0 ok, 1 failure, 2 usage.
 */
#include "auth.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PW_BUF (AUTH_PASSWORD_MAX_BYTES + 2)

static int usage(void)
{
    fprintf(stderr,
            "usage: redress user add USERNAME --role=ROLE [--name=NAME]\n"
            "       redress user passwd USERNAME\n"
            "       redress user list\n"
            "       redress user disable USERNAME\n"
            "       redress user enable USERNAME\n"
            "  ROLE is admin, supervisor, editor or agent.  add and passwd read the password\n"
            "  from stdin (asked twice on a terminal; the first line from a pipe).\n"
            "  (plus any --setting=value; the database is data.dir/data.db)\n");
    return 2;
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* ---- the database ---- */

/* Opens and migrates the database.  Returns it, or NULL after printing why. */
static sqlite3 *open_db(const config_t *cfg)
{
    char path[4096], err[512];
    sqlite3 *db = NULL;

    if (config_db_path(cfg, path, sizeof(path)) != 0) {
        fprintf(stderr, "redress user: database path too long\n");
        return NULL;
    }
    if (strcmp(cfg->db_path, ":memory:") != 0 && cfg->db_path[0] != '/' &&
        util_mkdirs(cfg->data_dir) != 0) {
        fprintf(stderr, "redress user: cannot create %s: %s\n", cfg->data_dir, strerror(errno));
        return NULL;
    }
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        fprintf(stderr, "redress user: %s: %s\n", path, db ? sqlite3_errmsg(db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON", NULL, NULL, NULL) !=
        SQLITE_OK) {
        fprintf(stderr, "redress user: %s: %s\n", path, sqlite3_errmsg(db));
        goto fail;
    }
    if (auth_migrate(db, err, sizeof(err)) != 0) {
        fprintf(stderr, "redress user: %s: %s\n", path, err);
        goto fail;
    }
    return db;
fail:
    sqlite3_close(db);
    return NULL;
}

/* ---- reading a password ---- */

static struct termios saved_tty;
static volatile sig_atomic_t tty_quiet;

static void restore_tty(int sig)
{
    if (tty_quiet)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Reads one line into buf (PW_BUF bytes) without its line ending.  Returns 0, 1 at end of
 * input before any character, or -1 when the line is longer than AUTH_PASSWORD_MAX_BYTES. */
static int read_line(char *buf)
{
    size_t n;

    if (!fgets(buf, PW_BUF, stdin))
        return 1;
    n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    else if (n == PW_BUF - 1)
        return -1;
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    return 0;
}

/* Reads a line from the terminal with echo off, after a prompt on stderr. */
static int read_quiet(const char *prompt, char *buf)
{
    struct termios quiet;
    int rc;

    fprintf(stderr, "%s", prompt);
    fflush(stderr);
    if (tcgetattr(STDIN_FILENO, &saved_tty) != 0)
        return read_line(buf);
    quiet = saved_tty;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL;
    signal(SIGINT, restore_tty);
    signal(SIGTERM, restore_tty);
    tty_quiet = 1;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    rc = read_line(buf);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
    tty_quiet = 0;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    return rc;
}

/* Reads and checks the new password of username into pw (PW_BUF bytes).  0 or -1 (said why). */
static int read_password(const char *username, char *pw)
{
    char again[PW_BUF], err[128], prompt[128];
    int rc;

    if (isatty(STDIN_FILENO)) {
        snprintf(prompt, sizeof(prompt), "new password for %s: ", username);
        rc = read_quiet(prompt, pw);
        if (rc == 0 && auth_password_policy(pw, username, err, sizeof(err)) != 0) {
            fprintf(stderr, "redress user: %s\n", err);
            return -1;
        }
        if (rc == 0)
            rc = read_quiet("again: ", again);
        if (rc == 0 && strcmp(pw, again) != 0) {
            fprintf(stderr, "redress user: the two passwords differ\n");
            rc = -2;
        }
        sodium_memzero(again, sizeof(again));
    } else {
        rc = read_line(pw);
    }
    if (rc == 1) {
        fprintf(stderr, "redress user: no password on stdin\n");
        return -1;
    }
    if (rc == -1) {
        fprintf(stderr, "redress user: password: longer than 1024 bytes\n");
        return -1;
    }
    if (rc != 0)
        return -1;
    if (auth_password_policy(pw, username, err, sizeof(err)) != 0) {
        fprintf(stderr, "redress user: %s\n", err);
        return -1;
    }
    return 0;
}

/* Hashes the password read from stdin into hash.  0 or -1 (said why). */
static int new_hash(const char *username, char *hash)
{
    char pw[PW_BUF];
    int rc = -1;

    if (read_password(username, pw) != 0)
        goto out;
    if (auth_password_hash(pw, hash) != 0) {
        fprintf(stderr, "redress user: cannot hash the password (out of memory?)\n");
        goto out;
    }
    rc = 0;
out:
    sodium_memzero(pw, sizeof(pw));
    return rc;
}

/* ---- commands ---- */

/* Option value: "--name=v", "--name v" or "-s v".  Returns 1 and sets *val (advancing *i)
 * when argv[*i] is the option, 0 when it is not, -1 when the value is missing. */
static int option(int argc, char **argv, int *i, const char *name, const char *shrt,
                  const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) == 0 && a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (strcmp(a, name) == 0 || strcmp(a, shrt) == 0) {
        if (*i + 1 >= argc)
            return -1;
        *val = argv[++*i];
        return 1;
    }
    return 0;
}

/* The one USERNAME argument of argv[1..argc), normalised into out.  0, or exit code. */
static int one_username(int argc, char **argv, char *out)
{
    char err[128];
    if (argc != 2 || argv[1][0] == '-')
        return usage();
    if (auth_username_normalize(argv[1], out, err, sizeof(err)) != 0) {
        fprintf(stderr, "redress user: %s\n", err);
        return 1;
    }
    return 0;
}

static int cmd_add(const config_t *cfg, int argc, char **argv)
{
    const char *username = NULL, *role_arg = NULL, *name_arg = NULL;
    char user[AUTH_USERNAME_MAX + 1], hash[AUTH_HASH_MAX], err[128];
    auth_account_t acct;
    auth_role_t role;
    sqlite3 *db = NULL;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        int r = option(argc, argv, &i, "--role", "-r", &role_arg);
        if (r == 0)
            r = option(argc, argv, &i, "--name", "-n", &name_arg);
        if (r < 0)
            return usage();
        if (r > 0)
            continue;
        if (argv[i][0] == '-' || username)
            return usage();
        username = argv[i];
    }
    if (!username)
        return usage();
    if (!role_arg) {
        fprintf(stderr, "redress user add: --role is required (admin, supervisor, editor or "
                        "agent)\n");
        return 2;
    }
    if (auth_username_normalize(username, user, err, sizeof(err)) != 0) {
        fprintf(stderr, "redress user: %s\n", err);
        return 1;
    }
    if ((role = auth_role_parse(role_arg)) == AUTH_ROLE_NONE) {
        fprintf(stderr, "redress user: unknown role \"%s\" (admin, supervisor, editor or agent)\n",
                role_arg);
        return 1;
    }
    if (name_arg && auth_display_name_check(name_arg, err, sizeof(err)) != 0) {
        fprintf(stderr, "redress user: %s\n", err);
        return 1;
    }
    if (!(db = open_db(cfg)))
        return 1;
    /* say so before asking for a password that would be thrown away */
    rc = auth_db_user_get(db, user, &acct, NULL);
    if (rc != AUTH_ENOENT) {
        fprintf(stderr,
                rc == 0 ? "redress user: %s already exists\n"
                        : "redress user: cannot read the accounts\n",
                user);
        rc = 1;
        goto out;
    }
    rc = 1;
    if (new_hash(user, hash) != 0)
        goto out;
    switch (auth_db_user_add(db, user, name_arg ? name_arg : user, role, hash, now_s(), NULL)) {
    case 0:
        printf("added %s (%s)\n", user, auth_role_name(role));
        rc = 0;
        break;
    case AUTH_EEXIST:
        fprintf(stderr, "redress user: %s already exists\n", user);
        break;
    default:
        fprintf(stderr, "redress user: cannot add %s: %s\n", user, sqlite3_errmsg(db));
        break;
    }
out:
    sqlite3_close(db);
    return rc;
}

static int cmd_passwd(const config_t *cfg, int argc, char **argv)
{
    char user[AUTH_USERNAME_MAX + 1], hash[AUTH_HASH_MAX];
    auth_account_t acct;
    sqlite3 *db;
    int rc = one_username(argc, argv, user);

    if (rc != 0)
        return rc;
    if (!(db = open_db(cfg)))
        return 1;
    rc = auth_db_user_get(db, user, &acct, NULL);
    if (rc != 0) {
        fprintf(stderr,
                rc == AUTH_ENOENT ? "redress user: no account %s\n"
                                  : "redress user: cannot read the account %s\n",
                user);
        rc = 1;
        goto out;
    }
    rc = 1;
    if (new_hash(user, hash) != 0)
        goto out;
    if (auth_db_user_set_password(db, user, hash, now_s()) != 0) {
        fprintf(stderr, "redress user: cannot change the password of %s: %s\n", user,
                sqlite3_errmsg(db));
        goto out;
    }
    printf("password of %s changed; its sessions were ended\n", user);
    rc = 0;
out:
    sqlite3_close(db);
    return rc;
}

static int cmd_able(const config_t *cfg, int argc, char **argv, int disabled)
{
    char user[AUTH_USERNAME_MAX + 1];
    sqlite3 *db;
    int rc = one_username(argc, argv, user), revoked = 0;

    if (rc != 0)
        return rc;
    if (!(db = open_db(cfg)))
        return 1;
    rc = auth_db_user_set_disabled(db, user, disabled, now_s(), &revoked);
    if (rc == 0 && disabled)
        printf("%s disabled; %d session%s ended\n", user, revoked, revoked == 1 ? "" : "s");
    else if (rc == 0)
        printf("%s enabled\n", user);
    else if (rc == AUTH_ENOENT)
        fprintf(stderr, "redress user: no account %s\n", user);
    else
        fprintf(stderr, "redress user: cannot change %s: %s\n", user, sqlite3_errmsg(db));
    sqlite3_close(db);
    return rc == 0 ? 0 : 1;
}

static int print_account(const auth_account_t *a, void *arg)
{
    char created[32];
    time_t t = (time_t)a->created_at;
    struct tm tm;

    (*(int *)arg)++;
    if (!gmtime_r(&t, &tm) || !strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(created, sizeof(created), "?");
    printf("%-24s %-10s %-8s %8d  %-20s  %s\n", a->username, auth_role_name(a->role),
           a->disabled ? "disabled" : "active", a->active_sessions, created, a->display_name);
    return 0;
}

static int cmd_list(const config_t *cfg, int argc, char **argv)
{
    sqlite3 *db;
    int n = 0, rc;

    (void)argv;
    if (argc != 1)
        return usage();
    if (!(db = open_db(cfg)))
        return 1;
    printf("%-24s %-10s %-8s %8s  %-20s  %s\n", "USERNAME", "ROLE", "STATUS", "SESSIONS", "CREATED",
           "NAME");
    rc = auth_db_user_list(db, now_s(), print_account, &n);
    if (rc != 0)
        fprintf(stderr, "redress user: cannot list the accounts: %s\n", sqlite3_errmsg(db));
    else if (n == 0)
        fprintf(stderr, "no accounts yet; add one with: redress user add USERNAME --role=admin\n");
    sqlite3_close(db);
    return rc == 0 ? 0 : 1;
}

int user_cli_main(const config_t *cfg, int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (auth_init() != 0) {
        fprintf(stderr, "redress user: libsodium did not initialise\n");
        return 1;
    }
    if (strcmp(argv[1], "add") == 0)
        return cmd_add(cfg, argc - 1, argv + 1);
    if (strcmp(argv[1], "passwd") == 0)
        return cmd_passwd(cfg, argc - 1, argv + 1);
    if (strcmp(argv[1], "list") == 0)
        return cmd_list(cfg, argc - 1, argv + 1);
    if (strcmp(argv[1], "disable") == 0)
        return cmd_able(cfg, argc - 1, argv + 1, 1);
    if (strcmp(argv[1], "enable") == 0)
        return cmd_able(cfg, argc - 1, argv + 1, 0);
    fprintf(stderr, "redress user: unknown command \"%s\"\n", argv[1]);
    return usage();
}
