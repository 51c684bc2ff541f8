#include "loop.h"
/* >>net: WebSocket connections, server and client, over TCP or loopback ---- */

/* A zk_conn is one WebSocket connection, server side or client side, over
   TCP or over the in-memory loopback transport: the same code runs on both.
   Callbacks run on the loop's thread. A connection is freed by the library
   after its on_close callback returns; do not use it after that. */
typedef struct zk_conn zk_conn;
typedef struct zk_server zk_server;

/* What a server or client tells you. Every callback is optional. */
typedef struct zk_callbacks {
    /* The connection is open: the 101 was sent (server) or verified
       (client). req is the upgrade request (server side only, else NULL);
       its views are valid during the call. */
    void (*on_open)(zk_conn *conn, const zk_http_request *req);
    /* A whole message: binary is 0 for text (valid UTF-8), 1 for binary.
       data is valid during the call. */
    void (*on_message)(zk_conn *conn, zk_str data, int binary);
    /* The connection is gone: code and reason from the peer's close frame
       (1005 when it had none), or 1006 when it dropped without one, or the
       code we sent when we failed it. clean is 1 after a full close
       handshake. After this returns the connection is no longer yours: do
       not use it. (The library may still finish the TCP close, then frees
       it; zk_server_free and zk_loop_free free any still finishing.) A
       client whose connect failed gets on_close with 1006 and no on_open; a
       server connection that on_upgrade did not accept gets no on_close,
       except a plain HTTP request still waiting for zk_conn_respond (see
       zk_http_fn). */
    void (*on_close)(zk_conn *conn, int code, zk_str reason, int clean);
    /* The write queue fell below the high-water mark after a send reported
       backpressure (ZK_SEND_BACKPRESSURE). */
    void (*on_drain)(zk_conn *conn);
    /* A pong arrived (answers to zk_conn_ping and to heartbeats). */
    void (*on_pong)(zk_conn *conn, zk_str data);
} zk_callbacks;

/* Server side: a request without a WebSocket upgrade. Answer it with
   zk_conn_respond (now or later); the connection closes after the answer.
   If it goes away before you answered (peer gone, handshake_timeout_ms,
   zk_server_free), on_close tells you (1006), and then the connection may
   not be used. Without this callback such requests get 426 Upgrade Required. */
typedef void (*zk_http_fn)(zk_conn *conn, const zk_http_request *req);

/* Server side: a valid upgrade request, before the answer. Return 0 to
   accept (zk_conn_set_data here is the usual place to attach your state),
   or an HTTP status (401, 403, ...) to refuse it: the peer gets that status
   and no WebSocket frame, with the status text as body, or with your own
   headers and body if you answer with zk_conn_respond before returning. */
typedef int (*zk_upgrade_fn)(zk_conn *conn, const zk_http_request *req, const zk_ws_upgrade *up);

typedef struct zk_server_opts {
    const char *host;             /* address to listen on; NULL: "127.0.0.1". "::"
                                     or "0.0.0.0" for all interfaces. Numeric or
                                     "localhost": no name lookup. */
    int port;                     /* 0: any free port (see zk_server_port) */
    int backlog;                  /* 0: 511 */
    const char *const *protocols; /* subprotocols you speak, preferred first */
    size_t protocol_count;
    size_t max_message;           /* 0: ZK_WS_MAX_MESSAGE (16 MiB); more: close 1009 */
    size_t write_high_water;      /* 0: 1 MiB. Past it sends report backpressure, and
                                     after a message the connection is not read
                                     until its queue falls below it again */
    size_t write_limit;           /* 0: 16 MiB + high water. Past it sends are refused */
    uint32_t handshake_timeout_ms;/* 0: 10000. Upgrade not done by then: closed */
    uint32_t idle_timeout_ms;     /* 0: 30000. A peer silent this long is pinged */
    uint32_t pong_timeout_ms;     /* 0: 10000. No pong (or anything) by then: closed */
    uint32_t close_timeout_ms;    /* 0: 3000. Close handshake not done by then: TCP closed */
    uint32_t message_timeout_ms;  /* 0: 30000. A message (every frame of it) not whole
                                     this long after its first byte came: close 1008 */
    uint32_t write_timeout_ms;    /* 0: 30000. Bytes queued and none of them taken by
                                     the peer for this long (it does not read): the
                                     TCP connection is dropped (on_close 1006) */
    size_t max_connections;       /* 0: no limit of ours (the fd limit applies) */
    size_t max_per_address;       /* connections at once from one IP address (IPv4,
                                     or IPv6; loopback transport not counted);
                                     0: no limit. More: accepted and closed at once */
    const char *const *origins;   /* Origin allow-list ("https://app.example.com",
                                     compared without case): an upgrade whose
                                     Origin header is not listed gets 403 before
                                     any hook runs. Requests without Origin (not
                                     from a browser) pass. NULL: every origin */
    size_t origin_count;
    zk_callbacks cb;
    zk_upgrade_fn on_upgrade;
    zk_http_fn on_http;
    void *data;                   /* yours: zk_server_data() */
} zk_server_opts;

