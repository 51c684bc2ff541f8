#include "http.h"
/* >>ws: the RFC 6455 frame engine (sans-I/O) ----------------------------- */

#ifndef ZK_WS_MAX_MESSAGE
#define ZK_WS_MAX_MESSAGE (16u * 1024u * 1024u)
#endif

/* Opcodes. */
enum {
    ZK_WS_CONTINUATION = 0x0,
    ZK_WS_TEXT = 0x1,
    ZK_WS_BINARY = 0x2,
    ZK_WS_CLOSE = 0x8,
    ZK_WS_PING = 0x9,
    ZK_WS_PONG = 0xA
};

/* Close codes (RFC 6455 7.4.1). 4000-4999 are the application's. */
enum {
    ZK_CLOSE_NORMAL = 1000,
    ZK_CLOSE_GOING_AWAY = 1001,
    ZK_CLOSE_PROTOCOL_ERROR = 1002,
    ZK_CLOSE_UNSUPPORTED = 1003,
    ZK_CLOSE_NO_STATUS = 1005,   /* never sent: the peer's close had no code */
    ZK_CLOSE_ABNORMAL = 1006,    /* never sent: the connection dropped */
    ZK_CLOSE_INVALID_DATA = 1007,
    ZK_CLOSE_POLICY = 1008,
    ZK_CLOSE_TOO_BIG = 1009,
    ZK_CLOSE_EXTENSION = 1010,
    ZK_CLOSE_INTERNAL = 1011
};

/* Roles: a client masks what it sends and refuses masked frames. */
enum { ZK_WS_SERVER = 0, ZK_WS_CLIENT = 1 };

/* Connection states, as zk_ws_state() reports them. */
enum {
    ZK_WS_OPEN = 0,       /* messages flow both ways */
    ZK_WS_CLOSE_SENT = 1, /* we sent close; the peer's data still arrives
                             and its pings are still answered */
    ZK_WS_CLOSED = 2      /* closes exchanged, or the peer failed: drop TCP */
};

/* What zk_ws_feed found. */
enum {
    ZK_WS_EV_NONE = 0, /* nothing complete yet: read more bytes */
    ZK_WS_EV_TEXT,     /* a whole text message (valid UTF-8) in data */
    ZK_WS_EV_BINARY,   /* a whole binary message in data */
    ZK_WS_EV_PING,     /* data: its payload; reply holds the pong */
    ZK_WS_EV_PONG,     /* data: its payload */
    ZK_WS_EV_CLOSE,    /* the peer closed: code (1005 if none), data: reason;
                          reply holds our answering close, if one is due */
    ZK_WS_EV_ERROR     /* the peer broke the protocol: code is the close code
                          sent in reply (1002, 1007, 1009), error says why */
};

/* The largest control frame: 2 header bytes, 4 mask bytes, 125 payload. */
#define ZK_WS_MAX_CONTROL_FRAME 131

typedef struct zk_ws_event {
    int type;            /* ZK_WS_EV_* */
    int code;            /* CLOSE and ERROR: a close code */
    zk_str data;         /* payload or close reason; valid until the next
                            zk_ws_feed or zk_ws_free on this engine, and only
                            while the input buffer is unchanged */
    const char *error;   /* ERROR: a static description */
    size_t reply_len;    /* > 0: send reply[0..reply_len) to the peer now,
                            before any later frame of yours */
    unsigned char reply[ZK_WS_MAX_CONTROL_FRAME];
} zk_ws_event;

typedef struct zk_ws_opts {
    int role;            /* ZK_WS_SERVER (default) or ZK_WS_CLIENT */
    size_t max_message;  /* 0: ZK_WS_MAX_MESSAGE; more closes with 1009 */
    uint64_t mask_seed;  /* client: seeds the masking-key generator; give it
                            random bits (the loop does). 0 is a fixed seed. */
} zk_ws_opts;

/* One WebSocket connection's protocol state, about 64 bytes; the buffer for
   fragmented or split messages is allocated only while one is in flight. */
