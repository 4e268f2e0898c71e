/*
 * complaint_sla.c - business hours and SLA deadlines (complaint_sla.h).
 *
 * A policy is the defaults plus rules keyed by category prefix and severity; times() walks the
 * rules from least to most specific (prefix length, then severity given) and lets each set
 * the fields it names.  Business time: add() walks day by day through the business windows of
 * the local calendar (UTC + utc_offset_min), so a deadline given at 20:50 with 30 minutes to go
 * and hours 09:00-21:00 falls at 09:20 the next business day.
 *
 * rules/sla.json:
 *   {"business_hours": {"days": [1,2,3,4,5,6,0], "start": "09:00", "end": "21:00",
 *                       "utc_offset_min": 480},
 *    "near_breach": 0.8, "close_after_h": 168, "followup_pending_h": 72,
 *    "default": {"ack_min": 30, "answer_h": 48, "resolve_h": 120},
 *    "rules": [{"category": "bank", "severity": 3, "answer_h": 12}, ...]}
 */
#include "complaint_sla.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void complaint_sla_defaults(sla_policy_t *p)
{
    memset(p, 0, sizeof(*p));
    p->utc_offset_min = 480;
    p->days = 0x7f;
    p->start_min = 9 * 60;
    p->end_min = 21 * 60;
    p->near_breach = 0.8;
    p->close_after_h = 168;
    p->followup_pending_h = 72;
    p->base = (sla_times_t){30, 48, 120};
    p->nrules = 3;
    p->rules[0] = (sla_rule_t){"", 3, {-1, 24, 72}};
    p->rules[1] = (sla_rule_t){"", 2, {-1, 48, 120}};
    p->rules[2] = (sla_rule_t){"", 1, {-1, 72, 168}};
}

static int parse_hhmm(const char *s, int *out, int allow_24)
{
    int h, m;
    char tail;
    if (!s || sscanf(s, "%d:%d%c", &h, &m, &tail) != 2 || h < 0 || m < 0 || m > 59 ||
        h > (allow_24 ? 24 : 23) || (h == 24 && m != 0))
        return -1;
    *out = h * 60 + m;
    return 0;
}

/* Reads an integer field into *out when present: 0 ok/absent, -1 bad. */
static int int_field(const cJSON *o, const char *key, int lo, int hi, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return -1;
    *out = (int)v->valuedouble;
    return 0;
}

static int times_fields(const cJSON *o, sla_times_t *t, const char **bad)
{
    if (int_field(o, "ack_min", 0, 100000, &t->ack_min) != 0)
        return *bad = "ack_min", -1;
    if (int_field(o, "answer_h", 0, 10000, &t->answer_h) != 0)
        return *bad = "answer_h", -1;
    if (int_field(o, "resolve_h", 0, 10000, &t->resolve_h) != 0)
        return *bad = "resolve_h", -1;
    return 0;
}

int complaint_sla_parse(const char *json, const char *name, sla_policy_t *out, char *err,
                        size_t errlen)
{
    sla_policy_t p;
    const char *bad = NULL;
    cJSON *o = cJSON_Parse(json);
    const cJSON *v, *e;

    complaint_sla_defaults(&p);
    if (!cJSON_IsObject(o)) {
        snprintf(err, errlen, "%s: not a JSON object", name);
        goto fail;
    }
    const cJSON *bh = cJSON_GetObjectItemCaseSensitive(o, "business_hours");
    if (bh) {
        if ((v = cJSON_GetObjectItemCaseSensitive(bh, "days"))) {
            if (!cJSON_IsArray(v)) {
                bad = "business_hours.days";
                goto bad_field;
            }
            p.days = 0;
            cJSON_ArrayForEach(e, v)
            {
                if (!cJSON_IsNumber(e) || e->valueint < 0 || e->valueint > 7) {
                    bad = "business_hours.days (0 or 7 = Sunday, 1 = Monday .. 6 = Saturday)";
                    goto bad_field;
                }
                p.days |= 1 << (e->valueint % 7);
            }
            if (!p.days) {
                bad = "business_hours.days (at least one day)";
                goto bad_field;
            }
        }
        v = cJSON_GetObjectItemCaseSensitive(bh, "start");
        if (v && (!cJSON_IsString(v) || parse_hhmm(v->valuestring, &p.start_min, 0) != 0)) {
            bad = "business_hours.start (HH:MM)";
            goto bad_field;
        }
        v = cJSON_GetObjectItemCaseSensitive(bh, "end");
        if (v && (!cJSON_IsString(v) || parse_hhmm(v->valuestring, &p.end_min, 1) != 0)) {
            bad = "business_hours.end (HH:MM, up to 24:00)";
            goto bad_field;
        }
        if (p.end_min <= p.start_min) {
            bad = "business_hours (end must be after start)";
            goto bad_field;
        }
        if (int_field(bh, "utc_offset_min", -720, 840, &p.utc_offset_min) != 0) {
            bad = "business_hours.utc_offset_min";
            goto bad_field;
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(o, "near_breach");
    if (v) {
        if (!cJSON_IsNumber(v) || v->valuedouble <= 0 || v->valuedouble >= 1) {
            bad = "near_breach (between 0 and 1)";
            goto bad_field;
        }
        p.near_breach = v->valuedouble;
    }
    if (int_field(o, "close_after_h", 1, 10000, &p.close_after_h) != 0) {
        bad = "close_after_h";
        goto bad_field;
    }
    if (int_field(o, "followup_pending_h", 1, 10000, &p.followup_pending_h) != 0) {
        bad = "followup_pending_h";
        goto bad_field;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "default")) &&
        (!cJSON_IsObject(v) || times_fields(v, &p.base, &bad) != 0)) {
        bad = bad ? bad : "default";
        goto bad_field;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "rules"))) {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > SLA_MAX_RULES) {
            bad = "rules (an array of at most 64 rules)";
            goto bad_field;
        }
        p.nrules = 0;
        cJSON_ArrayForEach(e, v)
        {
            sla_rule_t *r = &p.rules[p.nrules];
            memset(r, 0, sizeof(*r));
            r->t = (sla_times_t){-1, -1, -1};
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "category");
            if (!cJSON_IsObject(e) ||
                (c && (!cJSON_IsString(c) || strlen(c->valuestring) >= sizeof(r->prefix)))) {
                snprintf(err, errlen, "%s: rules[%d]: category must be a string", name, p.nrules);
                goto fail;
            }
            if (c)
                snprintf(r->prefix, sizeof(r->prefix), "%s", c->valuestring);
            if (int_field(e, "severity", 1, 3, &r->severity) != 0 ||
                times_fields(e, &r->t, &bad) != 0) {
                snprintf(err, errlen, "%s: rules[%d]: bad %s", name, p.nrules,
                         bad ? bad : "severity (1..3)");
                goto fail;
            }
            p.nrules++;
        }
    }
    cJSON_Delete(o);
    *out = p;
    return 0;
