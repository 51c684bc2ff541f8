/* Unit tests for the bundled primitives and small helpers: SHA-1, base64,
   Sec-WebSocket-Accept, UTF-8 validation, percent-decoding, query strings,
   error names and case-insensitive comparison. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS for test.h's guard pages under -std=c99 */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"
#include "test.h"

/* ---- SHA-1 (RFC 3174, FIPS 180-4) ---- */

static void hex(const unsigned char *d, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Hashes data fed in pieces of `piece` bytes (0: all at once); hex digest. */
static void sha1_hex(const void *data, size_t len, size_t piece, char out[41]) {
    const unsigned char *p = (const unsigned char *)data;
    unsigned char digest[20];
    zk__sha1 s;
    zk__sha1_init(&s);
    if (piece == 0) {
        zk__sha1_update(&s, p, len);
    } else {
        size_t off;
        for (off = 0; off < len; off += piece)
            zk__sha1_update(&s, p + off, len - off < piece ? len - off : piece);
    }
    zk__sha1_final(&s, digest);
    hex(digest, 20, out);
}

#define CHECK_CSTR(got, exp) CHECK_STR(zk_str_c(got), exp)

typedef struct sha1_vector {
    const char *data; /* repeated `repeat` times */
    size_t repeat;
    const char *digest;
} sha1_vector;

/* RFC 3174 section 7.3: TEST1..TEST4. */
static const sha1_vector rfc3174[] = {
    {"abc", 1, "a9993e364706816aba3e25717850c26c9cd0d89d"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
     "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
    {"a", 1000000, "34aa973cd4c4daa4f61eeb2bdbad27316534016f"},
    {"0123456701234567012345670123456701234567012345670123456701234567", 10,
     "dea356a2cddd90c7a7ecedc5ebb563934f460452"},
};

static unsigned char *sha1_vector_bytes(const sha1_vector *v, size_t *len) {
    size_t n = strlen(v->data), i;
    unsigned char *buf = (unsigned char *)malloc(n * v->repeat);
    for (i = 0; i < v->repeat; i++) memcpy(buf + i * n, v->data, n);
    *len = n * v->repeat;
    return buf;
}

TEST(sha1_rfc3174_vectors) {
    size_t i;
    char got[41];
    for (i = 0; i < sizeof rfc3174 / sizeof rfc3174[0]; i++) {
        size_t len;
        unsigned char *buf = sha1_vector_bytes(&rfc3174[i], &len);
        sha1_hex(buf, len, 0, got);
        CHECK_CSTR(got, rfc3174[i].digest);
        free(buf);
    }
    /* The million 'a' as a million one-byte updates, as RFC 3174's test does. */
    {
        zk__sha1 s;
        unsigned char digest[20];
        for (zk__sha1_init(&s), i = 0; i < 1000000; i++) zk__sha1_update(&s, "a", 1);
        zk__sha1_final(&s, digest);
        hex(digest, 20, got);
        CHECK_CSTR(got, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    }
}

TEST(sha1_vectors_fed_in_pieces_of_every_size) {
    size_t i, piece;
    char got[41];
    for (i = 0; i < sizeof rfc3174 / sizeof rfc3174[0]; i++) {
        size_t len;
        unsigned char *buf = sha1_vector_bytes(&rfc3174[i], &len);
        for (piece = 1; piece <= 64; piece++) {
            sha1_hex(buf, len, piece, got);
            if (strcmp(got, rfc3174[i].digest) != 0) {
                printf("  vector %zu, pieces of %zu: %s\n", i, piece, got);
                CHECK_CSTR(got, rfc3174[i].digest);
            }
        }
        free(buf);
    }
}

/* Lengths around the 55/56-byte padding boundary and the 64-byte block.
   Digests from an independent implementation (Python's hashlib) over the
   bytes (i * 31 + 7) & 255. */
TEST(sha1_padding_boundaries) {
    static const struct { size_t len; const char *digest; } v[] = {
        {0, "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {1, "5d1be7e9dda1ee8896be5b7e34a85ee16452a7b4"},
        {55, "749bbefb28edc4638b28b2b9a9e03ab9a4032b90"},
        {56, "a5b6e9c29d201c774753ff8e7fb64931656f5e63"},
        {57, "eb0737bed5451790722b2df351829ce117e3d9dd"},
        {63, "d1a454409359fc372b4d22b3cea6488d6ba1be00"},
        {64, "39a0d8b645ad85f1f976731ed112ac9455e28b78"},
        {65, "d0c96e18890114a14716e9686528d2e3fdba8d9e"},
        {119, "562ecf8a430f8e1056e3619bae33628e9a1d0a4e"},
        {120, "353f6d2bf0e91aa91b74a2e0b3f297510f7d825f"},
        {127, "bebc42d2d3d1e5fb8ad8895c2dcef2d68a6c279a"},
        {128, "0060f2a7e34b6e4d459f560197ef93243732a400"},
        {129, "3a16082d1bf09b604907ec6908b9893ca3e937c0"},
        {1000, "414475341017ec91703435a6f290324818f983e9"},
    };
    unsigned char buf[1000];
    char got[41];
    size_t i, piece;
    for (i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)((i * 31 + 7) & 255);
    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        for (piece = 0; piece <= 64; piece++) {
            sha1_hex(buf, v[i].len, piece, got);
            if (strcmp(got, v[i].digest) != 0) {
                printf("  length %zu, pieces of %zu: %s\n", v[i].len, piece, got);
                CHECK_CSTR(got, v[i].digest);
            }
        }
    }
}

TEST(sha1_empty_updates_change_nothing) {
    zk__sha1 s;
    unsigned char digest[20];
    char got[41];
    zk__sha1_init(&s);
    zk__sha1_update(&s, "", 0);
    zk__sha1_update(&s, "ab", 2);
    zk__sha1_update(&s, "", 0);
    zk__sha1_update(&s, "c", 1);
    zk__sha1_final(&s, digest);
    hex(digest, 20, got);
    CHECK_CSTR(got, "a9993e364706816aba3e25717850c26c9cd0d89d");
}

/* ---- base64 (RFC 4648) ---- */

static const struct { const char *plain, *encoded; } rfc4648[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

TEST(base64_encode_rfc4648_vectors) {
    size_t i;
    for (i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
        char out[16];
        size_t n;
        memset(out, '#', sizeof out);
        n = zk__b64_encode((const unsigned char *)rfc4648[i].plain, strlen(rfc4648[i].plain), out);
        CHECK_MEM(out, n, rfc4648[i].encoded, strlen(rfc4648[i].encoded));
        CHECK(out[n] == '#'); /* no NUL, nothing past the count */
    }
}

TEST(base64_decode_rfc4648_vectors) {
    size_t i;
    for (i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
        unsigned char out[16];
        const char *e = rfc4648[i].encoded;
        int n = zk__b64_decode(e, strlen(e), out, sizeof out);
        CHECK_MEM(out, n, rfc4648[i].plain, strlen(rfc4648[i].plain));
    }
}

TEST(base64_round_trip_all_byte_values) {
    unsigned char in[256], back[256];
    char enc[344];
    size_t len;
    for (len = 0; len < 256; len++) in[len] = (unsigned char)(255 - len);
    for (len = 0; len <= 256; len++) {
        size_t n = zk__b64_encode(in, len, enc);
        CHECK_EQ_INT(n, (len + 2) / 3 * 4);
        CHECK_EQ_INT(zk__b64_decode(enc, n, back, sizeof back), len);
        CHECK(memcmp(in, back, len) == 0);
    }
    /* The two non-alphanumeric characters of the alphabet. */
    {
        unsigned char ff[3] = {0xFB, 0xEF, 0xFF};
        CHECK_EQ_INT(zk__b64_encode(ff, 3, enc), 4);
        CHECK_MEM(enc, 4, "++//", 4);
    }
}

TEST(base64_decode_refuses_non_canonical_input) {
    static const char *bad[] = {
        "Z", "Zg", "Zg=", "Zm9vY", "Zm9vYg", "Zm9vYg=", /* length not a multiple of 4 */
        "Zg=\n", " Zg=", "Zm9\t", "Zm9v Zm9", "Zm9vZm9v\r\n\r\n", /* white space */
        "Zm9v!mFy", "Zm9v-mFy", "Zm9v_mFy", "Zm9v\x80mFy", "Zm.v", /* bad characters */
        "Zg==Zm9v", "Zm8=Zm9v", "Z=g=", "Z===", "====", "=Zg=", "Zg=A", /* '=' misplaced */
        "Zh==", "Zv==", "Zm9=", "Zm/=", "Zm9vYh==", /* non-zero padding bits */
    };
    unsigned char out[16];
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (zk__b64_decode(bad[i], strlen(bad[i]), out, sizeof out) != -1) {
            printf("  accepted \"%s\"\n", bad[i]);
            CHECK(0);
        }
    }
    CHECK_EQ_INT(zk__b64_decode("Zm\0v", 4, out, sizeof out), -1); /* a NUL inside */
}

TEST(base64_decode_refuses_output_over_cap) {
    unsigned char out[6];
    CHECK_EQ_INT(zk__b64_decode("Zm9vYmFy", 8, out, 6), 6);
    CHECK_EQ_INT(zk__b64_decode("Zm9vYmFy", 8, out, 5), -1);
    CHECK_EQ_INT(zk__b64_decode("Zm9vYg==", 8, out, 4), 4);
    CHECK_EQ_INT(zk__b64_decode("Zm9vYg==", 8, out, 3), -1);
    CHECK_EQ_INT(zk__b64_decode("Zm8=", 4, out, 2), 2);
    CHECK_EQ_INT(zk__b64_decode("Zm8=", 4, out, 1), -1);
    CHECK_EQ_INT(zk__b64_decode("", 0, out, 0), 0);
}

/* ---- Sec-WebSocket-Accept ---- */

TEST(ws_accept_key_rfc6455_example) {
    char out[29];
    zk_str key = ZK_STR("dGhlIHNhbXBsZSBub25jZQ==");
    memset(out, '#', sizeof out);
    zk_ws_accept_key(key, out);
    CHECK_CSTR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK(out[28] == '\0');
    /* The key is hashed as sent: another key, another answer. */
    zk_ws_accept_key(zk_str_c("x3JJHMbDL1EzLkh9GBhXDw=="), out);
    CHECK_CSTR(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

/* ---- UTF-8 (RFC 3629) ---- */

typedef struct utf8_case {
    const char *bytes;
    size_t len; /* 0: strlen */
    int valid;
} utf8_case;

static const utf8_case utf8_cases[] = {
    /* valid */
    {"", 0, 1},
    {"hello, world", 0, 1},
    {"\0", 1, 1},
    {"\x7F", 0, 1},                                      /* U+007F, last 1-byte */
    {"\xC2\x80", 0, 1},                                  /* U+0080, first 2-byte */
    {"\xDF\xBF", 0, 1},                                  /* U+07FF, last 2-byte */
    {"\xE0\xA0\x80", 0, 1},                              /* U+0800, first 3-byte */
    {"\xED\x9F\xBF", 0, 1},                              /* U+D7FF, below surrogates */
    {"\xEE\x80\x80", 0, 1},                              /* U+E000, above surrogates */
    {"\xEF\xBF\xBD", 0, 1},                              /* U+FFFD */
    {"\xEF\xBF\xBE", 0, 1},                              /* U+FFFE: a noncharacter, still UTF-8 */
    {"\xEF\xBF\xBF", 0, 1},                              /* U+FFFF, last 3-byte */
    {"\xF0\x90\x80\x80", 0, 1},                          /* U+10000, first 4-byte */
    {"\xF1\x80\x80\x80", 0, 1},                          /* U+40000 */
    {"\xF3\xBF\xBF\xBF", 0, 1},                          /* U+FFFFF */
    {"\xF4\x80\x80\x80", 0, 1},                          /* U+100000 */
    {"\xF4\x8F\xBF\xBF", 0, 1},                          /* U+10FFFF, the last */
    {"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", 0, 1}, /* kosme */
    {"0123456789abcdef0123456789abcdef\xC3\xA9t\xC3\xA9", 0, 1},
    {"0123456789abcde\xC3\xA9" "0123456789abcdef", 0, 1},       /* straddles 16 */
    {"0123456789abcd\xF0\x9F\x98\x80" "0123456789abcdef", 0, 1}, /* straddles 16 */
    {"\xF0\x9F\x98\x80\xE2\x82\xAC\xC2\xA2$", 0, 1},
    /* lone continuation bytes */
    {"\x80", 0, 0},
    {"\xBF", 0, 0},
    {"a\x80" "b", 0, 0},
    {"\x80\xBF\x80\xBF", 0, 0},
    {"\xC2\x80\x80", 0, 0},
    {"0123456789abcdef0123456789abcdef\x80", 0, 0},
    /* overlongs */
    {"\xC0\x80", 0, 0},
    {"\xC0\xAF", 0, 0},
    {"\xC1\xBF", 0, 0},
    {"\xE0\x80\x80", 0, 0},
    {"\xE0\x80\xAF", 0, 0},
    {"\xE0\x9F\xBF", 0, 0},
    {"\xF0\x80\x80\x80", 0, 0},
    {"\xF0\x80\x80\xAF", 0, 0},
    {"\xF0\x8F\xBF\xBF", 0, 0},
    {"\xF8\x80\x80\x80\xAF", 0, 0},
    {"\xFC\x80\x80\x80\x80\xAF", 0, 0},
    /* UTF-16 surrogates, single and paired */
    {"\xED\xA0\x80", 0, 0},
    {"\xED\xAD\xBF", 0, 0},
    {"\xED\xAE\x80", 0, 0},
    {"\xED\xB0\x80", 0, 0},
    {"\xED\xBF\xBF", 0, 0},
    {"\xED\xA0\x80\xED\xB0\x80", 0, 0},
    {"\xED\xAF\xBF\xED\xBF\xBF", 0, 0},
    /* above U+10FFFF and bytes that never appear */
    {"\xF4\x90\x80\x80", 0, 0},
    {"\xF4\xBF\xBF\xBF", 0, 0},
    {"\xF5\x80\x80\x80", 0, 0},
    {"\xF7\xBF\xBF\xBF", 0, 0},
    {"\xF8\x88\x80\x80\x80", 0, 0},
    {"\xFB\xBF\xBF\xBF\xBF", 0, 0},
    {"\xFC\x84\x80\x80\x80\x80", 0, 0},
    {"\xFD\xBF\xBF\xBF\xBF\xBF", 0, 0},
    {"\xFE", 0, 0},
    {"\xFF", 0, 0},
    {"\xFE\xFE\xFF\xFF", 0, 0},
    /* truncated sequences, at the end and followed by something */
    {"\xC2", 0, 0},
    {"\xDF", 0, 0},
    {"\xE0\xA0", 0, 0},
    {"\xE1\x80", 0, 0},
    {"\xEF\xBF", 0, 0},
    {"\xF0\x90\x80", 0, 0},
    {"\xF4\x8F\xBF", 0, 0},
    {"\xF1", 0, 0},
    {"\xC2 ", 0, 0},
    {"\xE1\x80 ", 0, 0},
    {"\xF0\x90\x80 ", 0, 0},
    {"\xC2\xC2\x80", 0, 0},
    {"\xE1\x80\xC2\x80", 0, 0},
    {"\xC0 \xC1 \xC2 \xDF ", 0, 0},
    /* Markus Kuhn 3.4: all the incomplete sequences concatenated */
    {"\xC0\xE0\x80\xF0\x80\x80\xF8\x80\x80\x80\xFC\x80\x80\x80\x80"
     "\xDF\xEF\xBF\xF7\xBF\xBF\xFB\xBF\xBF\xBF\xFD\xBF\xBF\xBF\xBF", 0, 0},
    {"valid text then \xED\xA0\x80", 0, 0},
};

static size_t utf8_len(const utf8_case *c) { return c->len ? c->len : strlen(c->bytes); }

TEST(utf8_valid_and_invalid_sequences) {
    size_t i;
    for (i = 0; i < sizeof utf8_cases / sizeof utf8_cases[0]; i++) {
        const utf8_case *c = &utf8_cases[i];
        guard_buf g = guard_alloc(c->bytes, utf8_len(c));
        int got = zk_utf8_valid(g.data, utf8_len(c));
        if (got != c->valid) {
            printf("  case %zu: zk_utf8_valid gives %d, expected %d\n", i, got, c->valid);
            CHECK(0);
        }
        guard_free(&g);
    }
}

/* Every split in two and three pieces gives the whole's verdict, and a
   rejection is final. */
TEST(utf8_incremental_every_split) {
    size_t i, a, b;
    for (i = 0; i < sizeof utf8_cases / sizeof utf8_cases[0]; i++) {
        const utf8_case *c = &utf8_cases[i];
        const unsigned char *s = (const unsigned char *)c->bytes;
        size_t len = utf8_len(c);
        int bad = 0;
        for (a = 0; a <= len; a++) {
            for (b = a; b <= len; b++) {
                uint32_t st = zk__utf8_run(ZK__UTF8_ACCEPT, s, a);
                st = zk__utf8_run(st, s + a, b - a);
                st = zk__utf8_run(st, s + b, len - b);
                if ((st == ZK__UTF8_ACCEPT) != c->valid) bad = 1;
            }
        }
        {
            uint32_t st = ZK__UTF8_ACCEPT;
            for (a = 0; a < len; a++) {
                st = zk__utf8_run(st, s + a, 1);
                if (st == ZK__UTF8_REJECT) {
                    st = zk__utf8_run(st, (const unsigned char *)"abc", 3);
                    if (st != ZK__UTF8_REJECT) bad = 1;
                    break;
                }
            }
            if ((st == ZK__UTF8_ACCEPT) != c->valid) bad = 1;
        }
        if (bad) {
            printf("  case %zu: a split gives another verdict\n", i);
            CHECK(0);
        }
    }
}

/* A reference decoder, the RFC 3629 section 4 grammar written out. */
static int utf8_reference(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i], need, min, cp, k;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { need = 1; min = 0x80; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; min = 0x800; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; min = 0x10000; cp = c & 0x07; }
        else return 0;
        for (k = 1; k <= need; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += need + 1;
    }
    return 1;
}

TEST(utf8_matches_reference_decoder_exhaustively) {
    static const unsigned char tails[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F,
                                          0xA0, 0xBF, 0xC0, 0xC2, 0xE0, 0xF0, 0xFF};
    unsigned char s[4];
    unsigned a, b, c, d;
    long mismatches = 0;
    for (a = 0; a < 256; a++) { /* every 1- and 2-byte string */
        s[0] = (unsigned char)a;
        if (zk_utf8_valid(s, 1) != utf8_reference(s, 1)) mismatches++;
        for (b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            if (zk_utf8_valid(s, 2) != utf8_reference(s, 2)) mismatches++;
        }
    }
    for (a = 0xC0; a < 256; a++) { /* every 3-byte string with a lead byte */
        s[0] = (unsigned char)a;
        for (b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            for (c = 0; c < 256; c++) {
                s[2] = (unsigned char)c;
                if (zk_utf8_valid(s, 3) != utf8_reference(s, 3)) mismatches++;
            }
        }
    }
    for (a = 0xF0; a < 256; a++) { /* 4-byte strings: every second byte */
        s[0] = (unsigned char)a;
        for (b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            for (c = 0; c < sizeof tails; c++) {
                s[2] = tails[c];
                for (d = 0; d < sizeof tails; d++) {
                    s[3] = tails[d];
                    if (zk_utf8_valid(s, 4) != utf8_reference(s, 4)) mismatches++;
                }
            }
        }
    }
    CHECK_EQ_INT(mismatches, 0);
}

/* ---- percent-decoding and query strings ---- */

static int url_decode_c(const char *in, char *out, size_t cap, int plus) {
    return zk_url_decode(zk_str_c(in), out, cap, plus);
}

TEST(url_decode_escapes_and_plus) {
    char out[64];
    int n;
    n = url_decode_c("a%20b%2Fc", out, sizeof out, 0);
    CHECK_MEM(out, n, "a b/c", 5);
    n = url_decode_c("%41%42%43", out, sizeof out, 0);
    CHECK_MEM(out, n, "ABC", 3);
    n = url_decode_c("%c3%A9%C3%a9", out, sizeof out, 0); /* either case of hex digit */
    CHECK_MEM(out, n, "\xC3\xA9\xC3\xA9", 4);
    n = url_decode_c("a+b%2Bc", out, sizeof out, 1);
    CHECK_MEM(out, n, "a b+c", 5);
    n = url_decode_c("a+b%2Bc", out, sizeof out, 0);
    CHECK_MEM(out, n, "a+b+c", 5);
    n = url_decode_c("%00x", out, sizeof out, 0);
    CHECK_MEM(out, n, "\0x", 2);
    n = url_decode_c("%25%32%30", out, sizeof out, 0); /* decoded once, not twice */
    CHECK_MEM(out, n, "%20", 3);
    n = url_decode_c("", out, 0, 1);
    CHECK_EQ_INT(n, 0);
    n = url_decode_c("plain", out, 5, 1);
    CHECK_MEM(out, n, "plain", 5);
}

TEST(url_decode_refuses_bad_escapes) {
    static const char *bad[] = {"%", "%4", "%zz", "%4g", "%g4", "abc%", "abc%4", "%%41",
                                "a%2", "% 41", "%-1", "%+1", "%\xC3\xA9"};
    size_t i;
    char out[64];
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int n = url_decode_c(bad[i], out, sizeof out, 1);
        if (n != ZK_EINVAL) {
            printf("  \"%s\" gives %d\n", bad[i], n);
            CHECK_EQ_INT(n, ZK_EINVAL);
        }
    }
}

TEST(url_decode_enospace_for_every_small_cap) {
    const char *in = "x%20y+z%41"; /* decodes to "x y zA" */
    size_t cap;
    for (cap = 0; cap < 6; cap++) {
        char *out = (char *)malloc(cap ? cap : 1);
        CHECK_EQ_INT(url_decode_c(in, out, cap, 1), ZK_ENOSPACE);
        free(out);
    }
    {
        char *out = (char *)malloc(6);
        int n = url_decode_c(in, out, 6, 1);
        CHECK_MEM(out, n, "x y zA", 6);
        free(out);
    }
}

TEST(url_decode_in_place) {
    char buf[] = "hello%2C+world%21%21";
    zk_str in;
    int n;
    in.ptr = buf;
    in.len = strlen(buf);
    n = zk_url_decode(in, buf, sizeof buf, 1);
    CHECK_MEM(buf, n, "hello, world!!", 14);
}

static int query_get_c(const char *query, const char *name, char *out, size_t cap) {
    return zk_query_get(zk_str_c(query), name, out, cap);
}

TEST(query_get_finds_and_decodes) {
    char v[64];
    int n;
    n = query_get_c("a=1&b=x%20y", "b", v, sizeof v);
    CHECK_MEM(v, n, "x y", 3);
    n = query_get_c("a=1&b=x%20y", "a", v, sizeof v);
    CHECK_MEM(v, n, "1", 1);
    n = query_get_c("q=a+b%2Bc", "q", v, sizeof v);
    CHECK_MEM(v, n, "a b+c", 5);
    n = query_get_c("ab=1&a=2", "a", v, sizeof v); /* whole names, not prefixes */
    CHECK_MEM(v, n, "2", 1);
    n = query_get_c("a=1&ab=2", "ab", v, sizeof v);
    CHECK_MEM(v, n, "2", 1);
    n = query_get_c("x=1&x=2", "x", v, sizeof v); /* the first one */
    CHECK_MEM(v, n, "1", 1);
    n = query_get_c("a=1=2", "a", v, sizeof v); /* '=' in the value */
    CHECK_MEM(v, n, "1=2", 3);
    n = query_get_c("&&a=1&", "a", v, sizeof v);
    CHECK_MEM(v, n, "1", 1);
    n = query_get_c("a=", "a", v, sizeof v);
    CHECK_EQ_INT(n, 0);
    n = query_get_c("flag&a=1", "flag", v, sizeof v); /* no '=': empty value */
    CHECK_EQ_INT(n, 0);
    n = query_get_c("a=1&flag", "flag", v, sizeof v);
    CHECK_EQ_INT(n, 0);
    n = query_get_c("my%20key=v&x+y=w", "my key", v, sizeof v); /* encoded names */
    CHECK_MEM(v, n, "v", 1);
    n = query_get_c("my%20key=v&x+y=w", "x y", v, sizeof v);
    CHECK_MEM(v, n, "w", 1);
    n = query_get_c("%61=1", "a", v, sizeof v);
    CHECK_MEM(v, n, "1", 1);
}

TEST(query_get_errors) {
    char v[4];
    zk_str none = {NULL, 0};
    CHECK_EQ_INT(query_get_c("a=1&b=2", "c", v, sizeof v), ZK_ENOTFOUND);
    CHECK_EQ_INT(query_get_c("a=1&b=2", "", v, sizeof v), ZK_ENOTFOUND);
    CHECK_EQ_INT(query_get_c("", "a", v, sizeof v), ZK_ENOTFOUND);
    CHECK_EQ_INT(zk_query_get(none, "a", v, sizeof v), ZK_ENOTFOUND);
    CHECK_EQ_INT(query_get_c("=1", "a", v, sizeof v), ZK_ENOTFOUND);
    CHECK_EQ_INT(query_get_c("A=1", "a", v, sizeof v), ZK_ENOTFOUND); /* names are exact */
    CHECK_EQ_INT(query_get_c("a=%zz", "a", v, sizeof v), ZK_EINVAL);
    CHECK_EQ_INT(query_get_c("a=%4", "a", v, sizeof v), ZK_EINVAL);
    CHECK_EQ_INT(query_get_c("a=%", "a", v, sizeof v), ZK_EINVAL);
    CHECK_EQ_INT(query_get_c("a=12345", "a", v, sizeof v), ZK_ENOSPACE);
    CHECK_EQ_INT(query_get_c("a=1234", "a", v, sizeof v), 4);
    CHECK_MEM(v, 4, "1234", 4);
    /* A name that does not decode is skipped, not an error. */
    CHECK_EQ_INT(query_get_c("%zz=1&a=2", "a", v, sizeof v), 1);
    CHECK(v[0] == '2');
}

/* The doc promises to find name; nothing bounds its length. A 300-byte
   name is present but was not found (keys are decoded into a fixed buffer). */
TEST(query_get_long_name) {
    char query[400], name[301], v[8];
    int n;
    memset(name, 'k', 300);
    name[300] = '\0';
    memcpy(query, "a=0&", 4);
    memcpy(query + 4, name, 300);
    memcpy(query + 304, "=1", 3);
    n = query_get_c(query, name, v, sizeof v);
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK(v[0] == '1');
}

/* ---- errors and strings ---- */

/* The list as the header defines it, so new errors are covered too. */
static const struct { const char *name; int value; const char *text; } errors[] = {
#define X(name, value, text) {#name, value, text},
    ZK_ERRORS(X)
#undef X
};
#define ERROR_COUNT (sizeof errors / sizeof errors[0])

TEST(err_name_and_strerror_for_every_error) {
    size_t i;
    for (i = 0; i < ERROR_COUNT; i++) {
        CHECK_CSTR(zk_err_name(errors[i].value), errors[i].name);
        CHECK_CSTR(zk_strerror(errors[i].value), errors[i].text);
        CHECK(strlen(errors[i].text) > 0);
        CHECK(strncmp(errors[i].name, "ZK_", 3) == 0);
        CHECK(errors[i].value <= 0);
    }
    CHECK(ERROR_COUNT >= 12);
    CHECK_CSTR(zk_err_name(ZK_OK), "ZK_OK");
    CHECK_CSTR(zk_err_name(ZK_EAGAIN), "ZK_EAGAIN");
    CHECK_CSTR(zk_err_name(ZK_ENOMEM), "ZK_ENOMEM");
    CHECK_CSTR(zk_err_name(ZK_EINVAL), "ZK_EINVAL");
    CHECK_CSTR(zk_err_name(ZK_ENOSPACE), "ZK_ENOSPACE");
    CHECK_CSTR(zk_err_name(ZK_EHTTP), "ZK_EHTTP");
    CHECK_CSTR(zk_err_name(ZK_ETOOBIG), "ZK_ETOOBIG");
    CHECK_CSTR(zk_err_name(ZK_ENOTWS), "ZK_ENOTWS");
    CHECK_CSTR(zk_err_name(ZK_EHANDSHAKE), "ZK_EHANDSHAKE");
    CHECK_CSTR(zk_err_name(ZK_EPROTO), "ZK_EPROTO");
    CHECK_CSTR(zk_err_name(ZK_ECLOSED), "ZK_ECLOSED");
    CHECK_CSTR(zk_err_name(ZK_ENOTFOUND), "ZK_ENOTFOUND");
    CHECK_CSTR(zk_strerror(ZK_OK), "success");
    CHECK_CSTR(zk_strerror(ZK_EAGAIN), "incomplete input: call again with more bytes");
    CHECK_CSTR(zk_strerror(ZK_ENOSPACE), "output buffer too small");
    CHECK_CSTR(zk_strerror(ZK_ENOTFOUND), "not found");
}

TEST(err_values_are_distinct_and_unknown_values_named) {
    int lowest = 0;
    size_t i, j;
    for (i = 0; i < ERROR_COUNT; i++) {
        if (errors[i].value < lowest) lowest = errors[i].value;
        for (j = i + 1; j < ERROR_COUNT; j++) {
            CHECK(errors[i].value != errors[j].value);
            CHECK(strcmp(errors[i].name, errors[j].name) != 0);
            CHECK(strcmp(errors[i].text, errors[j].text) != 0);
        }
    }
    {
        const int unknown[] = {1, 2, 42, lowest - 1, lowest - 100, 0x7FFFFFFF, -0x7FFFFFFF - 1};
        for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
            CHECK_CSTR(zk_err_name(unknown[i]), "ZK_E?");
            CHECK_CSTR(zk_strerror(unknown[i]), "unknown error");
        }
    }
}

TEST(str_eq_nocase) {
    zk_str upgrade = ZK_STR("Upgrade");
    zk_str empty = {NULL, 0};
    zk_str with_nul = {"a\0b", 3};
    CHECK(zk_str_eq_nocase(upgrade, "upgrade"));
    CHECK(zk_str_eq_nocase(upgrade, "UPGRADE"));
    CHECK(zk_str_eq_nocase(upgrade, "Upgrade"));
    CHECK(!zk_str_eq_nocase(upgrade, "upgrades"));
    CHECK(!zk_str_eq_nocase(upgrade, "upgrad"));
    CHECK(!zk_str_eq_nocase(upgrade, ""));
    CHECK(!zk_str_eq_nocase(upgrade, "upgradf"));
    CHECK(zk_str_eq_nocase(empty, ""));
    CHECK(!zk_str_eq_nocase(empty, "a"));
    CHECK(!zk_str_eq_nocase(with_nul, "a"));
    /* Only ASCII letters fold: these pairs differ by 0x20 but are not letters. */
    CHECK(!zk_str_eq_nocase(zk_str_c("["), "{"));
    CHECK(!zk_str_eq_nocase(zk_str_c("@"), "`"));
    CHECK(!zk_str_eq_nocase(zk_str_c("^"), "~"));
    CHECK(!zk_str_eq_nocase(zk_str_c("\xC9"), "\xE9"));
    CHECK(zk_str_eq_nocase(zk_str_c("Sec-WebSocket-Key"), "sec-websocket-key"));
}

TEST(str_c) {
    zk_str s = zk_str_c("abc");
    zk_str n = zk_str_c(NULL);
    CHECK_STR(s, "abc");
    CHECK_EQ_INT(n.len, 0);
    CHECK(n.ptr != NULL);
}

/* The decoders on input that ends against an unmapped page. */
TEST(decoders_do_not_read_past_their_input) {
    static const char *inputs[] = {"Zm9vYmFy", "Zm9vYg==", "Zm8=", "a%20b+c", "%4", "%",
                                   "a=1&b", "b=%41", "\xE0\xA0\x80", "\xF0\x90\x80",
                                   "0123456789abcdef0123456789abcdef\xC3"};
    size_t i, k;
    int wrong = 0;
    for (i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        size_t len = strlen(inputs[i]);
        for (k = 0; k <= len; k++) {
            guard_buf g = guard_alloc(inputs[i], k);
            unsigned char out[64];
            zk_str view;
            view.ptr = (const char *)g.data;
            view.len = k;
            int n = zk__b64_decode(view.ptr, k, out, sizeof out);
            if (n != -1 && (n < 0 || (size_t)n > k)) wrong++;
            if (zk_utf8_valid(g.data, k) != utf8_reference(g.data, k)) wrong++;
            n = zk_url_decode(view, (char *)out, sizeof out, 1);
            if (n != ZK_EINVAL && (n < 0 || (size_t)n > k)) wrong++;
            n = zk_query_get(view, "b", (char *)out, sizeof out);
            if (n != ZK_EINVAL && n != ZK_ENOTFOUND && (n < 0 || (size_t)n > k)) wrong++;
            if (zk_str_eq_nocase(view, "zM9VyMfY") != (k == 8 && i == 0)) wrong++;
            guard_free(&g);
        }
    }
    CHECK_EQ_INT(wrong, 0); /* and an over-read would have crashed */
}

int main(void) {
    RUN(sha1_rfc3174_vectors);
    RUN(sha1_vectors_fed_in_pieces_of_every_size);
    RUN(sha1_padding_boundaries);
    RUN(sha1_empty_updates_change_nothing);
    RUN(base64_encode_rfc4648_vectors);
    RUN(base64_decode_rfc4648_vectors);
    RUN(base64_round_trip_all_byte_values);
    RUN(base64_decode_refuses_non_canonical_input);
    RUN(base64_decode_refuses_output_over_cap);
    RUN(ws_accept_key_rfc6455_example);
    RUN(utf8_valid_and_invalid_sequences);
    RUN(utf8_incremental_every_split);
    RUN(utf8_matches_reference_decoder_exhaustively);
    RUN(url_decode_escapes_and_plus);
    RUN(url_decode_refuses_bad_escapes);
    RUN(url_decode_enospace_for_every_small_cap);
    RUN(url_decode_in_place);
    RUN(query_get_finds_and_decodes);
    RUN(query_get_errors);
    RUN(query_get_long_name);
    RUN(err_name_and_strerror_for_every_error);
    RUN(err_values_are_distinct_and_unknown_values_named);
    RUN(str_eq_nocase);
    RUN(str_c);
    RUN(decoders_do_not_read_past_their_input);
    return test_summary();
}
