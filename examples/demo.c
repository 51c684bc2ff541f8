/* demo: a WebSocket client and server talking through memory.

   No socket is involved: the protocol engine of zocket.h turns bytes into
   events and events into bytes, and this program carries the bytes from one
   side to the other, printing what crosses. It is what an event loop, a game
   loop or a test does with the engine.

   build/demo */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <stdio.h>

static void show(const char *who, const unsigned char *p, size_t n) {
    size_t i;
    printf("  %s %3zu bytes:", who, n);
    for (i = 0; i < n && i < 24; i++) printf(" %02x", p[i]);
    printf("%s\n", n > 24 ? " ..." : "");
}

/* Delivers bytes to an engine the way a read loop would; prints the events
   and carries each reply back to the other side. */
static void deliver(const char *name, zk_ws *to, zk_ws *back, unsigned char *p, size_t n) {
    zk_ws_event ev;
    for (;;) {
        size_t used = zk_ws_feed(to, p, n, &ev);
        if (!used && ev.type == ZK_WS_EV_NONE) break;
        p += used;
        n -= used;
        switch (ev.type) {
        case ZK_WS_EV_TEXT:
            printf("  %s got text: \"%.*s\"\n", name, (int)ev.data.len, ev.data.ptr);
            break;
        case ZK_WS_EV_BINARY: printf("  %s got %zu binary bytes\n", name, ev.data.len); break;
        case ZK_WS_EV_PING: printf("  %s got ping \"%.*s\"\n", name, (int)ev.data.len, ev.data.ptr); break;
        case ZK_WS_EV_PONG: printf("  %s got pong \"%.*s\"\n", name, (int)ev.data.len, ev.data.ptr); break;
        case ZK_WS_EV_CLOSE:
            printf("  %s got close %d \"%.*s\"\n", name, ev.code, (int)ev.data.len, ev.data.ptr);
            break;
        case ZK_WS_EV_ERROR: printf("  %s failed: %d %s\n", name, ev.code, ev.error); break;
        default: break;
        }
        if (ev.reply_len) {
            unsigned char reply[ZK_WS_MAX_CONTROL_FRAME];
            size_t len = ev.reply_len;
            memcpy(reply, ev.reply, len);
            show(name[0] == 's' ? "server ->" : "client ->", reply, len);
            deliver(name[0] == 's' ? "client" : "server", back, to, reply, len);
        }
    }
}

