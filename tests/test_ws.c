/* Unit tests of the zk_ws frame engine: zk_ws_feed over every way a read
   loop can split its input, both roles, every length class and limit, the
   encoder (zk_ws_send, zk_ws_close), the masking and header helpers, UTF-8
   validation and the reassembly buffer's lifetime.

   The frames a peer sends are built here by put_header/put_payload, not by
   the library's encoder, so the two sides are checked against each other. */
#define _DEFAULT_SOURCE /* mmap and sysconf in test.h under -std=c99 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The library allocates through these, so a test can see what it holds. */
static long lib_live_allocs;
static int lib_alloc_fails; /* set: every library allocation fails */
static void *count_realloc(void *p, size_t n) {
    void *q = lib_alloc_fails ? NULL : realloc(p, n);
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
#include "ws_record.h"

/* ---- growable byte strings ------------------------------------------- */

static void put_str(bytes *b, const char *s) { put(b, s, strlen(s)); }

/* Valid UTF-8 of exactly n bytes, with 2-, 3- and 4-byte characters. */
static void fill_text(unsigned char *out, size_t n) {
    static const char unit[] = "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6-\xe2\x82\xac-\xf0\x9f\x98\x80-\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5|";
    size_t u = sizeof unit - 1, i = 0;
    while (n - i >= u) {
        memcpy(out + i, unit, u);
        i += u;
    }
    memset(out + i, '*', n - i);
}

static void fill_binary(unsigned char *out, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) out[i] = (unsigned char)(i * 131 + (i >> 8) + 7);
}

/* ---- the peer: an independent frame builder ---------------------------- */

/* One frame header as RFC 6455 5.2 lays it out: b0 carries FIN, RSV and the
   opcode as given; the length in its shortest form; the key if masked. */
static void put_header(bytes *b, unsigned b0, uint64_t len, const unsigned char *key) {
    unsigned m = key ? 0x80u : 0u;
    int i;
    put_byte(b, b0);
    if (len < 126) {
        put_byte(b, m | (unsigned)len);
    } else if (len < 65536) {
        put_byte(b, m | 126u);
        put_byte(b, (unsigned)(len >> 8) & 0xFF);
        put_byte(b, (unsigned)len & 0xFF);
    } else {
        put_byte(b, m | 127u);
        for (i = 7; i >= 0; i--) put_byte(b, (unsigned)(len >> (8 * i)) & 0xFF);
    }
    if (key) put(b, key, 4);
}

static void put_payload(bytes *b, const void *data, size_t len, const unsigned char *key) {
    size_t start = b->len, i;
    put(b, data, len);
    if (key)
        for (i = 0; i < len; i++) b->p[start + i] ^= key[i % 4];
}

/* A peer masks when it is a client (it talks to our server). */
typedef struct peer {
    bytes out;
    int masks;
    uint32_t frames;
} peer;

static void peer_init(peer *pr, int engine_role) {
    memset(pr, 0, sizeof *pr);
    pr->masks = engine_role == ZK_WS_SERVER;
}

static void peer_key(peer *pr, unsigned char key[4]) {
    uint32_t k = (pr->frames++ + 1) * 2654435761u ^ 0x5bd1e995u;
    key[0] = (unsigned char)(k | 1);
    key[1] = (unsigned char)(k >> 8);
    key[2] = (unsigned char)(k >> 16);
    key[3] = (unsigned char)((k >> 24) | 0x80);
}

static void peer_frame(peer *pr, unsigned b0, const void *data, size_t len) {
    unsigned char key[4];
    if (pr->masks) peer_key(pr, key);
    put_header(&pr->out, b0, len, pr->masks ? key : NULL);
    put_payload(&pr->out, data, len, pr->masks ? key : NULL);
}

static void peer_str(peer *pr, unsigned b0, const char *s) { peer_frame(pr, b0, s, strlen(s)); }

static void peer_close(peer *pr, int code, const char *reason) {
    bytes p = {0};
    put_byte(&p, (unsigned)code >> 8);
    put_byte(&p, (unsigned)code & 0xFF);
    put_str(&p, reason);
    peer_frame(pr, 0x88, p.p, p.len);
    bytes_free(&p);
}

/* ---- an independent parser for what the library sends ------------------- */

typedef struct parsed {
    int fin, rsv, opcode, masked, minimal;
    unsigned char key[4];
    uint64_t len;
    size_t size; /* header + payload */
    bytes payload; /* unmasked */
} parsed;

/* Parses the frame at p[0..n); returns 0 if it is not all there. */
static int parse_frame(const unsigned char *p, size_t n, parsed *f) {
    size_t h = 2, i;
    memset(f, 0, sizeof *f);
    if (n < 2) return 0;
    f->fin = p[0] >> 7;
    f->rsv = (p[0] >> 4) & 7;
    f->opcode = p[0] & 15;
    f->masked = p[1] >> 7;
    f->len = p[1] & 127;
    f->minimal = 1;
    if (f->len == 126) {
        if (n < 4) return 0;
        f->len = (uint64_t)p[2] << 8 | p[3];
        f->minimal = f->len >= 126;
        h = 4;
    } else if (f->len == 127) {
        if (n < 10) return 0;
        for (f->len = 0, i = 2; i < 10; i++) f->len = f->len << 8 | p[i];
        f->minimal = f->len > 65535 && !(p[2] & 0x80);
        h = 10;
    }
    if (f->masked) {
        if (n < h + 4) return 0;
        memcpy(f->key, p + h, 4);
        h += 4;
    }
    if (n - h < f->len) return 0;
    put(&f->payload, p + h, (size_t)f->len);
    if (f->masked)
        for (i = 0; i < f->len; i++) f->payload.p[i] ^= f->key[i % 4];
    f->size = h + (size_t)f->len;
    return 1;
}

/* ---- the driver: a read loop over a split schedule ---------------------- */

enum { SCHED_WHOLE, SCHED_BYTES, SCHED_SPLIT, SCHED_FIXED, SCHED_RANDOM };

typedef struct schedule {
    int kind;
    size_t arg;   /* SPLIT: the cut; FIXED: chunk size; RANDOM: largest chunk */
    uint64_t rng; /* RANDOM: the seed */
} schedule;

static schedule sched(int kind, size_t arg, uint64_t seed) {
    schedule s;
    s.kind = kind;
    s.arg = arg;
    s.rng = seed;
    return s;
}

static size_t next_chunk(schedule *s, size_t pos, size_t len) {
    size_t rest = len - pos, k = rest;
    switch (s->kind) {
    case SCHED_BYTES: k = 1; break;
    case SCHED_SPLIT: k = pos < s->arg ? s->arg - pos : rest; break;
    case SCHED_FIXED: k = s->arg; break;
    case SCHED_RANDOM: k = 1 + (size_t)(rng_next(&s->rng) % s->arg); break;
    default: break;
    }
    if (k == 0) k = 1;
    return k < rest ? k : rest;
}

/* Feeds buf[0..*avail) until the engine wants more; the unconsumed bytes
   stay at the end of the buffer and *avail becomes their count. */
static void feed_all(zk_ws *ws, unsigned char *buf, size_t *avail, run_result *r) {
    size_t off = 0, rounds = 0;
    for (;;) {
        zk_ws_event ev;
        size_t used = zk_ws_feed(ws, buf + off, *avail - off, &ev);
        if (used > *avail - off) {
            r->broken = "consumed more bytes than given";
            used = *avail - off;
        }
        if (ev.type != ZK_WS_EV_NONE) record(r, &ev);
        off += used;
        if (used == 0 && ev.type == ZK_WS_EV_NONE) break;
        if (used == 0 || ++rounds > *avail + 4) {
            r->broken = "no progress";
            break;
        }
    }
    *avail -= off;
}

/* Runs input through a fresh engine the way a read loop does: it reads the
   chunks the schedule gives, appends each to the bytes kept unconsumed, and
   feeds until the engine needs more. The buffer ends right before an
   unmapped page, so reading past what was passed crashes. */
static void drive(const zk_ws_opts *opts, const unsigned char *input, size_t len, schedule s,
                  run_result *r) {
    guard_buf g = guard_alloc(input, len);
    unsigned char *end = g.data + len;
    size_t avail = 0, pos = 0;
    zk_ws ws;
    memset(r, 0, sizeof *r);
    zk_ws_init(&ws, opts);
    while (pos < len) {
        size_t k = next_chunk(&s, pos, len);
        memmove(end - avail - k, end - avail, avail);
        memcpy(end - k, input + pos, k);
        pos += k;
        avail += k;
        feed_all(&ws, end - avail, &avail, r);
        if (avail > ZK_WS_MAX_CONTROL_FRAME && !r->broken)
            r->broken = "kept more than a partial header or control frame unconsumed";
    }
    r->state = zk_ws_state(&ws);
    r->left = avail;
    zk_ws_free(&ws);
    guard_free(&g);
}

static void drive_role(int role, size_t max_message, const bytes *in, schedule s, run_result *r) {
    zk_ws_opts o;
    memset(&o, 0, sizeof o);
    o.role = role;
    o.max_message = max_message;
    drive(&o, in->p, in->len, s, r);
}

static const char *ev_name(int type) {
    static const char *names[] = {"NONE", "TEXT", "BINARY", "PING", "PONG", "CLOSE", "ERROR"};
    return type >= 0 && type <= 6 ? names[type] : "?";
}

