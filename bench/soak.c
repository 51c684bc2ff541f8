/* soak: thousands of zk_clients chatting through build/chat for minutes,
   over real 127.0.0.1 sockets (bench/run_soak.sh starts the server and
   runs this).

   build/soak --url ws://127.0.0.1:PORT/ws [--server-pid PID] [--clients N]
              [--rooms R] [--seconds S] [--interval-ms MS] [--churn PCT]
              [--text-bytes B] [--sample-s S] [--seed X]

   N clients (5000) on one loop, in this one process, connect to the chat
   server (examples/chat.c) as /ws?name=uK and join room "r(K mod R)" (R =
   50: 100 clients a room) with zk_client_rejoin, so a reconnect joins
   again. Once all have joined, for S seconds (180): each client calls
   chat.send {room, text:"K:SEQ:xxx..."} (text padded to B bytes, 32) at
   random intervals, uniform in [0, 2 MS] (MS 2000: one message per 2 s per
   client on average, 2,500 a second in all, 250,000 deliveries a second
   out of the server); the server sends chat.message {room, from, text} to
   every member of the room, the sender too. Every message received is
   checked: the room is the receiver's, the sender's name matches its text,
   and from each sender the receiver sees SEQ grow (the same SEQ twice is a
   duplicate, a smaller one out of order). Calls that fail are counted by
   code. Churn: every 60 / (N x PCT / 100) s (PCT 1: 1% of the clients a
   minute) one client, picked at random, goes away and a new one takes its
   place under the same name: in turn, one that first leaves its room
   (chat.leave, then the client is freed) and one freed while still in its
   room (the server then sends chat.left for it). A new client starts
   connecting at once.

   What a receiver must get. A message is due to a member of its room when
   the server handled it while the member was in the room. From one
   process, that is known for sure when both of these hold, and only such
   deliveries are counted as expected:
   - the call was made after the member's join answer came back (the
     server handled the join first: the call had not been sent yet), and
   - its ok answer came back before the member started to go (a leave or a
     close made then reaches the server after it handled the message).
   Messages in between (made before the join answer came, answered after the
   member started to go, or whose call failed: its fate is unknown) may
   arrive or not; they are counted as "outside the window", never as
   losses. The end of a member's time in the room is settled by an answer on
   its own connection, which the server sends after everything it queued
   before: chat.leave's answer for a client that leaves, and at the end of
   the run a chat.rooms call each, made when every send has been answered.
   So an expected message that did not arrive is a loss, with why:
   - a gap: a later message of the same sender arrived, this one did not;
   - missing at a leave or at the end: nothing later from that sender came,
     but the answer that settles the window did;
   - in transit at a close: the client was freed while still in its room,
     so messages already on their way are thrown away with the connection
     (expected of a close, not a loss of the server's);
   - with a dropped connection: the client's connection failed on its own
     (heartbeat, reset), which should not happen here.
   Messages sent to the room while a churned client was away are counted
   too ("missed while reconnecting": not due).

   The server (with --server-pid): VmRSS from /proc/PID/status, the number
   of open descriptors in /proc/PID/fd, and utime+stime from /proc/PID/stat,
   read before any client connects ("before"), once every client has joined
   ("start"), every --sample-s seconds (10), once the load stopped, and at
   the end, after every client was freed and the server's descriptor count
   came back down (waited for, at most 30 s). This process's own VmRSS is
   reported at the same points (it grows with the log of sends the checks
   need: 16 bytes per message, in arrays that double). Also reported: delivery latency
   (call made to message received, p50 / p99 / max, overall and per
   sample), and how long a replaced or dropped client took to be back in
   its room.

   Exit status 0 when everything held:
   - every client connected and joined (within 60 s);
   - no duplicate and no out-of-order message, nothing misrouted;
   - no loss that the server is to blame for (gaps, missing at a leave or
     at the end);
   - every call answered by the end (within 30 s after the load stopped);
   - the server's room counts (chat.rooms) match the clients, at the end;
   - the server's descriptor count at the end equals "before";
   - the server's peak VmRSS (over every sample from "start" on) is at most
     start + 10% of start + 16 MiB: 10% for allocator slack on what the
     connections hold, 16 MiB for what the load brings in on top of an idle
     start - the loop's shared buffers and its spare write chunks (it keeps
     as many 16 KiB chunks as its queues held at once in the last second,
     up to one per connection written to in a pass; with short messages
     one 4 KiB page of each is resident), and the heap glibc keeps after
     freeing them. The bound is for a server that keeps up: one starved of
     CPU (latency rising sample after sample) writes to more connections
     per pass and may pass it with no leak; the growth over the second half
     of the load, printed too, tells a leak (steady growth) from that (a
     plateau).
   1 otherwise, 2 for bad arguments. Every wait has a deadline; pacing is by
   zk_timer, on the loop's clock. The last line, "RESULT key=value ...", is
   for scripts. */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 20000
#define MAX_SECONDS 86400
#define JOIN_DEADLINE_MS 60000u   /* from the first connect to every client joined */
#define DRAIN_DEADLINE_MS 30000u  /* after the load: every call answered, churn done */
#define BARRIER_DEADLINE_MS 30000u
#define FD_DEADLINE_MS 30000u     /* clients freed: the server's fds back down */
#define RAMP_BATCH 250            /* clients started per ramp tick */
#define RAMP_MS 50
#define HIST_MS 65536             /* latency histogram: 1 ms buckets, the last one "more" */
#define MAX_ERROR_KINDS 64
#define NONE 0xffffffffu
#define RSS_SLACK_KIB (16u * 1024u)

enum { ST_PENDING = 1, ST_OK, ST_FAILED };

/* Where a slot is: a client per slot at a time, replaced on churn. */
enum {
    P_JOINING = 1, /* connecting, or waiting for the join answer */
    P_JOINED,      /* in the room: sends and counts */
    P_LEAVING,     /* churn: chat.leave made, its answer settles the window */
    P_DOWN,        /* the connection dropped: the client reconnects and rejoins */
    P_REPLACE,     /* to be freed and made again (a timer, outside its callbacks) */
    P_BARRIER,     /* the end: chat.rooms made, its answer settles the window */
    P_DONE         /* the end: counted */
};

/* Why a member's window closed: what its missing tail is called. */
enum { END_LEAVE, END_LEAVE_FAILED, END_CLOSE, END_DROP, END_FINAL, END_KINDS };
static const char *const end_names[END_KINDS] = {"missing at a leave", "around a failed leave",
                                                 "in transit at a close", "with a dropped connection",
                                                 "missing at the end"};

typedef struct message {
    uint32_t sent_ms;  /* on the loop's clock, from the start */
    uint32_t acked_at; /* the ack counter when its ok answer came */
    unsigned char status;
} message;

typedef struct gap {
    uint32_t sender; /* index in the room */
    uint32_t from, to; /* SEQs not received, inclusive */
} gap;

