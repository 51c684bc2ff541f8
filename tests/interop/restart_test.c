/* restart_test: zk_client through a killed and restarted server, on real
   sockets (tests/interop/run.sh drives it against build/chat).

   build/restart_test ws://127.0.0.1:PORT/ws

   K clients on one loop connect to /ws?name=uN and join room "r" with
   zk_client_rejoin, so every reconnect joins again before anything queued
   goes out. Once all have joined, each calls chat.send {room, text:"uN:SEQ"}
   BURST times every SEND_MS, whatever its state: while the client is not
   open the call waits in its offline queue. When each has had
   SENDS_BEFORE_READY answers, the program prints "ready"; run.sh then kills
   the server (SIGKILL) and starts it again on the same port. From "ready"
   on, each client also keeps WINDOW calls on the wire (a new one for each
   answer), so that calls are in flight when the server dies. The clients
   keep sending. After every client has reconnected and rejoined, each
   sends SENDS_AFTER more, then stops; the program checks, prints "ok NAME"
   / "FAIL NAME: why" lines ("# ..." lines are measurements) and exits 1 if
   any failed.

   What must hold, and why it is the precise contract:
   - Every client sees the server go away, reconnects and rejoins.
   - A call made while the client was not open waits in the queue and goes
     out on the new connection after the rejoin, so it must be answered ok
     (nor may any call fail but with DISCONNECTED: a call that was on the
     wire when the server died may be lost, and only those).
   - Every call answers exactly once; none is left pending.
   - A call answered ok was handled by the server, which sends chat.message
     to the room (the sender too) before answering: its echo must have come
     back to the sender, before the answer.
   - Who must get a message is who was in the room when the server handled
     it. The sender's own connection carries, in the server's order, its
     join answer (the members then), chat.joined / chat.left, and its own
     echoes; so the members at each echo are known exactly, even while the
     others are still coming back. Nobody else may get it, and nobody may
     get it twice.
   - Handled by the restarted server (echoed on the sender's last
     connection; every queued call is): every member gets it.
     Handled by the killed one: a member may miss only the tail of a
     sender's messages - the server answers the sender, and may be killed
     before it has written the same message to every other socket (and a
     killed process's sockets with unread input are reset, which throws
     away what they still held). So a member that got sender X's message
     n on that connection must have every message of X before n that it
     was due; what it misses after its last one is counted, not a failure.
   - From each sender, each receiver gets sequence numbers in increasing
     order (no duplicate, no reordering), across the restart too.
   - Messages whose call failed with DISCONNECTED may or may not have been
     delivered; they are counted, not checked.
   - Each client reconnects exactly once (a second reconnect would be a
     heartbeat or protocol failure).
   - The run is not vacuous: some calls were made while the client was
     down, and after the restart all K were in the room together.
   Every wait has a deadline. */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K 20
#define SEND_MS 10
#define BURST 4          /* calls per client every SEND_MS */
#define WINDOW 8         /* from "ready" on, calls kept on the wire per client */
#define SENDS_BEFORE_READY 20
#define SENDS_AFTER 30
#define MAX_SEQ 8000
#define JOIN_DEADLINE_MS 15000u
#define KILL_DEADLINE_MS 20000u   /* from "ready" to seeing the server go */
#define BACK_DEADLINE_MS 20000u   /* from then to everyone rejoined */
#define DRAIN_DEADLINE_MS 15000u  /* from then to the last message in */

enum { SENT_NOT = 0, SENT_OPEN, SENT_QUEUED };
enum { RES_NONE = 0, RES_OK, RES_DISCONNECTED, RES_OTHER };