bad_field:
    snprintf(err, errlen, "%s: bad %s", name, bad);
fail:
    cJSON_Delete(o);
    return -1;
}

int complaint_sla_load(const char *path, sla_policy_t *p, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        complaint_sla_defaults(p);
        return 0;
    }
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n < (1 << 20) &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
        fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = '\0';
        fclose(f);
        int rc = complaint_sla_parse(buf, path, p, err, errlen);
        free(buf);
        return rc;
    }
    fclose(f);
    free(buf);
    snprintf(err, errlen, "%s: cannot read (or larger than 1 MiB)", path);
    return -1;
}

static int prefix_matches(const char *prefix, const char *category)
{
    size_t n = strlen(prefix);
    if (n == 0)
        return 1;
    return strncmp(prefix, category, n) == 0 && (category[n] == '\0' || category[n] == '.');
}

sla_times_t complaint_sla_times(const sla_policy_t *p, const char *category, int severity)
{
    sla_times_t t = p->base;
    /* specificity: prefix length * 4 + (severity given); apply in increasing order */
    int done[SLA_MAX_RULES] = {0};
    for (int pass = 0; pass < p->nrules; pass++) {
        int best = -1, best_spec = 0;
        for (int i = 0; i < p->nrules; i++) {
            const sla_rule_t *r = &p->rules[i];
            if (done[i] || !prefix_matches(r->prefix, category ? category : "") ||
                (r->severity && r->severity != severity))
                continue;
            int spec = (int)strlen(r->prefix) * 4 + (r->severity ? 1 : 0);
            if (best < 0 || spec < best_spec) {
                best = i;
                best_spec = spec;
            }
        }
        if (best < 0)
            break;
        done[best] = 1;
        const sla_times_t *rt = &p->rules[best].t;
        if (rt->ack_min >= 0)
            t.ack_min = rt->ack_min;
        if (rt->answer_h >= 0)
            t.answer_h = rt->answer_h;
        if (rt->resolve_h >= 0)
            t.resolve_h = rt->resolve_h;
    }
    return t;
}

double complaint_sla_add(const sla_policy_t *p, double t, double minutes)
{
    if (minutes <= 0)
        return t;
    double off = p->utc_offset_min * 60.0;
    double local = t + off;
    double day0 = floor(local / 86400.0) * 86400.0; /* local midnight */
    double left = minutes * 60.0;
    for (int guard = 0; guard < 3700; guard++) {                 /* ~10 years of days */
        int wday = (int)(((long long)(day0 / 86400.0) + 4) % 7); /* 1970-01-01 was a Thursday */
        if (wday < 0)
            wday += 7;
        if (p->days & (1 << wday)) {
            double open = day0 + p->start_min * 60.0, close = day0 + p->end_min * 60.0;
            double from = local > open ? local : open;
            if (from < close) {
                if (from + left <= close)
                    return from + left - off;
                left -= close - from;
            }
        }
        day0 += 86400.0;
        local = day0;
    }
    return t + minutes * 60.0; /* unreachable with at least one business day */
}
