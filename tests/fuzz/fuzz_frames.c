/* libFuzzer harness for the frame engine (zk_ws_feed, zk_ws_send,
   zk_ws_close) and the UTF-8 validator.

   Input: byte 0 configures the receiving engine, the rest is the stream of
   frames it receives.
     bit 0      role: 0 server (expects masked frames), 1 client
     bits 1-3   max_message: 64 KiB, 1 KiB, 4 KiB, 16 KiB, 125, 126, 2 KiB, 32 KiB
     bit 4      the engine sent a close first (state CLOSE_SENT)

   Part 1, decoding: the stream goes through a read loop like a server's
   (unconsumed bytes kept, the next read appended) three times: in one
   read, in reads whose sizes come from the input, and one byte at a time.
   The three sequences of events (type, code, data, error, reply bytes)
   must be identical. Each event must also hold up on its own: text is
   valid UTF-8, a message is at most max_message, a reply is at most
   ZK_WS_MAX_CONTROL_FRAME and decodes (by an engine of the other role) to
   the pong or close it should be, nothing follows CLOSE or ERROR, and
   what the engine leaves unconsumed is under 132 bytes. Every buffer
   handed to zk_ws_feed ends exactly where its malloc'd block ends, so ASan
   catches a read past the end; zk_ws_free at the end, and LeakSanitizer
   catches what it missed.

   Part 2, encoding: the same bytes read as commands make an engine of the
   other role send up to 8 frames (text, binary, fragments, ping, pong,
   16- and 64-bit lengths) and then maybe a close. Each zk_ws_send result
   must match a model of what is allowed (a reference UTF-8 decoder for
   text), and an engine of the receiving role must decode the frames back
   to the same messages.

   Part 3, small differentials: zk_utf8_valid against the reference
   decoder at four alignments, zk_ws_mask against a byte loop. */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) { \
    fprintf(stderr, "fuzz_frames: invariant broken at line %d: %s\n", __LINE__, #c); \
    abort(); } } while (0)

static const size_t max_messages[8] = {65536, 1024, 4096, 16384, 125, 126, 2048, 32768};

/* ---- reference UTF-8 decoder (RFC 3629 table 3.7, byte by byte) ---- */

/* 1 if s[0..n) is valid UTF-8; with partial, also when it ends inside a
   character whose bytes so far can still be completed. */
static int ref_utf8(const unsigned char *s, size_t n, int partial) {
    size_t i = 0, k, need;
    while (i < n) {
        unsigned c = s[i], lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return 0;
        }
        for (k = 1; k <= need; k++) {
            unsigned b;
            if (i + k >= n) return partial;
            b = s[i + k];
            if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
        }
        i += need + 1;
    }
    return 1;
}

/* ---- growable byte buffer ---- */

typedef struct bytes {
    unsigned char *p;
    size_t len, cap;
} bytes;

