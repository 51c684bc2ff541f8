#include "client.c"
/* >>broker implementation: RESP and NATS parsers and encoders -------------- */

/* A decimal integer of buf[0..n): optional '-', 1 to 19 digits, exact. */
ZK__PRIVATE int zk__parse_i64(const char *s, size_t n, int64_t *out) {
    size_t i = 0;
    int neg = 0;
    uint64_t v = 0, lim;
    if (n && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n || n - i > 19) return -1;
    lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9) return -1;
        if (v > (lim - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* The line starting at buf[at], up to "\r\n": its end (the '\r'), or -1
   when more is needed, -2 when a '\r' is not followed by '\n', -3 when it
   is longer than max. */
ZK__PRIVATE long zk__line_end(const char *buf, size_t len, size_t at, size_t max) {
    size_t avail = len - at, look = avail < max + 1 ? avail : max + 1;
    const char *cr = (const char *)memchr(buf + at, '\r', look);
    if (!cr) return avail > max ? -3 : -1;
    if ((size_t)(cr - buf) + 1 >= len) return -1; /* the '\n' has not come */
    if (cr[1] != '\n') return -2;
    return (long)(cr - buf);
}

/* ---- RESP ---- */

#define ZK__RESP_MAX_DEPTH 8

ZK_API int zk_resp_parse(const char *buf, size_t len, size_t max_bulk, zk_resp_reply *out) {
    size_t at = 0;
    int64_t remaining[ZK__RESP_MAX_DEPTH];
    int open = 0;
    if (!max_bulk) max_bulk = (size_t)512 << 20;
    out->count = 0;
    if (!buf && len) return ZK_EINVAL;
    for (;;) {
        zk_resp_item it;
        long end;
        char type;
        if (at >= len) return ZK_EAGAIN;
        type = buf[at];
        if (type != '+' && type != '-' && type != ':' && type != '$' && type != '*')
            return ZK_EPROTO; /* at once: a peer that sent garbage may send nothing more */
        end = zk__line_end(buf, len, at + 1, type == '+' || type == '-' ? 65536 : 32);
        if (end == -1) return ZK_EAGAIN;
        if (end == -2) return ZK_EPROTO;
        if (end == -3) return type == '+' || type == '-' ? ZK_ETOOBIG : ZK_EPROTO;
        memset(&it, 0, sizeof it);
        it.depth = open;
        switch (type) {
        case '+':
        case '-':
            it.type = type;
            it.str.ptr = buf + at + 1;
            it.str.len = (size_t)end - (at + 1);
            at = (size_t)end + 2;
            break;
        case ':':
            it.type = ZK_RESP_INTEGER;
            if (zk__parse_i64(buf + at + 1, (size_t)end - (at + 1), &it.integer) < 0) return ZK_EPROTO;
            at = (size_t)end + 2;
            break;
        case '$': {
            int64_t n;
            size_t start;
            if (zk__parse_i64(buf + at + 1, (size_t)end - (at + 1), &n) < 0 || n < -1 ||
                (buf[at + 1] == '-' && n != -1))
                return ZK_EPROTO;
            start = (size_t)end + 2;
            if (n == -1) {
                it.type = ZK_RESP_NIL;
                at = start;
                break;
            }
            if ((uint64_t)n > max_bulk) return ZK_ETOOBIG;
            if (start > len || len - start < (size_t)n + 2) return ZK_EAGAIN;
            if (buf[start + (size_t)n] != '\r' || buf[start + (size_t)n + 1] != '\n') return ZK_EPROTO;
            it.type = ZK_RESP_BULK;
            it.str.ptr = buf + start;
            it.str.len = (size_t)n;
            at = start + (size_t)n + 2;
            break;
        }
        case '*': {
            int64_t n;
            if (zk__parse_i64(buf + at + 1, (size_t)end - (at + 1), &n) < 0 || n < -1 ||
                (buf[at + 1] == '-' && n != -1))
                return ZK_EPROTO;
            at = (size_t)end + 2;
            if (n == -1) {
                it.type = ZK_RESP_NIL;
                break;
            }
            if (n > ZK_RESP_MAX_ITEMS) return ZK_ETOOBIG;
            it.type = ZK_RESP_ARRAY;
            it.integer = n;
            break;
        }
        default:
            return ZK_EPROTO;
        }
        if (out->count == ZK_RESP_MAX_ITEMS) return ZK_ETOOBIG;
        out->items[out->count++] = it;
        if (it.type == ZK_RESP_ARRAY && it.integer > 0) {
            if (open == ZK__RESP_MAX_DEPTH) return ZK_ETOOBIG;
            remaining[open++] = it.integer;
            continue;
        }
        /* an element is complete: so may be the arrays around it */
        while (open > 0) {
            if (--remaining[open - 1] > 0) break;
            open--;
        }
        if (open == 0) return (int)at;
    }
}

/* snprintf into a small buffer, then copied: out needs no room for a NUL. */
ZK__PRIVATE int zk__put_head(char *out, size_t cap, size_t at, const char *fmt, unsigned long long v) {
    char tmp[48];
    int n = snprintf(tmp, sizeof tmp, fmt, v);
    if (n < 0 || (size_t)n > cap - at) return -1;
    memcpy(out + at, tmp, (size_t)n);
    return n;
}

ZK_API int zk_resp_command(char *out, size_t cap, size_t argc, const zk_str *argv) {
    size_t at, i;
    int n = zk__put_head(out, cap, 0, "*%llu\r\n", (unsigned long long)argc);
    if (n < 0) return ZK_ENOSPACE;
    at = (size_t)n;
    for (i = 0; i < argc; i++) {
        n = zk__put_head(out, cap, at, "$%llu\r\n", (unsigned long long)argv[i].len);
        if (n < 0 || cap - at - (size_t)n < argv[i].len + 2) return ZK_ENOSPACE;
        at += (size_t)n;
        if (argv[i].len) memcpy(out + at, argv[i].ptr, argv[i].len);
        at += argv[i].len;
        out[at++] = '\r';
        out[at++] = '\n';
    }
    if (at > 0x7fffffff) return ZK_ENOSPACE;
    return (int)at;
}

/* ---- NATS ---- */

ZK__PRIVATE int zk__ascii_eq_nocase(const char *a, size_t n, const char *b) {
    size_t i;
    if (strlen(b) != n) return 0;
    for (i = 0; i < n; i++) {
        char x = a[i];
        if (x >= 'a' && x <= 'z') x = (char)(x - 32);
        if (x != b[i]) return 0;
    }
    return 1;
}

/* Splits line[0..n) at spaces and tabs into at most max tokens; returns
   how many there are (max + 1 when there are more). */
ZK__PRIVATE size_t zk__tokens(const char *line, size_t n, zk_str *tok, size_t max) {
    size_t i = 0, count = 0;
    while (i < n) {
        size_t start;
        while (i < n && (line[i] == ' ' || line[i] == '\t')) i++;
        if (i == n) break;
        start = i;
        while (i < n && line[i] != ' ' && line[i] != '\t') i++;
        if (count == max) return max + 1;
        tok[count].ptr = line + start;
        tok[count].len = i - start;
        count++;
    }
    return count;
}

ZK_API int zk_nats_parse(const char *buf, size_t len, size_t max_payload, zk_nats_op *out) {
    long end;
    size_t op_len, line_len, rest_at;
    const char *line;
    memset(out, 0, sizeof out[0]);
    if (!buf && len) return ZK_EINVAL;
    if (!max_payload) max_payload = (size_t)1 << 20;
    if (len == 0) return ZK_EAGAIN;
    /* INFO may be long; everything else fits in 4 KiB */
    end = zk__line_end(buf, len, 0, len >= 4 && zk__ascii_eq_nocase(buf, 4, "INFO") ? 65536 : 4096);
    if (end == -1) return ZK_EAGAIN;
    if (end == -2) return ZK_EPROTO;
    if (end == -3) return ZK_ETOOBIG;
    line = buf;
    line_len = (size_t)end;
    for (op_len = 0; op_len < line_len && line[op_len] != ' ' && line[op_len] != '\t'; op_len++) {}
    rest_at = op_len;
    while (rest_at < line_len && (line[rest_at] == ' ' || line[rest_at] == '\t')) rest_at++;
    if (zk__ascii_eq_nocase(line, op_len, "PING") && rest_at == line_len) {
        out->type = ZK_NATS_PING;
    } else if (zk__ascii_eq_nocase(line, op_len, "PONG") && rest_at == line_len) {
        out->type = ZK_NATS_PONG;
    } else if (zk__ascii_eq_nocase(line, op_len, "+OK") && rest_at == line_len) {
        out->type = ZK_NATS_OK;
    } else if (zk__ascii_eq_nocase(line, op_len, "INFO") && rest_at < line_len) {
        out->type = ZK_NATS_INFO;
        out->text.ptr = line + rest_at;
        out->text.len = line_len - rest_at;
    } else if (zk__ascii_eq_nocase(line, op_len, "-ERR")) {
        size_t a = rest_at, b = line_len;
        while (b > a && (line[b - 1] == ' ' || line[b - 1] == '\t')) b--;
        if (b - a >= 2 && line[a] == '\'' && line[b - 1] == '\'') {
            a++;
            b--;
        }
        out->type = ZK_NATS_ERR;
        out->text.ptr = line + a;
        out->text.len = b - a;
    } else if (zk__ascii_eq_nocase(line, op_len, "MSG")) {
        zk_str tok[4];
        size_t n = zk__tokens(line + rest_at, line_len - rest_at, tok, 4), start, k;
        uint64_t sid = 0;
        int64_t size;
        if (n < 3 || n > 4 || tok[1].len > 20) return ZK_EPROTO;
        for (k = 0; k < tok[1].len; k++) { /* digits only: the full uint64 range */
            unsigned d = (unsigned char)tok[1].ptr[k] - '0';
            if (d > 9 || sid > (UINT64_MAX - d) / 10) return ZK_EPROTO;
            sid = sid * 10 + d;
        }
        if (tok[n - 1].ptr[0] == '-' || zk__parse_i64(tok[n - 1].ptr, tok[n - 1].len, &size) < 0)
            return ZK_EPROTO;
        if ((uint64_t)size > max_payload) return ZK_ETOOBIG;
        start = (size_t)end + 2;
        if (start > len || len - start < (size_t)size + 2) return ZK_EAGAIN;
        if (buf[start + (size_t)size] != '\r' || buf[start + (size_t)size + 1] != '\n') return ZK_EPROTO;
        out->type = ZK_NATS_MSG;
        out->subject = tok[0];
        if (n == 4) out->reply = tok[2];
        out->sid = sid;
        out->payload.ptr = buf + start;
        out->payload.len = (size_t)size;
        return (int)(start + (size_t)size + 2);
    } else {
        return ZK_EPROTO; /* HMSG among them: we never ask for headers */
    }
    return (int)((size_t)end + 2);
}

/* A subject (or prefix): tokens of printable ASCII without '.', '*', '>'
   or white space, joined by '.'. */
ZK__PRIVATE int zk__subject_valid(const char *s, size_t n) {
    size_t i, token = 0;
    if (!n) return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (!token) return 0;
            token = 0;
        } else if (c <= ' ' || c >= 0x7f || c == '*' || c == '>') {
            return 0;
        } else {
            token++;
        }
    }
    return token > 0;
}

