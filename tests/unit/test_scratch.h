/*
 * test_scratch.h - one scratch directory per test program, for the unit tests that drive a
 * subsystem over a real SQLite file (test_agent_store.c, test_auth.c, test_webhook.c);
 * header-only.
 *
 * main() calls scratch_make() first and scratch_remove() last; each test's rig calls
 * scratch_config() for a configuration whose data.dir is its own directory below it.
 */
#ifndef TEST_SCRATCH_H
#define TEST_SCRATCH_H

#include "config.h"

#include <stdio.h>
#include <stdlib.h>

static char tmpdir[] = "/tmp/redress-unit-XXXXXX";

/* Creates tmpdir.  0, or -1 (errno set). */
static int scratch_make(void)
{
    return mkdtemp(tmpdir) ? 0 : -1;
}

/* Removes tmpdir and everything in it. */
static void scratch_remove(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* cfg gets the defaults with data.dir = tmpdir/name (also written to dir).  0, or -1 with err. */
static int scratch_config(config_t *cfg, const char *name, char *dir, size_t dirlen, char *err,
                          size_t errlen)
{
    snprintf(dir, dirlen, "%s/%s", tmpdir, name);
    return config_defaults(cfg) != 0 || config_set(cfg, "data.dir", dir, err, errlen) != 0 ? -1 : 0;
}

#endif