static int same_bytes(const bytes *a, const bytes *b) {
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* 1 if a and b are the same; else writes the first difference to why. */
static int same_result(const run_result *a, const run_result *b, char *why, size_t cap) {
    size_t i;
    if (b->broken) {
        snprintf(why, cap, "feed contract broken: %s", b->broken);
        return 0;
    }
    for (i = 0; i < a->n && i < b->n; i++) {
        const event_copy *x = &a->ev[i], *y = &b->ev[i];
        const char *what = NULL;
        if (x->type != y->type || x->code != y->code) what = "type or code";
        else if (!same_bytes(&x->data, &y->data)) what = "data";
        else if (!same_bytes(&x->reply, &y->reply)) what = "reply";
        else if ((x->error == NULL) != (y->error == NULL) || (x->error && strcmp(x->error, y->error)))
            what = "error text";
        if (what) {
            snprintf(why, cap, "event %zu differs in %s: %s %d (%zu data bytes, %s), not %s %d (%zu, %s)", i,
                     what, ev_name(y->type), y->code, y->data.len, y->error ? y->error : "-",
                     ev_name(x->type), x->code, x->data.len, x->error ? x->error : "-");
            return 0;
        }
    }
    if (a->n != b->n) snprintf(why, cap, "%zu events, not %zu", b->n, a->n);
    else if (a->state != b->state) snprintf(why, cap, "state %d, not %d", b->state, a->state);
    else if (a->left != b->left) snprintf(why, cap, "%zu bytes left unconsumed, not %zu", b->left, a->left);
    else return 1;
    return 0;
}

/* ---- expectations on a run --------------------------------------------- */

static int check_event(const run_result *r, size_t i, int type, int code, const void *data,
                       size_t len) {
    const event_copy *e;
    if (r->broken) {
        printf("  feed contract broken: %s\n", r->broken);
        return 0;
    }
    if (i >= r->n) {
        printf("  event %zu missing (%zu events), expected %s\n", i, r->n, ev_name(type));
        return 0;
    }
    e = &r->ev[i];
    if (e->type != type || e->code != code) {
        printf("  event %zu is %s %d (%s), expected %s %d\n", i, ev_name(e->type), e->code,
               e->error ? e->error : "", ev_name(type), code);
        return 0;
    }
    if (data && (e->data.len != len || (len && memcmp(e->data.p, data, len)))) {
        printf("  event %zu (%s): %zu data bytes differ from the %zu expected\n", i, ev_name(type),
               e->data.len, len);
        return 0;
    }
    return 1;
}

/* The close frame a server sends: unmasked, code, reason. */
static void server_close_bytes(bytes *b, int code, const char *reason, size_t reason_len) {
    put_byte(b, 0x88);
    if (code == 0) {
        put_byte(b, 0);
        return;
    }
    put_byte(b, (unsigned)(2 + reason_len));
    put_byte(b, (unsigned)code >> 8);
    put_byte(b, (unsigned)code & 0xFF);
    put(b, reason, reason_len);
}

/* The reply of an ERROR event must be a close frame with its code, masked
   exactly when the engine is a client, with a short UTF-8 reason. */
static int check_fail_reply(const event_copy *e, int role, int code) {
    parsed f;
    int ok;
    if (!parse_frame(e->reply.p, e->reply.len, &f) || f.size != e->reply.len) {
        printf("  ERROR reply (%zu bytes) is not one frame\n", e->reply.len);
        bytes_free(&f.payload);
        return 0;
    }
    ok = f.fin && f.rsv == 0 && f.opcode == 8 && f.masked == (role == ZK_WS_CLIENT) &&
         f.len >= 2 && f.len <= 125 && (f.payload.p[0] << 8 | f.payload.p[1]) == code &&
         zk_utf8_valid(f.payload.p + 2, (size_t)f.len - 2);
    if (!ok) printf("  ERROR reply is not a close frame with code %d\n", code);
    bytes_free(&f.payload);
    return ok;
}

/* ---- split invariance -------------------------------------------------- */

/* An input and what RFC 6455 says it must produce: the number of events,
   the last one's type and code (and data when last_data is set). */
typedef struct input_case {
    const char *name;
    int role;
    size_t max_message;
    bytes in;
    size_t events;
    int last_type, last_code;
    const char *last_data;
} input_case;

#define MAX_CASES 64
static input_case cases[MAX_CASES];
static int ncases;

static peer *new_case(const char *name, int role, size_t max_message, peer *pr) {
    peer_init(pr, role);
    cases[ncases].name = name;
    cases[ncases].role = role;
    cases[ncases].max_message = max_message;
    return pr;
}

static void end_case(peer *pr, size_t events, int last_type, int last_code, const char *last_data) {
    input_case *c = &cases[ncases++];
    c->in = pr->out;
    c->events = events;
    c->last_type = last_type;
    c->last_code = last_code;
    c->last_data = last_data;
}

static void build_cases(void) {
    peer pr;
    unsigned char big[70000], key[4] = {0x12, 0x34, 0x56, 0x78};
    fill_text(big, sizeof big);

    new_case("text", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x81, "Hello, world!");
    end_case(&pr, 1, ZK_WS_EV_TEXT, 0, "Hello, world!");

    new_case("empty text and binary", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x81, "");
    peer_str(&pr, 0x82, "");
    end_case(&pr, 2, ZK_WS_EV_BINARY, 0, "");

    new_case("binary of 125, 126, 127 bytes", ZK_WS_SERVER, 0, &pr);
    fill_binary(big, 127);
    peer_frame(&pr, 0x82, big, 125);
    peer_frame(&pr, 0x82, big, 126);
    peer_frame(&pr, 0x82, big, 127);
    end_case(&pr, 3, ZK_WS_EV_BINARY, 0, NULL);

    new_case("multi-byte text of 1000 bytes", ZK_WS_SERVER, 0, &pr);
    fill_text(big, 1000);
    peer_frame(&pr, 0x81, big, 1000);
    peer_str(&pr, 0x89, "after");
    end_case(&pr, 2, ZK_WS_EV_PING, 0, "after");

    new_case("fragments with ping and pong between", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x01, "frag1-\xce\xba\xe1");
    peer_str(&pr, 0x89, "p1");
    peer_str(&pr, 0x00, "\xbd\xb9\xcf\x83");
    peer_str(&pr, 0x8A, "unsolicited");
    peer_str(&pr, 0x80, "\xce\xbc\xce\xb5-end");
    peer_str(&pr, 0x82, "next");
    end_case(&pr, 4, ZK_WS_EV_BINARY, 0, "next");

    new_case("binary with empty fragments", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x02, "");
    peer_str(&pr, 0x00, "ab");
    peer_str(&pr, 0x00, "");
    peer_str(&pr, 0x80, "");
    end_case(&pr, 1, ZK_WS_EV_BINARY, 0, "ab");

    new_case("pings of 125 and 0 bytes", ZK_WS_SERVER, 0, &pr);
    memset(big, 0xfe, 125);
    peer_frame(&pr, 0x89, big, 125);
    peer_str(&pr, 0x89, "");
    end_case(&pr, 2, ZK_WS_EV_PING, 0, "");

    new_case("close with reason, then text and ping", ZK_WS_SERVER, 0, &pr);
    peer_close(&pr, 1000, "bye \xe2\x82\xac");
    peer_str(&pr, 0x81, "ignored");
    peer_str(&pr, 0x89, "ignored");
    end_case(&pr, 1, ZK_WS_EV_CLOSE, 1000, "bye \xe2\x82\xac");

    new_case("empty close", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x81, "x");
    peer_str(&pr, 0x88, "");
    end_case(&pr, 2, ZK_WS_EV_CLOSE, 1005, "");

    new_case("text, then RSV set, then ping", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x81, "Hello");
    peer_str(&pr, 0xC1, "Hello");
    peer_str(&pr, 0x89, "no pong");
    end_case(&pr, 2, ZK_WS_EV_ERROR, 1002, NULL);

    new_case("reserved opcode 3", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x83, "abc");
    end_case(&pr, 1, ZK_WS_EV_ERROR, 1002, NULL);

    new_case("reserved control opcode 11 between fragments", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x01, "abc");
    peer_str(&pr, 0x8B, "abc");
    end_case(&pr, 1, ZK_WS_EV_ERROR, 1002, NULL);

    new_case("unmasked frame to a server", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x81, "ok");
    put_header(&pr.out, 0x81, 3, NULL);
    put_str(&pr.out, "bad");
    end_case(&pr, 2, ZK_WS_EV_ERROR, 1002, NULL);

    new_case("64-bit length with the high bit set", ZK_WS_SERVER, 0, &pr);
    put_header(&pr.out, 0x82, 0x8000000000000005ull, key);
    put_str(&pr.out, "12345");
    end_case(&pr, 1, ZK_WS_EV_ERROR, 1002, NULL);

    new_case("ping of 126 bytes", ZK_WS_SERVER, 0, &pr);
    memset(big, 0xfe, 126);
    peer_frame(&pr, 0x89, big, 126);
    end_case(&pr, 1, ZK_WS_EV_ERROR, 1002, NULL);

    new_case("fragmented ping", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x09, "frag");
    peer_str(&pr, 0x80, "ment");
    end_case(&pr, 1, ZK_WS_EV_ERROR, 1002, NULL);

    new_case("close with a 1-byte payload", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x88, "a");
    end_case(&pr, 1, ZK_WS_EV_ERROR, 1002, NULL);

    new_case("close code 1005", ZK_WS_SERVER, 0, &pr);
    peer_close(&pr, 1005, "");
    end_case(&pr, 1, ZK_WS_EV_ERROR, 1002, NULL);

    new_case("close reason not UTF-8", ZK_WS_SERVER, 0, &pr);
    peer_close(&pr, 1000, "\xce\xba\xed\xa0\x80");
    end_case(&pr, 1, ZK_WS_EV_ERROR, 1007, NULL);

    new_case("continuation without a message", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x80, "cont");
    end_case(&pr, 1, ZK_WS_EV_ERROR, 1002, NULL);

    new_case("new text inside a fragmented one", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x01, "one");
    peer_str(&pr, 0x81, "two");
    end_case(&pr, 1, ZK_WS_EV_ERROR, 1002, NULL);

    new_case("invalid UTF-8 in one frame", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x81, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited");
    end_case(&pr, 1, ZK_WS_EV_ERROR, 1007, NULL);

    new_case("invalid UTF-8 in the second fragment", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x01, "\xce\xba\xe1\xbd\xb9");
    peer_str(&pr, 0x00, "\xf4\x90\x80\x80");
    peer_str(&pr, 0x80, "edited");
    end_case(&pr, 1, ZK_WS_EV_ERROR, 1007, NULL);

    new_case("UTF-8 truncated at the last fragment", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x01, "a\xe2");
    peer_str(&pr, 0x80, "\x82");
    end_case(&pr, 1, ZK_WS_EV_ERROR, 1007, NULL);

    new_case("UTF-8 split across three fragments", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x01, "\xe2");
    peer_str(&pr, 0x00, "\x82");
    peer_str(&pr, 0x80, "\xac");
    end_case(&pr, 1, ZK_WS_EV_TEXT, 0, "\xe2\x82\xac");

    new_case("max_message 100: one frame of 101", ZK_WS_SERVER, 100, &pr);
    peer_frame(&pr, 0x82, big, 100);
    peer_frame(&pr, 0x82, big, 101);
    end_case(&pr, 2, ZK_WS_EV_ERROR, 1009, NULL);

    new_case("max_message 100: fragments of 60 and 41", ZK_WS_SERVER, 100, &pr);
    peer_frame(&pr, 0x02, big, 60);
    peer_frame(&pr, 0x80, big, 41);
    end_case(&pr, 1, ZK_WS_EV_ERROR, 1009, NULL);

    new_case("max_message 100: fragments of 60 and 40", ZK_WS_SERVER, 100, &pr);
    fill_text(big, 100);
    peer_frame(&pr, 0x01, big, 60);
    peer_frame(&pr, 0x80, big + 60, 40);
    end_case(&pr, 1, ZK_WS_EV_TEXT, 0, NULL);

    new_case("input ends inside a payload", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x81, "complete");
    peer_str(&pr, 0x81, "incomplete");
    pr.out.len -= 3;
    end_case(&pr, 1, ZK_WS_EV_TEXT, 0, "complete");

    new_case("input ends inside a header", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x81, "complete");
    peer_frame(&pr, 0x82, big, 300);
    pr.out.len -= 300 + 3;
    end_case(&pr, 1, ZK_WS_EV_TEXT, 0, "complete");

    new_case("input ends inside a control frame", ZK_WS_SERVER, 0, &pr);
    peer_str(&pr, 0x01, "start");
    peer_str(&pr, 0x89, "a ping that is cut");
    pr.out.len -= 4;
    end_case(&pr, 0, ZK_WS_EV_NONE, 0, NULL);

    new_case("binary of 65536 bytes", ZK_WS_SERVER, 0, &pr);
    fill_binary(big, 65536);
    peer_frame(&pr, 0x82, big, 65536);
    end_case(&pr, 1, ZK_WS_EV_BINARY, 0, NULL);

    new_case("text of 70000 bytes in 3 fragments with pings", ZK_WS_SERVER, 0, &pr);
    fill_text(big, 70000);
    peer_frame(&pr, 0x01, big, 1000);
    peer_str(&pr, 0x89, "1");
    peer_frame(&pr, 0x00, big + 1000, 66000);
    peer_str(&pr, 0x89, "2");
    peer_frame(&pr, 0x80, big + 67000, 3000);
    end_case(&pr, 3, ZK_WS_EV_TEXT, 0, NULL);

    new_case("client: text, ping, fragments, close", ZK_WS_CLIENT, 0, &pr);
    peer_str(&pr, 0x81, "from the server");
    peer_str(&pr, 0x89, "ping");
    peer_str(&pr, 0x02, "\x00\xff");
    peer_str(&pr, 0x80, "\xfe");
    peer_close(&pr, 1001, "going");
    end_case(&pr, 4, ZK_WS_EV_CLOSE, 1001, "going");

    new_case("client: masked frame", ZK_WS_CLIENT, 0, &pr);
    peer_str(&pr, 0x81, "ok");
    put_header(&pr.out, 0x81, 3, key);
    put_payload(&pr.out, "bad", 3, key);
    end_case(&pr, 2, ZK_WS_EV_ERROR, 1002, NULL);

    new_case("client: invalid UTF-8 while the frame arrives", ZK_WS_CLIENT, 0, &pr);
    peer_str(&pr, 0x81, "abc\xc0\xaf" "def");
    end_case(&pr, 1, ZK_WS_EV_ERROR, 1007, NULL);

    new_case("client: max_message 10 over fragments", ZK_WS_CLIENT, 10, &pr);
    peer_str(&pr, 0x01, "12345");
    peer_str(&pr, 0x89, "");
    peer_str(&pr, 0x80, "123456");
    end_case(&pr, 2, ZK_WS_EV_ERROR, 1009, NULL);

    new_case("client: binary of 65536 bytes", ZK_WS_CLIENT, 0, &pr);
    fill_binary(big, 65536);
    peer_frame(&pr, 0x82, big, 65536);
    end_case(&pr, 1, ZK_WS_EV_BINARY, 0, NULL);
}

/* Runs c under schedule s and compares with the whole-input run. */
static int compare_run(const input_case *c, const run_result *whole, schedule s, const char *what) {
    run_result r;
    char why[200];
    int ok;
    drive_role(c->role, c->max_message, &c->in, s, &r);
    ok = same_result(whole, &r, why, sizeof why);
    if (!ok && s.kind == SCHED_BYTES) printf("  \"%s\" fed %s: %s\n", c->name, what, why);
    else if (!ok) printf("  \"%s\" fed %s %zu: %s\n", c->name, what, s.arg, why);
    result_free(&r);
    return ok;
}

TEST(feed_result_is_the_same_however_the_input_is_split) {
    int i;
    for (i = 0; i < ncases; i++) {
        const input_case *c = &cases[i];
        run_result whole;
        size_t cut, n = c->in.len;
        int j, bad = 0;
        drive_role(c->role, c->max_message, &c->in, sched(SCHED_WHOLE, 0, 0), &whole);
        CHECK(whole.broken == NULL);
        bad += !compare_run(c, &whole, sched(SCHED_BYTES, 1, 0), "byte by byte");
        for (cut = 1; cut < n && bad == 0; cut++) {
            /* every cut of small inputs; around the headers and a sample of
               the payload of big ones */
            if (n > 4096 && cut > 300 && cut < n - 300 && cut % 499) continue;
            bad += !compare_run(c, &whole, sched(SCHED_SPLIT, cut, 0), "split in two at");
        }
        for (j = 0; j < 8 && bad == 0; j++) {
            static const size_t max_chunk[8] = {2, 3, 7, 16, 131, 1000, 4096, 70000};
            bad += !compare_run(c, &whole, sched(SCHED_RANDOM, max_chunk[j], 0x9E3779B97F4A7C15ull * (j + 1)),
                                "in random chunks up to");
        }
        CHECK(bad == 0);
        result_free(&whole);
    }
}

/* The whole-input runs of the cases above, checked against what RFC 6455
   says they must produce. */
TEST(feed_cases_give_the_expected_events) {
    int i;
    for (i = 0; i < ncases; i++) {
        const input_case *c = &cases[i];
        run_result r;
        const event_copy *last;
        int end_state = c->last_type == ZK_WS_EV_CLOSE || c->last_type == ZK_WS_EV_ERROR
                            ? ZK_WS_CLOSED : ZK_WS_OPEN;
        drive_role(c->role, c->max_message, &c->in, sched(SCHED_WHOLE, 0, 0), &r);
        last = r.n ? &r.ev[r.n - 1] : NULL;
        if (r.broken || r.n != c->events || (last ? last->type : ZK_WS_EV_NONE) != c->last_type ||
            (last && last->code != c->last_code) || r.state != end_state) {
            printf("  \"%s\": %zu events, the last %s %d, state %d; expected %zu, %s %d, state %d%s%s\n",
                   c->name, r.n, ev_name(last ? last->type : 0), last ? last->code : 0, r.state,
                   c->events, ev_name(c->last_type), c->last_code, end_state,
                   r.broken ? ", broken: " : "", r.broken ? r.broken : "");
            CHECK(0);
        } else {
            if (c->last_data) CHECK(check_event(&r, r.n - 1, c->last_type, c->last_code, c->last_data,
                                                strlen(c->last_data)));
            if (c->last_type == ZK_WS_EV_ERROR) CHECK(check_fail_reply(last, c->role, c->last_code));
        }
        result_free(&r);
    }
}

/* ---- guard page -------------------------------------------------------- */

/* Every prefix of every case, placed against the unmapped page, fed whole
   and byte by byte: no over-read, and both give the same result. */
TEST(feed_never_reads_past_the_input) {
    int i;
    for (i = 0; i < ncases; i++) {
        const input_case *c = &cases[i];
        size_t n, step = c->in.len > 4096 ? 97 : 1;
        for (n = 0; n <= c->in.len; n += (n < 300 || c->in.len - n < 300) ? 1 : step) {
            bytes prefix = {0};
            run_result a, b;
            char why[200];
            put(&prefix, c->in.p, n);
            drive_role(c->role, c->max_message, &prefix, sched(SCHED_WHOLE, 0, 0), &a);
            if (n <= 4096) {
                drive_role(c->role, c->max_message, &prefix, sched(SCHED_BYTES, 1, 0), &b);
                if (!same_result(&a, &b, why, sizeof why)) {
                    printf("  \"%s\" cut to %zu bytes, byte by byte: %s\n", c->name, n, why);
                    CHECK(0);
                }
                result_free(&b);
            }
            CHECK(a.broken == NULL);
            result_free(&a);
            bytes_free(&prefix);
        }
    }
}

/* Random bytes and random mutations of valid frames, both roles. */
TEST(feed_survives_malformed_input_at_the_guard_page) {
    uint64_t seed = 0x243F6A8885A308D3ull;
    int i, role;
    for (role = 0; role <= 1; role++) {
        for (i = 0; i < 400; i++) {
            bytes in = {0};
            run_result a, b;
            char why[200];
            size_t n = (size_t)(rng_next(&seed) % 300), k;
            if (i % 2) {
                const input_case *c = &cases[(size_t)i / 2 % (size_t)ncases];
                put(&in, c->in.p, c->in.len < 400 ? c->in.len : 400);
                for (k = 0; k < 3 && in.len; k++)
                    in.p[rng_next(&seed) % in.len] ^= (unsigned char)(1u << (rng_next(&seed) % 8));
            } else {
                for (k = 0; k < n; k++) put_byte(&in, (unsigned)rng_next(&seed) & 0xFF);
                if (n > 1) in.p[1] = (unsigned char)((in.p[1] & 0x7F) | (role ? 0 : 0x80));
            }
            drive_role(role, 64, &in, sched(SCHED_WHOLE, 0, 0), &a);
            drive_role(role, 64, &in, sched(SCHED_BYTES, 1, 0), &b);
            if (!same_result(&a, &b, why, sizeof why)) {
                printf("  malformed input %d (role %d): %s\n", i, role, why);
                CHECK(0);
            }
            result_free(&a);
            result_free(&b);
            bytes_free(&in);
        }
    }
}

/* ---- roles ------------------------------------------------------------- */

TEST(server_requires_masked_frames) {
    peer pr;
    run_result r;
    peer_init(&pr, ZK_WS_SERVER);
    peer_str(&pr, 0x81, "masked");
    put_header(&pr.out, 0x82, 2, NULL);
    put_str(&pr.out, "no");
    drive_role(ZK_WS_SERVER, 0, &pr.out, sched(SCHED_WHOLE, 0, 0), &r);
    CHECK_EQ_INT(r.n, 2);
    CHECK(check_event(&r, 0, ZK_WS_EV_TEXT, 0, "masked", 6));
    CHECK(check_event(&r, 1, ZK_WS_EV_ERROR, 1002, NULL, 0));
    if (r.n == 2) CHECK(check_fail_reply(&r.ev[1], ZK_WS_SERVER, 1002));
    CHECK_EQ_INT(r.state, ZK_WS_CLOSED);
    result_free(&r);
    bytes_free(&pr.out);
}

TEST(client_rejects_masked_frames) {
    peer pr;
    run_result r;
    unsigned char key[4] = {1, 2, 3, 4};
    peer_init(&pr, ZK_WS_CLIENT);
    peer_str(&pr, 0x81, "plain");
    put_header(&pr.out, 0x89, 2, key);
    put_payload(&pr.out, "no", 2, key);
    drive_role(ZK_WS_CLIENT, 0, &pr.out, sched(SCHED_WHOLE, 0, 0), &r);
    CHECK_EQ_INT(r.n, 2);
    CHECK(check_event(&r, 0, ZK_WS_EV_TEXT, 0, "plain", 5));
    CHECK(check_event(&r, 1, ZK_WS_EV_ERROR, 1002, NULL, 0));
    if (r.n == 2) CHECK(check_fail_reply(&r.ev[1], ZK_WS_CLIENT, 1002)); /* masked */
    CHECK_EQ_INT(r.state, ZK_WS_CLOSED);
    result_free(&r);
    bytes_free(&pr.out);
}

TEST(client_answers_ping_with_a_masked_pong) {
    peer pr;
    run_result r;
    parsed f;
    peer_init(&pr, ZK_WS_CLIENT);
    peer_str(&pr, 0x89, "are you there");
    drive_role(ZK_WS_CLIENT, 0, &pr.out, sched(SCHED_WHOLE, 0, 0), &r);
    CHECK(check_event(&r, 0, ZK_WS_EV_PING, 0, "are you there", 13));
    if (r.n == 1) {
        CHECK(parse_frame(r.ev[0].reply.p, r.ev[0].reply.len, &f));
        CHECK_EQ_INT(f.size, r.ev[0].reply.len);
        CHECK(f.fin && f.opcode == ZK_WS_PONG && f.masked && f.rsv == 0);
        CHECK_MEM(f.payload.p, f.payload.len, "are you there", 13);
        bytes_free(&f.payload);
    }
    result_free(&r);
    bytes_free(&pr.out);
}

/* ---- lengths and limits ----------------------------------------------- */

TEST(every_length_class_arrives_intact) {
    static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 1u << 20};
    size_t i, len_field;
    int role, op;
    unsigned char *data = (unsigned char *)malloc(1u << 20);
    for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (role = 0; role <= 1; role++) {
            for (op = ZK_WS_TEXT; op <= ZK_WS_BINARY; op++) {
                peer pr;
                run_result r;
                size_t n = lens[i];
                int s;
                if (op == ZK_WS_TEXT) fill_text(data, n);
                else fill_binary(data, n);
                peer_init(&pr, role);
                peer_frame(&pr, 0x80u | (unsigned)op, data, n);
                len_field = pr.out.p[1] & 0x7F;
                CHECK_EQ_INT(len_field, n < 126 ? n : n < 65536 ? 126 : 127);
                for (s = 0; s < 3; s++) {
                    schedule sc = s == 0 ? sched(SCHED_WHOLE, 0, 0)
                                : s == 1 ? sched(SCHED_RANDOM, 3000, 77 + i)
                                         : sched(SCHED_BYTES, 1, 0);
                    if (s == 2 && n > 65536 && role == ZK_WS_CLIENT) continue;
                    drive_role(role, 0, &pr.out, sc, &r);
                    if (!check_event(&r, 0, op == ZK_WS_TEXT ? ZK_WS_EV_TEXT : ZK_WS_EV_BINARY, 0,
                                     data, n) ||
                        r.n != 1 || r.ev[0].reply.len != 0 || r.state != ZK_WS_OPEN) {
                        printf("  %zu bytes, opcode %d, role %d, schedule %d\n", n, op, role, s);
                        CHECK(0);
                    }
                    result_free(&r);
                }
                bytes_free(&pr.out);
            }
        }
    }
    free(data);
}

