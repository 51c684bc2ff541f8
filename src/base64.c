#include "sha1.c"
/* >>base64: RFC 4648 section 4, padded --------------------------------- */

ZK__PRIVATE const char zk__b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Writes 4 * ceil(len / 3) characters (no NUL) and returns that count. */
ZK__PRIVATE size_t zk__b64_encode(const unsigned char *in, size_t len, char *out) {
    size_t i, o = 0;
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = zk__b64_alphabet[v >> 18];
        out[o++] = zk__b64_alphabet[(v >> 12) & 63];
        out[o++] = zk__b64_alphabet[(v >> 6) & 63];
        out[o++] = zk__b64_alphabet[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = zk__b64_alphabet[v >> 18];
        out[o++] = zk__b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < len ? zk__b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    return o;
}

ZK__PRIVATE int zk__b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict decoding: padding required, no white space, unused bits zero.
   Returns the decoded length, or -1 if in is not canonical base64 or the
   result would not fit in cap. */
ZK__PRIVATE int zk__b64_decode(const char *in, size_t len, unsigned char *out, size_t cap) {
    size_t i, o = 0;
    if (len % 4 != 0) return -1;
    for (i = 0; i < len; i += 4) {
        int v[4], k, pad = 0;
        for (k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            if (c == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
            } else {
                if (pad) return -1; /* data after '=' */
                v[k] = zk__b64_value(c);
                if (v[k] < 0) return -1;
            }
        }
        if (o + (size_t)(3 - pad) > cap) return -1;
        if (pad == 2 && (v[1] & 15)) return -1;
        if (pad == 1 && (v[2] & 3)) return -1;
        out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
        if (pad < 2) out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
        if (pad < 1) out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
    }
    return (int)o;
}
