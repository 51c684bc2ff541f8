/* Tests of the router through the caller (zk_router_call): registration
   and mounting, answers, schemas, middleware, request values and kept
   requests, with no network and no loop. What is checked is what a user
   sees: the zk_answer handed to the done callback, return codes, and
   which handlers and middleware ran in which order.

   The library allocates through a counting wrapper, so every test ends by
   checking that nothing is left allocated, and one test makes each
   allocation fail in turn. */
#define _GNU_SOURCE /* clock_gettime, MAP_ANONYMOUS under -std=c99 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Allocations of the library: how many are live, and a switch that makes
   the n-th one from now fail. */
static long lib_live_allocs;
static long lib_alloc_calls;
static long lib_fail_at; /* 0: never; else the allocation with this number fails */
static void *count_realloc(void *p, size_t n) {
    void *q;
    lib_alloc_calls++;
    if (lib_fail_at && lib_alloc_calls == lib_fail_at) return NULL;
    q = realloc(p, n ? n : 1);
    if (q && !p) lib_live_allocs++;
    return q;
}
static void count_free(void *p) {
    if (p) lib_live_allocs--;
    free(p);
}
#define ZK_MALLOC(n) count_realloc(NULL, n)
#define ZK_REALLOC(p, n) count_realloc(p, n)
#define ZK_FREE(p) count_free(p)
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"
#include "test.h"

#define CHECK_ALL_FREED() CHECK_EQ_INT(lib_live_allocs, 0)

