/*
 * test_proto.c - the chat protocol decoder and encoders (server/proto.c), the UTF-8 and
 * white-space helpers and the hash map (server/util.c), the Origin check (server/ws.c).
 */
#include "check.h"

#include "privacy.h"
#include "proto.h"
#include "util.h"
#include "ws.h"

#include <stdlib.h>
#include <string.h>

static const proto_limits_t lim = {20};

static int decode(const char *s, proto_in_t *in, proto_error_t *code)
{
    char msg[256];
    return proto_decode(s, strlen(s), &lim, in, code, msg, sizeof(msg));
}

static proto_error_t err_of(const char *s)
{
    proto_in_t in;
    proto_error_t code = PROTO_E_COUNT;
    if (decode(s, &in, &code) == 0) {
        proto_in_clear(&in);
        return PROTO_E_COUNT;
    }
    return code;
}

static void test_hello_new(void)
{
    proto_in_t in;
    proto_error_t code;
    CHECK(decode("{\"type\":\"hello\",\"customer\":{\"id\":\"u1\",\"name\":\"张三\"}}", &in,
                 &code) == 0);
    CHECK(in.kind == PROTO_HELLO_NEW);
    CHECK(strcmp(in.customer_id, "u1") == 0);
    CHECK(strcmp(in.customer_name, "张三") == 0);
    CHECK(strcmp(in.channel, "web") == 0);
    proto_in_clear(&in);
}

static void test_hello_resume(void)
{
    proto_in_t in;
    proto_error_t code;
    CHECK(decode("{\"type\":\"hello\",\"resume\":{\"token\":\"0123456789abcdef0123456789abcdef\","
                 "\"last_seq\":7}}",
                 &in, &code) == 0);
    CHECK(in.kind == PROTO_HELLO_RESUME);
    CHECK(in.last_seq == 7);
    proto_in_clear(&in);
    CHECK(err_of("{\"type\":\"hello\",\"resume\":{\"token\":\"0123456789ABCDEF0123456789abcdef\","
                 "\"last_seq\":1}}") == PROTO_E_BAD_FIELD);
    CHECK(err_of("{\"type\":\"hello\",\"resume\":{\"token\":\"0123456789abcdef0123456789abcdef\","
                 "\"last_seq\":1.5}}") == PROTO_E_BAD_FIELD);
    CHECK(err_of("{\"type\":\"hello\",\"resume\":{\"token\":\"0123456789abcdef0123456789abcdef\","
                 "\"last_seq\":-1}}") == PROTO_E_BAD_FIELD);
    CHECK(err_of(
              "{\"type\":\"hello\",\"resume\":{\"token\":\"0123456789abcdef0123456789abcdef\"}}") ==
          PROTO_E_MISSING_FIELD);
}

static void test_message(void)
{
    proto_in_t in;
    proto_error_t code;
    CHECK(decode("{\"type\":\"message\",\"id\":\"m1\",\"text\":\"退款没到账\"}", &in, &code) == 0);
    CHECK(in.kind == PROTO_MESSAGE);
    CHECK(strcmp(in.text, "退款没到账") == 0);
    proto_in_clear(&in);
    /* 20 characters allowed, 21 not (counted in characters, not bytes) */
    CHECK(err_of("{\"type\":\"message\",\"id\":\"m1\",\"text\":"
                 "\"一二三四五六七八九十一二三四五六七八九十\"}") == PROTO_E_COUNT);
    CHECK(err_of("{\"type\":\"message\",\"id\":\"m1\",\"text\":"
                 "\"一二三四五六七八九十一二三四五六七八九十一\"}") == PROTO_E_BAD_FIELD);
}

static void test_errors(void)
{
    CHECK(err_of("{bad") == PROTO_E_BAD_JSON);
    CHECK(err_of("[1,2]") == PROTO_E_BAD_JSON);
    CHECK(err_of("{} trailing") == PROTO_E_BAD_JSON);
    CHECK(err_of("{\"id\":\"m\"}") == PROTO_E_UNKNOWN_TYPE);
    CHECK(err_of("{\"type\":7}") == PROTO_E_UNKNOWN_TYPE);
    CHECK(err_of("{\"type\":\"bye\"}") == PROTO_E_UNKNOWN_TYPE);
    CHECK(err_of("{\"type\":\"message\",\"id\":\"m\"}") == PROTO_E_MISSING_FIELD);
    CHECK(err_of("{\"type\":\"message\",\"text\":\"x\"}") == PROTO_E_MISSING_FIELD);
    CHECK(err_of("{\"type\":\"message\",\"id\":\"m\",\"text\":3}") == PROTO_E_BAD_FIELD);
    CHECK(err_of("{\"type\":\"message\",\"id\":\"m\",\"text\":\" \\u3000\\u00a0\"}") ==
          PROTO_E_BAD_FIELD);
    CHECK(err_of("{\"type\":\"message\",\"id\":\"\",\"text\":\"x\"}") == PROTO_E_BAD_FIELD);
    CHECK(err_of("{\"type\":\"hello\",\"customer\":{\"id\":\"u\",\"channel\":\"fax\"}}") ==
          PROTO_E_BAD_FIELD);
    CHECK(err_of("{\"type\":\"hello\",\"customer\":{\"id\":\"u\"},\"resume\":{}}") ==
          PROTO_E_BAD_FIELD);
    const char bad_utf8[] = "{\"type\":\"message\",\"id\":\"m\",\"text\":\"\xc3\x28\"}";
    proto_in_t in;
    proto_error_t code;
    char msg[128];
    CHECK(proto_decode(bad_utf8, strlen(bad_utf8), &lim, &in, &code, msg, sizeof(msg)) != 0 &&
          code == PROTO_E_BAD_UTF8);
    /* the id is reported with an error about a message */
    CHECK(decode("{\"type\":\"message\",\"id\":\"m9\"}", &in, &code) != 0);
    CHECK(strcmp(in.id, "m9") == 0);
}