ZK_API int zk_nats_subject(char *out, size_t cap, const char *prefix, zk_str room) {
    static const char hex[] = "0123456789ABCDEF";
    size_t plen = prefix ? strlen(prefix) : 0, at, i;
    if (!zk__subject_valid(prefix, plen) || !room.len || (room.len && !room.ptr)) return ZK_EINVAL;
    if (cap < plen + 2) return ZK_ENOSPACE;
    memcpy(out, prefix, plen);
    out[plen] = '.';
    at = plen + 1;
    for (i = 0; i < room.len; i++) {
        unsigned char c = (unsigned char)room.ptr[i];
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (cap - at < (plain ? 1u : 3u) + 1) return ZK_ENOSPACE;
        if (plain) {
            out[at++] = (char)c;
        } else {
            out[at++] = '_';
            out[at++] = hex[c >> 4];
            out[at++] = hex[c & 15];
        }
    }
    out[at] = '\0';
    if (at > 0x7fffffff) return ZK_ENOSPACE;
    return (int)at;
}

ZK_API int zk_nats_pub(char *out, size_t cap, zk_str subject, zk_str payload) {
    int n;
    if (!subject.ptr || !zk__subject_valid(subject.ptr, subject.len) || (payload.len && !payload.ptr))
        return ZK_EINVAL;
    n = snprintf(out, cap, "PUB %.*s %lu\r\n", (int)subject.len, subject.ptr, (unsigned long)payload.len);
    if (n < 0 || (size_t)n >= cap || cap - (size_t)n < payload.len + 2) return ZK_ENOSPACE;
    if (payload.len) memcpy(out + n, payload.ptr, payload.len);
    out[(size_t)n + payload.len] = '\r';
    out[(size_t)n + payload.len + 1] = '\n';
    if ((size_t)n + payload.len + 2 > 0x7fffffff) return ZK_ENOSPACE;
    return (int)((size_t)n + payload.len + 2);
}

ZK_API int zk_nats_sub(char *out, size_t cap, zk_str subject, uint64_t sid) {
    int n;
    if (!subject.ptr || !zk__subject_valid(subject.ptr, subject.len)) return ZK_EINVAL;
    if (cap < 4 || cap - 4 < subject.len) return ZK_ENOSPACE;
    memcpy(out, "SUB ", 4);
    memcpy(out + 4, subject.ptr, subject.len);
    n = zk__put_head(out, cap, 4 + subject.len, " %llu\r\n", (unsigned long long)sid);
    if (n < 0 || 4 + subject.len + (size_t)n > 0x7fffffff) return ZK_ENOSPACE;
    return (int)(4 + subject.len + (size_t)n);
}

ZK_API int zk_nats_unsub(char *out, size_t cap, uint64_t sid) {
    int n = zk__put_head(out, cap, 0, "UNSUB %llu\r\n", (unsigned long long)sid);
    return n < 0 ? ZK_ENOSPACE : n;
}

/* ---- the adapter ----

   Between nodes a message travels as text (the canonical form):
     "ZK1 M <node> <L|P> <age> <seq> <flags> <except|-> <rooms> <ids>\n"
     then each room and each id as "<len>:<bytes>", then "<len>:<type>",
     then the payload as JSON (nothing for none).
   flags: 1 all, plus the delivery policy times 2. L is a first send, P a
   replay. age: 10 digits, the milliseconds between zk_app_send and this
   copy's writing (a queued or replayed message is old): a receiving node
   takes now - age as the send time and delivers only to members that were
   there by then (give or take ZK__JOIN_SLACK_MS), so nobody gets what was
   sent well before they joined. Only durations cross between nodes, never
   clock readings. Control messages:
     "ZK1 H <node> <seq> <n>\n" and n lines "<node> <seq>\n": hello, sent
     after (re)subscribing: the sender's last confirmed seq and, per node,
     the last seq of that node it delivered;
     "ZK1 R <node> <seq> <to>\n": "replayed for <to> up to <seq>". */

#define ZK__NODE_LEN 16
#define ZK__BROKER_MAX_NODES 256
#define ZK__DEDUP_WINDOW 1024      /* bits per node: seqs below the newest that are tracked */
#define ZK__BROKER_OUT_HIGH 262144 /* stop adding publishes past this much unsent output */
#define ZK__BROKER_MAX_MARKS 64
#define ZK__AGE_DIGITS 10
/* A member that joined up to this long after a message was sent still gets
   it: the send time is an estimate (loop clocks read once per pass, whole
   milliseconds), and missing a message is worse than one from just before
   the join. Queued and replayed messages, seconds old, are what the check
   is for. */
#define ZK__JOIN_SLACK_MS 1000
#define ZK__AGE_AT (6 + ZK__NODE_LEN + 3) /* where the age starts in a body */

enum { ZK__B_REDIS = 1, ZK__B_NATS };
enum { ZK__BC_IDLE, ZK__BC_WAIT, ZK__BC_CONNECTING, ZK__BC_HANDSHAKE, ZK__BC_READY };

typedef struct zk__bconn {
    zk_broker *b;
    int sub;                     /* the subscribing connection (NATS: the only one) */
    int state;                   /* ZK__BC_* */
    zk__io io;                   /* fd -1 when closed */
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off, out_cap;
    zk_timer timer;              /* backoff, connect deadline, then ping */
    uint32_t attempts;
    uint64_t last_rx;
    int ping_out;
    int auth_wait;               /* the next reply answers AUTH (Redis) */
    uint64_t writes, answers;    /* Redis: commands and replies; NATS: PINGs and PONGs */
    size_t pending;              /* handshake answers still awaited */
} zk__bconn;

typedef struct zk__bent {        /* a published message in the ring */
    char *body;
    size_t len;
    uint64_t at;                 /* loop time of zk_app_send */
    uint64_t ack;                /* the answer count that confirms it */
} zk__bent;

typedef struct zk__held {        /* a message from a node we wait for a replay from */
    struct zk__held *next;
    uint64_t seq;
    uint64_t sent_at;            /* its send time on our clock */
    size_t len;                  /* body follows */
} zk__held;

typedef struct zk__origin {
    char node[ZK__NODE_LEN];
    uint64_t seen;               /* the newest seq delivered */
    uint64_t bits[ZK__DEDUP_WINDOW / 64]; /* bit i: seen - i delivered */
    uint64_t heard;              /* loop time of the last message */
    uint64_t hold_until;         /* 0: not holding */
    zk__held *held;              /* sorted by seq */
    size_t held_count;
} zk__origin;

typedef struct zk__broom {
    uint64_t sid;                /* NATS */
    size_t len;                  /* name follows */
} zk__broom;

struct zk_broker {
    zk_app *app;
    zk_loop *loop;
    zk_broker_opts opts;
    int kind;
    char *user, *password;       /* from the URL; NATS token: password without user */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char prefix[65];
    char node[ZK__NODE_LEN + 1];
    int state;
    int was_open;
    char error[160];
    zk__bconn conn[2];           /* [0] subscribes; [1] publishes (Redis only) */
    zk__map rooms;               /* name -> zk__broom, rooms with local members */
    uint64_t next_sid;
    /* the ring: seqs [first, next) are kept; [acked, next) not confirmed;
       [sent, next) not written on the current connection */
    zk__bent *ring;
    size_t ring_bytes;
    uint64_t first, acked, sent, next;
    int hello_pending;
    char marks[ZK__BROKER_MAX_MARKS][ZK__NODE_LEN]; /* "replayed for" markers to send */
    uint64_t mark_seq[ZK__BROKER_MAX_MARKS];
    size_t mark_count;
    zk__origin *origins;
    size_t origin_count;
    zk_timer hold_timer;
    zk__work flush_work;
    zk_doc doc;
    zk_writer scratch, hello_writer;
    size_t nats_max_payload;
    zk_broker_stats stats;
};

ZK__PRIVATE void zk__bconn_start(zk__bconn *bc);
ZK__PRIVATE void zk__broker_flush(zk_broker *b);
ZK__PRIVATE zk__bconn *zk__broker_pubconn(zk_broker *b);
ZK__PRIVATE void zk__broker_schedule(zk_broker *b);
ZK__PRIVATE void zk__broker_hold_check(zk_broker *b);

ZK__PRIVATE void zk__broker_set_error(zk_broker *b, const char *what, zk_str detail) {
    size_t n = strlen(what), d = detail.len;
    if (n > sizeof b->error - 1) n = sizeof b->error - 1;
    memcpy(b->error, what, n);
    if (d && n + 2 < sizeof b->error) {
        b->error[n++] = ':';
        b->error[n++] = ' ';
        if (d > sizeof b->error - 1 - n) d = sizeof b->error - 1 - n;
        memcpy(b->error + n, detail.ptr, d);
        n += d;
    }
    b->error[n] = 0;
    /* broker text is shown to people: keep it printable */
    for (d = 0; d < n; d++)
        if ((unsigned char)b->error[d] < 32 || (unsigned char)b->error[d] == 127) b->error[d] = '?';
}