TEST(length_with_the_high_bit_set_is_a_protocol_error) {
    static const uint64_t lens[] = {0x8000000000000000ull, 0xFFFFFFFFFFFFFFFFull, 0x8000000000000005ull};
    unsigned char key[4] = {9, 8, 7, 6};
    size_t i;
    int role;
    for (i = 0; i < 3; i++) {
        for (role = 0; role <= 1; role++) {
            bytes in = {0};
            run_result r;
            /* the header alone: the error needs no payload */
            put_header(&in, 0x82, lens[i], role == ZK_WS_SERVER ? key : NULL);
            drive_role(role, 0, &in, sched(SCHED_BYTES, 1, 0), &r);
            CHECK_EQ_INT(r.n, 1);
            CHECK(check_event(&r, 0, ZK_WS_EV_ERROR, 1002, NULL, 0));
            if (r.n == 1) CHECK(check_fail_reply(&r.ev[0], role, 1002));
            CHECK_EQ_INT(r.state, ZK_WS_CLOSED);
            result_free(&r);
            bytes_free(&in);
        }
    }
}

TEST(huge_length_closes_with_1009_from_the_header) {
    unsigned char key[4] = {9, 8, 7, 6};
    bytes in = {0};
    run_result r;
    put_header(&in, 0x82, 1ull << 40, key);
    drive_role(ZK_WS_SERVER, 0, &in, sched(SCHED_WHOLE, 0, 0), &r);
    CHECK(check_event(&r, 0, ZK_WS_EV_ERROR, 1009, NULL, 0));
    if (r.n == 1) CHECK(check_fail_reply(&r.ev[0], ZK_WS_SERVER, 1009));
    CHECK_EQ_INT(lib_live_allocs, 0);
    result_free(&r);
    bytes_free(&in);
}

