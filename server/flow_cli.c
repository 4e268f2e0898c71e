/*
 * flow_cli.c - `redress flow test|check|reload`.
 *
 *   redress flow test [-v] [FILE.test ...]   run conversation scripts (default: every
 *                                            .test file in RULES/tests); exit 0 when all pass
 *   redress flow check [DIR]                 load and check a rules directory (default
 *                                            rules.dir) without a server; exit 0 when valid
 *   redress flow reload                      ask the running server (listen.host:listen.port)
 *                                            to reload its rules: POST /api/flows/reload
 *
 * The reload client is a plain blocking HTTP/1.1 socket client (this is a command-line tool,
 * not the event loop): connect with a timeout, send one request with Connection: close, read
 * the answer to EOF (Content-Length or chunked), and print {"ok":...} as a sentence.
 * Exit codes: 0 success, 1 failure (tests failed, rules invalid, reload rejected), 2 usage or
 * setup error.
 */
#include "flow_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONNECT_TIMEOUT_MS 5000
#define READ_TIMEOUT_MS 60000
#define MAX_RESPONSE (256 * 1024)
#define MAX_TEST_FILES 512

static void usage(FILE *f)
{
    fprintf(f, "usage: redress flow test [-v] [FILE.test ...]   run conversation scripts\n"
               "       redress flow check [DIR]                 check a rules directory\n"
               "       redress flow reload                      reload the running server's "
               "rules\n");
}

/* ---- test ---- */

static int cmp_paths(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmd_test(const config_t *cfg, int argc, char **argv)
{
    char *found[MAX_TEST_FILES];
    const char *files[MAX_TEST_FILES];
    int nfound = 0, n = 0, verbose = 0, rc = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) {
            verbose = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "redress flow test: unknown option %s\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (n < MAX_TEST_FILES) {
            files[n++] = argv[i];
        }
    }
    if (n == 0) {
        char dir[4200];
        snprintf(dir, sizeof(dir), "%s/tests", cfg->rules_dir);
        DIR *d = opendir(dir);
        if (!d) {
            fprintf(stderr, "redress flow test: %s: %s\n", dir, strerror(errno));
            return 2;
        }
        struct dirent *de;
        while ((de = readdir(d)) && nfound < MAX_TEST_FILES) {
            size_t len = strlen(de->d_name);
            if (len < 6 || de->d_name[0] == '.' || strcmp(de->d_name + len - 5, ".test") != 0)
                continue;
            if (asprintf(&found[nfound], "%s/%s", dir, de->d_name) < 0)
                break;
            nfound++;
        }
        closedir(d);
        qsort(found, (size_t)nfound, sizeof(found[0]), cmp_paths);
        for (int i = 0; i < nfound; i++)
            files[n++] = found[i];
        if (n == 0) {
            fprintf(stderr, "redress flow test: no .test files in %s\n", dir);
            goto out;
        }
    }
    int failed = flow_script_run_files(cfg, files, n, verbose, stdout);
    rc = failed < 0 ? 2 : failed > 0 ? 1 : 0;
out:
    for (int i = 0; i < nfound; i++)
        free(found[i]);
    return rc;
}

/* ---- check ---- */

static int cmd_check(const config_t *cfg, int argc, char **argv)
{
    char err[2048] = "";
    if (argc > 2) {
        usage(stderr);
        return 2;
    }
    const char *dir = argc == 2 ? argv[1] : cfg->rules_dir;
    if (flow_check_dir(cfg, dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err[0] ? err : "the rules do not load");
        return 1;
    }
    printf("%s: rules are valid\n", dir);
    return 0;
}

/* ---- reload ---- */

