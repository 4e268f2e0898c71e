/*
 * test_json_print.c - json_print() against cJSON_PrintUnformatted, the printer it replaces on
 * the per-turn paths (server/json_print.c).
 *
 * Fixed trees cover every type, the string escapes, UTF-8, empty containers and the number
 * forms (integers, negatives, -0, 2^31..2^53, fractions, 17-digit timestamps, tiny and huge
 * magnitudes, NaN and infinity).  Then 20,000 random trees: the text must equal cJSON's
 * wherever cJSON printed an exact number, and parse back to a tree equal to the original
 * (numbers bit-exact) always.
 */
#include "check.h"
#include "json_print.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Same text as cJSON's printer. */
static int same_as_cjson(const cJSON *j)
{
    char *a = json_print(j), *b = cJSON_PrintUnformatted(j);
    int same = a && b && strcmp(a, b) == 0;
    if (!same)
        fprintf(stderr, "json_print: %s\ncJSON:      %s\n", a ? a : "(null)", b ? b : "(null)");
    free(a);
    free(b);
    return same;
}

/* Every number in a (parsed back) has exactly the bits of the one in b. */
static int exact(const cJSON *a, const cJSON *b)
{
    if ((a->type & 0xFF) != (b->type & 0xFF))
        return 0;
    if (cJSON_IsNumber(a))
        return a->valuedouble == b->valuedouble || (isnan(b->valuedouble) && cJSON_IsNull(a));
    if (cJSON_IsString(a))
        return strcmp(a->valuestring, b->valuestring) == 0;
    const cJSON *x = a->child, *y = b->child;
    for (; x && y; x = x->next, y = y->next)
        if ((x->string || y->string) &&
            (!x->string || !y->string || strcmp(x->string, y->string) != 0))
            return 0;
        else if (!exact(x, y))
            return 0;
    return !x && !y;
}

static int round_trips(const cJSON *j)
{
    char *s = json_print(j);
    cJSON *back = s ? cJSON_Parse(s) : NULL;
    int ok = back && exact(back, j);
    if (!ok)
        fprintf(stderr, "does not round-trip: %s\n", s ? s : "(null)");
    cJSON_Delete(back);
    free(s);
    return ok;
}

static void test_scalars(void)
{
    static const double numbers[] = {0,
                                     -0.0,
                                     1,
                                     -1,
                                     42,
                                     2147483647,
                                     2147483648.0,
                                     -2147483649.0,
                                     3000000000.0,
                                     1e15 - 1,
                                     0.5,
                                     -0.25,
                                     0.1,
                                     1.0 / 3,
                                     3.14159,
                                     1795771932.1674521,
                                     1795771931.959547,
                                     1e-7,
                                     6.02e23,
                                     1e300,
                                     -1e-300,
                                     5e-324};
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
        cJSON *n = cJSON_CreateNumber(numbers[i]);
        CHECK(same_as_cjson(n));
        CHECK(round_trips(n));
        cJSON_Delete(n);
    }
    /* not JSON numbers: null, as cJSON prints them */
    cJSON *nan = cJSON_CreateNumber(NAN), *inf = cJSON_CreateNumber(-INFINITY);
    CHECK(same_as_cjson(nan));
    CHECK(same_as_cjson(inf));
    cJSON_Delete(nan);
    cJSON_Delete(inf);
    /* integers past 10^15: exact here, where cJSON keeps 15 digits within an epsilon */
    cJSON *big = cJSON_CreateNumber(9007199254740991.0);
    char *s = json_print(big);
    CHECK(s && strcmp(s, "9007199254740991") == 0);
    free(s);
    cJSON_Delete(big);

    static const char *strings[] = {"",
                                    "plain",
                                    "quote \" backslash \\ slash /",
                                    "\b\f\n\r\t",
                                    "\x01\x1f\x7f",
                                    "我的退款没到账，订单号2024030512345",
                                    "emoji \xF0\x9F\x98\x80 and \xE3\x80\x80 ideographic space"};
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        cJSON *t = cJSON_CreateString(strings[i]);
        CHECK(same_as_cjson(t));
        CHECK(round_trips(t));
        cJSON_Delete(t);
    }
    cJSON *lits[] = {cJSON_CreateNull(),   cJSON_CreateTrue(),  cJSON_CreateFalse(),
                     cJSON_CreateObject(), cJSON_CreateArray(), cJSON_CreateRaw("{\"raw\":1}")};
    for (size_t i = 0; i < sizeof(lits) / sizeof(lits[0]); i++) {
        CHECK(same_as_cjson(lits[i]));
        cJSON_Delete(lits[i]);
    }
    CHECK(json_print(NULL) == NULL);
}

