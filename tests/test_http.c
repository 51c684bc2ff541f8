/* Unit tests for the HTTP/1.1 head parsers and the WebSocket upgrade, both
   sides: zk_http_parse_request/response, headers, limits, zk_ws_upgrade_*,
   zk_http_write_response, zk_ws_client_request/verify. Every parser input is
   also run, with each of its prefixes, against an unmapped page. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS for test.h's guard pages under -std=c99 */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"
#include "test.h"

#define IN(lit) lit, sizeof(lit) - 1

/* The opening handshake of RFC 6455 section 1.2 (client and server). */
static const char rfc_request[] =
    "GET /chat HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";
static const char rfc_response[] =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "Sec-WebSocket-Protocol: chat\r\n"
    "\r\n";
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static const char *const chat_super[] = {"chat", "superchat"};

/* Parsed objects are big (64 headers); one of each is reused. */
static zk_http_request req;
static zk_http_response res;

static int parse_req(const char *s, size_t len) {
    return zk_http_parse_request(s, len, 0, &req, NULL);
}
static int parse_res(const char *s, size_t len) {
    return zk_http_parse_response(s, len, 0, &res, NULL);
}

static zk_str req_header(const char *name) {
    return zk_http_header_get(req.headers, req.header_count, name);
}
static zk_str res_header(const char *name) {
    return zk_http_header_get(res.headers, res.header_count, name);
}

static int inside(zk_str s, const char *buf, size_t len) {
    return s.ptr >= buf && s.ptr + s.len <= buf + len;
}

/* A growing string for long generated heads. */
typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void text_add(text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->p = (char *)realloc(t->p, t->cap);
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}
static void text_str(text *t, const char *s) { text_add(t, s, strlen(s)); }
static void text_rep(text *t, char c, size_t n) {
    while (n--) text_add(t, &c, 1);
}

/* ---- valid requests ---- */

TEST(request_rfc6455_example) {
    size_t len = sizeof rfc_request - 1, i;
    CHECK_EQ_INT(parse_req(rfc_request, len), len);
    CHECK_STR(req.method, "GET");
    CHECK_STR(req.target, "/chat");
    CHECK_STR(req.path, "/chat");
    CHECK_EQ_INT(req.query.len, 0);
    CHECK_EQ_INT(req.version, 11);
    CHECK_EQ_INT(req.header_count, 7);
    CHECK_STR(req.headers[0].name, "Host");
    CHECK_STR(req.headers[0].value, "server.example.com");
    CHECK_STR(req.headers[6].name, "Sec-WebSocket-Version");
    CHECK_STR(req.headers[6].value, "13");
    CHECK_STR(req_header("Sec-WebSocket-Key"), "dGhlIHNhbXBsZSBub25jZQ==");
    CHECK_STR(req_header("Sec-WebSocket-Protocol"), "chat, superchat");
    CHECK(req.status == 0 && req.error == NULL);
    for (i = 0; i < req.header_count; i++) /* zero-copy: views into the input */
        CHECK(inside(req.headers[i].name, rfc_request, len) &&
              inside(req.headers[i].value, rfc_request, len));
    CHECK(inside(req.method, rfc_request, len) && inside(req.target, rfc_request, len));
}

TEST(header_names_any_case) {
    CHECK(parse_req(IN(rfc_request)) > 0);
    CHECK_STR(req_header("host"), "server.example.com");
    CHECK_STR(req_header("HOST"), "server.example.com");
    CHECK_STR(req_header("sec-websocket-key"), "dGhlIHNhbXBsZSBub25jZQ==");
    CHECK_STR(req_header("SEC-WEBSOCKET-VERSION"), "13");
    CHECK(req_header("Hos").ptr == NULL);
    CHECK(req_header("Hostx").ptr == NULL);
    CHECK(req_header("X-Missing").ptr == NULL && req_header("X-Missing").len == 0);
    /* The first of repeated headers. */
    CHECK(parse_req(IN("GET / HTTP/1.1\r\nx-a: 1\r\nX-A: 2\r\n\r\n")) > 0);
    CHECK_STR(req_header("X-a"), "1");
}

TEST(connection_list_with_keep_alive) {
    CHECK(parse_req(IN("GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n")) > 0);
    CHECK(zk_http_list_has(req_header("Connection"), "upgrade"));
    CHECK(zk_http_list_has(req_header("Connection"), "Keep-Alive"));
    CHECK(!zk_http_list_has(req_header("Connection"), "close"));
}

TEST(list_has) {
    zk_str none = {NULL, 0};
    CHECK(zk_http_list_has(zk_str_c("Upgrade"), "upgrade"));
    CHECK(zk_http_list_has(zk_str_c("keep-alive,Upgrade"), "upgrade"));
    CHECK(zk_http_list_has(zk_str_c("  upgrade\t "), "Upgrade"));
    CHECK(zk_http_list_has(zk_str_c(",, ,upgrade,,"), "upgrade"));
    CHECK(zk_http_list_has(zk_str_c("a , b\t,\tc"), "b"));
    CHECK(zk_http_list_has(zk_str_c("a , b\t,\tc"), "c"));
    CHECK(!zk_http_list_has(zk_str_c("upgrades"), "upgrade"));
    CHECK(!zk_http_list_has(zk_str_c("upgrad"), "upgrade"));
    CHECK(!zk_http_list_has(zk_str_c("up grade"), "upgrade"));
    CHECK(!zk_http_list_has(zk_str_c("keep-alive;upgrade"), "upgrade"));
    CHECK(!zk_http_list_has(zk_str_c(""), "upgrade"));
    CHECK(!zk_http_list_has(zk_str_c(" , ,"), "upgrade"));
    /* A missing header ({NULL, 0} from zk_http_header_get) holds nothing. */
    CHECK(!zk_http_list_has(none, "upgrade"));
}

TEST(header_values_trimmed_of_ows) {
    static const char in[] =
        "GET / HTTP/1.1\r\n"
        "A:   a b  \t\r\n"
        "B:\t\tz\r\n"
        "C:\r\n"
        "D:    \t \r\n"
        "E:x\r\n"
        "F: caf\xC3\xA9 \xFF\r\n" /* obs-text is allowed in a value */
        "\r\n";
    CHECK_EQ_INT(parse_req(IN(in)), sizeof in - 1);
    CHECK_EQ_INT(req.header_count, 6);
    CHECK_STR(req_header("A"), "a b");
    CHECK_STR(req_header("B"), "z");
    CHECK_STR(req_header("C"), "");
    CHECK(req_header("C").ptr != NULL); /* present, empty */
    CHECK_STR(req_header("D"), "");
    CHECK_STR(req_header("E"), "x");
    CHECK_STR(req_header("F"), "caf\xC3\xA9 \xFF");
}

TEST(path_and_query_split) {
    static const struct { const char *target, *path, *query; } v[] = {
        {"/", "/", ""},
        {"/chat", "/chat", ""},
        {"/chat?room=1", "/chat", "room=1"},
        {"/chat?room=1&x", "/chat", "room=1&x"},
        {"/a?", "/a", ""},
        {"/a?b?c", "/a", "b?c"},
        {"/a%20b?q=%20", "/a%20b", "q=%20"},
        {"/?x=1", "/", "x=1"},
        {"*", "*", ""},
        /* absolute-form keeps only the path */
        {"http://example.com/chat?room=1", "/chat", "room=1"},
        {"ws://h:9001/x/y", "/x/y", ""},
        {"https://example.com:443/?a=b", "/", "a=b"},
    };
    size_t i;
    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        text t = {NULL, 0, 0};
        text_str(&t, "GET ");
        text_str(&t, v[i].target);
        text_str(&t, " HTTP/1.1\r\nHost: h\r\n\r\n");
        CHECK_EQ_INT(parse_req(t.p, t.len), t.len);
        CHECK_STR(req.target, v[i].target);
        CHECK_STR(req.path, v[i].path);
        CHECK_STR(req.query, v[i].query);
        free(t.p);
    }
}

TEST(http10_and_other_methods) {
    CHECK_EQ_INT(parse_req(IN("GET / HTTP/1.0\r\n\r\n")), 18);
    CHECK_EQ_INT(req.version, 10);
    CHECK_EQ_INT(req.header_count, 0);
    CHECK(parse_req(IN("POST /submit HTTP/1.1\r\nContent-Length: 0\r\n\r\n")) > 0);
    CHECK_STR(req.method, "POST");
    CHECK_EQ_INT(req.version, 11);
    CHECK(parse_req(IN("M-SEARCH * HTTP/1.1\r\n\r\n")) > 0); /* any token is a method */
    CHECK_STR(req.method, "M-SEARCH");
    CHECK(parse_req(IN("OPTIONS * HTTP/1.1\r\n\r\n")) > 0);
    CHECK_STR(req.target, "*");
}