TEST(max_message_limits_one_frame_from_its_header) {
    unsigned char data[1001];
    int role;
    fill_binary(data, sizeof data);
    for (role = 0; role <= 1; role++) {
        peer pr;
        run_result r;
        /* exactly the limit is fine */
        peer_init(&pr, role);
        peer_frame(&pr, 0x82, data, 1000);
        drive_role(role, 1000, &pr.out, sched(SCHED_RANDOM, 50, 5), &r);
        CHECK(check_event(&r, 0, ZK_WS_EV_BINARY, 0, data, 1000));
        result_free(&r);
        bytes_free(&pr.out);
        /* one byte over: only the header is sent, and it is refused */
        peer_init(&pr, role);
        peer_frame(&pr, 0x82, data, 1001);
        pr.out.len -= 1001;
        drive_role(role, 1000, &pr.out, sched(SCHED_WHOLE, 0, 0), &r);
        CHECK_EQ_INT(r.n, 1);
        CHECK(check_event(&r, 0, ZK_WS_EV_ERROR, 1009, NULL, 0));
        if (r.n == 1) CHECK(check_fail_reply(&r.ev[0], role, 1009));
        CHECK_EQ_INT(r.state, ZK_WS_CLOSED);
        result_free(&r);
        bytes_free(&pr.out);
    }
}

/* 600 + 399 bytes of a text message with a ping between, then a last
   fragment of last_len bytes; only its header when header_only. */
static void fragments_near_the_limit(peer *pr, int role, const unsigned char *data, size_t last_len,
                                     int header_only) {
    peer_init(pr, role);
    peer_frame(pr, 0x01, data, 600);
    peer_str(pr, 0x89, "between");
    peer_frame(pr, 0x00, data + 600, 399);
    peer_frame(pr, 0x80, data + 999, last_len);
    if (header_only) pr->out.len -= last_len;
}

TEST(max_message_limits_the_sum_of_fragments_from_the_header) {
    unsigned char data[1001];
    int role;
    fill_text(data, sizeof data);
    for (role = 0; role <= 1; role++) {
        peer pr;
        run_result r;
        fill_text(data, 1000);
        fragments_near_the_limit(&pr, role, data, 1, 0); /* 1000 in all: fine */
        drive_role(role, 1000, &pr.out, sched(SCHED_WHOLE, 0, 0), &r);
        CHECK_EQ_INT(r.n, 2);
        CHECK(check_event(&r, 1, ZK_WS_EV_TEXT, 0, data, 1000));
        result_free(&r);
        bytes_free(&pr.out);
        /* 1001 in all: refused at the last header, before its payload */
        fragments_near_the_limit(&pr, role, data, 2, 1);
        drive_role(role, 1000, &pr.out, sched(SCHED_BYTES, 1, 0), &r);
        CHECK_EQ_INT(r.n, 2);
        CHECK(check_event(&r, 0, ZK_WS_EV_PING, 0, "between", 7));
        CHECK(check_event(&r, 1, ZK_WS_EV_ERROR, 1009, NULL, 0));
        if (r.n == 2) CHECK(check_fail_reply(&r.ev[1], role, 1009));
        CHECK_EQ_INT(r.state, ZK_WS_CLOSED);
        result_free(&r);
        bytes_free(&pr.out);
    }
}

TEST(default_max_message_is_documented_value) {
    zk_ws ws;
    zk_ws_opts o;
    memset(&o, 0, sizeof o);
    zk_ws_init(&ws, &o);
    CHECK_EQ_INT(ws.max_message, ZK_WS_MAX_MESSAGE);
    zk_ws_init(&ws, NULL);
    CHECK_EQ_INT(ws.max_message, ZK_WS_MAX_MESSAGE);
    CHECK_EQ_INT(zk_ws_state(&ws), ZK_WS_OPEN);
    CHECK_EQ_INT(lib_live_allocs, 0);
}

/* ---- the encoder ------------------------------------------------------- */

/* Encodes msg with a `role` engine (in `parts` frames when it is a data
   message), checks each frame with the independent parser, then feeds the
   stream to an engine of the other role, which must deliver it intact. */
static void roundtrip(int role, int opcode, const unsigned char *msg, size_t len, int parts) {
    zk_ws tx;
    zk_ws_opts o;
    bytes stream = {0};
    unsigned char last_key[4] = {0, 0, 0, 0};
    size_t off = 0;
    int i, ev_type;
    run_result r;
    memset(&o, 0, sizeof o);
    o.role = role;
    o.mask_seed = 0xC0FFEEull + len;
    zk_ws_init(&tx, &o);
    for (i = 0; i < parts; i++) {
        size_t n = i == parts - 1 ? len - off : len / (size_t)parts;
        size_t size = zk_ws_frame_size(&tx, n);
        unsigned char *out = (unsigned char *)malloc(size + 1);
        int op = i == 0 ? opcode : ZK_WS_CONTINUATION, fin = i == parts - 1, got;
        parsed f;
        got = zk_ws_send(&tx, out, size, op, msg + off, n, fin);
        if (got != (int)size) {
            printf("  role %d opcode %d len %zu part %d: zk_ws_send returned %d (%s), not %zu\n", role,
                   opcode, len, i, got, zk_err_name(got), size);
            CHECK(0);
            free(out);
            break;
        }
        CHECK(parse_frame(out, size, &f));
        CHECK_EQ_INT(f.size, size);
        CHECK_EQ_INT(f.fin, fin);
        CHECK_EQ_INT(f.rsv, 0);
        CHECK_EQ_INT(f.opcode, op);
        CHECK_EQ_INT(f.masked, role == ZK_WS_CLIENT);
        CHECK(f.minimal);
        CHECK_MEM(f.payload.p, f.payload.len, msg + off, n);
        if (role == ZK_WS_CLIENT) {
            CHECK(memcmp(f.key, last_key, 4) != 0); /* a new key for each frame */
            memcpy(last_key, f.key, 4);
        } else if (n) {
            CHECK(memcmp(out + size - n, msg + off, n) == 0); /* in clear */
        }
        put(&stream, out, size);
        bytes_free(&f.payload);
        free(out);
        off += n;
    }
    ev_type = opcode == ZK_WS_TEXT ? ZK_WS_EV_TEXT : opcode == ZK_WS_BINARY ? ZK_WS_EV_BINARY
            : opcode == ZK_WS_PING ? ZK_WS_EV_PING : ZK_WS_EV_PONG;
    drive_role(!role, 0, &stream, sched(SCHED_RANDOM, 9000, len + 1), &r);
    if (!check_event(&r, 0, ev_type, 0, msg, len) || r.n != 1) {
        printf("  role %d opcode %d len %zu in %d parts did not arrive\n", role, opcode, len, parts);
        CHECK(0);
    }
    result_free(&r);
    bytes_free(&stream);
    zk_ws_free(&tx);
}

