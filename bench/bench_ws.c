/* Protocol-engine benchmark: frame parsing and unmasking (zk_ws_feed), UTF-8
   validation, masking and frame encoding, each beside memcpy or a naive loop
   measured in the same run. Prints figures and asserts nothing.

   Method
   - Every figure is the best of 5 repetitions; a repetition processes about
     64 MiB (or 4M messages), timed with clock_gettime(CLOCK_MONOTONIC).
   - Decoding: a buffer of masked client frames (as a server reads them) is
     fed to a fresh server engine through the usual loop (zk_ws_feed until
     it needs more bytes); every message arrives whole, so each is parsed
     and unmasked in place. Unmasking is an XOR with the frame's key, so a
     second pass over the same buffer masks the payloads again: binary
     frames are fed repeatedly with no restoring, and every pass does the
     same work. Text frames cannot be fed that way (masked text is not
     UTF-8 and the engine would stop at the first frame), so before each
     text pass the buffer is restored from a pristine copy, outside the
     timed region.
   - Two working sets: 256 KiB of frames (fits in L2, like a socket read
     buffer just filled by recv) fed over and over, and 64 MiB of frames
     (far beyond L2). A 1 MiB message takes one frame of 1 MiB + 14 bytes
     as its smallest working set.
   - memcpy beside each: the same payload bytes copied in chunks of the
     message size, from a buffer of the same working set size to another.
   - GB/s counts payload bytes only (10^9 bytes per second). */
/* No feature macro here: zocket.h, included first, defines _GNU_SOURCE for
   its socket code when none is set, and that also declares clock_gettime.
   (_POSIX_C_SOURCE 199309L would hide getaddrinfo from it.) */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REPS 5
#define REP_BYTES (64u << 20)  /* payload per repetition */
#define REP_MESSAGES 4000000u  /* messages per repetition, small messages */
#define HOT_SET (256u << 10)
#define COLD_SET (64u << 20)

static uint64_t checksum; /* everything measured feeds it; printed at the end */
static volatile unsigned char opaque; /* 0, but the compiler cannot know */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "bench_ws: out of memory (%lu bytes)\n", (unsigned long)n);
        exit(1);
    }
    return p;
}

static const char *size_name(size_t n) {
    static char buf[4][16];
    static int i;
    char *s = buf[i++ & 3];
    if (n >= (1u << 20) && n % (1u << 20) == 0) sprintf(s, "%lu MiB", (unsigned long)(n >> 20));
    else if (n >= 1024 && n % 1024 == 0) sprintf(s, "%lu KiB", (unsigned long)(n >> 10));
    else sprintf(s, "%lu B", (unsigned long)n);
    return s;
}

/* ---- test data ---- */

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint32_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* Fills out[0..n) with text, cut on a character boundary and padded with
   spaces. style 0: English (ASCII). style 1: mixed scripts as people write
   them, runs of 4 to 19 words in English, Russian or Chinese, with an emoji
   now and then. style 2: the same words shuffled one by one, the worst case
   for a validator's branches. */
enum { TEXT_ASCII, TEXT_MIXED, TEXT_SHUFFLED };