ZK__PRIVATE size_t zk__broker_nconns(const zk_broker *b) { return b->kind == ZK__B_REDIS ? 2 : 1; }

/* OPEN when every connection is ready. */
ZK__PRIVATE void zk__broker_update_state(zk_broker *b) {
    size_t i;
    int ready = 1, st;
    for (i = 0; i < zk__broker_nconns(b); i++)
        if (b->conn[i].state != ZK__BC_READY) ready = 0;
    st = ready ? ZK_BROKER_OPEN : b->was_open ? ZK_BROKER_RECONNECTING : ZK_BROKER_CONNECTING;
    if (ready) b->was_open = 1;
    if (st == b->state) return;
    b->state = st;
    if (b->opts.on_state) b->opts.on_state(b, st, b->opts.data);
}

/* ---- output ---- */

ZK__PRIVATE char *zk__bout(zk__bconn *bc, size_t n) {
    if (bc->out_off && bc->out_off == bc->out_len) bc->out_off = bc->out_len = 0;
    if (bc->out_cap - bc->out_len < n) {
        size_t cap = bc->out_cap ? bc->out_cap : 4096;
        char *p;
        if (bc->out_off) { /* reclaim what was written */
            memmove(bc->out, bc->out + bc->out_off, bc->out_len - bc->out_off);
            bc->out_len -= bc->out_off;
            bc->out_off = 0;
        }
        while (cap - bc->out_len < n) cap *= 2;
        if (cap != bc->out_cap) {
            p = (char *)ZK_REALLOC(bc->out, cap);
            if (!p) return NULL;
            bc->out = p;
            bc->out_cap = cap;
        }
    }
    return bc->out + bc->out_len;
}

ZK__PRIVATE int zk__bout_raw(zk__bconn *bc, const char *s, size_t n) {
    char *p = zk__bout(bc, n);
    if (!p) return ZK_ENOMEM;
    memcpy(p, s, n);
    bc->out_len += n;
    return 0;
}

/* A Redis command of argc bulk strings. */
ZK__PRIVATE int zk__bout_resp(zk__bconn *bc, size_t argc, const zk_str *argv) {
    size_t need = 16, i;
    char *p;
    int n;
    for (i = 0; i < argc; i++) need += argv[i].len + 24;
    p = zk__bout(bc, need);
    if (!p) return ZK_ENOMEM;
    n = zk_resp_command(p, need, argc, argv);
    if (n < 0) return n;
    bc->out_len += (size_t)n;
    bc->writes++;
    return 0;
}

ZK__PRIVATE void zk__bconn_fail(zk__bconn *bc, const char *why, zk_str detail);

/* Writes what it can; the rest waits for writable. */
ZK__PRIVATE void zk__bconn_write(zk__bconn *bc) {
    zk_broker *b = bc->b;
    while (bc->out_off < bc->out_len) {
        ssize_t n = send(bc->io.fd, bc->out + bc->out_off, bc->out_len - bc->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            zk_str none = {NULL, 0};
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            zk__bconn_fail(bc, "broker write failed", none);
            return;
        }
        bc->out_off += (size_t)n;
    }
    if (bc->out_off == bc->out_len) bc->out_off = bc->out_len = 0;
    zk__io_set(b->loop, &bc->io, ZK__IO_READ | (bc->out_len ? ZK__IO_WRITE : 0));
    /* the flush stopped at ZK__BROKER_OUT_HIGH: room again for the rest */
    if (bc->out_len - bc->out_off < ZK__BROKER_OUT_HIGH / 2 && b->sent < b->next && bc == zk__broker_pubconn(b))
        zk__broker_schedule(b);
}

/* ---- connections ---- */

ZK__PRIVATE void zk__bconn_close(zk__bconn *bc) {
    if (bc->io.fd >= 0) {
        zk__io_set(bc->b->loop, &bc->io, 0);
        close(bc->io.fd);
        bc->io.fd = -1;
    }
    bc->in_len = bc->out_len = bc->out_off = 0;
    bc->writes = bc->answers = 0;
    bc->pending = 0;
    bc->ping_out = 0;
    bc->auth_wait = 0;
}

ZK__PRIVATE void zk__bconn_timer(zk_timer *t);

/* Retries after a full-jitter backoff. */
ZK__PRIVATE void zk__bconn_backoff(zk__bconn *bc) {
    zk_broker *b = bc->b;
    uint64_t cap = b->opts.backoff_base_ms, delay;
    uint32_t i;
    for (i = 0; i < bc->attempts && cap < b->opts.backoff_max_ms; i++) cap *= 2;
    if (cap > b->opts.backoff_max_ms) cap = b->opts.backoff_max_ms;
    delay = zk_loop_random(b->loop) % (cap + 1);
    if (bc->attempts < 31) bc->attempts++;
    bc->state = ZK__BC_WAIT;
    zk_timer_start(&bc->timer, delay, 0);
}

ZK__PRIVATE void zk__broker_lost(zk_broker *b, zk__bconn *bc);

ZK__PRIVATE void zk__bconn_fail(zk__bconn *bc, const char *why, zk_str detail) {
    zk_broker *b = bc->b;
    int was = bc->state;
    zk__broker_set_error(b, why, detail);
    zk__bconn_close(bc);
    if (was == ZK__BC_HANDSHAKE || was == ZK__BC_READY) b->stats.disconnects++;
    zk__bconn_backoff(bc);
    zk__broker_lost(b, bc);
    zk__broker_update_state(b);
}

/* ---- subscriptions ---- */

ZK__PRIVATE zk_str zk__bw_result(const zk_writer *w) {
    zk_str s = {NULL, 0};
    if (!w->err) {
        s.ptr = w->buf;
        s.len = w->len;
    }
    return s;
}

/* A room's channel (NULL: the reserved one) into w, as raw bytes. */
ZK__PRIVATE int zk__broker_channel(zk_broker *b, const char *room, size_t len, zk_writer *w) {
    size_t plen = strlen(b->prefix);
    zk_writer_reset(w);
    if (b->kind == ZK__B_REDIS) {
        zk__w_put(w, b->prefix, plen);
        if (room) {
            zk__w_put(w, ":r:", 3);
            zk__w_put(w, room, len);
        } else {
            zk__w_put(w, ":all", 4);
        }
    } else if (!room) {
        zk__w_put(w, b->prefix, plen);
        zk__w_put(w, ".all", 4);
    } else {
        char pre[80];
        zk_str r;
        int n;
        snprintf(pre, sizeof pre, "%s.r", b->prefix);
        r.ptr = room;
        r.len = len;
        if (zk__w_room(w, len * 3 + plen + 8) < 0) return w->err;
        n = zk_nats_subject(w->buf + w->len, w->cap - w->len, pre, r);
        if (n < 0) return n;
        w->len += (size_t)n;
    }
    return w->err;
}

/* Writes the subscription for a room (NULL: the reserved channel). */
ZK__PRIVATE int zk__broker_sub_cmd(zk_broker *b, const char *room, size_t len, uint64_t sid, int on) {
    zk__bconn *bc = &b->conn[0];
    zk_str ch;
    int rc = zk__broker_channel(b, room, len, &b->scratch);
    if (rc < 0) return rc;
    ch = zk__bw_result(&b->scratch);
    if (b->kind == ZK__B_REDIS) {
        zk_str argv[2];
        argv[0].ptr = on ? "SUBSCRIBE" : "UNSUBSCRIBE";
        argv[0].len = strlen(argv[0].ptr);
        argv[1] = ch;
        return zk__bout_resp(bc, 2, argv);
    } else {
        char *p = zk__bout(bc, ch.len + 48);
        int n;
        if (!p) return ZK_ENOMEM;
        n = on ? zk_nats_sub(p, ch.len + 48, ch, sid) : zk_nats_unsub(p, ch.len + 48, sid);
        if (n < 0) return n;
        bc->out_len += (size_t)n;
        return 0;
    }
}

ZK__PRIVATE int zk__broker_room(zk_broker *b, const char *room, size_t len, int on) {
    zk__broom *r = (zk__broom *)zk__map_get(&b->rooms, room, len);
    zk__bconn *bc = &b->conn[0];
    if (on) {
        if (r) return 0;
        r = (zk__broom *)ZK_MALLOC(sizeof *r + len + 1);
        if (!r) return ZK_ENOMEM;
        r->sid = ++b->next_sid;
        r->len = len;
        memcpy((char *)(r + 1), room, len);
        ((char *)(r + 1))[len] = 0;
        if (zk__map_put(&b->rooms, (const char *)(r + 1), len, r) < 0) {
            ZK_FREE(r);
            return ZK_ENOMEM;
        }
        b->stats.rooms++;
    } else {
        if (!r) return 0;
        zk__map_del(&b->rooms, room, len);
        b->stats.rooms--;
    }
    /* A connection not yet subscribing takes the set as it is then; one
       whose subscriptions went out hears of the change now. */
    if (bc->state == ZK__BC_READY || (bc->state == ZK__BC_HANDSHAKE && (b->kind == ZK__B_REDIS || bc->pending))) {
        if (on && bc->state == ZK__BC_HANDSHAKE && b->kind == ZK__B_REDIS) bc->pending++;
        if (zk__broker_sub_cmd(b, room, len, r->sid, on) < 0) {
            zk_str none = {NULL, 0};
            if (!on) ZK_FREE(r);
            zk__bconn_fail(bc, "out of memory", none); /* resubscribes from the set */
            return 0;
        }
        zk__bconn_write(bc);
    }
    if (!on) ZK_FREE(r);
    return 0;
}

/* Everything to subscribe on a fresh connection. */
ZK__PRIVATE int zk__broker_sub_all(zk_broker *b) {
    size_t i;
    int rc = zk__broker_sub_cmd(b, NULL, 0, 1, 1);
    b->conn[0].pending = 1;
    for (i = 0; rc == 0 && i < b->rooms.cap; i++) {
        const zk__broom *r = (const zk__broom *)b->rooms.slots[i].val;
        if (!r) continue;
        rc = zk__broker_sub_cmd(b, (const char *)(r + 1), r->len, r->sid, 1);
        b->conn[0].pending++;
    }
    return rc;
}

/* ---- the ring: what this node published ---- */

