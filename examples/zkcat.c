/* zkcat: a command-line Zocket client (websocat for the Zocket protocol),
   on zk_client: it reconnects, pings, and keeps what it could not send yet.

   build/zkcat [options] ws://HOST:PORT/PATH          stream mode
   build/zkcat [options] ws://HOST:PORT/PATH --call TYPE [JSON]

   Stream mode: each line of stdin is one Zocket envelope, written as JSON:
       {"type":"chat.send","payload":{"room":"r","text":"hi"}}         an event
       {"type":"chat.join","payload":{"room":"r"},"rpcId":"j1"}        a call
   zk_client offers events and calls rather than raw frames, so a line is
   parsed and sent through it: without "rpcId" with zk_client_emit, with one
   (a string or an integer) with zk_client_call, and its answer is printed
   with that rpcId (the client numbers its calls on the wire itself). So
   every line is ordered, kept in the offline queue while the connection is
   down and sent after the reconnect, like any other zk_client message.
   Blank lines are skipped; a line that is not such an envelope is reported
   on stderr and skipped. Every message received is printed on one line of
   stdout, as JSON:
       {"type":"chat.message","payload":{...}}                   events
       {"type":"__error","error":{"code":...,"message":...,"ref":...}}
       {"type":"__rpc_res","payload":...,"rpcId":"j1"}           answers to
       {"type":"__rpc_err","rpcId":"j1","error":{"code":...,"message":...}}
   (answers also come from the client itself: TIMEOUT, DISCONNECTED - the
   connection dropped with the call in flight -, CLOSED). Heartbeats are not
   shown. At the end of stdin zkcat waits until every line has gone out and
   every call is answered (through reconnects), then closes with 1000 and
   exits 0. Messages still on their way then (the echo of a last event) are
   not awaited: end with a call (a line with an rpcId) to have everything
   before it handled by the server and its effects printed. When the
   server closes with 1000 (the client does not reconnect then) zkcat exits
   0; when the client stops for good otherwise (1008, 4500-4999, or a
   dropped connection with --no-reconnect) it exits 2.

   --call TYPE [JSON]: makes one call (payload JSON, none if absent) and
   prints the result's payload (null when there is none) on stdout, exit 0;
   or the error as JSON {"code","message","data"?} on stdout, exit 1 for an
   error from the server, 2 for TIMEOUT, DISCONNECTED, CLOSED or no
   connection within the timeout. The JSON argument is taken as the payload
   unless it starts with "--" or is -H or -p.

   Options:
     -H 'Name: value'  an HTTP header on the upgrade request (repeatable)
     -p name=value     a connection parameter, sent in the query (repeatable)
     --protocol P      a subprotocol to offer (repeatable)
     --msgpack         speak MessagePack (subprotocol zocket.msgpack; lines
                       in and out stay JSON: zkcat converts)
     --timeout MS      call timeout (default 10000)
     --ping MS         heartbeat interval (default 15000)
     --no-reconnect    a dropped connection ends zkcat (exit 2)
     --rejoin TYPE JSON  a call made first on every connection, the first
                       too (zk_client_rejoin: joining rooms again); its
                       answers are printed with rpcId "rejoin-N" (repeatable)
   Bad arguments: usage on stderr, exit 64. Diagnostics (reconnects, skipped
   lines) go to stderr.

   stdin is read by a thread (zk_loop has no public way to watch a
   descriptor) that hands each line to the loop with zk_loop_post, the loop's
   one thread-safe call; it stops reading while MAX_AHEAD lines wait, so a
   big file does not pile up in memory, and skips (with a note on stderr)
   a line longer than MAX_LINE, 1 MiB. */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LIST 32     /* -H, -p and --protocol each */
#define MAX_AHEAD 256   /* lines read but not yet handed to the client */
#define MAX_LINE (1 << 20) /* longer lines are skipped: the offline queue holds 1 MiB */
#define MAX_TYPE 256
#define RETRY_MS 20     /* a line refused for lack of room is tried again after */
#define EXIT_ERROR 1
#define EXIT_CONNECTION 2
#define EXIT_USAGE 64

typedef struct line {
    struct line *next;
    unsigned long number;
    size_t len;
    char text[]; /* len bytes and a NUL */
} line;

/* A call's rpcId as the user wrote it: a string or an integer. */
typedef struct call_id {
    int is_string;
    int64_t number;
    size_t len;
    char text[];
} call_id;

