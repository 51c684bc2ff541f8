#include "http.c"
/* >>ws implementation ---------------------------------------------------- */

/* zk_ws.flags */
#define ZK__WS_IN_FRAME 1u   /* inside a data frame's payload */
#define ZK__WS_FIN 2u        /* the current data frame ends its message */
#define ZK__WS_IN_MESSAGE 4u /* a fragmented message is being reassembled */
#define ZK__WS_RELEASE 8u    /* msg was handed out: drop it at the next feed */

ZK_API void zk_ws_init(zk_ws *ws, const zk_ws_opts *opts) {
    memset(ws, 0, sizeof *ws);
    ws->role = (unsigned char)(opts && opts->role == ZK_WS_CLIENT ? ZK_WS_CLIENT : ZK_WS_SERVER);
    ws->max_message = opts && opts->max_message ? opts->max_message : (size_t)ZK_WS_MAX_MESSAGE;
    ws->rng = opts ? opts->mask_seed : 0;
    ws->state = ZK_WS_OPEN;
}

ZK_API void zk_ws_free(zk_ws *ws) {
    if (ws->msg) ZK_FREE(ws->msg);
    ws->msg = NULL;
    ws->msg_len = ws->msg_cap = 0;
    ws->flags &= (unsigned char)~(ZK__WS_IN_MESSAGE | ZK__WS_IN_FRAME | ZK__WS_RELEASE);
}

ZK_API int zk_ws_state(const zk_ws *ws) { return ws->state; }

ZK_API int zk_ws_close_code_valid(int code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* splitmix64: masking keys for client frames. */
ZK__PRIVATE uint32_t zk__ws_next_key(zk_ws *ws) {
    uint64_t z = (ws->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 16);
}

ZK_API void zk_ws_mask(void *data, size_t len, const unsigned char mask[4], size_t offset) {
    unsigned char *p = (unsigned char *)data, k[8];
    uint64_t k8;
    uint32_t k4;
    size_t i;
    for (i = 0; i < 4; i++) k[i] = k[i + 4] = mask[(offset + i) & 3];
    memcpy(&k4, k, 4);
#if ZK__SSE2
    if (len >= 64) {
        __m128i km = _mm_set1_epi32((int)k4);
        for (; len >= 64; p += 64, len -= 64) {
            __m128i a = _mm_loadu_si128((const __m128i *)(void *)p);
            __m128i b = _mm_loadu_si128((const __m128i *)(void *)(p + 16));
            __m128i c = _mm_loadu_si128((const __m128i *)(void *)(p + 32));
            __m128i d = _mm_loadu_si128((const __m128i *)(void *)(p + 48));
            _mm_storeu_si128((__m128i *)(void *)p, _mm_xor_si128(a, km));
            _mm_storeu_si128((__m128i *)(void *)(p + 16), _mm_xor_si128(b, km));
            _mm_storeu_si128((__m128i *)(void *)(p + 32), _mm_xor_si128(c, km));
            _mm_storeu_si128((__m128i *)(void *)(p + 48), _mm_xor_si128(d, km));
        }
    }
#endif
    memcpy(&k8, k, 8);
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= k8;
        memcpy(p, &v, 8);
    }
    for (i = 0; i < len; i++) p[i] ^= k[i];
}

/* dst = src XOR mask, in one pass: the reassembly path copies and unmasks. */
ZK__PRIVATE void zk__ws_mask_copy(unsigned char *dst, const unsigned char *src, size_t len,
                                  const unsigned char mask[4], size_t offset) {
    unsigned char k[16];
    uint64_t k8;
    size_t i;
    for (i = 0; i < 16; i++) k[i] = mask[(offset + i) & 3];
#if ZK__SSE2
    if (len >= 32) {
        __m128i km = _mm_loadu_si128((const __m128i *)(const void *)k);
        for (; len >= 32; src += 32, dst += 32, len -= 32) {
            __m128i a = _mm_loadu_si128((const __m128i *)(const void *)src);
            __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(src + 16));
            _mm_storeu_si128((__m128i *)(void *)dst, _mm_xor_si128(a, km));
            _mm_storeu_si128((__m128i *)(void *)(dst + 16), _mm_xor_si128(b, km));
        }
    }