/* Compares two NUL-terminated strings and shows both when they differ. */
#define CHECK_TEXT(s, lit)                                                    \
    do {                                                                      \
        const char *s_ = (s), *l_ = (lit);                                    \
        if (strcmp(s_, l_) != 0) {                                            \
            test__failed_checks++;                                            \
            printf("  %s:%d: %s: %s is \"%s\", expected \"%s\"\n", __FILE__,  \
                   __LINE__, test__name, #s, s_, l_);                         \
        }                                                                     \
    } while (0)

/* ---- answers: what the done callback saw ------------------------------ */

typedef struct answer_rec {
    int calls;
    int ok;
    char code[96];
    char message[512];
    char data[8192];
} answer_rec;

static void copy_view(char *out, size_t cap, zk_str v) {
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    if (n) memcpy(out, v.ptr, n);
    out[n] = '\0';
}

static void on_answer(const zk_answer *a, void *user) {
    answer_rec *r = (answer_rec *)user;
    r->calls++;
    r->ok = a->ok;
    copy_view(r->code, sizeof r->code, a->code);
    copy_view(r->message, sizeof r->message, a->message);
    copy_view(r->data, sizeof r->data, a->data);
}

/* Calls route type with payload (a JSON text, or NULL for none). */
static int call_ctx(zk_router *r, const char *type, const char *payload, void *context,
                    answer_rec *out) {
    memset(out, 0, sizeof *out);
    return zk_router_call(r, type, payload, payload ? strlen(payload) : 0, context, on_answer, out);
}

static int call(zk_router *r, const char *type, const char *payload, answer_rec *out) {
    return call_ctx(r, type, payload, NULL, out);
}

/* The answer is exactly one success with this result. */
#define CHECK_OK(rec, json)                                                   \
    do {                                                                      \
        CHECK_EQ_INT((rec).calls, 1);                                         \
        CHECK_EQ_INT((rec).ok, 1);                                            \
        CHECK_TEXT((rec).data, json);                                         \
    } while (0)

/* The answer is exactly one error with this code. */
#define CHECK_FAIL(rec, c)                                                    \
    do {                                                                      \
        CHECK_EQ_INT((rec).calls, 1);                                         \
        CHECK_EQ_INT((rec).ok, 0);                                            \
        CHECK_TEXT((rec).code, c);                                            \
    } while (0)

/* ---- what ran: a trace of handlers and middleware --------------------- */

static char trace[1024];
static void note(const char *what) {
    size_t n = strlen(trace);
    if (n + strlen(what) + 2 < sizeof trace) {
        if (n) trace[n++] = ',';
        strcpy(trace + n, what);
    }
}

static void h_trace(zk_request *req) {
    (void)req;
    note("H");
}

static void h_nothing(zk_request *req) { (void)req; }

/* Writes the payload back (nothing when there is none). */
static void h_echo(zk_request *req) {
    zk_value p = zk_request_payload(req);
    note("echo");
    if (zk_value_type(p) != ZK_TYPE_NONE) zk_write_value(zk_request_writer(req), p);
}

static void h_result(zk_request *req) {
    zk_writer *w = zk_request_writer(req);
    zk_write_object(w);
    zk_write_key(w, "id");
    zk_write_int(w, 1);
    zk_write_key(w, "name");
    zk_write_str(w, "ann \"a\"\n");
    zk_write_end(w);
}

static int ok_rc1, ok_rc2;
static void h_ok_explicit(zk_request *req) {
    zk_write_int(zk_request_writer(req), 42);
    ok_rc1 = zk_request_ok(req);
}

static void h_ok_twice(zk_request *req) {
    zk_write_int(zk_request_writer(req), 1);
    ok_rc1 = zk_request_ok(req);
    ok_rc2 = zk_request_ok(req);
}

static void h_fail_then_ok(zk_request *req) {
    ok_rc1 = zk_request_fail(req, "CONFLICT", "first");
    zk_write_int(zk_request_writer(req), 5);
    ok_rc2 = zk_request_ok(req);
}

static void h_ok_then_fail(zk_request *req) {
    zk_write_int(zk_request_writer(req), 5);
    ok_rc1 = zk_request_ok(req);
    ok_rc2 = zk_request_fail(req, "CONFLICT", "second");
}

static void h_fail_app(zk_request *req) {
    zk_writer *w = zk_request_writer(req);
    zk_write_object(w);
    zk_write_key(w, "max");
    zk_write_int(w, 10);
    zk_write_end(w);
    zk_request_fail(req, "ROOM_FULL", "room is full");
}

static void h_fail_plain(zk_request *req) { zk_request_fail(req, ZK_CODE_FORBIDDEN, "not yours"); }

static void h_fail_internal(zk_request *req) { zk_request_fail(req, ZK_CODE_INTERNAL, "db down: 42"); }

/* Fails with the code in the route's data and no message. */
static void h_fail_null_message(zk_request *req) {
    zk_request_fail(req, (const char *)zk_request_route_data(req), NULL);
}

/* A result written halfway (an object never closed), then a failure: the
   writer does not hold a complete value, so the error has no data. */
static void h_fail_incomplete_data(zk_request *req) {
    zk_writer *w = zk_request_writer(req);
    zk_write_object(w);
    zk_write_key(w, "half");
    zk_request_fail(req, "NOPE", "half written");
}

static void h_misuse_key(zk_request *req) { zk_write_key(zk_request_writer(req), "k"); }

static void h_misuse_nan(zk_request *req) {
    zk_writer *w = zk_request_writer(req);
    zk_write_array(w);
    zk_write_double(w, NAN);
    zk_write_end(w);
}

static void h_misuse_end(zk_request *req) { zk_write_end(zk_request_writer(req)); }

static void h_incomplete(zk_request *req) {
    zk_writer *w = zk_request_writer(req);
    zk_write_object(w);
    zk_write_key(w, "never");
    zk_write_int(w, 1);
}

static void h_misuse_ok(zk_request *req) {
    zk_write_key(zk_request_writer(req), "k");
    ok_rc1 = zk_request_ok(req);
}

/* ---- registration ------------------------------------------------------ */

TEST(valid_names_register_and_are_counted) {
    zk_router *r = zk_router_new();
    char longest[ZK_ROUTE_MAX_NAME + 1];
    answer_rec a;
    CHECK(r != NULL);
    CHECK_EQ_INT(zk_router_count(r), 0);
    memset(longest, 'x', ZK_ROUTE_MAX_NAME);
    longest[ZK_ROUTE_MAX_NAME] = '\0';
    longest[10] = '.';
    CHECK_EQ_INT(zk_router_on(r, "ping", h_echo, NULL), 0);
    CHECK_EQ_INT(zk_router_on(r, "chat.send", h_echo, NULL), 0);
    CHECK_EQ_INT(zk_router_on(r, "a.b.c.d", h_echo, NULL), 0);
    CHECK_EQ_INT(zk_router_on(r, "Users_2.get-all", h_echo, NULL), 0);
    CHECK_EQ_INT(zk_router_on(r, "__auth", h_echo, NULL), 0);
    CHECK_EQ_INT(zk_router_on(r, "0", h_echo, NULL), 0);
    CHECK_EQ_INT(zk_router_on(r, longest, h_echo, NULL), 0);
    CHECK_EQ_INT(zk_router_count(r), 7);
    CHECK_EQ_INT(call(r, longest, "7", &a), 0);
    CHECK_OK(a, "7");
    CHECK_EQ_INT(call(r, "Users_2.get-all", "[true]", &a), 0);
    CHECK_OK(a, "[true]");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(bad_names_are_refused_and_nothing_is_added) {
    static const char *const bad[] = {
        "", ".", ".a", "a.", "a..b", "..", "a b", " a", "a\t", "a/b", "a:b", "a*", "a+b",
        "caf\xc3\xa9", "a\"b", "a\\b", "a,b", "a[0]", "a..", "\x7f", "a.b.", ".a.b"};
    zk_router *r = zk_router_new();
    char too_long[ZK_ROUTE_MAX_NAME + 2];
    size_t i;
    answer_rec a;
    memset(too_long, 'y', ZK_ROUTE_MAX_NAME + 1);
    too_long[ZK_ROUTE_MAX_NAME + 1] = '\0';
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = zk_router_on(r, bad[i], h_echo, NULL);
        if (rc != ZK_EINVAL) printf("  name \"%s\" gave %d\n", bad[i], rc);
        CHECK_EQ_INT(rc, ZK_EINVAL);
    }
    CHECK_EQ_INT(zk_router_on(r, too_long, h_echo, NULL), ZK_EINVAL);
    CHECK_EQ_INT(zk_router_on(r, NULL, h_echo, NULL), ZK_EINVAL);
    CHECK_EQ_INT(zk_router_count(r), 0);
    CHECK_EQ_INT(call(r, "a b", NULL, &a), 0);
    CHECK_EQ_INT(a.calls, 1);
    CHECK_EQ_INT(a.ok, 0);
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(duplicate_names_and_null_handlers_are_refused) {
    zk_router *r = zk_router_new();
    answer_rec a;
    CHECK_EQ_INT(zk_router_on(r, "chat.send", h_echo, NULL), 0);
    CHECK_EQ_INT(zk_router_on(r, "chat.send", h_result, NULL), ZK_EINVAL);
    CHECK_EQ_INT(zk_router_on(r, "chat.other", NULL, NULL), ZK_EINVAL);
    CHECK_EQ_INT(zk_router_count(r), 1);
    /* the first registration stands */
    CHECK_EQ_INT(call(r, "chat.send", "\"x\"", &a), 0);
    CHECK_OK(a, "\"x\"");
    CHECK_EQ_INT(call(r, "chat.other", NULL, &a), 0);
    CHECK_FAIL(a, "NOT_FOUND");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(lookups_are_exact) {
    zk_router *r = zk_router_new();
    static const char *const near[] = {"chat", "chat.", "chat.sen", "chat.sendx", "chat.send.x",
                                       "CHAT.SEND", "Chat.send", "hat.send", "chat..send", "x.chat.send"};
    size_t i;
    answer_rec a;
    CHECK_EQ_INT(zk_router_on(r, "chat.send", h_trace, NULL), 0);
    CHECK_EQ_INT(zk_router_on(r, "chat", h_echo, NULL), 0);
    trace[0] = '\0';
    for (i = 1; i < sizeof near / sizeof near[0]; i++) {
        CHECK_EQ_INT(call(r, near[i], NULL, &a), 0);
        CHECK_EQ_INT(a.calls, 1);
        CHECK_EQ_INT(a.ok, 0);
        if (strcmp(a.code, "NOT_FOUND") != 0) printf("  type \"%s\" gave %s\n", near[i], a.code);
        if (strchr(near[i], '.') && !strstr(near[i], "..") && near[i][strlen(near[i]) - 1] != '.')
            CHECK_TEXT(a.code, "NOT_FOUND");
    }
    CHECK_TEXT(trace, "");
    CHECK_EQ_INT(call(r, "chat", "1", &a), 0);
    CHECK_OK(a, "1");
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "chat.send", NULL, &a), 0);
    CHECK_OK(a, "null");
    CHECK_TEXT(trace, "H");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

/* ---- mounting ----------------------------------------------------------- */

static int mw_top(zk_request *req) { (void)req; note("top"); return 0; }
static int mw_sub(zk_request *req) { (void)req; note("sub"); return 0; }
static int mw_sub_late(zk_request *req) { (void)req; note("sub-late"); return 0; }
static int mw_route(zk_request *req) { (void)req; note("route"); return 0; }

static void h_route_data(zk_request *req) {
    const char *d = (const char *)zk_request_route_data(req);
    note(d ? d : "(null)");
}

TEST(mount_prefixes_names_and_runs_sub_middleware_first) {
    zk_router *r = zk_router_new(), *sub = zk_router_new();
    static const zk_middleware_fn route_mw[] = {mw_route};
    zk_route_opts o;
    answer_rec a;
    memset(&o, 0, sizeof o);
    o.middleware = route_mw;
    o.middleware_count = 1;
    o.data = (void *)"get-data";
    CHECK_EQ_INT(zk_router_use(r, mw_top), 0);
    CHECK_EQ_INT(zk_router_use(sub, mw_sub), 0);
    CHECK_EQ_INT(zk_router_on(sub, "get", h_route_data, &o), 0);
    CHECK_EQ_INT(zk_router_on(sub, "list.all", h_trace, NULL), 0);
    CHECK_EQ_INT(zk_router_on(r, "ping", h_trace, NULL), 0);
    CHECK_EQ_INT(zk_router_mount(r, "users", sub), 0);
    CHECK_EQ_INT(zk_router_count(r), 3);
    CHECK_EQ_INT(zk_router_count(sub), 2);

    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "users.get", NULL, &a), 0);
    CHECK_OK(a, "null");
    CHECK_TEXT(trace, "top,sub,route,get-data");
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "users.list.all", NULL, &a), 0);
    CHECK_OK(a, "null");
    CHECK_TEXT(trace, "top,sub,H");
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "ping", NULL, &a), 0); /* sub's middleware is not global here */
    CHECK_TEXT(trace, "top,H");
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "get", NULL, &a), 0);
    CHECK_FAIL(a, "NOT_FOUND");
    CHECK_EQ_INT(call(r, "users", NULL, &a), 0);
    CHECK_FAIL(a, "NOT_FOUND");
    CHECK_TEXT(trace, "");

    /* later changes to sub do not show, and the copies outlive sub */
    CHECK_EQ_INT(zk_router_on(sub, "late", h_trace, NULL), 0);
    CHECK_EQ_INT(zk_router_use(sub, mw_sub_late), 0);
    CHECK_EQ_INT(call(r, "users.late", NULL, &a), 0);
    CHECK_FAIL(a, "NOT_FOUND");
    zk_router_free(sub);
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "users.get", NULL, &a), 0);
    CHECK_OK(a, "null");
    CHECK_TEXT(trace, "top,sub,route,get-data");
    CHECK_EQ_INT(zk_router_count(r), 3);
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(mount_under_a_dotted_prefix_and_twice) {
    zk_router *r = zk_router_new(), *sub = zk_router_new();
    answer_rec a;
    CHECK_EQ_INT(zk_router_on(sub, "get", h_echo, NULL), 0);
    CHECK_EQ_INT(zk_router_mount(r, "api.v1", sub), 0);
    CHECK_EQ_INT(zk_router_mount(r, "api.v2", sub), 0);
    CHECK_EQ_INT(zk_router_count(r), 2);
    CHECK_EQ_INT(call(r, "api.v1.get", "1", &a), 0);
    CHECK_OK(a, "1");
    CHECK_EQ_INT(call(r, "api.v2.get", "2", &a), 0);
    CHECK_OK(a, "2");
    /* the same prefix again collides */
    CHECK_EQ_INT(zk_router_mount(r, "api.v1", sub), ZK_EINVAL);
    CHECK_EQ_INT(zk_router_count(r), 2);
    zk_router_free(sub);
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(mount_collision_or_bad_prefix_adds_nothing) {
    static const char *const bad[] = {"", ".", ".users", "users.", "us..ers", "us ers", "us/ers"};
    zk_router *r = zk_router_new(), *sub = zk_router_new();
    char long_prefix[ZK_ROUTE_MAX_NAME];
    size_t i;
    answer_rec a;
    CHECK_EQ_INT(zk_router_on(sub, "aaa", h_echo, NULL), 0);
    CHECK_EQ_INT(zk_router_on(sub, "list", h_echo, NULL), 0);
    CHECK_EQ_INT(zk_router_on(sub, "zzz", h_echo, NULL), 0);
    CHECK_EQ_INT(zk_router_on(r, "users.list", h_trace, NULL), 0);
    CHECK_EQ_INT(zk_router_mount(r, "users", sub), ZK_EINVAL);
    CHECK_EQ_INT(zk_router_count(r), 1);
    CHECK_EQ_INT(call(r, "users.aaa", NULL, &a), 0);
    CHECK_FAIL(a, "NOT_FOUND");
    CHECK_EQ_INT(call(r, "users.zzz", NULL, &a), 0);
    CHECK_FAIL(a, "NOT_FOUND");
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "users.list", NULL, &a), 0);
    CHECK_OK(a, "null");
    CHECK_TEXT(trace, "H"); /* still the router's own route */
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = zk_router_mount(r, bad[i], sub);
        if (rc != ZK_EINVAL) printf("  prefix \"%s\" gave %d\n", bad[i], rc);
        CHECK_EQ_INT(rc, ZK_EINVAL);
    }
    CHECK_EQ_INT(zk_router_count(r), 1);
    /* a prefix that makes "prefix.list" one byte too long: refused, and
       "prefix.aaa" and "prefix.zzz", which would fit, are not added either */
    memset(long_prefix, 'p', sizeof long_prefix);
    long_prefix[ZK_ROUTE_MAX_NAME - 4] = '\0'; /* prefix + "." + "list" = MAX + 1 */
    CHECK_EQ_INT(zk_router_mount(r, long_prefix, sub), ZK_EINVAL);
    CHECK_EQ_INT(zk_router_count(r), 1);
    long_prefix[ZK_ROUTE_MAX_NAME - 5] = '\0'; /* one less: "prefix.list" is MAX bytes */
    CHECK_EQ_INT(zk_router_mount(r, long_prefix, sub), 0);
    CHECK_EQ_INT(zk_router_count(r), 4);
    {
        char name[2 * ZK_ROUTE_MAX_NAME];
        snprintf(name, sizeof name, "%s.list", long_prefix);
        CHECK_EQ_INT(strlen(name), ZK_ROUTE_MAX_NAME);
        CHECK_EQ_INT(call(r, name, "3", &a), 0);
        CHECK_OK(a, "3");
    }
    zk_router_free(sub);
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(mount_of_an_empty_router_adds_nothing) {
    zk_router *r = zk_router_new(), *sub = zk_router_new();
    CHECK_EQ_INT(zk_router_use(sub, mw_sub), 0);
    CHECK_EQ_INT(zk_router_mount(r, "empty", sub), 0);
    CHECK_EQ_INT(zk_router_count(r), 0);
    zk_router_free(sub);
    zk_router_free(r);
    CHECK_ALL_FREED();
}

