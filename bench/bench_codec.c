/* bench_codec: MessagePack against JSON in zocket.h's value layer.

   build/bench_codec [--seconds S] [--dump DIR]

   For a few representative payloads, each given as JSON text:
     rpc      a call envelope        {"type":"bench.echo","payload":{"n":123},"rpcId":"42"}
     chat     a chat message event   (room, sender, 40 characters of text, a timestamp)
     game     a game state tick      (50 entities: id, x, y, hp, a name)
     numbers  1000 doubles           (a sensor series)
     text     100 strings            (80 characters each, some escapes)
   it prints the size in each codec and, per message, the time to decode
   (zk_json_parse of a fresh copy, since it decodes in place; zk_msgpack_parse
   reads its input as it is) and to encode (zk_write_value of the parsed
   document into a writer of each codec), as ns per message and MB/s of
   that codec's bytes. The MessagePack form is the one zk_write_value
   writes, and decoding it must give the same JSON back (checked once per
   payload, before timing).

   --dump DIR writes each payload's MessagePack bytes to DIR/NAME.mp, for
   bench/run_codec.sh to time a peer (msgpack-c) on the same bytes.

   Method: best of 5 repetitions of about S/5 seconds each (default S =
   1.5 per figure), clock_gettime(CLOCK_MONOTONIC). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double rep_seconds = 0.3;

/* ns per run of fn over the best of 5 repetitions */
typedef void (*work_fn)(void *arg);
static double time_ns(work_fn fn, void *arg) {
    double best = 1e30;
    int r;
    for (r = 0; r < 5; r++) {
        double t0 = now_s(), t;
        long n = 0;
        do {
            int i;
            for (i = 0; i < 64; i++) fn(arg);
            n += 64;
        } while ((t = now_s()) - t0 < rep_seconds);
        if ((t - t0) * 1e9 / (double)n < best) best = (t - t0) * 1e9 / (double)n;
    }
    return best;
}

typedef struct job {
    const char *json;
    size_t json_len;
    char *mp;
    size_t mp_len;
    char *copy;
    zk_doc doc, parsed;
    zk_writer jw, mw;
} job;

static volatile size_t sink;

static void decode_json(void *arg) {
    job *j = (job *)arg;
    memcpy(j->copy, j->json, j->json_len);
    if (zk_json_parse(&j->doc, j->copy, j->json_len) != ZK_OK) abort();
    sink += j->doc.count;
}
static void decode_mp(void *arg) {
    job *j = (job *)arg;
    if (zk_msgpack_parse(&j->doc, j->mp, j->mp_len) != ZK_OK) abort();
    sink += j->doc.count;
}
static void encode_json(void *arg) {
    job *j = (job *)arg;
    zk_writer_reset(&j->jw);
    zk_write_value(&j->jw, zk_doc_root(&j->parsed));
    sink += j->jw.len;
}
static void encode_mp(void *arg) {
    job *j = (job *)arg;
    zk_writer_reset(&j->mw);
    zk_write_value(&j->mw, zk_doc_root(&j->parsed));
    sink += j->mw.len;
}

static char *make_game(void) {
    zk_writer w;
    char *out;
    int i;
    zk_writer_init(&w, NULL, 0);
    zk_write_object(&w);
    zk_write_key(&w, "type");
    zk_write_str(&w, "game.tick");
    zk_write_key(&w, "payload");
    zk_write_object(&w);
    zk_write_key(&w, "tick");
    zk_write_int(&w, 123456);
    zk_write_key(&w, "entities");
    zk_write_array(&w);
    for (i = 0; i < 50; i++) {
        char name[16];
        zk_write_object(&w);
        zk_write_key(&w, "id");
        zk_write_int(&w, 1000 + i);
        zk_write_key(&w, "x");
        zk_write_double(&w, 12.5 + i * 3.25);
        zk_write_key(&w, "y");
        zk_write_double(&w, -40.125 + i * 1.5);
        zk_write_key(&w, "hp");
        zk_write_int(&w, 100 - i);
        snprintf(name, sizeof name, "orc-%d", i);
        zk_write_key(&w, "name");
        zk_write_str(&w, name);
        zk_write_end(&w);
    }
    zk_write_end(&w);
    zk_write_end(&w);
    zk_write_end(&w);
    out = (char *)malloc(w.len + 1);
    memcpy(out, w.buf, w.len);
    out[w.len] = 0;
    zk_writer_free(&w);
    return out;
}

static char *make_numbers(void) {
    zk_writer w;
    char *out;
    int i;
    zk_writer_init(&w, NULL, 0);
    zk_write_array(&w);
    for (i = 0; i < 1000; i++) zk_write_double(&w, 20.0 + (double)(i % 97) * 0.0137 + (double)i / 7.0);
    zk_write_end(&w);
    out = (char *)malloc(w.len + 1);
    memcpy(out, w.buf, w.len);
    out[w.len] = 0;
    zk_writer_free(&w);
    return out;
}

