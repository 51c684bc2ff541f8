/* interop_client: the zocket client against an independent echo server
   (tests/interop/py_server.py on Python websockets, node_server.js on Node ws).

   build/interop_client ws://127.0.0.1:PORT

   Prints one "ok NAME" or "FAIL NAME: why" line per check and exits 1 if
   any failed. The peer echoes every message, and understands three markers
   at the start of a message: "fragment:" (echo it in five or six fragments),
   "close:NNNN" (close with that code) and "ping:" (ping us, then send
   "pong:ok" once our pong is back). Every wait is bounded. The library's
   allocations are counted: none may be left once the last on_close has
   returned and the loop is freed. */
#include <stddef.h>

/* zocket.h comes before the system headers (it sets the feature macros its
   implementation needs), so the counting allocator is only declared here. */
static void *count_realloc(void *p, size_t n);
static void count_free(void *p);
#define ZK_MALLOC(n) count_realloc(NULL, n)
#define ZK_REALLOC(p, n) count_realloc(p, n)
#define ZK_FREE(p) count_free(p)
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <stdio.h>
#include <stdlib.h>

static long live_allocations;
static void *count_realloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (q && !p) live_allocations++;
    return q;
}
static void count_free(void *p) {
    if (p) live_allocations--;
    free(p);
}

#define STEP_MS 30000u /* the longest any one check may take */
#define MAX_MESSAGE (32u << 20)

static zk_loop *loop;
static const char *url;
static int failures;

/* What the callbacks saw; each check resets what it waits for. */
static struct {
    zk_conn *conn;
    int opened, closed, close_code, close_clean;
    char close_reason[128];
    /* the message a check expects back, compared in on_message */
    const unsigned char *want;
    size_t want_len;
    int want_binary;
    int messages;              /* messages received since the reset */
    char mismatch[128];        /* first difference found, or "" */
    unsigned char last[64];    /* the start of the last message */
    size_t last_len;
    int pongs;                 /* pongs received since the reset */
    const unsigned char *pong_want[16];
    size_t pong_want_len[16];
    int pong_bad;              /* a pong whose payload was not the one due */
} st;

static void report(const char *name, const char *error) {
    if (!error) {
        printf("ok %s\n", name);
    } else {
        failures++;
        printf("FAIL %s: %s\n", name, error);
    }
    fflush(stdout);
}

static void on_open(zk_conn *conn, const zk_http_request *req) {
    (void)conn, (void)req;
    st.opened = 1;
}

static void on_message(zk_conn *conn, zk_str data, int binary) {
    (void)conn;
    st.last_len = data.len < sizeof st.last ? data.len : sizeof st.last;
    memcpy(st.last, data.ptr, st.last_len);
    if (st.want && !st.mismatch[0]) {
        if (binary != st.want_binary) {
            snprintf(st.mismatch, sizeof st.mismatch, "got %s back", binary ? "binary" : "text");
        } else if (data.len != st.want_len) {
            snprintf(st.mismatch, sizeof st.mismatch, "got %lu bytes back, sent %lu",
                     (unsigned long)data.len, (unsigned long)st.want_len);
        } else if (data.len && memcmp(data.ptr, st.want, data.len) != 0) {
            size_t i = 0;
            while (((const unsigned char *)data.ptr)[i] == st.want[i]) i++;
            snprintf(st.mismatch, sizeof st.mismatch, "differs from offset %lu", (unsigned long)i);
        }
    }
    st.messages++;
}

static void on_pong(zk_conn *conn, zk_str data) {
    int i = st.pongs++;
    (void)conn;
    if (i >= 16 || !st.pong_want[i] || data.len != st.pong_want_len[i] ||
        (data.len && memcmp(data.ptr, st.pong_want[i], data.len) != 0))
        st.pong_bad = 1;
}

static void on_close(zk_conn *conn, int code, zk_str reason, int clean) {
    size_t n = reason.len < sizeof st.close_reason - 1 ? reason.len : sizeof st.close_reason - 1;
    (void)conn;
    st.closed = 1;
    st.close_code = code;
    st.close_clean = clean;
    memcpy(st.close_reason, reason.ptr, n);
    st.close_reason[n] = '\0';
    st.conn = NULL; /* freed when this returns */
}

/* Runs the loop until *flag is set, at most ms. Returns *flag. */
static int wait_for(const int *flag, uint32_t ms) {
    uint64_t end = zk_loop_now(loop) + ms;
    while (!*flag && zk_loop_now(loop) < end)
        if (zk_loop_step(loop, 50) < 0) break;
    return *flag;
}

