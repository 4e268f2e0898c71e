/*
 * log.h - leveled logging to stderr.
 *
 * One global level, set once at start-up from log.level.  Lines are
 * "2026-11-26T15:04:05.123Z LEVEL module: message".  Never logs message text
 * at levels above debug.
 */
#ifndef REDRESS_LOG_H
#define REDRESS_LOG_H

typedef enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_NOTICE, LOG_INFO, LOG_DEBUG } log_level_t;

/* Sets the level by name ("error".."debug").  Returns 0, or -1 for an unknown name. */
int log_set_level(const char *name);
int log_enabled(log_level_t level);
void log_write(log_level_t level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(mod, ...) log_write(LOG_ERROR, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_write(LOG_WARN, mod, __VA_ARGS__)
#define log_notice(mod, ...) log_write(LOG_NOTICE, mod, __VA_ARGS__)
#define log_info(mod, ...) log_write(LOG_INFO, mod, __VA_ARGS__)
#define log_debug(mod, ...) log_write(LOG_DEBUG, mod, __VA_ARGS__)

#endif