int main(void) {
    static const char *const protocols[] = {"zocket.json"};
    zk_ws_client_handshake hs;
    zk_http_request req;
    zk_http_response res;
    zk_ws_upgrade up;
    zk_ws_opts copts;
    zk_ws client, server;
    char head[1024], answer[512];
    unsigned char frame[256];
    const char *error = NULL;
    zk_str chosen;
    int n, m;

    printf("zocket.h %s protocol engine demo (no network: bytes travel through memory)\n\n",
           ZOCKET_VERSION);

    /* 1. The handshake. */
    memset(&hs, 0, sizeof hs);
    hs.host = "example.test";
    hs.path = "/chat?room=lobby";
    hs.protocols = protocols;
    hs.protocol_count = 1;
    memcpy(hs.key, "sixteen random b", 16); /* a real client uses random bytes */
    n = zk_ws_client_request(head, sizeof head, &hs);
    printf("client -> server, upgrade request:\n%.*s", n, head);
    if (zk_http_parse_request(head, (size_t)n, 0, &req, NULL) != n ||
        zk_ws_upgrade_check(&req, protocols, 1, &up) != ZK_OK) {
        printf("server refused the upgrade: %s\n", up.error ? up.error : req.error);
        return 1;
    }
    m = zk_ws_upgrade_accept(answer, sizeof answer, &up, NULL, 0);
    printf("server -> client, answer:\n%.*s", m, answer);
    if (zk_http_parse_response(answer, (size_t)m, 0, &res, NULL) != m ||
        zk_ws_client_verify(&res, &hs, &chosen, &error) != ZK_OK) {
        printf("client rejected the answer: %s\n", error ? error : res.error);
        return 1;
    }
    printf("open, subprotocol %.*s\n\n", (int)chosen.len, chosen.ptr);

    memset(&copts, 0, sizeof copts);
    copts.role = ZK_WS_CLIENT;
    copts.mask_seed = 12345; /* a real client seeds from the OS */
    zk_ws_init(&client, &copts);
    zk_ws_init(&server, NULL);

    /* 2. Messages: the client masks what it sends, the server does not. */
    printf("a message from each side:\n");
    n = zk_ws_send(&client, frame, sizeof frame, ZK_WS_TEXT, "hello, server", 13, 1);
    show("client ->", frame, (size_t)n);
    deliver("server", &server, &client, frame, (size_t)n);
    n = zk_ws_send(&server, frame, sizeof frame, ZK_WS_TEXT, "hello, client", 13, 1);
    show("server ->", frame, (size_t)n);
    deliver("client", &client, &server, frame, (size_t)n);

    /* 3. A message in three fragments, with a ping in the middle, delivered
       one byte at a time: the result is the same as whole. */
    printf("\na fragmented message with a ping inside, one byte at a time:\n");
    {
        unsigned char stream[256], pending[256];
        size_t len = 0, have = 0, i;
        len += (size_t)zk_ws_send(&client, stream + len, sizeof stream - len, ZK_WS_TEXT, "frag", 4, 0);
        len += (size_t)zk_ws_send(&client, stream + len, sizeof stream - len, ZK_WS_PING, "are you there", 13, 1);
        len += (size_t)zk_ws_send(&client, stream + len, sizeof stream - len, ZK_WS_CONTINUATION, "ment", 4, 0);
        len += (size_t)zk_ws_send(&client, stream + len, sizeof stream - len, ZK_WS_CONTINUATION, "ed", 2, 1);
        show("client ->", stream, len);
        for (i = 0; i < len; i++) {
            zk_ws_event ev;
            size_t used;
            pending[have++] = stream[i];
            used = zk_ws_feed(&server, pending, have, &ev);
            memmove(pending, pending + used, have - used);
            have -= used;
            if (ev.type == ZK_WS_EV_TEXT)
                printf("  server got text: \"%.*s\" (after byte %zu of %zu)\n", (int)ev.data.len, ev.data.ptr, i + 1, len);
            if (ev.type == ZK_WS_EV_PING) {
                printf("  server got ping \"%.*s\"; answers:\n", (int)ev.data.len, ev.data.ptr);
                show("server ->", ev.reply, ev.reply_len);
                deliver("client", &client, &server, ev.reply, ev.reply_len);
            }
        }
    }

    /* 4. The close handshake. */
    printf("\nthe close handshake:\n");
    n = zk_ws_close(&client, frame, sizeof frame, ZK_CLOSE_NORMAL, "bye", 3);
    show("client ->", frame, (size_t)n);
    deliver("server", &server, &client, frame, (size_t)n);
    printf("  states: client %s, server %s\n",
           zk_ws_state(&client) == ZK_WS_CLOSED ? "closed" : "not closed",
           zk_ws_state(&server) == ZK_WS_CLOSED ? "closed" : "not closed");

    /* 5. A protocol violation: the server fails the connection with 1007. */
    printf("\nand a peer that sends invalid UTF-8 as text:\n");
    zk_ws_init(&server, NULL);
    {
        unsigned char bad[] = {0x81, 0x82, 1, 2, 3, 4, 0xC0 ^ 1, 0xAF ^ 2};
        show("client ->", bad, sizeof bad);
        deliver("server", &server, &client, bad, sizeof bad);
    }
    zk_ws_free(&client);
    zk_ws_free(&server);
    printf("\nThis is the sans-I/O layer only: sockets, the event loop and the chat\n"
           "example come next (see README.md).\n");
    return 0;
}