static void test_encoders(void)
{
    store_event_t ev = {0};
    ev.kind = "message";
    ev.seq = 5;
    ev.sender = "bot";
    ev.text = "<b>你好</b>";
    ev.options = "[\"是\",\"否\"]";
    strcpy(ev.ts, "2026-01-01T00:00:00.000Z");
    char *s = proto_event(&ev);
    CHECK(s && strstr(s, "\"seq\":5") && strstr(s, "\"options\":[\"是\",\"否\"]") &&
          strstr(s, "\"from\":\"bot\""));
    free(s);
    ev.options = "[]";
    s = proto_event(&ev);
    CHECK(s && !strstr(s, "options"));
    free(s);
    s = proto_error(PROTO_E_RATE_LIMITED, "slow", "m1");
    CHECK(s && strstr(s, "\"code\":\"rate_limited\"") && strstr(s, "\"id\":\"m1\""));
    free(s);
    const char *opts[] = {"a\"b", "c"};
    s = proto_string_array(opts, 2);
    CHECK(s && strcmp(s, "[\"a\\\"b\",\"c\"]") == 0);
    free(s);
    CHECK(proto_string_array(opts, 0) == NULL);
}

static void test_utf8(void)
{
    CHECK(util_utf8_valid("abc", 3));
    CHECK(util_utf8_valid("退款", 6));
    CHECK(!util_utf8_valid("\xc0\xaf", 2));         /* overlong */
    CHECK(!util_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    CHECK(!util_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    CHECK(!util_utf8_valid("\xe9\x80", 2));         /* truncated */
    CHECK(util_utf8_valid("\xf0\x9f\x98\x80", 4));  /* emoji */
    CHECK(util_utf8_chars("a退😀") == 3);
    CHECK(util_blank(""));
    CHECK(util_blank(" \t\xe3\x80\x80\xc2\xa0\xe2\x80\x83\xe2\x80\x8b"));
    CHECK(!util_blank(" a "));
    CHECK(!util_blank("\xe9\x80\x80"));
}

static void test_map(void)
{
    map_t *m = map_new();
    char key[32];
    int vals[1000];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        vals[i] = i;
        CHECK(map_put(m, key, &vals[i]) == 0);
    }
    CHECK(map_count(m) == 1000);
    CHECK(*(int *)map_get(m, "k577") == 577);
    CHECK(map_del(m, "k577") == &vals[577]);
    CHECK(map_get(m, "k577") == NULL);
    CHECK(map_del(m, "nope") == NULL);
    CHECK(map_count(m) == 999);
    map_free(m);
}

static void test_origin(void)
{
    CHECK(ws_origin_allowed("", NULL, "x:1"));
    CHECK(ws_origin_allowed("", "http://127.0.0.1:8080", "127.0.0.1:8080"));
    CHECK(!ws_origin_allowed("", "http://evil.example", "127.0.0.1:8080"));
    CHECK(ws_origin_allowed("https://shop.example, https://m.shop.example",
                            "https://m.shop.example", "chat.example"));
    CHECK(!ws_origin_allowed("https://shop.example", "https://shop.example.evil", "chat.example"));
    CHECK(ws_origin_allowed("*", "https://anything", "chat.example"));
}

static void mask_is(const char *in, const char *want, int count)
{
    char out[256];
    int n = privacy_mask(in, out, sizeof(out));
    if (strcmp(out, want) != 0 || n != count)
        fprintf(stderr, "mask(%s) = %s (%d), want %s (%d)\n", in, out, n, want, count);
    CHECK(strcmp(out, want) == 0 && n == count);
}

static void test_privacy(void)
{
    mask_is("我的手机13812345678", "我的手机138****5678", 1);
    mask_is("电话 138-1234-5678 谢谢", "电话 138-****-5678 谢谢", 1);
    mask_is("身份证11010519491231002X", "身份证110105********002X", 1);
    mask_is("身份证110105194912310021", "身份证110105194912310021", 0); /* bad check digit */
    mask_is("卡号6222 0212 3456 7894", "卡号6222 02** **** 7894", 1);   /* Luhn-valid */
    mask_is("订单号6222021234567890", "订单号6222021234567890", 0);     /* not Luhn: an order */
    mask_is("１３８１２３４５６７８", "１３８****５６７８", 1);         /* full-width */
    mask_is("金额58.50元，订单20261126001", "金额58.50元，订单20261126001", 0);
    mask_is("", "", 0);
}

int main(void)
{
    RUN(test_privacy);
    RUN(test_hello_new);
    RUN(test_hello_resume);
    RUN(test_message);
    RUN(test_errors);
    RUN(test_encoders);
    RUN(test_utf8);
    RUN(test_map);
    RUN(test_origin);
    return check_summary();
}