/* Numbers of whole milliseconds (the flows' clock) take a path of their own below 10^12: the
 * same text as cJSON's, and the same double back.  Random ones at every magnitude, and the
 * edges: the largest below 10^12, the smallest, trailing zeros dropped, negatives. */
static void test_millisecond_numbers(void)
{
    static const double edges[] = {999999999999.999,
                                   -999999999999.999,
                                   999999999999.99,
                                   1e12 - 0.5,
                                   1e12 + 0.5,
                                   0.001,
                                   -0.001,
                                   0.01,
                                   0.1,
                                   0.5,
                                   1.25,
                                   1795826760.136,
                                   1795826760.1,
                                   1795826760.13,
                                   123456789012.345};
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        cJSON *n = cJSON_CreateNumber(edges[i]);
        CHECK(same_as_cjson(n));
        CHECK(round_trips(n));
        cJSON_Delete(n);
    }
    srand(12345);
    int bad = 0;
    for (int i = 0; i < 200000 && bad < 5; i++) {
        /* k up to about 10^15 (so d up to 10^12 and a little past it), spread over magnitudes */
        double scale = pow(10.0, rand() % 16);
        double k = floor((double)rand() / RAND_MAX * scale);
        double d = (rand() & 1 ? -k : k) / 1000.0;
        cJSON *n = cJSON_CreateNumber(d);
        if (!same_as_cjson(n) || !round_trips(n))
            bad++;
        cJSON_Delete(n);
    }
    CHECK(bad == 0);
    /* the flows' clock itself: whole milliseconds of the current epoch */
    char *s;
    cJSON *t = cJSON_CreateNumber(1795826760136.0 / 1000.0);
    CHECK((s = json_print(t)) && strcmp(s, "1795826760.136") == 0);
    free(s);
    cJSON_Delete(t);
}

/* A saved flow state as flow_run.c builds it (shape of a real one from a benchmark run). */
static void test_flow_state(void)
{
    static const char doc[] =
        "{\"v\":1,\"flow\":\"complaint\",\"status\":\"waiting\",\"step\":\"confirm\","
        "\"escalated\":true,\"turn\":7,\"next_timer\":0,\"timers\":[],\"state\":{\"category\":"
        "\"ecom.quality\",\"complaint\":\"收到后发现和专柜买的味道不一样，我怀疑是假货。\","
        "\"mood\":{\"change\":10,\"level\":\"不满\",\"recent\":[\"你们平台是怎么审核的?\"],"
        "\"trend\":[0,0,0,25,13,10,20]},\"skipped\":{\"order_id\":true},\"slots\":{}},"
        "\"escalations\":[{\"reason\":\"threat\",\"priority\":3,\"turn\":7,"
        "\"at\":1795771933.162251,\"by\":\"rule\",\"group\":\"senior\"}],\"log\":[{\"k\":\"in\","
        "\"t\":1795771932.1674521,\"x\":\"外包装的批号在品牌官网上查不到。\"},{\"k\":\"in\","
        "\"t\":1795771932.358084,\"x\":\"line\\nbreak \\\"quoted\\\"\"}]}";
    cJSON *j = cJSON_Parse(doc);
    CHECK(j != NULL);
    char *s = json_print(j);
    CHECK(s && strcmp(s, doc) == 0);
    CHECK(same_as_cjson(j));
    free(s);
    cJSON_Delete(j);
}