/* ---- answers ------------------------------------------------------------ */

TEST(result_written_is_the_answer) {
    zk_router *r = zk_router_new();
    answer_rec a;
    zk_router_on(r, "users.get", h_result, NULL);
    zk_router_on(r, "nothing", h_nothing, NULL);
    zk_router_on(r, "echo", h_echo, NULL);
    zk_router_on(r, "explicit", h_ok_explicit, NULL);
    CHECK_EQ_INT(call(r, "users.get", "{\"id\":1}", &a), 0);
    CHECK_OK(a, "{\"id\":1,\"name\":\"ann \\\"a\\\"\\n\"}");
    CHECK_EQ_INT(a.code[0], '\0');
    CHECK_EQ_INT(call(r, "nothing", "{\"a\":[1,2]}", &a), 0);
    CHECK_OK(a, "null");
    CHECK_EQ_INT(call(r, "echo", " {\"a\" : [1, 2.5, \"\\u00e9\", null, true]} ", &a), 0);
    CHECK_OK(a, "{\"a\":[1,2.5,\"\xc3\xa9\",null,true]}");
    CHECK_EQ_INT(call(r, "echo", NULL, &a), 0); /* no payload */
    CHECK_OK(a, "null");
    CHECK_EQ_INT(call(r, "echo", "null", &a), 0);
    CHECK_OK(a, "null");
    ok_rc1 = -100;
    CHECK_EQ_INT(call(r, "explicit", NULL, &a), 0);
    CHECK_OK(a, "42");
    CHECK_EQ_INT(ok_rc1, 0);
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(the_writer_starts_empty_for_every_request) {
    zk_router *r = zk_router_new();
    answer_rec a;
    zk_router_on(r, "result", h_result, NULL);
    zk_router_on(r, "nothing", h_nothing, NULL);
    zk_router_on(r, "fail", h_fail_plain, NULL);
    CHECK_EQ_INT(call(r, "result", NULL, &a), 0);
    CHECK_EQ_INT(a.ok, 1);
    CHECK_EQ_INT(call(r, "nothing", NULL, &a), 0);
    CHECK_OK(a, "null");
    CHECK_EQ_INT(call(r, "result", NULL, &a), 0);
    CHECK_EQ_INT(call(r, "fail", NULL, &a), 0);
    CHECK_FAIL(a, "FORBIDDEN");
    CHECK_TEXT(a.data, "");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(unknown_route_is_not_found) {
    zk_router *r = zk_router_new();
    answer_rec a;
    CHECK_EQ_INT(call(r, "nobody.home", "{}", &a), 0);
    CHECK_FAIL(a, ZK_CODE_NOT_FOUND);
    CHECK(a.message[0] != '\0');
    CHECK_TEXT(a.data, "");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(fail_carries_app_codes_messages_and_data) {
    zk_router *r = zk_router_new();
    answer_rec a;
    zk_router_on(r, "room.join", h_fail_app, NULL);
    zk_router_on(r, "plain", h_fail_plain, NULL);
    zk_router_on(r, "half", h_fail_incomplete_data, NULL);
    CHECK_EQ_INT(call(r, "room.join", "{}", &a), 0);
    CHECK_FAIL(a, "ROOM_FULL");
    CHECK_TEXT(a.message, "room is full");
    CHECK_TEXT(a.data, "{\"max\":10}");
    CHECK_EQ_INT(call(r, "plain", NULL, &a), 0);
    CHECK_FAIL(a, "FORBIDDEN");
    CHECK_TEXT(a.message, "not yours");
    CHECK_TEXT(a.data, "");
    CHECK_EQ_INT(call(r, "half", NULL, &a), 0);
    CHECK_FAIL(a, "NOPE");
    CHECK_TEXT(a.message, "half written");
    CHECK_TEXT(a.data, "");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(internal_message_is_shown_by_the_caller) {
    zk_router *r = zk_router_new();
    answer_rec a;
    zk_router_on(r, "boom", h_fail_internal, NULL);
    CHECK_EQ_INT(call(r, "boom", NULL, &a), 0);
    CHECK_FAIL(a, ZK_CODE_INTERNAL);
    CHECK_TEXT(a.message, "db down: 42");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(writer_misuse_answers_internal) {
    zk_router *r = zk_router_new();
    answer_rec a;
    zk_router_on(r, "key", h_misuse_key, NULL);
    zk_router_on(r, "nan", h_misuse_nan, NULL);
    zk_router_on(r, "end", h_misuse_end, NULL);
    zk_router_on(r, "ok", h_misuse_ok, NULL);
    zk_router_on(r, "incomplete", h_incomplete, NULL);
    CHECK_EQ_INT(call(r, "incomplete", NULL, &a), 0);
    CHECK_FAIL(a, ZK_CODE_INTERNAL);
    CHECK_EQ_INT(call(r, "key", NULL, &a), 0);
    CHECK_FAIL(a, ZK_CODE_INTERNAL);
    CHECK_EQ_INT(call(r, "nan", NULL, &a), 0);
    CHECK_FAIL(a, ZK_CODE_INTERNAL);
    CHECK_EQ_INT(call(r, "end", NULL, &a), 0);
    CHECK_FAIL(a, ZK_CODE_INTERNAL);
    CHECK_EQ_INT(call(r, "ok", NULL, &a), 0);
    CHECK_FAIL(a, ZK_CODE_INTERNAL);
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(fail_without_a_message_uses_the_default_text) {
    static const char *const codes[] = {ZK_CODE_BAD_REQUEST, ZK_CODE_NOT_FOUND, ZK_CODE_INVALID_INPUT,
                                        ZK_CODE_UNAUTHORIZED, ZK_CODE_FORBIDDEN, ZK_CODE_TIMEOUT,
                                        ZK_CODE_TOO_MANY_REQUESTS, ZK_CODE_PAYLOAD_TOO_LARGE,
                                        ZK_CODE_INTERNAL, "MY_OWN_CODE"};
    size_t i;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        zk_router *r = zk_router_new();
        zk_route_opts o;
        answer_rec a;
        memset(&o, 0, sizeof o);
        o.data = (void *)codes[i];
        zk_router_on(r, "x", h_fail_null_message, &o);
        CHECK_EQ_INT(call(r, "x", NULL, &a), 0);
        CHECK_FAIL(a, codes[i]);
        CHECK(a.message[0] != '\0');
        CHECK(strstr(a.message, "(null)") == NULL);
        if (getenv("TEST_VERBOSE")) printf("  %s: \"%s\"\n", codes[i], a.message);
        zk_router_free(r);
    }
    CHECK_ALL_FREED();
}

TEST(the_answer_arrives_exactly_once) {
    zk_router *r = zk_router_new();
    answer_rec a;
    zk_router_on(r, "twice", h_ok_twice, NULL);
    zk_router_on(r, "fail.ok", h_fail_then_ok, NULL);
    zk_router_on(r, "ok.fail", h_ok_then_fail, NULL);
    ok_rc1 = ok_rc2 = -100;
    CHECK_EQ_INT(call(r, "twice", NULL, &a), 0);
    CHECK_OK(a, "1");
    CHECK_EQ_INT(ok_rc1, 0);
    CHECK(ok_rc2 < 0);
    ok_rc1 = ok_rc2 = -100;
    CHECK_EQ_INT(call(r, "fail.ok", NULL, &a), 0);
    CHECK_FAIL(a, "CONFLICT");
    CHECK_TEXT(a.message, "first");
    CHECK_EQ_INT(ok_rc1, 0);
    CHECK(ok_rc2 < 0);
    ok_rc1 = ok_rc2 = -100;
    CHECK_EQ_INT(call(r, "ok.fail", NULL, &a), 0);
    CHECK_OK(a, "5");
    CHECK_EQ_INT(ok_rc1, 0);
    CHECK(ok_rc2 < 0);
    zk_router_free(r);
    CHECK_ALL_FREED();
}

static zk_str seen_type;
static char seen_type_buf[64];
static int seen_is_call = -1, seen_conn_null = -1, seen_app_null = -1;
static void h_inspect(zk_request *req) {
    seen_type = zk_request_type(req);
    copy_view(seen_type_buf, sizeof seen_type_buf, seen_type);
    seen_is_call = zk_request_is_call(req);
    seen_conn_null = zk_request_conn(req) == NULL;
    seen_app_null = zk_request_app(req) == NULL;
}

TEST(a_caller_request_is_a_call_without_conn_or_app) {
    zk_router *r = zk_router_new();
    answer_rec a;
    zk_router_on(r, "look.here", h_inspect, NULL);
    CHECK_EQ_INT(call(r, "look.here", NULL, &a), 0);
    CHECK_OK(a, "null");
    CHECK_TEXT(seen_type_buf, "look.here");
    CHECK_EQ_INT(seen_is_call, 1);
    CHECK_EQ_INT(seen_conn_null, 1);
    CHECK_EQ_INT(seen_app_null, 1);
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(malformed_payload_is_bad_request_and_runs_nothing) {
    static const char *const bad[] = {"{", "{\"a\":}", "[1,]", "nul", "'x'", "{} {}", "\"\xff\"",
                                      "1 2", "{\"a\" 1}", "\"unterminated"};
    zk_router *r = zk_router_new();
    size_t i;
    answer_rec a;
    zk_router_use(r, mw_top);
    zk_router_on(r, "x", h_trace, NULL);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        trace[0] = '\0';
        CHECK_EQ_INT(call(r, "x", bad[i], &a), 0);
        CHECK_FAIL(a, ZK_CODE_BAD_REQUEST);
        CHECK(a.message[0] != '\0');
        CHECK_TEXT(trace, "");
    }
    /* a payload with a NUL inside its length is malformed too */
    trace[0] = '\0';
    memset(&a, 0, sizeof a);
    CHECK_EQ_INT(zk_router_call(r, "x", "{}\0{}", 5, NULL, on_answer, &a), 0);
    CHECK_FAIL(a, ZK_CODE_BAD_REQUEST);
    CHECK_TEXT(trace, "");
    /* only payload_len bytes are read */
    memset(&a, 0, sizeof a);
    CHECK_EQ_INT(zk_router_call(r, "x", "[1]garbage", 3, NULL, on_answer, &a), 0);
    CHECK_OK(a, "null");
    CHECK_TEXT(trace, "top,H");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(payload_is_copied_by_the_caller) {
    zk_router *r = zk_router_new();
    char buf[32];
    answer_rec a;
    zk_router_on(r, "echo", h_echo, NULL);
    strcpy(buf, "\"a\\u0041b\"");
    memset(&a, 0, sizeof a);
    CHECK_EQ_INT(zk_router_call(r, "echo", buf, strlen(buf), NULL, on_answer, &a), 0);
    CHECK_OK(a, "\"aAb\"");
    CHECK_TEXT(buf, "\"a\\u0041b\""); /* escapes were decoded in a copy */
    zk_router_free(r);
    CHECK_ALL_FREED();
}

/* ---- schemas ------------------------------------------------------------ */

/* Runs zk_schema_check on a JSON text; the issues written go to out (""
   when the writer holds no complete value). Returns the issue count. */
static size_t schema_issues(const zk_schema *s, const char *json, char *out, size_t cap) {
    zk_doc doc;
    zk_writer w;
    char *buf = (char *)malloc(strlen(json) + 1);
    size_t n;
    int rc;
    zk_str res;
    strcpy(buf, json);
    zk_doc_init(&doc);
    rc = zk_json_parse(&doc, buf, strlen(buf));
    CHECK_EQ_INT(rc, 0);
    zk_writer_init(&w, NULL, 0);
    n = zk_schema_check(s, zk_doc_root(&doc), &w);
    CHECK_EQ_INT(zk_schema_check(s, zk_doc_root(&doc), NULL), n); /* w may be NULL */
    res = zk_writer_result(&w);
    copy_view(out, cap, res);
    zk_writer_free(&w);
    zk_doc_free(&doc);
    free(buf);
    return n;
}

#define SCHEMA_OK(s, json)                                                    \
    do {                                                                      \
        char out_[4096];                                                      \
        size_t n_ = schema_issues((s), (json), out_, sizeof out_);            \
        if (n_ != 0) printf("  %s should pass: %s\n", json, out_);           \
        CHECK_EQ_INT(n_, 0);                                                  \
    } while (0)

/* One issue, at this path, with this message. */
#define SCHEMA_ISSUE(s, json, path, msg)                                      \
    do {                                                                      \
        char out_[4096];                                                      \
        size_t n_ = schema_issues((s), (json), out_, sizeof out_);            \
        CHECK_EQ_INT(n_, 1);                                                  \
        CHECK_TEXT(out_, "[{\"path\":\"" path "\",\"message\":\"" msg "\"}]"); \
    } while (0)

#define FIELD(name, type, flags, lo, hi) {name, type, flags, lo, hi, NULL, NULL}
#define END_FIELDS {NULL, 0, 0, 0, 0, NULL, NULL}
#define ROOT(type, flags, lo, hi, fields, items) {NULL, type, flags, lo, hi, fields, items}

TEST(schema_every_type) {
    static const zk_schema any = ROOT(ZK_TYPE_NONE, 0, 0, 0, NULL, NULL);
    static const zk_schema null_ = ROOT(ZK_TYPE_NULL, 0, 0, 0, NULL, NULL);
    static const zk_schema bool_ = ROOT(ZK_TYPE_BOOL, 0, 0, 0, NULL, NULL);
    static const zk_schema int_ = ROOT(ZK_TYPE_INT, 0, 0, 0, NULL, NULL);
    static const zk_schema dbl = ROOT(ZK_TYPE_DOUBLE, 0, 0, 0, NULL, NULL);
    static const zk_schema str = ROOT(ZK_TYPE_STRING, 0, 0, 0, NULL, NULL);
    static const zk_schema bin = ROOT(ZK_TYPE_BINARY, 0, 0, 0, NULL, NULL);
    static const zk_schema arr = ROOT(ZK_TYPE_ARRAY, 0, 0, 0, NULL, NULL);
    static const zk_schema obj = ROOT(ZK_TYPE_OBJECT, 0, 0, 0, NULL, NULL);
    static const char *const values[] = {"null", "true", "7", "1.5", "\"s\"", "[1]", "{\"a\":1}"};
    /* which of the values each schema accepts */
    static const struct { const zk_schema *s; const char *accepts; } table[] = {
        {&any, "1111111"}, {&null_, "1000000"}, {&bool_, "0100000"}, {&int_, "0010000"},
        {&dbl, "0011000"}, {&str, "0000100"}, {&bin, "0000000"}, {&arr, "0000010"}, {&obj, "0000001"}};
    size_t i, j;
    for (i = 0; i < sizeof table / sizeof table[0]; i++) {
        for (j = 0; j < 7; j++) {
            char out[1024];
            size_t n = schema_issues(table[i].s, values[j], out, sizeof out);
            int want_ok = table[i].accepts[j] == '1';
            if ((n == 0) != want_ok)
                printf("  schema of type %s on %s: %lu issues %s\n", zk_type_name(table[i].s->type),
                       values[j], (unsigned long)n, out);
            CHECK_EQ_INT(n == 0, want_ok);
        }
    }
}

TEST(schema_int_and_double) {
    static const zk_schema int_ = ROOT(ZK_TYPE_INT, 0, 0, 0, NULL, NULL);
    static const zk_schema dbl = ROOT(ZK_TYPE_DOUBLE, 0, 0, 0, NULL, NULL);
    SCHEMA_OK(&int_, "2");
    SCHEMA_OK(&int_, "-9223372036854775808");
    SCHEMA_OK(&int_, "2.0"); /* "an integral number" */
    SCHEMA_OK(&int_, "1e3");
    SCHEMA_ISSUE(&int_, "1.5", "", "expected integer, got double");
    SCHEMA_ISSUE(&int_, "\"2\"", "", "expected integer, got string");
    SCHEMA_OK(&dbl, "2");
    SCHEMA_OK(&dbl, "-0.5e-3");
    SCHEMA_ISSUE(&dbl, "true", "", "expected number, got bool");
}

/* Integral numbers no int64 holds are not integers. (Run last: a float
   to integer conversion out of range stops the run under UBSan.) */
TEST(schema_int_refuses_integral_numbers_out_of_int64_range) {
    static const zk_schema int_ = ROOT(ZK_TYPE_INT, 0, 0, 0, NULL, NULL);
    SCHEMA_OK(&int_, "9.2e18");
    SCHEMA_OK(&int_, "-9223372036854775808.0");
    SCHEMA_ISSUE(&int_, "9.25e18", "", "expected integer, got double");
    SCHEMA_ISSUE(&int_, "9223372036854775808.0", "", "expected integer, got double");
    SCHEMA_ISSUE(&int_, "-1e19", "", "expected integer, got double");
    SCHEMA_ISSUE(&int_, "1e300", "", "expected integer, got double");
}

TEST(schema_min_and_max) {
    static const zk_schema s_len = ROOT(ZK_TYPE_STRING, ZK_SCHEMA_MIN | ZK_SCHEMA_MAX, 2, 4, NULL, NULL);
    static const zk_schema s_min = ROOT(ZK_TYPE_STRING, ZK_SCHEMA_MIN, 1, 0, NULL, NULL);
    static const zk_schema n_rng = ROOT(ZK_TYPE_DOUBLE, ZK_SCHEMA_MIN | ZK_SCHEMA_MAX, -1.5, 10, NULL, NULL);
    static const zk_schema i_max = ROOT(ZK_TYPE_INT, ZK_SCHEMA_MAX, 0, 100, NULL, NULL);
    static const zk_schema a_cnt = ROOT(ZK_TYPE_ARRAY, ZK_SCHEMA_MIN | ZK_SCHEMA_MAX, 1, 3, NULL, NULL);
    static const zk_schema o_cnt = ROOT(ZK_TYPE_OBJECT, ZK_SCHEMA_MIN | ZK_SCHEMA_MAX, 1, 2, NULL, NULL);
    static const zk_schema no_flags = ROOT(ZK_TYPE_STRING, 0, 5, 6, NULL, NULL); /* min/max unchecked */
    /* strings: bytes, not characters */
    SCHEMA_OK(&s_len, "\"ab\"");
    SCHEMA_OK(&s_len, "\"abcd\"");
    SCHEMA_OK(&s_len, "\"\xc3\xa9\"");         /* one character, two bytes */
    SCHEMA_OK(&s_len, "\"\\u00e9\\u00e9\"");   /* four bytes once decoded */
    SCHEMA_ISSUE(&s_len, "\"a\"", "", "must be at least 2 bytes long");
    SCHEMA_ISSUE(&s_len, "\"abcde\"", "", "must be at most 4 bytes long");
    SCHEMA_ISSUE(&s_len, "\"\xe2\x82\xac\xe2\x82\xac\"", "", "must be at most 4 bytes long");
    SCHEMA_ISSUE(&s_min, "\"\"", "", "must be at least 1 bytes long");
    SCHEMA_OK(&no_flags, "\"\"");
    /* numbers: the value, bounds included */
    SCHEMA_OK(&n_rng, "-1.5");
    SCHEMA_OK(&n_rng, "10");
    SCHEMA_OK(&n_rng, "0");
    SCHEMA_ISSUE(&n_rng, "-1.6", "", "must be at least -1.5");
    SCHEMA_ISSUE(&n_rng, "10.001", "", "must be at most 10");
    SCHEMA_ISSUE(&n_rng, "11", "", "must be at most 10");
    SCHEMA_OK(&i_max, "-5");
    SCHEMA_OK(&i_max, "100");
    SCHEMA_ISSUE(&i_max, "101", "", "must be at most 100");
    /* arrays: elements */
    SCHEMA_OK(&a_cnt, "[0]");
    SCHEMA_OK(&a_cnt, "[[],[],[]]");
    SCHEMA_ISSUE(&a_cnt, "[]", "", "must have at least 1 items");
    SCHEMA_ISSUE(&a_cnt, "[1,2,3,4]", "", "must have at most 3 items");
    /* objects: members */
    SCHEMA_OK(&o_cnt, "{\"a\":1}");
    SCHEMA_OK(&o_cnt, "{\"a\":1,\"b\":2}");
    SCHEMA_ISSUE(&o_cnt, "{}", "", "must have at least 1 members");
    SCHEMA_ISSUE(&o_cnt, "{\"a\":1,\"b\":2,\"c\":3}", "", "must have at most 2 members");
}

static const zk_schema user_fields[] = {
    FIELD("name", ZK_TYPE_STRING, ZK_SCHEMA_MIN | ZK_SCHEMA_MAX, 1, 8),
    FIELD("age", ZK_TYPE_INT, ZK_SCHEMA_OPTIONAL | ZK_SCHEMA_MIN, 0, 0),
    FIELD("email", ZK_TYPE_STRING, ZK_SCHEMA_OPTIONAL | ZK_SCHEMA_NULLABLE, 0, 0),
    FIELD("nick", ZK_TYPE_STRING, ZK_SCHEMA_NULLABLE, 0, 0),
    END_FIELDS};
static const zk_schema item_fields[] = {FIELD("id", ZK_TYPE_INT, 0, 0, 0), END_FIELDS};
static const zk_schema item = ROOT(ZK_TYPE_OBJECT, ZK_SCHEMA_STRICT, 0, 0, item_fields, NULL);
static const zk_schema tags_item = ROOT(ZK_TYPE_STRING, ZK_SCHEMA_MAX, 0, 3, NULL, NULL);
static const zk_schema order_fields[] = {
    {"user", ZK_TYPE_OBJECT, 0, 0, 0, user_fields, NULL},
    {"items", ZK_TYPE_ARRAY, ZK_SCHEMA_MAX, 0, 4, NULL, &item},
    {"tags", ZK_TYPE_ARRAY, ZK_SCHEMA_OPTIONAL, 0, 0, NULL, &tags_item},
    END_FIELDS};
static const zk_schema order = ROOT(ZK_TYPE_OBJECT, ZK_SCHEMA_STRICT, 0, 0, order_fields, NULL);

TEST(schema_required_optional_and_nullable) {
    SCHEMA_OK(&order, "{\"user\":{\"name\":\"ann\",\"nick\":null},\"items\":[]}");
    SCHEMA_OK(&order, "{\"user\":{\"name\":\"ann\",\"nick\":\"a\",\"age\":3,\"email\":null},\"items\":[]}");
    SCHEMA_OK(&order, "{\"user\":{\"name\":\"ann\",\"nick\":\"a\",\"email\":\"x@y\"},\"items\":[{\"id\":1}],"
                      "\"tags\":[\"a\",\"abc\"]}");
    /* missing required members */
    SCHEMA_ISSUE(&order, "{\"user\":{\"name\":\"ann\"},\"items\":[]}", "user.nick", "required");
    SCHEMA_ISSUE(&order, "{\"user\":{\"name\":\"ann\",\"nick\":null}}", "items", "required");
    /* null where it is not allowed, even on an optional member */
    SCHEMA_ISSUE(&order, "{\"user\":{\"name\":null,\"nick\":null},\"items\":[]}", "user.name",
                 "expected string, got null");
    SCHEMA_ISSUE(&order, "{\"user\":{\"name\":\"a\",\"nick\":null,\"age\":null},\"items\":[]}", "user.age",
                 "expected integer, got null");
    SCHEMA_ISSUE(&order, "{\"user\":{\"name\":\"a\",\"nick\":null,\"age\":-1},\"items\":[]}", "user.age",
                 "must be at least 0");
    SCHEMA_ISSUE(&order, "{\"user\":{\"name\":\"a\",\"nick\":null},\"items\":[],\"tags\":null}", "tags",
                 "expected array, got null");
}

TEST(schema_nested_paths_and_strict) {
    SCHEMA_ISSUE(&order, "{\"user\":{\"name\":\"ann\",\"nick\":null},\"items\":[{\"id\":1},{\"id\":2},{\"id\":\"3\"}]}",
                 "items[2].id", "expected integer, got string");
    SCHEMA_ISSUE(&order, "{\"user\":{\"name\":\"ann\",\"nick\":null},\"items\":[{\"id\":1},5]}", "items[1]",
                 "expected object, got int");
    SCHEMA_ISSUE(&order, "{\"user\":{\"name\":\"ann\",\"nick\":null},\"items\":[{\"id\":1,\"x\":0}]}",
                 "items[0].x", "unknown member");
    SCHEMA_ISSUE(&order, "{\"user\":{\"name\":\"ann\",\"nick\":null},\"items\":[],\"extra\":true}", "extra",
                 "unknown member");
    /* user is not strict: unknown members pass */
    SCHEMA_OK(&order, "{\"user\":{\"name\":\"ann\",\"nick\":null,\"zzz\":1},\"items\":[]}");
    SCHEMA_ISSUE(&order, "{\"user\":{\"name\":\"ann\",\"nick\":null},\"items\":[],\"tags\":[\"abcd\"]}",
                 "tags[0]", "must be at most 3 bytes long");
    SCHEMA_ISSUE(&order, "[]", "", "expected object, got array");
    {
        char out[4096];
        size_t n = schema_issues(&order, "{\"user\":{\"name\":\"\",\"nick\":1},\"items\":[{},{\"id\":1.5}],\"q\":0}",
                                 out, sizeof out);
        CHECK_EQ_INT(n, 5);
        CHECK_TEXT(out, "[{\"path\":\"user.name\",\"message\":\"must be at least 1 bytes long\"},"
                        "{\"path\":\"user.nick\",\"message\":\"expected string, got int\"},"
                        "{\"path\":\"items[0].id\",\"message\":\"required\"},"
                        "{\"path\":\"items[1].id\",\"message\":\"expected integer, got double\"},"
                        "{\"path\":\"q\",\"message\":\"unknown member\"}]");
    }
}

TEST(schema_issues_are_capped) {
    static const zk_schema ints = ROOT(ZK_TYPE_INT, 0, 0, 0, NULL, NULL);
    static const zk_schema arr = ROOT(ZK_TYPE_ARRAY, 0, 0, 0, NULL, &ints);
    char json[512], out[8192];
    size_t n, i, count = 0;
    const char *p;
    strcpy(json, "[");
    for (i = 0; i < 40; i++) strcat(json, i ? ",\"x\"" : "\"x\"");
    strcat(json, "]");
    n = schema_issues(&arr, json, out, sizeof out);
    for (p = out; (p = strstr(p, "\"path\"")) != NULL; p++) count++;
    CHECK_EQ_INT(count, ZK_SCHEMA_MAX_ISSUES);
    CHECK_EQ_INT(n, 40); /* every issue is counted; the first 16 are written */
    CHECK(strstr(out, "{\"path\":\"[0]\",\"message\":\"expected integer, got string\"}") != NULL);
    CHECK(strstr(out, "\"[15]\"") != NULL);
    CHECK(strstr(out, "\"[16]\"") == NULL);
    if (getenv("TEST_VERBOSE")) printf("  40 bad elements: zk_schema_check returned %lu\n", (unsigned long)n);
}

TEST(schema_no_issues_writes_an_empty_list) {
    static const zk_schema any = ROOT(ZK_TYPE_NONE, 0, 0, 0, NULL, NULL);
    char out[64];
    CHECK_EQ_INT(schema_issues(&any, "{\"a\":1}", out, sizeof out), 0);
    CHECK_TEXT(out, "[]");
}

static void h_count(zk_request *req) {
    (void)req;
    note("H");
}

TEST(schema_failure_answers_invalid_input_and_runs_nothing) {
    zk_router *r = zk_router_new();
    zk_route_opts o;
    answer_rec a;
    memset(&o, 0, sizeof o);
    o.input = &order;
    zk_router_use(r, mw_top);
    CHECK_EQ_INT(zk_router_on(r, "order.place", h_count, &o), 0);
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "order.place", "{\"user\":{\"name\":\"ann\",\"nick\":null},\"items\":[{\"id\":\"x\"}]}", &a), 0);
    CHECK_FAIL(a, ZK_CODE_INVALID_INPUT);
    CHECK(a.message[0] != '\0');
    CHECK_TEXT(a.data, "{\"issues\":[{\"path\":\"items[0].id\",\"message\":\"expected integer, got string\"}]}");
    CHECK_TEXT(trace, ""); /* checked before any middleware */
    CHECK_EQ_INT(call(r, "order.place", NULL, &a), 0);
    CHECK_FAIL(a, ZK_CODE_INVALID_INPUT);
    CHECK_TEXT(a.data, "{\"issues\":[{\"path\":\"\",\"message\":\"required\"}]}");
    CHECK_TEXT(trace, "");
    CHECK_EQ_INT(call(r, "order.place", "{\"user\":{\"name\":\"ann\",\"nick\":null},\"items\":[{\"id\":7}]}", &a), 0);
    CHECK_OK(a, "null");
    CHECK_TEXT(trace, "top,H");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

/* ---- middleware and request values -------------------------------------- */

static int mw_g1(zk_request *req) { (void)req; note("g1"); return 0; }
static int mw_g2(zk_request *req) { (void)req; note("g2"); return 0; }
static int mw_r1(zk_request *req) { (void)req; note("r1"); return 0; }
static int mw_r2(zk_request *req) { (void)req; note("r2"); return 0; }
static int mw_reject(zk_request *req) {
    note("reject");
    zk_writer *w = zk_request_writer(req);
    zk_write_object(w);
    zk_write_key(w, "why");
    zk_write_str(w, "banned");
    zk_write_end(w);
    zk_request_fail(req, ZK_CODE_FORBIDDEN, "go away");
    return 1;
}
static int mw_nonzero(zk_request *req) { (void)req; note("nonzero"); return -7; }

TEST(middleware_runs_global_then_route_in_order) {
    zk_router *r = zk_router_new();
    static const zk_middleware_fn route_mw[] = {mw_r1, mw_r2};
    zk_route_opts o;
    answer_rec a;
    memset(&o, 0, sizeof o);
    o.middleware = route_mw;
    o.middleware_count = 2;
    CHECK_EQ_INT(zk_router_use(r, mw_g1), 0);
    CHECK_EQ_INT(zk_router_on(r, "with", h_trace, &o), 0);
    CHECK_EQ_INT(zk_router_on(r, "without", h_trace, NULL), 0);
    CHECK_EQ_INT(zk_router_use(r, mw_g2), 0); /* added after the routes: still runs */
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "with", NULL, &a), 0);
    CHECK_OK(a, "null");
    CHECK_TEXT(trace, "g1,g2,r1,r2,H");
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "without", NULL, &a), 0);
    CHECK_TEXT(trace, "g1,g2,H");
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "missing", NULL, &a), 0);
    CHECK_FAIL(a, "NOT_FOUND");
    CHECK_TEXT(trace, "");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(middleware_rejecting_stops_the_chain) {
    zk_router *r = zk_router_new();
    static const zk_middleware_fn reject_mw[] = {mw_r1, mw_reject, mw_r2};
    static const zk_middleware_fn nonzero_mw[] = {mw_nonzero, mw_r2};
    zk_route_opts o;
    answer_rec a;
    memset(&o, 0, sizeof o);
    zk_router_use(r, mw_g1);
    o.middleware = reject_mw;
    o.middleware_count = 3;
    zk_router_on(r, "reject", h_trace, &o);
    o.middleware = nonzero_mw;
    o.middleware_count = 2;
    zk_router_on(r, "nonzero", h_trace, &o);
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "reject", NULL, &a), 0);
    CHECK_FAIL(a, ZK_CODE_FORBIDDEN);
    CHECK_TEXT(a.message, "go away");
    CHECK_TEXT(a.data, "{\"why\":\"banned\"}");
    CHECK_TEXT(trace, "g1,r1,reject");
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "nonzero", NULL, &a), 0);
    CHECK_FAIL(a, ZK_CODE_INTERNAL);
    CHECK(a.message[0] != '\0');
    CHECK_TEXT(trace, "g1,nonzero");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(global_middleware_rejecting_runs_no_route_middleware) {
    zk_router *r = zk_router_new();
    static const zk_middleware_fn route_mw[] = {mw_r1};
    zk_route_opts o;
    answer_rec a;
    memset(&o, 0, sizeof o);
    o.middleware = route_mw;
    o.middleware_count = 1;
    zk_router_use(r, mw_reject);
    zk_router_use(r, mw_g2);
    zk_router_on(r, "x", h_trace, &o);
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "x", NULL, &a), 0);
    CHECK_FAIL(a, ZK_CODE_FORBIDDEN);
    CHECK_TEXT(trace, "reject");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

