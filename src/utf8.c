#include "base64.c"
/* >>utf8: incremental validation (RFC 3629) ------------------------------ */

/* A DFA with 9 states: 0 between characters, 8 rejected (sticky); the
   others wait for continuation bytes with the right ranges, so there are no
   overlongs (C0, C1, E0 80-9F, F0 80-8F), no surrogates (ED A0-BF) and
   nothing above U+10FFFF (F4 90+, F5-FF). It is a "shift DFA": the row of
   a byte packs the next state of every state, 6 bits each, so a step is
   one load and one shift, state = row[byte] >> state; states are kept as
   their bit offsets (6 * number). */
#define ZK__UTF8_ACCEPT 0u
#define ZK__UTF8_REJECT 48u

ZK__PRIVATE const uint64_t zk__utf8_dfa[256] = {
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull,
    0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull,
    0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull,
    0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull,
    0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull,
    0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull,
    0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull,
    0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c30c30c30c30ull, 0x30c30c30c30c30ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c18ull, 0x30c30c30c30c0cull, 0x30c30c30c30c0cull, 0x30c30c30c30c0cull,
    0x30c30c30c30c0cull, 0x30c30c30c30c0cull, 0x30c30c30c30c0cull, 0x30c30c30c30c0cull,
    0x30c30c30c30c0cull, 0x30c30c30c30c0cull, 0x30c30c30c30c0cull, 0x30c30c30c30c0cull,
    0x30c30c30c30c0cull, 0x30c30c30c30c1eull, 0x30c30c30c30c0cull, 0x30c30c30c30c0cull,
    0x30c30c30c30c24ull, 0x30c30c30c30c12ull, 0x30c30c30c30c12ull, 0x30c30c30c30c12ull,
    0x30c30c30c30c2aull, 0x30c30c30c30c30ull, 0x30c30c30c30c30ull, 0x30c30c30c30c30ull,
    0x30c30c30c30c30ull, 0x30c30c30c30c30ull, 0x30c30c30c30c30ull, 0x30c30c30c30c30ull,
    0x30c30c30c30c30ull, 0x30c30c30c30c30ull, 0x30c30c30c30c30ull, 0x30c30c30c30c30ull,
};

/* 1 if the 16 (or 8) bytes at p are all ASCII. */
ZK__PRIVATE int zk__ascii16(const unsigned char *p) {
#if ZK__SSE2
    return _mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(const void *)p)) == 0;
#else
    uint64_t a, b;
    memcpy(&a, p, 8);
    memcpy(&b, p + 8, 8);
    return ((a | b) & 0x8080808080808080ull) == 0;
#endif
}

/* 1 if the 64 bytes at p are all ASCII. */
ZK__PRIVATE int zk__ascii64(const unsigned char *p) {
#if ZK__SSE2
    __m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + 16));
    __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(p + 32));
    __m128i d = _mm_loadu_si128((const __m128i *)(const void *)(p + 48));
    return _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d))) == 0;
#else
    return zk__ascii16(p) && zk__ascii16(p + 16) && zk__ascii16(p + 32) && zk__ascii16(p + 48);
#endif
}

/* Runs the validator over s[0..len) from state; returns the new state.
   ZK__UTF8_REJECT once a byte cannot continue valid text (checked per 16
   bytes: rejection is sticky). ASCII runs are skipped 16 bytes at a time. */
ZK__PRIVATE uint32_t zk__utf8_run(uint32_t state, const unsigned char *s, size_t len) {
    uint64_t st = state;
    size_t i = 0;
    while (i < len) {
        size_t end;
        if (st == ZK__UTF8_ACCEPT && i + 16 <= len && zk__ascii16(s + i)) {
            i += 16;
            while (i + 64 <= len && zk__ascii64(s + i)) i += 64;
            continue;
        }
        end = i + 16 < len ? i + 16 : len;
        for (; i < end; i++) st = zk__utf8_dfa[s[i]] >> (st & 63);
        st &= 63;
        if (st == ZK__UTF8_REJECT) break;
    }
    return (uint32_t)st;
}

ZK_API int zk_utf8_valid(const void *s, size_t len) {
    return zk__utf8_run(ZK__UTF8_ACCEPT, (const unsigned char *)s, len) == ZK__UTF8_ACCEPT;
}