/* A server on loop; it listens once zk_server_listen succeeds (loopback
   connections need no listening). NULL when out of memory. */
ZK_API zk_server *zk_server_new(zk_loop *loop, const zk_server_opts *opts);

/* Binds host:port over TCP. Returns 0 or a negative zk_err
   (ZK_EADDRINUSE, ZK_EINVAL for a bad host, ZK_EIO). */
ZK_API int zk_server_listen(zk_server *server);

/* The port listened on (useful with port 0), or 0. */
ZK_API int zk_server_port(const zk_server *server);

/* Graceful shutdown: stop accepting, close every connection with 1001,
   let queues flush and closes complete, and after timeout_ms (0: 5000)
   drop whatever is left. done (may be NULL) runs when no connection is
   left, possibly before this returns; done may free the server. */
ZK_API void zk_server_shutdown(zk_server *server, uint32_t timeout_ms,
                               void (*done)(zk_server *server));

/* Frees the server, dropping its connections at once (on_close runs with
   1006 for each). */
ZK_API void zk_server_free(zk_server *server);

ZK_API size_t zk_server_connections(const zk_server *server);
ZK_API void *zk_server_data(const zk_server *server);
ZK_API zk_loop *zk_server_loop(const zk_server *server);

/* Client side. */
typedef struct zk_conn_opts {
    const char *url;              /* ws://host[:port][/path][?query]; host numeric,
                                     [v6], "localhost" (no lookup) or a name
                                     (getaddrinfo: blocks the loop while it runs) */
    const char *origin;           /* Origin header, or NULL */
    const char *const *protocols; /* subprotocols to offer, preferred first */
    size_t protocol_count;
    const zk_http_header *headers;/* extra HTTP headers, or NULL */
    size_t header_count;
    uint32_t connect_timeout_ms;  /* 0: 10000, TCP connect and upgrade together */
    uint32_t close_timeout_ms;    /* 0: 3000 */
    size_t max_message;           /* 0: ZK_WS_MAX_MESSAGE */
    size_t write_high_water;      /* 0: 1 MiB */
    size_t write_limit;           /* 0: 16 MiB + high water */
    zk_callbacks cb;
    void *data;                   /* the connection's initial zk_conn_data */
} zk_conn_opts;

/* Starts connecting; the outcome arrives as on_open or on_close (1006).
   Returns the connection, or NULL with *err set (a bad URL or a header with
   CR, LF or a bad name: ZK_EINVAL; headers over 4 KiB: ZK_ETOOBIG; name not
   found: ZK_ENOTFOUND; out of memory). err may be NULL. */
ZK_API zk_conn *zk_conn_connect(zk_loop *loop, const zk_conn_opts *opts, int *err);

/* In-memory transport: a client connection to server through a loopback
   pair, with faults to inject. Nothing touches the network; with a virtual
   clock, time passes only through zk_loop_advance. */
typedef struct zk_loopback_opts {
    size_t chunk;        /* deliver bytes in pieces of at most this size; 0: as written */
    uint32_t delay_ms;   /* bytes arrive this long after they were written */
    size_t capacity;     /* bytes in flight per direction before writes block; 0: 256 KiB */
} zk_loopback_opts;

/* The client side of a new loopback pair to server; url gives the path and
   query ("ws://loopback/chat?x=1"), the rest of copts is as for
   zk_conn_connect. fault may be NULL. */
ZK_API zk_conn *zk_loopback_connect(zk_server *server, const zk_conn_opts *copts,
                                    const zk_loopback_opts *fault, int *err);

