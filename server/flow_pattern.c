/*
 * flow_pattern.c - Lua pattern matching that can be stopped.
 *
 * Why: Lua's own string.find/match/gmatch/gsub run a backtracking matcher in C, where the
 * instruction-count hook never fires, so a pattern such as string.rep("a", 1e5) matched against
 * "(a*)*b"-like shapes can pin the loop thread for hours.  These are compatible re-implementations
 * of the four functions (Lua 5.4 pattern syntax and results: classes %a %c %d %g %l %p %s %u %w
 * %x and complements, sets, quantifiers * + - ?, anchors ^ $, captures and position captures,
 * back-references %1-%9, %b, %f, gsub replacement strings/tables/functions, gmatch's init) whose
 * every matching step is counted: each FLOW_PATTERN_STEPS steps spend one instruction of the
 * current call's budget via flow_charge(), which stops the flow when the budget is spent.
 * Recursion depth is bounded (MAXDEPTH), as in Lua.
 *
 * First bytes.  An unanchored search tries the matcher at every position of the subject, and the
 * shipped rules run some 50 patterns such as "%f[%d](%d%d?)月" over each message, which is
 * mostly Chinese text without a digit: that was 7 % of the loop thread at saturation.  When
 * the pattern's first item must consume a byte (a character, a class or a set without * ? -,
 * possibly inside captures, or a frontier), first_bytes() lists the bytes a match can start
 * with, and find, match, gmatch and gsub skip the other positions with a table lookup (the
 * end of the subject is always tried).  Skipped bytes are charged like a plain find's.  The
 * tables of recent first items are kept (fb_cache).
 *
 * Lifetimes: a mstate lives on the C stack of one call; its capture pointers point into the
 * subject string, which is an argument (or upvalue, for gmatch) and so stays alive.  Errors are
 * raised with luaL_error (longjmp) - nothing here holds a resource that would leak.
 */
#include "flow_internal.h"

#include <ctype.h>
#include <string.h>

#define MAXCAPTURES 32
#define MAXDEPTH 200
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
#define CHARGE_EVERY 1024
#define uchar(c) ((unsigned char)(c))

typedef struct mstate {
    const char *src_init, *src_end, *p_end;
    lua_State *L;
    int depth;
    int level;
    long steps;
    struct {
        const char *init;
        ptrdiff_t len;
    } capture[MAXCAPTURES];
} mstate;

static void tick(mstate *ms)
{
    if (++ms->steps >= CHARGE_EVERY) {
        flow_charge(ms->L, ms->steps / FLOW_PATTERN_STEPS);
        ms->steps = 0;
    }
}

static void settle(mstate *ms)
{
    flow_charge(ms->L, ms->steps / FLOW_PATTERN_STEPS);
    ms->steps = 0;
}

static void ms_init(mstate *ms, lua_State *L, const char *s, size_t ls, const char *p, size_t lp)
{
    ms->L = L;
    ms->src_init = s;
    ms->src_end = s + ls;
    ms->p_end = p + lp;
    ms->steps = 0;
    ms->level = 0;
    ms->depth = MAXDEPTH;
}

static void ms_reset(mstate *ms)
{
    ms->level = 0;
    ms->depth = MAXDEPTH;
}

static const char *match(mstate *ms, const char *s, const char *p);

/* The closing ']' of the set at p (p at '['), or NULL when the pattern ends first. */
static const char *set_close(const char *p, const char *pe)
{
    p++;
    if (p < pe && *p == '^')
        p++;
    do { /* the first character of a set is literal, even ']' */
        if (p >= pe)
            return NULL;
        if (*p++ == '%' && p < pe)
            p++;
    } while (p < pe && *p != ']');
    return p < pe ? p : NULL;
}

/* End of the single-character class starting at p. */
static const char *class_end(mstate *ms, const char *p)
{
    switch (*p++) {
    case '%':
        if (p == ms->p_end)
            luaL_error(ms->L, "malformed pattern (ends with '%%')");
        return p + 1;
    case '[': {
        const char *close = set_close(p - 1, ms->p_end);
        if (!close)
            luaL_error(ms->L, "malformed pattern (missing ']')");
        return close + 1;
    }
    default:
        return p;
    }
}

