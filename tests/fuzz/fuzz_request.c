/* libFuzzer harness for zk_http_parse_request and the server side of the
   upgrade. Aborts when an invariant breaks:
   - parsed whole, the result is consistent (views inside the input, sizes,
     status codes, token and value characters);
   - fed through a read loop that resumes with prev_len (one byte per read,
     then reads of 1 to 64 bytes), every prefix gives ZK_EAGAIN until one
     gives the whole parse's result, with the same header views (the same
     error class on failure; see read_loop for the one tolerated case);
   - a valid request passes through zk_ws_upgrade_check: an accepted one is
     answered with zk_ws_upgrade_accept, whose output parses back as a 101
     that zk_ws_client_verify accepts; a refused one gets a refusal that
     fits in 512 bytes and parses back with the right status.
   Every parse reads from a malloc'd copy of exactly the bytes it is given,
   so ASan catches a read past the end. Each input is parsed with the
   default limits and again with small ones taken from its first bytes. */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) { \
    fprintf(stderr, "fuzz_request: invariant broken at line %d: %s\n", __LINE__, #c); \
    abort(); } } while (0)

static const char *const protocols[] = {"chat", "superchat"};

static char *copy_exact(const uint8_t *data, size_t n) {
    char *p = (char *)malloc(n ? n : 1);
    CHECK(p != NULL);
    if (n) memcpy(p, data, n);
    return p;
}

/* s lies inside buf[0..len) (an empty view may sit at buf + len). */
static void check_view(zk_str s, const char *buf, size_t len) {
    CHECK(s.ptr != NULL);
    CHECK(s.ptr >= buf && s.ptr <= buf + len);
    CHECK(s.len <= (size_t)(buf + len - s.ptr));
}

static int is_tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* The path is in the target, or the library's "/" for an absolute-form
   target without one ("http://host?x"). */
static int path_is_own_slash(const zk_http_request *req, const char *buf, size_t len) {
    return (req->path.ptr < buf || req->path.ptr > buf + len) && req->path.len == 1 &&
           req->path.ptr[0] == '/';
}

static void check_request(const zk_http_request *req, int rc, const char *buf, size_t len,
                          size_t max_headers) {
    size_t i, j;
    check_view(req->method, buf, len);
    check_view(req->target, buf, len);
    if (!path_is_own_slash(req, buf, len)) check_view(req->path, buf, len);
    check_view(req->query, buf, len);
    CHECK(req->header_count <= max_headers);
    for (i = 0; i < req->header_count; i++) {
        check_view(req->headers[i].name, buf, len);
        check_view(req->headers[i].value, buf, len);
    }
    if (rc == ZK_EAGAIN) return;
    if (rc < 0) {
        CHECK(rc == ZK_EHTTP || rc == ZK_ETOOBIG);
        CHECK(req->error != NULL);
        CHECK(rc == ZK_ETOOBIG ? req->status == 431 : (req->status == 400 || req->status == 505));
        return;
    }
    CHECK((size_t)rc <= len && rc >= 4);
    CHECK(memcmp(buf + rc - 4, "\r\n\r\n", 4) == 0);
    CHECK(memchr(buf, '\0', (size_t)rc) == NULL);
    CHECK(req->status == 0 && req->error == NULL);
    CHECK(req->version == 10 || req->version == 11);
    CHECK(req->method.len > 0 && req->method.ptr == buf);
    for (i = 0; i < req->method.len; i++) CHECK(is_tchar((unsigned char)req->method.ptr[i]));
    CHECK(req->target.len > 0);
    for (i = 0; i < req->target.len; i++)
        CHECK((unsigned char)req->target.ptr[i] > 0x20 && req->target.ptr[i] != 0x7F);
    /* path and query lie inside the target */
    if (path_is_own_slash(req, buf, len))
        CHECK(req->target.ptr[0] != '/' && req->target.ptr[0] != '*');
    else
        CHECK(req->path.ptr >= req->target.ptr &&
              req->path.ptr + req->path.len <= req->target.ptr + req->target.len);
    CHECK(req->query.ptr >= req->target.ptr &&
          req->query.ptr + req->query.len <= req->target.ptr + req->target.len);
    for (i = 0; i < req->header_count; i++) {
        zk_str n = req->headers[i].name, v = req->headers[i].value;
        CHECK(n.len > 0 && n.ptr + n.len < buf + rc);
        for (j = 0; j < n.len; j++) CHECK(is_tchar((unsigned char)n.ptr[j]));
        for (j = 0; j < v.len; j++) {
            unsigned char c = (unsigned char)v.ptr[j];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7F));
        }
        if (v.len) {
            CHECK(v.ptr[0] != ' ' && v.ptr[0] != '\t');
            CHECK(v.ptr[v.len - 1] != ' ' && v.ptr[v.len - 1] != '\t');
        }
        if (i) CHECK(n.ptr > req->headers[i - 1].value.ptr); /* in order */
    }
}