static void bytes_add(bytes *b, const void *s, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->p = (unsigned char *)realloc(b->p, cap);
        CHECK(b->p != NULL);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* ---- event logs ---- */

typedef struct record {
    int type, code;
    const char *error;
    size_t data_at, data_len; /* in the log's arena */
    size_t reply_len;
    unsigned char reply[ZK_WS_MAX_CONTROL_FRAME];
} record;

typedef struct event_log {
    record *r;
    size_t n, cap;
    bytes arena;
} event_log;

static void log_add(event_log *log, const zk_ws_event *ev) {
    record *r;
    if (log->n == log->cap) {
        log->cap = log->cap ? log->cap * 2 : 16;
        log->r = (record *)realloc(log->r, log->cap * sizeof *log->r);
        CHECK(log->r != NULL);
    }
    r = &log->r[log->n++];
    r->type = ev->type;
    r->code = ev->code;
    r->error = ev->error;
    r->data_at = log->arena.len;
    r->data_len = ev->data.len;
    bytes_add(&log->arena, ev->data.ptr, ev->data.len);
    r->reply_len = ev->reply_len;
    memcpy(r->reply, ev->reply, ev->reply_len);
}

static void log_free(event_log *log) {
    free(log->r);
    free(log->arena.p);
    memset(log, 0, sizeof *log);
}

/* a[ai..ai+n) == b[bi..bi+n); either base may be NULL when n is 0 */
static int same_bytes(const unsigned char *a, size_t ai, const unsigned char *b, size_t bi, size_t n) {
    return n == 0 || memcmp(a + ai, b + bi, n) == 0;
}

static void same_logs(const event_log *a, const event_log *b) {
    size_t i;
    CHECK(a->n == b->n);
    for (i = 0; i < a->n; i++) {
        const record *x = &a->r[i], *y = &b->r[i];
        CHECK(x->type == y->type);
        CHECK(x->code == y->code);
        CHECK((x->error == NULL) == (y->error == NULL));
        CHECK(x->error == NULL || strcmp(x->error, y->error) == 0);
        CHECK(x->data_len == y->data_len);
        CHECK(same_bytes(a->arena.p, x->data_at, b->arena.p, y->data_at, x->data_len));
        CHECK(x->reply_len == y->reply_len);
        CHECK(memcmp(x->reply, y->reply, x->reply_len) == 0);
    }
}

/* ---- read sizes ---- */

typedef struct chunker {
    int mode;      /* 0: everything at once, 1: derived sizes, 2: one byte */
    uint64_t rng;
} chunker;

static size_t next_chunk(chunker *c, size_t left) {
    size_t n;
    static const size_t spans[4] = {3, 17, 140, 2000};
    if (c->mode == 0) return left;
    if (c->mode == 2) return 1;
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    n = 1 + (size_t)((c->rng >> 8) % spans[c->rng & 3]);
    return n < left ? n : left;
}

/* ---- replies ---- */

/* An engine of the other role must read reply as a single pong or close. */
static void check_reply(int role, const zk_ws_event *ev) {
    zk_ws peer;
    zk_ws_opts o;
    zk_ws_event got;
    unsigned char *buf;
    size_t used;
    if (ev->reply_len == 0) return;
    memset(&o, 0, sizeof o);
    o.role = role == ZK_WS_SERVER ? ZK_WS_CLIENT : ZK_WS_SERVER;
    zk_ws_init(&peer, &o);
    buf = (unsigned char *)malloc(ev->reply_len);
    CHECK(buf != NULL);
    memcpy(buf, ev->reply, ev->reply_len);
    used = zk_ws_feed(&peer, buf, ev->reply_len, &got);
    CHECK(used == ev->reply_len);
    if (ev->type == ZK_WS_EV_PING) {
        CHECK(got.type == ZK_WS_EV_PONG);
        CHECK(got.data.len == ev->data.len && memcmp(got.data.ptr, ev->data.ptr, ev->data.len) == 0);
    } else {
        CHECK(ev->type == ZK_WS_EV_CLOSE || ev->type == ZK_WS_EV_ERROR);
        CHECK(got.type == ZK_WS_EV_CLOSE);
        CHECK(got.code == ev->code);
        if (ev->type == ZK_WS_EV_ERROR) {
            size_t n = strlen(ev->error);
            if (n > 123) n = 123;
            CHECK(got.data.len == n && memcmp(got.data.ptr, ev->error, n) == 0);
        } else {
            CHECK(got.data.len == 0);
        }
    }
    free(buf);
    zk_ws_free(&peer);
}

/* ---- the read loop ---- */

typedef struct config {
    int role;
    size_t max_message;
    int close_first;
} config;

/* Checks one event on its own, before it is logged. */
static void check_event(const config *cfg, const zk_ws *ws, const zk_ws_event *ev) {
    int open = !cfg->close_first; /* did the engine owe the peer a reply? */
    CHECK(ev->type >= ZK_WS_EV_TEXT && ev->type <= ZK_WS_EV_ERROR);
    CHECK(ev->reply_len <= ZK_WS_MAX_CONTROL_FRAME);
    CHECK(ev->data.ptr != NULL);
    switch (ev->type) {
    case ZK_WS_EV_TEXT:
        CHECK(zk_utf8_valid(ev->data.ptr, ev->data.len));
        CHECK(ref_utf8((const unsigned char *)ev->data.ptr, ev->data.len, 0));
        /* fall through */
    case ZK_WS_EV_BINARY:
        CHECK(ev->data.len <= cfg->max_message);
        CHECK(ev->reply_len == 0 && ev->code == 0);
        break;
    case ZK_WS_EV_PING:
        /* answered even after our close (ZK_WS_CLOSE_SENT) */
        CHECK(ev->data.len <= 125);
        CHECK(ev->reply_len > 0);
        break;
    case ZK_WS_EV_PONG:
        CHECK(ev->data.len <= 125 && ev->reply_len == 0);
        break;
    case ZK_WS_EV_CLOSE:
        CHECK(ev->code == ZK_CLOSE_NO_STATUS || zk_ws_close_code_valid(ev->code));
        CHECK(ev->data.len <= 123);
        CHECK(ref_utf8((const unsigned char *)ev->data.ptr, ev->data.len, 0));
        CHECK(open ? ev->reply_len > 0 : ev->reply_len == 0);
        CHECK(zk_ws_state(ws) == ZK_WS_CLOSED);
        CHECK(ws->msg == NULL); /* a half message is dropped at once */
        break;
    case ZK_WS_EV_ERROR:
        CHECK(ev->code == ZK_CLOSE_PROTOCOL_ERROR || ev->code == ZK_CLOSE_INVALID_DATA ||
              ev->code == ZK_CLOSE_TOO_BIG);
        CHECK(ev->error != NULL);
        CHECK(open ? ev->reply_len > 0 : ev->reply_len == 0);
        CHECK(zk_ws_state(ws) == ZK_WS_CLOSED);
        CHECK(ws->msg == NULL);
        break;
    }
    check_reply(cfg->role, ev);
}

/* Feeds stream[0..len) to a fresh engine, reads sized by ch, and logs the
   events. Returns the engine's final state. */
static int drive(const config *cfg, const unsigned char *stream, size_t len, chunker *ch,
                 event_log *log) {
    zk_ws ws;
    zk_ws_opts o;
    unsigned char *buf = NULL;
    size_t buf_len = 0, pos = 0, off = 0;
    int finished = 0, state;
    memset(&o, 0, sizeof o);
    o.role = cfg->role;
    o.max_message = cfg->max_message;
    o.mask_seed = 42;
    zk_ws_init(&ws, &o);
    if (cfg->close_first) {
        unsigned char frame[ZK_WS_MAX_CONTROL_FRAME];
        CHECK(zk_ws_close(&ws, frame, sizeof frame, ZK_CLOSE_GOING_AWAY, "bye", 3) > 0);
        CHECK(zk_ws_state(&ws) == ZK_WS_CLOSE_SENT);
    }
    while (off < len) {
        size_t n = next_chunk(ch, len - off), rounds = 0;
        /* a new block holding exactly the unconsumed bytes and this read */
        unsigned char *next = (unsigned char *)malloc(buf_len - pos + n);
        CHECK(next != NULL);
        if (buf_len > pos) memcpy(next, buf + pos, buf_len - pos);
        memcpy(next + (buf_len - pos), stream + off, n);
        free(buf);
        buf = next;
        buf_len = buf_len - pos + n;
        pos = 0;
        off += n;
        for (;;) {
            zk_ws_event ev;
            size_t used = zk_ws_feed(&ws, buf + pos, buf_len - pos, &ev);
            CHECK(used <= buf_len - pos);
            CHECK(++rounds <= buf_len + 2); /* the loop makes progress */
            if (ev.type == ZK_WS_EV_NONE) {
                CHECK(ev.reply_len == 0);
                if (finished) CHECK(used == buf_len - pos); /* swallowed */
                pos += used;
                if (used == 0) break;
                continue;
            }
            CHECK(!finished);
            check_event(cfg, &ws, &ev);
            log_add(log, &ev);
            if (ev.type == ZK_WS_EV_CLOSE || ev.type == ZK_WS_EV_ERROR) finished = 1;
            pos += used;
        }
        /* at most a partial header or a partial control frame is left */
        CHECK(buf_len - pos < 132);
        if (finished) CHECK(pos == buf_len);
    }
    state = zk_ws_state(&ws);
    CHECK(finished ? state == ZK_WS_CLOSED : state == (cfg->close_first ? ZK_WS_CLOSE_SENT : ZK_WS_OPEN));
    free(buf);
    zk_ws_free(&ws);
    CHECK(ws.msg == NULL);
    return state;
}

/* ---- part 2: encoding ---- */

/* One expected event, kept in a log like the decoder's. */
static void expect(event_log *log, int type, int code, const void *data, size_t len) {
    zk_ws_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.code = code;
    ev.data.ptr = len ? (const char *)data : "";
    ev.data.len = len;
    log_add(log, &ev);
}

static void encode(const unsigned char *s, size_t len, int decoder_role) {
    static const int close_codes[8] = {0, 1000, 1001, 1005, 3000, 4999, 999, 1004};
    zk_ws enc;
    zk_ws_opts o;
    bytes wire = {NULL, 0, 0}, msg = {NULL, 0, 0}, payload = {NULL, 0, 0};
    event_log want = {NULL, 0, 0, {NULL, 0, 0}}, got = {NULL, 0, 0, {NULL, 0, 0}};
    unsigned char *out;
    size_t q = 0, frames = 0;
    int open_op = 0, big_done = 0, closed = 0, close_code = 0;
    config cfg;
    chunker ch;
    memset(&o, 0, sizeof o);
    o.role = decoder_role == ZK_WS_SERVER ? ZK_WS_CLIENT : ZK_WS_SERVER;
    o.mask_seed = len;
    zk_ws_init(&enc, &o);
    bytes_add(&payload, "", 1); /* never a NULL payload pointer */
    while (q < len && frames < 8 && !closed) {
        unsigned c = s[q++], kind = c & 7, fin = (c >> 3) & 1, cls = c >> 4;
        size_t plen = 0, i, size;
        int opcode, rc, ok;
        zk_ws before;
        unsigned char none[1];
        if (cls < 12) {
            plen = q < len ? s[q++] : 0;
        } else if (cls < 14) {
            plen = q + 1 < len ? (size_t)s[q] << 8 | s[q + 1] : 300;
            q += 2;
        } else if (cls == 14 && !big_done) {
            plen = 65536 + (q < len ? s[q++] : 0);
            big_done = 1;
        } else {
            plen = 124 + (q < len ? s[q++] & 3 : 0); /* 124..127: the control limit */
        }
        /* the payload: the next input bytes, repeated when there are too few */
        payload.len = 0;
        for (i = 0; i < plen; i++) {
            unsigned char b = len ? s[(q + i) % len] : (unsigned char)i;
            bytes_add(&payload, &b, 1);
        }
        q += plen < len ? plen : len;
        frames++;

        if (kind == 7) {
            /* a close: code from the table, reason from the payload */
            int code = close_codes[fin | (cls & 3) << 1];
            size_t rlen = plen;
            if (code == 0) rlen = 0;
            ok = (code == 0 || zk_ws_close_code_valid(code)) && rlen <= 123 &&
                 ref_utf8(payload.p, rlen, 0);
            size = zk_ws_frame_size(&enc, code ? 2 + rlen : 0);
            out = (unsigned char *)malloc(size + 1);
            CHECK(out != NULL);
            rc = zk_ws_close(&enc, out, size - 1, code, (const char *)payload.p, rlen);
            CHECK(rc == (ok ? ZK_ENOSPACE : ZK_EINVAL));
            CHECK(zk_ws_state(&enc) == ZK_WS_OPEN);
            rc = zk_ws_close(&enc, out, size, code, (const char *)payload.p, rlen);
            if (ok) {
                CHECK(rc == (int)size);
                CHECK(zk_ws_close(&enc, out, size, code, (const char *)payload.p, rlen) == ZK_ECLOSED);
                CHECK(zk_ws_state(&enc) == ZK_WS_CLOSE_SENT);
                bytes_add(&wire, out, size);
                expect(&want, ZK_WS_EV_CLOSE, code ? code : ZK_CLOSE_NO_STATUS, payload.p, rlen);
                CHECK(zk_ws_send(&enc, out, size, ZK_WS_PING, "", 0, 1) == ZK_ECLOSED);
                closed = 1;
                close_code = code ? code : ZK_CLOSE_NO_STATUS;
            } else {
                CHECK(rc == ZK_EINVAL);
                CHECK(zk_ws_state(&enc) == ZK_WS_OPEN);
            }
            free(out);
            continue;
        }

        /* opcodes zk_ws_send refuses whatever the payload */
        CHECK(zk_ws_send(&enc, none, 0, ZK_WS_CLOSE, payload.p, plen, 1) == ZK_EINVAL);
        CHECK(zk_ws_send(&enc, none, 0, 3 + (int)(c % 5), payload.p, plen, 1) == ZK_EINVAL);
        opcode = kind == 0 || kind == 5 ? ZK_WS_TEXT : kind == 1 || kind == 6 ? ZK_WS_BINARY
               : kind == 2 ? ZK_WS_CONTINUATION : kind == 3 ? ZK_WS_PING : ZK_WS_PONG;
        /* the model: is this frame allowed now? */
        if (opcode == ZK_WS_PING || opcode == ZK_WS_PONG) {
            ok = plen <= 125 && fin;
        } else if (opcode == ZK_WS_CONTINUATION) {
            ok = open_op != 0;
        } else {
            ok = open_op == 0;
        }
        if (ok && (opcode == ZK_WS_TEXT || (opcode == ZK_WS_CONTINUATION && open_op == ZK_WS_TEXT))) {
            size_t before = opcode == ZK_WS_TEXT ? 0 : msg.len;
            bytes all = {NULL, 0, 0};
            if (before) bytes_add(&all, msg.p, before);
            bytes_add(&all, payload.p, plen);
            ok = ref_utf8(all.p, all.len, !fin);
            free(all.p);
        }
        size = zk_ws_frame_size(&enc, plen);
        CHECK(size >= plen + (o.role == ZK_WS_CLIENT ? 6 : 2));
        out = (unsigned char *)malloc(size);
        CHECK(out != NULL);
        /* one byte short: refused (invalid first), and nothing changes */
        memcpy(&before, &enc, sizeof enc);
        rc = zk_ws_send(&enc, out, size - 1, opcode, payload.p, plen, (int)fin);
        CHECK(rc == (ok ? ZK_ENOSPACE : ZK_EINVAL));
        CHECK(memcmp(&before, &enc, sizeof enc) == 0);
        rc = zk_ws_send(&enc, out, size, opcode, payload.p, plen, (int)fin);
        if (!ok) {
            CHECK(rc == ZK_EINVAL);
            free(out);
            continue;
        }
        CHECK(rc == (int)size);
        bytes_add(&wire, out, size);
        free(out);
        if (opcode == ZK_WS_PING || opcode == ZK_WS_PONG) {
            expect(&want, opcode == ZK_WS_PING ? ZK_WS_EV_PING : ZK_WS_EV_PONG, 0, payload.p, plen);
            continue;
        }
        if (opcode != ZK_WS_CONTINUATION) {
            open_op = opcode;
            msg.len = 0;
        }
        bytes_add(&msg, payload.p, plen);
        if (fin) {
            expect(&want, open_op == ZK_WS_TEXT ? ZK_WS_EV_TEXT : ZK_WS_EV_BINARY, 0, msg.p, msg.len);
            open_op = 0;
        }
    }

    /* decode it all back, in reads of assorted sizes */
    cfg.role = decoder_role;
    cfg.max_message = ZK_WS_MAX_MESSAGE;
    cfg.close_first = 0;
    ch.mode = 1;
    ch.rng = 0x9E3779B97F4A7C15ull ^ len;
    {
        zk_ws_event ev;
        size_t i, at;
        drive(&cfg, wire.p, wire.len, &ch, &got);
        CHECK(got.n == want.n);
        for (i = 0; i < want.n; i++) {
            const record *x = &want.r[i], *y = &got.r[i];
            CHECK(x->type == y->type);
            CHECK(x->type != ZK_WS_EV_CLOSE || x->code == y->code);
            CHECK(x->data_len == y->data_len);
            CHECK(same_bytes(want.arena.p, x->data_at, got.arena.p, y->data_at, x->data_len));
            CHECK(x->type != ZK_WS_EV_PING || y->reply_len > 0);
        }
        /* the close handshake ends: the decoder's answer closes the encoder */
        if (closed) {
            const record *last = &got.r[got.n - 1];
            unsigned char *reply;
            CHECK(last->type == ZK_WS_EV_CLOSE && last->code == close_code && last->reply_len > 0);
            reply = (unsigned char *)malloc(last->reply_len);
            CHECK(reply != NULL);
            memcpy(reply, last->reply, last->reply_len);
            at = zk_ws_feed(&enc, reply, last->reply_len, &ev);
            CHECK(at == last->reply_len);
            CHECK(ev.type == ZK_WS_EV_CLOSE && ev.code == close_code && ev.reply_len == 0);
            CHECK(zk_ws_state(&enc) == ZK_WS_CLOSED);
            free(reply);
        }
    }
    zk_ws_free(&enc);
    free(wire.p);
    free(msg.p);
    free(payload.p);
    log_free(&want);
    log_free(&got);
}

/* ---- part 3 ---- */

static void differentials(const unsigned char *s, size_t len) {
    size_t i;
    unsigned char *a, *b;
    unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t offset = len ? s[0] & 3 : 0;
    for (i = 0; i < 4 && i <= len; i++)
        CHECK(zk_utf8_valid(s + i, len - i) == ref_utf8(s + i, len - i, 0));
    if (len >= 5) memcpy(key, s + 1, 4);
    a = (unsigned char *)malloc(len ? len : 1);
    b = (unsigned char *)malloc(len ? len : 1);
    CHECK(a != NULL && b != NULL);
    if (len) memcpy(a, s, len);
    if (len) memcpy(b, s, len);
    zk_ws_mask(a, len, key, offset);
    for (i = 0; i < len; i++) b[i] ^= key[(offset + i) & 3];
    CHECK(len == 0 || memcmp(a, b, len) == 0);
    zk_ws_mask(a, len, key, offset);
    CHECK(len == 0 || memcmp(a, s, len) == 0);
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    config cfg;
    event_log whole = {NULL, 0, 0, {NULL, 0, 0}}, pieces = {NULL, 0, 0, {NULL, 0, 0}},
              bytewise = {NULL, 0, 0, {NULL, 0, 0}};
    chunker ch;
    const unsigned char *stream = data + 1;
    size_t len, i;
    uint64_t h = 1469598103934665603ull;
    if (size == 0) return 0;
    len = size - 1;
    cfg.role = data[0] & 1 ? ZK_WS_CLIENT : ZK_WS_SERVER;
    cfg.max_message = max_messages[(data[0] >> 1) & 7];
    cfg.close_first = (data[0] >> 4) & 1;
    for (i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;

    ch.mode = 0;
    ch.rng = 0;
    drive(&cfg, stream, len, &ch, &whole);
    ch.mode = 1;
    ch.rng = h | 1;
    drive(&cfg, stream, len, &ch, &pieces);
    same_logs(&whole, &pieces);
    ch.mode = 2;
    drive(&cfg, stream, len, &ch, &bytewise);
    same_logs(&whole, &bytewise);
    log_free(&whole);
    log_free(&pieces);
    log_free(&bytewise);

    encode(stream, len, cfg.role);
    differentials(stream, len);
    return 0;
}