static int match_class(int c, int cl)
{
    int res;
    switch (tolower(cl)) {
    case 'a':
        res = isalpha(c);
        break;
    case 'c':
        res = iscntrl(c);
        break;
    case 'd':
        res = isdigit(c);
        break;
    case 'g':
        res = isgraph(c);
        break;
    case 'l':
        res = islower(c);
        break;
    case 'p':
        res = ispunct(c);
        break;
    case 's':
        res = isspace(c);
        break;
    case 'u':
        res = isupper(c);
        break;
    case 'w':
        res = isalnum(c);
        break;
    case 'x':
        res = isxdigit(c);
        break;
    case 'z': /* deprecated, still in Lua 5.4: the NUL byte */
        res = (c == 0);
        break;
    default:
        return cl == c;
    }
    if (isupper(cl))
        res = !res;
    return res != 0;
}

/* p points at '[', ec at the closing ']'. */
static int match_set(int c, const char *p, const char *ec)
{
    int sig = 1;
    if (*(p + 1) == '^') {
        sig = 0;
        p++;
    }
    while (++p < ec) {
        if (*p == '%') {
            p++;
            if (match_class(c, uchar(*p)))
                return sig;
        } else if (*(p + 1) == '-' && p + 2 < ec) {
            p += 2;
            if (uchar(*(p - 2)) <= c && c <= uchar(*p))
                return sig;
        } else if (uchar(*p) == c) {
            return sig;
        }
    }
    return !sig;
}

static int single_match(mstate *ms, const char *s, const char *p, const char *ep)
{
    if (s >= ms->src_end)
        return 0;
    int c = uchar(*s);
    switch (*p) {
    case '.':
        return 1;
    case '%':
        return match_class(c, uchar(*(p + 1)));
    case '[':
        return match_set(c, p, ep - 1);
    default:
        return uchar(*p) == c;
    }
}

static const char *match_balance(mstate *ms, const char *s, const char *p)
{
    if (p >= ms->p_end - 1)
        luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= ms->src_end || *s != *p)
        return NULL;
    int b = *p, e = *(p + 1), depth = 1;
    while (++s < ms->src_end) {
        tick(ms);
        if (*s == e) {
            if (--depth == 0)
                return s + 1;
        } else if (*s == b) {
            depth++;
        }
    }
    return NULL;
}

static const char *max_expand(mstate *ms, const char *s, const char *p, const char *ep)
{
    ptrdiff_t i = 0;
    while (single_match(ms, s + i, p, ep)) {
        tick(ms);
        i++;
    }
    for (; i >= 0; i--) {
        const char *res = match(ms, s + i, ep + 1);
        if (res)
            return res;
    }
    return NULL;
}

static const char *min_expand(mstate *ms, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *res = match(ms, s, ep + 1);
        if (res)
            return res;
        if (!single_match(ms, s, p, ep))
            return NULL;
        s++;
    }
}

static const char *start_capture(mstate *ms, const char *s, const char *p, ptrdiff_t what)
{
    int level = ms->level;
    if (level >= MAXCAPTURES)
        luaL_error(ms->L, "too many captures");
    ms->capture[level].init = s;
    ms->capture[level].len = what;
    ms->level = level + 1;
    const char *res = match(ms, s, p);
    if (!res)
        ms->level--;
    return res;
}

static const char *end_capture(mstate *ms, const char *s, const char *p)
{
    int l = ms->level - 1;
    while (l >= 0 && ms->capture[l].len != CAP_UNFINISHED)
        l--;
    if (l < 0)
        luaL_error(ms->L, "invalid pattern capture");
    ms->capture[l].len = s - ms->capture[l].init;
    const char *res = match(ms, s, p);
    if (!res)
        ms->capture[l].len = CAP_UNFINISHED;
    return res;
}

static const char *match_backref(mstate *ms, const char *s, int digit)
{
    int l = digit - '1';
    if (l < 0 || l >= ms->level || ms->capture[l].len == CAP_UNFINISHED)
        luaL_error(ms->L, "invalid capture index %%%d", l + 1);
    if (ms->capture[l].len == CAP_POSITION)
        return NULL; /* as in Lua: a position capture never matches as text */
    size_t len = (size_t)ms->capture[l].len;
    if ((size_t)(ms->src_end - s) >= len && memcmp(ms->capture[l].init, s, len) == 0)
        return s + len;
    return NULL;
}

