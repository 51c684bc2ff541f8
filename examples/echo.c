/* echo: a WebSocket echo server.

   build/echo [--host H] [--port N]      (default 127.0.0.1:9001)

   Echoes every text and binary message on any path, answers plain HTTP
   requests with a short page, prints "listening on ws://H:N" once ready and
   exits cleanly (closing every connection with 1001) on SIGINT or SIGTERM. */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static zk_loop *loop;
static volatile sig_atomic_t stopping;

static void on_message(zk_conn *conn, zk_str data, int binary) {
    zk_conn_send(conn, data.ptr, data.len, binary);
}

static void on_http(zk_conn *conn, const zk_http_request *req) {
    static const char page[] =
        "zocket.h echo server: connect a WebSocket client to any path.\n";
    zk_http_header h[1];
    (void)req;
    h[0].name = zk_str_c("Content-Type");
    h[0].value = zk_str_c("text/plain; charset=utf-8");
    zk_conn_respond(conn, 200, h, 1, page, sizeof page - 1);
}

static void stop_now(zk_loop *l, void *arg) {
    (void)arg;
    zk_loop_stop(l);
}

static void shutdown_done(zk_server *server) {
    zk_loop_post(zk_server_loop(server), stop_now, NULL);
}

/* A signal only sets a flag: it also interrupts the poll (no SA_RESTART),
   so the loop below sees it at once. */
static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

int main(int argc, char **argv) {
    zk_server_opts opts;
    zk_server *server;
    const char *host = "127.0.0.1";
    int port = 9001, i, rc;
    struct sigaction sa;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--host H] [--port N]\n", argv[0]);
            return 2;
        }
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    loop = zk_loop_new(NULL);
    if (!loop) return 1;
    memset(&opts, 0, sizeof opts);
    opts.host = host;
    opts.port = port;
    opts.cb.on_message = on_message;
    opts.on_http = on_http;
    server = zk_server_new(loop, &opts);
    if (!server || (rc = zk_server_listen(server)) < 0) {
        fprintf(stderr, "echo: cannot listen on %s:%d: %s\n", host, port,
                server ? zk_strerror(rc) : "out of memory");
        return 1;
    }
    printf(strchr(host, ':') ? "listening on ws://[%s]:%d\n" : "listening on ws://%s:%d\n", host,
           zk_server_port(server));
    fflush(stdout);

    while (!stopping) zk_loop_step(loop, 200);
    zk_server_shutdown(server, 2000, shutdown_done);
    zk_loop_run(loop);
    zk_server_free(server);
    zk_loop_free(loop);
    return 0;
}
