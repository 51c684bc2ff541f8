#include "base64.c"
/* >>utf8: incremental validation (RFC 3629) ------------------------------ */

/* A small DFA: bytes fall in 12 classes; 9 states, 0 = between characters,
   8 = rejected (sticky). No surrogates (ED A0-BF), no overlongs (C0, C1,
   E0 80-9F, F0 80-8F), nothing above U+10FFFF (F4 90+, F5-FF). */
#define ZK__UTF8_ACCEPT 0u
#define ZK__UTF8_REJECT 8u

ZK__PRIVATE const unsigned char zk__utf8_class[256] = {
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
    3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,
    4,4,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,
    6,7,7,7,7,7,7,7,7,7,7,7,7,8,7,7,9,10,10,10,11,4,4,4,4,4,4,4,4,4,4,4,
};

ZK__PRIVATE const unsigned char zk__utf8_next[9 * 12] = {
    0,8,8,8,8,1,4,2,5,6,3,7,  /* state 0 */
    8,0,0,0,8,8,8,8,8,8,8,8,  /* state 1 */
    8,1,1,1,8,8,8,8,8,8,8,8,  /* state 2 */
    8,2,2,2,8,8,8,8,8,8,8,8,  /* state 3 */
    8,8,8,1,8,8,8,8,8,8,8,8,  /* state 4 */
    8,1,1,8,8,8,8,8,8,8,8,8,  /* state 5 */
    8,8,2,2,8,8,8,8,8,8,8,8,  /* state 6 */
    8,2,8,8,8,8,8,8,8,8,8,8,  /* state 7 */
    8,8,8,8,8,8,8,8,8,8,8,8,  /* state 8 */
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

/* Runs the validator over s[0..len) from state; returns the new state.
   ZK__UTF8_REJECT as soon as a byte cannot continue valid text. */
ZK__PRIVATE uint32_t zk__utf8_run(uint32_t state, const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        if (state == ZK__UTF8_ACCEPT) {
            while (i + 16 <= len && zk__ascii16(s + i)) i += 16;
            while (i < len && s[i] < 0x80) i++;
            if (i == len) break;
        }
        state = zk__utf8_next[state * 12 + zk__utf8_class[s[i]]];
        if (state == ZK__UTF8_REJECT) return state;
        i++;
    }
    return state;
}

ZK_API int zk_utf8_valid(const void *s, size_t len) {
    return zk__utf8_run(ZK__UTF8_ACCEPT, (const unsigned char *)s, len) == ZK__UTF8_ACCEPT;
}