TEST(send_output_parses_back_for_every_opcode_and_length) {
    static const size_t data_lens[] = {0, 1, 125, 126, 127, 65535, 65536, 200000};
    static const size_t control_lens[] = {0, 1, 124, 125};
    unsigned char *msg = (unsigned char *)malloc(200000);
    size_t i;
    int role;
    for (role = 0; role <= 1; role++) {
        for (i = 0; i < sizeof data_lens / sizeof data_lens[0]; i++) {
            fill_text(msg, data_lens[i]);
            roundtrip(role, ZK_WS_TEXT, msg, data_lens[i], 1);
            roundtrip(role, ZK_WS_TEXT, msg, data_lens[i], 3); /* cuts inside characters */
            fill_binary(msg, data_lens[i]);
            roundtrip(role, ZK_WS_BINARY, msg, data_lens[i], 1);
            roundtrip(role, ZK_WS_BINARY, msg, data_lens[i], 4);
        }
        for (i = 0; i < sizeof control_lens / sizeof control_lens[0]; i++) {
            fill_binary(msg, control_lens[i]);
            roundtrip(role, ZK_WS_PING, msg, control_lens[i], 1);
            roundtrip(role, ZK_WS_PONG, msg, control_lens[i], 1);
        }
    }
    free(msg);
}

TEST(client_masks_differ_between_frames) {
    zk_ws tx;
    zk_ws_opts o;
    unsigned char keys[64][4], out[32];
    int i, j, same = 0;
    memset(&o, 0, sizeof o);
    o.role = ZK_WS_CLIENT; /* mask_seed 0: the fixed seed must still vary */
    zk_ws_init(&tx, &o);
    for (i = 0; i < 64; i++) {
        parsed f;
        CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, i % 2 ? ZK_WS_PING : ZK_WS_BINARY, "abcd", 4, 1), 10);
        CHECK(parse_frame(out, 10, &f));
        CHECK(f.masked);
        CHECK_MEM(f.payload.p, f.payload.len, "abcd", 4);
        memcpy(keys[i], f.key, 4);
        bytes_free(&f.payload);
    }
    for (i = 0; i < 64; i++)
        for (j = 0; j < i; j++) same += memcmp(keys[i], keys[j], 4) == 0;
    CHECK_EQ_INT(same, 0);
}

TEST(send_reports_enospace_one_byte_short) {
    static const size_t lens[] = {0, 1, 125, 126, 65535, 65536};
    unsigned char *payload = (unsigned char *)calloc(1, 65536), *out = (unsigned char *)malloc(65536 + 14);
    size_t i;
    int role;
    for (role = 0; role <= 1; role++) {
        for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            zk_ws tx;
            zk_ws_opts o;
            size_t size;
            memset(&o, 0, sizeof o);
            o.role = role;
            zk_ws_init(&tx, &o);
            size = zk_ws_frame_size(&tx, lens[i]);
            CHECK_EQ_INT(size, lens[i] + (lens[i] < 126 ? 2 : lens[i] < 65536 ? 4 : 10) + (role ? 4 : 0));
            CHECK_EQ_INT(zk_ws_send(&tx, out, size - 1, ZK_WS_BINARY, payload, lens[i], 1), ZK_ENOSPACE);
            CHECK_EQ_INT(zk_ws_send(&tx, out, 0, ZK_WS_TEXT, payload, lens[i], 0), ZK_ENOSPACE);
            /* the failed fragment did not open a message */
            CHECK_EQ_INT(zk_ws_send(&tx, out, size, ZK_WS_CONTINUATION, payload, lens[i], 1), ZK_EINVAL);
            CHECK_EQ_INT(zk_ws_send(&tx, out, size, ZK_WS_BINARY, payload, lens[i], 1), (int)size);
            if (lens[i] <= 125) {
                CHECK_EQ_INT(zk_ws_send(&tx, out, size - 1, ZK_WS_PING, payload, lens[i], 1), ZK_ENOSPACE);
                CHECK_EQ_INT(zk_ws_send(&tx, out, size, ZK_WS_PONG, payload, lens[i], 1), (int)size);
            }
        }
    }
    free(payload);
    free(out);
}

TEST(send_rejects_what_may_not_be_sent) {
    zk_ws tx;
    unsigned char out[300], big[126];
    memset(big, 'a', sizeof big);
    zk_ws_init(&tx, NULL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_PING, big, 126, 1), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_PONG, big, 126, 1), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_PING, big, 1, 0), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_PONG, big, 1, 0), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_CONTINUATION, big, 1, 1), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_CONTINUATION, big, 1, 0), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_CLOSE, "\x03\xe8", 2, 1), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, 3, big, 1, 1), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, 11, big, 1, 1), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_BINARY, NULL, 3, 1), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_TEXT, "\xff", 1, 1), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_TEXT, "\xed\xa0\x80", 3, 1), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_TEXT, "a\xe2\x82", 3, 1), ZK_EINVAL);
    /* allowed: empty payloads, binary that is not UTF-8 */
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_TEXT, NULL, 0, 1), 2);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_BINARY, "\xff", 1, 1), 3);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_PING, big, 125, 1), 127);
    /* a fragmented message is open: no new message until it ends */
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_TEXT, "one", 3, 0), 5);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_TEXT, "two", 3, 1), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_BINARY, "two", 3, 0), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_PING, "p", 1, 1), 3); /* control between */
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_CONTINUATION, "two", 3, 1), 5);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_CONTINUATION, "x", 1, 1), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_BINARY, "ok", 2, 1), 4);
}

/* Text split inside a character: each fragment alone is not valid UTF-8,
   the message is. A message that ends inside a character is refused. */
TEST(send_checks_utf8_across_fragments) {
    zk_ws tx;
    unsigned char out[64];
    bytes stream = {0};
    run_result r;
    int n;
    zk_ws_init(&tx, NULL);
#define SEND(op, s, fin, want)                                                 \
    do {                                                                       \
        n = zk_ws_send(&tx, out, sizeof out, op, s, sizeof s - 1, fin);        \
        CHECK_EQ_INT(n, want);                                                 \
        if (n > 0) put(&stream, out, (size_t)n);                               \
    } while (0)
    SEND(ZK_WS_TEXT, "\xe2", 0, 3);
    SEND(ZK_WS_CONTINUATION, "\x82", 0, 3);
    SEND(ZK_WS_CONTINUATION, "\xac", 1, 3);
    SEND(ZK_WS_TEXT, "a\xf0\x9f", 0, 5);
    SEND(ZK_WS_CONTINUATION, "\x98", 1, ZK_EINVAL);     /* ends inside a character */
    SEND(ZK_WS_CONTINUATION, "\x98\x28", 0, ZK_EINVAL); /* not a continuation byte */
    SEND(ZK_WS_CONTINUATION, "\x98\x80!", 1, 5);        /* the refused calls changed nothing */
    SEND(ZK_WS_BINARY, "\xe2", 0, 3);                   /* binary: no UTF-8 rule */
    SEND(ZK_WS_CONTINUATION, "\xff", 1, 3);
    SEND(ZK_WS_TEXT, "\xc3", 0, 3);
    SEND(ZK_WS_CONTINUATION, "", 0, 2);
    SEND(ZK_WS_CONTINUATION, "\xa9", 1, 3);
#undef SEND
    drive_role(ZK_WS_CLIENT, 0, &stream, sched(SCHED_BYTES, 1, 0), &r);
    CHECK_EQ_INT(r.n, 4);
    CHECK(check_event(&r, 0, ZK_WS_EV_TEXT, 0, "\xe2\x82\xac", 3));
    CHECK(check_event(&r, 1, ZK_WS_EV_TEXT, 0, "a\xf0\x9f\x98\x80!", 6));
    CHECK(check_event(&r, 2, ZK_WS_EV_BINARY, 0, "\xe2\xff", 2));
    CHECK(check_event(&r, 3, ZK_WS_EV_TEXT, 0, "\xc3\xa9", 2));
    result_free(&r);
    bytes_free(&stream);
}

TEST(close_encodes_codes_and_reasons) {
    zk_ws tx;
    unsigned char out[200];
    char reason[125];
    bytes want = {0};
    memset(reason, 'r', sizeof reason);

    zk_ws_init(&tx, NULL);
    CHECK_EQ_INT(zk_ws_close(&tx, out, sizeof out, 1000, NULL, 0), 4);
    CHECK_MEM(out, 4, "\x88\x02\x03\xe8", 4);
    CHECK_EQ_INT(zk_ws_state(&tx), ZK_WS_CLOSE_SENT);

    zk_ws_init(&tx, NULL);
    CHECK_EQ_INT(zk_ws_close(&tx, out, sizeof out, 4000, "bye", 3), 7);
    CHECK_MEM(out, 7, "\x88\x05\x0f\xa0" "bye", 7);

    zk_ws_init(&tx, NULL);
    CHECK_EQ_INT(zk_ws_close(&tx, out, sizeof out, 0, NULL, 0), 2);
    CHECK_MEM(out, 2, "\x88\x00", 2);
    CHECK_EQ_INT(zk_ws_state(&tx), ZK_WS_CLOSE_SENT);

    zk_ws_init(&tx, NULL); /* the longest reason */
    CHECK_EQ_INT(zk_ws_close(&tx, out, 126, 1001, reason, 123), ZK_ENOSPACE);
    CHECK_EQ_INT(zk_ws_state(&tx), ZK_WS_OPEN);
    CHECK_EQ_INT(zk_ws_close(&tx, out, 127, 1001, reason, 123), 127);
    server_close_bytes(&want, 1001, reason, 123);
    CHECK_MEM(out, 127, want.p, want.len);
    bytes_free(&want);

    zk_ws_init(&tx, NULL);
    CHECK_EQ_INT(zk_ws_close(&tx, out, sizeof out, 1000, reason, 124), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_close(&tx, out, sizeof out, 1000, "\xce\xba\xed\xa0\x80", 5), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_close(&tx, out, sizeof out, 1000, "\xe2\x82", 2), ZK_EINVAL);
    CHECK_EQ_INT(zk_ws_close(&tx, out, sizeof out, 0, "why", 3), ZK_EINVAL); /* no code, no reason */
    CHECK_EQ_INT(zk_ws_state(&tx), ZK_WS_OPEN);
    CHECK_EQ_INT(zk_ws_close(&tx, out, sizeof out, 1000, "\xe2\x82\xac", 3), 7);
}

