#include "utf8.c"
/* >>http implementation -------------------------------------------------- */

/* RFC 9110 tchar: the characters of a token (method, header name). */
ZK__PRIVATE int zk__is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A header value byte: HTAB, SP, VCHAR, obs-text. */
ZK__PRIVATE int zk__is_value_char(unsigned char c) {
    return c == '\t' || (c >= 0x20 && c != 0x7F);
}

ZK__PRIVATE size_t zk__http_max_headers(const zk_http_limits *limits) {
    if (!limits || limits->max_headers == 0 || limits->max_headers > ZK_HTTP_MAX_HEADERS)
        return ZK_HTTP_MAX_HEADERS;
    return limits->max_headers;
}

ZK__PRIVATE size_t zk__http_max_bytes(const zk_http_limits *limits) {
    size_t n = limits && limits->max_bytes ? limits->max_bytes : ZK_HTTP_MAX_HEADER_BYTES;
    return n > 0x7FFFFFFF ? 0x7FFFFFFF : n; /* the size of a head is returned as an int */
}

/* Longer methods are refused before the request line is complete, so a peer
   trickling bytes cannot make each call rescan a long first word. */
#define ZK__HTTP_MAX_METHOD 32

/* Finds the end of a head (just past CRLF CRLF) at or after prev_len - 3.
   Returns 0 when it is not there yet. */
ZK__PRIVATE size_t zk__http_head_end(const char *buf, size_t len, size_t prev_len) {
    size_t i = prev_len > 3 ? prev_len - 3 : 0;
    while (i < len) {
        const char *lf = (const char *)memchr(buf + i, '\n', len - i);
        size_t at;
        if (!lf) return 0;
        at = (size_t)(lf - buf);
        if (at >= 3 && buf[at - 1] == '\r' && buf[at - 2] == '\n' && buf[at - 3] == '\r')
            return at + 1;
        i = at + 1;
    }
    return 0;
}

/* Whether the bytes that arrived since prev_len hold an LF without a CR
   before it: such a head can never complete (we require CRLF). */
ZK__PRIVATE int zk__http_bare_lf(const char *buf, size_t len, size_t prev_len) {
    size_t i = prev_len;
    while (i < len) {
        const char *lf = (const char *)memchr(buf + i, '\n', len - i);
        if (!lf) return 0;
        i = (size_t)(lf - buf);
        if (i == 0 || buf[i - 1] != '\r') return 1;
        i++;
    }
    return 0;
}

/* Parses header lines from p up to the blank line that ends at end.
   Returns 0, ZK_EHTTP or ZK_ETOOBIG, with *error set on failure. */
ZK__PRIVATE int zk__http_headers(const char *p, const char *end, zk_http_header *headers,
                                 size_t max, size_t *count, const char **error) {
    *count = 0;
    for (;;) {
        const char *name = p, *value, *vend;
        if (p + 1 < end && p[0] == '\r' && p[1] == '\n') return 0; /* blank line */
        if (*p == ' ' || *p == '\t') { *error = "obsolete line folding"; return ZK_EHTTP; }
        while (p < end && zk__is_tchar((unsigned char)*p)) p++;
        if (p == name || p >= end || *p != ':') {
            *error = p < end && (*p == ' ' || *p == '\t') ? "white space before ':'"
                                                          : "malformed header name";
            return ZK_EHTTP;
        }
        if (*count == max) { *error = "too many headers"; return ZK_ETOOBIG; }
        headers[*count].name.ptr = name;
        headers[*count].name.len = (size_t)(p - name);
        p++;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        value = p;
        while (p < end && zk__is_value_char((unsigned char)*p)) p++;
        if (p + 1 >= end || p[0] != '\r' || p[1] != '\n') {
            *error = "invalid character in header value";
            return ZK_EHTTP;
        }
        vend = p;
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t')) vend--;
        headers[*count].value.ptr = value;
        headers[*count].value.len = (size_t)(vend - value);
        (*count)++;
        p += 2;
    }
}

/* "HTTP/1.1" at p: returns 10 or 11, 0 when malformed, -1 when another
   major version (answer 505). */