#endif
    memcpy(&k8, k, 8);
    for (; len >= 8; src += 8, dst += 8, len -= 8) {
        uint64_t v;
        memcpy(&v, src, 8);
        v ^= k8;
        memcpy(dst, &v, 8);
    }
    for (i = 0; i < len; i++) dst[i] = (unsigned char)(src[i] ^ k[i]);
}

ZK_API size_t zk_ws_frame_header(unsigned char out[14], int opcode, int fin, uint64_t len,
                                 const unsigned char *mask) {
    size_t n = 2;
    out[0] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (len < 126) {
        out[1] = (unsigned char)len;
    } else if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        n = 4;
    } else {
        int i;
        out[1] = 127;
        for (i = 0; i < 8; i++) out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        out[1] |= 0x80;
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

ZK_API size_t zk_ws_frame_size(const zk_ws *ws, size_t payload_len) {
    size_t header = payload_len < 126 ? 2 : payload_len <= 0xFFFF ? 4 : 10;
    return header + (ws->role == ZK_WS_CLIENT ? 4 : 0) + payload_len;
}

/* Writes a whole frame; the caller checked cap >= zk_ws_frame_size. */
ZK__PRIVATE size_t zk__ws_frame(zk_ws *ws, unsigned char *out, int opcode, int fin,
                                const void *payload, size_t len) {
    size_t n;
    if (ws->role == ZK_WS_CLIENT) {
        uint32_t key = zk__ws_next_key(ws);
        unsigned char mask[4];
        memcpy(mask, &key, 4);
        n = zk_ws_frame_header(out, opcode, fin, len, mask);
        zk__ws_mask_copy(out + n, (const unsigned char *)payload, len, mask, 0);
    } else {
        n = zk_ws_frame_header(out, opcode, fin, len, NULL);
        if (len) memcpy(out + n, payload, len);
    }
    return n + len;
}

/* A close frame with code (none when 0) and reason, into a control buffer. */
ZK__PRIVATE size_t zk__ws_close_frame(zk_ws *ws, unsigned char *out, int code,
                                      const char *reason, size_t reason_len) {
    unsigned char payload[125];
    size_t n = 0;
    if (code) {
        payload[0] = (unsigned char)(code >> 8);
        payload[1] = (unsigned char)code;
        n = 2 + ZK__MIN(reason_len, (size_t)123);
        if (n > 2) memcpy(payload + 2, reason, n - 2);
    }
    return zk__ws_frame(ws, out, ZK_WS_CLOSE, 1, payload, n);
}

ZK_API int zk_ws_send(zk_ws *ws, void *out, size_t cap, int opcode,
                      const void *payload, size_t len, int fin) {
    uint32_t utf8 = ws->utf8_out;
    int text;
    size_t size;
    if (ws->state != ZK_WS_OPEN) return ZK_ECLOSED;
    if (!payload && len) return ZK_EINVAL;
    switch (opcode) {
    case ZK_WS_PING:
    case ZK_WS_PONG:
        if (len > 125 || !fin) return ZK_EINVAL;
        break;
    case ZK_WS_TEXT:
    case ZK_WS_BINARY:
        if (ws->send_op) return ZK_EINVAL; /* a fragmented message is open */
        utf8 = ZK__UTF8_ACCEPT;
        break;
    case ZK_WS_CONTINUATION:
        if (!ws->send_op) return ZK_EINVAL;
        break;
    default:
        return ZK_EINVAL;
    }
    text = opcode == ZK_WS_TEXT || (opcode == ZK_WS_CONTINUATION && ws->send_op == ZK_WS_TEXT);
    if (text) {
        utf8 = zk__utf8_run(utf8, (const unsigned char *)payload, len);
        if (utf8 == ZK__UTF8_REJECT || (fin && utf8 != ZK__UTF8_ACCEPT)) return ZK_EINVAL;
    }
    size = zk_ws_frame_size(ws, len);
    if (size > 0x7FFFFFFF || size < len) return ZK_EINVAL;
    if (cap < size) return ZK_ENOSPACE;
    zk__ws_frame(ws, (unsigned char *)out, opcode, fin, payload, len);
    if (!(opcode & 0x8)) {
        if (text) ws->utf8_out = utf8;
        if (fin) ws->send_op = 0;
        else if (opcode != ZK_WS_CONTINUATION) ws->send_op = (unsigned char)opcode;
    }
    return (int)size;
}

ZK_API int zk_ws_close(zk_ws *ws, void *out, size_t cap, int code,
                       const char *reason, size_t reason_len) {
    if (ws->state != ZK_WS_OPEN) return ZK_ECLOSED;
    if (code == 0 ? reason_len != 0 : !zk_ws_close_code_valid(code)) return ZK_EINVAL;
    if (reason_len > 123 || (reason_len && !reason) || !zk_utf8_valid(reason, reason_len))
        return ZK_EINVAL;
    if (cap < zk_ws_frame_size(ws, code ? 2 + reason_len : 0)) return ZK_ENOSPACE;
    ws->state = ZK_WS_CLOSE_SENT;
    return (int)zk__ws_close_frame(ws, (unsigned char *)out, code, reason, reason_len);
}

/* Nothing is read after a close: a half-received message is dropped now. */
ZK__PRIVATE void zk__ws_closed(zk_ws *ws) {
    ws->state = ZK_WS_CLOSED;
    zk_ws_free(ws);
}

/* The peer broke the protocol: answer with a close (unless one was sent
   already), stop, and swallow what is left. */
ZK__PRIVATE size_t zk__ws_fail(zk_ws *ws, zk_ws_event *ev, int code, const char *error, size_t len) {
    ev->type = ZK_WS_EV_ERROR;
    ev->code = code;
    ev->error = error;
    if (ws->state == ZK_WS_OPEN)
        ev->reply_len = zk__ws_close_frame(ws, ev->reply, code, error, strlen(error));
    zk__ws_closed(ws);
    return len;
}

/* A complete control frame whose payload p[0..n) is already unmasked. */
ZK__PRIVATE void zk__ws_control(zk_ws *ws, zk_ws_event *ev, int opcode, const char *p, size_t n) {
    ev->data.ptr = p;
    ev->data.len = n;
    if (opcode == ZK_WS_PING) {
        ev->type = ZK_WS_EV_PING;
        /* RFC 6455 5.5.2: answered unless a close was received (we only get
           here before that), so also after we sent ours */
        ev->reply_len = zk__ws_frame(ws, ev->reply, ZK_WS_PONG, 1, p, n);
        return;
    }
    if (opcode == ZK_WS_PONG) {
        ev->type = ZK_WS_EV_PONG;
        return;
    }
    /* close */
    ev->data.len = 0;
    if (n == 1) {
        zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload", 0);
        return;
    }
    ev->code = ZK_CLOSE_NO_STATUS;
    if (n >= 2) {
        ev->code = (unsigned char)p[0] << 8 | (unsigned char)p[1];
        if (!zk_ws_close_code_valid(ev->code)) {
            zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "invalid close code", 0);
            return;
        }
        if (!zk_utf8_valid(p + 2, n - 2)) {
            zk__ws_fail(ws, ev, ZK_CLOSE_INVALID_DATA, "close reason is not UTF-8", 0);
            return;
        }
        ev->data.ptr = p + 2;
        ev->data.len = n - 2;
    }
    ev->type = ZK_WS_EV_CLOSE;
    if (ws->state == ZK_WS_OPEN)
        ev->reply_len = zk__ws_close_frame(ws, ev->reply, ev->code == ZK_CLOSE_NO_STATUS ? 0 : ev->code,
                                           NULL, 0);
    zk__ws_closed(ws);
}