TEST(close_rejects_codes_one_may_not_send) {
    static const int bad[] = {-1, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535, 66536};
    static const int good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999};
    unsigned char out[16];
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        zk_ws tx;
        zk_ws_init(&tx, NULL);
        if (zk_ws_close(&tx, out, sizeof out, bad[i], NULL, 0) != ZK_EINVAL) {
            printf("  zk_ws_close accepted code %d\n", bad[i]);
            CHECK(0);
        }
        CHECK_EQ_INT(zk_ws_state(&tx), ZK_WS_OPEN);
        CHECK(!zk_ws_close_code_valid(bad[i]));
    }
    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        zk_ws tx;
        zk_ws_init(&tx, NULL);
        CHECK_EQ_INT(zk_ws_close(&tx, out, sizeof out, good[i], NULL, 0), 4);
        CHECK_EQ_INT(out[2] << 8 | out[3], good[i]);
        CHECK(zk_ws_close_code_valid(good[i]));
    }
    CHECK(!zk_ws_close_code_valid(0));
    CHECK(!zk_ws_close_code_valid(2999));
    CHECK(zk_ws_close_code_valid(3000));
}

TEST(client_close_is_masked) {
    zk_ws tx;
    zk_ws_opts o;
    unsigned char out[64];
    parsed f;
    memset(&o, 0, sizeof o);
    o.role = ZK_WS_CLIENT;
    zk_ws_init(&tx, &o);
    CHECK_EQ_INT(zk_ws_close(&tx, out, 9, 1000, "hi", 2), ZK_ENOSPACE);
    CHECK_EQ_INT(zk_ws_close(&tx, out, sizeof out, 1000, "hi", 2), 10);
    CHECK(parse_frame(out, 10, &f));
    CHECK(f.fin && f.masked && f.opcode == ZK_WS_CLOSE);
    CHECK_MEM(f.payload.p, f.payload.len, "\x03\xe8hi", 4);
    bytes_free(&f.payload);
}

TEST(nothing_is_sent_after_close) {
    zk_ws tx;
    unsigned char out[64];
    zk_ws_init(&tx, NULL);
    CHECK_EQ_INT(zk_ws_close(&tx, out, sizeof out, 1000, NULL, 0), 4);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_TEXT, "x", 1, 1), ZK_ECLOSED);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_BINARY, "x", 1, 1), ZK_ECLOSED);
    CHECK_EQ_INT(zk_ws_send(&tx, out, sizeof out, ZK_WS_PING, "x", 1, 1), ZK_ECLOSED);
    CHECK_EQ_INT(zk_ws_close(&tx, out, sizeof out, 1000, NULL, 0), ZK_ECLOSED);
    CHECK_EQ_INT(zk_ws_close(&tx, out, sizeof out, 0, NULL, 0), ZK_ECLOSED);
}

/* Feeds in[0..len) (a copy) to ws and returns the events, in order. */
static void feed_copy(zk_ws *ws, const bytes *in, run_result *r) {
    bytes copy = {0};
    size_t avail;
    put(&copy, in->p, in->len);
    avail = copy.len;
    memset(r, 0, sizeof *r);
    feed_all(ws, copy.p, &avail, r);
    r->state = zk_ws_state(ws);
    r->left = avail;
    bytes_free(&copy);
}

/* We close first: the peer's data still arrives, its close ends it all
   and needs no answer. */
TEST(close_we_start_goes_open_close_sent_closed) {
    zk_ws ws;
    peer pr;
    run_result r;
    unsigned char out[16];
    zk_ws_init(&ws, NULL);
    CHECK_EQ_INT(zk_ws_state(&ws), ZK_WS_OPEN);
    CHECK_EQ_INT(zk_ws_close(&ws, out, sizeof out, 1001, NULL, 0), 4);
    CHECK_EQ_INT(zk_ws_state(&ws), ZK_WS_CLOSE_SENT);

    peer_init(&pr, ZK_WS_SERVER);
    peer_str(&pr, 0x81, "late data");
    peer_str(&pr, 0x8A, "late pong");
    feed_copy(&ws, &pr.out, &r);
    CHECK_EQ_INT(r.n, 2);
    CHECK(check_event(&r, 0, ZK_WS_EV_TEXT, 0, "late data", 9));
    CHECK(check_event(&r, 1, ZK_WS_EV_PONG, 0, "late pong", 9));
    CHECK_EQ_INT(r.state, ZK_WS_CLOSE_SENT);
    result_free(&r);
    bytes_free(&pr.out);

    peer_init(&pr, ZK_WS_SERVER);
    peer_close(&pr, 1001, "ok");
    peer_str(&pr, 0x81, "after the close");
    feed_copy(&ws, &pr.out, &r);
    CHECK_EQ_INT(r.n, 1);
    CHECK(check_event(&r, 0, ZK_WS_EV_CLOSE, 1001, "ok", 2));
    if (r.n == 1) CHECK_EQ_INT(r.ev[0].reply.len, 0); /* the handshake is complete */
    CHECK_EQ_INT(r.state, ZK_WS_CLOSED);
    CHECK_EQ_INT(r.left, 0);
    result_free(&r);
    bytes_free(&pr.out);
    zk_ws_free(&ws);
}

/* RFC 6455 5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a
   Pong frame in response, unless it already received a Close frame."
   Having sent a close is no exception (5.5.1 only forbids data frames). */
TEST(ping_after_our_close_is_still_answered) {
    zk_ws ws;
    peer pr;
    run_result r;
    unsigned char out[16];
    zk_ws_init(&ws, NULL);
    CHECK_EQ_INT(zk_ws_close(&ws, out, sizeof out, 1000, NULL, 0), 4);
    peer_init(&pr, ZK_WS_SERVER);
    peer_str(&pr, 0x89, "still there?");
    feed_copy(&ws, &pr.out, &r);
    CHECK(check_event(&r, 0, ZK_WS_EV_PING, 0, "still there?", 12));
    if (r.n == 1) CHECK_MEM(r.ev[0].reply.p, r.ev[0].reply.len, "\x8a\x0cstill there?", 14);
    result_free(&r);
    bytes_free(&pr.out);
    zk_ws_free(&ws);
}

/* After we sent a close, a protocol error needs no second close. */
TEST(error_after_our_close_sends_no_second_close) {
    zk_ws ws;
    peer pr;
    run_result r;
    unsigned char out[16];
    zk_ws_init(&ws, NULL);
    CHECK_EQ_INT(zk_ws_close(&ws, out, sizeof out, 1000, NULL, 0), 4);
    peer_init(&pr, ZK_WS_SERVER);
    peer_str(&pr, 0xF1, "rsv");
    feed_copy(&ws, &pr.out, &r);
    CHECK(check_event(&r, 0, ZK_WS_EV_ERROR, 1002, NULL, 0));
    if (r.n == 1) CHECK_EQ_INT(r.ev[0].reply.len, 0);
    CHECK_EQ_INT(r.state, ZK_WS_CLOSED);
    result_free(&r);
    bytes_free(&pr.out);
}

TEST(close_the_peer_starts_is_echoed) {
    int role;
    for (role = 0; role <= 1; role++) {
        zk_ws ws;
        zk_ws_opts o;
        peer pr;
        run_result r;
        unsigned char out[16];
        parsed f;
        memset(&o, 0, sizeof o);
        o.role = role;
        /* with a code (and a reason): the code comes back */
        zk_ws_init(&ws, &o);
        peer_init(&pr, role);
        peer_close(&pr, 4321, "app reason");
        feed_copy(&ws, &pr.out, &r);
        CHECK(check_event(&r, 0, ZK_WS_EV_CLOSE, 4321, "app reason", 10));
        CHECK_EQ_INT(r.state, ZK_WS_CLOSED);
        if (r.n == 1) {
            if (role == ZK_WS_SERVER) CHECK_MEM(r.ev[0].reply.p, r.ev[0].reply.len, "\x88\x02\x10\xe1", 4);
            CHECK(parse_frame(r.ev[0].reply.p, r.ev[0].reply.len, &f));
            CHECK(f.fin && f.opcode == ZK_WS_CLOSE && f.masked == role);
            CHECK_MEM(f.payload.p, f.payload.len, "\x10\xe1", 2);
            bytes_free(&f.payload);
        }
        CHECK_EQ_INT(zk_ws_close(&ws, out, sizeof out, 1000, NULL, 0), ZK_ECLOSED);
        CHECK_EQ_INT(zk_ws_send(&ws, out, sizeof out, ZK_WS_TEXT, "x", 1, 1), ZK_ECLOSED);
        result_free(&r);
        bytes_free(&pr.out);
        zk_ws_free(&ws);
        /* without a payload: an empty close comes back, code 1005 reported */
        zk_ws_init(&ws, &o);
        peer_init(&pr, role);
        peer_str(&pr, 0x88, "");
        feed_copy(&ws, &pr.out, &r);
        CHECK(check_event(&r, 0, ZK_WS_EV_CLOSE, 1005, "", 0));
        CHECK_EQ_INT(r.state, ZK_WS_CLOSED);
        if (r.n == 1) {
            if (role == ZK_WS_SERVER) CHECK_MEM(r.ev[0].reply.p, r.ev[0].reply.len, "\x88\x00", 2);
            CHECK(parse_frame(r.ev[0].reply.p, r.ev[0].reply.len, &f));
            CHECK(f.fin && f.opcode == ZK_WS_CLOSE && f.masked == role && f.len == 0);
            bytes_free(&f.payload);
        }
        result_free(&r);
        bytes_free(&pr.out);
        zk_ws_free(&ws);
    }
}

TEST(after_close_or_error_everything_is_discarded) {
    zk_ws ws;
    peer pr;
    run_result r;
    unsigned char junk[300];
    zk_ws_event ev;
    memset(junk, 0x81, sizeof junk);
    zk_ws_init(&ws, NULL);
    peer_init(&pr, ZK_WS_SERVER);
    peer_str(&pr, 0x83, "bad opcode");
    feed_copy(&ws, &pr.out, &r);
    CHECK(check_event(&r, 0, ZK_WS_EV_ERROR, 1002, NULL, 0));
    CHECK_EQ_INT(r.left, 0);
    CHECK_EQ_INT(zk_ws_feed(&ws, junk, sizeof junk, &ev), sizeof junk);
    CHECK_EQ_INT(ev.type, ZK_WS_EV_NONE);
    CHECK_EQ_INT(ev.reply_len, 0);
    CHECK_EQ_INT(zk_ws_feed(&ws, junk, 1, &ev), 1);
    CHECK_EQ_INT(zk_ws_feed(&ws, junk, 0, &ev), 0);
    CHECK_EQ_INT(ev.type, ZK_WS_EV_NONE);
    CHECK_EQ_INT(zk_ws_state(&ws), ZK_WS_CLOSED);
    result_free(&r);
    bytes_free(&pr.out);
    zk_ws_free(&ws);
}