ZK__PRIVATE int zk__http_version(const char *p) {
    if (memcmp(p, "HTTP/", 5) != 0 || p[6] != '.') return 0;
    if (p[5] < '0' || p[5] > '9' || p[7] < '0' || p[7] > '9') return 0;
    if (p[5] != '1') return -1;
    return p[7] == '0' ? 10 : 11;
}

ZK__PRIVATE int zk__request_fail(zk_http_request *req, int err, int status, const char *error) {
    req->status = status;
    req->error = error;
    return err;
}

/* Parses the request line in [p, end) (end at its CR). */
ZK__PRIVATE int zk__request_line(const char *p, const char *end, zk_http_request *req) {
    const char *s = p, *q;
    int version;
    while (p < end && zk__is_tchar((unsigned char)*p)) p++;
    if (p == s || p >= end || *p != ' ' || p - s > ZK__HTTP_MAX_METHOD)
        return zk__request_fail(req, ZK_EHTTP, 400, "malformed method");
    req->method.ptr = s;
    req->method.len = (size_t)(p - s);
    s = ++p;
    while (p < end && (unsigned char)*p > 0x20 && *p != 0x7F) p++;
    if (p == s || p >= end || *p != ' ') return zk__request_fail(req, ZK_EHTTP, 400, "malformed request target");
    req->target.ptr = s;
    req->target.len = (size_t)(p - s);
    p++;
    if (end - p != 8) return zk__request_fail(req, ZK_EHTTP, 400, "malformed HTTP version");
    version = zk__http_version(p);
    if (version == 0) return zk__request_fail(req, ZK_EHTTP, 400, "malformed HTTP version");
    if (version < 0) return zk__request_fail(req, ZK_EHTTP, 505, "HTTP version not supported");
    req->version = version;

    /* path and query; absolute-form keeps only the path */
    s = req->target.ptr;
    end = s + req->target.len;
    if (*s != '/' && *s != '*') {
        const char *scheme = s;
        while (scheme + 2 < end && !(scheme[0] == ':' && scheme[1] == '/' && scheme[2] == '/')) scheme++;
        if (scheme + 2 < end) {
            s = scheme + 3;
            while (s < end && *s != '/' && *s != '?') s++;
        }
    }
    q = s;
    while (q < end && *q != '?') q++;
    req->path.ptr = s;
    req->path.len = (size_t)(q - s);
    if (req->path.len == 0) req->path = zk_str_c("/"); /* "http://host?x" asks for "/" */
    req->query.ptr = q < end ? q + 1 : end;
    req->query.len = q < end ? (size_t)(end - q - 1) : 0;
    return 0;
}

ZK_API int zk_http_parse_request(const char *buf, size_t len, size_t prev_len,
                                 zk_http_request *req, const zk_http_limits *limits) {
    size_t max_bytes = zk__http_max_bytes(limits), end, i;
    const char *line_end;
    int rc;
    req->method.ptr = req->target.ptr = req->path.ptr = req->query.ptr = buf;
    req->method.len = req->target.len = req->path.len = req->query.len = 0;
    req->version = 0;
    req->header_count = 0;
    req->status = 0;
    req->error = NULL;

    end = zk__http_head_end(buf, len, prev_len);
    if (end == 0) {
        /* Not complete. Refuse at once what cannot become a request: bytes
           that are not a method (a TLS hello, binary noise) or a first line
           that is already complete and wrong. */
        for (i = 0; i < len && buf[i] != ' '; i++) {
            if (!zk__is_tchar((unsigned char)buf[i]) || i == ZK__HTTP_MAX_METHOD)
                return zk__request_fail(req, ZK_EHTTP, 400, "malformed method");
        }
        if (zk__http_bare_lf(buf, len, prev_len))
            return zk__request_fail(req, ZK_EHTTP, 400, "line not ended by CRLF");
        line_end = (const char *)memchr(buf, '\n', len);
        if (line_end && (size_t)(line_end - buf) + 1 > prev_len) {
            if (line_end == buf || line_end[-1] != '\r')
                return zk__request_fail(req, ZK_EHTTP, 400, "line not ended by CRLF");
            rc = zk__request_line(buf, line_end - 1, req);
            if (rc < 0) return rc;
        }
        if (len >= max_bytes) return zk__request_fail(req, ZK_ETOOBIG, 431, "request head too large");
        return ZK_EAGAIN;
    }
    if (end > max_bytes) return zk__request_fail(req, ZK_ETOOBIG, 431, "request head too large");
    if (memchr(buf, '\0', end)) return zk__request_fail(req, ZK_EHTTP, 400, "NUL byte in request head");
    line_end = (const char *)memchr(buf, '\n', end);
    if (line_end == buf || line_end[-1] != '\r')
        return zk__request_fail(req, ZK_EHTTP, 400, "line not ended by CRLF");
    rc = zk__request_line(buf, line_end - 1, req);
    if (rc < 0) return rc;
    rc = zk__http_headers(line_end + 1, buf + end, req->headers, zk__http_max_headers(limits),
                          &req->header_count, &req->error);
    if (rc == ZK_ETOOBIG) return zk__request_fail(req, rc, 431, req->error);
    if (rc < 0) return zk__request_fail(req, rc, 400, req->error);
    return (int)end;
}