TEST(request_head_size_excludes_body) {
    static const char in[] = "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    CHECK_EQ_INT(parse_req(IN(in)), sizeof in - 1 - 5);
    /* A head followed by the start of another head (pipelining) */
    CHECK_EQ_INT(parse_req(IN("GET / HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n")), 18);
}

/* ---- every split of valid input ---- */

typedef struct valid_input {
    const char *bytes;
    size_t len;
} valid_input;

/* Where a head ends: just past the first CR LF CR LF. */
static size_t head_size(const valid_input *v) {
    size_t i;
    for (i = 0; i + 4 <= v->len; i++)
        if (memcmp(v->bytes + i, "\r\n\r\n", 4) == 0) return i + 4;
    return 0;
}

static const valid_input valid_requests[] = {
    {IN(rfc_request)},
    {IN("GET / HTTP/1.0\r\n\r\n")},
    {IN("GET /a?b=c HTTP/1.1\r\nHost: h\r\nX:\r\nY: \t y \t\r\n\r\n")},
    {IN("POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")},
    {IN("GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n\r\n\r\n")},
};

static const valid_input valid_responses[] = {
    {IN(rfc_response)},
    {IN("HTTP/1.1 101\r\n\r\n")},
    {IN("HTTP/1.1 101 \r\nUpgrade: websocket\r\n\r\n\x81\x05hello")},
    {IN("HTTP/1.0 404 Not Found\r\nContent-Length: 3\r\n\r\nabc")},
};

/* Feeds every prefix of v (on a guard page), each as a fresh call and as a
   continuation (prev_len) of the last call that returned ZK_EAGAIN, in
   steps of `step` bytes. Every prefix without the whole head is ZK_EAGAIN,
   every one with it gives the head's size. Returns the number of wrong
   answers. */
static int feed_every_split(const valid_input *v, int response, size_t step) {
    size_t k, prev = 0, head = head_size(v);
    int wrong = 0;
    for (k = 0; k <= v->len; k = k + step > v->len && k < v->len ? v->len : k + step) {
        guard_buf g = guard_alloc(v->bytes, k);
        int want = k < head ? ZK_EAGAIN : (int)head, fresh, cont;
        if (response) {
            fresh = zk_http_parse_response((const char *)g.data, k, 0, &res, NULL);
            cont = zk_http_parse_response((const char *)g.data, k, prev, &res, NULL);
        } else {
            fresh = zk_http_parse_request((const char *)g.data, k, 0, &req, NULL);
            cont = zk_http_parse_request((const char *)g.data, k, prev, &req, NULL);
        }
        if (fresh != want || cont != want) {
            printf("  \"%.20s...\" prefix %zu (prev %zu): %d / %d, expected %d\n", v->bytes, k,
                   prev, fresh, cont, want);
            wrong++;
        }
        guard_free(&g);
        if (k < head) prev = k;
        if (k == v->len) break;
    }
    return wrong;
}

TEST(request_every_split) {
    size_t i, step;
    int wrong = 0;
    for (i = 0; i < sizeof valid_requests / sizeof valid_requests[0]; i++) {
        CHECK(head_size(&valid_requests[i]) > 0);
        for (step = 1; step <= 8; step++) wrong += feed_every_split(&valid_requests[i], 0, step);
        wrong += feed_every_split(&valid_requests[i], 0, 13);
    }
    CHECK_EQ_INT(wrong, 0);
    /* Resumed one byte before the end, every field is still filled. */
    CHECK_EQ_INT(zk_http_parse_request(IN(rfc_request), sizeof rfc_request - 2, &req, NULL),
                 sizeof rfc_request - 1);
    CHECK_STR(req.path, "/chat");
    CHECK_EQ_INT(req.header_count, 7);
    CHECK_STR(req_header("Origin"), "http://example.com");
}

TEST(response_every_split) {
    size_t i, step;
    int wrong = 0;
    for (i = 0; i < sizeof valid_responses / sizeof valid_responses[0]; i++) {
        CHECK(head_size(&valid_responses[i]) > 0);
        for (step = 1; step <= 8; step++) wrong += feed_every_split(&valid_responses[i], 1, step);
        wrong += feed_every_split(&valid_responses[i], 1, 13);
    }
    CHECK_EQ_INT(wrong, 0);
}

/* ---- malformed requests ---- */

typedef struct bad_input {
    const char *bytes;
    size_t len;
    int err;
    int status;    /* requests: the status to answer */
    size_t early;  /* > 0: already refused with this many bytes (head not complete) */
} bad_input;