/* ---- helpers: mask, header, size ----------------------------------------- */

TEST(mask_matches_a_byte_by_byte_reference) {
    unsigned char buf[340], ref[340], orig[340], keybuf[8];
    size_t len, offset, align, i;
    int bad = 0;
    for (i = 0; i < sizeof orig; i++) orig[i] = (unsigned char)(i * 37 + 11);
    for (align = 0; align < 8; align++) {
        const unsigned char *key = keybuf + (align % 4); /* unaligned key too */
        keybuf[align % 4 + 0] = 0xA5;
        keybuf[align % 4 + 1] = 0x3C;
        keybuf[align % 4 + 2] = (unsigned char)(0x01 + align);
        keybuf[align % 4 + 3] = 0xFF;
        for (len = 0; len <= 300; len++) {
            for (offset = 0; offset < 4; offset++) {
                unsigned char *p = buf + 16 + align;
                memcpy(buf, orig, sizeof buf);
                memcpy(ref, orig, sizeof ref);
                for (i = 0; i < len; i++) ref[16 + align + i] ^= key[(offset + i) % 4];
                zk_ws_mask(p, len, key, offset);
                if (memcmp(buf, ref, sizeof buf) != 0) bad++; /* includes bytes around it */
                zk_ws_mask(p, len, key, offset);
                if (memcmp(buf, orig, sizeof buf) != 0) bad++;
                /* offsets beyond 3 count modulo 4 */
                zk_ws_mask(p, len, key, offset + 4 * 1000);
                if (memcmp(buf, ref, sizeof buf) != 0) bad++;
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
}

TEST(mask_in_pieces_equals_mask_at_once) {
    unsigned char a[1000], b[1000], key[4] = {0xde, 0xad, 0xbe, 0xef};
    size_t cut1, i;
    int bad = 0;
    for (cut1 = 0; cut1 <= 200; cut1++) {
        for (i = 0; i < sizeof a; i++) a[i] = b[i] = (unsigned char)i;
        zk_ws_mask(a, sizeof a, key, 0);
        zk_ws_mask(b, cut1, key, 0);
        zk_ws_mask(b + cut1, 333, key, cut1);
        zk_ws_mask(b + cut1 + 333, sizeof b - cut1 - 333, key, cut1 + 333);
        bad += memcmp(a, b, sizeof a) != 0;
    }
    CHECK_EQ_INT(bad, 0);
}

TEST(frame_header_bytes_for_each_length_class) {
    unsigned char out[14], key[4] = {0x11, 0x22, 0x33, 0x44};
    CHECK_EQ_INT(zk_ws_frame_header(out, ZK_WS_TEXT, 1, 0, NULL), 2);
    CHECK_MEM(out, 2, "\x81\x00", 2);
    CHECK_EQ_INT(zk_ws_frame_header(out, ZK_WS_BINARY, 0, 1, NULL), 2);
    CHECK_MEM(out, 2, "\x02\x01", 2);
    CHECK_EQ_INT(zk_ws_frame_header(out, ZK_WS_PING, 1, 125, NULL), 2);
    CHECK_MEM(out, 2, "\x89\x7d", 2);
    CHECK_EQ_INT(zk_ws_frame_header(out, ZK_WS_BINARY, 1, 126, NULL), 4);
    CHECK_MEM(out, 4, "\x82\x7e\x00\x7e", 4);
    CHECK_EQ_INT(zk_ws_frame_header(out, ZK_WS_BINARY, 1, 127, NULL), 4);
    CHECK_MEM(out, 4, "\x82\x7e\x00\x7f", 4);
    CHECK_EQ_INT(zk_ws_frame_header(out, ZK_WS_CONTINUATION, 0, 65535, NULL), 4);
    CHECK_MEM(out, 4, "\x00\x7e\xff\xff", 4);
    CHECK_EQ_INT(zk_ws_frame_header(out, ZK_WS_BINARY, 1, 65536, NULL), 10);
    CHECK_MEM(out, 10, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    CHECK_EQ_INT(zk_ws_frame_header(out, ZK_WS_TEXT, 1, 0x0123456789ABull, NULL), 10);
    CHECK_MEM(out, 10, "\x81\x7f\x00\x00\x01\x23\x45\x67\x89\xab", 10);
    /* masked: the mask bit and the key follow the length */
    CHECK_EQ_INT(zk_ws_frame_header(out, ZK_WS_TEXT, 1, 0, key), 6);
    CHECK_MEM(out, 6, "\x81\x80\x11\x22\x33\x44", 6);
    CHECK_EQ_INT(zk_ws_frame_header(out, ZK_WS_CLOSE, 1, 125, key), 6);
    CHECK_MEM(out, 6, "\x88\xfd\x11\x22\x33\x44", 6);
    CHECK_EQ_INT(zk_ws_frame_header(out, ZK_WS_BINARY, 0, 126, key), 8);
    CHECK_MEM(out, 8, "\x02\xfe\x00\x7e\x11\x22\x33\x44", 8);
    CHECK_EQ_INT(zk_ws_frame_header(out, ZK_WS_BINARY, 1, 65536, key), 14);
    CHECK_MEM(out, 14, "\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00\x11\x22\x33\x44", 14);
}

TEST(frame_header_agrees_with_the_test_builder) {
    static const uint64_t lens[] = {0, 1, 125, 126, 127, 128, 255, 256, 65535, 65536, 65537, 1ull << 32, 0x7FFFFFFFFFFFFFFFull};
    unsigned char out[14], key[4] = {0xa1, 0xb2, 0xc3, 0xd4};
    size_t i, n;
    int m;
    for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (m = 0; m <= 1; m++) {
            bytes want = {0};
            put_header(&want, 0x82, lens[i], m ? key : NULL);
            n = zk_ws_frame_header(out, ZK_WS_BINARY, 1, lens[i], m ? key : NULL);
            CHECK_MEM(out, n, want.p, want.len);
            bytes_free(&want);
        }
    }
}

TEST(frame_size_counts_header_mask_and_payload) {
    zk_ws s, c;
    zk_ws_opts o;
    memset(&o, 0, sizeof o);
    o.role = ZK_WS_CLIENT;
    zk_ws_init(&s, NULL);
    zk_ws_init(&c, &o);
    CHECK_EQ_INT(zk_ws_frame_size(&s, 0), 2);
    CHECK_EQ_INT(zk_ws_frame_size(&c, 0), 6);
    CHECK_EQ_INT(zk_ws_frame_size(&s, 125), 127);
    CHECK_EQ_INT(zk_ws_frame_size(&s, 126), 130);
    CHECK_EQ_INT(zk_ws_frame_size(&c, 126), 134);
    CHECK_EQ_INT(zk_ws_frame_size(&s, 65535), 65539);
    CHECK_EQ_INT(zk_ws_frame_size(&s, 65536), 65546);
    CHECK_EQ_INT(zk_ws_frame_size(&c, 65536), 65550);
}

/* ---- UTF-8 ------------------------------------------------------------- */

/* RFC 3629, decoded the slow way: no overlongs, no surrogates, nothing
   above U+10FFFF. */
static int ref_utf8(const unsigned char *s, size_t n) {
    size_t i = 0, k, j;
    while (i < n) {
        unsigned c = s[i];
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC0 && c <= 0xDF) {
            k = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF7) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i - 1 < k) return 0;
        for (j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000)) return 0;
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += k + 1;
    }
    return 1;
}