ZK_API int zk_http_parse_response(const char *buf, size_t len, size_t prev_len,
                                  zk_http_response *res, const zk_http_limits *limits) {
    size_t max_bytes = zk__http_max_bytes(limits), end;
    const char *p, *line_end;
    int rc;
    res->version = res->status = 0;
    res->reason.ptr = buf;
    res->reason.len = 0;
    res->header_count = 0;
    res->error = NULL;
    end = zk__http_head_end(buf, len, prev_len);
    if (end == 0) {
        if (memcmp(buf, "HTTP/", ZK__MIN(len, (size_t)5)) != 0) {
            res->error = "not an HTTP response";
            return ZK_EHTTP;
        }
        if (zk__http_bare_lf(buf, len, prev_len)) {
            res->error = "line not ended by CRLF";
            return ZK_EHTTP;
        }
        if (len >= max_bytes) { res->error = "response head too large"; return ZK_ETOOBIG; }
        return ZK_EAGAIN;
    }
    if (end > max_bytes) { res->error = "response head too large"; return ZK_ETOOBIG; }
    line_end = (const char *)memchr(buf, '\n', end);
    if (memchr(buf, '\0', end) || line_end == buf || line_end[-1] != '\r' ||
        line_end - buf < 13 || zk__http_version(buf) <= 0 || buf[8] != ' ' ||
        buf[9] < '1' || buf[9] > '9' || buf[10] < '0' || buf[10] > '9' ||
        buf[11] < '0' || buf[11] > '9' || (buf[12] != ' ' && buf[12] != '\r')) {
        res->error = "malformed status line";
        return ZK_EHTTP;
    }
    res->version = zk__http_version(buf);
    res->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    p = buf[12] == ' ' ? buf + 13 : buf + 12;
    for (res->reason.ptr = p; p < line_end - 1; p++) {
        if (!zk__is_value_char((unsigned char)*p)) {
            res->error = "malformed status line";
            return ZK_EHTTP;
        }
    }
    res->reason.len = (size_t)(line_end - 1 - res->reason.ptr);
    rc = zk__http_headers(line_end + 1, buf + end, res->headers, zk__http_max_headers(limits),
                          &res->header_count, &res->error);
    return rc < 0 ? rc : (int)end;
}

ZK_API zk_str zk_http_header_get(const zk_http_header *headers, size_t count, const char *name) {
    zk_str none = {NULL, 0};
    size_t i;
    for (i = 0; i < count; i++)
        if (zk_str_eq_nocase(headers[i].name, name)) return headers[i].value;
    return none;
}

/* Whether a comma-separated list holds token; case_sensitive for
   subprotocol names (RFC 6455 11.3.4 tokens compare exactly). */
