/* chat: a chat server for browsers, on the Zocket layer (router, rooms).

   build/chat [--host H] [--port N] [--redis URL | --nats URL]
       (default 127.0.0.1:8080; --port 0: any free port)

   Prints "chat: open http://H:N/" once listening. Serves the page at / (the
   files of examples/chat/, put in the binary at build time by tools/embed.py)
   and the Zocket endpoint at /ws?name=NAME. Messages, in the Zocket JSON
   protocol ({"type","payload","rpcId"}):

     chat.join  {room}        call: {room, members:[name, ...]} (the caller too);
                              the others in room get chat.joined {room, name}
     chat.leave {room}        call: {room}; the others get chat.left {room, name}
     chat.send  {room, text}  every member, the sender too, gets
                              chat.message {room, from, text}; a call answers
                              {ok:true}
     chat.rooms               call: [{room, members}], members a count, by name

   room: a string of 1 to 64 bytes; text: a string of at most 2000 bytes;
   otherwise INVALID_INPUT. Sending to or leaving a room one is not in:
   FORBIDDEN; joining a 17th room (MAX_ROOMS): FORBIDDEN. When a connection
   goes, the others in each of its rooms get chat.left.

   The name: ?name= is required; missing or empty, the upgrade is refused with
   401. Longer than 32 bytes (after percent-decoding), not UTF-8, or holding
   control characters: 400, since the request is malformed rather than
   unauthenticated. Two connections may use the same name.

   Several servers, one chat: --redis redis://[:password@]host[:port] or
   --nats nats://[user:password@|token@]host[:port] (the scheme may be left
   out) attaches a zk_broker, and chat servers given the same broker are the
   nodes of one chat (channel prefix "chat"). Broker state changes are printed
   on stderr ("chat: broker open", "chat: broker reconnecting: WHY"), and so
   is, once a second at most, a new reason why attempts fail ("chat: broker
   connecting: WHY"). What crosses nodes: chat.message, chat.joined and
   chat.left (a closing connection's too), each once to every member of the
   room wherever it is connected; as on one node, the sender gets its own
   chat.message and no one gets the chat.joined or chat.left of its own join
   or leave. What does not cross: member lists and counts, which a node
   answers from its own connections.
   - chat.join answers the members connected to this node only. The page
     (examples/chat/chat.js) then adds each chat.joined and removes each
     chat.left, so a user sees the members on its own node and those of other
     nodes who joined after it did; members of other nodes who were in the
     room before it joined are missing from its list until they leave and join
     again (their messages arrive all the same, under their name).
   - chat.rooms lists the rooms with a member on this node, each with the
     number of members on this node.
   - A node that stops gracefully (SIGINT, SIGTERM) sends chat.left for its
     users, and waits up to 1 s for the broker to confirm them before exiting.
     A node that crashes or is killed (SIGKILL) sends nothing: its users stay
     in other nodes' pages until those reload.
   - While the broker is unreachable, a message reaches the members on the
     sender's node at once and those on other nodes once the broker is back,
     in order and once; a node that was cut off gets then what the others sent
     meanwhile (a member gets only what was sent after it joined, here as on
     one node). The adapter keeps at most 4096 messages (8 MiB) for that: a
     node cut off while more are sent misses the oldest, and once the ring
     holds only messages not yet sent, chat.send answers UNAVAILABLE and
     reaches no one, and a join or leave is done but its chat.joined or
     chat.left reaches no one (logged on stderr).

   SIGINT or SIGTERM: graceful shutdown (connections closed with 1001, at most
   2 s), then exit 0; a second signal stops at once. The signals are taken by
   a thread in sigwait, which hands them to the loop with zk_loop_post, the
   loop's one thread-safe call: neither zk_loop_post (malloc, a mutex) nor
   zk_loop_stop may be called from a signal handler. (SIGUSR1 is taken too:
   main ends that thread with it.) */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include "chat_assets.h" /* generated: build/chat_assets.h */

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_BYTES 32
#define ROOM_MAX_BYTES 64
#define TEXT_MAX_BYTES 2000
#define MAX_ROOMS 16 /* rooms per connection */
#define FLUSH_MS 1000 /* at shutdown, how long the broker may take to confirm */

