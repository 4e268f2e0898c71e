/*
 * schema.h - versioned migrations for a module's own tables in the shared SQLite file.
 *
 * Each module (agent tables, webhooks, ...) keeps its version in a table of its own,
 * <module>_meta(name, value) with the row schema_version, and lists its steps in an array:
 * steps[i] takes the tables from version i to i + 1.  Add steps at the end; never edit a
 * shipped one.
 */
#ifndef REDRESS_SCHEMA_H
#define REDRESS_SCHEMA_H

#include <sqlite3.h>
#include <stddef.h>

/*
 * Applies the steps above the stored version, all in one transaction (a savepoint when db is
 * already in one), so a failed step leaves nothing behind.  Safe to run from two connections
 * (BEGIN IMMEDIATE).  Returns 0, or -1 with "<module>_migrate: ..." in err: a step's SQL error
 * ("step N: ..."), a stored version newer than nsteps ("... newer than this program's ..."),
 * or an unreadable one ("bad schema_version ...").
 */
int schema_migrate(sqlite3 *db, const char *module, const char *const *steps, int nsteps, char *err,
                   size_t errlen);

#endif