ZK__PRIVATE zk__bent *zk__ring_at(zk_broker *b, uint64_t seq) { return &b->ring[seq % b->opts.max_queue]; }

ZK__PRIVATE void zk__ring_drop_first(zk_broker *b) {
    zk__bent *e = zk__ring_at(b, b->first);
    b->ring_bytes -= e->len;
    ZK_FREE(e->body);
    e->body = NULL;
    b->first++;
}

ZK__PRIVATE zk__bconn *zk__broker_pubconn(zk_broker *b) { return &b->conn[b->kind == ZK__B_REDIS ? 1 : 0]; }

ZK__PRIVATE void zk__broker_flush_work(zk__work *w) {
    zk_broker *b = (zk_broker *)(void *)((char *)w - offsetof(zk_broker, flush_work));
    zk__broker_flush(b);
}

ZK__PRIVATE void zk__broker_schedule(zk_broker *b) {
    if (zk__broker_pubconn(b)->state == ZK__BC_READY) zk__work_queue(b->loop, &b->flush_work);
}

ZK__PRIVATE void zk__bw_num(zk_writer *w, uint64_t v) {
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    zk__w_put(w, tmp, (size_t)n);
}

ZK__PRIVATE void zk__bw_net(zk_writer *w, const char *s, size_t n) {
    zk__bw_num(w, n);
    zk__w_put(w, ":", 1);
    zk__w_put(w, s, n);
}

ZK__PRIVATE int zk__broker_publish(zk_broker *b, const zk_target *to) {
    zk_app *app = b->app;
    zk_writer *w = &b->scratch;
    size_t i, rooms = 0, ids = 0, len;
    zk_str payload = zk_writer_result(&app->payload);
    const zk__member *ex = to->except ? (const zk__member *)to->except->app : NULL;
    zk__bent *e;
    char *body;
    if (!to->all) {
        for (i = 0; i < to->room_count; i++) {
            size_t n;
            if (zk__room_name_ok(to->rooms[i], &n)) rooms++;
        }
        for (i = 0; i < to->id_count; i++)
            if (to->ids[i] && strlen(to->ids[i]) == 22 && !zk__map_get(&app->ids, to->ids[i], 22)) ids++;
        if (!rooms && !ids) return 0; /* every recipient is here */
    }
    zk_writer_reset(w);
    zk__w_put(w, "ZK1 M ", 6);
    zk__w_put(w, b->node, ZK__NODE_LEN);
    zk__w_put(w, " L 0000000000 ", 14);
    zk__bw_num(w, b->next);
    zk__w_put(w, " ", 1);
    zk__bw_num(w, (uint64_t)(to->all ? 1 : 0) + (uint64_t)(to->delivery & 3) * 2);
    zk__w_put(w, " ", 1);
    if (ex && ex->app == app) zk__w_put(w, ex->id, 22);
    else zk__w_put(w, "-", 1);
    zk__w_put(w, " ", 1);
    zk__bw_num(w, to->all ? 0 : rooms);
    zk__w_put(w, " ", 1);
    zk__bw_num(w, to->all ? 0 : ids);
    zk__w_put(w, "\n", 1);
    for (i = 0; !to->all && i < to->room_count; i++) {
        size_t n;
        if (zk__room_name_ok(to->rooms[i], &n)) zk__bw_net(w, to->rooms[i], n);
    }
    for (i = 0; !to->all && i < to->id_count; i++)
        if (to->ids[i] && strlen(to->ids[i]) == 22 && !zk__map_get(&app->ids, to->ids[i], 22))
            zk__bw_net(w, to->ids[i], 22);
    zk__bw_net(w, app->message_type, strlen(app->message_type));
    if (payload.ptr) zk__w_put(w, payload.ptr, payload.len);
    if (w->err) return w->err == ZK_ENOMEM ? ZK_ENOMEM : ZK_ETOOBIG;
    len = w->len;
    if (len > b->opts.max_message) return ZK_ETOOBIG;
    while (b->next - b->first >= b->opts.max_queue || b->ring_bytes + len > b->opts.max_queue_bytes) {
        if (b->first >= b->acked) { /* only messages not yet confirmed: refuse */
            b->stats.refused++;
            return ZK_ENOSPACE;
        }
        zk__ring_drop_first(b);
    }
    body = (char *)ZK_MALLOC(len);
    if (!body) return ZK_ENOMEM;
    memcpy(body, w->buf, len);
    e = zk__ring_at(b, b->next);
    e->body = body;
    e->len = len;
    e->ack = 0;
    e->at = zk_loop_now(b->loop);
    b->ring_bytes += len;
    b->next++;
    b->stats.published++;
    zk__broker_schedule(b);
    return 0;
}

/* ---- reading what other nodes sent ---- */

typedef struct zk__bmsg {
    int kind;                    /* 'M', 'H', 'R' */
    const char *node;            /* ZK__NODE_LEN bytes */
    int replay;
    uint64_t age, seq, flags;
    const char *except;          /* 22 bytes, or NULL */
    uint64_t rooms, ids;
    const char *list, *list_end; /* rooms and ids, then the type */
    zk_str type;
    char *payload;
    size_t payload_len;
    const char *target;          /* R */
} zk__bmsg;

/* A decimal up to the next byte in stop; *p moves past that byte. */
ZK__PRIVATE int zk__bm_num(const char **p, const char *end, char stop, uint64_t *out) {
    const char *s = *p;
    uint64_t v = 0;
    if (s >= end || *s < '0' || *s > '9') return -1;
    while (s < end && *s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
        s++;
    }
    if (s >= end || *s != stop) return -1;
    *p = s + 1;
    *out = v;
    return 0;
}