static int user_a = 1, user_b = 2, role_x = 3;
static int set_rcs[16];
static int mw_set_values(zk_request *req) {
    set_rcs[0] = zk_request_set(req, "user", &user_a);
    set_rcs[1] = zk_request_set(req, "role", &role_x);
    note(zk_request_get(req, "user") == &user_a ? "mw-sees-user" : "mw-no-user");
    return 0;
}
static int mw_replace_user(zk_request *req) {
    char key[8];
    strcpy(key, "user"); /* keys compare as strings, not pointers */
    set_rcs[2] = zk_request_set(req, "user", &user_b);
    note(zk_request_get(req, key) == &user_b ? "replaced" : "not-replaced");
    return 0;
}
static void h_values(zk_request *req) {
    note(zk_request_get(req, "user") == &user_b ? "H-user-b" : "H-wrong-user");
    note(zk_request_get(req, "role") == &role_x ? "H-role" : "H-no-role");
    note(zk_request_get(req, "absent") == NULL ? "H-absent" : "H-absent-set");
}

TEST(values_reach_the_handler_and_replace_by_key) {
    zk_router *r = zk_router_new();
    static const zk_middleware_fn mw[] = {mw_replace_user};
    zk_route_opts o;
    answer_rec a;
    memset(&o, 0, sizeof o);
    o.middleware = mw;
    o.middleware_count = 1;
    zk_router_use(r, mw_set_values);
    zk_router_on(r, "v", h_values, &o);
    zk_router_on(r, "other", h_values, NULL);
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "v", NULL, &a), 0);
    CHECK_OK(a, "null");
    CHECK_TEXT(trace, "mw-sees-user,replaced,H-user-b,H-role,H-absent");
    CHECK_EQ_INT(set_rcs[0], 0);
    CHECK_EQ_INT(set_rcs[1], 0);
    CHECK_EQ_INT(set_rcs[2], 0);
    /* values do not carry over from one request to the next */
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "other", NULL, &a), 0);
    CHECK_TEXT(trace, "mw-sees-user,H-wrong-user,H-role,H-absent");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