/* A fresh connection to url; NULL after reporting why not. */
static zk_conn *connect_to(const char *name) {
    zk_conn_opts o;
    int err = 0;
    memset(&o, 0, sizeof o);
    o.url = url;
    o.max_message = MAX_MESSAGE;
    o.write_limit = 2 * MAX_MESSAGE;
    o.cb.on_open = on_open;
    o.cb.on_message = on_message;
    o.cb.on_close = on_close;
    o.cb.on_pong = on_pong;
    st.opened = st.closed = 0;
    st.conn = zk_conn_connect(loop, &o, &err);
    if (!st.conn) {
        report(name, zk_strerror(err));
        return NULL;
    }
    {
        uint64_t end = zk_loop_now(loop) + STEP_MS;
        while (!st.opened && !st.closed && zk_loop_now(loop) < end)
            if (zk_loop_step(loop, 50) < 0) break;
    }
    if (!st.opened) {
        char why[160];
        snprintf(why, sizeof why, "connect failed (%d %s)", st.close_code, st.close_reason);
        if (st.conn) zk_conn_abort(st.conn);
        st.conn = NULL;
        report(name, why);
        return NULL;
    }
    return st.conn;
}

/* The connection the message checks share, opened again if one dropped it. */
static zk_conn *shared_conn(const char *name) {
    return st.conn ? st.conn : connect_to(name);
}

static void reset_expectations(void) {
    st.want = NULL;
    st.messages = 0;
    st.mismatch[0] = '\0';
    st.pongs = 0;
    st.pong_bad = 0;
    memset(st.pong_want, 0, sizeof st.pong_want);
}

/* Sends data and expects it back byte for byte. */
static void check_echo(const char *name, const unsigned char *data, size_t len, int binary) {
    zk_conn *c = shared_conn(name);
    int rc;
    char why[96];
    if (!c) return;
    reset_expectations();
    st.want = data;
    st.want_len = len;
    st.want_binary = binary;
    if ((rc = zk_conn_send(c, data, len, binary)) < 0) {
        snprintf(why, sizeof why, "zk_conn_send: %s", zk_strerror(rc));
        report(name, why);
        return;
    }
    if (!wait_for(&st.messages, STEP_MS)) {
        report(name, st.closed ? "connection closed before the echo" : "no echo in time");
        return;
    }
    report(name, st.mismatch[0] ? st.mismatch : NULL);
}

/* Sends count pings and expects their pongs, in order. */
static void check_pings(const char *name, const unsigned char *const *payloads,
                        const size_t *lens, int count) {
    zk_conn *c = shared_conn(name);
    int i, rc, all = 0;
    uint64_t end;
    if (!c) return;
    reset_expectations();
    for (i = 0; i < count; i++) {
        st.pong_want[i] = payloads[i];
        st.pong_want_len[i] = lens[i];
        if ((rc = zk_conn_ping(c, payloads[i], lens[i])) < 0) {
            report(name, zk_strerror(rc));
            return;
        }
    }
    end = zk_loop_now(loop) + STEP_MS;
    while (!(all = st.pongs >= count) && !st.closed && zk_loop_now(loop) < end)
        if (zk_loop_step(loop, 50) < 0) break;
    if (!all) report(name, st.closed ? "connection closed before the pongs" : "pongs missing");
    else report(name, st.pong_bad || st.pongs != count ? "wrong pong payload or count" : NULL);
}

/* The peer pings us on request; our automatic pong makes it say "pong:ok". */
static void check_peer_ping(const char *name) {
    zk_conn *c = shared_conn(name);
    if (!c) return;
    reset_expectations();
    zk_conn_send(c, "ping:", 5, 0);
    if (!wait_for(&st.messages, STEP_MS)) {
        report(name, "the peer never saw our pong");
        return;
    }
    report(name, st.last_len == 7 && memcmp(st.last, "pong:ok", 7) == 0
                     ? NULL : "unexpected answer to ping:");
}

/* We close with code; the peer's answering close must carry it back. */
static void check_client_close(const char *name, int code, const char *reason) {
    zk_conn *c = st.conn ? st.conn : connect_to(name);
    char why[200];
    int rc;
    if (!c) return;
    if ((rc = zk_conn_close(c, code, reason)) < 0) {
        report(name, zk_strerror(rc));
        return;
    }
    if (!wait_for(&st.closed, STEP_MS)) {
        report(name, "no close in time");
        return;
    }
    if (st.close_code != code || !st.close_clean) {
        snprintf(why, sizeof why, "closed with %d (%s), clean %d; want %d, clean", st.close_code,
                 st.close_reason, st.close_clean, code);
        report(name, why);
        return;
    }
    report(name, NULL);
}