typedef struct peer {
    zk_client *client;
    int index;
    char name[16];
    zk_timer send_timer;
    int opens;              /* on_open count: 1 first connection, 2 after the restart */
    int joined_on;          /* the open count at the last successful join answer */
    int saw_down;           /* the state left OPEN after "ready" */
    int join_errors;
    char join_error[96];
    uint32_t members;       /* bit per client: the room as this connection knows it */
    uint32_t next_seq;      /* sequence numbers from 1 */
    int stopped;            /* done sending */
    uint32_t after_sent;    /* sends since everyone rejoined */
    uint32_t last_seq;      /* the last one sent */
    unsigned char sent[MAX_SEQ + 1];
    unsigned char result[MAX_SEQ + 1];
    unsigned char results[MAX_SEQ + 1]; /* how many results (must be 1) */
    uint32_t expected[MAX_SEQ + 1];     /* members when the echo came; 0: no echo */
    unsigned char echo_on[MAX_SEQ + 1]; /* the connection (opens) it came on */
    unsigned char got[K][MAX_SEQ + 1];  /* times received from each sender */
    uint32_t last_from[K];
    uint32_t out_of_order;
    uint32_t bad_messages;
    uint32_t ok_results;
    uint32_t ok_before_echo;            /* answered ok, its echo not yet in */
    uint32_t pending;
    char other_error[96];
} peer;

static zk_loop *loop;
static peer *peers;
static int failures;
static int phase;            /* 0 joining, 1 sending, 2 ready (waiting for the kill),
                                3 down, 4 after (all rejoined), 5 draining */
static uint64_t phase_at;

static void report(const char *name, const char *error) {
    if (!error) {
        printf("ok %s\n", name);
    } else {
        failures++;
        printf("FAIL %s: %s\n", name, error);
    }
    fflush(stdout);
}

static int name_index(zk_str s) {
    int i = 0;
    size_t k;
    if (s.len < 2 || s.len > 3 || s.ptr[0] != 'u') return -1;
    for (k = 1; k < s.len; k++) {
        if (s.ptr[k] < '0' || s.ptr[k] > '9') return -1;
        i = i * 10 + (s.ptr[k] - '0');
    }
    return i < K ? i : -1;
}