TEST(utf8_valid_matches_reference_on_all_short_sequences) {
    unsigned char s[3];
    unsigned a, b, c;
    long bad = 0;
    for (a = 0; a < 256; a++) {
        s[0] = (unsigned char)a;
        bad += zk_utf8_valid(s, 1) != ref_utf8(s, 1);
        for (b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            bad += zk_utf8_valid(s, 2) != ref_utf8(s, 2);
            if (a < 0xC0) continue; /* an ASCII or stray first byte decides alone */
            for (c = 0; c < 256; c++) {
                s[2] = (unsigned char)c;
                bad += zk_utf8_valid(s, 3) != ref_utf8(s, 3);
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
}

TEST(utf8_valid_matches_reference_on_four_byte_sequences) {
    unsigned char s[4];
    unsigned a, b, c;
    long bad = 0;
    for (a = 0xF0; a < 0x100; a++) {
        for (b = 0x70; b < 0xD0; b++) {
            for (c = 0x70; c < 0xD0; c++) {
                unsigned d;
                s[0] = (unsigned char)a;
                s[1] = (unsigned char)b;
                s[2] = (unsigned char)c;
                for (d = 0x70; d < 0xD0; d += 7) {
                    s[3] = (unsigned char)d;
                    bad += zk_utf8_valid(s, 4) != ref_utf8(s, 4);
                }
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(zk_utf8_valid("\xf4\x8f\xbf\xbf", 4));
    CHECK(!zk_utf8_valid("\xf4\x90\x80\x80", 4));
    CHECK(zk_utf8_valid("\xf0\x90\x80\x80", 4));
    CHECK(!zk_utf8_valid("\xf0\x8f\xbf\xbf", 4));
    CHECK(!zk_utf8_valid("\xed\xa0\x80", 3));
    CHECK(zk_utf8_valid("\xed\x9f\xbf", 3));
    CHECK(zk_utf8_valid("", 0));
    CHECK(zk_utf8_valid(NULL, 0));
}

/* Random strings that mix long ASCII runs with multi-byte and bad bytes,
   at every alignment, each placed against the guard page. */
TEST(utf8_valid_matches_reference_on_random_text) {
    static const char *pieces[] = {"a", "abcdefghijklmnopq", "\xc2\xa2", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                   "\xed\x9f\xbf", "\x80", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                   "\xe2\x82", "\xff", "\xf0", "\xce", "\xbf"};
    uint64_t seed = 12345;
    int i, bad = 0;
    for (i = 0; i < 20000; i++) {
        bytes s = {0};
        guard_buf g;
        int k, parts = (int)(rng_next(&seed) % 12);
        for (k = 0; k < parts; k++) {
            size_t which = (size_t)(rng_next(&seed) % 15);
            /* valid pieces are more likely, so long valid strings occur */
            if (which > 5 && rng_next(&seed) % 3) which %= 6;
            put_str(&s, pieces[which]);
        }
        g = guard_alloc(s.p, s.len);
        bad += zk_utf8_valid(g.data, s.len) != ref_utf8(s.p, s.len);
        guard_free(&g);
        bytes_free(&s);
    }
    CHECK_EQ_INT(bad, 0);
}

/* ---- memory ------------------------------------------------------------ */

/* Feeds in[*off..len) until one event completes or more bytes are needed,
   without the extra call a read loop makes afterwards. */
static int feed_to_event(zk_ws *ws, unsigned char *in, size_t len, size_t *off, zk_ws_event *ev) {
    for (;;) {
        size_t used = zk_ws_feed(ws, in + *off, len - *off, ev);
        *off += used;
        if (ev->type != ZK_WS_EV_NONE || used == 0) return ev->type;
    }
}

TEST(reassembly_buffer_is_released_at_the_next_feed) {
    zk_ws ws;
    peer pr;
    unsigned char empty[1];
    zk_ws_event ev;
    size_t off = 0;
    CHECK_EQ_INT(lib_live_allocs, 0);
    zk_ws_init(&ws, NULL);
    CHECK_EQ_INT(lib_live_allocs, 0); /* init allocates nothing */

    peer_init(&pr, ZK_WS_SERVER);
    peer_str(&pr, 0x01, "abc");
    peer_str(&pr, 0x80, "def");
    CHECK_EQ_INT(feed_to_event(&ws, pr.out.p, pr.out.len, &off, &ev), ZK_WS_EV_TEXT);
    CHECK_EQ_INT(off, pr.out.len);
    CHECK_MEM(ev.data.ptr, ev.data.len, "abcdef", 6);
    CHECK(ws.msg != NULL); /* the view lives in the reassembly buffer ... */
    CHECK_EQ_INT(zk_ws_feed(&ws, empty, 0, &ev), 0);
    CHECK_EQ_INT(ev.type, ZK_WS_EV_NONE);
    CHECK(ws.msg == NULL); /* ... until the next feed */
    CHECK_EQ_INT(lib_live_allocs, 0);
    bytes_free(&pr.out);

    /* a one-frame message that arrives in two reads is reassembled too */
    peer_init(&pr, ZK_WS_SERVER);
    peer_str(&pr, 0x82, "0123456789");
    off = 0;
    CHECK_EQ_INT(feed_to_event(&ws, pr.out.p, 10, &off, &ev), ZK_WS_EV_NONE);
    CHECK(ws.msg != NULL);
    CHECK(lib_live_allocs > 0);
    CHECK_EQ_INT(feed_to_event(&ws, pr.out.p, pr.out.len, &off, &ev), ZK_WS_EV_BINARY);
    CHECK_MEM(ev.data.ptr, ev.data.len, "0123456789", 10);
    CHECK_EQ_INT(zk_ws_feed(&ws, empty, 0, &ev), 0);
    CHECK(ws.msg == NULL);
    CHECK_EQ_INT(lib_live_allocs, 0);
    bytes_free(&pr.out);

    /* a whole frame in one read is used in place: no heap at all, and the
       input now holds the unmasked payload */
    peer_init(&pr, ZK_WS_SERVER);
    peer_str(&pr, 0x81, "in place");
    CHECK_EQ_INT(zk_ws_feed(&ws, pr.out.p, pr.out.len, &ev), pr.out.len);
    CHECK_EQ_INT(ev.type, ZK_WS_EV_TEXT);
    CHECK_EQ_INT(lib_live_allocs, 0);
    CHECK_MEM(pr.out.p + 6, 8, "in place", 8);
    CHECK_MEM(ev.data.ptr, ev.data.len, "in place", 8);
    bytes_free(&pr.out);
    zk_ws_free(&ws);
}

TEST(free_releases_a_half_received_message) {
    zk_ws ws;
    peer pr;
    zk_ws_event ev;
    size_t off = 0;
    zk_ws_init(&ws, NULL);
    peer_init(&pr, ZK_WS_SERVER);
    peer_str(&pr, 0x01, "first half");
    CHECK_EQ_INT(feed_to_event(&ws, pr.out.p, pr.out.len, &off, &ev), ZK_WS_EV_NONE);
    CHECK(ws.msg != NULL);
    CHECK(lib_live_allocs > 0);
    zk_ws_free(&ws); /* ASan's leak check sees it if this does not free */
    CHECK(ws.msg == NULL);
    CHECK_EQ_INT(lib_live_allocs, 0);
    bytes_free(&pr.out);

    /* an error in the middle of a message */
    zk_ws_init(&ws, NULL);
    peer_init(&pr, ZK_WS_SERVER);
    peer_str(&pr, 0x01, "start");
    peer_str(&pr, 0x81, "not a continuation");
    off = 0;
    CHECK_EQ_INT(feed_to_event(&ws, pr.out.p, pr.out.len, &off, &ev), ZK_WS_EV_ERROR);
    CHECK_EQ_INT(ev.code, 1002);
    CHECK_EQ_INT(lib_live_allocs, 0); /* nothing more is read: dropped at once */
    zk_ws_free(&ws);
    CHECK_EQ_INT(lib_live_allocs, 0);
    bytes_free(&pr.out);

    /* a close in the middle of a message */
    zk_ws_init(&ws, NULL);
    peer_init(&pr, ZK_WS_SERVER);
    peer_str(&pr, 0x02, "start");
    peer_close(&pr, 1000, "");
    off = 0;
    CHECK_EQ_INT(feed_to_event(&ws, pr.out.p, pr.out.len, &off, &ev), ZK_WS_EV_CLOSE);
    CHECK_EQ_INT(lib_live_allocs, 0);
    zk_ws_free(&ws);
    CHECK_EQ_INT(lib_live_allocs, 0);
    bytes_free(&pr.out);

    /* a frame cut in its payload; then the engine is set up again and used */
    zk_ws_init(&ws, NULL);
    peer_init(&pr, ZK_WS_SERVER);
    peer_str(&pr, 0x82, "0123456789");
    off = 0;
    CHECK_EQ_INT(feed_to_event(&ws, pr.out.p, pr.out.len - 4, &off, &ev), ZK_WS_EV_NONE);
    CHECK(lib_live_allocs > 0);
    zk_ws_free(&ws);
    CHECK_EQ_INT(lib_live_allocs, 0);
    bytes_free(&pr.out);
    zk_ws_init(&ws, NULL);
    peer_init(&pr, ZK_WS_SERVER);
    peer_str(&pr, 0x82, "again");
    off = 0;
    CHECK_EQ_INT(feed_to_event(&ws, pr.out.p, pr.out.len, &off, &ev), ZK_WS_EV_BINARY);
    CHECK_MEM(ev.data.ptr, ev.data.len, "again", 5);
    zk_ws_free(&ws);
    bytes_free(&pr.out);
}

TEST(large_fragmented_message_is_delivered_then_released) {
    /* 1 MiB of text in 64 KiB fragments */
    zk_ws ws;
    peer pr;
    size_t i, off = 0, n = 1u << 20;
    unsigned char *msg = (unsigned char *)malloc(n), empty[1];
    zk_ws_event ev;
    fill_text(msg, n);
    zk_ws_init(&ws, NULL);
    peer_init(&pr, ZK_WS_SERVER);
    for (i = 0; i < n; i += 65536)
        peer_frame(&pr, (i == 0 ? 0x01u : 0x00u) | (i + 65536 >= n ? 0x80u : 0), msg + i, 65536);
    CHECK_EQ_INT(feed_to_event(&ws, pr.out.p, pr.out.len, &off, &ev), ZK_WS_EV_TEXT);
    CHECK_MEM(ev.data.ptr, ev.data.len, msg, n);
    CHECK(lib_live_allocs > 0);
    zk_ws_feed(&ws, empty, 0, &ev);
    CHECK_EQ_INT(lib_live_allocs, 0);
    bytes_free(&pr.out);
    zk_ws_free(&ws);
    free(msg);
}

/* When the reassembly buffer cannot be had, the connection fails cleanly:
   an ERROR whose reply is a close with its code, and nothing held. */
TEST(allocation_failure_fails_the_connection_cleanly) {
    int role;
    for (role = 0; role <= 1; role++) {
        peer pr;
        run_result r;
        peer_init(&pr, role);
        peer_str(&pr, 0x89, "before");
        peer_str(&pr, 0x01, "needs a buffer");
        peer_str(&pr, 0x80, "!");
        lib_alloc_fails = 1;
        drive_role(role, 0, &pr.out, sched(SCHED_WHOLE, 0, 0), &r);
        lib_alloc_fails = 0;
        CHECK_EQ_INT(r.n, 2);
        CHECK(check_event(&r, 0, ZK_WS_EV_PING, 0, "before", 6));
        if (r.n == 2) {
            CHECK_EQ_INT(r.ev[1].type, ZK_WS_EV_ERROR);
            CHECK(r.ev[1].code == 1009 || r.ev[1].code == 1011);
            CHECK(check_fail_reply(&r.ev[1], role, r.ev[1].code));
        }
        CHECK_EQ_INT(r.state, ZK_WS_CLOSED);
        CHECK_EQ_INT(lib_live_allocs, 0);
        result_free(&r);
        bytes_free(&pr.out);
    }
}

int main(void) {
    int i;
    build_cases();
    RUN(feed_result_is_the_same_however_the_input_is_split);
    RUN(feed_cases_give_the_expected_events);
    RUN(feed_never_reads_past_the_input);
    RUN(feed_survives_malformed_input_at_the_guard_page);
    RUN(server_requires_masked_frames);
    RUN(client_rejects_masked_frames);
    RUN(client_answers_ping_with_a_masked_pong);
    RUN(every_length_class_arrives_intact);
    RUN(length_with_the_high_bit_set_is_a_protocol_error);
    RUN(huge_length_closes_with_1009_from_the_header);
    RUN(max_message_limits_one_frame_from_its_header);
    RUN(max_message_limits_the_sum_of_fragments_from_the_header);
    RUN(default_max_message_is_documented_value);
    RUN(send_output_parses_back_for_every_opcode_and_length);
    RUN(client_masks_differ_between_frames);
    RUN(send_reports_enospace_one_byte_short);
    RUN(send_rejects_what_may_not_be_sent);
    RUN(send_checks_utf8_across_fragments);
    RUN(close_encodes_codes_and_reasons);
    RUN(close_rejects_codes_one_may_not_send);
    RUN(client_close_is_masked);
    RUN(nothing_is_sent_after_close);
    RUN(close_we_start_goes_open_close_sent_closed);
    RUN(ping_after_our_close_is_still_answered);
    RUN(error_after_our_close_sends_no_second_close);
    RUN(close_the_peer_starts_is_echoed);
    RUN(after_close_or_error_everything_is_discarded);
    RUN(mask_matches_a_byte_by_byte_reference);
    RUN(mask_in_pieces_equals_mask_at_once);
    RUN(frame_header_bytes_for_each_length_class);
    RUN(frame_header_agrees_with_the_test_builder);
    RUN(frame_size_counts_header_mask_and_payload);
    RUN(utf8_valid_matches_reference_on_all_short_sequences);
    RUN(utf8_valid_matches_reference_on_four_byte_sequences);
    RUN(utf8_valid_matches_reference_on_random_text);
    RUN(reassembly_buffer_is_released_at_the_next_feed);
    RUN(free_releases_a_half_received_message);
    RUN(large_fragmented_message_is_delivered_then_released);
    RUN(allocation_failure_fails_the_connection_cleanly);
    for (i = 0; i < ncases; i++) bytes_free(&cases[i].in);
    return test_summary();
}