ZK__PRIVATE int zk__bm_node(const char **p, const char *end, const char **out) {
    size_t i;
    if ((size_t)(end - *p) < ZK__NODE_LEN + 1) return -1;
    for (i = 0; i < ZK__NODE_LEN; i++) {
        char c = (*p)[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return -1;
    }
    *out = *p;
    *p += ZK__NODE_LEN;
    return 0;
}

/* One "<len>:<bytes>" of at most max bytes. */
ZK__PRIVATE int zk__bm_net(const char **p, const char *end, size_t max, zk_str *out) {
    uint64_t n;
    if (zk__bm_num(p, end, ':', &n) < 0 || n > max || n > (uint64_t)(end - *p)) return -1;
    out->ptr = *p;
    out->len = (size_t)n;
    *p += n;
    return 0;
}

ZK__PRIVATE int zk__bmsg_parse(char *buf, size_t len, zk__bmsg *m) {
    const char *p = buf, *end = buf + len;
    uint64_t i;
    memset(m, 0, sizeof *m);
    if (len < 6 || memcmp(p, "ZK1 ", 4) != 0 || p[5] != ' ') return -1;
    m->kind = p[4];
    p += 6;
    if (zk__bm_node(&p, end, &m->node) < 0 || *p++ != ' ') return -1;
    if (m->kind == 'H') {
        uint64_t n;
        if (zk__bm_num(&p, end, ' ', &m->seq) < 0 || zk__bm_num(&p, end, '\n', &n) < 0) return -1;
        if (n > ZK__BROKER_MAX_NODES) return -1;
        m->rooms = n;
        m->list = p;
        m->list_end = end;
        return 0;
    }
    if (m->kind == 'R') {
        if (zk__bm_num(&p, end, ' ', &m->seq) < 0 || zk__bm_node(&p, end, &m->target) < 0) return -1;
        return *p == '\n' ? 0 : -1;
    }
    if (m->kind != 'M' || end - p < 2 || (p[0] != 'L' && p[0] != 'P') || p[1] != ' ') return -1;
    m->replay = p[0] == 'P';
    p += 2;
    if (end - p < ZK__AGE_DIGITS + 1 || zk__bm_num(&p, end, ' ', &m->age) < 0) return -1;
    if (zk__bm_num(&p, end, ' ', &m->seq) < 0 || !m->seq || zk__bm_num(&p, end, ' ', &m->flags) < 0 ||
        m->flags > 7)
        return -1;
    if (end - p >= 2 && p[0] == '-' && p[1] == ' ') { /* ids may start with '-' too */
        p++;
    } else {
        if (end - p < 22) return -1;
        m->except = p;
        p += 22;
    }
    if (p >= end || *p++ != ' ') return -1;
    if (zk__bm_num(&p, end, ' ', &m->rooms) < 0 || zk__bm_num(&p, end, '\n', &m->ids) < 0) return -1;
    m->list = p;
    for (i = 0; i < m->rooms + m->ids; i++) {
        zk_str s;
        if (zk__bm_net(&p, end, i < m->rooms ? ZK_ROOM_MAX_NAME : 22, &s) < 0) return -1;
        if (memchr(s.ptr, 0, s.len) || (i >= m->rooms && s.len != 22)) return -1;
    }
    m->list_end = p;
    if (zk__bm_net(&p, end, ZK_ROUTE_MAX_NAME, &m->type) < 0 || !m->type.len ||
        !zk_utf8_valid(m->type.ptr, m->type.len))
        return -1;
    m->payload = buf + (p - buf);
    m->payload_len = (size_t)(end - p);
    return 0;
}

/* Delivers a message to this node's recipients that were there when it was
   sent (sent_at, our clock). */
ZK__PRIVATE void zk__broker_deliver(zk_broker *b, zk__bmsg *m, uint64_t sent_at) {
    zk_app *app = b->app;
    zk_target t;
    zk_str payload = {NULL, 0};
    const char *p = m->list;
    zk__member *ex = NULL;
    uint64_t i;
    int n = 0;
    if (m->payload_len) { /* checked on a copy: the bytes go out as they came */
        zk_writer *w = &b->scratch;
        zk_writer_reset(w);
        zk__w_put(w, m->payload, m->payload_len);
        if (w->err || zk_json_parse(&b->doc, w->buf, w->len) != ZK_OK) {
            b->stats.invalid++;
            return;
        }
        payload.ptr = m->payload;
        payload.len = m->payload_len;
    }
    if (zk__app_frame_of(app, m->type, payload) < 0) {
        b->stats.invalid++;
        return;
    }
    memset(&t, 0, sizeof t);
    t.delivery = (int)(m->flags >> 1);
    if (m->except) {
        ex = (zk__member *)zk__map_get(&app->ids, m->except, 22);
        if (ex) t.except = ex->conn;
    }
    b->stats.received++;
    app->mark++;
    if (m->flags & 1) {
        for (i = 0; i < app->count; i++)
            if (app->members[i]->since <= sent_at) n += zk__deliver_to(app, app->members[i], &t, app->frame);
    } else {
        for (i = 0; i < m->rooms + m->ids; i++) {
            zk_str s;
            if (zk__bm_net(&p, m->list_end, ZK_ROOM_MAX_NAME, &s) < 0) break; /* parsed before: cannot */
            if (i < m->rooms) {
                zk__room *rm = (zk__room *)zk__map_get(&app->rooms, s.ptr, s.len);
                size_t j;
                for (j = 0; rm && j < rm->count; j++)
                    if (rm->seats[j].joined <= sent_at) n += zk__deliver_to(app, rm->seats[j].member, &t, app->frame);
            } else {
                zk__member *mm = (zk__member *)zk__map_get(&app->ids, s.ptr, 22);
                if (mm && mm->since <= sent_at) n += zk__deliver_to(app, mm, &t, app->frame);
            }
        }
    }
    b->stats.delivered += (uint64_t)n;
}

ZK__PRIVATE zk__origin *zk__origin_find(zk_broker *b, const char *node) {
    size_t i;
    for (i = 0; i < b->origin_count; i++)
        if (memcmp(b->origins[i].node, node, ZK__NODE_LEN) == 0) return &b->origins[i];
    return NULL;
}

ZK__PRIVATE void zk__origin_clear(zk__origin *o) {
    while (o->held) {
        zk__held *h = o->held;
        o->held = h->next;
        ZK_FREE(h);
    }
    o->held_count = 0;
    o->hold_until = 0;
}

/* A node heard of for the first time: everything up to seq counts as seen
   (it is not ours to replay). The least recently heard goes when full. */
ZK__PRIVATE zk__origin *zk__origin_add(zk_broker *b, const char *node, uint64_t seq) {
    zk__origin *o;
    if (b->origin_count == ZK__BROKER_MAX_NODES) {
        size_t i, old = 0;
        for (i = 1; i < b->origin_count; i++)
            if (b->origins[i].heard < b->origins[old].heard) old = i;
        zk__origin_clear(&b->origins[old]);
        b->origins[old] = b->origins[--b->origin_count];
    }
    if (!b->origins) {
        b->origins = (zk__origin *)ZK_MALLOC(ZK__BROKER_MAX_NODES * sizeof *b->origins);
        if (!b->origins) return NULL;
    }
    o = &b->origins[b->origin_count++];
    memset(o, 0, sizeof *o);
    memcpy(o->node, node, ZK__NODE_LEN);
    o->seen = seq;
    memset(o->bits, 0xff, sizeof o->bits);
    o->heard = zk_loop_now(b->loop);
    b->stats.nodes = b->origin_count;
    return o;
}

/* 1 when seq was delivered already (or is too old to tell). */
ZK__PRIVATE int zk__origin_seen(const zk__origin *o, uint64_t seq) {
    uint64_t d;
    if (seq > o->seen) return 0;
    d = o->seen - seq;
    if (d >= ZK__DEDUP_WINDOW) return 1;
    return (int)((o->bits[d / 64] >> (d % 64)) & 1);
}

ZK__PRIVATE void zk__origin_mark(zk__origin *o, uint64_t seq) {
    uint64_t d;
    if (seq > o->seen) {
        uint64_t k = seq - o->seen;
        size_t words = ZK__DEDUP_WINDOW / 64, i;
        if (k >= ZK__DEDUP_WINDOW) {
            memset(o->bits, 0, sizeof o->bits);
        } else {
            size_t ws = (size_t)(k / 64), bs = (size_t)(k % 64);
            for (i = words; i-- > 0;) {
                uint64_t v = i >= ws ? o->bits[i - ws] << bs : 0;
                if (bs && i >= ws + 1) v |= o->bits[i - ws - 1] >> (64 - bs);
                o->bits[i] = v;
            }
        }
        o->seen = seq;
        d = 0;
    } else {
        d = o->seen - seq;
        if (d >= ZK__DEDUP_WINDOW) return;
    }
    o->bits[d / 64] |= (uint64_t)1 << (d % 64);
}

ZK__PRIVATE void zk__broker_take(zk_broker *b, zk__origin *o, zk__bmsg *m, uint64_t sent_at) {
    if (zk__origin_seen(o, m->seq)) {
        b->stats.duplicates++;
        return;
    }
    zk__origin_mark(o, m->seq);
    zk__broker_deliver(b, m, sent_at);
}

/* When m was sent, on our clock, plus the slack. */
ZK__PRIVATE uint64_t zk__bmsg_sent_at(zk_broker *b, const zk__bmsg *m) {
    uint64_t now = zk_loop_now(b->loop) + ZK__JOIN_SLACK_MS;
    return m->age < now ? now - m->age : 0;
}

/* Stops waiting for o's replay: what was held goes out in order. */
ZK__PRIVATE void zk__origin_release(zk_broker *b, zk__origin *o) {
    zk__held *h = o->held;
    o->held = NULL;
    o->held_count = 0;
    o->hold_until = 0;
    while (h) {
        zk__held *next = h->next;
        zk__bmsg m;
        if (zk__bmsg_parse((char *)(h + 1), h->len, &m) == 0) zk__broker_take(b, o, &m, h->sent_at);
        ZK_FREE(h);
        h = next;
    }
}

ZK__PRIVATE void zk__broker_hold(zk_broker *b, zk__origin *o, zk__bmsg *m, const char *body, size_t len) {
    zk__held **pp = &o->held, *h;
    if (zk__origin_seen(o, m->seq)) {
        b->stats.duplicates++;
        return;
    }
    while (*pp && (*pp)->seq < m->seq) pp = &(*pp)->next;
    if (*pp && (*pp)->seq == m->seq) {
        b->stats.duplicates++;
        return;
    }
    h = (zk__held *)ZK_MALLOC(sizeof *h + len);
    if (!h) { /* cannot wait: deliver now */
        zk__origin_release(b, o);
        zk__broker_take(b, o, m, zk__bmsg_sent_at(b, m));
        return;
    }
    h->seq = m->seq;
    h->sent_at = zk__bmsg_sent_at(b, m);
    h->len = len;
    memcpy(h + 1, body, len);
    h->next = *pp;
    *pp = h;
    if (++o->held_count >= b->opts.max_queue) zk__origin_release(b, o);
}

ZK__PRIVATE void zk__broker_mark_for(zk_broker *b, const char *node) {
    size_t i;
    for (i = 0; i < b->mark_count; i++)
        if (memcmp(b->marks[i], node, ZK__NODE_LEN) == 0) break;
    if (i == ZK__BROKER_MAX_MARKS) return; /* that node's hold times out instead */
    if (i == b->mark_count) {
        memcpy(b->marks[i], node, ZK__NODE_LEN);
        b->mark_count++;
    }
    b->mark_seq[i] = b->next - 1;
}

/* Another node came back: send it again what it missed of ours. */
ZK__PRIVATE void zk__broker_hello(zk_broker *b, zk__bmsg *m) {
    const char *p = m->list, *end = m->list_end;
    zk__origin *o = zk__origin_find(b, m->node);
    uint64_t i;
    if (!o) o = zk__origin_add(b, m->node, m->seq);
    else if (o->hold_until) b->hello_pending = 1; /* it missed our hello: again */
    if (o) o->heard = zk_loop_now(b->loop);
    for (i = 0; i < m->rooms; i++) {
        const char *node;
        uint64_t seen;
        if (zk__bm_node(&p, end, &node) < 0 || *p++ != ' ' || zk__bm_num(&p, end, '\n', &seen) < 0) {
            b->stats.invalid++;
            return;
        }
        if (memcmp(node, b->node, ZK__NODE_LEN) != 0) continue;
        if (seen + 1 < b->next) { /* it missed some */
            uint64_t from = seen + 1, s;
            if (from < b->first) {
                b->stats.forgotten += b->first - from;
                from = b->first;
            }
            for (s = from; s < b->sent; s++) {
                zk__bent *e = zk__ring_at(b, s);
                e->body[6 + ZK__NODE_LEN + 1] = 'P'; /* the flag, after "ZK1 M <node> " */
            }
            if (from < b->sent) {
                b->stats.replayed += b->sent - from;
                b->sent = from;
            }
            if (from < b->acked) b->acked = from;
        }
        zk__broker_mark_for(b, m->node);
    }
    zk__broker_schedule(b);
}

/* One message from the broker on one of our channels. */
ZK__PRIVATE void zk__broker_incoming(zk_broker *b, char *body, size_t len) {
    zk__bmsg m;
    zk__origin *o;
    if (zk__bmsg_parse(body, len, &m) < 0) {
        b->stats.invalid++;
        return;
    }
    if (memcmp(m.node, b->node, ZK__NODE_LEN) == 0) {
        b->stats.duplicates++;
        return;
    }
    if (m.kind == 'H') {
        zk__broker_hello(b, &m);
        return;
    }
    o = zk__origin_find(b, m.node);
    if (m.kind == 'R') {
        if (o && memcmp(m.target, b->node, ZK__NODE_LEN) == 0 && o->hold_until) zk__origin_release(b, o);
        return;
    }
    if (!o) {
        o = zk__origin_add(b, m.node, m.seq - 1);
        if (!o) return;
    }
    o->heard = zk_loop_now(b->loop);
    if (o->hold_until) {
        zk__broker_hold(b, o, &m, body, len);
        return;
    }
    if (m.replay && m.seq <= o->seen) { /* a replay for another node */
        b->stats.duplicates++;
        return;
    }
    zk__broker_take(b, o, &m, zk__bmsg_sent_at(b, &m));
}

ZK__PRIVATE void zk__broker_hold_timer(zk_timer *t) { zk__broker_hold_check((zk_broker *)t->data); }

ZK__PRIVATE void zk__broker_hold_check(zk_broker *b) {
    uint64_t now = zk_loop_now(b->loop), next = 0;
    size_t i;
    for (i = 0; i < b->origin_count; i++) {
        zk__origin *o = &b->origins[i];
        if (!o->hold_until) continue;
        if (o->hold_until <= now) zk__origin_release(b, o);
        else if (!next || o->hold_until < next) next = o->hold_until;
    }
    if (next) zk_timer_start(&b->hold_timer, next - now, 0);
}

/* The subscribing connection is (re)connecting: hold every known node's
   messages until it says what we missed (or until the hold runs out). */
ZK__PRIVATE void zk__broker_hold_all(zk_broker *b, uint64_t until) {
    size_t i;
    for (i = 0; i < b->origin_count; i++) b->origins[i].hold_until = until;
    zk__broker_hold_check(b);
}

/* ---- writing to the broker ---- */

/* Hello: our last confirmed seq and the last seq we delivered per node. */
ZK__PRIVATE int zk__broker_hello_body(zk_broker *b, zk_writer *w) {
    size_t i;
    zk_writer_reset(w);
    zk__w_put(w, "ZK1 H ", 6);
    zk__w_put(w, b->node, ZK__NODE_LEN);
    zk__w_put(w, " ", 1);
    zk__bw_num(w, b->acked ? b->acked - 1 : 0);
    zk__w_put(w, " ", 1);
    zk__bw_num(w, b->origin_count);
    zk__w_put(w, "\n", 1);
    for (i = 0; i < b->origin_count; i++) {
        zk__w_put(w, b->origins[i].node, ZK__NODE_LEN);
        zk__w_put(w, " ", 1);
        zk__bw_num(w, b->origins[i].seen);
        zk__w_put(w, "\n", 1);
    }
    return w->err;
}

/* One message to one channel (NULL room: the reserved channel). */
ZK__PRIVATE int zk__broker_put(zk_broker *b, const char *room, size_t rlen, const char *body, size_t len) {
    zk__bconn *bc = zk__broker_pubconn(b);
    zk_str ch, msg;
    int rc = zk__broker_channel(b, room, rlen, &b->scratch);
    if (rc < 0) return rc;
    ch = zk__bw_result(&b->scratch);
    msg.ptr = body;
    msg.len = len;
    b->stats.publishes++;
    if (b->kind == ZK__B_REDIS) {
        zk_str argv[3];
        argv[0].ptr = "PUBLISH";
        argv[0].len = 7;
        argv[1] = ch;
        argv[2] = msg;
        return zk__bout_resp(bc, 3, argv);
    } else {
        size_t need = ch.len + len + 48;
        char *p = zk__bout(bc, need);
        int n;
        if (!p) return ZK_ENOMEM;
        n = zk_nats_pub(p, need, ch, msg);
        if (n < 0) return n;
        bc->out_len += (size_t)n;
        return 0;
    }
}

/* Every copy of ring entry seq: one per room, or one on the reserved
   channel (everyone, ids). */
ZK__PRIVATE int zk__broker_put_entry(zk_broker *b, zk__bent *e) {
    zk__bmsg m;
    const char *p;
    uint64_t i;
    int rc = 0;
    char *copy;
    uint64_t age = zk_loop_now(b->loop) - e->at;
    char digits[ZK__AGE_DIGITS + 1];
    if (age > 9999999999ull) age = 9999999999ull;
    snprintf(digits, sizeof digits, "%010llu", (unsigned long long)age);
    memcpy(e->body + ZK__AGE_AT, digits, ZK__AGE_DIGITS);
    if (zk__bmsg_parse(e->body, e->len, &m) < 0) return 0; /* ours, so it cannot happen; never block the ring */
    copy = e->body;
    if ((m.flags & 1) || m.ids) rc = zk__broker_put(b, NULL, 0, copy, e->len);
    p = m.list;
    for (i = 0; rc == 0 && i < m.rooms; i++) {
        zk_str s;
        if (zk__bm_net(&p, m.list_end, ZK_ROOM_MAX_NAME, &s) < 0) break; /* parsed: cannot */
        rc = zk__broker_put(b, s.ptr, s.len, copy, e->len);
    }
    return rc;
}

ZK__PRIVATE void zk__broker_flush(zk_broker *b) {
    zk__bconn *bc = zk__broker_pubconn(b);
    int rc = 0, wrote = 0;
    if (bc->state != ZK__BC_READY) return;
    if (b->hello_pending && b->conn[0].state == ZK__BC_READY) {
        rc = zk__broker_hello_body(b, &b->hello_writer);
        if (rc == 0) {
            zk_str h = zk__bw_result(&b->hello_writer);
            rc = zk__broker_put(b, NULL, 0, h.ptr, h.len);
        }
        b->hello_pending = 0;
        wrote = 1;
    }
    while (rc == 0 && b->sent < b->next && bc->out_len - bc->out_off < ZK__BROKER_OUT_HIGH) {
        zk__bent *e = zk__ring_at(b, b->sent);
        if (b->kind == ZK__B_NATS && e->len > b->nats_max_payload) {
            b->stats.oversize++; /* the server would close the connection over it */
            e->ack = 0;
        } else {
            rc = zk__broker_put_entry(b, e);
            e->ack = bc->writes + (b->kind == ZK__B_NATS); /* NATS: the PING below */
            wrote = 1;
        }
        b->sent++;
    }
    if (rc == 0 && b->sent == b->next && b->mark_count) {
        size_t i;
        for (i = 0; rc == 0 && i < b->mark_count; i++) {
            char line[64];
            int n = snprintf(line, sizeof line, "ZK1 R %.16s %llu %.16s\n", b->node,
                             (unsigned long long)b->mark_seq[i], b->marks[i]);
            rc = zk__broker_put(b, NULL, 0, line, (size_t)n);
        }
        b->mark_count = 0;
        wrote = 1;
    }
    if (rc == 0 && b->kind == ZK__B_NATS && wrote) { /* its PONG confirms what went before */
        rc = zk__bout_raw(bc, "PING\r\n", 6);
        bc->writes++;
    }
    if (rc < 0) {
        zk_str none = {NULL, 0};
        zk__bconn_fail(bc, "cannot write to the broker", none);
        return;
    }
    zk__bconn_write(bc);
}

/* ---- reading from the broker ---- */

ZK__PRIVATE void zk__broker_confirm(zk_broker *b, uint64_t answers) {
    while (b->acked < b->sent && zk__ring_at(b, b->acked)->ack <= answers) b->acked++;
}

ZK__PRIVATE void zk__bconn_ready(zk__bconn *bc) {
    zk_broker *b = bc->b;
    uint64_t now = zk_loop_now(b->loop);
    size_t i;
    bc->state = ZK__BC_READY; /* the backoff starts over once it has lasted (first ping tick) */
    b->stats.connects++;
    zk_timer_start(&bc->timer, b->opts.ping_ms, 0);
    if (bc->sub) {
        b->hello_pending = 1;
        for (i = 0; i < b->origin_count; i++)
            if (b->origins[i].hold_until) b->origins[i].hold_until = now + b->opts.hold_ms;
        zk__broker_hold_check(b);
    }
    zk__broker_update_state(b);
    zk__broker_flush(b);
    if (bc->state == ZK__BC_READY && bc->out_len > bc->out_off) zk__bconn_write(bc);
}

/* Every array reply of a subscribing Redis connection starts with its kind. */
ZK__PRIVATE int zk__resp_is(const zk_resp_reply *r, const char *kind) {
    size_t n = strlen(kind);
    return r->count >= 2 && r->items[0].type == ZK_RESP_ARRAY && r->items[1].type == ZK_RESP_BULK &&
           r->items[1].str.len == n && memcmp(r->items[1].str.ptr, kind, n) == 0;
}

ZK__PRIVATE void zk__redis_reply(zk__bconn *bc, zk_resp_reply *r) {
    zk_broker *b = bc->b;
    const zk_resp_item *it = &r->items[0];
    zk_str none = {NULL, 0};
    if (bc->auth_wait) {
        bc->auth_wait = 0;
        if (!bc->sub) bc->answers++;
        if (it->type != ZK_RESP_SIMPLE) {
            zk__bconn_fail(bc, "redis refused AUTH", it->type == ZK_RESP_ERROR ? it->str : none);
            return;
        }
        return;
    }
    if (it->type == ZK_RESP_ERROR) {
        if (bc->sub || bc->state != ZK__BC_READY) {
            zk__bconn_fail(bc, "redis error", it->str);
            return;
        }
        zk__broker_set_error(b, "redis error", it->str); /* a PUBLISH refused: counted as answered */
    }
    if (!bc->sub) {
        if (it->type == ZK_RESP_ARRAY) {
            zk__bconn_fail(bc, "unexpected reply from redis", none);
            return;
        }
        bc->answers++;
        if (bc->state == ZK__BC_HANDSHAKE) {
            if (bc->answers == bc->writes) zk__bconn_ready(bc);
            return;
        }
        zk__broker_confirm(b, bc->answers);
        zk__broker_schedule(b);
        return;
    }
    if (zk__resp_is(r, "message") && r->count == 4 && r->items[3].type == ZK_RESP_BULK) {
        zk__broker_incoming(b, (char *)r->items[3].str.ptr, r->items[3].str.len);
    } else if (zk__resp_is(r, "subscribe")) {
        if (bc->state == ZK__BC_HANDSHAKE && bc->pending && --bc->pending == 0) zk__bconn_ready(bc);
    } else if (!zk__resp_is(r, "unsubscribe") && !zk__resp_is(r, "pong")) {
        zk__bconn_fail(bc, "unexpected reply from redis", none);
    }
}

/* INFO's max_payload, when it has one. */
ZK__PRIVATE void zk__nats_info(zk_broker *b, zk_str json) {
    zk_writer *w = &b->scratch;
    zk_writer_reset(w);
    zk__w_put(w, json.ptr, json.len);
    if (!w->err && zk_json_parse(&b->doc, w->buf, w->len) == ZK_OK) {
        int64_t mp = zk_value_int(zk_value_get(zk_doc_root(&b->doc), "max_payload"), 0);
        if (mp > 0) b->nats_max_payload = (size_t)mp;
    }
}

ZK__PRIVATE int zk__bout_json_str(zk_writer *w, const char *key, const char *val) {
    if (!val) return 0;
    zk_write_key(w, key);
    zk_write_str(w, val);
    return 0;
}

ZK__PRIVATE void zk__nats_op(zk__bconn *bc, zk_nats_op *op) {
    zk_broker *b = bc->b;
    zk_str none = {NULL, 0};
    if (bc->state == ZK__BC_HANDSHAKE && !bc->pending) { /* INFO comes first */
        zk_writer *w = &b->hello_writer;
        zk_str cj;
        if (op->type != ZK_NATS_INFO) {
            zk__bconn_fail(bc, "not a NATS server (no INFO)", none);
            return;
        }
        b->nats_max_payload = (size_t)1 << 20;
        zk__nats_info(b, op->text);
        zk_writer_reset(w);
        zk_write_object(w);
        zk_write_key(w, "verbose");
        zk_write_bool(w, 0);
        zk_write_key(w, "pedantic");
        zk_write_bool(w, 0);
        zk_write_key(w, "name");
        zk_write_str(w, "zocket.h");
        zk_write_key(w, "lang");
        zk_write_str(w, "c");
        zk_write_key(w, "version");
        zk_write_str(w, "1");
        zk_write_key(w, "protocol");
        zk_write_int(w, 1);
        zk_write_key(w, "echo");
        zk_write_bool(w, 0); /* our own messages need not come back */
        if (b->user) {
            zk__bout_json_str(w, "user", b->user);
            zk__bout_json_str(w, "pass", b->password ? b->password : "");
        } else if (b->password) {
            zk__bout_json_str(w, "auth_token", b->password);
        }
        zk_write_end(w);
        cj = zk_writer_result(w);
        if (!cj.ptr || zk__bout_raw(bc, "CONNECT ", 8) < 0 || zk__bout_raw(bc, cj.ptr, cj.len) < 0 ||
            zk__bout_raw(bc, "\r\n", 2) < 0 || zk__broker_sub_all(b) < 0 || zk__bout_raw(bc, "PING\r\n", 6) < 0) {
            zk__bconn_fail(bc, "out of memory", none);
            return;
        }
        bc->writes++;
        bc->pending = 1;
        zk__bconn_write(bc);
        return;
    }
    switch (op->type) {
    case ZK_NATS_PING:
        if (zk__bout_raw(bc, "PONG\r\n", 6) < 0) zk__bconn_fail(bc, "out of memory", none);
        else zk__bconn_write(bc);
        break;
    case ZK_NATS_PONG:
        bc->answers++;
        if (bc->state == ZK__BC_HANDSHAKE) {
            if (bc->answers >= bc->writes) zk__bconn_ready(bc);
            break;
        }
        zk__broker_confirm(b, bc->answers);
        zk__broker_schedule(b);
        break;
    case ZK_NATS_ERR:
        zk__bconn_fail(bc, "nats error", op->text);
        break;
    case ZK_NATS_MSG:
        zk__broker_incoming(b, (char *)op->payload.ptr, op->payload.len);
        break;
    case ZK_NATS_INFO:
        zk__nats_info(b, op->text);
        break;
    default: /* +OK */
        break;
    }
}

ZK__PRIVATE void zk__bconn_readable(zk__bconn *bc) {
    zk_broker *b = bc->b;
    size_t limit = b->opts.max_message + 65536, at = 0;
    zk_str none = {NULL, 0};
    int reads;
    for (reads = 0; reads < 4; reads++) {
        ssize_t n;
        if (bc->in_cap - bc->in_len < 4096) {
            size_t cap = bc->in_cap ? bc->in_cap * 2 : 16384;
            char *p;
            if (bc->in_len >= limit) {
                zk__bconn_fail(bc, "message from the broker too large", none);
                return;
            }
            if (cap > limit) cap = limit;
            if (cap < bc->in_len + 4096) cap = bc->in_len + 4096;
            p = (char *)ZK_REALLOC(bc->in, cap);
            if (!p) {
                zk__bconn_fail(bc, "out of memory", none);
                return;
            }
            bc->in = p;
            bc->in_cap = cap;
        }
        n = recv(bc->io.fd, bc->in + bc->in_len, bc->in_cap - bc->in_len, 0);
        if (n == 0) {
            zk__bconn_fail(bc, "the broker closed the connection", none);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            zk__bconn_fail(bc, "broker read failed", none);
            return;
        }
        bc->in_len += (size_t)n;
        bc->last_rx = zk_loop_now(b->loop);
        bc->ping_out = 0;
        if ((size_t)n < 4096) break;
    }
    while (at < bc->in_len && bc->io.fd >= 0) {
        int used;
        if (b->kind == ZK__B_REDIS) {
            zk_resp_reply r;
            used = zk_resp_parse(bc->in + at, bc->in_len - at, b->opts.max_message + 4096, &r);
            if (used > 0) {
                at += (size_t)used;
                zk__redis_reply(bc, &r);
                continue;
            }
        } else {
            zk_nats_op op;
            used = zk_nats_parse(bc->in + at, bc->in_len - at, b->opts.max_message + 4096, &op);
            if (used > 0) {
                at += (size_t)used;
                zk__nats_op(bc, &op);
                continue;
            }
        }
        if (used == ZK_EAGAIN) break;
        zk__bconn_fail(bc, used == ZK_ETOOBIG ? "message from the broker too large"
                                              : "the broker sent something that is not its protocol", none);
        return;
    }
    if (bc->io.fd < 0) return;
    if (at) {
        memmove(bc->in, bc->in + at, bc->in_len - at);
        bc->in_len -= at;
    }
}

/* ---- connecting ---- */

ZK__PRIVATE void zk__bconn_connected(zk__bconn *bc) {
    zk_broker *b = bc->b;
    zk_str none = {NULL, 0};
    int rc = 0;
    bc->state = ZK__BC_HANDSHAKE;
    bc->last_rx = zk_loop_now(b->loop);
    zk__io_set(b->loop, &bc->io, ZK__IO_READ);
    if (bc->sub && b->origin_count)
        zk__broker_hold_all(b, zk_loop_now(b->loop) + b->opts.connect_timeout_ms + b->opts.hold_ms);
    if (b->kind == ZK__B_REDIS) {
        if (b->password) {
            zk_str argv[3];
            size_t argc = 0;
            argv[argc].ptr = "AUTH";
            argv[argc++].len = 4;
            if (b->user) {
                argv[argc].ptr = b->user;
                argv[argc++].len = strlen(b->user);
            }
            argv[argc].ptr = b->password;
            argv[argc++].len = strlen(b->password);
            rc = zk__bout_resp(bc, argc, argv);
            bc->auth_wait = 1;
        }
        if (rc == 0 && bc->sub) {
            rc = zk__broker_sub_all(b);
        } else if (rc == 0) {
            zk_str ping;
            ping.ptr = "PING";
            ping.len = 4;
            rc = zk__bout_resp(bc, 1, &ping);
        }
        if (rc < 0) {
            zk__bconn_fail(bc, "out of memory", none);
            return;
        }
        zk__bconn_write(bc);
    }
    /* NATS: the server speaks first (INFO) */
}

ZK__PRIVATE void zk__bconn_event(zk__io *io, unsigned events) {
    zk__bconn *bc = (zk__bconn *)(void *)((char *)io - offsetof(zk__bconn, io));
    if (bc->state == ZK__BC_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (!(events & (ZK__IO_WRITE | ZK__IO_ERROR))) return;
        if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) {
            zk_str d;
            d.ptr = strerror(err);
            d.len = strlen(d.ptr);
            zk__bconn_fail(bc, "cannot connect to the broker", d);
            return;
        }
        zk__bconn_connected(bc);
        return;
    }
    if (events & ZK__IO_WRITE) zk__bconn_write(bc);
    if (bc->io.fd >= 0 && (events & (ZK__IO_READ | ZK__IO_ERROR))) zk__bconn_readable(bc);
}