static zk_loop *loop;
static zk_client *client;
static int call_mode;
static uint32_t call_timeout_ms = 10000;
static int exit_code;
static int closing;           /* we asked for the close */
static int finished;          /* the loop is told to stop */

/* stream mode, loop thread */
static line *held, **held_tail = &held; /* read, not yet accepted by the client */
static unsigned long calls_pending;
static int events_queued;     /* events handed over while not open (the client's queue) */
static int eof_seen;
static zk_timer retry_timer;
static zk_doc doc;
static zk_writer out;

/* shared with the reader thread */
static pthread_mutex_t ahead_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ahead_cond = PTHREAD_COND_INITIALIZER;
static size_t ahead;          /* lines posted and not yet handed over */
static int reader_stop;       /* main is done with the loop: post nothing */

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [options] ws://HOST:PORT/PATH [--call TYPE [JSON]]\n"
            "  stdin: one JSON envelope per line {\"type\",\"payload\"[,\"rpcId\"]}; stdout: every message\n"
            "  --call TYPE [JSON]  one call: prints its result (exit 0) or error (exit 1; 2: timeout/connection)\n"
            "  -H 'Name: value'    HTTP header (repeatable)\n"
            "  -p name=value       connection parameter, in the query (repeatable)\n"
            "  --protocol P        subprotocol to offer (repeatable)\n"
            "  --msgpack           speak MessagePack on the wire (zocket.msgpack); lines stay JSON\n"
            "  --timeout MS        call timeout (default 10000)\n"
            "  --ping MS           heartbeat interval (default 15000)\n"
            "  --no-reconnect      exit (2) when the connection drops\n"
            "  --rejoin TYPE JSON  call made first on every connection, e.g. joining a room (repeatable)\n",
            argv0);
    exit(EXIT_USAGE);
}

static void finish(int code) {
    if (finished) return;
    finished = 1;
    exit_code = code;
    zk_loop_stop(loop);
}

