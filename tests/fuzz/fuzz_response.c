/* libFuzzer harness for zk_http_parse_response and the client side of the
   upgrade. Aborts when an invariant breaks:
   - parsed whole, the result is consistent (views inside the input, status
     line fields, header characters);
   - fed through a read loop that resumes with prev_len (one byte per read,
     then reads of 1 to 64 bytes), every prefix gives ZK_EAGAIN until one
     gives the whole parse's result, with the same header views (the same
     error class on failure; see read_loop for the one tolerated case);
   - zk_ws_client_verify, against a fixed handshake (the RFC 6455 sample
     nonce, two subprotocols offered), accepts only a 101 that carries
     Upgrade, Connection and the right Sec-WebSocket-Accept, and reports a
     subprotocol that was offered.
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
    fprintf(stderr, "fuzz_response: invariant broken at line %d: %s\n", __LINE__, #c); \
    abort(); } } while (0)

static const char *const protocols[] = {"chat", "superchat"};
/* RFC 6455 1.3: key "dGhlIHNhbXBsZSBub25jZQ==" gives this accept value. */
static const char sample_accept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

static char *copy_exact(const uint8_t *data, size_t n) {
    char *p = (char *)malloc(n ? n : 1);
    CHECK(p != NULL);
    if (n) memcpy(p, data, n);
    return p;
}

static void check_view(zk_str s, const char *buf, size_t len) {
    CHECK(s.ptr != NULL);
    CHECK(s.ptr >= buf && s.ptr <= buf + len);
    CHECK(s.len <= (size_t)(buf + len - s.ptr));
}

static int is_tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7F); }

static void check_response(const zk_http_response *res, int rc, const char *buf, size_t len,
                           size_t max_headers) {
    size_t i, j;
    check_view(res->reason, buf, len);
    CHECK(res->header_count <= max_headers);
    for (i = 0; i < res->header_count; i++) {
        check_view(res->headers[i].name, buf, len);
        check_view(res->headers[i].value, buf, len);
    }
    if (rc == ZK_EAGAIN) return;
    if (rc < 0) {
        CHECK(rc == ZK_EHTTP || rc == ZK_ETOOBIG);
        CHECK(res->error != NULL);
        return;
    }
    CHECK((size_t)rc <= len && rc >= 4);
    CHECK(memcmp(buf + rc - 4, "\r\n\r\n", 4) == 0);
    CHECK(memchr(buf, '\0', (size_t)rc) == NULL);
    CHECK(memcmp(buf, "HTTP/1.", 7) == 0);
    CHECK(res->error == NULL);
    CHECK(res->version == 10 || res->version == 11);
    CHECK(res->status >= 100 && res->status <= 999);
    CHECK(res->reason.ptr >= buf + 12);
    for (i = 0; i < res->reason.len; i++) CHECK(value_char((unsigned char)res->reason.ptr[i]));
    CHECK(res->reason.ptr[res->reason.len] == '\r');
    for (i = 0; i < res->header_count; i++) {
        zk_str n = res->headers[i].name, v = res->headers[i].value;
        CHECK(n.len > 0 && n.ptr + n.len < buf + rc);
        for (j = 0; j < n.len; j++) CHECK(is_tchar((unsigned char)n.ptr[j]));
        for (j = 0; j < v.len; j++) CHECK(value_char((unsigned char)v.ptr[j]));
        if (v.len) {
            CHECK(v.ptr[0] != ' ' && v.ptr[0] != '\t');
            CHECK(v.ptr[v.len - 1] != ' ' && v.ptr[v.len - 1] != '\t');
        }
    }
}

static void same_response(const zk_http_response *a, const char *abuf,
                          const zk_http_response *b, const char *bbuf) {
    size_t i;
#define SAME_VIEW(x, y) CHECK((x).len == (y).len && (x).ptr - abuf == (y).ptr - bbuf)
    SAME_VIEW(a->reason, b->reason);
    CHECK(a->version == b->version && a->status == b->status);
    CHECK(a->header_count == b->header_count);
    for (i = 0; i < a->header_count; i++) {
        SAME_VIEW(a->headers[i].name, b->headers[i].name);
        SAME_VIEW(a->headers[i].value, b->headers[i].value);
    }
#undef SAME_VIEW
}