ZK__PRIVATE void zk__bconn_start(zk__bconn *bc) {
    zk_broker *b = bc->b;
    int fd = socket(b->addr.ss_family, SOCK_STREAM, 0), rc;
    zk_str d;
    if (fd < 0 || zk__set_nonblock(fd) < 0) {
        if (fd >= 0) close(fd);
        d.ptr = strerror(errno);
        d.len = strlen(d.ptr);
        zk__bconn_fail(bc, "cannot make a socket", d);
        return;
    }
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    zk__tcp_tune(fd);
    zk__io_init(&bc->io, fd, zk__bconn_event);
    bc->state = ZK__BC_CONNECTING;
    zk_timer_start(&bc->timer, b->opts.connect_timeout_ms, 0);
    rc = connect(fd, (struct sockaddr *)&b->addr, b->addr_len);
    if (rc < 0 && errno != EINPROGRESS) {
        d.ptr = strerror(errno);
        d.len = strlen(d.ptr);
        zk__bconn_fail(bc, "cannot connect to the broker", d);
        return;
    }
    zk__io_set(b->loop, &bc->io, ZK__IO_WRITE);
}

ZK__PRIVATE void zk__bconn_timer(zk_timer *t) {
    zk__bconn *bc = (zk__bconn *)t->data;
    zk_broker *b = bc->b;
    zk_str none = {NULL, 0};
    switch (bc->state) {
    case ZK__BC_WAIT:
        zk__bconn_start(bc);
        break;
    case ZK__BC_CONNECTING:
    case ZK__BC_HANDSHAKE:
        zk__bconn_fail(bc, "broker connect timed out", none);
        break;
    case ZK__BC_READY: {
        uint64_t now = zk_loop_now(b->loop);
        int rc = 0;
        bc->attempts = 0;
        if (bc->ping_out) {
            zk__bconn_fail(bc, "the broker stopped answering", none);
            break;
        }
        if (now - bc->last_rx >= b->opts.ping_ms) {
            if (b->kind == ZK__B_REDIS) {
                zk_str ping;
                ping.ptr = "PING";
                ping.len = 4;
                rc = zk__bout_resp(bc, 1, &ping);
            } else {
                rc = zk__bout_raw(bc, "PING\r\n", 6);
                bc->writes++;
            }
            if (rc < 0) {
                zk__bconn_fail(bc, "out of memory", none);
                break;
            }
            bc->ping_out = 1;
            zk__bconn_write(bc);
        }
        zk_timer_start(&bc->timer, b->opts.ping_ms, 0);
        break;
    }
    default:
        break;
    }
}