/* The peer closes with 4002 on request; we must see its code and reason. */
static void check_server_close(const char *name) {
    zk_conn *c = st.conn ? st.conn : connect_to(name);
    char why[200];
    if (!c) return;
    zk_conn_send(c, "close:4002", 10, 0);
    if (!wait_for(&st.closed, STEP_MS)) {
        report(name, "no close in time");
        return;
    }
    if (st.close_code != 4002 || !st.close_clean || strcmp(st.close_reason, "server closes") != 0) {
        snprintf(why, sizeof why, "closed with %d (%s), clean %d; want 4002 (server closes), clean",
                 st.close_code, st.close_reason, st.close_clean);
        report(name, why);
        return;
    }
    report(name, NULL);
}

/* n bytes of UTF-8 text mixing 1-, 2-, 3- and 4-byte characters, after an
   optional ASCII prefix. */
static unsigned char *text_of(size_t n, const char *prefix) {
    static const unsigned char unit[10] = {'a', 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80};
    unsigned char *t = (unsigned char *)malloc(n ? n : 1);
    size_t i = 0, p = strlen(prefix);
    if (!t) return NULL;
    memcpy(t, prefix, p < n ? p : n);
    for (i = p; i + 10 <= n; i += 10) memcpy(t + i, unit, 10);
    for (; i < n; i++) t[i] = 'x';
    return t;
}

/* n pseudo-random bytes (xorshift64), after an optional prefix. */
static unsigned char *binary_of(size_t n, const char *prefix) {
    unsigned char *b = (unsigned char *)malloc(n ? n : 1);
    uint64_t x = 0x9E3779B97F4A7C15u ^ n;
    size_t i, p = strlen(prefix);
    if (!b) return NULL;
    for (i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        b[i] = (unsigned char)(x >> 24);
    }
    memcpy(b, prefix, p < n ? p : n);
    return b;
}

int main(int argc, char **argv) {
    static const size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 16u << 20};
    unsigned char *pings[10], *big_ping;
    const unsigned char *payloads[10];
    size_t lens[10], i;
    char name[128];

    if (argc != 2) {
        fprintf(stderr, "usage: %s ws://HOST:PORT\n", argv[0]);
        return 2;
    }
    url = argv[1];
    loop = zk_loop_new(NULL);
    if (!loop) return 1;

    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *t = text_of(sizes[i], ""), *b = binary_of(sizes[i], "");
        snprintf(name, sizeof name, "text %lu bytes echoed", (unsigned long)sizes[i]);
        if (t) check_echo(name, t, sizes[i], 0); else report(name, "out of memory");
        snprintf(name, sizeof name, "binary %lu bytes echoed", (unsigned long)sizes[i]);
        if (b) check_echo(name, b, sizes[i], 1); else report(name, "out of memory");
        free(t);
        free(b);
    }
    {
        unsigned char *t = text_of(70001, "fragment:"), *b = binary_of(70001, "fragment:");
        if (t) check_echo("fragmented text from the peer (5-6 frames, empty ones too) reassembled", t, 70001, 0);
        if (b) check_echo("fragmented binary from the peer (5-6 frames, empty ones too) reassembled", b, 70001, 1);
        free(t);
        free(b);
    }

    payloads[0] = (const unsigned char *)"are you there";
    lens[0] = 13;
    check_pings("zk_conn_ping answered (on_pong, same payload)", payloads, lens, 1);
    big_ping = binary_of(125, "");
    payloads[0] = big_ping;
    lens[0] = 125;
    if (big_ping) check_pings("zk_conn_ping with a 125-byte payload answered", payloads, lens, 1);
    for (i = 0; i < 10; i++) {
        pings[i] = (unsigned char *)malloc(8);
        if (pings[i]) snprintf((char *)pings[i], 8, "ping %lu", (unsigned long)i);
        payloads[i] = pings[i];
        lens[i] = pings[i] ? strlen((char *)pings[i]) : 0;
    }
    check_pings("ten pings in a row, ten pongs in order", payloads, lens, 10);
    for (i = 0; i < 10; i++) free(pings[i]);
    free(big_ping);
    check_peer_ping("the peer's ping answered by our automatic pong");

    check_client_close("client close 1000 answered with 1000", 1000, "bye");
    check_client_close("client close 4001 answered with 4001", 4001, "application code");
    check_server_close("server close 4002 seen with its code and reason");

    if (st.conn) {
        zk_conn_abort(st.conn);
        wait_for(&st.closed, 1000);
    }
    zk_loop_free(loop);
    /* on_close says the connection is freed when it returns, and nothing
       of the library's is left once the loop is freed */
    if (live_allocations != 0) {
        char why[160];
        snprintf(why, sizeof why, "%ld allocations of the library still live "
                 "(a connection outlived its on_close?)", live_allocations);
        report("nothing left allocated after the last on_close and zk_loop_free", why);
    } else {
        report("nothing left allocated after the last on_close and zk_loop_free", NULL);
    }
    return failures ? 1 : 0;
}
