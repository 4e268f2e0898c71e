/*
 * loadgen_conf.c - the load generator's command line and its conversations.
 *
 * lg_opts_parse() fills an lg_opts_t from argv with every value range-checked (a bad flag gets
 * a message naming it); lg_conversations_load() reads bench/conversations: one conversation
 * per *.txt file (sorted by name), one customer line per text line, blank lines and lines
 * starting with # skipped, each line at most 2000 characters (limits.max_text_chars) and kept
 * JSON-escaped, ready to be pasted into a message frame.  The caller owns what it returns and
 * frees it with lg_conversations_free().
 */
#include "loadgen.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE_CHARS 2000

/* ---- conversations ---- */

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static int filter_txt(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return d->d_name[0] != '.' && n > 4 && strcmp(d->d_name + n - 4, ".txt") == 0;
}

/* Reads one file into v.  0, or -1 with a message on stderr (v keeps what it had read). */
static int load_one(lg_conv_t *v, const char *path)
{
    char line[8192], esc[sizeof(line) * 2];
    int lineno = 0, rc = -1;
    FILE *f = fopen(path, "r");

    if (!f) {
        fprintf(stderr, "loadgen: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        if (utf8_chars(line) > MAX_LINE_CHARS || lg_json_escape(esc, sizeof(esc), line) < 0) {
            fprintf(stderr, "loadgen: %s:%d: line over %d characters\n", path, lineno,
                    MAX_LINE_CHARS);
            goto out;
        }
        char **p = realloc(v->lines, sizeof(char *) * (size_t)(v->nlines + 1));
        if (!p) {
            fprintf(stderr, "loadgen: out of memory\n");
            goto out;
        }
        v->lines = p;
        if (!(p[v->nlines] = strdup(esc))) {
            fprintf(stderr, "loadgen: out of memory\n");
            goto out;
        }
        v->nlines++;
    }
    if (ferror(f)) {
        fprintf(stderr, "loadgen: %s: read error\n", path);
        goto out;
    }
    if (v->nlines == 0) {
        fprintf(stderr, "loadgen: %s: no customer lines\n", path);
        goto out;
    }
    rc = 0;
out:
    fclose(f);
    return rc;
}

int lg_conversations_load(const char *dir, lg_conv_t **out, int *count)
{
    struct dirent **names = NULL;
    lg_conv_t *convs = NULL;
    int n = scandir(dir, &names, filter_txt, alphasort), rc = -1;
    char path[4096];

    if (n < 0) {
        fprintf(stderr, "loadgen: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    if (n == 0) {
        fprintf(stderr, "loadgen: no conversations (*.txt) in %s\n", dir);
        goto out;
    }
    if (!(convs = calloc((size_t)n, sizeof(*convs)))) {
        fprintf(stderr, "loadgen: out of memory\n");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        snprintf(convs[i].name, sizeof(convs[i].name), "%.63s", names[i]->d_name);
        if (load_one(&convs[i], path) != 0)
            goto out;
    }
    *out = convs;
    *count = n;
    convs = NULL;
    rc = 0;
out:
    if (convs)
        lg_conversations_free(convs, n);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

void lg_conversations_free(lg_conv_t *convs, int n)
{
    if (!convs)
        return;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < convs[i].nlines; j++)
            free(convs[i].lines[j]);
        free(convs[i].lines);
    }
    free(convs);
}