/* A connection went: what it had not confirmed goes again on the next. */
ZK__PRIVATE void zk__broker_lost(zk_broker *b, zk__bconn *bc) {
    if (bc == zk__broker_pubconn(b)) {
        b->sent = b->acked;
        zk__work_cancel(b->loop, &b->flush_work);
    }
}

/* ---- the API ---- */

ZK__PRIVATE int zk__hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A percent-decoded copy of s[0..n), or NULL (bad escape, NUL, no memory). */
ZK__PRIVATE char *zk__url_part(const char *s, size_t n) {
    char *out = (char *)ZK_MALLOC(n + 1), *o = out;
    size_t i;
    if (!out) return NULL;
    for (i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? zk__hexval(s[i + 1]) : -1, lo = i + 2 < n ? zk__hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                ZK_FREE(out);
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
            continue;
        }
        *o++ = s[i];
    }
    *o = 0;
    return out;
}

/* scheme://[user[:password]@]host[:port][/...] */
ZK__PRIVATE int zk__broker_url(zk_broker *b, const char *url) {
    const char *p, *at, *end, *host, *hend, *colon;
    char hostbuf[256];
    long port;
    size_t hn;
    if (strncmp(url, "redis://", 8) == 0) {
        b->kind = ZK__B_REDIS;
        p = url + 8;
        port = 6379;
    } else if (strncmp(url, "nats://", 7) == 0) {
        b->kind = ZK__B_NATS;
        p = url + 7;
        port = 4222;
    } else {
        return ZK_EINVAL;
    }
    end = p + strcspn(p, "/?#");
    if (*end == '/') { /* redis://host/0: the database does not matter to pub/sub */
        const char *d = end + 1;
        if (b->kind != ZK__B_REDIS) return ZK_EINVAL;
        while (*d >= '0' && *d <= '9') d++;
        if (*d) return ZK_EINVAL;
    } else if (*end) {
        return ZK_EINVAL;
    }
    at = NULL;
    for (host = p; host < end; host++)
        if (*host == '@') at = host;
    host = p;
    if (at) {
        const char *c = (const char *)memchr(p, ':', (size_t)(at - p));
        if (c) {
            if (c > p && !(b->user = zk__url_part(p, (size_t)(c - p)))) return ZK_EINVAL;
            if (!(b->password = zk__url_part(c + 1, (size_t)(at - c - 1)))) return ZK_EINVAL;
        } else if (!(b->password = zk__url_part(p, (size_t)(at - p)))) { /* a token (NATS) or a password */
            return ZK_EINVAL;
        }
        host = at + 1;
    }
    if (*host == '[') {
        hend = (const char *)memchr(host, ']', (size_t)(end - host));
        if (!hend) return ZK_EINVAL;
        host++;
        colon = hend + 1 < end ? hend + 1 : NULL;
        if (colon && *colon != ':') return ZK_EINVAL;
    } else {
        colon = (const char *)memchr(host, ':', (size_t)(end - host));
        hend = colon ? colon : end;
    }
    hn = (size_t)(hend - host);
    if (hn >= sizeof hostbuf) return ZK_EINVAL;
    memcpy(hostbuf, host, hn);
    hostbuf[hn] = 0;
    if (colon) {
        char *e;
        if (colon + 1 >= end || colon[1] < '0' || colon[1] > '9') return ZK_EINVAL;
        port = strtol(colon + 1, &e, 10);
        if (e != end || port < 1 || port > 65535) return ZK_EINVAL;
    }
    return zk__resolve(hn ? hostbuf : "127.0.0.1", (int)port, &b->addr, &b->addr_len, 0);
}

