/* The peer of bench/bench_codec.c: msgpack-c (Debian's libmsgpack-dev)
   decoding and encoding the same MessagePack bytes.

   msgpackc_codec DIR NAME...   reads DIR/NAME.mp for each NAME

   decode = msgpack_unpack_next into one msgpack_unpacked (it makes a fresh
   zone per message, as its documented use does); encode =
   msgpack_pack_object of the decoded object into a cleared sbuffer. Best of
   5 repetitions of 0.3 s each, CLOCK_MONOTONIC. Prints one line per
   payload: name, bytes, decode ns, encode ns. Checks that the encoding is
   the same length as the input (both write the smallest forms). */
#define _GNU_SOURCE
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int a;
    if (argc < 3) {
        fprintf(stderr, "usage: %s DIR NAME...\n", argv[0]);
        return 2;
    }
    for (a = 2; a < argc; a++) {
        char path[512], *buf;
        long len;
        FILE *f;
        msgpack_unpacked un;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        double best_dec = 1e30, best_enc = 1e30;
        int r;
        size_t sink = 0;
        snprintf(path, sizeof path, "%s/%s.mp", argv[1], argv[a]);
        f = fopen(path, "rb");
        if (!f) return 1;
        fseek(f, 0, SEEK_END);
        len = ftell(f);
        fseek(f, 0, SEEK_SET);
        buf = (char *)malloc((size_t)len);
        if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) return 1;
        fclose(f);
        msgpack_unpacked_init(&un);
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        for (r = 0; r < 5; r++) {
            double t0 = now_s(), t;
            long n = 0;
            do {
                int i;
                for (i = 0; i < 64; i++) {
                    size_t off = 0;
                    if (msgpack_unpack_next(&un, buf, (size_t)len, &off) != MSGPACK_UNPACK_SUCCESS) return 1;
                    sink += off;
                }
                n += 64;
            } while ((t = now_s()) - t0 < 0.3);
            if ((t - t0) * 1e9 / (double)n < best_dec) best_dec = (t - t0) * 1e9 / (double)n;
        }
        for (r = 0; r < 5; r++) {
            double t0 = now_s(), t;
            long n = 0;
            do {
                int i;
                for (i = 0; i < 64; i++) {
                    msgpack_sbuffer_clear(&sb);
                    msgpack_pack_object(&pk, un.data);
                    sink += sb.size;
                }
                n += 64;
            } while ((t = now_s()) - t0 < 0.3);
            if ((t - t0) * 1e9 / (double)n < best_enc) best_enc = (t - t0) * 1e9 / (double)n;
        }
        if (sb.size != (size_t)len) fprintf(stderr, "%s: msgpack-c wrote %zu bytes, not %ld\n", argv[a], sb.size, len);
        printf("%s %ld %.0f %.0f %zu\n", argv[a], len, best_dec, best_enc, sink % 10);
        msgpack_sbuffer_destroy(&sb);
        msgpack_unpacked_destroy(&un);
        free(buf);
    }
    return 0;
}
