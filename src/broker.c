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
    if (!zk__subject_valid(subject.ptr, subject.len) || (payload.len && !payload.ptr)) return ZK_EINVAL;
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
    if (!zk__subject_valid(subject.ptr, subject.len)) return ZK_EINVAL;
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