static void same_request(const zk_http_request *a, const char *abuf,
                         const zk_http_request *b, const char *bbuf) {
    size_t i;
#define SAME_VIEW(x, y) CHECK((x).len == (y).len && (x).ptr - abuf == (y).ptr - bbuf)
    SAME_VIEW(a->method, b->method);
    SAME_VIEW(a->target, b->target);
    if (path_is_own_slash(a, abuf, (size_t)(a->target.ptr + a->target.len - abuf)))
        CHECK(b->path.len == 1 && b->path.ptr[0] == '/');
    else
        SAME_VIEW(a->path, b->path);
    SAME_VIEW(a->query, b->query);
    CHECK(a->version == b->version && a->status == b->status);
    CHECK(a->header_count == b->header_count);
    for (i = 0; i < a->header_count; i++) {
        SAME_VIEW(a->headers[i].name, b->headers[i].name);
        SAME_VIEW(a->headers[i].value, b->headers[i].value);
    }
#undef SAME_VIEW
}

/* The helpers that read a parsed request: they must stay in bounds. */
static void use_request(const zk_http_request *req) {
    char out[64];
    static const char *const names[] = {"room", "token", "a", ""};
    size_t i;
    int n;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        n = zk_query_get(req->query, names[i], out, sizeof out);
        CHECK(n == ZK_ENOTFOUND || n == ZK_EINVAL || n == ZK_ENOSPACE || (n >= 0 && n <= 64));
    }
    n = zk_url_decode(req->path, out, sizeof out, 0);
    CHECK(n == ZK_EINVAL || n == ZK_ENOSPACE || (n >= 0 && (size_t)n <= req->path.len));
    (void)zk_http_header_get(req->headers, req->header_count, "Host");
}

static void upgrade(const zk_http_request *req) {
    zk_ws_upgrade up;
    char out[1024];
    zk_http_response res;
    int rc = zk_ws_upgrade_check(req, protocols, 2, &up), n;
    CHECK(rc == ZK_OK || rc == ZK_ENOTWS || rc == ZK_EHANDSHAKE);
    if (rc == ZK_OK) {
        zk_ws_client_handshake hs;
        char accept[29];
        zk_str chosen, got;
        const char *why = NULL;
        CHECK(up.key.len == 24 && up.host.len > 0);
        CHECK(up.protocol == NULL || up.protocol == protocols[0] || up.protocol == protocols[1]);
        CHECK(strlen(up.accept) == 28);
        zk_ws_accept_key(up.key, accept);
        CHECK(memcmp(accept, up.accept, 29) == 0);
        n = zk_ws_upgrade_accept(out, sizeof out, &up, NULL, 0);
        CHECK(n > 0 && (size_t)n <= sizeof out);
        CHECK(zk_http_parse_response(out, (size_t)n, 0, &res, NULL) == n);
        CHECK(res.status == 101 && res.version == 11);
        got = zk_http_header_get(res.headers, res.header_count, "Sec-WebSocket-Accept");
        CHECK(got.len == 28 && memcmp(got.ptr, up.accept, 28) == 0);
        /* the client that sent this key (base64 of 16 bytes) accepts the answer */
        memset(&hs, 0, sizeof hs);
        hs.host = "h";
        hs.protocols = protocols;
        hs.protocol_count = 2;
        CHECK(zk__b64_decode(up.key.ptr, 24, hs.key, sizeof hs.key) == 16);
        CHECK(zk_ws_client_verify(&res, &hs, &chosen, &why) == ZK_OK && why == NULL);
        CHECK(up.protocol ? (chosen.len == strlen(up.protocol) &&
                             memcmp(chosen.ptr, up.protocol, chosen.len) == 0)
                          : chosen.len == 0);
    } else if (rc == ZK_EHANDSHAKE) {
        char small[512];
        CHECK(up.error != NULL);
        CHECK(up.status == 400 || up.status == 405 || up.status == 426);
        n = zk_ws_upgrade_refuse(small, sizeof small, &up);
        CHECK(n > 0 && (size_t)n <= sizeof small);
        n = zk_http_parse_response(small, (size_t)n, 0, &res, NULL);
        CHECK(n > 0);
        CHECK(res.status == up.status);
        if (up.status == 426)
            CHECK(zk_http_header_get(res.headers, res.header_count, "Sec-WebSocket-Version").len == 2);
    }
}