ZK__PRIVATE int zk__list_has(zk_str list, const char *token, int case_sensitive) {
    const char *p = list.ptr, *end;
    size_t token_len = strlen(token);
    if (!p) return 0;
    end = p + list.len;
    while (p < end) {
        const char *s, *e;
        zk_str item;
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) p++;
        s = p;
        while (p < end && *p != ',') p++;
        e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        item.ptr = s;
        item.len = (size_t)(e - s);
        if (item.len && (case_sensitive ? item.len == token_len && memcmp(item.ptr, token, token_len) == 0
                                        : zk_str_eq_nocase(item, token)))
            return 1;
    }
    return 0;
}

ZK_API int zk_http_list_has(zk_str list, const char *token) { return zk__list_has(list, token, 0); }

ZK__PRIVATE int zk__hex(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

ZK_API int zk_url_decode(zk_str in, char *out, size_t cap, int plus_is_space) {
    size_t i, o = 0;
    for (i = 0; i < in.len; i++) {
        char c = in.ptr[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= in.len) return ZK_EINVAL;
            hi = zk__hex((unsigned char)in.ptr[i + 1]);
            lo = zk__hex((unsigned char)in.ptr[i + 2]);
            if (hi < 0 || lo < 0) return ZK_EINVAL;
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (o == cap) return ZK_ENOSPACE;
        out[o++] = c;
    }
    return (int)o;
}

/* Whether the raw (still encoded) query key equals name once decoded. */
ZK__PRIVATE int zk__query_key_is(zk_str key, const char *name) {
    size_t i = 0;
    for (; *name; name++) {
        int c;
        if (i >= key.len) return 0;
        c = (unsigned char)key.ptr[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= key.len) return 0;
            hi = zk__hex((unsigned char)key.ptr[i + 1]);
            lo = zk__hex((unsigned char)key.ptr[i + 2]);
            if (hi < 0 || lo < 0) return 0;
            c = hi << 4 | lo;
            i += 3;
        } else {
            if (c == '+') c = ' ';
            i++;
        }
        if (c != (unsigned char)*name) return 0;
    }
    return i == key.len;
}

ZK_API int zk_query_get(zk_str query, const char *name, char *out, size_t cap) {
    const char *p = query.ptr, *end;
    if (!p) return ZK_ENOTFOUND;
    end = p + query.len;
    while (p < end) {
        const char *s = p, *eq, *amp;
        zk_str key, value;
        while (p < end && *p != '&') p++;
        amp = p;
        if (p < end) p++;
        for (eq = s; eq < amp && *eq != '='; eq++) {}
        key.ptr = s;
        key.len = (size_t)(eq - s);
        if (key.len == 0 || !zk__query_key_is(key, name)) continue;
        value.ptr = eq < amp ? eq + 1 : amp;
        value.len = (size_t)(amp - value.ptr);
        return zk_url_decode(value, out, cap, 1);
    }
    return ZK_ENOTFOUND;
}

ZK_API const char *zk_http_status_text(int status) {
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* ---- writing heads ---- */

typedef struct zk__out {
    char *p;
    size_t cap, len;
    int bad; /* ZK_ENOSPACE or ZK_EINVAL once something did not fit or was refused */
} zk__out;

ZK__PRIVATE void zk__out_bytes(zk__out *o, const void *s, size_t n) {
    if (o->bad) return;
    if (o->cap - o->len < n) { o->bad = ZK_ENOSPACE; return; }
    if (n) memcpy(o->p + o->len, s, n);
    o->len += n;
}

ZK__PRIVATE void zk__out_str(zk__out *o, const char *s) { zk__out_bytes(o, s, strlen(s)); }

ZK__PRIVATE void zk__out_uint(zk__out *o, uint64_t v) {
    char tmp[20];
    size_t n = 0;
    do { tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10); v /= 10; } while (v);
    zk__out_bytes(o, tmp + sizeof tmp - n, n);
}

/* 1 if s may be a header value (or Host, path, Origin): no CTL but HTAB. */
ZK__PRIVATE int zk__safe_value(zk_str s) {
    size_t i;
    for (i = 0; i < s.len; i++)
        if (!zk__is_value_char((unsigned char)s.ptr[i])) return 0;
    return 1;
}