static const char *match(mstate *ms, const char *s, const char *p)
{
    if (ms->depth-- == 0)
        luaL_error(ms->L, "pattern too complex");
    for (;;) {
        tick(ms);
        if (p == ms->p_end)
            break;
        const char *ep;
        switch (*p) {
        case '(':
            if (*(p + 1) == ')')
                s = start_capture(ms, s, p + 2, CAP_POSITION);
            else
                s = start_capture(ms, s, p + 1, CAP_UNFINISHED);
            goto out;
        case ')':
            s = end_capture(ms, s, p + 1);
            goto out;
        case '$':
            if (p + 1 != ms->p_end)
                goto single;
            if (s != ms->src_end)
                s = NULL;
            goto out;
        case '%':
            switch (*(p + 1)) {
            case 'b':
                s = match_balance(ms, s, p + 2);
                if (!s)
                    goto out;
                p += 4;
                continue;
            case 'f': {
                p += 2;
                if (*p != '[')
                    luaL_error(ms->L, "missing '[' after '%%f' in pattern");
                ep = class_end(ms, p);
                int prev = (s == ms->src_init) ? '\0' : uchar(*(s - 1));
                int cur = (s < ms->src_end) ? uchar(*s) : '\0';
                if (!match_set(prev, p, ep - 1) && match_set(cur, p, ep - 1)) {
                    p = ep;
                    continue;
                }
                s = NULL;
                goto out;
            }
            case '0':
            case '1':
            case '2':
            case '3':
            case '4':
            case '5':
            case '6':
            case '7':
            case '8':
            case '9':
                s = match_backref(ms, s, uchar(*(p + 1)));
                if (!s)
                    goto out;
                p += 2;
                continue;
            default:
                goto single;
            }
        default:
        single:
            ep = class_end(ms, p);
            if (!single_match(ms, s, p, ep)) {
                if (*ep == '*' || *ep == '?' || *ep == '-') {
                    p = ep + 1; /* the item may match nothing */
                    continue;
                }
                s = NULL;
                goto out;
            }
            switch (*ep) {
            case '?': {
                const char *res = match(ms, s + 1, ep + 1);
                if (res) {
                    s = res;
                    goto out;
                }
                p = ep + 1;
                continue;
            }
            case '+':
                s = max_expand(ms, s + 1, p, ep);
                goto out;
            case '*':
                s = max_expand(ms, s, p, ep);
                goto out;
            case '-':
                s = min_expand(ms, s, p, ep);
                goto out;
            default:
                s++;
                p = ep;
                continue;
            }
        }
    }
out:
    ms->depth++;
    return s;
}

/* ---- results ---- */

static void push_capture(mstate *ms, int i, const char *s, const char *e)
{
    if (i >= ms->level) {
        if (i != 0)
            luaL_error(ms->L, "invalid capture index %%%d", i + 1);
        lua_pushlstring(ms->L, s, (size_t)(e - s));
        return;
    }
    ptrdiff_t l = ms->capture[i].len;
    if (l == CAP_UNFINISHED)
        luaL_error(ms->L, "unfinished capture");
    if (l == CAP_POSITION)
        lua_pushinteger(ms->L, (ms->capture[i].init - ms->src_init) + 1);
    else
        lua_pushlstring(ms->L, ms->capture[i].init, (size_t)l);
}