/* ---- options ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen --port N --mode idle|closed|open [options]\n"
            "  --host ADDR              server address, 127.0.0.0/8 only (127.0.0.1)\n"
            "  --port N                 server port (required)\n"
            "  --path P                 WebSocket path (/chat)\n"
            "  --protocol NAME          subprotocol (redress.chat.v1)\n"
            "  --mode M                 idle: open and hold; closed: one turn in flight per\n"
            "                           conversation, next as soon as answered; open: --rate\n"
            "  --conns N                conversations held at once (100)\n"
            "  --rate R                 open loop: turns per second for this process\n"
            "  --warmup S               seconds before the measurement window (5)\n"
            "  --duration S             length of the measurement window (20)\n"
            "  --drain S                wait this long for open turns at the end (10)\n"
            "  --hold S                 idle: hold the conversations this long after go (0)\n"
            "  --conversations DIR      customer lines, one conversation per *.txt (required\n"
            "                           for closed/open)\n"
            "  --churn 0|1              start a new conversation when one runs out of lines (1)\n"
            "  --connect-concurrency K  handshakes in flight at once (200)\n"
            "  --connect-timeout S      a conversation must be ready within this (30)\n"
            "  --greeting-timeout S     wait for the bot's greeting after welcome (5)\n"
            "  --turn-timeout S         give up on a turn after this (30)\n"
            "  --wait-go                after connecting, wait for SIGUSR1 before the run\n"
            "  --wait-timeout S         longest wait for SIGUSR1 (600)\n"
            "  --max-runtime S          stop whatever the phase after this long (3600)\n"
            "  --trace                  print the frames of the first conversation on stderr\n"
            "  --source-ips N           spread sockets over source addresses 127.0.0.2 ..\n"
            "                           127.0.0.(N+1), so ephemeral ports last (16; 0 = one)\n"
            "  --ready-file PATH        written when the connect phase is over\n"
            "  --out PATH               the JSON report (default stdout)\n"
            "  --id K                   process number, part of customer ids (0)\n"
            "  --max-frame BYTES        largest server message accepted (1048576)\n");
}

static int parse_double(const char *name, const char *v, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || d < min || d > max) {
        fprintf(stderr, "loadgen: --%s: \"%s\" is not a number in [%g, %g]\n", name, v, min, max);
        return -1;
    }
    *out = d;
    return 0;
}

static int parse_int(const char *name, const char *v, int min, int max, int *out)
{
    double d;
    if (parse_double(name, v, min, max, &d) != 0)
        return -1;
    if (d != (int)d) {
        fprintf(stderr, "loadgen: --%s: \"%s\" is not an integer\n", name, v);
        return -1;
    }
    *out = (int)d;
    return 0;
}

int lg_opts_parse(lg_opts_t *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", 1, 0, 'h'},
        {"port", 1, 0, 'p'},
        {"path", 1, 0, 'P'},
        {"protocol", 1, 0, 'S'},
        {"mode", 1, 0, 'm'},
        {"conns", 1, 0, 'c'},
        {"rate", 1, 0, 'r'},
        {"warmup", 1, 0, 'w'},
        {"duration", 1, 0, 'd'},
        {"drain", 1, 0, 'D'},
        {"hold", 1, 0, 'H'},
        {"conversations", 1, 0, 'C'},
        {"churn", 1, 0, 'u'},
        {"connect-concurrency", 1, 0, 'k'},
        {"connect-timeout", 1, 0, 't'},
        {"greeting-timeout", 1, 0, 'g'},
        {"turn-timeout", 1, 0, 'T'},
        {"wait-go", 0, 0, 'G'},
        {"wait-timeout", 1, 0, 'W'},
        {"ready-file", 1, 0, 'R'},
        {"out", 1, 0, 'o'},
        {"id", 1, 0, 'i'},
        {"max-frame", 1, 0, 'F'},
        {"max-runtime", 1, 0, 'X'},
        {"source-ips", 1, 0, 's'},
        {"trace", 0, 0, 'x'},
        {"help", 0, 0, 'Z'},
        {0, 0, 0, 0},
    };
    int ch, v;
    double d;

    *o = (lg_opts_t){.host = "127.0.0.1",
                     .path = "/chat",
                     .protocol = "redress.chat.v1",
                     .mode = -1,
                     .conns = 100,
                     .warmup_s = 5,
                     .duration_s = 20,
                     .drain_s = 10,
                     .churn = 1,
                     .connect_concurrency = 200,
                     .connect_timeout_s = 30,
                     .greeting_timeout_s = 5,
                     .turn_timeout_s = 30,
                     .wait_timeout_s = 600,
                     .max_runtime_s = 3600,
                     .source_ips = 16,
                     .max_frame = 1u << 20};
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int rc = 0;
        switch (ch) {
        case 'h':
            o->host = optarg;
            break;
        case 'p':
            rc = parse_int("port", optarg, 1, 65535, &o->port);
            break;
        case 'P':
            o->path = optarg;
            break;
        case 'S':
            o->protocol = optarg;
            break;
        case 'm':
            o->mode_name = optarg;
            o->mode = !strcmp(optarg, "idle")     ? LG_MODE_IDLE
                      : !strcmp(optarg, "closed") ? LG_MODE_CLOSED
                      : !strcmp(optarg, "open")   ? LG_MODE_OPEN
                                                  : -2;
            if (o->mode == -2) {
                fprintf(stderr, "loadgen: --mode: \"%s\" is not idle, closed or open\n", optarg);
                rc = -1;
            }
            break;
        case 'c':
            rc = parse_int("conns", optarg, 1, 1000000, &o->conns);
            break;
        case 'r':
            rc = parse_double("rate", optarg, 0.001, 1e7, &o->rate);
            break;
        case 'w':
            rc = parse_double("warmup", optarg, 0, 86400, &o->warmup_s);
            break;
        case 'd':
            rc = parse_double("duration", optarg, 0.1, 86400, &o->duration_s);
            break;
        case 'D':
            rc = parse_double("drain", optarg, 0, 3600, &o->drain_s);
            break;
        case 'H':
            rc = parse_double("hold", optarg, 0, 86400, &o->hold_s);
            break;
        case 'C':
            o->conversations = optarg;
            break;
        case 'u':
            rc = parse_int("churn", optarg, 0, 1, &o->churn);
            break;
        case 'k':
            rc = parse_int("connect-concurrency", optarg, 1, 100000, &o->connect_concurrency);
            break;
        case 't':
            rc = parse_double("connect-timeout", optarg, 0.1, 3600, &o->connect_timeout_s);
            break;
        case 'g':
            rc = parse_double("greeting-timeout", optarg, 0.01, 3600, &o->greeting_timeout_s);
            break;
        case 'T':
            rc = parse_double("turn-timeout", optarg, 0.01, 3600, &o->turn_timeout_s);
            break;
        case 'G':
            o->wait_go = 1;
            break;
        case 'X':
            rc = parse_double("max-runtime", optarg, 1, 86400, &o->max_runtime_s);
            break;
        case 'x':
            o->trace = 1;
            break;
        case 's':
            rc = parse_int("source-ips", optarg, 0, 250, &o->source_ips);
            break;
        case 'W':
            rc = parse_double("wait-timeout", optarg, 0.1, 86400, &o->wait_timeout_s);
            break;
        case 'R':
            o->ready_file = optarg;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'i':
            rc = parse_int("id", optarg, 0, 1000000, &o->id);
            break;
        case 'F':
            if ((rc = parse_double("max-frame", optarg, 1024, 1 << 30, &d)) == 0)
                o->max_frame = (size_t)d;
            break;
        case 'Z':
            usage(stdout);
            return 1;
        default:
            fprintf(stderr, "loadgen: see --help\n");
            return -1;
        }
        if (rc != 0)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "loadgen: unexpected argument \"%s\"\n", argv[optind]);
        return -1;
    }
    if (o->mode < 0 || !o->port) {
        fprintf(stderr, "loadgen: --mode and --port are required (see --help)\n");
        return -1;
    }
    if (o->mode == LG_MODE_OPEN && o->rate <= 0) {
        fprintf(stderr, "loadgen: --mode open needs --rate\n");
        return -1;
    }
    if (o->mode != LG_MODE_IDLE && !o->conversations) {
        fprintf(stderr, "loadgen: --mode %s needs --conversations DIR\n", o->mode_name);
        return -1;
    }
    if (strncmp(o->host, "127.", 4) != 0) {
        fprintf(stderr, "loadgen: --host %s: only 127.0.0.0/8 may be loaded\n", o->host);
        return -1;
    }
    v = (int)strlen(o->path);
    if (v == 0 || o->path[0] != '/' || strpbrk(o->path, " \r\n") ||
        strpbrk(o->protocol, " \r\n,") || !o->protocol[0]) {
        fprintf(stderr, "loadgen: --path must start with / and neither it nor --protocol may "
                        "hold spaces or line breaks\n");
        return -1;
    }
    return 0;
}