typedef struct zk_ws {
    unsigned char *msg;       /* reassembly buffer, or NULL */
    size_t msg_len, msg_cap;
    size_t max_message;
    uint64_t frame_left;      /* payload bytes of the current frame to come */
    uint64_t rng;             /* masking-key generator (client) */
    uint32_t utf8_in;         /* UTF-8 validator state, incoming text */
    uint32_t utf8_out;        /* UTF-8 validator state, outgoing text */
    unsigned char mask[4];    /* current incoming frame's masking key */
    unsigned char role, state, flags, msg_op, send_op, mask_off;
} zk_ws;

/* Sets up ws; opts may be NULL (server, defaults). Allocates nothing. */
ZK_API void zk_ws_init(zk_ws *ws, const zk_ws_opts *opts);

/* Frees the reassembly buffer, if any. ws can be reused after zk_ws_init. */
ZK_API void zk_ws_free(zk_ws *ws);

/* Consumes bytes from in[0..len) until it completes one event (or needs more
   bytes) and returns how many it consumed; the event is in *ev (type
   ZK_WS_EV_NONE when none completed). Bytes it did not consume - at most a
   partial frame header or a partial control frame, so under 132 - must be
   passed again, followed by newer ones. in is modified: payloads are
   unmasked in place. Call in a loop until it returns 0 with no event.
   The result is the same however the input is split. After CLOSE or ERROR
   every later byte is consumed and ignored. */
ZK_API size_t zk_ws_feed(zk_ws *ws, void *in, size_t len, zk_ws_event *ev);

/* The bytes a frame with this payload takes (header, mask, payload). */
ZK_API size_t zk_ws_frame_size(const zk_ws *ws, size_t payload_len);

/* Encodes one frame (masked if ws is a client) into out. opcode is TEXT,
   BINARY, CONTINUATION, PING or PONG; fin = 0 starts or continues a
   fragmented message (then CONTINUATION frames, the last with fin = 1).
   Returns the bytes written, or ZK_ENOSPACE (cap < zk_ws_frame_size),
   ZK_EINVAL (bad opcode or sequence, control payload over 125 bytes, text
   that is not UTF-8) or ZK_ECLOSED (a close was sent).
       char out[64]; int n = zk_ws_send(&ws, out, 64, ZK_WS_TEXT, "hi", 2, 1); */
ZK_API int zk_ws_send(zk_ws *ws, void *out, size_t cap, int opcode,
                      const void *payload, size_t len, int fin);

/* Encodes a close frame with code (0 for none) and a UTF-8 reason of at
   most 123 bytes, and moves ws to CLOSE_SENT. Returns the bytes written,
   ZK_ENOSPACE, ZK_EINVAL (a code one may not send, such as 1005, or a bad
   reason) or ZK_ECLOSED (already sent). */
ZK_API int zk_ws_close(zk_ws *ws, void *out, size_t cap, int code,
                       const char *reason, size_t reason_len);

/* ZK_WS_OPEN, ZK_WS_CLOSE_SENT or ZK_WS_CLOSED. */
ZK_API int zk_ws_state(const zk_ws *ws);

/* Writes a frame header (2 to 14 bytes) for a payload of len bytes, with
   the masking key when mask is not NULL. Returns its size. Stateless. */
ZK_API size_t zk_ws_frame_header(unsigned char out[14], int opcode, int fin,
                                 uint64_t len, const unsigned char *mask);

/* XORs data with the masking key, starting at key byte (offset % 4). The
   same call unmasks. Works a vector or 8 bytes at a time. */
ZK_API void zk_ws_mask(void *data, size_t len, const unsigned char mask[4], size_t offset);

/* 1 if a close code may be sent or received on the wire, else 0. */
ZK_API int zk_ws_close_code_valid(int code);

/* 1 if s[0..len) is complete, valid UTF-8 (RFC 3629), else 0. */
ZK_API int zk_utf8_valid(const void *s, size_t len);