typedef struct slot {
    uint32_t id, room, members;
    char name[16], room_name[16];
    zk_client *client;
    int phase, freeing;
    zk_timer send_timer, action_timer;
    /* the messages this slot sent, by SEQ: ids into messages[] */
    uint32_t *ids, next_seq, ids_cap;
    /* this window, per sender (index in the room) */
    uint32_t *lo;        /* the sender's next SEQ when the join answer came */
    uint32_t *first, *last; /* received, or NONE */
    uint32_t *away_from; /* the sender's next SEQ when the last window closed, or NONE */
    gap *gaps;
    size_t gap_count, gap_cap;
    uint64_t received; /* in this window */
    uint32_t end_mark;   /* the ack counter when the window started to close */
    uint64_t made_at;    /* the loop's clock when the client was made or the connection dropped */
} slot;

static struct {
    const char *url;
    long server_pid;
    uint32_t clients, rooms, seconds, interval_ms, text_bytes, sample_s;
    double churn_pct;
    uint64_t seed;
} opt;

static zk_loop *loop;
static slot *slots;
static message *messages;
static size_t message_count, message_cap;
static uint32_t ack_counter = 1;
static uint64_t t0_ms;        /* the loop's clock at the start of the load */
static int sending, churning, finishing, out_of_memory;

static struct {
    uint64_t sent, acked, failed, send_refused, skipped_not_joined;
    uint64_t delivered, expected, delivered_expected, outside;
    uint64_t duplicates, out_of_order, misrouted, unexpected_state;
    uint64_t gap_losses, tail_losses[END_KINDS];
    uint64_t missed_away;
    uint64_t churns, churn_graceful, churn_close, drops, connect_retries;
    uint64_t rooms_answers, rooms_bad;
    uint64_t other_events;
} st;

typedef struct error_kind {
    char what[16], code[48];
    uint64_t count;
} error_kind;
static error_kind errors[MAX_ERROR_KINDS];
static size_t error_kinds;
static uint64_t errors_other; /* past MAX_ERROR_KINDS kinds */

static uint64_t *hist_all, *hist_now; /* delivery latency, ms */
static uint32_t *rejoin_ms; /* replacements and drops: from zk_client_new (or the drop) to the join answer */
static size_t rejoin_count, rejoin_cap;

/* ---- small helpers ---- */

static void count_error(const char *what, const char *code, size_t code_len) {
    size_t i, n = code_len < sizeof errors[0].code - 1 ? code_len : sizeof errors[0].code - 1;
    for (i = 0; i < error_kinds; i++)
        if (strcmp(errors[i].what, what) == 0 && strlen(errors[i].code) == n && memcmp(errors[i].code, code, n) == 0) {
            errors[i].count++;
            return;
        }
    if (error_kinds == MAX_ERROR_KINDS) {
        errors_other++;
        return;
    }
    snprintf(errors[error_kinds].what, sizeof errors[0].what, "%s", what);
    memcpy(errors[error_kinds].code, code, n);
    errors[error_kinds].code[n] = '\0';
    errors[error_kinds].count = 1;
    error_kinds++;
}

static void count_result_error(const char *what, const zk_result *r) {
    if (r->code.len) count_error(what, r->code.ptr, r->code.len);
    else count_error(what, "?", 1);
}

static uint64_t error_total(void) {
    uint64_t n = errors_other;
    size_t i;
    for (i = 0; i < error_kinds; i++) n += errors[i].count;
    return n;
}

static uint32_t now_ms(void) { return (uint32_t)(zk_loop_now(loop) - t0_ms); }

static uint32_t member_slot(uint32_t room, uint32_t index) { return index * opt.rooms + room; }

static uint64_t random_below(uint64_t n) { return n ? zk_loop_random(loop) % n : 0; }

static int grow(void **p, size_t *cap, size_t need, size_t size) {
    size_t n = *cap ? *cap : 16;
    void *q;
    if (need <= *cap) return 0;
    while (n < need) n *= 2;
    q = realloc(*p, n * size);
    if (!q) {
        out_of_memory = 1;
        return -1;
    }
    *p = q;
    *cap = n;
    return 0;
}

/* ---- /proc ---- */

typedef struct proc_sample {
    long rss_kib;   /* VmRSS, -1 when unreadable */
    long fds;       /* entries in /proc/PID/fd, -1 when unreadable */
    long long ticks; /* utime + stime, -1 when unreadable */
} proc_sample;

static long status_kib(const char *pid, const char *field) {
    char path[64], line[256];
    size_t n = strlen(field);
    long v = -1;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%s/status", pid);
    if (!(f = fopen(path, "r"))) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static long count_fds(const char *pid) {
    char path[64];
    struct dirent *e;
    long n = 0;
    DIR *d;
    snprintf(path, sizeof path, "/proc/%s/fd", pid);
    if (!(d = opendir(path))) return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static long long proc_ticks(const char *pid) {
    char path[64], buf[1024], *p;
    unsigned long long ut, stime;
    size_t n;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    if (!(f = fopen(path, "r"))) return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (!(p = strrchr(buf, ')'))) return -1;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stime) != 2) return -1;
    return (long long)(ut + stime);
}

static proc_sample sample_server(void) {
    proc_sample s = {-1, -1, -1};
    char pid[32];
    if (opt.server_pid <= 0) return s;
    snprintf(pid, sizeof pid, "%ld", opt.server_pid);
    s.rss_kib = status_kib(pid, "VmRSS");
    s.fds = count_fds(pid);
    s.ticks = proc_ticks(pid);
    return s;
}

static long self_rss_kib(void) { return status_kib("self", "VmRSS"); }