/* Pushes every capture (or the whole match when there are none and s is not NULL). */
static int push_captures(mstate *ms, const char *s, const char *e)
{
    int n = (ms->level == 0 && s) ? 1 : ms->level;
    luaL_checkstack(ms->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_capture(ms, i, s, e);
    return n;
}

static size_t posrelat(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 1;
    return len + (size_t)pos + 1;
}

/* First-byte tables of recent first items, by the item's text: building one costs 256 class
 * or set tests (2-3 us), more than a short subject's whole search; the rules use a few dozen
 * patterns.  Per thread; a lookup copies the table out, as a nested call may replace it. */
#define FB_SLOTS 64
#define FB_KEY 24
static _Thread_local struct {
    unsigned char len; /* 0: empty slot */
    char key[FB_KEY];
    unsigned char first[256];
} fb_cache[FB_SLOTS];

/* Fills first[] with the bytes a match of p..pe can start with and returns 1, or returns 0
 * when that is not known from the first item (see "First bytes").  Never raises: a malformed
 * pattern gets no filter and the matcher reports it. */
static int first_bytes(const char *p, const char *pe, unsigned char first[256])
{
    while (pe - p >= 2 && p[0] == '(' && p[1] != ')') /* a capture's start consumes nothing */
        p++;
    if (p >= pe)
        return 0;
    const char *item = p, *next, *close = NULL;
    int frontier = p[0] == '%' && pe - p >= 2 && p[1] == 'f';
    if (frontier) {
        if (pe - p < 3 || p[2] != '[' || !(close = set_close(p + 2, pe)))
            return 0;
        item = p + 2;
        next = close + 1;
    } else if (p[0] == '%') {
        if (pe - p < 2 || p[1] == 'b' || isdigit(uchar(p[1])))
            return 0;
        next = p + 2;
    } else if (p[0] == '[') {
        if (!(close = set_close(p, pe)))
            return 0;
        next = close + 1;
    } else if (strchr(".^$*+?-()", p[0])) {
        return 0;
    } else {
        next = p + 1;
    }
    if (!frontier && next < pe && strchr("*?-", *next)) /* the first item may match nothing */
        return 0;
    size_t klen = (size_t)(next - p);
    unsigned h = 2166136261u;
    for (size_t i = 0; i < klen; i++)
        h = (h ^ uchar(p[i])) * 16777619u;
    int slot = (int)(h % FB_SLOTS), cached = klen < FB_KEY;
    if (cached && fb_cache[slot].len == klen && memcmp(fb_cache[slot].key, p, klen) == 0) {
        memcpy(first, fb_cache[slot].first, 256);
        return 1;
    }
    for (int c = 0; c < 256; c++)
        first[c] = (unsigned char)(item[0] == '['   ? match_set(c, item, close)
                                   : item[0] == '%' ? match_class(c, uchar(item[1]))
                                                    : c == uchar(item[0]));
    if (cached) {
        fb_cache[slot].len = (unsigned char)klen;
        memcpy(fb_cache[slot].key, p, klen);
        memcpy(fb_cache[slot].first, first, 256);
    }
    return 1;
}

/* The first position from s on where a match can start (the subject's end at the latest). */
static const char *skip(mstate *ms, const char *s, const unsigned char *first)
{
    const char *from = s;
    while (s < ms->src_end && !first[uchar(*s)])
        s++;
    ms->steps += (s - from) / 16;
    return s;
}

static int has_specials(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++)
        if (strchr("^$*+?.([%-", p[i]) && p[i] != '\0')
            return 1;
    return 0;
}

static int find_aux(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = posrelat(luaL_optinteger(L, 3, 1), ls);
    if (init > ls + 1) {
        luaL_pushfail(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
        const char *hit = memmem(s + init - 1, ls - (init - 1), p, lp);
        flow_charge(L, (long)((ls - (init - 1)) / (FLOW_PATTERN_STEPS * 16)));
        if (hit) {
            lua_pushinteger(L, (hit - s) + 1);
            lua_pushinteger(L, (lua_Integer)((hit - s) + lp));
            return 2;
        }
        luaL_pushfail(L);
        return 1;
    }
    int anchor = (*p == '^');
    if (anchor) {
        p++;
        lp--;
    }
    mstate ms;
    ms_init(&ms, L, s, ls, p, lp);
    const char *s1 = s + init - 1;
    unsigned char first[256];
    int filter = !anchor && first_bytes(p, p + lp, first);
    do {
        if (filter)
            s1 = skip(&ms, s1, first);
        ms_reset(&ms);
        const char *e = match(&ms, s1, p);
        if (e) {
            settle(&ms);
            if (find) {
                lua_pushinteger(L, (s1 - s) + 1);
                lua_pushinteger(L, e - s);
                return push_captures(&ms, NULL, NULL) + 2;
            }
            return push_captures(&ms, s1, e);
        }
    } while (s1++ < ms.src_end && !anchor);
    settle(&ms);
    luaL_pushfail(L);
    return 1;
}

static int p_find(lua_State *L)
{
    return find_aux(L, 1);
}

static int p_match(lua_State *L)
{
    return find_aux(L, 0);
}

/* gmatch iterator; upvalues: subject, pattern, next offset, end of last match (-1: none). */
static int gmatch_next(lua_State *L)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
    lua_Integer pos = lua_tointeger(L, lua_upvalueindex(3));
    lua_Integer last = lua_tointeger(L, lua_upvalueindex(4));
    mstate ms;
    ms_init(&ms, L, s, ls, p, lp);
    unsigned char first[256];
    int filter = pos <= (lua_Integer)ls && *p != '^' && first_bytes(p, p + lp, first);
    for (const char *src = s + pos; src <= ms.src_end; src++) {
        if (filter)
            src = skip(&ms, src, first);
        ms_reset(&ms);
        const char *e = match(&ms, src, p);
        if (e && (last < 0 || e != s + last)) {
            settle(&ms);
            lua_pushinteger(L, e - s);
            lua_replace(L, lua_upvalueindex(3));
            lua_pushinteger(L, e - s);
            lua_replace(L, lua_upvalueindex(4));
            return push_captures(&ms, src, e);
        }
    }
    settle(&ms);
    return 0;
}