/* Fault injection on a loopback connection (either end); each returns
   ZK_EINVAL on a TCP connection.
   stall: 1 stops this end reading (its peer's writes back up), 0 resumes.
   drop: both ends see the connection reset now (on_close 1006).
   silence: 1 makes bytes vanish both ways without a close (a half-open
   peer, as when a cable is pulled); 0 restores delivery. */
ZK_API int zk_loopback_stall(zk_conn *conn, int stalled);
ZK_API int zk_loopback_drop(zk_conn *conn);
ZK_API int zk_loopback_silence(zk_conn *conn, int silent);

/* What zk_conn_send reports (or a negative zk_err when refused). */
enum {
    ZK_SEND_OK = 0,          /* queued below the high-water mark */
    ZK_SEND_BACKPRESSURE = 1 /* queued, but the queue is over the mark: wait for on_drain */
};

/* Queues a message (copied). binary 0: text (must be UTF-8); 1: binary.
   Returns ZK_SEND_OK, ZK_SEND_BACKPRESSURE, or ZK_ECLOSED (not open),
   ZK_EINVAL (text not UTF-8, too big for the peer's limit is not known),
   ZK_EBACKPRESSURE (the queue would pass write_limit: nothing queued),
   ZK_ENOMEM. Frames go out at the end of the loop pass, coalesced. */
ZK_API int zk_conn_send(zk_conn *conn, const void *data, size_t len, int binary);

/* A message encoded once, to send to many connections (a broadcast, a
   game state): the frame header is built and text is validated once. Server
   connections copy the ready bytes when they are few, and hold a reference
   to them from 2 KiB on; a client connection must mask, so it encodes it
   again. Free it whenever you like (the bytes live while a queue holds
   them); the count is not atomic: use a frame on one loop's thread.
   Returns NULL when out of memory or when text is not UTF-8 (*err says,
   may be NULL).
       zk_frame *f = zk_frame_new(state, n, 0, NULL);
       for (i = 0; i < nplayers; i++) zk_conn_send_frame(players[i], f);
       zk_frame_free(f); */
typedef struct zk_frame zk_frame;
ZK_API zk_frame *zk_frame_new(const void *data, size_t len, int binary, int *err);
ZK_API void zk_frame_free(zk_frame *frame);
/* As zk_conn_send, with the message of frame. */
ZK_API int zk_conn_send_frame(zk_conn *conn, const zk_frame *frame);

/* Sends a ping (payload at most 125 bytes); the pong comes to on_pong. */
ZK_API int zk_conn_ping(zk_conn *conn, const void *data, size_t len);

/* Starts the close handshake with code (0: none) and a reason (NULL: none,
   at most 123 bytes). Queued messages go first. on_close follows when the
   peer answers or close_timeout_ms passes. ZK_ECLOSED if already closing. */
ZK_API int zk_conn_close(zk_conn *conn, int code, const char *reason);

/* Drops the connection now, without a close handshake: on_close gets 1006. */
ZK_API void zk_conn_abort(zk_conn *conn);

/* Answers a plain HTTP request (see zk_http_fn) and closes afterwards. */
ZK_API int zk_conn_respond(zk_conn *conn, int status, const zk_http_header *headers,
                           size_t header_count, const void *body, size_t body_len);

ZK_API void zk_conn_set_data(zk_conn *conn, void *data);
ZK_API void *zk_conn_data(const zk_conn *conn);
/* Bytes queued and not yet written. */
ZK_API size_t zk_conn_buffered(const zk_conn *conn);
/* The negotiated subprotocol, or an empty view. */
ZK_API zk_str zk_conn_protocol(const zk_conn *conn);
/* Client side: the HTTP status of an upgrade answer that was not 101 (401,
   404, 503...), readable in on_close; else 0. */
ZK_API int zk_conn_http_status(const zk_conn *conn);
/* The server a server-side connection belongs to, or NULL. */
ZK_API zk_server *zk_conn_server(const zk_conn *conn);
ZK_API zk_loop *zk_conn_loop(const zk_conn *conn);
/* "127.0.0.1:50312", "[::1]:50312" or "loopback" into out; returns length. */
ZK_API int zk_conn_peer(const zk_conn *conn, char *out, size_t cap);
