/*
 * main.c - the redress binary: subcommand dispatch, ordered start-up, ordered shutdown.
 *
 *   redress serve [flags]     run the chat server (see server.c)
 *   redress kb CMD [flags]    knowledge-base tools (kb/kb_cli.c)
 *   redress flow CMD [flags]  flow tools (server/flow_cli.c)
 *
 * Flags are settings (config.c); `redress --help` lists them.
 */
#include "auth.h"
#include "config.h"
#include "flow.h"
#include "kb.h"
#include "log.h"
#include "server.h"
#include "webhook.h"

#include <stdio.h>
#include <string.h>

typedef int (*command_fn)(const config_t *cfg, int argc, char **argv);

static int serve_main(const config_t *cfg, int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "redress serve: unexpected argument \"%s\"\n", argv[1]);
        return 2;
    }
    return server_run(cfg) == 0 ? 0 : 1;
}

static const struct {
    const char *name;
    command_fn fn;
    const char *help;
} commands[] = {
    {"serve", serve_main, "run the chat server"},
    {"kb", kb_cli_main, "knowledge-base tools"},
    {"flow", flow_cli_main, "flow tools: test, check, reload"},
    {"user", user_cli_main, "accounts: add, passwd, list, disable"},
    {"webhook", webhook_cli_main, "webhooks: add, list, remove, disable, enable, log"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: redress COMMAND [--setting=value ...] [--config FILE]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n");
    config_print_help(f);
}

int main(int argc, char **argv)
{
    config_t cfg;
    char err[512];
    int rest = 0, rc = 2;

    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    if (config_defaults(&cfg) != 0) {
        fprintf(stderr, "redress: out of memory\n");
        return 1;
    }
    if (config_parse_args(&cfg, argc - 1, argv + 1, &rest, err, sizeof(err)) != 0) {
        fprintf(stderr, "redress: %s\n", err);
        goto out;
    }
    if (log_set_level(cfg.log_level) != 0) {
        fprintf(stderr, "redress: log.level: unknown level\n");
        goto out;
    }
    if (rest == 0) {
        usage(stderr);
        goto out;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            rc = commands[i].fn(&cfg, rest, argv + 1);
            goto out;
        }
    fprintf(stderr, "redress: unknown command \"%s\" (see redress --help)\n", argv[1]);
out:
    config_free(&cfg);
    return rc;
}