static int p_gmatch(lua_State *L)
{
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    size_t init = posrelat(luaL_optinteger(L, 3, 1), ls) - 1; /* 0-based */
    if (init > ls)
        init = ls + 1; /* past the end: no match at all */
    lua_settop(L, 2);
    lua_pushinteger(L, (lua_Integer)init);
    lua_pushinteger(L, -1);
    lua_pushcclosure(L, gmatch_next, 4);
    return 1;
}

static void add_string(mstate *ms, luaL_Buffer *b, const char *s, const char *e)
{
    lua_State *L = ms->L;
    size_t l;
    const char *r = lua_tolstring(L, 3, &l);
    const char *end = r + l;
    while (r < end) {
        const char *pc = memchr(r, '%', (size_t)(end - r));
        if (!pc) {
            luaL_addlstring(b, r, (size_t)(end - r));
            break;
        }
        luaL_addlstring(b, r, (size_t)(pc - r));
        pc++;
        if (pc == end)
            luaL_error(L, "invalid use of '%%' in replacement string");
        if (*pc == '%') {
            luaL_addchar(b, '%');
        } else if (*pc == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (isdigit(uchar(*pc))) {
            push_capture(ms, *pc - '1', s, e);
            luaL_tolstring(L, -1, NULL);
            lua_remove(L, -2);
            luaL_addvalue(b);
        } else {
            luaL_error(L, "invalid use of '%%' in replacement string");
        }
        r = pc + 1;
    }
}

static void add_value(mstate *ms, luaL_Buffer *b, const char *s, const char *e, int tr)
{
    lua_State *L = ms->L;
    switch (tr) {
    case LUA_TFUNCTION: {
        lua_pushvalue(L, 3);
        int n = push_captures(ms, s, e);
        lua_call(L, n, 1);
        break;
    }
    case LUA_TTABLE:
        push_capture(ms, 0, s, e);
        lua_gettable(L, 3);
        break;
    default:
        add_string(ms, b, s, e);
        return;
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s)); /* keep the original text */
    } else if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    } else {
        luaL_addvalue(b);
    }
}

static int p_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *src = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    const char *lastmatch = NULL;
    int tr = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    lua_Integer n = 0;
    luaL_argexpected(
        L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
        "string/function/table");
    int anchor = (*p == '^');
    if (anchor) {
        p++;
        lp--;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    mstate ms;
    ms_init(&ms, L, src, ls, p, lp);
    unsigned char first[256];
    int filter = !anchor && max_n > 0 && first_bytes(p, p + lp, first);
    while (n < max_n) {
        if (filter) { /* bytes that cannot start a match are copied as they are */
            const char *q = skip(&ms, src, first);
            luaL_addlstring(&b, src, (size_t)(q - src));
            src = q;
        }
        ms_reset(&ms);
        const char *e = match(&ms, src, p);
        if (e && e != lastmatch) {
            n++;
            add_value(&ms, &b, src, e, tr);
            src = lastmatch = e;
        } else if (src < ms.src_end) {
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchor)
            break;
    }
    settle(&ms);
    luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    return 2;
}

void flow_pattern_open(lua_State *L, int idx)
{
    static const luaL_Reg fns[] = {
        {"find", p_find}, {"match", p_match}, {"gmatch", p_gmatch}, {"gsub", p_gsub}, {NULL, NULL},
    };
    idx = lua_absindex(L, idx);
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, idx, f->name);
    }
}