/* A connection's context: who it is. Made by on_connect, freed by on_disconnect. */
typedef struct user {
    char name[NAME_MAX_BYTES + 1];
} user;

static zk_loop *loop;
static zk_app *app;
static int shutting_down;
static zk_timer flush_timer, broker_timer;
static uint64_t flush_deadline;
static char broker_why[256]; /* the broker error last printed */

static int str_is(zk_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

/* ---- the page ---- */

static const char *content_type(const char *name) {
    const char *dot = strrchr(name, '.');
    if (dot && strcmp(dot, ".html") == 0) return "text/html; charset=utf-8";
    if (dot && strcmp(dot, ".js") == 0) return "text/javascript; charset=utf-8";
    if (dot && strcmp(dot, ".css") == 0) return "text/css; charset=utf-8";
    return "application/octet-stream";
}

/* A short text answer, with one more header when name is not NULL. */
static void respond_text(zk_conn *conn, int status, const char *text, const char *name,
                         const char *value) {
    zk_http_header h[2];
    h[0].name = zk_str_c("Content-Type");
    h[0].value = zk_str_c("text/plain; charset=utf-8");
    h[1].name = zk_str_c(name);
    h[1].value = zk_str_c(value);
    zk_conn_respond(conn, status, h, name ? 2 : 1, text, strlen(text));
}

/* Every embedded file at /NAME, and index.html at / too. */
static void on_http(zk_conn *conn, const zk_http_request *req) {
    zk_str path = req->path;
    zk_http_header h[3];
    size_t i;

    if (!str_is(req->method, "GET")) {
        respond_text(conn, 405, "GET only\n", "Allow", "GET");
        return;
    }
    if (str_is(path, "/ws")) {
        respond_text(conn, 426, "connect a WebSocket to /ws?name=NAME\n", "Upgrade", "websocket");
        return;
    }
    if (str_is(path, "/")) path = zk_str_c("/index.html");
    for (i = 0; i < chat_assets_COUNT; i++) {
        const struct chat_assets_file *f = &chat_assets[i];
        if (path.len == strlen(f->name) + 1 && path.ptr[0] == '/' &&
            memcmp(path.ptr + 1, f->name, path.len - 1) == 0) {
            h[0].name = zk_str_c("Content-Type");
            h[0].value = zk_str_c(content_type(f->name));
            h[1].name = zk_str_c("Cache-Control");
            h[1].value = zk_str_c("no-cache");
            h[2].name = zk_str_c("X-Content-Type-Options");
            h[2].value = zk_str_c("nosniff");
            zk_conn_respond(conn, 200, h, 3, f->data, f->size);
            return;
        }
    }
    respond_text(conn, 404, "not found\n", NULL, NULL);
}

/* ---- connections ---- */

static int refuse(zk_conn *conn, int status, const char *why) {
    respond_text(conn, status, why, NULL, NULL);
    return status;
}

static int on_connect(zk_conn *conn, const zk_http_request *req, void **context) {
    char name[NAME_MAX_BYTES + 1]; /* one more than allowed: a longer name shows */
    int n = zk_query_get(req->query, "name", name, sizeof name);
    user *u;
    int i;

    if (n == ZK_ENOTFOUND || n == 0)
        return refuse(conn, 401, "a name is required: /ws?name=NAME\n");
    if (n < 0 || n > NAME_MAX_BYTES)
        return refuse(conn, 400, "name: at most 32 bytes\n");
    for (i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) break;
    if (i < n || !zk_utf8_valid(name, (size_t)n))
        return refuse(conn, 400, "name: UTF-8 without control characters\n");
    u = (user *)calloc(1, sizeof *u);
    if (!u) return refuse(conn, 503, "out of memory\n");
    memcpy(u->name, name, (size_t)n);
    *context = u;
    return 0;
}

/* Sends type {room, name} to the members of room but except. */
static void tell_room(zk_app *a, const char *type, const char *room, const char *name,
                      const zk_conn *except) {
    zk_writer *w = zk_app_message(a, type);
    const char *rooms[1];
    zk_target to;
    int rc;

    zk_write_object(w);
    zk_write_key(w, "room");
    zk_write_str(w, room);
    zk_write_key(w, "name");
    zk_write_str(w, name);
    zk_write_end(w);
    memset(&to, 0, sizeof to);
    rooms[0] = room;
    to.rooms = rooms;
    to.room_count = 1;
    to.except = except;
    rc = zk_app_send(a, &to);
    if (rc < 0) fprintf(stderr, "chat: %s to %s: %s\n", type, room, zk_strerror(rc));
}

/* Still in its rooms here: tell the others, then forget the user. */
static void on_disconnect(zk_conn *conn, void *context, int code) {
    user *me = (user *)context;
    const char *rooms[MAX_ROOMS];
    size_t n, i;
    (void)code;
    if (!me) return;
    n = zk_room_list(conn, rooms, MAX_ROOMS);
    for (i = 0; i < n && i < MAX_ROOMS; i++)
        tell_room(zk_conn_app(conn), "chat.left", rooms[i], me->name, conn);
    free(me);
}

/* ---- routes ---- */

static const zk_schema room_fields[] = {
    {"room", ZK_TYPE_STRING, ZK_SCHEMA_MIN | ZK_SCHEMA_MAX, 1, ROOM_MAX_BYTES, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL}};
static const zk_schema room_input = {NULL, ZK_TYPE_OBJECT, 0, 0, 0, room_fields, NULL};

static const zk_schema send_fields[] = {
    {"room", ZK_TYPE_STRING, ZK_SCHEMA_MIN | ZK_SCHEMA_MAX, 1, ROOM_MAX_BYTES, NULL, NULL},
    {"text", ZK_TYPE_STRING, ZK_SCHEMA_MAX, 0, TEXT_MAX_BYTES, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL}};
static const zk_schema send_input = {NULL, ZK_TYPE_OBJECT, 0, 0, 0, send_fields, NULL};

/* Every route needs a connection with a user: not so for zk_router_call. */
static int need_user(zk_request *req) {
    if (zk_request_conn(req) && zk_request_context(req)) return 0;
    zk_request_fail(req, ZK_CODE_UNAUTHORIZED, "connect to /ws?name=NAME");
    return 1;
}

/* The payload's room as a C string (the schema checked type and length).
   Room names are C strings in the API, so "\u0000" cannot be in one. */
static int read_room(zk_request *req, char out[ROOM_MAX_BYTES + 1]) {
    zk_str s = zk_value_str(zk_value_get(zk_request_payload(req), "room"));
    if (s.len == 0 || s.len > ROOM_MAX_BYTES || memchr(s.ptr, 0, s.len)) {
        zk_request_fail(req, ZK_CODE_INVALID_INPUT, "room: 1 to 64 bytes, no NUL");
        return -1;
    }
    memcpy(out, s.ptr, s.len);
    out[s.len] = 0;
    return 0;
}

static int fail_internal(zk_request *req, int err) {
    zk_writer_reset(zk_request_writer(req));
    return zk_request_fail(req, ZK_CODE_INTERNAL, zk_strerror(err));
}

static size_t room_size(const zk_app *a, const char *room) {
    zk_conn *unused[1];
    return zk_room_members(a, room, unused, 0);
}

/* The names of room's members, as an array. */
static int write_members(zk_writer *w, const zk_app *a, const char *room) {
    zk_conn *some[64], **conns = some;
    size_t n = zk_room_members(a, room, some, 64), i;
    if (n > 64) {
        conns = (zk_conn **)malloc(n * sizeof *conns);
        if (!conns) return ZK_ENOMEM;
        n = zk_room_members(a, room, conns, n);
    }
    zk_write_array(w);
    for (i = 0; i < n; i++) {
        const user *u = (const user *)zk_conn_context(conns[i]);
        zk_write_str(w, u ? u->name : "");
    }
    zk_write_end(w);
    if (conns != some) free(conns);
    return 0;
}

static void on_join(zk_request *req) {
    zk_conn *conn = zk_request_conn(req);
    zk_app *a = zk_request_app(req);
    const user *me = (const user *)zk_request_context(req);
    zk_writer *w = zk_request_writer(req);
    char room[ROOM_MAX_BYTES + 1];
    int rc;

    if (read_room(req, room) < 0) return;
    rc = zk_room_join(conn, room);
    if (rc == ZK_ENOSPACE) {
        zk_request_fail(req, ZK_CODE_FORBIDDEN, "in too many rooms");
        return;
    }
    if (rc < 0) {
        fail_internal(req, rc);
        return;
    }
    if (rc == 0) tell_room(a, "chat.joined", room, me->name, conn); /* 1: already in */
    zk_write_object(w);
    zk_write_key(w, "room");
    zk_write_str(w, room);
    zk_write_key(w, "members");
    if ((rc = write_members(w, a, room)) < 0) {
        fail_internal(req, rc);
        return;
    }
    zk_write_end(w);
}

static void on_leave(zk_request *req) {
    zk_conn *conn = zk_request_conn(req);
    const user *me = (const user *)zk_request_context(req);
    zk_writer *w = zk_request_writer(req);
    char room[ROOM_MAX_BYTES + 1];

    if (read_room(req, room) < 0) return;
    if (zk_room_leave(conn, room) < 0) {
        zk_request_fail(req, ZK_CODE_FORBIDDEN, "not in that room");
        return;
    }
    tell_room(zk_request_app(req), "chat.left", room, me->name, conn);
    zk_write_object(w);
    zk_write_key(w, "room");
    zk_write_str(w, room);
    zk_write_end(w);
}

static void on_send(zk_request *req) {
    zk_app *a = zk_request_app(req);
    const user *me = (const user *)zk_request_context(req);
    zk_str text = zk_value_str(zk_value_get(zk_request_payload(req), "text"));
    char room[ROOM_MAX_BYTES + 1];
    const char *rooms[1];
    zk_target to;
    zk_writer *w;
    int rc;

    if (read_room(req, room) < 0) return;
    if (!zk_room_has(zk_request_conn(req), room)) {
        zk_request_fail(req, ZK_CODE_FORBIDDEN, "not in that room");
        return;
    }
    w = zk_app_message(a, "chat.message");
    zk_write_object(w);
    zk_write_key(w, "room");
    zk_write_str(w, room);
    zk_write_key(w, "from");
    zk_write_str(w, me->name);
    zk_write_key(w, "text");
    zk_write_str_n(w, text.ptr, text.len);
    zk_write_end(w);
    memset(&to, 0, sizeof to);
    rooms[0] = room;
    to.rooms = rooms;
    to.room_count = 1;
    if ((rc = zk_app_send(a, &to)) == ZK_ENOSPACE) { /* the broker's ring is full */
        zk_request_fail(req, "UNAVAILABLE", "the other chat servers cannot be reached; try again");
        return;
    }
    if (rc < 0) {
        fail_internal(req, rc);
        return;
    }
    w = zk_request_writer(req); /* a call's answer; an event's is not sent */
    zk_write_object(w);
    zk_write_key(w, "ok");
    zk_write_bool(w, 1);
    zk_write_end(w);
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void on_rooms(zk_request *req) {
    const zk_app *a = zk_request_app(req);
    zk_writer *w = zk_request_writer(req);
    const char *some[64], **names = some;
    size_t n = zk_app_rooms(a, some, 64), i;

    if (n > 64) {
        names = (const char **)malloc(n * sizeof *names);
        if (!names) {
            fail_internal(req, ZK_ENOMEM);
            return;
        }
        n = zk_app_rooms(a, names, n);
    }
    qsort((void *)names, n, sizeof *names, compare_names);
    zk_write_array(w);
    for (i = 0; i < n; i++) {
        zk_write_object(w);
        zk_write_key(w, "room");
        zk_write_str(w, names[i]);
        zk_write_key(w, "members");
        zk_write_int(w, (int64_t)room_size(a, names[i]));
        zk_write_end(w);
    }
    zk_write_end(w);
    if (names != some) free((void *)names);
}

/* ---- signals and shutdown ---- */

/* Until the broker has confirmed what it was given (the chat.left of the
   connections just closed), at most FLUSH_MS; not while it is unreachable. */
static void flush_check(zk_timer *t) {
    zk_broker *b = zk_app_broker(app);
    zk_broker_stats st;
    if (b) zk_broker_get_stats(b, &st);
    if (!b || zk_broker_state(b) != ZK_BROKER_OPEN || st.queued == 0 ||
        zk_loop_now(loop) >= flush_deadline) {
        zk_timer_stop(t);
        zk_loop_stop(loop);
    }
}

static void shutdown_done(zk_server *server) {
    (void)server;
    flush_deadline = zk_loop_now(loop) + FLUSH_MS;
    zk_timer_init(loop, &flush_timer, flush_check, NULL);
    if (!zk_app_broker(app) || zk_timer_start(&flush_timer, 0, 10) < 0) zk_loop_stop(loop);
}

/* On the loop's thread: the first signal shuts down gracefully, the next
   stops the loop at once (main then drops what is left). */
static void on_signal(zk_loop *l, void *arg) {
    (void)arg;
    if (shutting_down++) {
        zk_loop_stop(l);
        return;
    }
    zk_server_shutdown(zk_app_server(app), 2000, shutdown_done);
}

/* Takes SIGINT and SIGTERM for the whole process (every thread blocks them)
   and hands them to the loop. SIGUSR1, from main, ends it. */
static void *signal_thread(void *arg) {
    const sigset_t *set = (const sigset_t *)arg;
    int sig;
    for (;;) {
        if (sigwait(set, &sig) != 0) continue;
        if (sig == SIGUSR1) return NULL;
        zk_loop_post(loop, on_signal, NULL);
    }
}

/* ---- the broker ---- */

/* The URL without its password or token, for the log. */
static void print_url(FILE *f, const char *url) {
    const char *rest = strstr(url, "://"), *at;
    rest = rest ? rest + 3 : url;
    at = strchr(rest, '@');
    if (at) fprintf(f, "%.*s***%s", (int)(rest - url), url, at);
    else fputs(url, f);
}

static void on_broker_state(zk_broker *b, int state, void *data) {
    const char *why = state == ZK_BROKER_OPEN ? "" : zk_broker_error(b);
    (void)data;
    fprintf(stderr, "chat: broker %s%s%s\n", zk_broker_state_name(state), *why ? ": " : "", why);
    snprintf(broker_why, sizeof broker_why, "%s", why);
}

/* Attempts that fail change no state until a first connection is up (or
   while reconnecting): each second, a new reason is printed. */
static void broker_check(zk_timer *t) {
    zk_broker *b = zk_app_broker(app);
    const char *why;
    (void)t;
    if (!b || zk_broker_state(b) == ZK_BROKER_OPEN) return;
    why = zk_broker_error(b);
    if (*why && strncmp(why, broker_why, sizeof broker_why - 1) != 0) {
        fprintf(stderr, "chat: broker %s: %s\n", zk_broker_state_name(zk_broker_state(b)), why);
        snprintf(broker_why, sizeof broker_why, "%s", why);
    }
}

/* scheme://rest from an option's value, the scheme added when left out;
   NULL when it names another scheme or is too long. */
static const char *broker_url(const char *scheme, const char *value) {
    static char url[512];
    const char *sep = strstr(value, "://");
    size_t n = strlen(scheme);
    if (sep && !((size_t)(sep - value) == n && memcmp(value, scheme, n) == 0)) return NULL;
    if (snprintf(url, sizeof url, "%s%s%s", sep ? "" : scheme, sep ? "" : "://", value) >=
        (int)sizeof url)
        return NULL;
    return url;
}

/* ---- main ---- */

static zk_router *make_router(void) {
    zk_router *r = zk_router_new();
    zk_route_opts room_opts, send_opts;
    memset(&room_opts, 0, sizeof room_opts);
    room_opts.input = &room_input;
    memset(&send_opts, 0, sizeof send_opts);
    send_opts.input = &send_input;
    if (!r) return NULL;
    if (zk_router_use(r, need_user) < 0 ||
        zk_router_on(r, "chat.join", on_join, &room_opts) < 0 ||
        zk_router_on(r, "chat.leave", on_leave, &room_opts) < 0 ||
        zk_router_on(r, "chat.send", on_send, &send_opts) < 0 ||
        zk_router_on(r, "chat.rooms", on_rooms, NULL) < 0) {
        zk_router_free(r);
        return NULL;
    }
    return r;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *url = NULL;
    long port = 8080;
    zk_broker_opts bopts;
    zk_router *router;
    zk_app_opts opts;
    sigset_t signals;
    pthread_t thread;
    int i, rc = 0;

    for (i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = strtol(argv[++i], &end, 10);
            if (*argv[i] && !*end && port >= 0 && port <= 65535) continue;
        }
        if ((strcmp(argv[i], "--redis") == 0 || strcmp(argv[i], "--nats") == 0) && !url &&
            i + 1 < argc) {
            url = broker_url(argv[i] + 2, argv[i + 1]);
            i++;
            if (url) continue;
        }
        fprintf(stderr,
                "usage: %s [--host H] [--port N] [--redis URL | --nats URL]\n"
                "  (default 127.0.0.1:8080; URL redis://[:password@]host[:port] or\n"
                "  nats://[user:password@|token@]host[:port]: one chat across servers)\n",
                argv[0]);
        return 2;
    }

    /* Blocked before any thread exists, so every thread inherits it and only
       the sigwait thread takes them. */
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);

    loop = zk_loop_new(NULL);
    router = make_router();
    if (!loop || !router) {
        fprintf(stderr, "chat: out of memory\n");
        return 1;
    }
    memset(&opts, 0, sizeof opts);
    opts.router = router;
    opts.server.host = host;
    opts.server.port = (int)port;
    opts.server.max_message = 64 * 1024; /* a chat message is far smaller */
    opts.path = "/ws";
    opts.on_connect = on_connect;
    opts.on_disconnect = on_disconnect;
    opts.on_http = on_http;
    opts.max_rooms_per_conn = MAX_ROOMS;
    app = zk_app_new(loop, &opts, &rc);
    if (!app || (rc = zk_server_listen(zk_app_server(app))) < 0) {
        fprintf(stderr, "chat: cannot listen on %s:%ld: %s\n", host, port, zk_strerror(rc));
        return 1;
    }
    if (url) {
        memset(&bopts, 0, sizeof bopts);
        bopts.url = url;
        bopts.prefix = "chat";
        bopts.on_state = on_broker_state;
        if (!zk_broker_new(app, &bopts, &rc)) {
            fprintf(stderr, "chat: broker ");
            print_url(stderr, url);
            fprintf(stderr, ": %s\n", zk_strerror(rc));
            return 1;
        }
        fprintf(stderr, "chat: broker ");
        print_url(stderr, url);
        fprintf(stderr, ", node %s: %s\n", zk_broker_node(zk_app_broker(app)),
                zk_broker_state_name(zk_broker_state(zk_app_broker(app))));
        zk_timer_init(loop, &broker_timer, broker_check, NULL);
        zk_timer_start(&broker_timer, 1000, 1000);
    }
    printf(strchr(host, ':') ? "chat: open http://[%s]:%d/\n" : "chat: open http://%s:%d/\n",
           host, zk_server_port(zk_app_server(app)));
    fflush(stdout);

    if (pthread_create(&thread, NULL, signal_thread, &signals) != 0) {
        fprintf(stderr, "chat: cannot start the signal thread\n");
        return 1;
    }
    rc = zk_loop_run(loop);
    zk_timer_stop(&flush_timer); /* when a second signal came during the flush */
    zk_timer_stop(&broker_timer);
    pthread_kill(thread, SIGUSR1);
    pthread_join(thread, NULL);
    if (rc < 0) fprintf(stderr, "chat: loop: %s\n", zk_strerror(rc));

    zk_app_free(app);
    zk_router_free(router);
    zk_loop_free(loop);
    return rc < 0 ? 1 : 0;
}