static void verify(const zk_http_response *res) {
    zk_ws_client_handshake hs;
    zk_str chosen, h;
    const char *why = (const char *)1;
    char request[512];
    int rc, n;
    memset(&hs, 0, sizeof hs);
    hs.host = "server.example.com";
    hs.path = "/chat";
    hs.protocols = protocols;
    hs.protocol_count = 2;
    memcpy(hs.key, "the sample nonce", 16);
    n = zk_ws_client_request(request, sizeof request, &hs);
    CHECK(n > 0 && (size_t)n < sizeof request);
    request[n] = '\0';
    CHECK(strstr(request, "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n") != NULL);

    rc = zk_ws_client_verify(res, &hs, &chosen, &why);
    CHECK(rc == ZK_OK || rc == ZK_EHANDSHAKE);
    CHECK(zk_ws_client_verify(res, &hs, NULL, NULL) == rc);
    if (rc != ZK_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(why == NULL);
    CHECK(res->status == 101);
    CHECK(zk_http_list_has(zk_http_header_get(res->headers, res->header_count, "Upgrade"), "websocket"));
    CHECK(zk_http_list_has(zk_http_header_get(res->headers, res->header_count, "Connection"), "Upgrade"));
    h = zk_http_header_get(res->headers, res->header_count, "Sec-WebSocket-Accept");
    CHECK(h.len == 28 && memcmp(h.ptr, sample_accept, 28) == 0);
    CHECK(zk_http_header_get(res->headers, res->header_count, "Sec-WebSocket-Extensions").ptr == NULL);
    CHECK(chosen.ptr != NULL);
    if (chosen.len) /* subprotocols compare exactly (RFC 6455 11.3.4) */
        CHECK((chosen.len == 4 && memcmp(chosen.ptr, "chat", 4) == 0) ||
              (chosen.len == 9 && memcmp(chosen.ptr, "superchat", 9) == 0));
    /* A client that offered nothing must refuse a chosen subprotocol. */
    hs.protocol_count = 0;
    rc = zk_ws_client_verify(res, &hs, &chosen, &why);
    CHECK(rc == (zk_http_header_get(res->headers, res->header_count, "Sec-WebSocket-Protocol").ptr
                     ? ZK_EHANDSHAKE : ZK_OK));
}

/* A read loop: each read adds 1 byte (step 0) or 1 to 64 bytes chosen
   by rng, and the parse resumes with prev_len, until it stops asking for
   more. The result must match the parse of the whole input, buf. */
static void read_loop(const uint8_t *data, size_t size, const zk_http_limits *limits,
                      const zk_http_response *whole, int rc, const char *buf, uint64_t rng) {
    static zk_http_response part;
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
        prc = zk_http_parse_response(p, k, prev, &part, limits);
        check_response(&part, prc, p, k, max_headers);
        if (prc > 0) {
            CHECK(prc == rc);
            same_response(whole, buf, &part, p);
        } else if (prc < 0 && prc != ZK_EAGAIN) {
            /* with two faults either may be seen first (see fuzz_request.c) */
            CHECK(rc == prc || rc == ZK_EHTTP || rc == ZK_ETOOBIG);
        }
        prev = k;
        free(p);
    }
    if (prc == ZK_EAGAIN) CHECK(rc == ZK_EAGAIN);
}

static void run(const uint8_t *data, size_t size, const zk_http_limits *limits) {
    static zk_http_response whole;
    size_t max_headers = limits && limits->max_headers ? limits->max_headers : ZK_HTTP_MAX_HEADERS;
    size_t i;
    uint64_t h = 1469598103934665603ull;
    char *buf = copy_exact(data, size);
    int rc = zk_http_parse_response(buf, size, 0, &whole, limits);
    check_response(&whole, rc, buf, size, max_headers);
    for (i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;
    read_loop(data, size, limits, &whole, rc, buf, 0);
    read_loop(data, size, limits, &whole, rc, buf, h | 1);
    if (rc > 0) verify(&whole);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    zk_http_limits small;
    run(data, size, NULL);
    if (size >= 2) {
        small.max_bytes = 64 + data[size - 1];
        small.max_headers = 1 + data[size - 2] % 8;
        run(data, size, &small);
    }
    return 0;
}