static int str_is(zk_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

/* ---- receiving ---- */

static void on_message(zk_client *c, zk_str type, zk_value payload, void *user) {
    peer *p = (peer *)user;
    zk_str from = zk_value_str(zk_value_get(payload, "from"));
    zk_str text = zk_value_str(zk_value_get(payload, "text"));
    int j = name_index(from);
    uint32_t seq = 0;
    size_t k;
    (void)c, (void)type;
    if (j < 0 || text.len <= from.len + 1 || memcmp(text.ptr, from.ptr, from.len) != 0 ||
        text.ptr[from.len] != ':') {
        p->bad_messages++;
        return;
    }
    for (k = from.len + 1; k < text.len; k++) {
        if (text.ptr[k] < '0' || text.ptr[k] > '9' || seq > MAX_SEQ) {
            p->bad_messages++;
            return;
        }
        seq = seq * 10 + (uint32_t)(text.ptr[k] - '0');
    }
    if (seq == 0 || seq > MAX_SEQ) {
        p->bad_messages++;
        return;
    }
    if (p->got[j][seq] < 255) p->got[j][seq]++;
    if (seq <= p->last_from[j]) p->out_of_order++;
    else p->last_from[j] = seq;
    if (j == p->index && !p->expected[seq]) {
        p->expected[seq] = p->members | (1u << p->index);
        p->echo_on[seq] = (unsigned char)(p->opens < 255 ? p->opens : 255);
    }
}

static void on_room_change(zk_client *c, zk_str type, zk_value payload, void *user) {
    peer *p = (peer *)user;
    int j = name_index(zk_value_str(zk_value_get(payload, "name")));
    (void)c;
    if (j < 0) return;
    if (str_is(type, "chat.joined")) p->members |= 1u << j;
    else p->members &= ~(1u << j);
}

static void on_join(zk_client *c, const zk_result *r, void *user) {
    peer *p = (peer *)user;
    zk_value m, e;
    (void)c;
    if (!r->ok) {
        /* DISCONNECTED: the server died with the join in flight; it is made
           again on the next connection */
        if (!str_is(r->code, ZK_CODE_DISCONNECTED) && !str_is(r->code, ZK_CODE_CLOSED)) {
            p->join_errors++;
            snprintf(p->join_error, sizeof p->join_error, "%.*s %.*s", (int)r->code.len, r->code.ptr,
                     (int)r->message.len, r->message.ptr);
        }
        return;
    }
    p->members = 0;
    m = zk_value_get(r->value, "members");
    for (e = zk_value_first(m); zk_value_type(e); e = zk_value_next(e)) {
        int j = name_index(zk_value_str(e));
        if (j >= 0) p->members |= 1u << j;
    }
    p->joined_on = p->opens;
}

static void on_open(zk_client *c, int reconnect) {
    peer *p = (peer *)zk_client_data(c);
    (void)reconnect;
    p->opens++;
    p->members = 0; /* a new connection is in no room until its join */
}

static void on_state(zk_client *c, int state, int code, const char *reason) {
    peer *p = (peer *)zk_client_data(c);
    (void)code, (void)reason;
    if (state != ZK_CLIENT_OPEN && phase >= 2) p->saw_down = 1;
}

/* ---- sending ---- */

static void send_calls(peer *p, int n);

static void on_sent(zk_client *c, const zk_result *r, void *user) {
    peer *p = (peer *)zk_client_data(c);
    uint32_t seq = (uint32_t)(uintptr_t)user;
    p->pending--;
    if (p->results[seq] < 255) p->results[seq]++;
    if (r->ok) {
        p->result[seq] = RES_OK;
        p->ok_results++;
        if (!p->expected[seq]) p->ok_before_echo++;
    } else if (str_is(r->code, ZK_CODE_DISCONNECTED)) {
        p->result[seq] = RES_DISCONNECTED;
    } else {
        p->result[seq] = RES_OTHER;
        if (!p->other_error[0])
            snprintf(p->other_error, sizeof p->other_error, "u%d:%lu %s %.*s %.*s", p->index,
                     (unsigned long)seq, p->sent[seq] == SENT_QUEUED ? "(queued)" : "(sent open)",
                     (int)r->code.len, r->code.ptr, (int)r->message.len, r->message.ptr);
    }
    /* around the kill, keep WINDOW calls on the wire, so that some are in
       flight when the server dies */
    if (phase >= 2 && phase <= 3 && r->ok && p->pending < WINDOW && p->next_seq < MAX_SEQ / 2 &&
        zk_client_state(c) == ZK_CLIENT_OPEN)
        send_calls(p, WINDOW - (int)p->pending);
}

/* Calls chat.send n times (fewer when done). */
static void send_calls(peer *p, int n) {
    char payload[64];
    uint32_t seq;
    int len, rc, b;
    for (b = 0; b < n && !p->stopped; b++) {
        if (p->next_seq >= MAX_SEQ || (phase >= 4 && p->after_sent >= SENDS_AFTER)) {
            p->stopped = 1;
            zk_timer_stop(&p->send_timer);
            return;
        }
        seq = ++p->next_seq;
        len = snprintf(payload, sizeof payload, "{\"room\":\"r\",\"text\":\"%s:%lu\"}", p->name,
                       (unsigned long)seq);
        p->sent[seq] = zk_client_state(p->client) == ZK_CLIENT_OPEN ? SENT_OPEN : SENT_QUEUED;
        rc = zk_client_call(p->client, "chat.send", payload, (size_t)len, NULL, on_sent, (void *)(uintptr_t)seq);
        if (rc < 0) {
            p->sent[seq] = SENT_NOT; /* refused: no result will come */
            p->result[seq] = RES_OTHER;
            if (!p->other_error[0])
                snprintf(p->other_error, sizeof p->other_error, "u%d:%lu zk_client_call: %s", p->index,
                         (unsigned long)seq, zk_strerror(rc));
            continue;
        }
        p->pending++;
        p->last_seq = seq;
        if (phase >= 4) p->after_sent++;
    }
}

static void on_send_timer(zk_timer *t) { send_calls((peer *)t->data, BURST); }

/* ---- phases ---- */

static int count(int (*pred)(const peer *)) {
    int i, n = 0;
    for (i = 0; i < K; i++) n += pred(&peers[i]);
    return n;
}
static int is_joined(const peer *p) { return p->opens >= 1 && p->joined_on >= 1; }
static int is_warm(const peer *p) { return p->ok_results >= SENDS_BEFORE_READY; }
static int is_down(const peer *p) { return p->saw_down; }
static int is_back(const peer *p) {
    return p->saw_down && p->opens >= 2 && p->joined_on == p->opens &&
           zk_client_state(p->client) == ZK_CLIENT_OPEN;
}
/* stopped sending, every call answered, and the last message of every
   sender in (a connection delivers in order: nothing of theirs is left) */
static int is_drained(const peer *p) {
    int j;
    if (!p->stopped || p->pending) return 0;
    for (j = 0; j < K; j++)
        if (!peers[j].stopped || p->last_from[j] < peers[j].last_seq) return 0;
    return 1;
}

static void set_phase(int to) {
    phase = to;
    phase_at = zk_loop_now(loop);
}

/* Moves through the phases; 1 when done (or a deadline passed, reported). */
static int advance(void) {
    uint64_t waited = zk_loop_now(loop) - phase_at;
    char why[160];
    int i, n;
    switch (phase) {
    case 0:
        if ((n = count(is_joined)) == K) {
            report("all clients connected and joined room r", NULL);
            for (i = 0; i < K; i++) zk_timer_start(&peers[i].send_timer, SEND_MS, SEND_MS);
            set_phase(1);
        } else if (waited > JOIN_DEADLINE_MS) {
            snprintf(why, sizeof why, "%d of %d joined within %u ms", n, K, JOIN_DEADLINE_MS);
            report("all clients connected and joined room r", why);
            return 1;
        }
        return 0;
    case 1:
        if (count(is_warm) == K) {
            set_phase(2);
            for (i = 0; i < K; i++) send_calls(&peers[i], WINDOW); /* the window opens */
            printf("ready\n");
            fflush(stdout);
        } else if (waited > JOIN_DEADLINE_MS) {
            report("first messages answered", "not every client had its first answers");
            return 1;
        }
        return 0;
    case 2:
        if ((n = count(is_down)) > 0) {
            set_phase(3);
        } else if (waited > KILL_DEADLINE_MS) {
            unsigned long pending = 0;
            for (i = 0, n = 0; i < K; i++) {
                n += zk_client_state(peers[i].client) == ZK_CLIENT_OPEN;
                pending += peers[i].pending;
            }
            snprintf(why, sizeof why, "no client saw the connection drop (was the server killed?); "
                     "%d of %d open, %lu calls unanswered", n, K, pending);
            report("the server went away", why);
            return 1;
        }
        return 0;
    case 3:
        if (count(is_back) == K) {
            report("every client saw the server go, reconnected and rejoined", NULL);
            set_phase(4);
        } else if (waited > BACK_DEADLINE_MS) {
            snprintf(why, sizeof why, "%d of %d saw it go, %d of %d back and rejoined within %u ms",
                     count(is_down), K, count(is_back), K, BACK_DEADLINE_MS);
            report("every client saw the server go, reconnected and rejoined", why);
            return 1;
        }
        return 0;
    case 4:
        if (count(is_drained) == K) return 1;
        if (waited > DRAIN_DEADLINE_MS) {
            snprintf(why, sizeof why, "%d of %d clients got everything within %u ms", count(is_drained), K,
                     DRAIN_DEADLINE_MS);
            report("the last messages arrived", why);
            return 1;
        }
        return 0;
    }
    return 1;
}

/* ---- the checks ---- */

static void check(void) {
    unsigned long queued = 0, queued_ok = 0, open_sent = 0, ok = 0, disconnected = 0, lost_delivered = 0;
    unsigned long due_last = 0, due_killed = 0, missing = 0, gaps = 0, tail = 0, extra = 0, dup = 0;
    unsigned long no_echo = 0, multi_result = 0, pending = 0, order = 0, bad = 0;
    unsigned long full_room_after = 0, echoed_after = 0, reconnects_bad = 0, early = 0;
    char why[256], first[160] = "";
    const char *other = NULL;
    int i, j;
    uint32_t all = (K == 32) ? 0xffffffffu : ((1u << K) - 1);

    for (j = 0; j < K; j++) {
        peer *s = &peers[j];
        uint32_t seq, last_got[K];
        int final_conn = s->opens;
        if (s->opens != 2) reconnects_bad++;
        if (s->join_errors && !other) other = s->join_error;
        if (s->other_error[0] && !other) other = s->other_error;
        pending += s->pending;
        /* per receiver: the last of j's messages it got on a connection that
           was later killed (tail losses are allowed after it, not before) */
        for (i = 0; i < K; i++) {
            last_got[i] = 0;
            for (seq = 1; seq <= s->next_seq; seq++)
                if (s->expected[seq] && s->echo_on[seq] != final_conn && peers[i].got[j][seq]) last_got[i] = seq;
        }
        for (seq = 1; seq <= s->next_seq; seq++) {
            uint32_t m = s->expected[seq];
            if (s->sent[seq] == SENT_NOT) continue;
            if (s->results[seq] != 1) multi_result++;
            if (s->sent[seq] == SENT_QUEUED) {
                queued++;
                if (s->result[seq] == RES_OK) queued_ok++;
                else if (!first[0])
                    snprintf(first, sizeof first, "u%d:%lu queued while down, result %s", j, (unsigned long)seq,
                             s->result[seq] == RES_DISCONNECTED ? "DISCONNECTED" : "not ok");
            } else {
                open_sent++;
            }
            if (s->result[seq] == RES_OK) ok++;
            if (s->result[seq] == RES_DISCONNECTED) {
                disconnected++;
                if (m) lost_delivered++;
            }
            if (s->result[seq] == RES_OK && !m) no_echo++;
            if (seq + SENDS_AFTER > s->last_seq) {
                if (m) echoed_after++;
                if (m == all) full_room_after++;
            }
            for (i = 0; i < K; i++) {
                unsigned g = peers[i].got[j][seq];
                if (g > 1) dup++;
                if (!m || !(m & (1u << i))) {
                    if (g && m) extra++; /* (no echo: lost at the kill, may have reached some) */
                    continue;
                }
                if (s->echo_on[seq] == final_conn) {
                    due_last++;
                    if (!g) missing++;
                } else {
                    due_killed++;
                    if (!g && seq < last_got[i]) gaps++;
                    else if (!g) tail++;
                }
            }
        }
    }
    for (i = 0; i < K; i++) {
        order += peers[i].out_of_order;
        bad += peers[i].bad_messages;
    }

    printf("# %lu calls: %lu made while open, %lu while down (queued); %lu ok, %lu DISCONNECTED "
           "(in flight at the kill; %lu of those delivered anyway)\n",
           open_sent + queued, open_sent, queued, ok, disconnected, lost_delivered);
    printf("# deliveries due: %lu by the killed server (%lu lost at the kill, as a tail), %lu by the restarted one\n",
           due_killed, tail, due_last);

    report("calls were made while down (the test is not vacuous)",
           queued ? NULL : "none: the restart was too quick to see");
    snprintf(why, sizeof why, "%lu of %lu not ok; first: %s", queued - queued_ok, queued, first);
    report("every call made while down was queued and answered ok", queued_ok == queued ? NULL : why);
    snprintf(why, sizeof why, "%s", other ? other : "");
    report("no call failed but with DISCONNECTED (in flight at the kill)", other ? why : NULL);
    snprintf(why, sizeof why, "%lu calls with other than one result, %lu left pending", multi_result, pending);
    report("every call answered exactly once", multi_result || pending ? why : NULL);
    for (i = 0; i < K; i++) early += peers[i].ok_before_echo;
    snprintf(why, sizeof why, "%lu calls answered ok before their echo came, %lu never echoed", early, no_echo);
    report("every call answered ok was echoed to its sender first", no_echo || early ? why : NULL);
    snprintf(why, sizeof why, "%lu of %lu deliveries due after the restart missing", missing, due_last);
    report("after the restart every message reached every member", missing ? why : NULL);
    snprintf(why, sizeof why, "%lu deliveries missing before a later one from the same sender", gaps);
    report("before the kill only a tail of messages was lost", gaps ? why : NULL);
    snprintf(why, sizeof why, "%lu duplicated deliveries, %lu to non-members", dup, extra);
    report("no message reached anyone twice, nor a non-member", dup || extra ? why : NULL);
    snprintf(why, sizeof why, "%lu messages out of order or repeated, %lu malformed", order, bad);
    report("each sender's messages arrived in order at every receiver", order || bad ? why : NULL);
    snprintf(why, sizeof why, "%lu clients did not reconnect exactly once", reconnects_bad);
    report("each client reconnected exactly once", reconnects_bad ? why : NULL);
    snprintf(why, sizeof why, "%lu of the last %d messages of each sender (%lu echoed) reached all %d",
             full_room_after, SENDS_AFTER, echoed_after, K);
    report("after the restart all clients were in the room together",
           full_room_after == (unsigned long)K * SENDS_AFTER ? NULL : why);
}

int main(int argc, char **argv) {
    char url[512];
    uint64_t started;
    int i, rc = 0, done = 0;

    if (argc != 2 || strncmp(argv[1], "ws://", 5) != 0 || strlen(argv[1]) > 400) {
        fprintf(stderr, "usage: %s ws://127.0.0.1:PORT/ws\n", argv[0]);
        return 2;
    }
    loop = zk_loop_new(NULL);
    peers = (peer *)calloc(K, sizeof *peers);
    if (!loop || !peers) {
        fprintf(stderr, "out of memory\n");
        return 2;
    }
    set_phase(0);
    for (i = 0; i < K; i++) {
        peer *p = &peers[i];
        zk_client_opts o;
        memset(&o, 0, sizeof o);
        p->index = i;
        snprintf(p->name, sizeof p->name, "u%d", i);
        snprintf(url, sizeof url, "%s?name=%s", argv[1], p->name);
        o.url = url;
        o.backoff_base_ms = 100; /* come back soon after the restart */
        o.backoff_max_ms = 1000;
        o.on_state = on_state;
        o.on_open = on_open;
        o.data = p;
        zk_timer_init(loop, &p->send_timer, on_send_timer, p);
        p->client = zk_client_new(loop, &o, &rc);
        if (!p->client || zk_client_rejoin(p->client, "chat.join", "{\"room\":\"r\"}", 12, on_join, p) < 0 ||
            zk_client_on(p->client, "chat.message", on_message, p) < 0 ||
            zk_client_on(p->client, "chat.joined", on_room_change, p) < 0 ||
            zk_client_on(p->client, "chat.left", on_room_change, p) < 0) {
            fprintf(stderr, "client %d: %s\n", i, zk_strerror(rc));
            return 2;
        }
    }
    started = zk_loop_now(loop);
    while (!done) {
        if (zk_loop_step(loop, 20) < 0) break;
        done = advance();
    }
    if (phase >= 4) check();
    printf("# %.1f s\n", (double)(zk_loop_now(loop) - started) / 1000.0);
    for (i = 0; i < K; i++) {
        zk_timer_stop(&peers[i].send_timer);
        zk_client_free(peers[i].client);
    }
    free(peers);
    zk_loop_free(loop);
    return failures ? 1 : 0;
}
