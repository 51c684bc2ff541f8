/* app_server: the zocket app the RPC and room fan-out benchmarks load
   (bench/run_fanout.sh, build/loadgen --rpc / --fanout).

   build/app_server [--port N] [--host H] [--plain]    (default 127.0.0.1:9002)

   A zk_app (the Zocket JSON protocol) with three routes:
     bench.echo   a call: answers its payload as the result
                  ({"type":"__rpc_res","payload":<payload>,"rpcId":...})
     room.join    a call: joins the connection to the room "bench" (null)
     room.send    an event: sends {"type":"room.message","payload":<payload>}
                  to every member of "bench", the sender included
                  (zk_app_message + zk_write_value + zk_app_send)
   Prints "listening on ws://H:N" once ready; runs until SIGINT or SIGTERM.

   --plain serves the same three messages on a bare zk_server instead of a
   zk_app: the envelope parsed with zk_json_parse, the answer built with a
   zk_writer, the room kept as an array of connections and the broadcast
   encoded once (zk_frame) and sent to each member with zk_conn_send_frame.
   It is what the net layer costs without the app's router and rooms: the
   difference between the two is the app layer's share.

   Not named bench_*: `make bench` runs every bench_* program, and this one
   runs until killed. */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stopping;
static const char *room_name = "bench";

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

/* ---- the app ---- */

static void bench_echo(zk_request *req) {
    zk_write_value(zk_request_writer(req), zk_request_payload(req));
}

static void room_join(zk_request *req) {
    int rc = zk_room_join(zk_request_conn(req), room_name);
    if (rc < 0) zk_request_fail(req, ZK_CODE_INTERNAL, zk_strerror(rc));
}

static void room_send(zk_request *req) {
    zk_app *app = zk_request_app(req);
    zk_target to;
    zk_writer *w = zk_app_message(app, "room.message");
    zk_value payload = zk_request_payload(req);
    if (zk_value_type(payload) != ZK_TYPE_NONE) zk_write_value(w, payload);
    memset(&to, 0, sizeof to);
    to.rooms = &room_name;
    to.room_count = 1;
    if (zk_app_send(app, &to) < 0) zk_request_fail(req, ZK_CODE_INTERNAL, "send failed");
}

/* ---- the same on a bare server (--plain) ---- */

static zk_conn **members;
static size_t member_count, member_cap;
static zk_doc doc;
static zk_writer out;
static char *inbuf;
static size_t inbuf_cap;

static void plain_leave(zk_conn *conn) {
    size_t i;
    for (i = 0; i < member_count; i++)
        if (members[i] == conn) {
            members[i] = members[--member_count];
            return;
        }
}

static void plain_on_close(zk_conn *conn, int code, zk_str reason, int clean) {
    (void)code;
    (void)reason;
    (void)clean;
    if (zk_conn_data(conn)) plain_leave(conn);
}

static void plain_on_message(zk_conn *conn, zk_str data, int binary) {
    zk_value root, type, payload, id;
    zk_str t;
    (void)binary;
    if (data.len + 1 > inbuf_cap) { /* the parser decodes escapes in place: a copy */
        inbuf_cap = data.len + 1 > 2 * inbuf_cap ? data.len + 1 : 2 * inbuf_cap;
        inbuf = (char *)realloc(inbuf, inbuf_cap);
        if (!inbuf) abort();
    }
    memcpy(inbuf, data.ptr, data.len);
    if (zk_json_parse(&doc, inbuf, data.len) != ZK_OK) return;
    root = zk_doc_root(&doc);
    type = zk_value_get(root, "type");
    payload = zk_value_get(root, "payload");
    id = zk_value_get(root, "rpcId");
    t = zk_value_str(type);
    zk_writer_reset(&out);
    zk_write_object(&out);
    if (t.len == 9 && !memcmp(t.ptr, "room.send", 9)) {
        zk_frame *f;
        zk_str msg;
        size_t i;
        zk_write_key(&out, "type");
        zk_write_str(&out, "room.message");
        if (zk_value_type(payload) != ZK_TYPE_NONE) {
            zk_write_key(&out, "payload");
            zk_write_value(&out, payload);
        }
        zk_write_end(&out);
        msg = zk_writer_result(&out);
        f = zk_frame_new(msg.ptr, msg.len, 0, NULL);
        if (!f) return;
        for (i = 0; i < member_count; i++) zk_conn_send_frame(members[i], f);
        zk_frame_free(f);
        return;
    }
    if (zk_value_type(id) == ZK_TYPE_NONE) return;
    if (t.len == 9 && !memcmp(t.ptr, "room.join", 9) && !zk_conn_data(conn)) {
        if (member_count == member_cap) {
            member_cap = member_cap ? 2 * member_cap : 64;
            members = (zk_conn **)realloc(members, member_cap * sizeof *members);
            if (!members) abort();
        }
        members[member_count++] = conn;
        zk_conn_set_data(conn, conn);
        payload.doc = NULL; /* answer null */
    }
    zk_write_key(&out, "type");
    zk_write_str(&out, "__rpc_res");
    zk_write_key(&out, "payload");
    if (payload.doc && zk_value_type(payload) != ZK_TYPE_NONE) zk_write_value(&out, payload);
    else zk_write_null(&out);
    zk_write_key(&out, "rpcId");
    zk_write_value(&out, id);
    zk_write_end(&out);
    {
        zk_str msg = zk_writer_result(&out);
        zk_conn_send(conn, msg.ptr, msg.len, 0);
    }
}