ZK_API zk_broker *zk_broker_new(zk_app *app, const zk_broker_opts *opts, int *err) {
    zk_broker *b;
    int dummy, rc;
    size_t i;
    unsigned char rnd[16];
    if (!err) err = &dummy;
    *err = ZK_EINVAL;
    if (!app || !opts || !opts->url || app->broker) return NULL;
    b = (zk_broker *)ZK_MALLOC(sizeof *b);
    if (!b) {
        *err = ZK_ENOMEM;
        return NULL;
    }
    memset(b, 0, sizeof *b);
    b->app = app;
    b->loop = app->loop;
    b->opts = *opts;
    b->opts.url = NULL;
    b->opts.prefix = NULL;
    if (!b->opts.max_queue) b->opts.max_queue = 4096;
    if (!b->opts.max_queue_bytes) b->opts.max_queue_bytes = (size_t)8 << 20;
    if (!b->opts.max_message) b->opts.max_message = (size_t)1 << 20;
    if (!b->opts.connect_timeout_ms) b->opts.connect_timeout_ms = 5000;
    if (!b->opts.backoff_base_ms) b->opts.backoff_base_ms = 100;
    if (!b->opts.backoff_max_ms) b->opts.backoff_max_ms = 5000;
    if (!b->opts.ping_ms) b->opts.ping_ms = 5000;
    if (!b->opts.hold_ms) b->opts.hold_ms = 2000;
    b->nats_max_payload = (size_t)1 << 20;
    b->next_sid = 1; /* sid 1 is the reserved channel's */
    for (i = 0; i < 2; i++) {
        b->conn[i].b = b;
        b->conn[i].sub = i == 0;
        b->conn[i].io.fd = -1;
        zk_timer_init(b->loop, &b->conn[i].timer, zk__bconn_timer, &b->conn[i]);
    }
    zk_timer_init(b->loop, &b->hold_timer, zk__broker_hold_timer, b);
    b->flush_work.fn = zk__broker_flush_work;
    zk_writer_init(&b->scratch, NULL, 0);
    zk_writer_init(&b->hello_writer, NULL, 0);
    b->scratch.max = b->opts.max_message + 65536;
    {
        const char *pre = opts->prefix ? opts->prefix : "zocket";
        size_t n = strlen(pre);
        rc = n >= 1 && n <= 64 ? 0 : ZK_EINVAL;
        for (i = 0; rc == 0 && i < n; i++) {
            char c = pre[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
                rc = ZK_EINVAL;
        }
        if (rc == 0) memcpy(b->prefix, pre, n + 1);
    }
    if (rc == 0 && (b->opts.max_message > b->opts.max_queue_bytes || b->opts.backoff_base_ms > b->opts.backoff_max_ms))
        rc = ZK_EINVAL;
    if (rc == 0) rc = zk__broker_url(b, opts->url);
    if (rc == 0) {
        b->ring = (zk__bent *)ZK_MALLOC(b->opts.max_queue * sizeof *b->ring);
        if (!b->ring || b->opts.max_queue > SIZE_MAX / sizeof *b->ring) rc = ZK_ENOMEM;
        else memset(b->ring, 0, b->opts.max_queue * sizeof *b->ring);
    }
    for (i = 0; rc == 0 && i < app->rooms.cap; i++) { /* rooms the app has already */
        const zk__room *rm = (const zk__room *)app->rooms.slots[i].val;
        if (rm) rc = zk__broker_room(b, rm->name, rm->name_len, 1);
    }
    if (rc < 0) {
        *err = rc;
        zk_broker_free(b);
        return NULL;
    }
    zk__app_random(app, rnd);
    for (i = 0; i < ZK__NODE_LEN / 2; i++) {
        b->node[2 * i] = "0123456789abcdef"[rnd[i] >> 4];
        b->node[2 * i + 1] = "0123456789abcdef"[rnd[i] & 15];
    }
    b->next = b->first = b->acked = b->sent = 1;
    b->state = ZK_BROKER_CONNECTING;
    app->broker = b;
    *err = 0;
    for (i = 0; i < zk__broker_nconns(b); i++) zk__bconn_start(&b->conn[i]);
    return b;
}

ZK_API void zk_broker_free(zk_broker *b) {
    size_t i;
    if (!b) return;
    if (b->app && b->app->broker == b) b->app->broker = NULL;
    for (i = 0; i < 2; i++) {
        zk__bconn *bc = &b->conn[i];
        zk_timer_stop(&bc->timer);
        if (bc->io.fd >= 0) zk__bconn_close(bc);
        ZK_FREE(bc->in);
        ZK_FREE(bc->out);
    }
    zk_timer_stop(&b->hold_timer);
    zk__work_cancel(b->loop, &b->flush_work);
    while (b->ring && b->first < b->next) zk__ring_drop_first(b);
    ZK_FREE(b->ring);
    for (i = 0; i < b->origin_count; i++) zk__origin_clear(&b->origins[i]);
    ZK_FREE(b->origins);
    for (i = 0; i < b->rooms.cap; i++)
        if (b->rooms.slots[i].val) ZK_FREE(b->rooms.slots[i].val);
    zk__map_free(&b->rooms);
    zk_doc_free(&b->doc);
    zk_writer_free(&b->scratch);
    zk_writer_free(&b->hello_writer);
    ZK_FREE(b->user);
    ZK_FREE(b->password);
    ZK_FREE(b);
}

ZK_API zk_broker *zk_app_broker(const zk_app *app) { return app ? app->broker : NULL; }
ZK_API int zk_broker_state(const zk_broker *b) { return b->state; }
ZK_API const char *zk_broker_state_name(int state) {
    switch (state) {
    case ZK_BROKER_CONNECTING: return "connecting";
    case ZK_BROKER_OPEN: return "open";
    case ZK_BROKER_RECONNECTING: return "reconnecting";
    default: return "unknown";
    }
}
ZK_API const char *zk_broker_error(const zk_broker *b) { return b->error; }
ZK_API void *zk_broker_data(const zk_broker *b) { return b->opts.data; }
ZK_API const char *zk_broker_node(const zk_broker *b) { return b->node; }

ZK_API void zk_broker_get_stats(const zk_broker *b, zk_broker_stats *out) {
    uint64_t s;
    *out = b->stats;
    out->queued = (size_t)(b->next - b->acked);
    out->queued_bytes = 0;
    for (s = b->acked; s < b->next; s++) out->queued_bytes += b->ring[s % b->opts.max_queue].len;
    out->kept = (size_t)(b->next - b->first);
    out->nodes = b->origin_count;
}