/* Prints the writer's value as one line. */
static void print_out(void) {
    zk_str s = zk_writer_result(&out);
    if (!s.ptr) {
        fprintf(stderr, "zkcat: cannot print a message: %s\n", zk_strerror(zk_writer_error(&out)));
        return;
    }
    fwrite(s.ptr, 1, s.len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static void write_error(const zk_result *r) {
    zk_write_object(&out);
    zk_write_key(&out, "code");
    zk_write_str_n(&out, r->code.ptr, r->code.len);
    zk_write_key(&out, "message");
    zk_write_str_n(&out, r->message.ptr, r->message.len);
    if (zk_value_type(r->value)) {
        zk_write_key(&out, "data");
        zk_write_value(&out, r->value);
    }
    zk_write_end(&out);
}

static int str_is(zk_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

/* ---- receiving ---- */

static void on_event(zk_client *c, zk_str type, zk_value payload, void *user) {
    int is_error = str_is(type, "__error");
    (void)c, (void)user;
    zk_writer_reset(&out);
    zk_write_object(&out);
    zk_write_key(&out, "type");
    zk_write_str_n(&out, type.ptr, type.len);
    if (zk_value_type(payload)) {
        zk_write_key(&out, is_error ? "error" : "payload");
        zk_write_value(&out, payload);
    }
    zk_write_end(&out);
    print_out();
}

static void maybe_close(void);

/* The answer to a line's call, printed with the line's rpcId. */
static void on_line_result(zk_client *c, const zk_result *r, void *user) {
    call_id *id = (call_id *)user;
    (void)c;
    zk_writer_reset(&out);
    zk_write_object(&out);
    zk_write_key(&out, "type");
    zk_write_str(&out, r->ok ? "__rpc_res" : "__rpc_err");
    if (r->ok) {
        zk_write_key(&out, "payload");
        if (zk_value_type(r->value)) zk_write_value(&out, r->value);
        else zk_write_null(&out);
    }
    zk_write_key(&out, "rpcId");
    if (id->is_string) zk_write_str_n(&out, id->text, id->len);
    else zk_write_int(&out, id->number);
    if (!r->ok) {
        zk_write_key(&out, "error");
        write_error(r);
    }
    zk_write_end(&out);
    print_out();
    free(id);
    calls_pending--;
    maybe_close();
}

/* The answer to a --rejoin call, on every connection: rpcId "rejoin-N". */
static void on_rejoin_result(zk_client *c, const zk_result *r, void *user) {
    char id[32];
    (void)c;
    snprintf(id, sizeof id, "rejoin-%d", (int)(intptr_t)user);
    zk_writer_reset(&out);
    zk_write_object(&out);
    zk_write_key(&out, "type");
    zk_write_str(&out, r->ok ? "__rpc_res" : "__rpc_err");
    if (r->ok) {
        zk_write_key(&out, "payload");
        if (zk_value_type(r->value)) zk_write_value(&out, r->value);
        else zk_write_null(&out);
    }
    zk_write_key(&out, "rpcId");
    zk_write_str(&out, id);
    if (!r->ok) {
        zk_write_key(&out, "error");
        write_error(r);
    }
    zk_write_end(&out);
    print_out();
}

/* --call: the one result decides the exit status. */
static void on_call_result(zk_client *c, const zk_result *r, void *user) {
    (void)user;
    zk_writer_reset(&out);
    if (r->ok) {
        if (zk_value_type(r->value)) zk_write_value(&out, r->value);
        else zk_write_null(&out);
    } else {
        write_error(r);
    }
    print_out();
    if (r->ok) exit_code = 0;
    else if (str_is(r->code, ZK_CODE_TIMEOUT) || str_is(r->code, ZK_CODE_DISCONNECTED) ||
             str_is(r->code, ZK_CODE_CLOSED))
        exit_code = EXIT_CONNECTION;
    else exit_code = EXIT_ERROR;
    if (!closing) {
        closing = 1;
        zk_client_close(c);
    }
}

/* --call: the client's timeout counts from the call; this one covers a
   connection that never came (with reconnects on, the call would wait in
   the offline queue). */
static void on_call_watchdog(zk_timer *t) {
    char message[96];
    (void)t;
    snprintf(message, sizeof message, "no answer within %lu ms", (unsigned long)call_timeout_ms);
    zk_writer_reset(&out);
    zk_write_object(&out);
    zk_write_key(&out, "code");
    zk_write_str(&out, ZK_CODE_TIMEOUT);
    zk_write_key(&out, "message");
    zk_write_str(&out, message);
    zk_write_end(&out);
    print_out();
    finish(EXIT_CONNECTION);
}

/* ---- sending stdin's lines ---- */

/* Sends one line: 0 (sent, queued, or reported and skipped), or ZK_ENOSPACE /
   ZK_EBACKPRESSURE (no room now: try again later). */
static int send_line(const line *l) {
    char *copy = (char *)malloc(l->len + 1), type[MAX_TYPE];
    zk_value root, type_v, payload, rpc;
    zk_str t, p = {NULL, 0};
    call_id *id = NULL;
    const char *why = NULL;
    int rc;

    if (!copy) {
        fprintf(stderr, "zkcat: line %lu: out of memory, skipped\n", l->number);
        return 0;
    }
    memcpy(copy, l->text, l->len + 1);
    rc = zk_json_parse(&doc, copy, l->len);
    root = zk_doc_root(&doc);
    type_v = zk_value_get(root, "type");
    t = zk_value_str(type_v);
    rpc = zk_value_get(root, "rpcId");
    payload = zk_value_get(root, "payload");
    if (rc != ZK_OK) why = doc.error ? doc.error : zk_strerror(rc);
    else if (zk_value_type(root) != ZK_TYPE_OBJECT) why = "not a JSON object";
    else if (zk_value_type(type_v) != ZK_TYPE_STRING || t.len == 0) why = "no \"type\" string";
    else if (t.len >= MAX_TYPE || memchr(t.ptr, 0, t.len)) why = "\"type\" too long";
    else if (zk_value_type(rpc) && zk_value_type(rpc) != ZK_TYPE_STRING && zk_value_type(rpc) != ZK_TYPE_INT)
        why = "\"rpcId\" is neither a string nor an integer";
    if (why) {
        fprintf(stderr, "zkcat: line %lu: not a Zocket envelope (%s), skipped\n", l->number, why);
        free(copy);
        return 0;
    }
    memcpy(type, t.ptr, t.len);
    type[t.len] = 0;
    if (zk_value_type(payload)) {
        zk_writer_reset(&out);
        zk_write_value(&out, payload);
        p = zk_writer_result(&out);
    }
    if (zk_value_type(rpc)) {
        zk_str s = zk_value_str(rpc);
        id = (call_id *)malloc(sizeof *id + s.len);
        if (!id) {
            free(copy);
            return ZK_ENOSPACE; /* try again later */
        }
        id->is_string = zk_value_type(rpc) == ZK_TYPE_STRING;
        id->number = zk_value_int(rpc, 0);
        id->len = s.len;
        if (s.len) memcpy(id->text, s.ptr, s.len);
        rc = zk_client_call(client, type, p.ptr, p.len, NULL, on_line_result, id);
        if (rc == 0) calls_pending++;
        else free(id);
    } else {
        rc = zk_client_emit(client, type, p.ptr, p.len);
        if (rc == 0 && zk_client_state(client) != ZK_CLIENT_OPEN) events_queued = 1;
    }
    free(copy);
    if (rc == ZK_ENOSPACE || rc == ZK_EBACKPRESSURE || rc == ZK_ENOMEM) return rc;
    if (rc < 0) fprintf(stderr, "zkcat: line %lu: %s, skipped\n", l->number, zk_strerror(rc));
    return 0;
}

static void handed_over(size_t n) {
    pthread_mutex_lock(&ahead_lock);
    ahead -= n;
    pthread_cond_signal(&ahead_cond);
    pthread_mutex_unlock(&ahead_lock);
}

/* Hands the held lines to the client, in order, while it takes them. */
static void pump(void) {
    if (closing || finished) return;
    while (held) {
        line *l = held;
        int rc = send_line(l);
        if (rc < 0) {
            /* the offline queue is full: again when the connection opens
               (on_state); the write queue is full, or memory: shortly */
            if (!(rc == ZK_ENOSPACE && zk_client_state(client) != ZK_CLIENT_OPEN) &&
                !zk_timer_active(&retry_timer))
                zk_timer_start(&retry_timer, RETRY_MS, 0);
            return;
        }
        held = l->next;
        if (!held) held_tail = &held;
        free(l);
        handed_over(1);
    }
    maybe_close();
}

static void on_retry(zk_timer *t) {
    (void)t;
    pump();
}

/* End of input: close once everything went out and every call is answered. */
static void maybe_close(void) {
    if (!eof_seen || held || calls_pending || closing || call_mode) return;
    /* events in the offline queue go out when it opens (on_state OPEN comes
       back here); with nothing left to send, close in any state */
    if (events_queued && zk_client_state(client) != ZK_CLIENT_OPEN) return;
    closing = 1;
    zk_client_close(client);
}

static int loop_done; /* zk_loop_run returned: posted lines are only kept, to be freed */

static void on_line(zk_loop *l, void *arg) {
    line *ln = (line *)arg;
    (void)l;
    *held_tail = ln;
    held_tail = &ln->next;
    if (!loop_done) pump();
}

static void on_eof(zk_loop *l, void *arg) {
    (void)l, (void)arg;
    eof_seen = 1;
    if (!loop_done) pump();
}

/* Reads one line into buf (its newline dropped): its length, TOO_LONG
   after skipping one of more than MAX_LINE bytes, or -1 at the end. Only
   the reader thread touches stdin. */
#define TOO_LONG (-2)
static long read_line(char *buf) {
    size_t len = 0;
    int c, too_long = 0;
    while ((c = getc_unlocked(stdin)) != EOF && c != '\n') {
        if (len < MAX_LINE) buf[len++] = (char)c;
        else too_long = 1;
    }
    if (c == EOF && len == 0) return -1;
    return too_long ? TOO_LONG : (long)len;
}

static void *reader(void *arg) {
    char *buf = (char *)malloc(MAX_LINE);
    unsigned long number = 0;
    long n;
    (void)arg;
    while (buf && (n = read_line(buf)) != -1) {
        size_t len = (size_t)n;
        line *l;
        int rc = 0;
        number++;
        if (n == TOO_LONG) {
            fprintf(stderr, "zkcat: line %lu: longer than %d bytes, skipped\n", number, MAX_LINE);
            continue;
        }
        while (len && buf[len - 1] == '\r') len--;
        if (len == 0 || strspn(buf, " \t") >= len) continue;
        l = (line *)malloc(sizeof *l + len + 1);
        if (!l) {
            fprintf(stderr, "zkcat: line %lu: out of memory, skipped\n", number);
            continue;
        }
        l->next = NULL;
        l->number = number;
        l->len = len;
        memcpy(l->text, buf, len);
        l->text[len] = 0;
        pthread_mutex_lock(&ahead_lock);
        while (ahead >= MAX_AHEAD && !reader_stop) pthread_cond_wait(&ahead_cond, &ahead_lock);
        if (!reader_stop) {
            rc = zk_loop_post(loop, on_line, l);
            if (rc == 0) ahead++;
        }
        if (reader_stop) {
            pthread_mutex_unlock(&ahead_lock);
            free(l);
            free(buf);
            return NULL;
        }
        pthread_mutex_unlock(&ahead_lock);
        if (rc < 0) {
            fprintf(stderr, "zkcat: line %lu: %s, skipped\n", number, zk_strerror(rc));
            free(l);
        }
    }
    if (!buf) fprintf(stderr, "zkcat: out of memory: stdin not read\n");
    free(buf);
    pthread_mutex_lock(&ahead_lock);
    if (!reader_stop) zk_loop_post(loop, on_eof, NULL);
    pthread_mutex_unlock(&ahead_lock);
    return NULL;
}

/* ---- the connection ---- */

static void on_state(zk_client *c, int state, int code, const char *reason) {
    (void)c;
    if (state == ZK_CLIENT_OPEN) {
        /* not from here: the rejoins and the offline queue go out after
           on_state returns, and the held lines come after them */
        events_queued = 0;
        zk_timer_start(&retry_timer, 0, 0);
    } else if (state == ZK_CLIENT_RECONNECTING) {
        fprintf(stderr, "zkcat: reconnecting (%d %s)\n", code, reason ? reason : "");
    } else if (state == ZK_CLIENT_CLOSED) {
        if (closing) {
            finish(call_mode ? exit_code : 0);
        } else {
            fprintf(stderr, "zkcat: closed (%d %s)\n", code, reason ? reason : "");
            finish(code == ZK_CLOSE_NORMAL && !call_mode ? 0 : EXIT_CONNECTION);
        }
    }
}

/* ---- arguments ---- */

static uint32_t parse_ms(const char *s, const char *argv0) {
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || *s == '-' || v == 0 || v > 0xffffffffUL) usage(argv0);
    return (uint32_t)v;
}

int main(int argc, char **argv) {
    static zk_http_header headers[MAX_LIST], params[MAX_LIST];
    static const char *protocols[MAX_LIST], *rejoin_types[MAX_LIST], *rejoin_payloads[MAX_LIST];
    size_t header_count = 0, param_count = 0, protocol_count = 0, rejoin_count = 0, k;
    const char *url = NULL, *call_type = NULL, *call_payload = NULL;
    zk_client_opts opts;
    zk_timer watchdog;
    pthread_t thread;
    int i, rc = 0;

    memset(&opts, 0, sizeof opts);
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "-H") == 0 && more && header_count < MAX_LIST) {
            const char *v = argv[++i], *colon = strchr(v, ':');
            if (!colon || colon == v) usage(argv[0]);
            headers[header_count].name.ptr = v;
            headers[header_count].name.len = (size_t)(colon - v);
            colon++;
            while (*colon == ' ' || *colon == '\t') colon++;
            headers[header_count++].value = zk_str_c(colon);
        } else if (strcmp(a, "-p") == 0 && more && param_count < MAX_LIST) {
            const char *v = argv[++i], *eq = strchr(v, '=');
            if (!eq || eq == v) usage(argv[0]);
            params[param_count].name.ptr = v;
            params[param_count].name.len = (size_t)(eq - v);
            params[param_count++].value = zk_str_c(eq + 1);
        } else if (strcmp(a, "--protocol") == 0 && more && protocol_count < MAX_LIST) {
            protocols[protocol_count++] = argv[++i];
        } else if (strcmp(a, "--msgpack") == 0) {
            opts.codec = ZK_CODEC_MSGPACK;
        } else if (strcmp(a, "--timeout") == 0 && more) {
            call_timeout_ms = parse_ms(argv[++i], argv[0]);
            opts.call_timeout_ms = call_timeout_ms;
        } else if (strcmp(a, "--ping") == 0 && more) {
            opts.ping_interval_ms = parse_ms(argv[++i], argv[0]);
        } else if (strcmp(a, "--rejoin") == 0 && i + 2 < argc && rejoin_count < MAX_LIST) {
            rejoin_types[rejoin_count] = argv[++i];
            rejoin_payloads[rejoin_count++] = argv[++i];
        } else if (strcmp(a, "--no-reconnect") == 0) {
            opts.no_reconnect = 1;
        } else if (strcmp(a, "--call") == 0 && more && !call_type) {
            call_type = argv[++i];
            if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0 && strcmp(argv[i + 1], "-H") != 0 &&
                strcmp(argv[i + 1], "-p") != 0 && (url || strncmp(argv[i + 1], "ws://", 5) != 0))
                call_payload = argv[++i];
        } else if (a[0] != '-' && !url) {
            url = a;
        } else {
            usage(argv[0]);
        }
    }
    if (!url) usage(argv[0]);
    call_mode = call_type != NULL;

    loop = zk_loop_new(NULL);
    if (!loop) {
        fprintf(stderr, "zkcat: out of memory\n");
        return EXIT_ERROR;
    }
    zk_writer_init(&out, NULL, 0);
    zk_doc_init(&doc);
    opts.url = url;
    opts.headers = header_count ? headers : NULL;
    opts.header_count = header_count;
    opts.params = param_count ? params : NULL;
    opts.param_count = param_count;
    opts.protocols = protocol_count ? protocols : NULL;
    opts.protocol_count = protocol_count;
    opts.on_state = on_state;
    client = zk_client_new(loop, &opts, &rc);
    if (!client) {
        fprintf(stderr, "zkcat: %s: %s\n", url, zk_strerror(rc));
        zk_loop_free(loop);
        return rc == ZK_EINVAL ? EXIT_USAGE : EXIT_ERROR;
    }
    for (k = 0; k < rejoin_count; k++) {
        rc = zk_client_rejoin(client, rejoin_types[k], rejoin_payloads[k], strlen(rejoin_payloads[k]),
                              on_rejoin_result, (void *)(intptr_t)(k + 1));
        if (rc < 0) {
            fprintf(stderr, "zkcat: --rejoin %s %s: %s\n", rejoin_types[k], rejoin_payloads[k], zk_strerror(rc));
            closing = 1; /* no "closed" note from on_state */
            zk_client_free(client);
            zk_loop_free(loop);
            return EXIT_USAGE;
        }
    }
    zk_timer_init(loop, &retry_timer, on_retry, NULL);
    zk_timer_init(loop, &watchdog, on_call_watchdog, NULL);

    if (call_mode) {
        rc = zk_client_call(client, call_type, call_payload, call_payload ? strlen(call_payload) : 0, NULL,
                            on_call_result, NULL);
        if (rc < 0) {
            fprintf(stderr, "zkcat: --call %s: %s\n", call_type, zk_strerror(rc));
            closing = 1; /* no "closed" note from on_state */
            zk_client_free(client);
            zk_loop_free(loop);
            return rc == ZK_EINVAL ? EXIT_USAGE : EXIT_ERROR;
        }
        zk_timer_start(&watchdog, (uint64_t)call_timeout_ms + 1000, 0);
    } else {
        if (zk_client_on(client, "*", on_event, NULL) < 0 ||
            pthread_create(&thread, NULL, reader, NULL) != 0) {
            fprintf(stderr, "zkcat: cannot start\n");
            return EXIT_ERROR;
        }
        pthread_detach(thread); /* it may wait on stdin for ever: exit ends it */
    }

    rc = zk_loop_run(loop);
    if (rc < 0) {
        fprintf(stderr, "zkcat: loop: %s\n", zk_strerror(rc));
        exit_code = EXIT_ERROR;
    }
    pthread_mutex_lock(&ahead_lock);
    reader_stop = 1; /* the reader posts nothing from now on */
    pthread_cond_signal(&ahead_cond);
    pthread_mutex_unlock(&ahead_lock);
    /* lines it posted after the loop stopped: run them now, so they are
       held (and freed below) rather than dropped with the loop */
    loop_done = 1;
    zk_loop_step(loop, 0);
    zk_loop_step(loop, 0);
    if (held) fprintf(stderr, "zkcat: lines not sent: from line %lu on\n", held->number);
    while (held) {
        line *l = held;
        held = l->next;
        free(l);
    }
    zk_timer_stop(&retry_timer);
    zk_timer_stop(&watchdog);
    closing = 1;
    zk_client_free(client);
    zk_loop_free(loop);
    zk_doc_free(&doc);
    zk_writer_free(&out);
    return exit_code;
}