static const bad_input bad_requests[] = {
    /* not a request at all: refused from the first byte */
    {IN("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x5a\x1b\x00\x20\x8a"), ZK_EHTTP, 400, 1},
    {IN("\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n"), ZK_EHTTP, 400, 1},
    {IN("\xff\xfe\r\n\r\n"), ZK_EHTTP, 400, 1},
    {IN("\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN(" GET / HTTP/1.1\r\n\r\n"), ZK_EHTTP, 400, 0},
    /* method */
    {IN("G@T / HTTP/1.1\r\nHost: a\r\n\r\n"), ZK_EHTTP, 400, 2},
    {IN("GET(x) / HTTP/1.1\r\nHost: a\r\n\r\n"), ZK_EHTTP, 400, 4},
    {IN("GE\"T / HTTP/1.1\r\n\r\n"), ZK_EHTTP, 400, 3},
    {IN("G\tT / HTTP/1.1\r\n\r\n"), ZK_EHTTP, 400, 2},
    /* request line */
    {IN("GET /\r\nHost: a\r\n\r\n"), ZK_EHTTP, 400, 7},
    {IN("GET / \r\nHost: a\r\n\r\n"), ZK_EHTTP, 400, 8},
    {IN("GET\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET  / HTTP/1.1\r\n\r\n"), ZK_EHTTP, 400, 17},
    {IN("GET / HTTP/1.1 \r\n\r\n"), ZK_EHTTP, 400, 17},
    {IN("GET /a b HTTP/1.1\r\n\r\n"), ZK_EHTTP, 400, 19},
    {IN("GET / http/1.1\r\n\r\n"), ZK_EHTTP, 400, 16},
    {IN("GET / HTTP/1\r\n\r\n"), ZK_EHTTP, 400, 14},
    {IN("GET / HTTP/1.1x\r\n\r\n"), ZK_EHTTP, 400, 17},
    {IN("GET / HTTP/x.1\r\n\r\n"), ZK_EHTTP, 400, 16},
    {IN("GET /\x01 HTTP/1.1\r\n\r\n"), ZK_EHTTP, 400, 17},
    {IN("GET /\0 HTTP/1.1\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\nHost: a\r\n\r\n"), ZK_EHTTP, 400, 15},
    {IN("GET / HTTP/1.1\rHost: a\r\n\r\n"), ZK_EHTTP, 400, 0},
    /* versions */
    {IN("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), ZK_EHTTP, 505, 16},
    {IN("GET / HTTP/3.0\r\n\r\n"), ZK_EHTTP, 505, 16},
    {IN("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), ZK_EHTTP, 505, 16},
    /* header lines */
    {IN("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\nX\0: a\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\nX: a\x01" "b\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\nX: \x1b[31mred\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\n: a\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\nX a\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\nNo-Colon\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\nX\x80: a\r\n\r\n"), ZK_EHTTP, 400, 0},
    {IN("GET / HTTP/1.1\r\nX(y): a\r\n\r\n"), ZK_EHTTP, 400, 0},
};

/* Every prefix: EAGAIN or the error; the error from `early` bytes on (or
   only at the end); once refused, refused for every longer prefix. */
static int check_bad(const bad_input *b, int response) {
    size_t k;
    int wrong = 0, refused = 0;
    for (k = 0; k <= b->len; k++) {
        guard_buf g = guard_alloc(b->bytes, k);
        int rc, status;
        if (response) {
            rc = zk_http_parse_response((const char *)g.data, k, 0, &res, NULL);
            status = 0;
        } else {
            rc = zk_http_parse_request((const char *)g.data, k, 0, &req, NULL);
            status = req.status;
        }
        guard_free(&g);
        if (rc >= 0) {
            printf("  \"%.24s\" prefix %zu accepted (%d)\n", b->bytes, k, rc);
            wrong++;
        } else if (rc == ZK_EAGAIN) {
            if (refused || k == b->len || (b->early && k >= b->early)) {
                printf("  \"%.24s\" prefix %zu of %zu: ZK_EAGAIN, expected %s\n", b->bytes, k,
                       b->len, zk_err_name(b->err));
                wrong++;
            }
        } else {
            refused = 1;
            if ((k == b->len || (b->early && k >= b->early)) &&
                (rc != b->err || (!response && status != b->status))) {
                printf("  \"%.24s\" prefix %zu: %s status %d, expected %s status %d\n", b->bytes,
                       k, zk_err_name(rc), status, zk_err_name(b->err), b->status);
                wrong++;
            }
            if (!response && (req.error == NULL || (status != 400 && status != 431 && status != 505))) {
                printf("  \"%.24s\" prefix %zu: error %s without a status or text\n", b->bytes,
                       k, zk_err_name(rc));
                wrong++;
            }
            if (response && res.error == NULL) {
                printf("  \"%.24s\" prefix %zu: error %s without a text\n", b->bytes, k,
                       zk_err_name(rc));
                wrong++;
            }
        }
    }
    return wrong;
}

TEST(request_malformed) {
    size_t i;
    int wrong = 0;
    for (i = 0; i < sizeof bad_requests / sizeof bad_requests[0]; i++)
        wrong += check_bad(&bad_requests[i], 0);
    CHECK_EQ_INT(wrong, 0);
}

TEST(request_refused_before_head_ends) {
    /* A TLS ClientHello to a plain port: one byte is enough. */
    CHECK_EQ_INT(zk_http_parse_request("\x16", 1, 0, &req, NULL), ZK_EHTTP);
    CHECK_EQ_INT(req.status, 400);
    CHECK(req.error != NULL);
    /* A request line already wrong, headers still to come. */
    CHECK_EQ_INT(parse_req(IN("GET / HTTP/2.0\r\nHost: a\r\n")), ZK_EHTTP);
    CHECK_EQ_INT(req.status, 505);
    CHECK_EQ_INT(parse_req(IN("GET / HTTP/1.1\nHost: a\r\n")), ZK_EHTTP);
    CHECK_EQ_INT(req.status, 400);
    /* The same when the line arrives in a later call. */
    CHECK_EQ_INT(zk_http_parse_request(IN("GET /\r\nHost"), 3, &req, NULL), ZK_EHTTP);
    CHECK_EQ_INT(req.status, 400);
    /* A good request line alone is only incomplete. */
    CHECK_EQ_INT(parse_req(IN("GET / HTTP/1.1\r\nHost: a\r\n")), ZK_EAGAIN);
    CHECK_EQ_INT(req.status, 0);
}

/* Lines ended by a bare LF, up to and including the blank line: no more
   bytes can make this a valid head (RFC 9112 2.2: a bare LF is either a
   line end or invalid), so it must be refused, not waited on. */
TEST(request_bare_lf_head_is_refused) {
    CHECK_EQ_INT(parse_req(IN("GET / HTTP/1.1\r\nHost: a\n\n")), ZK_EHTTP);
    CHECK_EQ_INT(req.status, 400);
    CHECK_EQ_INT(parse_req(IN("GET / HTTP/1.1\r\nHost: a\n\r\n")), ZK_EHTTP);
    CHECK_EQ_INT(req.status, 400);
}

/* ---- limits ---- */

/* "GET / HTTP/1.1\r\nX: aaa...\r\n\r\n" of exactly `size` bytes. */
static text head_of_size(size_t size) {
    text t = {NULL, 0, 0};
    text_str(&t, "GET / HTTP/1.1\r\nX: ");
    text_rep(&t, 'a', size - t.len - 4);
    text_str(&t, "\r\n\r\n");
    return t;
}

TEST(request_head_byte_limit_default) {
    text ok = head_of_size(ZK_HTTP_MAX_HEADER_BYTES);
    text big = head_of_size(ZK_HTTP_MAX_HEADER_BYTES + 1);
    CHECK_EQ_INT(parse_req(ok.p, ok.len), ZK_HTTP_MAX_HEADER_BYTES);
    CHECK_EQ_INT(parse_req(big.p, big.len), ZK_ETOOBIG);
    CHECK_EQ_INT(req.status, 431);
    CHECK(req.error != NULL);
    /* Without the end of the head: refused once the limit is reached. */
    CHECK_EQ_INT(parse_req(big.p, ZK_HTTP_MAX_HEADER_BYTES - 1), ZK_EAGAIN);
    CHECK_EQ_INT(parse_req(big.p, ZK_HTTP_MAX_HEADER_BYTES), ZK_ETOOBIG);
    CHECK_EQ_INT(req.status, 431);
    CHECK_EQ_INT(zk_http_parse_request(big.p, ZK_HTTP_MAX_HEADER_BYTES,
                                       ZK_HTTP_MAX_HEADER_BYTES - 1, &req, NULL), ZK_ETOOBIG);
    /* A zeroed limits struct means the defaults. */
    {
        zk_http_limits zero = {0, 0};
        CHECK_EQ_INT(zk_http_parse_request(ok.p, ok.len, 0, &req, &zero), ok.len);
        CHECK_EQ_INT(zk_http_parse_request(big.p, big.len, 0, &req, &zero), ZK_ETOOBIG);
    }
    free(ok.p);
    free(big.p);
}

TEST(request_head_byte_limit_custom) {
    zk_http_limits lim = {100, 0};
    text ok = head_of_size(100), big = head_of_size(101), large = head_of_size(20000);
    CHECK_EQ_INT(zk_http_parse_request(ok.p, ok.len, 0, &req, &lim), 100);
    CHECK_EQ_INT(zk_http_parse_request(big.p, big.len, 0, &req, &lim), ZK_ETOOBIG);
    CHECK_EQ_INT(req.status, 431);
    CHECK_EQ_INT(zk_http_parse_request(big.p, 99, 0, &req, &lim), ZK_EAGAIN);
    CHECK_EQ_INT(zk_http_parse_request(big.p, 100, 0, &req, &lim), ZK_ETOOBIG);
    CHECK_EQ_INT(req.status, 431);
    /* A limit above the default is honoured. */
    lim.max_bytes = 32768;
    CHECK_EQ_INT(zk_http_parse_request(large.p, large.len, 0, &req, &lim), 20000);
    free(ok.p);
    free(big.p);
    free(large.p);
}

/* A request with n headers "H<i>: v". */
static text head_with_headers(size_t n, int response) {
    text t = {NULL, 0, 0};
    size_t i;
    text_str(&t, response ? "HTTP/1.1 101 Switching Protocols\r\n" : "GET / HTTP/1.1\r\n");
    for (i = 0; i < n; i++) {
        char line[32];
        sprintf(line, "H%zu: v\r\n", i);
        text_str(&t, line);
    }
    text_str(&t, "\r\n");
    return t;
}

TEST(request_header_count_limit) {
    text max = head_with_headers(ZK_HTTP_MAX_HEADERS, 0);
    text over = head_with_headers(ZK_HTTP_MAX_HEADERS + 1, 0);
    text four = head_with_headers(4, 0), three = head_with_headers(3, 0);
    zk_http_limits lim = {0, 3};
    CHECK_EQ_INT(parse_req(max.p, max.len), max.len);
    CHECK_EQ_INT(req.header_count, ZK_HTTP_MAX_HEADERS);
    CHECK_STR(req.headers[ZK_HTTP_MAX_HEADERS - 1].name, "H63");
    CHECK_EQ_INT(parse_req(over.p, over.len), ZK_ETOOBIG);
    CHECK_EQ_INT(req.status, 431);
    CHECK_EQ_INT(zk_http_parse_request(three.p, three.len, 0, &req, &lim), three.len);
    CHECK_EQ_INT(zk_http_parse_request(four.p, four.len, 0, &req, &lim), ZK_ETOOBIG);
    CHECK_EQ_INT(req.status, 431);
    /* More than ZK_HTTP_MAX_HEADERS asked: the array's size still rules. */
    lim.max_headers = 1000;
    CHECK_EQ_INT(zk_http_parse_request(over.p, over.len, 0, &req, &lim), ZK_ETOOBIG);
    CHECK_EQ_INT(req.status, 431);
    free(max.p);
    free(over.p);
    free(four.p);
    free(three.p);
}

/* ---- responses ---- */

TEST(response_rfc6455_example) {
    size_t len = sizeof rfc_response - 1;
    CHECK_EQ_INT(parse_res(rfc_response, len), len);
    CHECK_EQ_INT(res.version, 11);
    CHECK_EQ_INT(res.status, 101);
    CHECK_STR(res.reason, "Switching Protocols");
    CHECK_EQ_INT(res.header_count, 4);
    CHECK_STR(res_header("sec-websocket-accept"), RFC_ACCEPT);
    CHECK_STR(res_header("UPGRADE"), "websocket");
    CHECK(res.error == NULL);
    CHECK(inside(res.reason, rfc_response, len));
}

TEST(response_status_line_forms) {
    CHECK_EQ_INT(parse_res(IN("HTTP/1.1 101\r\n\r\n")), 16);
    CHECK_EQ_INT(res.status, 101);
    CHECK_EQ_INT(res.reason.len, 0);
    CHECK_EQ_INT(parse_res(IN("HTTP/1.1 101 \r\n\r\n")), 17);
    CHECK_EQ_INT(res.reason.len, 0);
    CHECK_EQ_INT(parse_res(IN("HTTP/1.0 404 Not  Found\t!\r\nX: y\r\n\r\n")), 35);
    CHECK_EQ_INT(res.version, 10);
    CHECK_EQ_INT(res.status, 404);
    CHECK_STR(res.reason, "Not  Found\t!");
    CHECK_STR(res_header("x"), "y");
    CHECK_EQ_INT(parse_res(IN("HTTP/1.1 999 Whatever\r\n\r\n")), 25);
    CHECK_EQ_INT(res.status, 999);
    CHECK_EQ_INT(parse_res(IN("HTTP/1.1 100 Continue\r\n\r\n")), 25);
    CHECK_EQ_INT(res.status, 100);
}

static const bad_input bad_responses[] = {
    {IN("\x15\x03\x03\x00\x02\x02\x28\x00\x00\x00"), ZK_EHTTP, 0, 5},
    {IN("http/1.1 101 Switching Protocols\r\n\r\n"), ZK_EHTTP, 0, 5},
    {IN("HTTPS/1.1 101 X\r\n\r\n"), ZK_EHTTP, 0, 5},
    {IN("<html>\r\n\r\n"), ZK_EHTTP, 0, 5},
    {IN("HTTP/1.1 10 X\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 1010 X\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 099 X\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 abc X\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1  101 X\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 101Switching\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 \r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/2.0 101 X\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1 101 X\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 101 X\x01\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 101 X\x7f\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 101 X\0\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 101 X\nUpgrade: websocket\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 101 X\r\nUpgrade : websocket\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 101 X\r\nUpgrade: a\r\n websocket\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 101 X\r\nUpgrade: a\nB: c\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 101 X\r\nUpgrade: a\0\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 101 X\r\nUpgrade: a\x02\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 101 X\r\n: a\r\n\r\n"), ZK_EHTTP, 0, 0},
    {IN("HTTP/1.1 101 X\r\nA\x80: a\r\n\r\n"), ZK_EHTTP, 0, 0},
};

TEST(response_malformed) {
    size_t i;
    int wrong = 0;
    for (i = 0; i < sizeof bad_responses / sizeof bad_responses[0]; i++)
        wrong += check_bad(&bad_responses[i], 1);
    CHECK_EQ_INT(wrong, 0);
}

TEST(response_limits) {
    text max = head_with_headers(ZK_HTTP_MAX_HEADERS, 1);
    text over = head_with_headers(ZK_HTTP_MAX_HEADERS + 1, 1);
    text three = head_with_headers(3, 1);
    zk_http_limits lim = {0, 2};
    text big = {NULL, 0, 0};
    CHECK_EQ_INT(parse_res(max.p, max.len), max.len);
    CHECK_EQ_INT(res.header_count, ZK_HTTP_MAX_HEADERS);
    CHECK_EQ_INT(parse_res(over.p, over.len), ZK_ETOOBIG);
    CHECK(res.error != NULL);
    CHECK_EQ_INT(zk_http_parse_response(three.p, three.len, 0, &res, &lim), ZK_ETOOBIG);
    lim.max_headers = 3;
    CHECK_EQ_INT(zk_http_parse_response(three.p, three.len, 0, &res, &lim), three.len);
    /* bytes */
    text_str(&big, "HTTP/1.1 101 X\r\nX: ");
    text_rep(&big, 'a', ZK_HTTP_MAX_HEADER_BYTES - big.len - 4);
    text_str(&big, "\r\n\r\n");
    CHECK_EQ_INT(parse_res(big.p, big.len), ZK_HTTP_MAX_HEADER_BYTES);
    lim.max_bytes = ZK_HTTP_MAX_HEADER_BYTES - 1;
    CHECK_EQ_INT(zk_http_parse_response(big.p, big.len, 0, &res, &lim), ZK_ETOOBIG);
    CHECK(res.error != NULL);
    CHECK_EQ_INT(zk_http_parse_response(big.p, big.len - 2, 0, &res, &lim), ZK_EAGAIN);
    CHECK_EQ_INT(zk_http_parse_response(big.p, big.len - 1, 0, &res, &lim), ZK_ETOOBIG);
    free(max.p);
    free(over.p);
    free(three.p);
    free(big.p);
}

/* ---- guard pages: every input and every prefix ends at an unmapped page ---- */

static int parse_result_ok(int rc, size_t len) {
    return (rc > 0 && (size_t)rc <= len) || rc == ZK_EAGAIN || rc == ZK_EHTTP || rc == ZK_ETOOBIG;
}

/* Runs both parsers (fresh and continuing) on every prefix of bytes placed
   against an unmapped page; returns how many answers were out of range. */
static int parse_both_ways(const char *bytes, size_t len) {
    size_t k;
    int wrong = 0;
    for (k = 0; k <= len; k++) {
        guard_buf g = guard_alloc(bytes, k);
        const char *p = (const char *)g.data;
        int rc = zk_http_parse_request(p, k, 0, &req, NULL);
        wrong += !parse_result_ok(rc, k);
        if (rc > 0) {
            zk_ws_upgrade up;
            (void)zk_ws_upgrade_check(&req, chat_super, 2, &up);
        }
        wrong += !parse_result_ok(zk_http_parse_request(p, k, k ? k - 1 : 0, &req, NULL), k);
        rc = zk_http_parse_response(p, k, 0, &res, NULL);
        wrong += !parse_result_ok(rc, k);
        if (rc > 0) {
            zk_ws_client_handshake hs;
            memset(&hs, 0, sizeof hs);
            (void)zk_ws_client_verify(&res, &hs, NULL, NULL);
        }
        wrong += !parse_result_ok(zk_http_parse_response(p, k, k ? k - 1 : 0, &res, NULL), k);
        guard_free(&g);
    }
    return wrong;
}

TEST(guard_page_requests) {
    size_t i;
    int wrong = 0;
    for (i = 0; i < sizeof valid_requests / sizeof valid_requests[0]; i++)
        wrong += parse_both_ways(valid_requests[i].bytes, valid_requests[i].len);
    for (i = 0; i < sizeof bad_requests / sizeof bad_requests[0]; i++)
        wrong += parse_both_ways(bad_requests[i].bytes, bad_requests[i].len);
    wrong += parse_both_ways(IN("GET / HTTP/1.1\r\nHost: a\n\n"));
    wrong += parse_both_ways(IN("GET / HTTP/1.1\r\nA:\r\n:\r\n\r\n"));
    wrong += parse_both_ways(IN("GET / HTTP/1.1\r\nA:\r"));
    wrong += parse_both_ways(IN("GET / HTTP/1.1\r\nA"));
    wrong += parse_both_ways(IN("GET http:/"));
    wrong += parse_both_ways(IN("GET http:// HTTP/1.1\r\n\r\n"));
    wrong += parse_both_ways(IN("GET h:/ HTTP/1.1\r\n\r\n"));
    CHECK_EQ_INT(wrong, 0); /* and an over-read would have crashed */
}

TEST(guard_page_responses) {
    size_t i;
    int wrong = 0;
    for (i = 0; i < sizeof valid_responses / sizeof valid_responses[0]; i++)
        wrong += parse_both_ways(valid_responses[i].bytes, valid_responses[i].len);
    for (i = 0; i < sizeof bad_responses / sizeof bad_responses[0]; i++)
        wrong += parse_both_ways(bad_responses[i].bytes, bad_responses[i].len);
    wrong += parse_both_ways(IN("HTTP/1.1 1\r\n\r\n"));
    wrong += parse_both_ways(IN("HTTP/1.1 101\r"));
    wrong += parse_both_ways(IN("HTTP/1.1 101 X\r\nA:"));
    CHECK_EQ_INT(wrong, 0);
}

/* ---- server side of the upgrade ---- */

static const char *const chat_only[] = {"chat"};

/* Parses head (which must be a whole valid head) and checks it. */
static int upgrade(const char *head, const char *const *protocols, size_t count,
                   zk_ws_upgrade *up) {
    int n = parse_req(head, strlen(head));
    if (n != (int)strlen(head)) {
        printf("  head did not parse: %s (%s)\n", zk_err_name(n), req.error ? req.error : "");
        return 999;
    }
    return zk_ws_upgrade_check(&req, protocols, count, up);
}

#define UPGRADE_HEAD(method_target, extra)                                   \
    method_target " HTTP/1.1\r\n"                                             \
    "Host: server.example.com\r\n"                                            \
    "Upgrade: websocket\r\n"                                                  \
    "Connection: Upgrade\r\n"                                                 \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"                         \
    "Sec-WebSocket-Version: 13\r\n" extra "\r\n"

TEST(upgrade_check_rfc_example) {
    zk_ws_upgrade up;
    CHECK_EQ_INT(upgrade(rfc_request, chat_only, 1, &up), ZK_OK);
    CHECK(strcmp(up.accept, RFC_ACCEPT) == 0);
    CHECK_STR(up.key, "dGhlIHNhbXBsZSBub25jZQ==");
    CHECK_STR(up.host, "server.example.com");
    CHECK_STR(up.origin, "http://example.com");
    CHECK_STR(up.protocols, "chat, superchat");
    CHECK(up.protocol == chat_only[0]); /* one of yours, not a copy */
    CHECK_EQ_INT(up.status, 0);
}

TEST(upgrade_check_origin_and_host) {
    zk_ws_upgrade up;
    CHECK_EQ_INT(upgrade(UPGRADE_HEAD("GET /", "Origin: null\r\n"), NULL, 0, &up), ZK_OK);
    CHECK_STR(up.origin, "null");
    CHECK_EQ_INT(upgrade(UPGRADE_HEAD("GET /", ""), NULL, 0, &up), ZK_OK);
    CHECK(up.origin.ptr == NULL && up.origin.len == 0);
    CHECK(up.protocols.ptr == NULL);
    CHECK(up.protocol == NULL);
    CHECK_STR(up.host, "server.example.com");
    CHECK(strcmp(up.accept, RFC_ACCEPT) == 0);
    /* Header names and the tokens in them in any case, extra tokens around. */
    CHECK_EQ_INT(upgrade("GET / HTTP/1.1\r\nhost: h:9001\r\nUPGRADE: WebSocket\r\n"
                         "connection: keep-alive, upgrade\r\n"
                         "sec-websocket-key:   dGhlIHNhbXBsZSBub25jZQ==  \r\n"
                         "sec-websocket-version: 13\r\n\r\n", NULL, 0, &up), ZK_OK);
    CHECK_STR(up.host, "h:9001");
    CHECK(strcmp(up.accept, RFC_ACCEPT) == 0);
}

TEST(upgrade_check_subprotocol_choice) {
    static const char *const server_prefers_super[] = {"superchat", "chat"};
    static const char *const server_prefers_chat[] = {"chat", "superchat"};
    static const char *const other_then_chat[] = {"v2.mqtt", "chat"};
    static const char *const none_offered[] = {"mqtt", "wamp"};
    zk_ws_upgrade up;
    CHECK_EQ_INT(upgrade(rfc_request, server_prefers_super, 2, &up), ZK_OK);
    CHECK(up.protocol == server_prefers_super[0]);
    CHECK_EQ_INT(upgrade(rfc_request, server_prefers_chat, 2, &up), ZK_OK);
    CHECK(up.protocol == server_prefers_chat[0]);
    CHECK_EQ_INT(upgrade(rfc_request, other_then_chat, 2, &up), ZK_OK);
    CHECK(up.protocol == other_then_chat[1]);
    /* None matching: no subprotocol, still a valid upgrade. */
    CHECK_EQ_INT(upgrade(rfc_request, none_offered, 2, &up), ZK_OK);
    CHECK(up.protocol == NULL);
    CHECK(strcmp(up.accept, RFC_ACCEPT) == 0);
    CHECK_EQ_INT(upgrade(rfc_request, NULL, 0, &up), ZK_OK);
    CHECK(up.protocol == NULL);
    /* Offered across two header lines: both count; protocols is the first. */
    CHECK_EQ_INT(upgrade(UPGRADE_HEAD("GET /", "Sec-WebSocket-Protocol: a, b\r\n"
                                              "Sec-WebSocket-Protocol: chat\r\n"),
                         chat_only, 1, &up), ZK_OK);
    CHECK(up.protocol == chat_only[0]);
    CHECK_STR(up.protocols, "a, b");
    CHECK_EQ_INT(upgrade(UPGRADE_HEAD("GET /", "Sec-WebSocket-Protocol: chat\r\n"
                                              "Sec-WebSocket-Protocol: superchat\r\n"),
                         server_prefers_super, 2, &up), ZK_OK);
    CHECK(up.protocol == server_prefers_super[0]);
    /* Names are whole tokens. */
    CHECK_EQ_INT(upgrade(UPGRADE_HEAD("GET /", "Sec-WebSocket-Protocol: chatty, xchat\r\n"),
                         chat_only, 1, &up), ZK_OK);
    CHECK(up.protocol == NULL);
}

/* RFC 7936 section 2: subprotocol names match case-sensitively. Choosing
   "chat" for an offer of "CHAT" makes a browser fail the connection, since
   the answer names a subprotocol it did not offer. */
TEST(upgrade_check_subprotocol_case_sensitive) {
    zk_ws_upgrade up;
    CHECK_EQ_INT(upgrade(UPGRADE_HEAD("GET /", "Sec-WebSocket-Protocol: CHAT\r\n"), chat_only, 1,
                         &up), ZK_OK);
    CHECK(up.protocol == NULL);
}

TEST(upgrade_check_not_websocket) {
    zk_ws_upgrade up;
    CHECK_EQ_INT(upgrade("GET / HTTP/1.1\r\nHost: h\r\n\r\n", chat_only, 1, &up), ZK_ENOTWS);
    CHECK_EQ_INT(upgrade("POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", NULL, 0,
                         &up), ZK_ENOTWS);
    CHECK_EQ_INT(upgrade("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n"
                         "Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
                         NULL, 0, &up), ZK_ENOTWS);
    CHECK_EQ_INT(upgrade("GET / HTTP/1.0\r\n\r\n", NULL, 0, &up), ZK_ENOTWS);
}

/* Each request asks for a WebSocket upgrade and gets it wrong. */
TEST(upgrade_check_refusals) {
    static const struct { const char *head; int status; } v[] = {
        {UPGRADE_HEAD("POST /chat", ""), 405},
        {UPGRADE_HEAD("PUT /chat", ""), 405},
        {"GET / HTTP/1.0\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
        /* Connection */
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgraded\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
        /* Host */
        {"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost:\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
        /* Sec-WebSocket-Key */
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n", 400},
        {UPGRADE_HEAD("GET /", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), 400},
        {UPGRADE_HEAD("GET /", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"), 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key:\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!!\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQxx\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==dGhl\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhb XBsZSBub25jZQ=\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
        /* Sec-WebSocket-Version */
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", 426},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 426},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 14\r\n\r\n", 426},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 130\r\n\r\n", 426},
    };
    size_t i;
    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        zk_ws_upgrade up;
        int rc = upgrade(v[i].head, chat_only, 1, &up);
        if (rc != ZK_EHANDSHAKE || up.status != v[i].status || up.error == NULL) {
            printf("  case %zu: %s status %d, expected ZK_EHANDSHAKE status %d\n", i,
                   zk_err_name(rc), up.status, v[i].status);
            CHECK(0);
        }
    }
}

/* RFC 9110 9.1: the method is case-sensitive; "get" is not GET. */
TEST(upgrade_check_method_case_sensitive) {
    zk_ws_upgrade up;
    CHECK_EQ_INT(upgrade(UPGRADE_HEAD("get /chat", ""), NULL, 0, &up), ZK_EHANDSHAKE);
    CHECK_EQ_INT(up.status, 405);
}

/* RFC 9112 3.2: a server MUST answer 400 to a request with more than one
   Host header line. */
TEST(upgrade_check_duplicate_host) {
    zk_ws_upgrade up;
    CHECK_EQ_INT(upgrade(UPGRADE_HEAD("GET /chat", "Host: evil.example\r\n"), NULL, 0, &up),
                 ZK_EHANDSHAKE);
    CHECK_EQ_INT(up.status, 400);
}

/* ---- writing the server's answers ---- */

TEST(upgrade_accept_exact_bytes) {
    static const char plain[] =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n";
    static const char with_extra[] =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\nSec-WebSocket-Protocol: chat\r\n"
        "Set-Cookie: id=1; HttpOnly\r\nX-Empty: \r\n\r\n";
    zk_http_header extra[2] = {{ZK_STR("Set-Cookie"), ZK_STR("id=1; HttpOnly")},
                               {ZK_STR("X-Empty"), ZK_STR("")}};
    zk_ws_upgrade up;
    char out[512];
    int n;
    CHECK_EQ_INT(upgrade(rfc_request, NULL, 0, &up), ZK_OK);
    n = zk_ws_upgrade_accept(out, sizeof out, &up, NULL, 0);
    CHECK_MEM(out, n, plain, sizeof plain - 1);
    CHECK_EQ_INT(upgrade(rfc_request, chat_only, 1, &up), ZK_OK);
    n = zk_ws_upgrade_accept(out, sizeof out, &up, extra, 2);
    CHECK_MEM(out, n, with_extra, sizeof with_extra - 1);
    /* and it is what the client expects */
    CHECK_EQ_INT(parse_res(out, (size_t)n), n);
    CHECK_EQ_INT(res.status, 101);
    CHECK_STR(res_header("Set-Cookie"), "id=1; HttpOnly");
}

TEST(upgrade_accept_enospace_every_cap) {
    zk_http_header extra[1] = {{ZK_STR("X-Server"), ZK_STR("zk")}};
    zk_ws_upgrade up;
    char full[512];
    int n, wrong = 0;
    size_t cap;
    CHECK_EQ_INT(upgrade(rfc_request, chat_only, 1, &up), ZK_OK);
    n = zk_ws_upgrade_accept(full, sizeof full, &up, extra, 1);
    CHECK(n > 0);
    for (cap = 0; n > 0 && cap <= (size_t)n; cap++) {
        char *out = (char *)malloc(cap ? cap : 1);
        int rc = zk_ws_upgrade_accept(out, cap, &up, extra, 1);
        if (cap < (size_t)n ? rc != ZK_ENOSPACE : (rc != n || memcmp(out, full, cap) != 0)) wrong++;
        free(out);
    }
    CHECK_EQ_INT(wrong, 0);
}

TEST(upgrade_accept_refuses_header_injection) {
    static const zk_http_header bad[] = {
        {ZK_STR("X-A"), ZK_STR("a\r\nSet-Cookie: evil=1")},
        {ZK_STR("X-A"), ZK_STR("a\nb")},
        {ZK_STR("X-A"), ZK_STR("a\rb")},
        {ZK_STR("X-A"), {"a\0b", 3}},
        {ZK_STR("X-A"), ZK_STR("a\x01")},
        {ZK_STR("X-A"), ZK_STR("\x7f")},
        {ZK_STR("Bad Name"), ZK_STR("v")},
        {ZK_STR("X:Y"), ZK_STR("v")},
        {ZK_STR("X\r\nY"), ZK_STR("v")},
        {ZK_STR(""), ZK_STR("v")},
        {ZK_STR("X(y)"), ZK_STR("v")},
        {ZK_STR("X\x80"), ZK_STR("v")},
        {{NULL, 0}, ZK_STR("v")},
        {ZK_STR("X-A"), {NULL, 3}},
    };
    zk_http_header pair[2] = {{ZK_STR("X-Ok"), ZK_STR("fine")}, {ZK_STR(""), ZK_STR("")}};
    zk_ws_upgrade up;
    char out[512];
    size_t i;
    CHECK_EQ_INT(upgrade(rfc_request, chat_only, 1, &up), ZK_OK);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = zk_ws_upgrade_accept(out, sizeof out, &up, &bad[i], 1);
        if (rc != ZK_EINVAL) {
            printf("  header %zu: %s\n", i, zk_err_name(rc));
            CHECK(0);
        }
        pair[1] = bad[i]; /* a bad one after a good one */
        CHECK_EQ_INT(zk_ws_upgrade_accept(out, sizeof out, &up, pair, 2), ZK_EINVAL);
    }
    /* HTAB and obs-text are fine in a value. */
    pair[1].name = zk_str_c("X-B");
    pair[1].value = zk_str_c("a\tb \xC3\xA9");
    CHECK(zk_ws_upgrade_accept(out, sizeof out, &up, pair, 2) > 0);
}

/* Parses a written response back; returns its body. */
static zk_str parsed_body(const char *out, int n) {
    zk_str body = {NULL, 0};
    int head = n > 0 ? parse_res(out, (size_t)n) : n;
    if (head <= 0) {
        printf("  written response does not parse: %s\n", zk_err_name(head));
        return body;
    }
    body.ptr = out + head;
    body.len = (size_t)(n - head);
    return body;
}

static long content_length(void) {
    zk_str v = res_header("Content-Length");
    char tmp[24];
    if (!v.ptr || v.len == 0 || v.len >= sizeof tmp) return -1;
    memcpy(tmp, v.ptr, v.len);
    tmp[v.len] = '\0';
    return strtol(tmp, NULL, 10);
}

TEST(upgrade_refuse_426_405_400) {
    static const struct { const char *head; int status; const char *reason, *header, *value; } v[] = {
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
         426, "Upgrade Required", "Sec-WebSocket-Version", "13"},
        {UPGRADE_HEAD("POST /", ""), 405, "Method Not Allowed", "Allow", "GET"},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n", 400, "Bad Request", "Content-Type", "text/plain"},
    };
    size_t i;
    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        zk_ws_upgrade up;
        char out[512];
        int n;
        zk_str body;
        CHECK_EQ_INT(upgrade(v[i].head, NULL, 0, &up), ZK_EHANDSHAKE);
        n = zk_ws_upgrade_refuse(out, sizeof out, &up);
        body = parsed_body(out, n);
        CHECK(body.ptr != NULL);
        if (!body.ptr) continue;
        CHECK_EQ_INT(res.status, v[i].status);
        CHECK_STR(res.reason, v[i].reason);
        CHECK_STR(res_header(v[i].header), v[i].value);
        CHECK(zk_http_list_has(res_header("Connection"), "close"));
        CHECK_EQ_INT(content_length(), body.len);
        CHECK(body.len > 1 && body.ptr[body.len - 1] == '\n');
        CHECK(body.len == strlen(up.error) + 1 && memcmp(body.ptr, up.error, body.len - 1) == 0);
        if (v[i].status != 426) CHECK(res_header("Sec-WebSocket-Version").ptr == NULL);
        if (v[i].status != 405) CHECK(res_header("Allow").ptr == NULL);
    }
}

TEST(upgrade_refuse_enospace_every_cap) {
    zk_ws_upgrade up;
    char full[512];
    int n, wrong = 0;
    size_t cap;
    CHECK_EQ_INT(upgrade(UPGRADE_HEAD("POST /", ""), NULL, 0, &up), ZK_EHANDSHAKE);
    n = zk_ws_upgrade_refuse(full, sizeof full, &up);
    CHECK(n > 0);
    for (cap = 0; n > 0 && cap <= (size_t)n; cap++) {
        char *out = (char *)malloc(cap ? cap : 1);
        int rc = zk_ws_upgrade_refuse(out, cap, &up);
        if (cap < (size_t)n ? rc != ZK_ENOSPACE : (rc != n || memcmp(out, full, cap) != 0)) wrong++;
        free(out);
    }
    CHECK_EQ_INT(wrong, 0);
    /* A zeroed upgrade (no check ran) is refused as 400. */
    memset(&up, 0, sizeof up);
    n = zk_ws_upgrade_refuse(full, sizeof full, &up);
    CHECK(parsed_body(full, n).ptr != NULL);
    CHECK_EQ_INT(res.status, 400);
}

TEST(write_response_exact_bytes) {
    static const char expect[] =
        "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n"
        "Content-Type: text/plain\r\nX-Trace: 1\r\n\r\nno such.\r\n";
    zk_http_header h[2] = {{ZK_STR("Content-Type"), ZK_STR("text/plain")},
                           {ZK_STR("X-Trace"), ZK_STR("1")}};
    char out[256];
    int n = zk_http_write_response(out, sizeof out, 404, h, 2, "no such.\r\n", 10);
    CHECK_MEM(out, n, expect, sizeof expect - 1);
    n = zk_http_write_response(out, sizeof out, 200, NULL, 0, NULL, 0);
    CHECK_MEM(out, n, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 57);
    n = zk_http_write_response(out, sizeof out, 599, NULL, 0, "x", 1);
    CHECK(parsed_body(out, n).len == 1);
    CHECK_EQ_INT(res.status, 599);
    CHECK_STR(res.reason, "Unknown");
}

TEST(write_response_errors) {
    zk_http_header bad[1] = {{ZK_STR("X-A"), ZK_STR("1\r\nSet-Cookie: a=b")}};
    zk_http_header badname[1] = {{ZK_STR("X A"), ZK_STR("1")}};
    zk_http_header ok[1] = {{ZK_STR("X-A"), ZK_STR("1")}};
    char full[256];
    int n, wrong = 0;
    size_t cap;
    CHECK_EQ_INT(zk_http_write_response(full, sizeof full, 200, bad, 1, "", 0), ZK_EINVAL);
    CHECK_EQ_INT(zk_http_write_response(full, sizeof full, 200, badname, 1, "", 0), ZK_EINVAL);
    CHECK_EQ_INT(zk_http_write_response(full, sizeof full, 99, NULL, 0, "", 0), ZK_EINVAL);
    CHECK_EQ_INT(zk_http_write_response(full, sizeof full, 1000, NULL, 0, "", 0), ZK_EINVAL);
    CHECK_EQ_INT(zk_http_write_response(full, sizeof full, -200, NULL, 0, "", 0), ZK_EINVAL);
    n = zk_http_write_response(full, sizeof full, 200, ok, 1, "hello", 5);
    CHECK(n > 0);
    for (cap = 0; n > 0 && cap <= (size_t)n; cap++) {
        char *out = (char *)malloc(cap ? cap : 1);
        int rc = zk_http_write_response(out, cap, 200, ok, 1, "hello", 5);
        if (cap < (size_t)n ? rc != ZK_ENOSPACE : (rc != n || memcmp(out, full, cap) != 0)) wrong++;
        free(out);
    }
    CHECK_EQ_INT(wrong, 0);
}

/* RFC 9110 8.6: a server MUST NOT send Content-Length in a 1xx or 204
   response. */
TEST(write_response_204_without_content_length) {
    char out[256];
    int n = zk_http_write_response(out, sizeof out, 204, NULL, 0, NULL, 0);
    CHECK(parsed_body(out, n).ptr != NULL);
    CHECK_EQ_INT(res.status, 204);
    CHECK(res_header("Content-Length").ptr == NULL);
}

TEST(status_text) {
    CHECK_STR(zk_str_c(zk_http_status_text(101)), "Switching Protocols");
    CHECK_STR(zk_str_c(zk_http_status_text(400)), "Bad Request");
    CHECK_STR(zk_str_c(zk_http_status_text(404)), "Not Found");
    CHECK_STR(zk_str_c(zk_http_status_text(405)), "Method Not Allowed");
    CHECK_STR(zk_str_c(zk_http_status_text(426)), "Upgrade Required");
    CHECK_STR(zk_str_c(zk_http_status_text(431)), "Request Header Fields Too Large");
    CHECK_STR(zk_str_c(zk_http_status_text(505)), "HTTP Version Not Supported");
    CHECK_STR(zk_str_c(zk_http_status_text(299)), "Unknown");
    CHECK_STR(zk_str_c(zk_http_status_text(-1)), "Unknown");
}

/* ---- client side ---- */

static zk_ws_client_handshake rfc_client(void) {
    zk_ws_client_handshake hs;
    memset(&hs, 0, sizeof hs);
    hs.host = "server.example.com";
    hs.path = "/chat";
    hs.origin = "http://example.com";
    hs.protocols = chat_super;
    hs.protocol_count = 2;
    memcpy(hs.key, "the sample nonce", 16); /* base64: dGhlIHNhbXBsZSBub25jZQ== */
    return hs;
}

TEST(client_request_parses_back) {
    zk_http_header extra[1] = {{ZK_STR("Authorization"), ZK_STR("Bearer abc")}};
    zk_ws_client_handshake hs = rfc_client();
    zk_ws_upgrade up;
    char out[512];
    int n;
    hs.path = "/chat?room=1";
    hs.headers = extra;
    hs.header_count = 1;
    n = zk_ws_client_request(out, sizeof out, &hs);
    CHECK(n > 0);
    CHECK_EQ_INT(parse_req(out, (size_t)(n > 0 ? n : 0)), n);
    CHECK_STR(req.method, "GET");
    CHECK_STR(req.target, "/chat?room=1");
    CHECK_STR(req.query, "room=1");
    CHECK_EQ_INT(req.version, 11);
    CHECK_STR(req_header("Host"), "server.example.com");
    CHECK_STR(req_header("Sec-WebSocket-Key"), "dGhlIHNhbXBsZSBub25jZQ==");
    CHECK_STR(req_header("Sec-WebSocket-Version"), "13");
    CHECK_STR(req_header("Origin"), "http://example.com");
    CHECK_STR(req_header("Sec-WebSocket-Protocol"), "chat, superchat");
    CHECK_STR(req_header("Authorization"), "Bearer abc");
    CHECK(zk_http_list_has(req_header("Upgrade"), "websocket"));
    CHECK(zk_http_list_has(req_header("Connection"), "upgrade"));
    CHECK_EQ_INT(zk_ws_upgrade_check(&req, chat_only, 1, &up), ZK_OK);
    CHECK(strcmp(up.accept, RFC_ACCEPT) == 0);
    CHECK(up.protocol == chat_only[0]);
}

TEST(client_request_defaults) {
    zk_ws_client_handshake hs;
    char out[512];
    int n;
    memset(&hs, 0, sizeof hs);
    hs.host = "127.0.0.1:9001";
    n = zk_ws_client_request(out, sizeof out, &hs); /* path NULL: "/" */
    CHECK_EQ_INT(parse_req(out, (size_t)(n > 0 ? n : 0)), n);
    CHECK_STR(req.target, "/");
    CHECK_STR(req_header("Sec-WebSocket-Key"), "AAAAAAAAAAAAAAAAAAAAAA==");
    CHECK(req_header("Origin").ptr == NULL);
    CHECK(req_header("Sec-WebSocket-Protocol").ptr == NULL);
    hs.path = "";
    n = zk_ws_client_request(out, sizeof out, &hs);
    CHECK_EQ_INT(parse_req(out, (size_t)(n > 0 ? n : 0)), n);
    CHECK_STR(req.target, "/");
    hs.key[0] = 0xFF;
    hs.key[15] = 0x01;
    n = zk_ws_client_request(out, sizeof out, &hs);
    CHECK_EQ_INT(parse_req(out, (size_t)(n > 0 ? n : 0)), n);
    CHECK_STR(req_header("Sec-WebSocket-Key"), "/wAAAAAAAAAAAAAAAAAAAQ==");
}

TEST(client_request_enospace_every_cap) {
    zk_ws_client_handshake hs = rfc_client();
    char full[512];
    int n, wrong = 0;
    size_t cap;
    n = zk_ws_client_request(full, sizeof full, &hs);
    CHECK(n > 0);
    for (cap = 0; n > 0 && cap <= (size_t)n; cap++) {
        char *out = (char *)malloc(cap ? cap : 1);
        int rc = zk_ws_client_request(out, cap, &hs);
        if (cap < (size_t)n ? rc != ZK_ENOSPACE : (rc != n || memcmp(out, full, cap) != 0)) wrong++;
        free(out);
    }
    CHECK_EQ_INT(wrong, 0);
}

TEST(client_request_refuses_bad_fields) {
    static const char *const bad_hosts[] = {NULL, "", "a b", "a\r\nX-Evil: 1", "a\nb", "a\rb"};
    static const char *const bad_paths[] = {"/a b", "/a\r\nX-Evil: 1", "/a\nb", "/a\tb",
                                            "chat", "http://h/", "/a\x7f"};
    static const char *const bad_origins[] = {"http://a\r\nX-Evil: 1", "http://a\nb", "a\rb"};
    static const char *const bad_protos[] = {"a b", "a,b", "", "a/b", "chat\r\n", "a;b"};
    zk_http_header bad_header[1] = {{ZK_STR("X-A"), ZK_STR("1\r\nX-Evil: 1")}};
    zk_http_header bad_name[1] = {{ZK_STR("X A"), ZK_STR("1")}};
    char out[512];
    size_t i;
    for (i = 0; i < sizeof bad_hosts / sizeof bad_hosts[0]; i++) {
        zk_ws_client_handshake hs = rfc_client();
        hs.host = bad_hosts[i];
        if (zk_ws_client_request(out, sizeof out, &hs) != ZK_EINVAL) {
            printf("  host %zu accepted\n", i);
            CHECK(0);
        }
    }
    for (i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
        zk_ws_client_handshake hs = rfc_client();
        hs.path = bad_paths[i];
        if (zk_ws_client_request(out, sizeof out, &hs) != ZK_EINVAL) {
            printf("  path %zu accepted\n", i);
            CHECK(0);
        }
    }
    for (i = 0; i < sizeof bad_origins / sizeof bad_origins[0]; i++) {
        zk_ws_client_handshake hs = rfc_client();
        hs.origin = bad_origins[i];
        if (zk_ws_client_request(out, sizeof out, &hs) != ZK_EINVAL) {
            printf("  origin %zu accepted\n", i);
            CHECK(0);
        }
    }
    for (i = 0; i < sizeof bad_protos / sizeof bad_protos[0]; i++) {
        zk_ws_client_handshake hs = rfc_client();
        const char *protos[2];
        protos[0] = "chat";
        protos[1] = bad_protos[i];
        hs.protocols = protos;
        if (zk_ws_client_request(out, sizeof out, &hs) != ZK_EINVAL) {
            printf("  protocol %zu accepted\n", i);
            CHECK(0);
        }
    }
    {
        zk_ws_client_handshake hs = rfc_client();
        hs.headers = bad_header;
        hs.header_count = 1;
        CHECK_EQ_INT(zk_ws_client_request(out, sizeof out, &hs), ZK_EINVAL);
        hs.headers = bad_name;
        CHECK_EQ_INT(zk_ws_client_request(out, sizeof out, &hs), ZK_EINVAL);
    }
}

/* Client request -> server check -> accept -> client verify. */
TEST(handshake_round_trip) {
    static const char *const server_protocols[] = {"superchat", "chat"};
    zk_ws_client_handshake hs = rfc_client();
    zk_ws_upgrade up;
    char request[512], answer[512];
    const char *error = "unset";
    zk_str chosen = {NULL, 0};
    int n, m;
    size_t i;
    for (i = 0; i < 16; i++) hs.key[i] = (unsigned char)(i * 37 + 11);
    n = zk_ws_client_request(request, sizeof request, &hs);
    CHECK(n > 0);
    CHECK_EQ_INT(parse_req(request, (size_t)(n > 0 ? n : 0)), n);
    CHECK_EQ_INT(zk_ws_upgrade_check(&req, server_protocols, 2, &up), ZK_OK);
    CHECK(up.protocol == server_protocols[0]);
    m = zk_ws_upgrade_accept(answer, sizeof answer, &up, NULL, 0);
    CHECK(m > 0);
    CHECK_EQ_INT(parse_res(answer, (size_t)(m > 0 ? m : 0)), m);
    CHECK_EQ_INT(zk_ws_client_verify(&res, &hs, &chosen, &error), ZK_OK);
    CHECK_STR(chosen, "superchat");
    CHECK(error == NULL);
    /* Without subprotocols on either side. */
    hs.protocols = NULL;
    hs.protocol_count = 0;
    n = zk_ws_client_request(request, sizeof request, &hs);
    CHECK_EQ_INT(parse_req(request, (size_t)(n > 0 ? n : 0)), n);
    CHECK_EQ_INT(zk_ws_upgrade_check(&req, server_protocols, 2, &up), ZK_OK);
    CHECK(up.protocol == NULL);
    m = zk_ws_upgrade_accept(answer, sizeof answer, &up, NULL, 0);
    CHECK_EQ_INT(parse_res(answer, (size_t)(m > 0 ? m : 0)), m);
    CHECK_EQ_INT(zk_ws_client_verify(&res, &hs, &chosen, &error), ZK_OK);
    CHECK_EQ_INT(chosen.len, 0);
    CHECK_EQ_INT(zk_ws_client_verify(&res, &hs, NULL, NULL), ZK_OK);
}

/* The RFC 6455 1.2 answer, verified against the RFC's key. */
TEST(client_verify_rfc_example) {
    zk_ws_client_handshake hs = rfc_client();
    zk_str chosen;
    const char *error = "unset";
    CHECK_EQ_INT(parse_res(IN(rfc_response)), sizeof rfc_response - 1);
    CHECK_EQ_INT(zk_ws_client_verify(&res, &hs, &chosen, &error), ZK_OK);
    CHECK_STR(chosen, "chat");
    CHECK(error == NULL);
    /* Header names and tokens in any case. */
    CHECK(parse_res(IN("HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n"
                       "connection: keep-alive, upgrade\r\n"
                       "sec-websocket-accept: " RFC_ACCEPT "\r\n\r\n")) > 0);
    CHECK_EQ_INT(zk_ws_client_verify(&res, &hs, &chosen, &error), ZK_OK);
    CHECK_EQ_INT(chosen.len, 0);
}

#define ANSWER(status_line, extra)                                            \
    status_line "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"           \
    "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n" extra "\r\n"

TEST(client_verify_failures) {
    static const struct { const char *answer; int offer; } v[] = {
        {ANSWER("HTTP/1.1 200 OK", ""), 1},
        {ANSWER("HTTP/1.1 404 Not Found", ""), 1},
        {ANSWER("HTTP/1.1 102 Processing", ""), 1},
        {"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n", 1},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n", 1},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
         "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n", 1},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
         "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n", 1},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 1},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: S3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", 1},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n\r\n", 1},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n\r\n", 1},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 1},
        {ANSWER("HTTP/1.1 101 Switching Protocols", "Sec-WebSocket-Protocol: mqtt\r\n"), 1},
        {ANSWER("HTTP/1.1 101 Switching Protocols", "Sec-WebSocket-Protocol: chat, superchat\r\n"), 1},
        {ANSWER("HTTP/1.1 101 Switching Protocols", "Sec-WebSocket-Protocol: cha\r\n"), 1},
        {ANSWER("HTTP/1.1 101 Switching Protocols", "Sec-WebSocket-Protocol:\r\n"), 1},
        {ANSWER("HTTP/1.1 101 Switching Protocols", "Sec-WebSocket-Protocol: chat\r\n"), 0},
        {ANSWER("HTTP/1.1 101 Switching Protocols",
                "Sec-WebSocket-Extensions: permessage-deflate\r\n"), 1},
        {ANSWER("HTTP/1.1 101 Switching Protocols", "sec-websocket-extensions: x\r\n"), 0},
    };
    size_t i;
    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        zk_ws_client_handshake hs = rfc_client();
        const char *error = NULL;
        zk_str chosen;
        int rc;
        if (!v[i].offer) {
            hs.protocols = NULL;
            hs.protocol_count = 0;
        }
        if (parse_res(v[i].answer, strlen(v[i].answer)) != (int)strlen(v[i].answer)) {
            printf("  answer %zu does not parse\n", i);
            CHECK(0);
            continue;
        }
        rc = zk_ws_client_verify(&res, &hs, &chosen, &error);
        if (rc != ZK_EHANDSHAKE || error == NULL) {
            printf("  answer %zu: %s\n", i, zk_err_name(rc));
            CHECK(0);
        }
        CHECK_EQ_INT(zk_ws_client_verify(&res, &hs, NULL, NULL), ZK_EHANDSHAKE);
    }
}