static void make_text(unsigned char *out, size_t n, int style) {
    static const char *const words[3][6] = {
        {"the ", "quick ", "brown ", "fox ", "jumps ", "over "},
        {"\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 ", /* привет */
         "\xd0\xbc\xd0\xb8\xd1\x80 ",                             /* мир */
         "\xd0\xb8 ", "\xd0\xb2\xd1\x81\xd0\xb5\xd0\xbc ",     /* и всем */
         "\xd0\xb4\xd1\x80\xd1\x83\xd0\xb7\xd1\x8c\xd1\x8f\xd0\xbc, ", /* друзьям */
         "\xd1\x81\xd0\xbb\xd0\xbe\xd0\xb2\xd0\xbe "},        /* слово */
        {"\xe4\xbd\xa0\xe5\xa5\xbd", "\xe4\xb8\x96\xe7\x95\x8c", /* 你好 世界 */
         "\xe6\x88\x91\xe4\xbb\xac", "\xe7\x9a\x84",               /* 我们 的 */
         "\xe6\x9c\x8b\xe5\x8f\x8b", "\xe3\x80\x82"}};             /* 朋友 。 */
    static const char *const emoji[3] = {"\xf0\x9f\x99\x82 ", "\xf0\x9f\x9a\x80 ",
                                         "\xf0\x9f\x8e\x89 "};          /* 🙂 🚀 🎉 */
    size_t at = 0, run = 0;
    int script = 0;
    for (;;) {
        const char *w;
        size_t len;
        if (style == TEXT_ASCII) {
            w = words[0][rng() % 6];
        } else if (style == TEXT_SHUFFLED || rng() % 12 != 0) {
            if (style == TEXT_SHUFFLED) {
                script = (int)(rng() % 4);
            } else if (run == 0) {
                script = (int)(rng() % 3);
                run = 4 + rng() % 16;
            }
            if (run) run--;
            w = script == 3 ? emoji[rng() % 3] : words[script][rng() % 6];
        } else {
            w = emoji[rng() % 3];
        }
        len = strlen(w);
        if (at + len > n) break;
        memcpy(out + at, w, len);
        at += len;
    }
    memset(out + at, ' ', n - at);
}

/* Writes count masked client frames of size payload bytes each into out
   (kind: 0 binary, else 1 + a text style). Returns the bytes used. */
static size_t make_frames(unsigned char *out, size_t count, size_t size, int kind) {
    size_t i, at = 0;
    unsigned char *payload = (unsigned char *)xmalloc(size ? size : 1);
    for (i = 0; i < count; i++) {
        unsigned char key[4];
        uint32_t k = rng();
        memcpy(key, &k, 4);
        if (kind == 0) {
            size_t j;
            for (j = 0; j < size; j++) payload[j] = (unsigned char)(rng() >> 3);
        } else {
            make_text(payload, size, kind - 1);
        }
        at += zk_ws_frame_header(out + at, kind ? ZK_WS_TEXT : ZK_WS_BINARY, 1, size, key);
        memcpy(out + at, payload, size);
        zk_ws_mask(out + at, size, key, 0);
        at += size;
    }
    free(payload);
    return at;
}

/* ---- decoding ---- */

/* The bytes of a masked frame with size payload bytes. */
static size_t client_frame_size(size_t size) {
    return 2 + (size < 126 ? 0 : size <= 0xFFFF ? 2 : 8) + 4 + size;
}

/* One pass of a server's read loop over buf. Returns the messages seen. */
static size_t feed_all(unsigned char *buf, size_t len) {
    zk_ws ws;
    zk_ws_event ev;
    size_t off = 0, messages = 0;
    zk_ws_init(&ws, NULL);
    for (;;) {
        size_t used = zk_ws_feed(&ws, buf + off, len - off, &ev);
        off += used;
        if (ev.type == ZK_WS_EV_BINARY || ev.type == ZK_WS_EV_TEXT) {
            messages++;
            checksum += ev.data.len + (ev.data.len ? (unsigned char)ev.data.ptr[ev.data.len - 1] : 0);
        } else if (ev.type != ZK_WS_EV_NONE) {
            break; /* not expected: reported as a message count below */
        } else if (used == 0) {
            break;
        }
    }
    zk_ws_free(&ws);
    return messages;
}

typedef struct result {
    double seconds;   /* best repetition */
    double bytes;     /* payload bytes per repetition */
    double messages;  /* messages per repetition */
    int short_count;  /* the engine stopped early: a broken figure */
} result;

static void print_pair(const char *label, size_t size, const result *feed, const result *copy) {
    double gbs = feed->bytes / feed->seconds / 1e9, mgbs = copy->bytes / copy->seconds / 1e9;
    printf("  %-24s %8s  %7.2f GB/s  %9.2f M msg/s   memcpy %7.2f GB/s  ratio %.2f%s\n", label,
           size_name(size), gbs, feed->messages / feed->seconds / 1e6, mgbs, gbs / mgbs,
           feed->short_count ? "  (ENGINE STOPPED EARLY: figure invalid)" : "");
}