/* A read loop: each read adds 1 byte (step 0) or 1 to 64 bytes chosen
   by rng, and the parse resumes with prev_len, until it stops asking for
   more. The result must match the parse of the whole input, buf. */
static void read_loop(const uint8_t *data, size_t size, const zk_http_limits *limits,
                      const zk_http_request *whole, int rc, const char *buf, uint64_t rng) {
    static zk_http_request part;
    size_t max_headers = limits && limits->max_headers ? limits->max_headers : ZK_HTTP_MAX_HEADERS;
    size_t k = 0, prev = 0;
    int prc = ZK_EAGAIN;
    while (k < size && prc == ZK_EAGAIN) {
        char *p;
        if (rng) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            k += 1 + (size_t)(rng % 64);
            if (k > size) k = size;
        } else {
            k++;
        }
        p = copy_exact(data, k);
        prc = zk_http_parse_request(p, k, prev, &part, limits);
        check_request(&part, prc, p, k, max_headers);
        if (prc > 0) {
            CHECK(prc == rc);
            same_request(whole, buf, &part, p);
        } else if (prc < 0 && prc != ZK_EAGAIN) {
            /* An error, and the same one unless the head has two faults,
               one malformed (ZK_EHTTP, 400) and one over a limit
               (ZK_ETOOBIG, 431): which is seen first can depend on the
               reads (a bare LF is refused as it arrives, too many headers
               only once the head is complete; past max_bytes the size is
               checked first only when the head's end is in the buffer).
               Both refuse the request, so either is accepted. */
            CHECK(rc == prc || rc == ZK_EHTTP || rc == ZK_ETOOBIG);
        }
        prev = k;
        free(p);
    }
    if (prc == ZK_EAGAIN) CHECK(rc == ZK_EAGAIN);
}

static void run(const uint8_t *data, size_t size, const zk_http_limits *limits) {
    static zk_http_request whole; /* big: keep it off the stack */
    size_t max_headers = limits && limits->max_headers ? limits->max_headers : ZK_HTTP_MAX_HEADERS;
    size_t i;
    uint64_t h = 1469598103934665603ull;
    char *buf = copy_exact(data, size);
    int rc = zk_http_parse_request(buf, size, 0, &whole, limits);
    check_request(&whole, rc, buf, size, max_headers);
    for (i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;
    read_loop(data, size, limits, &whole, rc, buf, 0);
    read_loop(data, size, limits, &whole, rc, buf, h | 1);
    if (rc > 0) {
        use_request(&whole);
        upgrade(&whole);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    zk_http_limits small;
    run(data, size, NULL);
    if (size >= 2) {
        small.max_bytes = 64 + data[0];
        small.max_headers = 1 + data[1] % 8;
        run(data, size, &small);
    }
    return 0;
}