static double cpu_seconds_self(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---- latency ---- */

static void hist_add(uint32_t ms) {
    uint32_t b = ms < HIST_MS - 1 ? ms : HIST_MS - 1;
    hist_all[b]++;
    hist_now[b]++;
}

static uint64_t hist_total(const uint64_t *h) {
    uint64_t n = 0;
    size_t i;
    for (i = 0; i < HIST_MS; i++) n += h[i];
    return n;
}

/* The q-quantile in ms (the last bucket reads as HIST_MS - 1: "at least"). */
static uint32_t hist_quantile(const uint64_t *h, double q) {
    uint64_t total = hist_total(h), want, seen = 0;
    size_t i;
    if (!total) return 0;
    want = (uint64_t)(q * (double)total);
    if (want >= total) want = total - 1;
    for (i = 0; i < HIST_MS; i++) {
        seen += h[i];
        if (seen > want) return (uint32_t)i;
    }
    return HIST_MS - 1;
}

static uint32_t hist_max(const uint64_t *h) {
    size_t i = HIST_MS;
    while (i > 0 && !h[i - 1]) i--;
    return i ? (uint32_t)(i - 1) : 0;
}

/* ---- windows: from a join answer to the answer that settles the end ---- */

static int u32_cmp(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int gap_cmp(const void *a, const void *b) {
    const gap *x = (const gap *)a, *y = (const gap *)b;
    if (x->sender != y->sender) return x->sender < y->sender ? -1 : 1;
    return x->from < y->from ? -1 : x->from > y->from;
}

static void start_window(slot *me) {
    uint32_t j;
    if (sending && grow((void **)&rejoin_ms, &rejoin_cap, rejoin_count + 1, sizeof *rejoin_ms) == 0)
        rejoin_ms[rejoin_count++] = (uint32_t)(zk_loop_now(loop) - me->made_at);
    me->phase = P_JOINED;
    me->received = 0;
    me->gap_count = 0;
    for (j = 0; j < me->members; j++) {
        const slot *s = &slots[member_slot(me->room, j)];
        me->lo[j] = s->next_seq;
        me->first[j] = me->last[j] = NONE;
        if (me->away_from[j] != NONE) st.missed_away += s->next_seq - me->away_from[j];
    }
}

/* The window is over: messages due (ok, made after the join answer,
   answered before end_mark) against what came. */
static void close_window(slot *me, int kind, uint32_t end_mark) {
    uint64_t expected = 0, got = 0;
    size_t g = 0;
    uint32_t j, q;
    if (me->gap_count > 1) qsort(me->gaps, me->gap_count, sizeof *me->gaps, gap_cmp);
    for (j = 0; j < me->members; j++) {
        const slot *s = &slots[member_slot(me->room, j)];
        uint32_t first = me->first[j], last = me->last[j];
        while (g < me->gap_count && me->gaps[g].sender < j) g++;
        for (q = me->lo[j]; q < s->next_seq; q++) {
            const message *m = &messages[s->ids[q]];
            int in_gap;
            if (m->status != ST_OK || m->acked_at >= end_mark) continue;
            expected++;
            while (g < me->gap_count && me->gaps[g].sender == j && me->gaps[g].to < q) g++;
            in_gap = g < me->gap_count && me->gaps[g].sender == j && me->gaps[g].from <= q;
            if (first != NONE && q >= first && q <= last && !in_gap) got++;
            else if (first != NONE && q < last) st.gap_losses++;
            else st.tail_losses[kind]++;
        }
        while (g < me->gap_count && me->gaps[g].sender == j) g++;
        me->away_from[j] = s->next_seq;
    }
    st.expected += expected;
    st.delivered_expected += got;
    st.outside += me->received - got;
    me->received = 0;
    me->gap_count = 0;
}

/* ---- clients ---- */

static void on_joined(zk_client *c, const zk_result *r, void *user);
static void start_barrier(slot *me);
static void on_state(zk_client *c, int state, int code, const char *reason);
static void on_chat_message(zk_client *c, zk_str type, zk_value payload, void *user);
static void on_other_event(zk_client *c, zk_str type, zk_value payload, void *user);

static int make_client(slot *me) {
    char url[600], payload[64];
    zk_client_opts o;
    int rc = 0, n;
    memset(&o, 0, sizeof o);
    snprintf(url, sizeof url, "%s?name=%s", opt.url, me->name);
    o.url = url;
    o.on_state = on_state;
    o.data = me;
    me->phase = P_JOINING;
    me->made_at = zk_loop_now(loop);
    me->client = zk_client_new(loop, &o, &rc);
    if (!me->client) {
        fprintf(stderr, "soak: zk_client_new(%s): %s\n", url, zk_strerror(rc));
        return rc ? rc : ZK_ENOMEM;
    }
    n = snprintf(payload, sizeof payload, "{\"room\":\"%s\"}", me->room_name);
    /* the join on every connection, the first too */
    if ((rc = zk_client_rejoin(me->client, "chat.join", payload, (size_t)n, on_joined, me)) < 0 ||
        (rc = zk_client_on(me->client, "chat.message", on_chat_message, me)) < 0 ||
        (rc = zk_client_on(me->client, "*", on_other_event, me)) < 0) {
        fprintf(stderr, "soak: client %s: %s\n", me->name, zk_strerror(rc));
        return rc;
    }
    return 0;
}

static void free_client(slot *me) {
    if (!me->client) return;
    me->freeing = 1; /* its callbacks (CLOSED answers) run now: not about this slot's state */
    zk_client_free(me->client);
    me->freeing = 0;
    me->client = NULL;
}

static int is_mine(const slot *me, const zk_client *c) { return me->client == c && !me->freeing; }

static void on_joined(zk_client *c, const zk_result *r, void *user) {
    slot *me = (slot *)user;
    if (!r->ok) count_result_error("chat.join", r);
    if (!is_mine(me, c)) return;
    if (!r->ok) {
        /* DISCONNECTED: the rejoin comes with the next connection; else try again in a second */
        if (!(r->code.len == 12 && memcmp(r->code.ptr, "DISCONNECTED", 12) == 0) &&
            zk_client_state(c) == ZK_CLIENT_OPEN && me->phase == P_JOINING)
            zk_timer_start(&me->action_timer, 1000, 0);
        return;
    }
    if (me->phase != P_JOINING && me->phase != P_DOWN) return;
    start_window(me);
    if (finishing) start_barrier(me); /* back after a drop at the very end */
}

static void on_state(zk_client *c, int state, int code, const char *reason) {
    slot *me = (slot *)zk_client_data(c);
    if (!is_mine(me, c) || state == ZK_CLIENT_OPEN) return;
    if (me->phase == P_JOINED || me->phase == P_LEAVING || me->phase == P_BARRIER) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "close %d", code);
        count_error("connection", buf, (size_t)n);
        st.drops++;
        close_window(me, END_DROP, ack_counter);
        /* a churn in progress goes on with a new client; the end waits for the rejoin */
        if (me->phase == P_LEAVING) {
            me->phase = P_REPLACE;
            zk_timer_start(&me->action_timer, 0, 0);
        } else {
            me->phase = P_DOWN;
            me->made_at = zk_loop_now(loop);
        }
    } else if (me->phase == P_JOINING || me->phase == P_DOWN) {
        char buf[48];
        int n = snprintf(buf, sizeof buf, "retry %d %.30s", code, reason ? reason : "");
        count_error("connect", buf, (size_t)n);
        st.connect_retries++;
    }
    if (state == ZK_CLIENT_CLOSED && me->phase != P_REPLACE) { /* closed for good: make another */
        char buf[48];
        int n = snprintf(buf, sizeof buf, "closed for good %d", code);
        count_error("connection", buf, (size_t)n);
        me->phase = P_REPLACE;
        zk_timer_start(&me->action_timer, 1000, 0);
    }
}