/* Decoding frames of size bytes, working set set_bytes; kind as make_frames. */
static void bench_feed(const char *label, size_t size, size_t set_bytes, int kind) {
    size_t frame = client_frame_size(size);
    size_t count = set_bytes / frame, len, passes, rep, p, i;
    unsigned char *buf, *pristine = NULL, *dst;
    result feed = {1e30, 0, 0, 0}, copy = {1e30, 0, 0, 0};
    double total;
    if (count == 0) count = 1;
    buf = (unsigned char *)xmalloc(count * frame);
    dst = (unsigned char *)xmalloc(count * frame);
    len = make_frames(buf, count, size, kind);
    if (kind) {
        pristine = (unsigned char *)xmalloc(len);
        memcpy(pristine, buf, len);
    }
    memset(dst, 1, count * frame);
    total = (double)count * (double)size;
    passes = (size_t)((double)REP_BYTES / total + 0.5);
    if (size < 1024 && (double)passes * (double)count > REP_MESSAGES)
        passes = REP_MESSAGES / count;
    if (passes == 0) passes = 1;

    for (rep = 0; rep < REPS; rep++) {
        double t = 0, t0;
        size_t messages = 0;
        for (p = 0; p < passes; p++) {
            if (pristine) memcpy(buf, pristine, len); /* untimed restore */
            t0 = now();
            messages += feed_all(buf, len);
            t += now() - t0;
        }
        if (messages != passes * count) feed.short_count = 1;
        if (t < feed.seconds) feed.seconds = t;
    }
    feed.bytes = total * (double)passes;
    feed.messages = (double)(count * passes);

    for (rep = 0; rep < REPS; rep++) {
        double t0 = now(), t;
        for (p = 0; p < passes; p++) {
            for (i = 0; i < count; i++) memcpy(dst + i * size, buf + i * frame, size);
            checksum += dst[(p * 7919) % (count * size + 1)];
        }
        t = now() - t0;
        if (t < copy.seconds) copy.seconds = t;
    }
    copy.bytes = feed.bytes;
    copy.messages = feed.messages;
    print_pair(label, size, &feed, &copy);
    free(buf);
    free(dst);
    free(pristine);
}

/* ---- UTF-8, masking, encoding ---- */

static void bench_utf8(const char *label, int style) {
    size_t n = 64u << 10, reps = REP_BYTES / n, r, i;
    unsigned char *buf = (unsigned char *)xmalloc(n);
    double best = 1e30;
    int valid = 1;
    size_t high = 0;
    char name[64];
    make_text(buf, n, style);
    for (i = 0; i < n; i++) high += buf[i] >= 0x80;
    for (r = 0; r < REPS; r++) {
        double t0 = now(), t;
        for (i = 0; i < reps; i++) {
            buf[i & 1023] ^= opaque; /* so no call can be hoisted out of the loop */
            valid &= zk_utf8_valid(buf, n);
        }
        t = now() - t0;
        if (t < best) best = t;
    }
    checksum += (uint64_t)valid;
    sprintf(name, "%s (%lu%% non-ASCII)", label, (unsigned long)(high * 100 / n));
    printf("  %-32s %8s  %7.2f GB/s%s\n", name, size_name(n), (double)n * (double)reps / best / 1e9,
           valid ? "" : "  (NOT VALID: figure invalid)");
    free(buf);
}

static void naive_mask(unsigned char *p, size_t len, const unsigned char key[4]) {
    size_t i;
    for (i = 0; i < len; i++) p[i] ^= key[i & 3];
}

static void bench_mask(void) {
    size_t n = 256u << 10, reps = REP_BYTES / n, r, i;
    unsigned char *buf = (unsigned char *)xmalloc(n), *dst = (unsigned char *)xmalloc(n);
    static const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
    double best_lib = 1e30, best_naive = 1e30, best_copy = 1e30;
    for (i = 0; i < n; i++) buf[i] = (unsigned char)rng();
    for (r = 0; r < REPS; r++) {
        double t0 = now(), t;
        for (i = 0; i < reps; i++) zk_ws_mask(buf, n, key, i & 3);
        t = now() - t0;
        if (t < best_lib) best_lib = t;
        t0 = now();
        for (i = 0; i < reps; i++) naive_mask(buf, n, key);
        t = now() - t0;
        if (t < best_naive) best_naive = t;
        t0 = now();
        for (i = 0; i < reps; i++) {
            memcpy(dst, buf, n);
            buf[i & 1023] ^= dst[(i * 31) & 1023];
        }
        t = now() - t0;
        if (t < best_copy) best_copy = t;
    }
    for (i = 0; i < n; i += 64) checksum += buf[i];
    printf("  %-24s %8s  %7.2f GB/s\n", "zk_ws_mask", size_name(n), (double)n * reps / best_lib / 1e9);
    printf("  %-24s %8s  %7.2f GB/s\n", "byte-at-a-time loop", size_name(n), (double)n * reps / best_naive / 1e9);
    printf("  %-24s %8s  %7.2f GB/s\n", "memcpy", size_name(n), (double)n * reps / best_copy / 1e9);
    free(buf);
    free(dst);
}