static char *make_text(void) {
    zk_writer w;
    char *out, line[96];
    int i;
    zk_writer_init(&w, NULL, 0);
    zk_write_array(&w);
    for (i = 0; i < 100; i++) {
        snprintf(line, sizeof line, "line %03d: the quick brown fox jumps over the \"lazy\" dog\\ and runs\t%05d", i, i * 7);
        zk_write_str(&w, line);
    }
    zk_write_end(&w);
    out = (char *)malloc(w.len + 1);
    memcpy(out, w.buf, w.len);
    out[w.len] = 0;
    zk_writer_free(&w);
    return out;
}

int main(int argc, char **argv) {
    const char *names[] = {"rpc", "chat", "game", "numbers", "text"};
    char *texts[5];
    int i;
    double seconds = 1.5;
    const char *dump = NULL;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--dump") && i + 1 < argc) dump = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--seconds S] [--dump DIR]\n", argv[0]);
            return 2;
        }
    }
    rep_seconds = seconds / 5;
    texts[0] = strdup("{\"type\":\"bench.echo\",\"payload\":{\"n\":123},\"rpcId\":\"42\"}");
    texts[1] = strdup("{\"type\":\"chat.message\",\"payload\":{\"room\":\"lobby\",\"from\":\"alice\","
                      "\"text\":\"Hello everyone, how is it going today?\",\"ts\":1764115200123}}");
    texts[2] = make_game();
    texts[3] = make_numbers();
    texts[4] = make_text();
    printf("zocket.h codecs: MessagePack against JSON (decode = parse into a zk_doc; encode = zk_write_value)\n");
    printf("%-8s %8s %8s %6s | %9s %9s | %9s %9s | %9s %9s | %9s %9s\n", "payload", "json B", "mpack B", "ratio",
           "dec json", "dec mp", "MB/s", "MB/s", "enc json", "enc mp", "MB/s", "MB/s");
    for (i = 0; i < 5; i++) {
        job j;
        zk_str r;
        double dj, dm, ej, em;
        char *back;
        memset(&j, 0, sizeof j);
        j.json = texts[i];
        j.json_len = strlen(texts[i]);
        j.copy = (char *)malloc(j.json_len + 1);
        zk_writer_init(&j.jw, NULL, 0);
        zk_writer_init(&j.mw, NULL, 0);
        zk_writer_set_codec(&j.mw, ZK_CODEC_MSGPACK);
        memcpy(j.copy, j.json, j.json_len);
        back = (char *)malloc(j.json_len + 1);
        memcpy(back, j.json, j.json_len);
        if (zk_json_parse(&j.parsed, back, j.json_len) != ZK_OK) return 1;
        zk_write_value(&j.mw, zk_doc_root(&j.parsed));
        r = zk_writer_result(&j.mw);
        j.mp = (char *)malloc(r.len);
        memcpy(j.mp, r.ptr, r.len);
        j.mp_len = r.len;
        /* the MessagePack form reads back as the same JSON */
        if (zk_msgpack_parse(&j.doc, j.mp, j.mp_len) != ZK_OK) return 1;
        zk_write_value(&j.jw, zk_doc_root(&j.doc));
        r = zk_writer_result(&j.jw);
        if (r.len != j.json_len || memcmp(r.ptr, j.json, r.len) != 0) {
            printf("%s: MessagePack did not read back as the same JSON\n", names[i]);
            return 1;
        }
        if (dump) {
            char path[512];
            FILE *f;
            snprintf(path, sizeof path, "%s/%s.mp", dump, names[i]);
            f = fopen(path, "wb");
            if (!f || fwrite(j.mp, 1, j.mp_len, f) != j.mp_len) return 1;
            fclose(f);
        }
        dj = time_ns(decode_json, &j);
        dm = time_ns(decode_mp, &j);
        ej = time_ns(encode_json, &j);
        em = time_ns(encode_mp, &j);
        printf("%-8s %8zu %8zu %5.0f%% | %7.0fns %7.0fns | %9.0f %9.0f | %7.0fns %7.0fns | %9.0f %9.0f\n", names[i],
               j.json_len, j.mp_len, 100.0 * (double)j.mp_len / (double)j.json_len, dj, dm, (double)j.json_len / dj * 1e3,
               (double)j.mp_len / dm * 1e3, ej, em, (double)j.json_len / ej * 1e3, (double)j.mp_len / em * 1e3);
        zk_doc_free(&j.doc);
        zk_doc_free(&j.parsed);
        zk_writer_free(&j.jw);
        zk_writer_free(&j.mw);
        free(j.copy);
        free(j.mp);
        free(back);
        free(texts[i]);
    }
    return 0;
}