/* Makes room for n more bytes of the message being reassembled. The buffer
   doubles, so it never holds more than twice what arrived (a peer that
   declares a huge frame and sends little gets little) and tiny fragments
   cost amortised O(1); the final frame's end, when known, is the exact size. */
ZK__PRIVATE int zk__ws_reserve(zk_ws *ws, size_t n) {
    size_t need = ws->msg_len + n, cap, frame_end;
    unsigned char *p;
    if (need <= ws->msg_cap) return 0;
    frame_end = ws->msg_len + (size_t)ws->frame_left;
    cap = ws->msg_cap ? ws->msg_cap * 2 : 4096;
    if ((ws->flags & ZK__WS_FIN) && cap > frame_end) cap = frame_end;
    if (cap > ws->max_message) cap = ws->max_message;
    if (cap < need) cap = need;
    p = (unsigned char *)ZK_REALLOC(ws->msg, cap);
    if (!p) return ZK_ENOMEM;
    ws->msg = p;
    ws->msg_cap = cap;
    return 0;
}

ZK_API size_t zk_ws_feed(zk_ws *ws, void *in, size_t len, zk_ws_event *ev) {
    unsigned char *p = (unsigned char *)in;
    size_t used = 0, n;

    ev->type = ZK_WS_EV_NONE;
    ev->code = 0;
    ev->data.ptr = "";
    ev->data.len = 0;
    ev->error = NULL;
    ev->reply_len = 0;
    if (ws->flags & ZK__WS_RELEASE) {
        ws->flags &= (unsigned char)~ZK__WS_RELEASE;
        ws->msg_len = 0;
        if (ws->msg) ZK_FREE(ws->msg);
        ws->msg = NULL;
        ws->msg_cap = 0;
    }
    if (ws->state == ZK_WS_CLOSED) return len;

    if (!(ws->flags & ZK__WS_IN_FRAME)) {
        unsigned b0, b1, opcode, fin, masked;
        size_t header;
        uint64_t plen;
        if (len < 2) return 0;
        b0 = p[0];
        b1 = p[1];
        fin = b0 >> 7;
        opcode = b0 & 0x0F;
        masked = b1 >> 7;
        plen = b1 & 0x7F;
        if (b0 & 0x70) return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "reserved bits set", len);
        if ((opcode > 2 && opcode < 8) || opcode > 10)
            return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "reserved opcode", len);
        if (masked != (ws->role == ZK_WS_SERVER ? 1u : 0u))
            return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR,
                               masked ? "masked frame from a server" : "unmasked frame from a client", len);
        if (opcode & 0x8) {
            if (!fin) return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "fragmented control frame", len);
            if (plen > 125) return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "control frame over 125 bytes", len);
        } else if (opcode == ZK_WS_CONTINUATION) {
            if (!(ws->flags & ZK__WS_IN_MESSAGE))
                return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "continuation without a message", len);
        } else if (ws->flags & ZK__WS_IN_MESSAGE) {
            return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one", len);
        }
        header = 2 + (plen == 126 ? 2 : plen == 127 ? 8 : 0) + (masked ? 4 : 0);
        if (len < header) return 0;
        if (plen == 126) {
            plen = (uint64_t)p[2] << 8 | p[3];
        } else if (plen == 127) {
            int i;
            if (p[2] & 0x80) return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "64-bit length with the high bit set", len);
            for (plen = 0, i = 2; i < 10; i++) plen = plen << 8 | p[i];
        }
        if (masked) memcpy(ws->mask, p + header - 4, 4);

        if (opcode & 0x8) {
            /* control frames are handled whole: wait until all of it is here */
            if (len - header < plen) return 0;
            if (masked) zk_ws_mask(p + header, (size_t)plen, ws->mask, 0);
            zk__ws_control(ws, ev, (int)opcode, (const char *)p + header, (size_t)plen);
            return ev->type == ZK_WS_EV_ERROR ? len : header + (size_t)plen;
        }
        if (plen > (uint64_t)ws->max_message ||
            (opcode == ZK_WS_CONTINUATION && plen > (uint64_t)(ws->max_message - ws->msg_len)))
            return zk__ws_fail(ws, ev, ZK_CLOSE_TOO_BIG, "message too big", len);

        if (fin && opcode != ZK_WS_CONTINUATION && len - header >= plen) {
            /* the common case: a whole one-frame message, used in place */
            unsigned char *payload = p + header;
            if (masked) zk_ws_mask(payload, (size_t)plen, ws->mask, 0);
            if (opcode == ZK_WS_TEXT && !zk_utf8_valid(payload, (size_t)plen))
                return zk__ws_fail(ws, ev, ZK_CLOSE_INVALID_DATA, "text is not valid UTF-8", len);
            ev->type = opcode == ZK_WS_TEXT ? ZK_WS_EV_TEXT : ZK_WS_EV_BINARY;
            ev->data.ptr = (const char *)payload;
            ev->data.len = (size_t)plen;
            return header + (size_t)plen;
        }
        /* otherwise the payload is copied into the message buffer as it comes */
        if (opcode != ZK_WS_CONTINUATION) {
            ws->msg_op = (unsigned char)opcode;
            ws->msg_len = 0;
            ws->utf8_in = ZK__UTF8_ACCEPT;
            ws->flags |= ZK__WS_IN_MESSAGE;
        }
        ws->flags = (unsigned char)((ws->flags & ~ZK__WS_FIN) | ZK__WS_IN_FRAME | (fin ? ZK__WS_FIN : 0));
        ws->frame_left = plen;
        ws->mask_off = 0;
        p += header;
        len -= header;
        used = header;
    }

    n = (size_t)ZK__MIN((uint64_t)len, ws->frame_left);
    if (n) {
        unsigned char *dst;
        if (zk__ws_reserve(ws, n) < 0)
            return used + zk__ws_fail(ws, ev, ZK_CLOSE_TOO_BIG, "out of memory for the message", len);
        dst = ws->msg + ws->msg_len;
        if (ws->role == ZK_WS_SERVER) zk__ws_mask_copy(dst, p, n, ws->mask, ws->mask_off);
        else memcpy(dst, p, n);
        ws->mask_off = (unsigned char)((ws->mask_off + n) & 3);
        if (ws->msg_op == ZK_WS_TEXT) {
            ws->utf8_in = zk__utf8_run(ws->utf8_in, dst, n);
            if (ws->utf8_in == ZK__UTF8_REJECT)
                return used + zk__ws_fail(ws, ev, ZK_CLOSE_INVALID_DATA, "text is not valid UTF-8", len);
        }
        ws->msg_len += n;
        ws->frame_left -= n;
        used += n;
    }
    if (ws->frame_left == 0) {
        ws->flags &= (unsigned char)~ZK__WS_IN_FRAME;
        if (ws->flags & ZK__WS_FIN) {
            if (ws->msg_op == ZK_WS_TEXT && ws->utf8_in != ZK__UTF8_ACCEPT)
                return used + zk__ws_fail(ws, ev, ZK_CLOSE_INVALID_DATA, "text is not valid UTF-8", len - n);
            ws->flags = (unsigned char)((ws->flags & ~ZK__WS_IN_MESSAGE) | ZK__WS_RELEASE);
            ev->type = ws->msg_op == ZK_WS_TEXT ? ZK_WS_EV_TEXT : ZK_WS_EV_BINARY;
            ev->data.ptr = ws->msg ? (const char *)ws->msg : "";
            ev->data.len = ws->msg_len;
        }
    }
    return used;
}