ZK__PRIVATE int zk__is_token(zk_str s) {
    size_t i;
    if (s.len == 0 || !s.ptr) return 0;
    for (i = 0; i < s.len; i++)
        if (!zk__is_tchar((unsigned char)s.ptr[i])) return 0;
    return 1;
}

ZK__PRIVATE void zk__out_header(zk__out *o, const char *name, zk_str value) {
    if (!zk__safe_value(value)) { if (!o->bad) o->bad = ZK_EINVAL; return; }
    zk__out_str(o, name);
    zk__out_bytes(o, ": ", 2);
    zk__out_bytes(o, value.ptr, value.len);
    zk__out_bytes(o, "\r\n", 2);
}

ZK__PRIVATE void zk__out_headers(zk__out *o, const zk_http_header *h, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (!zk__is_token(h[i].name) || (h[i].value.len && !h[i].value.ptr)) {
            if (!o->bad) o->bad = ZK_EINVAL;
            return;
        }
        zk__out_bytes(o, h[i].name.ptr, h[i].name.len);
        zk__out_bytes(o, ": ", 2);
        if (!zk__safe_value(h[i].value)) { if (!o->bad) o->bad = ZK_EINVAL; return; }
        zk__out_bytes(o, h[i].value.ptr, h[i].value.len);
        zk__out_bytes(o, "\r\n", 2);
    }
}

ZK__PRIVATE int zk__out_done(zk__out *o) {
    if (o->bad) return o->bad;
    return o->len > 0x7FFFFFFF ? ZK_ENOSPACE : (int)o->len;
}

ZK__PRIVATE void zk__out_status(zk__out *o, int status) {
    zk__out_str(o, "HTTP/1.1 ");
    zk__out_uint(o, (uint64_t)(status < 100 || status > 999 ? 500 : status));
    zk__out_bytes(o, " ", 1);
    zk__out_str(o, zk_http_status_text(status));
    zk__out_bytes(o, "\r\n", 2);
}

ZK_API int zk_http_write_response(char *out, size_t cap, int status,
                                  const zk_http_header *headers, size_t header_count,
                                  const void *body, size_t body_len) {
    zk__out o = {NULL, 0, 0, 0};
    o.p = out;
    o.cap = cap;
    if (status < 100 || status > 999) return ZK_EINVAL;
    zk__out_status(&o, status);
    if (status < 200 || status == 204) {
        if (body_len) return ZK_EINVAL; /* RFC 9110 6.4.1: no content, no Content-Length */
    } else {
        zk__out_str(&o, "Content-Length: ");
        zk__out_uint(&o, body_len);
        zk__out_bytes(&o, "\r\n", 2);
    }
    zk__out_str(&o, "Connection: close\r\n");
    zk__out_headers(&o, headers, header_count);
    zk__out_bytes(&o, "\r\n", 2);
    zk__out_bytes(&o, body, body_len);
    return zk__out_done(&o);
}

/* ---- the upgrade, server side ---- */

ZK_API void zk_ws_accept_key(zk_str key, char out[29]) {
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[20];
    zk__sha1 s;
    zk__sha1_init(&s);
    zk__sha1_update(&s, key.ptr, key.len);
    zk__sha1_update(&s, guid, sizeof guid - 1);
    zk__sha1_final(&s, digest);
    zk__b64_encode(digest, 20, out);
    out[28] = '\0';
}

ZK__PRIVATE int zk__upgrade_fail(zk_ws_upgrade *up, int status, const char *error) {
    up->status = status;
    up->error = error;
    return ZK_EHANDSHAKE;
}