static const char *const value_keys[] = {"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7",
                                         "k8", "k9", "k10", "k11", "k12", "k13", "k14", "k15"};
static int fill_rc_over, fill_rc_replace, fill_rc_over_again;
static int slots[16];
static int mw_fill(zk_request *req) {
    int i;
    for (i = 0; i < ZK_REQUEST_MAX_VALUES; i++)
        if (zk_request_set(req, value_keys[i], &slots[i]) != 0) note("set-failed");
    fill_rc_over = zk_request_set(req, value_keys[ZK_REQUEST_MAX_VALUES], &slots[15]);
    fill_rc_replace = zk_request_set(req, value_keys[0], &slots[15]);
    fill_rc_over_again = zk_request_set(req, value_keys[ZK_REQUEST_MAX_VALUES + 1], &slots[15]);
    return 0;
}
static void h_fill(zk_request *req) {
    int i, good = 1;
    for (i = 1; i < ZK_REQUEST_MAX_VALUES; i++)
        if (zk_request_get(req, value_keys[i]) != &slots[i]) good = 0;
    if (zk_request_get(req, value_keys[0]) != &slots[15]) good = 0;
    if (zk_request_get(req, value_keys[ZK_REQUEST_MAX_VALUES]) != NULL) good = 0;
    note(good ? "values-good" : "values-bad");
}