static uint64_t rng = 88172645463325252ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double random_number(void)
{
    switch (next() % 6) {
    case 0:
        return (double)(int64_t)(next() % 2000001) - 1000000;
    case 1:
        return (double)(next() % 100000) / 100.0;
    case 2:
        return 1.7e9 + (double)(next() % 100000000) / 1e7; /* a timestamp */
    case 3:
        return ldexp((double)(next() >> 11), (int)(next() % 200) - 100);
    case 4:
        return (double)(int64_t)(next() >> 12) * ((next() & 1) ? -1 : 1);
    default: {
        uint64_t bits = next();
        double d;
        memcpy(&d, &bits, sizeof(d));
        return isfinite(d) ? d : 0;
    }
    }
}

static char *random_string(char *buf, size_t cap)
{
    static const char *pieces[] = {"a",
                                   "Z",
                                   "9",
                                   " ",
                                   "\"",
                                   "\\",
                                   "\n",
                                   "\t",
                                   "\x01",
                                   "\x1f",
                                   "/",
                                   "订单",
                                   "退款",
                                   "\xE3\x80\x80",
                                   "\xF0\x9F\x98\x80",
                                   "?"};
    size_t n = next() % 12, len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *p = pieces[next() % (sizeof(pieces) / sizeof(pieces[0]))];
        if (len + strlen(p) + 1 > cap)
            break;
        strcpy(buf + len, p);
        len += strlen(p);
    }
    return buf;
}

static cJSON *random_tree(int depth)
{
    char s[128], k[128];
    unsigned kind = (unsigned)(next() % (depth < 4 ? 7 : 5));
    switch (kind) {
    case 0:
        return cJSON_CreateNull();
    case 1:
        return cJSON_CreateBool(next() & 1);
    case 2:
    case 3:
        return cJSON_CreateNumber(random_number());
    case 4:
        return cJSON_CreateString(random_string(s, sizeof(s)));
    case 5: {
        cJSON *a = cJSON_CreateArray();
        for (int i = (int)(next() % 5); i > 0; i--)
            cJSON_AddItemToArray(a, random_tree(depth + 1));
        return a;
    }
    default: {
        cJSON *o = cJSON_CreateObject();
        for (int i = (int)(next() % 5); i > 0; i--)
            cJSON_AddItemToObject(o, random_string(k, sizeof(k)), random_tree(depth + 1));
        return o;
    }
    }
}

/* 1 when cJSON would print every number of j exactly (its 15-digit form reads back as the same
 * double, or it needed 17 digits anyway): then the texts must be equal. */
static int cjson_exact(const cJSON *j)
{
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        char tmp[32];
        if (d == (double)j->valueint || d == floor(d))
            return fabs(d) < 1e15;
        snprintf(tmp, sizeof(tmp), "%1.15g", d);
        double back = strtod(tmp, NULL);
        return back == d || fabs(back - d) > fmax(fabs(back), fabs(d)) * 2.220446049250313e-16;
    }
    for (const cJSON *c = j->child; c; c = c->next)
        if (!cjson_exact(c))
            return 0;
    return 1;
}

static void test_random_trees(void)
{
    int compared = 0, failed = 0;
    for (int i = 0; i < 20000 && failed < 5; i++) {
        cJSON *j = random_tree(0);
        if (!round_trips(j))
            failed++;
        if (cjson_exact(j)) {
            compared++;
            if (!same_as_cjson(j))
                failed++;
        }
        cJSON_Delete(j);
    }
    printf("random trees: %d compared with cJSON's text, %d failures\n", compared, failed);
    CHECK(failed == 0);
    CHECK(compared > 10000);
}

static void test_deep_tree(void)
{
    cJSON *root = cJSON_CreateArray(), *at = root;
    for (int i = 0; i < 999; i++) {
        cJSON *a = cJSON_CreateArray();
        cJSON_AddItemToArray(at, a);
        at = a;
    }
    char *s = json_print(root);
    CHECK(s && strlen(s) == 2000);
    free(s);
    cJSON_AddItemToArray(at, cJSON_CreateArray()); /* 1001 arrays: deeper than cJSON parses */
    CHECK(json_print(root) == NULL);
    cJSON_Delete(root);
}

int main(void)
{
    RUN(test_scalars);
    RUN(test_millisecond_numbers);
    RUN(test_flow_state);
    RUN(test_random_trees);
    RUN(test_deep_tree);
    return check_summary();
}