/* "K:SEQ:..." -> K, SEQ; 0 when malformed. */
static int parse_text(zk_str text, uint32_t *sender, uint32_t *seq) {
    char buf[32], *end;
    size_t n = text.len < sizeof buf - 1 ? text.len : sizeof buf - 1;
    unsigned long a, b;
    memcpy(buf, text.ptr, n);
    buf[n] = '\0';
    a = strtoul(buf, &end, 10);
    if (end == buf || *end != ':') return 0;
    b = strtoul(end + 1, &end, 10);
    if (*end != ':' || a >= opt.clients || b >= NONE) return 0;
    *sender = (uint32_t)a;
    *seq = (uint32_t)b;
    return 1;
}

static void on_chat_message(zk_client *c, zk_str type, zk_value payload, void *user) {
    slot *me = (slot *)user;
    zk_str room = zk_value_str(zk_value_get(payload, "room"));
    zk_str from = zk_value_str(zk_value_get(payload, "from"));
    zk_str text = zk_value_str(zk_value_get(payload, "text"));
    uint32_t sender, seq, j, last;
    const slot *s;
    (void)type;
    if (!is_mine(me, c)) return;
    st.delivered++;
    if (!parse_text(text, &sender, &seq) || room.len != strlen(me->room_name) ||
        memcmp(room.ptr, me->room_name, room.len) != 0 || sender % opt.rooms != me->room) {
        st.misrouted++;
        return;
    }
    s = &slots[sender];
    if (from.len != strlen(s->name) || memcmp(from.ptr, s->name, from.len) != 0 || seq >= s->next_seq) {
        st.misrouted++;
        return;
    }
    if (me->phase != P_JOINED && me->phase != P_LEAVING && me->phase != P_BARRIER) {
        st.unexpected_state++;
        return;
    }
    hist_add(now_ms() - messages[s->ids[seq]].sent_ms);
    j = sender / opt.rooms;
    last = me->last[j];
    if (last == NONE) {
        me->first[j] = me->last[j] = seq;
        me->received++;
    } else if (seq == last) {
        st.duplicates++;
    } else if (seq < last) {
        st.out_of_order++;
    } else {
        if (seq > last + 1) {
            if (grow((void **)&me->gaps, &me->gap_cap, me->gap_count + 1, sizeof *me->gaps) == 0) {
                me->gaps[me->gap_count].sender = j;
                me->gaps[me->gap_count].from = last + 1;
                me->gaps[me->gap_count].to = seq - 1;
                me->gap_count++;
            }
        }
        me->last[j] = seq;
        me->received++;
    }
}

static void on_other_event(zk_client *c, zk_str type, zk_value payload, void *user) {
    (void)c;
    (void)payload;
    (void)user;
    if (type.len == 7 && memcmp(type.ptr, "__error", 7) == 0) count_error("event", "__error", 7);
    else if (!(type.len == 12 && memcmp(type.ptr, "chat.message", 12) == 0)) st.other_events++;
}

/* ---- sending ---- */

static void on_sent(zk_client *c, const zk_result *r, void *user) {
    message *m = &messages[(size_t)(uintptr_t)user];
    (void)c;
    if (r->ok) {
        m->status = ST_OK;
        m->acked_at = ack_counter++;
        st.acked++;
    } else {
        m->status = ST_FAILED;
        st.failed++;
        count_result_error("chat.send", r);
    }
}

static void send_one(slot *me) {
    char payload[512], text[300];
    size_t id = message_count;
    uint32_t seq = me->next_seq;
    message *m;
    int n, rc;
    size_t cap = me->ids_cap;
    if (grow((void **)&messages, &message_cap, message_count + 1, sizeof *messages) < 0 ||
        grow((void **)&me->ids, &cap, (size_t)seq + 1, sizeof *me->ids) < 0)
        return;
    me->ids_cap = (uint32_t)cap;
    n = snprintf(text, sizeof text, "%u:%u:", (unsigned)me->id, (unsigned)seq);
    while ((uint32_t)n < opt.text_bytes && n < (int)sizeof text - 1) text[n++] = 'x';
    text[n] = '\0';
    n = snprintf(payload, sizeof payload, "{\"room\":\"%s\",\"text\":\"%s\"}", me->room_name, text);
    m = &messages[id];
    m->sent_ms = now_ms();
    m->acked_at = 0;
    m->status = ST_PENDING;
    me->ids[seq] = (uint32_t)id;
    me->next_seq++;
    message_count++;
    st.sent++;
    rc = zk_client_call(me->client, "chat.send", payload, (size_t)n, NULL, on_sent, (void *)(uintptr_t)id);
    if (rc < 0) {
        messages[id].status = ST_FAILED;
        st.send_refused++;
        count_error("chat.send", zk_err_name(rc), strlen(zk_err_name(rc)));
    }
}

static void on_send_timer(zk_timer *t) {
    slot *me = (slot *)t->data;
    if (!sending) return;
    if (me->phase == P_JOINED) send_one(me);
    else st.skipped_not_joined++;
    zk_timer_start(t, 1 + random_below(2 * (uint64_t)opt.interval_ms), 0);
}

/* ---- churn ---- */

static void on_left(zk_client *c, const zk_result *r, void *user) {
    slot *me = (slot *)user;
    if (!r->ok) count_result_error("chat.leave", r);
    if (!is_mine(me, c)) return;
    if (me->phase == P_LEAVING) close_window(me, r->ok ? END_LEAVE : END_LEAVE_FAILED, me->end_mark);
    if (me->phase == P_LEAVING || me->phase == P_DOWN) {
        me->phase = P_REPLACE; /* freed by the timer: not from its own callback */
        zk_timer_start(&me->action_timer, 0, 0);
    }
}

static void replace(slot *me) {
    free_client(me);
    if (make_client(me) < 0) out_of_memory = 1;
}

static void on_action_timer(zk_timer *t) {
    slot *me = (slot *)t->data;
    char payload[64];
    int n;
    if (me->phase == P_REPLACE) {
        replace(me);
    } else if (me->phase == P_JOINING && me->client && zk_client_state(me->client) == ZK_CLIENT_OPEN) {
        n = snprintf(payload, sizeof payload, "{\"room\":\"%s\"}", me->room_name);
        if (zk_client_call(me->client, "chat.join", payload, (size_t)n, NULL, on_joined, me) < 0)
            zk_timer_start(t, 1000, 0);
    }
}

static void churn_one(slot *me) {
    char payload[64];
    int n, rc;
    st.churns++;
    if (st.churns % 2) { /* leave first, then free */
        st.churn_graceful++;
        me->end_mark = ack_counter;
        me->phase = P_LEAVING;
        n = snprintf(payload, sizeof payload, "{\"room\":\"%s\"}", me->room_name);
        rc = zk_client_call(me->client, "chat.leave", payload, (size_t)n, NULL, on_left, me);
        if (rc < 0) {
            count_error("chat.leave", zk_err_name(rc), strlen(zk_err_name(rc)));
            close_window(me, END_LEAVE_FAILED, me->end_mark);
            me->phase = P_REPLACE;
            zk_timer_start(&me->action_timer, 0, 0);
        }
    } else { /* freed while in the room */
        st.churn_close++;
        close_window(me, END_CLOSE, ack_counter);
        me->phase = P_REPLACE;
        replace(me);
    }
}

