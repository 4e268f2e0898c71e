/*
 * test_flow_cli.c - `redress flow reload|check|test` through flow_cli_main().
 *
 * reload talks to a stand-in HTTP server on 127.0.0.1 (a thread that accepts one connection,
 * records the request and sends a canned answer): success, rejection with file:line, a chunked
 * answer, an error object, and no server at all.  check and test run on throwaway rules.
 */
#include "flow.h"
#include "test_flow_host.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct server {
    int fd;
    int port;
    const char *answer;
    char request[2048];
} server;

static void *serve_one(void *arg)
{
    server *s = arg;
    int c = accept(s->fd, NULL, NULL);
    size_t n = 0;
    if (c < 0)
        return NULL;
    while (n + 1 < sizeof(s->request)) {
        ssize_t r = recv(c, s->request + n, sizeof(s->request) - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
        s->request[n] = '\0';
        if (strstr(s->request, "\r\n\r\n"))
            break;
    }
    if (send(c, s->answer, strlen(s->answer), MSG_NOSIGNAL) < 0)
        perror("send");
    close(c);
    return NULL;
}

static int listen_any(int *port)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 1) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

/* Runs `redress flow reload` against a server giving `answer`; returns the exit code. */
static int reload_with(const char *answer, char *request, size_t reqlen)
{
    server s = {.answer = answer};
    pthread_t t;
    config_t cfg;
    char *argv[] = {"flow", "reload", NULL};
    s.fd = listen_any(&s.port);
    if (s.fd < 0)
        return -100;
    pthread_create(&t, NULL, serve_one, &s);
    config_defaults(&cfg);
    cfg.listen_port = s.port;
    int rc = flow_cli_main(&cfg, 2, argv);
    pthread_join(t, NULL);
    close(s.fd);
    config_free(&cfg);
    if (request)
        snprintf(request, reqlen, "%s", s.request);
    return rc;
}

static void test_reload(void)
{
    char req[2048];
    CHECK(reload_with("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                      "27\r\n\r\n{\"ok\":true,\"generation\":3}",
                      req, sizeof(req)) == 0);
    CHECK(strncmp(req, "POST /api/flows/reload HTTP/1.1\r\n", 33) == 0);
    CHECK(strstr(req, "Content-Length: 0\r\n") != NULL);
    CHECK(reload_with("HTTP/1.1 422 Unprocessable Entity\r\nContent-Length: 52\r\n\r\n"
                      "{\"ok\":false,\"error\":\"rules/flows/x.lua:3: boom!!!\"}",
                      NULL, 0) == 1);
    CHECK(reload_with("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "a\r\n{\"ok\":true\r\n1\r\n}\r\n0\r\n\r\n",
                      NULL, 0) == 0);
    CHECK(reload_with("HTTP/1.1 403 Forbidden\r\nContent-Length: 61\r\n\r\n"
                      "{\"error\":{\"code\":\"forbidden\",\"message\":\"loopback only\"}}",
                      NULL, 0) == 1);
    CHECK(reload_with("garbage", NULL, 0) == 1);
    /* no server listening */
    int port;
    int fd = listen_any(&port);
    close(fd);
    config_t cfg;
    char *argv[] = {"flow", "reload", NULL};
    config_defaults(&cfg);
    cfg.listen_port = port;
    CHECK(flow_cli_main(&cfg, 2, argv) == 1);
    char *extra[] = {"flow", "reload", "now", NULL};
    CHECK(flow_cli_main(&cfg, 3, extra) == 2);
    config_free(&cfg);
}

static void test_check_and_test(void)
{
    char dir[64], path[256];
    config_t cfg;
    CHECK(th_tmpdir(dir, sizeof(dir)) != NULL);
    th_put(dir, "flows/main.lua",
           "return { start = 's', steps = { s = function(chat, st)\n"
           "  local a = chat:ask('你好，请问有什么问题？')\n"
           "  st.answer = a\n"
           "  chat:say('收到：' .. a)\n"
           "end } }\n");
    th_put(dir, "tests/pass.test", "< 你好\n> 退款\n< 收到：退款\nstate answer = 退款\ndone\n");
    th_put(dir, "tests/fail.test", "< 你好\n> 退款\n< 这句不会出现\n");
    th_config(&cfg, dir);
    free(cfg.kb_seed);
    cfg.kb_seed = strdup("");
    char *check[] = {"flow", "check", dir, NULL};
    CHECK(flow_cli_main(&cfg, 3, check) == 0);
    char *check_default[] = {"flow", "check", NULL};
    CHECK(flow_cli_main(&cfg, 2, check_default) == 0);
    snprintf(path, sizeof(path), "%s/tests/pass.test", dir);
    char *test_pass[] = {"flow", "test", path, NULL};
    CHECK(flow_cli_main(&cfg, 3, test_pass) == 0);
    snprintf(path, sizeof(path), "%s/tests/fail.test", dir);
    char *test_fail[] = {"flow", "test", path, NULL};
    CHECK(flow_cli_main(&cfg, 3, test_fail) == 1);
    char *test_all[] = {"flow", "test", NULL}; /* every .test file in RULES/tests: one fails */
    CHECK(flow_cli_main(&cfg, 2, test_all) == 1);
    char *test_bad[] = {"flow", "test", "--nope", NULL};
    CHECK(flow_cli_main(&cfg, 3, test_bad) == 2);
    char *unknown[] = {"flow", "frobnicate", NULL};
    CHECK(flow_cli_main(&cfg, 2, unknown) == 2);
    th_put(dir, "flows/main.lua",
           "return {\n  start = 's',\n  steps = { s = function( end },\n}\n");
    CHECK(flow_cli_main(&cfg, 3, check) == 1);
    config_free(&cfg);
    th_rmtree(dir);
}

int main(void)
{
    test_reload();
    test_check_and_test();
    printf("test_flow_cli: %d checks, %d failed\n", th_checks, th_failures);
    return th_failures ? 1 : 0;
}
