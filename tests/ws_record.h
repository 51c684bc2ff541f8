/* What the frame-engine tests share: a growable byte buffer, a seeded
   generator, and a recording of every zk_ws_feed event (type, code, data,
   reply) so two runs of the same input can be compared. Include after
   test.h and zocket.h. */
#ifndef ZK_WS_RECORD_H
#define ZK_WS_RECORD_H

typedef struct bytes {
    unsigned char *p;
    size_t len, cap;
} bytes;

/* Appends n bytes and returns where they go; allocates even for n == 0,
   so p is never NULL (CHECK_MEM compares it). */
static unsigned char *put_space(bytes *b, size_t n) {
    if (b->len + n > b->cap || !b->p) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n) cap *= 2;
        b->p = (unsigned char *)realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
    b->len += n;
    return b->p + b->len - n;
}

static void put(bytes *b, const void *src, size_t n) {
    unsigned char *dst = put_space(b, n);
    if (n) memcpy(dst, src, n);
}

static void put_byte(bytes *b, unsigned v) {
    unsigned char c = (unsigned char)v;
    put(b, &c, 1);
}

static void bytes_free(bytes *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ull;
}

typedef struct event_copy {
    int type, code;
    const char *error;
    bytes data, reply;
} event_copy;

typedef struct run_result {
    event_copy *ev;
    size_t n, cap;
    int state;
    size_t left;         /* bytes still unconsumed when the input ended */
    const char *broken;  /* a broken feed contract, or NULL */
} run_result;

static void record(run_result *r, const zk_ws_event *ev) {
    event_copy *e;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 8;
        r->ev = (event_copy *)realloc(r->ev, r->cap * sizeof *r->ev);
        if (!r->ev) abort();
    }
    e = &r->ev[r->n++];
    memset(e, 0, sizeof *e);
    e->type = ev->type;
    e->code = ev->code;
    e->error = ev->error;
    put(&e->data, ev->data.ptr, ev->data.len);
    if (ev->reply_len > sizeof ev->reply) r->broken = "reply_len larger than reply";
    else put(&e->reply, ev->reply, ev->reply_len);
}

static void result_free(run_result *r) {
    size_t i;
    for (i = 0; i < r->n; i++) {
        bytes_free(&r->ev[i].data);
        bytes_free(&r->ev[i].reply);
    }
    free(r->ev);
    memset(r, 0, sizeof *r);
}

#endif