static void on_churn_timer(zk_timer *t) {
    int tries;
    (void)t;
    if (!churning) return;
    for (tries = 0; tries < 20; tries++) {
        slot *me = &slots[random_below(opt.clients)];
        if (me->phase == P_JOINED) {
            churn_one(me);
            return;
        }
    }
}

/* ---- the run ---- */

typedef struct timed_sample {
    uint32_t t_ms;
    proc_sample srv;
    long self_kib;
} timed_sample;

static timed_sample *series; /* start, every sample, load stopped */
static size_t series_count, series_cap;
static proc_sample srv_before, srv_start, srv_last, srv_loaded, srv_end;
static long srv_peak_kib = -1, self_start_kib, self_peak_kib;
static uint64_t last_delivered, last_sent, last_sample_ms;
static long hz;

static int count_phase(int phase) {
    uint32_t i;
    int n = 0;
    for (i = 0; i < opt.clients; i++) n += slots[i].phase == phase;
    return n;
}

static void note_peak(const proc_sample *s) {
    long self = self_rss_kib();
    if (s->rss_kib > srv_peak_kib) srv_peak_kib = s->rss_kib;
    if (self > self_peak_kib) self_peak_kib = self;
    if (grow((void **)&series, &series_cap, series_count + 1, sizeof *series) == 0) {
        series[series_count].t_ms = now_ms();
        series[series_count].srv = *s;
        series[series_count].self_kib = self;
        series_count++;
    }
}

static void on_sample_timer(zk_timer *t) {
    proc_sample s = sample_server();
    uint32_t now = now_ms();
    double dt = (double)(now - last_sample_ms) / 1000.0;
    (void)t;
    note_peak(&s);
    printf("t=%4us  server rss %6ld KiB fds %5ld cpu %5.1f%% | sent %6.0f/s delivered %8.0f/s | latency "
           "p50 %u p99 %u max %u ms | joined %d | soak rss %ld KiB | errors %llu\n",
           (unsigned)(now / 1000), s.rss_kib, s.fds,
           s.ticks >= 0 && srv_last.ticks >= 0 && dt > 0 ? 100.0 * (double)(s.ticks - srv_last.ticks) / (double)hz / dt
                                                          : -1.0,
           dt > 0 ? (double)(st.sent - last_sent) / dt : 0.0, dt > 0 ? (double)(st.delivered - last_delivered) / dt : 0.0,
           hist_quantile(hist_now, 0.50), hist_quantile(hist_now, 0.99), hist_max(hist_now), count_phase(P_JOINED),
           self_rss_kib(), (unsigned long long)error_total());
    fflush(stdout);
    memset(hist_now, 0, HIST_MS * sizeof *hist_now);
    srv_last = s;
    last_sample_ms = now;
    last_sent = st.sent;
    last_delivered = st.delivered;
}

static void on_end_timer(zk_timer *t) {
    (void)t;
    zk_loop_stop(loop);
}

static int ramp_next;
static void on_ramp_timer(zk_timer *t) {
    int k;
    for (k = 0; k < RAMP_BATCH && ramp_next < (int)opt.clients; k++, ramp_next++)
        if (make_client(&slots[ramp_next]) < 0) out_of_memory = 1;
    if (ramp_next >= (int)opt.clients) zk_timer_stop(t);
}

/* Steps the loop until pred() or the deadline; 1 if pred() held. */
static int wait_for(int (*pred)(void), uint32_t deadline_ms) {
    uint64_t end = zk_loop_now(loop) + deadline_ms;
    while (!pred()) {
        if (zk_loop_now(loop) >= end || out_of_memory) return 0;
        if (zk_loop_step(loop, 50) < 0) return 0;
    }
    return 1;
}

static int all_joined(void) { return count_phase(P_JOINED) == (int)opt.clients; }
static int drained(void) { return all_joined() && st.acked + st.failed + st.send_refused == st.sent; }
static int all_done(void) { return count_phase(P_DONE) == (int)opt.clients; }
static int server_fds_back(void) {
    proc_sample s = sample_server();
    return s.fds >= 0 && s.fds <= srv_before.fds;
}

static void on_rooms(zk_client *c, const zk_result *r, void *user) {
    slot *me = (slot *)user;
    zk_value e;
    uint32_t rooms_seen = 0, bad = 0;
    if (!r->ok) {
        count_result_error("chat.rooms", r);
        st.rooms_bad++;
    } else {
        st.rooms_answers++;
        for (e = zk_value_first(r->value); zk_value_type(e); e = zk_value_next(e)) {
            zk_str name = zk_value_str(zk_value_get(e, "room"));
            int64_t members = zk_value_int(zk_value_get(e, "members"), -1);
            char buf[24];
            unsigned long k;
            char *end = buf;
            rooms_seen++;
            snprintf(buf, sizeof buf, "%.*s", (int)(name.len < 20 ? name.len : 20), name.ptr ? name.ptr : "");
            k = buf[0] == 'r' ? strtoul(buf + 1, &end, 10) : opt.rooms;
            if (buf[0] != 'r' || *end || k >= opt.rooms || members != (int64_t)slots[k].members) bad++;
        }
        if (bad || rooms_seen != opt.rooms) st.rooms_bad++;
    }
    if (!is_mine(me, c) || me->phase != P_BARRIER) return;
    close_window(me, END_FINAL, me->end_mark);
    me->phase = P_DONE;
}

/* The end: a window closes with the answer to chat.rooms. */
static void start_barrier(slot *me) {
    me->end_mark = ack_counter;
    me->phase = P_BARRIER;
    if (zk_client_call(me->client, "chat.rooms", NULL, 0, NULL, on_rooms, me) < 0) {
        close_window(me, END_FINAL, me->end_mark);
        me->phase = P_DONE;
        count_error("chat.rooms", "refused", 7);
    }
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s --url ws://127.0.0.1:PORT/ws [--server-pid PID] [--clients N] [--rooms R]\n"
            "          [--seconds S] [--interval-ms MS] [--churn PCT] [--text-bytes B] [--sample-s S] [--seed X]\n"
            "  defaults: 5000 clients, 50 rooms, 180 s, a message per client every 2000 ms on average,\n"
            "  1%% of the clients replaced a minute, 32-byte texts, a sample every 10 s\n",
            argv0);
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return 0;
    *out = (uint32_t)v;
    return 1;
}

static int raise_file_limit(rlim_t want) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
    if (r.rlim_cur != RLIM_INFINITY && r.rlim_cur < want) {
        if (r.rlim_max != RLIM_INFINITY && r.rlim_max < want) return -1;
        r.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
    }
    return 0;
}

