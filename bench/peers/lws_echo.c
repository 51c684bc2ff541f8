/* lws_echo: a minimal WebSocket echo server on libwebsockets (Debian's 4.1).

   cc -O2 bench/peers/lws_echo.c -lwebsockets -o build/lws_echo
   build/lws_echo PORT

   Binds 127.0.0.1 only, echoes every message with its type on any path,
   prints "listening on ws://127.0.0.1:PORT" once ready, exits on SIGINT or
   SIGTERM. The idiomatic lws way: a message is collected from RECEIVE
   callbacks into a per-connection queue, and each WRITEABLE callback sends
   one queued message (lws allows one lws_write per WRITEABLE). */
#include <libwebsockets.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A queued message: this header, LWS_PRE bytes for lws, then the payload. */
struct record {
    size_t len;
    int binary;
};

#define RECORD_HEAD (((sizeof(struct record) + 15) & ~(size_t)15) + LWS_PRE)

struct session {
    unsigned char *buf; /* records, one after another */
    size_t len, cap;
    size_t head;        /* the next record to send */
    size_t cur;         /* the record being received */
    int receiving;
};

static volatile sig_atomic_t interrupted;

static int reserve(struct session *s, size_t n) {
    if (s->cap - s->len < n) {
        size_t cap = s->cap ? s->cap : 4096;
        unsigned char *p;
        while (cap - s->len < n) cap *= 2;
        p = realloc(s->buf, cap);
        if (!p) return -1;
        s->buf = p;
        s->cap = cap;
    }
    return 0;
}

static int callback_echo(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len) {
    struct session *s = (struct session *)user;
    struct record *r;

    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(s, 0, sizeof *s);
        break;

    case LWS_CALLBACK_RECEIVE:
        if (!s->receiving) { /* a new message: start its record */
            if (s->head) { /* drop the records already sent */
                memmove(s->buf, s->buf + s->head, s->len - s->head);
                s->len -= s->head;
                s->head = 0;
            }
            if (reserve(s, RECORD_HEAD)) return -1;
            s->cur = s->len;
            r = (struct record *)(void *)(s->buf + s->cur);
            r->len = 0;
            r->binary = lws_frame_is_binary(wsi);
            s->len += RECORD_HEAD;
            s->receiving = 1;
        }
        if (reserve(s, len + 16)) return -1;
        memcpy(s->buf + s->len, in, len);
        s->len += len;
        r = (struct record *)(void *)(s->buf + s->cur);
        r->len += len;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            s->receiving = 0;
            s->len = (s->len + 15) & ~(size_t)15; /* the next record stays aligned */
            lws_callback_on_writable(wsi);
        }
        break;

    case LWS_CALLBACK_SERVER_WRITEABLE: {
        size_t end = s->receiving ? s->cur : s->len;
        int n;
        if (s->head >= end) break;
        r = (struct record *)(void *)(s->buf + s->head);
        n = lws_write(wsi, s->buf + s->head + RECORD_HEAD, r->len,
                      r->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        if (n < (int)r->len) return -1;
        s->head = (s->head + RECORD_HEAD + r->len + 15) & ~(size_t)15;
        if (s->head >= s->len) {
            s->head = s->len = 0; /* empty: reuse the buffer from the start */
        } else if (!s->receiving || s->head < s->cur) {
            lws_callback_on_writable(wsi);
        }
        break;
    }

    case LWS_CALLBACK_CLOSED:
        free(s->buf);
        s->buf = NULL;
        s->len = s->cap = s->head = 0;
        break;

    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    /* first: used for upgrades that name no subprotocol */
    {"echo", callback_echo, sizeof(struct session), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}
};

static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

int main(int argc, char **argv) {
    struct lws_context_creation_info info;
    struct lws_context *context;
    int port = argc > 1 ? atoi(argv[1]) : 9004;

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    lws_set_log_level(LLL_ERR, NULL);

    memset(&info, 0, sizeof info);
    info.port = port;
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    context = lws_create_context(&info);
    if (!context) {
        fprintf(stderr, "lws_echo: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    printf("listening on ws://127.0.0.1:%d (libwebsockets %s)\n", port, lws_get_library_version());
    fflush(stdout);
    while (!interrupted && lws_service(context, 0) >= 0) {
    }
    lws_context_destroy(context);
    return 0;
}