ZK_API int zk_ws_upgrade_check(const zk_http_request *req,
                               const char *const *protocols, size_t protocol_count,
                               zk_ws_upgrade *up) {
    const zk_http_header *h = req->headers;
    size_t n = req->header_count, i, j, keys = 0;
    unsigned char nonce[18];
    zk_str version;
    memset(up, 0, sizeof *up);
    if (!zk_http_list_has(zk_http_header_get(h, n, "Upgrade"), "websocket")) return ZK_ENOTWS;
    if (req->method.len != 3 || memcmp(req->method.ptr, "GET", 3) != 0)
        return zk__upgrade_fail(up, 405, "WebSocket upgrade needs GET");
    if (req->version < 11) return zk__upgrade_fail(up, 400, "WebSocket upgrade needs HTTP/1.1");
    if (!zk_http_list_has(zk_http_header_get(h, n, "Connection"), "upgrade"))
        return zk__upgrade_fail(up, 400, "Connection header lacks Upgrade");
    for (i = 0; i < n; i++) {
        if (zk_str_eq_nocase(h[i].name, "Sec-WebSocket-Key")) {
            up->key = h[i].value;
            keys++;
        } else if (zk_str_eq_nocase(h[i].name, "Host")) {
            if (up->host.ptr) return zk__upgrade_fail(up, 400, "more than one Host header");
            up->host = h[i].value;
        }
    }
    if (!up->host.ptr || up->host.len == 0) return zk__upgrade_fail(up, 400, "missing Host header");
    if (keys != 1) return zk__upgrade_fail(up, 400, keys ? "more than one Sec-WebSocket-Key" : "missing Sec-WebSocket-Key");
    if (up->key.len != 24 || zk__b64_decode(up->key.ptr, 24, nonce, sizeof nonce) != 16)
        return zk__upgrade_fail(up, 400, "Sec-WebSocket-Key is not base64 of 16 bytes");
    version = zk_http_header_get(h, n, "Sec-WebSocket-Version");
    if (version.len != 2 || memcmp(version.ptr, "13", 2) != 0)
        return zk__upgrade_fail(up, 426, "unsupported Sec-WebSocket-Version (13 is)");
    up->origin = zk_http_header_get(h, n, "Origin");
    up->protocols = zk_http_header_get(h, n, "Sec-WebSocket-Protocol");
    for (j = 0; j < protocol_count && !up->protocol; j++) {
        for (i = 0; i < n && !up->protocol; i++) {
            if (zk_str_eq_nocase(h[i].name, "Sec-WebSocket-Protocol") &&
                zk__list_has(h[i].value, protocols[j], 1))
                up->protocol = protocols[j];
        }
    }
    zk_ws_accept_key(up->key, up->accept);
    return ZK_OK;
}

