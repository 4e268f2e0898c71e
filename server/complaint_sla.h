/*
 * complaint_sla.h - service-level policies for complaint records: business hours and the
 * deadlines per category and severity, read from rules/sla.json (docs/complaints.md).
 *
 * Pure code: no I/O except complaint_sla_load(), no clock (every function takes the time).
 */
#ifndef REDRESS_COMPLAINT_SLA_H
#define REDRESS_COMPLAINT_SLA_H

#include <stddef.h>

#define SLA_MAX_RULES 64

typedef struct sla_times {
    int ack_min;   /* acknowledge within, business minutes (0 = no deadline) */
    int answer_h;  /* first answer (solution offered or an agent's reply) within, business hours */
    int resolve_h; /* resolution within, business hours */
} sla_times_t;

typedef struct sla_rule {
    char prefix[64]; /* category slug or prefix ("bank", "bank.fee"); "" = any */
    int severity;    /* 1..3, 0 = any */
    sla_times_t t;   /* fields < 0 inherit from less specific rules */
} sla_rule_t;

typedef struct sla_policy {
    int utc_offset_min;
    int days;               /* bit d (0 = Sunday .. 6 = Saturday) set: a business day */
    int start_min, end_min; /* business hours of a business day, minutes of the local day */
    double near_breach;     /* share of a deadline's span after which it is "near breach" */
    int close_after_h;      /* a resolved record closes this long after (wall hours) */
    int followup_pending_h; /* a follow-up unanswered this long is listed for agents */
    sla_times_t base;       /* defaults */
    int nrules;
    sla_rule_t rules[SLA_MAX_RULES];
} sla_policy_t;

/* The embedded defaults (every day 09:00-21:00 UTC+8; ack 30 min; answer 24/48/72 h for
 * severity 3/2/1; resolve 72/120/168 h). */
void complaint_sla_defaults(sla_policy_t *p);

/* Reads path (JSON, see docs/complaints.md).  Returns 0 and *p, or -1 with "path: message" in
 * err (p unchanged).  A missing file gives the defaults and 0. */
int complaint_sla_load(const char *path, sla_policy_t *p, char *err, size_t errlen);

/* Parses JSON text (the file's content); name is used in messages. */
int complaint_sla_parse(const char *json, const char *name, sla_policy_t *p, char *err,
                        size_t errlen);

/* The deadlines of a record of this category and severity (most specific rule wins, field by
 * field). */
sla_times_t complaint_sla_times(const sla_policy_t *p, const char *category, int severity);

/* t plus `minutes` business minutes (the result is inside business hours, or t itself when
 * minutes <= 0). */
double complaint_sla_add(const sla_policy_t *p, double t, double minutes);

#endif
