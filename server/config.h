/*
 * config.h - redress settings.
 *
 * One table in config.c lists every setting {name, type, default, field, min, max}.
 * A config_t is filled from the embedded defaults, then from an optional file
 * (`key = value` lines, `#` comments), then from command-line flags
 * (`--key=value` or `--key value`).  Every error names the bad key and, for a
 * file, the line.
 */
#ifndef REDRESS_CONFIG_H
#define REDRESS_CONFIG_H

#include <stddef.h>

typedef struct config {
    /* network */
    char *listen_host;   /* listen.host */
    int listen_port;     /* listen.port */
    int max_connections; /* limits.max_connections */
    /* paths */
    char *data_dir;    /* data.dir: created at start-up */
    char *db_path;     /* data.db: relative paths are resolved against data.dir */
    char *web_root;    /* web.root: static files served over HTTP */
    char *rules_dir;   /* rules.dir: Lua flows */
    char *kb_seed;     /* kb.seed: JSON Lines imported into an empty knowledge base ("" = none) */
    char *kb_synonyms; /* kb.synonyms: synonym list file for kb search ("" = none) */
    /* chat limits */
    int max_message_bytes; /* limits.max_message_bytes: larger frames close with 1009 */
    int max_text_chars;    /* limits.max_text_chars: longest customer message text, in characters */
    int rate_per_sec;      /* limits.rate_per_sec: sustained client frames per second */
    int rate_burst;        /* limits.rate_burst: token bucket size */
    int idle_timeout_s;   /* limits.idle_timeout_s: no frame from the client for this long closes */
    int ping_interval_s;  /* limits.ping_interval_s: server ping period */
    int hello_timeout_s;  /* limits.hello_timeout_s: a socket must say hello within this time */
    int session_memory_s; /* limits.session_memory_s: keep a detached conversation in memory */
    int flow_idle_s; /* limits.flow_idle_s: free an idle conversation's Lua state; a detached or
                      * handed-off one's at once (0 = never) */
    char *allowed_origins; /* web.allowed_origins: browser Origins allowed to open chat sockets */
    int mask_transcripts;  /* privacy.mask_transcripts: mask ID/card/phone numbers in stored text */
    int api_trust_loopback; /* api.trust_loopback: loopback requests without a session are the
                               operator */
    /* storage */
    char *synchronous;    /* store.synchronous: "normal" (survives process crash) or "full" */
    int batch_max;        /* store.batch_max: most operations in one transaction */
    int group_commit_us;  /* store.group_commit_us: how long a write may wait to share a commit */
    int checkpoint_pages; /* store.checkpoint_pages: WAL size that wakes the checkpointer */
    char *clock_start;    /* flow.clock_start: "YYYY-MM-DD HH:MM" Beijing time the flows' clock
                             starts at (tests, demos); "" = the real time */
    /* Lua */
    int lua_max_instructions; /* flow.max_instructions: per resume of a flow */
    int lua_max_memory_mb;    /* flow.max_memory_mb: whole VM */
    int lua_idle_gc;          /* flow.idle_gc: collect in the loop's idle time (flow_gc.c) */
    /* staff accounts and logins (auth.c) */
    int auth_cookie_secure;    /* auth.cookie_secure: 1 = served over https, cookies get Secure */
    int auth_session_ttl_s;    /* auth.session_ttl_s: a login lasts at most this long */
    int auth_session_idle_s;   /* auth.session_idle_s: ... and ends after this long unused */
    int auth_max_failures;     /* auth.max_failures: failed logins per username in the window */
    int auth_max_failures_ip;  /* auth.max_failures_ip: ... per client address (0 = off) */
    int auth_failure_window_s; /* auth.failure_window_s: the limiter's window */
    /* hand-off to human agents (agent.c) */
    char *agent_hours;        /* agent.hours: "HH:MM-HH:MM" working hours, local time */
    int agent_utc_offset_min; /* agent.utc_offset_min: the company's time zone */
    int agent_handle_s;       /* agent.handle_s: assumed handling time per chat */
    int agent_max_wait_s;     /* agent.max_wait_s: queued longer becomes a call-back */
    int agent_callback_s;     /* agent.callback_s: call-back promised this long after now */
    int agent_queue_push_ms;  /* agent.queue_push_ms: queue snapshots at most this often */
    /* logging */
    char *log_level;   /* log.level: error, warn, notice, info, debug */
    char *config_file; /* the file loaded, if any (not a setting) */
} config_t;

/* Fills c with the embedded defaults.  Returns 0, or -1 when out of memory. */
int config_defaults(config_t *c);

/* Sets one setting by name from text.  Returns 0; on error -1 with a message naming the key. */
int config_set(config_t *c, const char *key, const char *value, char *err, size_t errlen);

/* Reads `key = value` lines from path.  Returns 0; on error -1 with "path:line: message". */
int config_load_file(config_t *c, const char *path, char *err, size_t errlen);

/*
 * Parses flags from argv[0..argc).  `--config FILE` is loaded where it stands; `--key=value`
 * and `--key value` set a setting.  Arguments that are not flags are moved, in order, to the
 * front of argv and their count stored in *rest.  Returns 0, or -1 with a message.
 */
int config_parse_args(config_t *c, int argc, char **argv, int *rest, char *err, size_t errlen);

/* Resolves db_path against data_dir into out.  Returns 0, or -1 when it does not fit. */
int config_db_path(const config_t *c, char *out, size_t outlen);

/* Writes the list of settings with their defaults to a FILE* (for --help). */
void config_print_help(void *file);

/* Frees every string the config owns; c may then be filled again. */
void config_free(config_t *c);

#endif