ZK_API int zk_ws_upgrade_accept(char *out, size_t cap, const zk_ws_upgrade *up,
                                const zk_http_header *headers, size_t header_count) {
    zk__out o = {NULL, 0, 0, 0};
    o.p = out;
    o.cap = cap;
    zk__out_str(&o, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: ");
    zk__out_bytes(&o, up->accept, 28);
    zk__out_bytes(&o, "\r\n", 2);
    if (up->protocol) zk__out_header(&o, "Sec-WebSocket-Protocol", zk_str_c(up->protocol));
    zk__out_headers(&o, headers, header_count);
    zk__out_bytes(&o, "\r\n", 2);
    return zk__out_done(&o);
}

ZK_API int zk_ws_upgrade_refuse(char *out, size_t cap, const zk_ws_upgrade *up) {
    zk_http_header h[2];
    size_t n = 1, len;
    char body[128];
    const char *error = up->error ? up->error : "bad WebSocket upgrade";
    int status = up->status ? up->status : 400;
    h[0].name = zk_str_c("Content-Type");
    h[0].value = zk_str_c("text/plain");
    if (status == 426) {
        h[1].name = zk_str_c("Sec-WebSocket-Version");
        h[1].value = zk_str_c("13");
        n = 2;
    } else if (status == 405) {
        h[1].name = zk_str_c("Allow");
        h[1].value = zk_str_c("GET");
        n = 2;
    }
    len = strlen(error);
    if (len > sizeof body - 1) len = sizeof body - 1;
    memcpy(body, error, len);
    body[len++] = '\n';
    return zk_http_write_response(out, cap, status, h, n, body, len);
}

/* ---- the upgrade, client side ---- */

ZK_API int zk_ws_client_request(char *out, size_t cap, const zk_ws_client_handshake *hs) {
    zk__out o = {NULL, 0, 0, 0};
    zk_str path = zk_str_c(hs->path && hs->path[0] ? hs->path : "/"), host = zk_str_c(hs->host);
    char key[25];
    size_t i;
    o.p = out;
    o.cap = cap;
    if (host.len == 0 || path.ptr[0] != '/') return ZK_EINVAL;
    for (i = 0; i < host.len; i++)
        if ((unsigned char)host.ptr[i] <= 0x20 || host.ptr[i] == 0x7F) return ZK_EINVAL;
    for (i = 0; i < path.len; i++)
        if ((unsigned char)path.ptr[i] <= 0x20 || path.ptr[i] == 0x7F) return ZK_EINVAL;
    zk__b64_encode(hs->key, 16, key);
    key[24] = '\0';
    zk__out_str(&o, "GET ");
    zk__out_bytes(&o, path.ptr, path.len);
    zk__out_str(&o, " HTTP/1.1\r\n");
    zk__out_header(&o, "Host", host);
    zk__out_str(&o, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    zk__out_bytes(&o, key, 24);
    zk__out_str(&o, "\r\nSec-WebSocket-Version: 13\r\n");
    if (hs->origin) zk__out_header(&o, "Origin", zk_str_c(hs->origin));
    if (hs->protocol_count) {
        zk__out_str(&o, "Sec-WebSocket-Protocol: ");
        for (i = 0; i < hs->protocol_count; i++) {
            if (!zk__is_token(zk_str_c(hs->protocols[i]))) return ZK_EINVAL;
            if (i) zk__out_bytes(&o, ", ", 2);
            zk__out_str(&o, hs->protocols[i]);
        }
        zk__out_bytes(&o, "\r\n", 2);
    }
    zk__out_headers(&o, hs->headers, hs->header_count);
    zk__out_bytes(&o, "\r\n", 2);
    return zk__out_done(&o);
}

ZK__PRIVATE int zk__verify_fail(const char **error, const char *why) {
    if (error) *error = why;
    return ZK_EHANDSHAKE;
}

ZK_API int zk_ws_client_verify(const zk_http_response *res, const zk_ws_client_handshake *hs,
                               zk_str *protocol, const char **error) {
    const zk_http_header *h = res->headers;
    size_t n = res->header_count, i;
    char key[25], accept[29];
    zk_str got, chosen;
    if (protocol) { protocol->ptr = ""; protocol->len = 0; }
    if (res->status != 101) return zk__verify_fail(error, "server did not answer 101 Switching Protocols");
    if (!zk_http_list_has(zk_http_header_get(h, n, "Upgrade"), "websocket"))
        return zk__verify_fail(error, "response lacks Upgrade: websocket");
    if (!zk_http_list_has(zk_http_header_get(h, n, "Connection"), "upgrade"))
        return zk__verify_fail(error, "response lacks Connection: Upgrade");
    zk__b64_encode(hs->key, 16, key);
    key[24] = '\0';
    zk_ws_accept_key(zk_str_c(key), accept);
    got = zk_http_header_get(h, n, "Sec-WebSocket-Accept");
    if (got.len != 28 || memcmp(got.ptr, accept, 28) != 0)
        return zk__verify_fail(error, "wrong Sec-WebSocket-Accept");
    if (zk_http_header_get(h, n, "Sec-WebSocket-Extensions").ptr)
        return zk__verify_fail(error, "server chose an extension that was not offered");
    chosen = zk_http_header_get(h, n, "Sec-WebSocket-Protocol");
    if (chosen.ptr) {
        int offered = 0;
        for (i = 0; i < hs->protocol_count && !offered; i++)
            offered = strlen(hs->protocols[i]) == chosen.len &&
                      memcmp(hs->protocols[i], chosen.ptr, chosen.len) == 0;
        if (!offered) return zk__verify_fail(error, "server chose a subprotocol that was not offered");
        if (protocol) *protocol = chosen;
    }
    if (error) *error = NULL;
    return ZK_OK;
}