/* RFC 7936 section 2 (and RFC 6455 4.1): a subprotocol the client did not
   offer, compared case-sensitively, fails the connection. */
TEST(client_verify_subprotocol_case_sensitive) {
    zk_ws_client_handshake hs = rfc_client();
    static const char answer[] =
        ANSWER("HTTP/1.1 101 Switching Protocols", "Sec-WebSocket-Protocol: CHAT\r\n");
    CHECK_EQ_INT(parse_res(IN(answer)), sizeof answer - 1);
    CHECK_EQ_INT(zk_ws_client_verify(&res, &hs, NULL, NULL), ZK_EHANDSHAKE);
}

int main(void) {
    RUN(request_rfc6455_example);
    RUN(header_names_any_case);
    RUN(connection_list_with_keep_alive);
    RUN(list_has);
    RUN(header_values_trimmed_of_ows);
    RUN(path_and_query_split);
    RUN(http10_and_other_methods);
    RUN(request_head_size_excludes_body);
    RUN(request_every_split);
    RUN(response_every_split);
    RUN(request_malformed);
    RUN(request_refused_before_head_ends);
    RUN(request_bare_lf_head_is_refused);
    RUN(request_head_byte_limit_default);
    RUN(request_head_byte_limit_custom);
    RUN(request_header_count_limit);
    RUN(response_rfc6455_example);
    RUN(response_status_line_forms);
    RUN(response_malformed);
    RUN(response_limits);
    RUN(guard_page_requests);
    RUN(guard_page_responses);
    RUN(upgrade_check_rfc_example);
    RUN(upgrade_check_origin_and_host);
    RUN(upgrade_check_subprotocol_choice);
    RUN(upgrade_check_subprotocol_case_sensitive);
    RUN(upgrade_check_not_websocket);
    RUN(upgrade_check_refusals);
    RUN(upgrade_check_method_case_sensitive);
    RUN(upgrade_check_duplicate_host);
    RUN(upgrade_accept_exact_bytes);
    RUN(upgrade_accept_enospace_every_cap);
    RUN(upgrade_accept_refuses_header_injection);
    RUN(upgrade_refuse_426_405_400);
    RUN(upgrade_refuse_enospace_every_cap);
    RUN(write_response_exact_bytes);
    RUN(write_response_errors);
    RUN(write_response_204_without_content_length);
    RUN(status_text);
    RUN(client_request_parses_back);
    RUN(client_request_defaults);
    RUN(client_request_enospace_every_cap);
    RUN(client_request_refuses_bad_fields);
    RUN(handshake_round_trip);
    RUN(client_verify_rfc_example);
    RUN(client_verify_failures);
    RUN(client_verify_subprotocol_case_sensitive);
    return test_summary();
}