static int connect_to(const char *host, int port, char *err, size_t errlen)
{
    char portstr[16];
    struct addrinfo hints, *res = NULL;
    int fd = -1;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    snprintf(portstr, sizeof(portstr), "%d", port);
    int g = getaddrinfo(host, portstr, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "%s: %s", host, gai_strerror(g));
        return -1;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int flags = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        int c = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (c != 0 && errno == EINPROGRESS) {
            struct pollfd p = {fd, POLLOUT, 0};
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (poll(&p, 1, CONNECT_TIMEOUT_MS) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                c = 0;
            else
                errno = soerr ? soerr : ETIMEDOUT;
        }
        if (c == 0) {
            fcntl(fd, F_SETFL, flags);
            break;
        }
        snprintf(err, errlen, "cannot connect to %s:%d: %s", host, port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Decodes a chunked body in place; returns its length or -1. */
static long dechunk(char *body, size_t len)
{
    char *in = body, *end = body + len, *out = body;
    for (;;) {
        char *eol = memmem(in, (size_t)(end - in), "\r\n", 2);
        if (!eol)
            return -1;
        long n = strtol(in, NULL, 16);
        if (n < 0 || eol + 2 + n > end)
            return -1;
        if (n == 0)
            return out - body;
        memmove(out, eol + 2, (size_t)n);
        out += n;
        in = eol + 2 + n + 2;
        if (in > end)
            return -1;
    }
}

static int cmd_reload(const config_t *cfg, int argc, char **argv)
{
    char err[512] = "", req[512];
    char *buf = NULL;
    size_t len = 0;
    int fd = -1, rc = 1;
    (void)argv;
    if (argc > 1) {
        usage(stderr);
        return 2;
    }
    const char *host = cfg->listen_host;
    if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    if (cfg->listen_port <= 0) {
        fprintf(stderr, "redress flow reload: set --listen.port to the server's port\n");
        return 2;
    }
    fd = connect_to(host, cfg->listen_port, err, sizeof(err));
    if (fd < 0) {
        fprintf(stderr, "redress flow reload: %s (is the server running?)\n", err);
        return 1;
    }
    int n = snprintf(req, sizeof(req),
                     "POST /api/flows/reload HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: 0\r\n"
                     "Connection: close\r\nUser-Agent: redress-flow\r\n\r\n",
                     host, cfg->listen_port);
    for (int off = 0; off < n;) {
        ssize_t w = send(fd, req + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w <= 0) {
            fprintf(stderr, "redress flow reload: send: %s\n", strerror(errno));
            goto out;
        }
        off += (int)w;
    }
    buf = malloc(MAX_RESPONSE + 1);
    if (!buf)
        goto out;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, READ_TIMEOUT_MS) != 1) {
            fprintf(stderr, "redress flow reload: no answer from the server\n");
            goto out;
        }
        ssize_t r = recv(fd, buf + len, MAX_RESPONSE - len, 0);
        if (r < 0) {
            fprintf(stderr, "redress flow reload: recv: %s\n", strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == MAX_RESPONSE)
            break;
    }
    buf[len] = '\0';
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        fprintf(stderr, "redress flow reload: not an HTTP answer\n");
        goto out;
    }
    char *body = strstr(buf, "\r\n\r\n");
    body = body ? body + 4 : buf + len;
    size_t blen = (size_t)(buf + len - body);
    if (strcasestr(buf, "\r\ntransfer-encoding: chunked") &&
        strcasestr(buf, "\r\ntransfer-encoding: chunked") < body) {
        long dl = dechunk(body, blen);
        blen = dl < 0 ? 0 : (size_t)dl;
        body[blen] = '\0';
    }
    cJSON *j = cJSON_ParseWithLength(body, blen);
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(j, "ok");
    const cJSON *gen = cJSON_GetObjectItemCaseSensitive(j, "generation");
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (status == 200 && cJSON_IsTrue(ok)) {
        if (cJSON_IsNumber(gen))
            printf("rules reloaded (generation %d)\n", gen->valueint);
        else
            printf("rules reloaded\n");
        rc = 0;
    } else if (cJSON_IsString(error)) {
        fprintf(stderr, "reload rejected, the server keeps its rules:\n%s\n", error->valuestring);
    } else if (cJSON_IsObject(error) &&
               cJSON_IsString(cJSON_GetObjectItemCaseSensitive(error, "message"))) {
        fprintf(stderr, "redress flow reload: HTTP %d: %s\n", status,
                cJSON_GetObjectItemCaseSensitive(error, "message")->valuestring);
    } else {
        fprintf(stderr, "redress flow reload: HTTP %d: %.*s\n", status,
                (int)(blen > 500 ? 500 : blen), body);
    }
    cJSON_Delete(j);
out:
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

int flow_cli_main(const config_t *cfg, int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "test") == 0)
        return cmd_test(cfg, argc - 1, argv + 1);
    if (strcmp(argv[1], "check") == 0)
        return cmd_check(cfg, argc - 1, argv + 1);
    if (strcmp(argv[1], "reload") == 0)
        return cmd_reload(cfg, argc - 1, argv + 1);
    fprintf(stderr, "redress flow: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