TEST(values_past_the_limit_are_refused) {
    zk_router *r = zk_router_new();
    answer_rec a;
    zk_router_use(r, mw_fill);
    zk_router_on(r, "fill", h_fill, NULL);
    trace[0] = '\0';
    CHECK_EQ_INT(call(r, "fill", NULL, &a), 0);
    CHECK_OK(a, "null");
    CHECK_EQ_INT(fill_rc_over, ZK_ENOSPACE);
    CHECK_EQ_INT(fill_rc_replace, 0);
    CHECK_EQ_INT(fill_rc_over_again, ZK_ENOSPACE);
    CHECK_TEXT(trace, "values-good");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

static int ctx_one = 11, ctx_two = 22;
static int mw_ctx(zk_request *req) {
    note(zk_request_context(req) == &ctx_one ? "mw-ctx-one" : "mw-ctx-other");
    zk_request_set_context(req, &ctx_two);
    return 0;
}
static void h_ctx(zk_request *req) {
    note(zk_request_context(req) == &ctx_two ? "H-ctx-two" : "H-ctx-other");
    note(zk_request_route_data(req) == (void *)&ctx_one ? "H-data" : "H-no-data");
}

TEST(context_and_route_data_are_visible) {
    zk_router *r = zk_router_new();
    zk_route_opts o;
    answer_rec a;
    memset(&o, 0, sizeof o);
    o.data = &ctx_one;
    zk_router_use(r, mw_ctx);
    zk_router_on(r, "c", h_ctx, &o);
    zk_router_on(r, "nodata", h_route_data, NULL);
    trace[0] = '\0';
    CHECK_EQ_INT(call_ctx(r, "c", NULL, &ctx_one, &a), 0);
    CHECK_OK(a, "null");
    CHECK_TEXT(trace, "mw-ctx-one,H-ctx-two,H-data");
    trace[0] = '\0';
    CHECK_EQ_INT(call_ctx(r, "nodata", NULL, NULL, &a), 0);
    CHECK_TEXT(trace, "mw-ctx-other,(null)");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

/* A handler calls the router again (the same router), then reads its own
   payload: the inner call has buffers of its own. */
static zk_router *nested_router;
static void h_outer(zk_request *req) {
    answer_rec inner;
    zk_writer *w = zk_request_writer(req);
    memset(&inner, 0, sizeof inner);
    zk_router_call(nested_router, "inner", "{\"x\":[\"inner\\u0041\"]}", 21, NULL, on_answer, &inner);
    zk_write_object(w);
    zk_write_key(w, "inner_calls");
    zk_write_int(w, inner.calls);
    zk_write_key(w, "inner");
    zk_write_str(w, inner.data);
    zk_write_key(w, "mine");
    zk_write_value(w, zk_request_payload(req));
    zk_write_end(w);
}

TEST(a_handler_can_call_the_router_again) {
    zk_router *r = zk_router_new();
    answer_rec a;
    nested_router = r;
    zk_router_on(r, "outer", h_outer, NULL);
    zk_router_on(r, "inner", h_echo, NULL);
    CHECK_EQ_INT(call(r, "outer", "{\"mine\":\"\\u00e9 outer\"}", &a), 0);
    CHECK_OK(a, "{\"inner_calls\":1,\"inner\":\"{\\\"x\\\":[\\\"innerA\\\"]}\",\"mine\":{\"mine\":\"\xc3\xa9 outer\"}}");
    zk_router_free(r);
    CHECK_ALL_FREED();
}

/* ---- kept requests ------------------------------------------------------ */

static zk_request *kept;
static int kept_payload_type = -1;
static int mw_keep_value(zk_request *req) {
    zk_request_set(req, "who", &user_a);
    return 0;
}
static void h_keep(zk_request *req) {
    kept = zk_request_keep(req);
    if (kept) kept_payload_type = zk_value_type(zk_request_payload(kept));
    note(kept ? "kept" : "keep-failed");
}

TEST(kept_request_is_answered_later) {
    zk_router *r = zk_router_new();
    answer_rec a;
    zk_writer *w;
    char type[64];
    zk_router_use(r, mw_keep_value);
    zk_router_on(r, "slow.job", h_keep, NULL);
    trace[0] = '\0';
    kept = NULL;
    CHECK_EQ_INT(call_ctx(r, "slow.job", "{\"n\":[1,2,3]}", &ctx_one, &a), 0);
    CHECK_TEXT(trace, "kept");
    CHECK_EQ_INT(a.calls, 0); /* not answered yet */
    CHECK(kept != NULL);
    if (!kept) {
        zk_router_free(r);
        return;
    }
    CHECK_EQ_INT(kept_payload_type, ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_request_payload(kept)), ZK_TYPE_NONE);
    copy_view(type, sizeof type, zk_request_type(kept));
    CHECK_TEXT(type, "slow.job");
    CHECK_EQ_INT(zk_request_is_call(kept), 1);
    CHECK(zk_request_context(kept) == &ctx_one);
    CHECK(zk_request_get(kept, "who") == &user_a);
    CHECK(zk_request_conn(kept) == NULL);
    w = zk_request_writer(kept);
    zk_write_array(w);
    zk_write_str(w, "done");
    zk_write_end(w);
    CHECK_EQ_INT(a.calls, 0);
    CHECK_EQ_INT(zk_request_ok(kept), 0);
    CHECK_OK(a, "[\"done\"]");
    kept = NULL;
    zk_router_free(r);
    CHECK_ALL_FREED();
}

TEST(kept_request_can_fail_later) {
    zk_router *r = zk_router_new();
    answer_rec a;
    zk_router_on(r, "slow.job", h_keep, NULL);
    kept = NULL;
    CHECK_EQ_INT(call(r, "slow.job", NULL, &a), 0);
    CHECK_EQ_INT(a.calls, 0);
    CHECK(kept != NULL);
    if (kept) {
        zk_write_int(zk_request_writer(kept), 3);
        CHECK_EQ_INT(zk_request_fail(kept, "GONE", "it went"), 0);
        CHECK_FAIL(a, "GONE");
        CHECK_TEXT(a.message, "it went");
        CHECK_TEXT(a.data, "3");
    }
    kept = NULL;
    zk_router_free(r);
    CHECK_ALL_FREED();
}

/* Several kept requests at once are independent. */
static zk_request *kept_many[8];
static int kept_n;
static void h_keep_many(zk_request *req) { kept_many[kept_n++] = zk_request_keep(req); }

TEST(several_kept_requests_are_answered_in_any_order) {
    zk_router *r = zk_router_new();
    answer_rec a[4];
    int i;
    zk_router_on(r, "k", h_keep_many, NULL);
    kept_n = 0;
    for (i = 0; i < 4; i++) CHECK_EQ_INT(call(r, "k", "1", &a[i]), 0);
    CHECK_EQ_INT(kept_n, 4);
    for (i = 3; i >= 0; i--) {
        if (!kept_many[i]) continue;
        zk_write_int(zk_request_writer(kept_many[i]), i);
        CHECK_EQ_INT(zk_request_ok(kept_many[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        char want[16];
        snprintf(want, sizeof want, "%d", i);
        CHECK_OK(a[i], want);
    }
    zk_router_free(r);
    CHECK_ALL_FREED();
}

/* ---- out of memory -------------------------------------------------------- */

/* Every allocation in registration and in a call fails in turn: each
   function reports ZK_ENOMEM (or manages without), a call is answered at
   most once, and exactly once when zk_router_call returns 0; nothing leaks. */
TEST(each_allocation_can_fail) {
    long k, failures = 0;
    for (k = 1; k < 400; k++) {
        zk_router *r, *sub;
        answer_rec a;
        int rc, rc2, rc3, rc4;
        zk_route_opts o;
        static const zk_middleware_fn mw[] = {mw_r1};
        lib_alloc_calls = 0;
        lib_fail_at = k;
        r = zk_router_new();
        if (!r) {
            failures++;
            lib_fail_at = 0;
            CHECK_ALL_FREED();
            continue;
        }
        memset(&o, 0, sizeof o);
        o.input = &order;
        o.middleware = mw;
        o.middleware_count = 1;
        rc = zk_router_on(r, "order.place", h_echo, &o);
        CHECK(rc == 0 || rc == ZK_ENOMEM);
        rc2 = zk_router_use(r, mw_g1);
        CHECK(rc2 == 0 || rc2 == ZK_ENOMEM);
        sub = zk_router_new();
        rc3 = ZK_ENOMEM;
        if (sub) {
            int s1 = zk_router_on(sub, "get", h_result, NULL);
            CHECK(s1 == 0 || s1 == ZK_ENOMEM);
            rc3 = zk_router_mount(r, "users", sub);
            CHECK(rc3 == 0 || rc3 == ZK_ENOMEM);
            if (rc3 == 0) CHECK_EQ_INT(zk_router_count(r), (size_t)(rc == 0) + (size_t)(s1 == 0));
            zk_router_free(sub);
        }
        trace[0] = '\0';
        rc4 = call(r, "order.place", "{\"user\":{\"name\":\"ann\",\"nick\":null},\"items\":[{\"id\":7}]}", &a);
        CHECK(rc4 == 0 || rc4 == ZK_ENOMEM);
        CHECK_EQ_INT(a.calls, rc4 == 0 ? 1 : 0);
        if (rc4 == 0 && rc == 0 && a.ok) CHECK_TEXT(a.data, "{\"user\":{\"name\":\"ann\",\"nick\":null},\"items\":[{\"id\":7}]}");
        rc4 = call(r, "order.place", "{\"user\":1}", &a);
        CHECK(rc4 == 0 || rc4 == ZK_ENOMEM);
        CHECK_EQ_INT(a.calls, rc4 == 0 ? 1 : 0);
        kept = NULL;
        rc = zk_router_on(r, "keep", h_keep, NULL);
        CHECK(rc == 0 || rc == ZK_ENOMEM);
        rc4 = call(r, "keep", "[1]", &a);
        CHECK(rc4 == 0 || rc4 == ZK_ENOMEM);
        if (rc4 == 0 && rc != 0) {
            CHECK_FAIL(a, ZK_CODE_NOT_FOUND);
        } else if (rc4 == 0 && kept) {
            CHECK_EQ_INT(a.calls, 0);
            zk_request_ok(kept);
            CHECK_EQ_INT(a.calls, 1);
        } else if (rc4 == 0) {
            CHECK_FAIL(a, ZK_CODE_INTERNAL); /* keep failed: the call gets INTERNAL */
        }
        kept = NULL;
        zk_router_free(r);
        lib_fail_at = 0;
        CHECK_ALL_FREED();
        if (lib_alloc_calls < k) break; /* every allocation has failed once */
        failures++;
    }
    lib_fail_at = 0;
    CHECK(failures > 5);
    if (getenv("TEST_VERBOSE")) printf("  %ld allocations failed in turn\n", failures);
}

int main(void) {
    (void)guard_alloc;
    (void)guard_free;
    RUN(valid_names_register_and_are_counted);
    RUN(bad_names_are_refused_and_nothing_is_added);
    RUN(duplicate_names_and_null_handlers_are_refused);
    RUN(lookups_are_exact);
    RUN(mount_prefixes_names_and_runs_sub_middleware_first);
    RUN(mount_under_a_dotted_prefix_and_twice);
    RUN(mount_collision_or_bad_prefix_adds_nothing);
    RUN(mount_of_an_empty_router_adds_nothing);
    RUN(result_written_is_the_answer);
    RUN(the_writer_starts_empty_for_every_request);
    RUN(unknown_route_is_not_found);
    RUN(fail_carries_app_codes_messages_and_data);
    RUN(internal_message_is_shown_by_the_caller);
    RUN(writer_misuse_answers_internal);
    RUN(fail_without_a_message_uses_the_default_text);
    RUN(the_answer_arrives_exactly_once);
    RUN(a_caller_request_is_a_call_without_conn_or_app);
    RUN(malformed_payload_is_bad_request_and_runs_nothing);
    RUN(payload_is_copied_by_the_caller);
    RUN(schema_every_type);
    RUN(schema_int_and_double);
    RUN(schema_min_and_max);
    RUN(schema_required_optional_and_nullable);
    RUN(schema_nested_paths_and_strict);
    RUN(schema_issues_are_capped);
    RUN(schema_no_issues_writes_an_empty_list);
    RUN(schema_failure_answers_invalid_input_and_runs_nothing);
    RUN(middleware_runs_global_then_route_in_order);
    RUN(middleware_rejecting_stops_the_chain);
    RUN(global_middleware_rejecting_runs_no_route_middleware);
    RUN(values_reach_the_handler_and_replace_by_key);
    RUN(values_past_the_limit_are_refused);
    RUN(context_and_route_data_are_visible);
    RUN(a_handler_can_call_the_router_again);
    RUN(kept_request_is_answered_later);
    RUN(kept_request_can_fail_later);
    RUN(several_kept_requests_are_answered_in_any_order);
    RUN(each_allocation_can_fail);
    RUN(schema_int_refuses_integral_numbers_out_of_int64_range);
    return test_summary();
}