int main(int argc, char **argv) {
    static const zk_schema echo_fields[] = {{"n", ZK_TYPE_INT, 0, 0, 0, NULL, NULL},
                                            {NULL, 0, 0, 0, 0, NULL, NULL}};
    static const zk_schema echo_input = {NULL, ZK_TYPE_OBJECT, 0, 0, 0, echo_fields, NULL};
    const char *host = "127.0.0.1";
    int port = 9002, plain = 0, schema = 0, i, rc;
    struct sigaction sa;
    zk_loop *loop;
    zk_server *server;
    zk_router *router = NULL;
    zk_app *app = NULL;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--plain") == 0) plain = 1;
        else if (strcmp(argv[i], "--schema") == 0) schema = 1;
        else if (argv[i][0] >= '0' && argv[i][0] <= '9') port = atoi(argv[i]);
        else {
            fprintf(stderr, "usage: %s [--host H] [--port N] [--plain] [--schema]\n", argv[0]);
            return 2;
        }
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    loop = zk_loop_new(NULL);
    if (!loop) return 1;
    if (plain) {
        zk_server_opts opts;
        memset(&opts, 0, sizeof opts);
        opts.host = host;
        opts.port = port;
        opts.cb.on_message = plain_on_message;
        opts.cb.on_close = plain_on_close;
        server = zk_server_new(loop, &opts);
        zk_writer_init(&out, NULL, 0);
    } else {
        zk_app_opts opts;
        zk_route_opts ro;
        int err = 0;
        router = zk_router_new();
        memset(&ro, 0, sizeof ro);
        ro.input = &echo_input;
        if (!router || zk_router_on(router, "bench.echo", bench_echo, schema ? &ro : NULL) < 0 ||
            zk_router_on(router, "room.join", room_join, NULL) < 0 ||
            zk_router_on(router, "room.send", room_send, NULL) < 0) {
            fprintf(stderr, "app_server: cannot build the router\n");
            return 1;
        }
        memset(&opts, 0, sizeof opts);
        opts.router = router;
        opts.rate_per_sec = ZK_RATE_UNLIMITED; /* a benchmark floods on purpose */
        opts.server.host = host;
        opts.server.port = port;
        app = zk_app_new(loop, &opts, &err);
        if (!app) {
            fprintf(stderr, "app_server: zk_app_new: %s\n", zk_strerror(err));
            return 1;
        }
        server = zk_app_server(app);
    }
    if (!server || (rc = zk_server_listen(server)) < 0) {
        fprintf(stderr, "app_server: cannot listen on %s:%d: %s\n", host, port,
                server ? zk_strerror(rc) : "out of memory");
        return 1;
    }
    printf("listening on ws://%s:%d (%s)\n", host, zk_server_port(server),
           plain ? "plain zk_server" : schema ? "zk_app, bench.echo with a schema" : "zk_app");
    fflush(stdout);

    while (!stopping) zk_loop_step(loop, 200);
    if (app) {
        zk_app_stats st;
        zk_app_get_stats(app, &st);
        printf("app stats: in %llu, out %llu, dropped %llu, errors %llu\n",
               (unsigned long long)st.messages_in, (unsigned long long)st.messages_out,
               (unsigned long long)st.dropped, (unsigned long long)st.errors);
        zk_app_free(app);
        zk_router_free(router);
    } else {
        zk_server_free(server);
        zk_writer_free(&out);
        zk_doc_free(&doc);
        free(inbuf);
        free(members);
    }
    zk_loop_free(loop);
    return 0;
}