static void print_proc(const char *label, const proc_sample *s) {
    printf("  server %-30s VmRSS %8ld KiB, fds %6ld, cpu %7.2f s\n", label, s->rss_kib, s->fds,
           s->ticks >= 0 ? (double)s->ticks / (double)hz : -1.0);
}

int main(int argc, char **argv) {
    zk_timer ramp_timer, sample_timer, end_timer, churn_timer;
    zk_loop_opts lo;
    uint64_t started, load_ms, lost_server, rss_bound_kib = 0;
    double cpu0, cpu1, cpu_end, srv_cpu;
    int i, failures = 0, joined_ok, drained_ok, barrier_ok, fds_ok = 1, rss_ok = 1;
    size_t k;
    long self_end_kib;

    opt.clients = 5000;
    opt.rooms = 50;
    opt.seconds = 180;
    opt.interval_ms = 2000;
    opt.churn_pct = 1.0;
    opt.text_bytes = 32;
    opt.sample_s = 10;
    for (i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = v != NULL;
        if (!strcmp(argv[i], "--url") && ok) opt.url = v;
        else if (!strcmp(argv[i], "--server-pid") && ok) opt.server_pid = atol(v);
        else if (!strcmp(argv[i], "--clients") && ok) ok = parse_u32(v, 1, MAX_CLIENTS, &opt.clients);
        else if (!strcmp(argv[i], "--rooms") && ok) ok = parse_u32(v, 1, MAX_CLIENTS, &opt.rooms);
        else if (!strcmp(argv[i], "--seconds") && ok) ok = parse_u32(v, 1, MAX_SECONDS, &opt.seconds);
        else if (!strcmp(argv[i], "--interval-ms") && ok) ok = parse_u32(v, 1, 3600000, &opt.interval_ms);
        else if (!strcmp(argv[i], "--text-bytes") && ok) ok = parse_u32(v, 0, 256, &opt.text_bytes);
        else if (!strcmp(argv[i], "--sample-s") && ok) ok = parse_u32(v, 1, 3600, &opt.sample_s);
        else if (!strcmp(argv[i], "--churn") && ok) {
            char *end;
            opt.churn_pct = strtod(v, &end);
            ok = *v && !*end && opt.churn_pct >= 0 && opt.churn_pct <= 100;
        } else if (!strcmp(argv[i], "--seed") && ok) opt.seed = strtoull(v, NULL, 10);
        else ok = 0;
        if (!ok) {
            usage(argv[0]);
            return 2;
        }
    }
    if (!opt.url || strncmp(opt.url, "ws://", 5) != 0 || strlen(opt.url) > 400 || opt.rooms > opt.clients) {
        usage(argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    hz = sysconf(_SC_CLK_TCK);
    if (raise_file_limit((rlim_t)opt.clients * 2 + 64) < 0 && raise_file_limit((rlim_t)opt.clients + 64) < 0) {
        fprintf(stderr, "soak: cannot have %u open files (ulimit -Hn is too low)\n", (unsigned)opt.clients + 64);
        return 1;
    }
    memset(&lo, 0, sizeof lo);
    lo.seed = opt.seed;
    loop = zk_loop_new(&lo);
    slots = (slot *)calloc(opt.clients, sizeof *slots);
    hist_all = (uint64_t *)calloc(HIST_MS, sizeof *hist_all);
    hist_now = (uint64_t *)calloc(HIST_MS, sizeof *hist_now);
    if (!loop || !slots || !hist_all || !hist_now) {
        fprintf(stderr, "soak: out of memory\n");
        return 1;
    }
    for (k = 0; k < opt.clients; k++) {
        slot *me = &slots[k];
        me->id = k;
        me->room = k % opt.rooms;
        me->members = (opt.clients - me->room + opt.rooms - 1) / opt.rooms;
        snprintf(me->name, sizeof me->name, "u%u", (unsigned)k);
        snprintf(me->room_name, sizeof me->room_name, "r%u", (unsigned)me->room);
        me->lo = (uint32_t *)malloc(4 * (size_t)me->members * sizeof *me->lo);
        if (!me->lo) {
            fprintf(stderr, "soak: out of memory\n");
            return 1;
        }
        me->first = me->lo + me->members;
        me->last = me->first + me->members;
        me->away_from = me->last + me->members;
        memset(me->away_from, 0xff, (size_t)me->members * sizeof *me->away_from);
        zk_timer_init(loop, &me->send_timer, on_send_timer, me);
        zk_timer_init(loop, &me->action_timer, on_action_timer, me);
    }

    printf("soak: %u clients in %u rooms (%u a room), %u s, a message per client every %u ms on average, "
           "churn %.2f%% of the clients a minute, %u-byte texts, server %s (pid %ld)\n",
           (unsigned)opt.clients, (unsigned)opt.rooms, (unsigned)slots[0].members, (unsigned)opt.seconds,
           (unsigned)opt.interval_ms, opt.churn_pct, (unsigned)opt.text_bytes, opt.url, opt.server_pid);
    srv_before = sample_server();
    print_proc("before any client:", &srv_before);
    fflush(stdout);

    /* connect and join, a batch every RAMP_MS */
    t0_ms = zk_loop_now(loop);
    started = t0_ms;
    zk_timer_init(loop, &ramp_timer, on_ramp_timer, NULL);
    zk_timer_start(&ramp_timer, 0, RAMP_MS);
    joined_ok = wait_for(all_joined, JOIN_DEADLINE_MS);
    zk_timer_stop(&ramp_timer);
    printf("soak: %d of %u clients joined in %.1f s (%llu connect retries)\n", count_phase(P_JOINED),
           (unsigned)opt.clients, (double)(zk_loop_now(loop) - started) / 1000.0,
           (unsigned long long)st.connect_retries);
    if (!joined_ok) {
        printf("FAIL: not every client joined within %u ms\n", JOIN_DEADLINE_MS);
        failures++;
    }

    /* the load */
    srv_start = srv_last = sample_server();
    srv_peak_kib = srv_start.rss_kib;
    self_start_kib = self_peak_kib = self_rss_kib();
    t0_ms = zk_loop_now(loop);
    note_peak(&srv_start);
    print_proc("start (all joined):", &srv_start);
    printf("  soak VmRSS %ld KiB\n", self_start_kib);
    fflush(stdout);
    t0_ms = zk_loop_now(loop);
    last_sample_ms = 0;
    cpu0 = cpu_seconds_self();
    sending = 1;
    churning = opt.churn_pct > 0;
    for (k = 0; k < opt.clients; k++)
        zk_timer_start(&slots[k].send_timer, 1 + random_below(2 * (uint64_t)opt.interval_ms), 0);
    zk_timer_init(loop, &churn_timer, on_churn_timer, NULL);
    if (churning) {
        uint64_t every = (uint64_t)(60000.0 * 100.0 / ((double)opt.clients * opt.churn_pct));
        if (every < 1) every = 1;
        zk_timer_start(&churn_timer, every, every);
    }
    zk_timer_init(loop, &sample_timer, on_sample_timer, NULL);
    zk_timer_start(&sample_timer, (uint64_t)opt.sample_s * 1000, (uint64_t)opt.sample_s * 1000);
    zk_timer_init(loop, &end_timer, on_end_timer, NULL);
    zk_timer_start(&end_timer, (uint64_t)opt.seconds * 1000, 0);
    if (joined_ok) zk_loop_run(loop);
    load_ms = zk_loop_now(loop) - t0_ms;
    cpu1 = cpu_seconds_self();
    sending = 0;
    churning = 0;
    zk_timer_stop(&churn_timer);
    zk_timer_stop(&end_timer);
    for (k = 0; k < opt.clients; k++) zk_timer_stop(&slots[k].send_timer);

    /* every call answered, every churn finished, every client in its room */
    drained_ok = wait_for(drained, DRAIN_DEADLINE_MS);
    zk_timer_stop(&sample_timer);
    srv_loaded = sample_server();
    note_peak(&srv_loaded);
    if (!drained_ok) {
        printf("FAIL: %llu calls unanswered and %d clients not in their room %u ms after the load stopped\n",
               (unsigned long long)(st.sent - st.acked - st.failed - st.send_refused),
               (int)opt.clients - count_phase(P_JOINED), DRAIN_DEADLINE_MS);
        failures++;
    }

    /* the end of every window: a chat.rooms call each, answered after all
       the server queued before (nothing is in flight any more) */
    finishing = 1;
    for (k = 0; k < opt.clients; k++)
        if (slots[k].phase == P_JOINED) start_barrier(&slots[k]);
    barrier_ok = wait_for(all_done, BARRIER_DEADLINE_MS);
    if (!barrier_ok) {
        printf("FAIL: %d clients without a chat.rooms answer within %u ms\n",
               (int)opt.clients - count_phase(P_DONE), BARRIER_DEADLINE_MS);
        failures++;
    }
    self_end_kib = self_rss_kib();
    if (self_end_kib > self_peak_kib) self_peak_kib = self_end_kib;

    /* every client freed; the server sees them go */
    for (k = 0; k < opt.clients; k++) {
        zk_timer_stop(&slots[k].action_timer);
        free_client(&slots[k]);
    }
    if (opt.server_pid > 0 && !wait_for(server_fds_back, FD_DEADLINE_MS)) fds_ok = 0;
    for (i = 0; i < 20; i++) zk_loop_step(loop, 10); /* what is left of the closes */
    srv_end = sample_server();
    note_peak(&srv_end);
    cpu_end = cpu_seconds_self();

    /* ---- the report ---- */
    lost_server = st.gap_losses + st.tail_losses[END_LEAVE] + st.tail_losses[END_FINAL];
    printf("\n== soak: %u clients, %u rooms, %.1f s of load (%.1f s in all)\n", (unsigned)opt.clients,
           (unsigned)opt.rooms, (double)load_ms / 1000.0, (double)(zk_loop_now(loop) - started) / 1000.0);
    printf("  messages sent (chat.send calls) %llu (%.0f/s): %llu answered ok, %llu failed, %llu refused at once\n",
           (unsigned long long)st.sent, load_ms ? (double)st.sent * 1000.0 / (double)load_ms : 0.0,
           (unsigned long long)st.acked, (unsigned long long)st.failed, (unsigned long long)st.send_refused);
    printf("  delivered (chat.message received) %llu (%.0f/s)\n", (unsigned long long)st.delivered,
           load_ms ? (double)st.delivered * 1000.0 / (double)load_ms : 0.0);
    printf("  expected deliveries %llu, of them delivered %llu; delivered outside the sure window %llu\n",
           (unsigned long long)st.expected, (unsigned long long)st.delivered_expected,
           (unsigned long long)st.outside);
    printf("  duplicates %llu, out of order %llu, misrouted %llu, in no window %llu\n",
           (unsigned long long)st.duplicates, (unsigned long long)st.out_of_order, (unsigned long long)st.misrouted,
           (unsigned long long)st.unexpected_state);
    printf("  losses %llu: gaps %llu", (unsigned long long)(st.expected - st.delivered_expected),
           (unsigned long long)st.gap_losses);
    for (i = 0; i < END_KINDS; i++) printf(", %s %llu", end_names[i], (unsigned long long)st.tail_losses[i]);
    printf("\n  missed while reconnecting (sent to the room while the client was away: not due) %llu\n",
           (unsigned long long)st.missed_away);
    printf("  churn: %llu clients replaced (%llu left first, %llu freed in their room); connections dropped "
           "%llu; connect retries %llu; sends skipped while not in the room %llu; other events received "
           "(chat.joined, chat.left) %llu\n",
           (unsigned long long)st.churns, (unsigned long long)st.churn_graceful, (unsigned long long)st.churn_close,
           (unsigned long long)st.drops, (unsigned long long)st.connect_retries,
           (unsigned long long)st.skipped_not_joined, (unsigned long long)st.other_events);
    if (rejoin_count) {
        size_t over = 0;
        qsort(rejoin_ms, rejoin_count, sizeof *rejoin_ms, u32_cmp);
        for (k = 0; k < rejoin_count; k++) over += rejoin_ms[k] >= 10000;
        printf("  back in the room after a replacement or a drop (zk_client_new or the drop to the join answer), "
               "%llu times: p50 %u ms, max %u ms, %llu took 10 s or more\n",
               (unsigned long long)rejoin_count, rejoin_ms[rejoin_count / 2], rejoin_ms[rejoin_count - 1],
               (unsigned long long)over);
    }
    printf("  chat.rooms at the end: %llu answers, %llu wrong\n", (unsigned long long)st.rooms_answers,
           (unsigned long long)st.rooms_bad);
    printf("  delivery latency (call made to message received): p50 %u ms, p99 %u ms, p99.9 %u ms, max %u ms%s\n",
           hist_quantile(hist_all, 0.50), hist_quantile(hist_all, 0.99), hist_quantile(hist_all, 0.999),
           hist_max(hist_all), hist_max(hist_all) == HIST_MS - 1 ? " or more" : "");
    printf("  errors by code (%llu):", (unsigned long long)error_total());
    if (!error_kinds && !errors_other) printf(" none");
    for (i = 0; i < (int)error_kinds; i++)
        printf(" %s %s %llu;", errors[i].what, errors[i].code, (unsigned long long)errors[i].count);
    if (errors_other) printf(" others %llu", (unsigned long long)errors_other);
    printf("\n");
    if (opt.server_pid > 0) {
        print_proc("before any client:", &srv_before);
        print_proc("start (all joined):", &srv_start);
        print_proc("load stopped, drained:", &srv_loaded);
        print_proc("end (all clients freed):", &srv_end);
        srv_cpu = srv_start.ticks >= 0 && srv_loaded.ticks >= 0
                      ? (double)(srv_loaded.ticks - srv_start.ticks) / (double)hz
                      : -1;
        rss_bound_kib = (uint64_t)srv_start.rss_kib + (uint64_t)srv_start.rss_kib / 10 + RSS_SLACK_KIB;
        rss_ok = srv_start.rss_kib > 0 && (uint64_t)srv_peak_kib <= rss_bound_kib;
        printf("  server VmRSS start %ld KiB, peak %ld KiB, end %ld KiB: growth %ld KiB (%.1f%%), bound %llu KiB "
               "(start + 10%% + 16 MiB)\n",
               srv_start.rss_kib, srv_peak_kib, srv_end.rss_kib, srv_peak_kib - srv_start.rss_kib,
               srv_start.rss_kib > 0 ? 100.0 * (double)(srv_peak_kib - srv_start.rss_kib) / (double)srv_start.rss_kib
                                     : 0.0,
               (unsigned long long)rss_bound_kib);
        printf("  server fds before %ld, start %ld, end %ld\n", srv_before.fds, srv_start.fds, srv_end.fds);
        for (k = 0; k < series_count && series[k].t_ms < load_ms / 2; k++) {}
        if (k < series_count)
            printf("  server VmRSS over the second half of the load: %ld KiB at %.0f s, %ld KiB when it stopped "
                   "(%+ld KiB)\n",
                   series[k].srv.rss_kib, (double)series[k].t_ms / 1000.0, srv_loaded.rss_kib,
                   srv_loaded.rss_kib - series[k].srv.rss_kib);
        printf("  samples (s: server VmRSS KiB / fds, soak VmRSS KiB):");
        for (k = 0; k < series_count; k++)
            printf("%s %.0f: %ld/%ld, %ld", k ? ";" : "", (double)series[k].t_ms / 1000.0, series[k].srv.rss_kib,
                   series[k].srv.fds, series[k].self_kib);
        printf("\n");
        printf("  server CPU during the load %.2f s (%.1f%% of a core): %.1f us per message sent, %.0f ns per "
               "delivery\n",
               srv_cpu, load_ms ? 100.0 * srv_cpu * 1000.0 / (double)load_ms : 0.0,
               st.sent ? srv_cpu * 1e6 / (double)st.sent : 0.0,
               st.delivered ? srv_cpu * 1e9 / (double)st.delivered : 0.0);
    }
    printf("  soak process: VmRSS start %ld KiB, peak %ld KiB, before freeing %ld KiB; CPU during the load %.2f s "
           "(%.1f%% of a core), %.2f s in all\n",
           self_start_kib, self_peak_kib, self_end_kib, cpu1 - cpu0,
           load_ms ? 100.0 * (cpu1 - cpu0) * 1000.0 / (double)load_ms : 0.0, cpu_end);

    if (out_of_memory) {
        printf("FAIL: out of memory in the soak process\n");
        failures++;
    }
    if (st.duplicates || st.out_of_order || st.misrouted || st.unexpected_state) {
        printf("FAIL: %llu duplicates, %llu out of order, %llu misrouted, %llu in no window\n",
               (unsigned long long)st.duplicates, (unsigned long long)st.out_of_order,
               (unsigned long long)st.misrouted, (unsigned long long)st.unexpected_state);
        failures++;
    }
    if (lost_server) {
        printf("FAIL: %llu expected messages lost (gaps, or missing at a leave or at the end)\n",
               (unsigned long long)lost_server);
        failures++;
    }
    if (st.rooms_bad) {
        printf("FAIL: %llu chat.rooms answers did not match the clients\n", (unsigned long long)st.rooms_bad);
        failures++;
    }
    if (opt.server_pid > 0 && (!fds_ok || srv_end.fds != srv_before.fds)) {
        printf("FAIL: the server holds %ld descriptors at the end, %ld before (waited %u ms)\n", srv_end.fds,
               srv_before.fds, FD_DEADLINE_MS);
        failures++;
    }
    if (opt.server_pid > 0 && !rss_ok) {
        printf("FAIL: server VmRSS peak %ld KiB over the bound %llu KiB\n", srv_peak_kib,
               (unsigned long long)rss_bound_kib);
        failures++;
    }
    printf("RESULT clients=%u rooms=%u seconds=%.1f sent=%llu acked=%llu delivered=%llu expected=%llu "
           "delivered_expected=%llu outside=%llu duplicates=%llu out_of_order=%llu misrouted=%llu losses=%llu "
           "losses_server=%llu losses_close=%llu losses_drop=%llu missed_away=%llu churns=%llu drops=%llu "
           "errors=%llu latency_p50_ms=%u latency_p99_ms=%u latency_max_ms=%u server_rss_start_kib=%ld "
           "server_rss_peak_kib=%ld server_rss_end_kib=%ld server_rss_bound_kib=%llu server_fds_before=%ld "
           "server_fds_start=%ld server_fds_end=%ld server_cpu_s=%.2f soak_rss_start_kib=%ld soak_rss_peak_kib=%ld "
           "soak_cpu_s=%.2f failures=%d\n",
           (unsigned)opt.clients, (unsigned)opt.rooms, (double)load_ms / 1000.0, (unsigned long long)st.sent,
           (unsigned long long)st.acked, (unsigned long long)st.delivered, (unsigned long long)st.expected,
           (unsigned long long)st.delivered_expected, (unsigned long long)st.outside,
           (unsigned long long)st.duplicates, (unsigned long long)st.out_of_order,
           (unsigned long long)st.misrouted, (unsigned long long)(st.expected - st.delivered_expected),
           (unsigned long long)lost_server,
           (unsigned long long)(st.tail_losses[END_CLOSE] + st.tail_losses[END_LEAVE_FAILED]),
           (unsigned long long)st.tail_losses[END_DROP], (unsigned long long)st.missed_away,
           (unsigned long long)st.churns, (unsigned long long)st.drops, (unsigned long long)error_total(),
           hist_quantile(hist_all, 0.50), hist_quantile(hist_all, 0.99), hist_max(hist_all), srv_start.rss_kib,
           srv_peak_kib, srv_end.rss_kib, (unsigned long long)rss_bound_kib, srv_before.fds, srv_start.fds,
           srv_end.fds,
           srv_start.ticks >= 0 && srv_loaded.ticks >= 0 ? (double)(srv_loaded.ticks - srv_start.ticks) / (double)hz
                                                         : -1.0,
           self_start_kib, self_peak_kib, cpu1 - cpu0, failures);

    for (k = 0; k < opt.clients; k++) {
        free(slots[k].lo);
        free(slots[k].ids);
        free(slots[k].gaps);
    }
    free(slots);
    free(messages);
    free(series);
    free(rejoin_ms);
    free(hist_all);
    free(hist_now);
    zk_loop_free(loop);
    return failures ? 1 : 0;
}