static void bench_send(int role, size_t size) {
    zk_ws ws;
    zk_ws_opts o;
    size_t count = size < 1024 ? REP_MESSAGES : REP_BYTES / size, r, i;
    unsigned char *payload = (unsigned char *)xmalloc(size), *out;
    size_t cap;
    double best = 1e30;
    memset(&o, 0, sizeof o);
    o.role = role;
    o.mask_seed = 12345;
    zk_ws_init(&ws, &o);
    cap = zk_ws_frame_size(&ws, size);
    out = (unsigned char *)xmalloc(cap);
    for (i = 0; i < size; i++) payload[i] = (unsigned char)rng();
    for (r = 0; r < REPS; r++) {
        double t0 = now(), t;
        for (i = 0; i < count; i++) {
            int n = zk_ws_send(&ws, out, cap, ZK_WS_BINARY, payload, size, 1);
            checksum += (uint64_t)n + out[cap - 1];
        }
        t = now() - t0;
        if (t < best) best = t;
    }
    printf("  %-24s %8s  %7.2f GB/s  %9.2f M msg/s\n",
           role == ZK_WS_CLIENT ? "client (masked)" : "server (unmasked)", size_name(size),
           (double)size * (double)count / best / 1e9, (double)count / best / 1e6);
    zk_ws_free(&ws);
    free(payload);
    free(out);
}

int main(void) {
    static const size_t sizes[4] = {16, 4096, 65536, 1u << 20};
    double start = now();
    size_t i;

    printf("zocket.h protocol engine benchmark (best of %d; GB/s = 10^9 payload bytes/s)\n\n", REPS);
    printf("Decoding masked binary frames (zk_ws_feed: parse + unmask in place),\n"
           "%s of frames (1 MiB: one frame), fed again and again:\n", size_name(HOT_SET));
    for (i = 0; i < 4; i++) bench_feed("binary", sizes[i], HOT_SET, 0);
    printf("\nDecoding masked binary frames, %s of frames:\n", size_name(COLD_SET));
    for (i = 0; i < 4; i++) bench_feed("binary", sizes[i], COLD_SET, 0);
    printf("\nDecoding masked text frames (parse + unmask + UTF-8 check), %s of frames:\n",
           size_name(HOT_SET));
    bench_feed("text, English", 4096, HOT_SET, 1 + TEXT_ASCII);
    bench_feed("text, English", 65536, HOT_SET, 1 + TEXT_ASCII);
    bench_feed("text, mixed scripts", 4096, HOT_SET, 1 + TEXT_MIXED);
    bench_feed("text, mixed scripts", 65536, HOT_SET, 1 + TEXT_MIXED);

    printf("\nUTF-8 validation alone (zk_utf8_valid):\n");
    bench_utf8("English", TEXT_ASCII);
    bench_utf8("mixed scripts", TEXT_MIXED);
    bench_utf8("shuffled scripts", TEXT_SHUFFLED);

    printf("\nMasking alone:\n");
    bench_mask();

    printf("\nEncoding binary frames (zk_ws_send, into one reused buffer):\n");
    bench_send(ZK_WS_SERVER, 16);
    bench_send(ZK_WS_CLIENT, 16);
    bench_send(ZK_WS_SERVER, 4096);
    bench_send(ZK_WS_CLIENT, 4096);

    printf("\nchecksum %016llx, %.1f s\n", (unsigned long long)checksum, now() - start);
    return 0;
}
