/* autobahn_client: the zocket client under the Autobahn fuzzing server.

   build/autobahn_client URL [agent]     e.g. ws://127.0.0.1:9001 zocket

   Asks URL/getCaseCount how many cases there are, runs each one on
   URL/runCase?case=i&agent=A echoing every message back, then asks
   URL/updateReports?agent=A to write the report. One connection at a time. */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <stdio.h>
#include <stdlib.h>

static zk_loop *loop;
static const char *base, *agent = "zocket";
static int cases = -1, current = 0, done;

static void next_step(void);

static void on_message(zk_conn *conn, zk_str data, int binary) {
    if (current == 0) { /* getCaseCount answers with a number */
        char n[16];
        size_t len = data.len < sizeof n - 1 ? data.len : sizeof n - 1;
        memcpy(n, data.ptr, len);
        n[len] = '\0';
        cases = atoi(n);
        return;
    }
    zk_conn_send(conn, data.ptr, data.len, binary);
}

static void on_close(zk_conn *conn, int code, zk_str reason, int clean) {
    (void)conn, (void)code, (void)reason, (void)clean;
    if (current == 0 && cases < 0) {
        fprintf(stderr, "autobahn_client: no case count from %s (%d %.*s)\n", base, code,
                (int)reason.len, reason.ptr);
        done = 2;
        return;
    }
    next_step();
}

static void connect_to(const char *path) {
    zk_conn_opts opts;
    char url[512];
    int err;
    snprintf(url, sizeof url, "%s%s", base, path);
    memset(&opts, 0, sizeof opts);
    opts.url = url;
    opts.cb.on_message = on_message;
    opts.cb.on_close = on_close;
    opts.max_message = 64u << 20;
    opts.write_limit = 256u << 20;
    if (!zk_conn_connect(loop, &opts, &err)) {
        fprintf(stderr, "autobahn_client: %s: %s\n", url, zk_strerror(err));
        done = 2;
    }
}

static void next_step(void) {
    char path[256];
    current++;
    if (current <= cases) {
        snprintf(path, sizeof path, "/runCase?case=%d&agent=%s", current, agent);
        connect_to(path);
    } else if (current == cases + 1) {
        snprintf(path, sizeof path, "/updateReports?agent=%s", agent);
        connect_to(path);
    } else {
        done = 1;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s URL [agent]\n", argv[0]);
        return 2;
    }
    base = argv[1];
    if (argc > 2) agent = argv[2];
    loop = zk_loop_new(NULL);
    connect_to("/getCaseCount");
    while (!done) zk_loop_step(loop, -1);
    if (done == 1) printf("ran %d cases as agent %s\n", cases, agent);
    zk_loop_free(loop);
    return done == 1 ? 0 : 1;
}
