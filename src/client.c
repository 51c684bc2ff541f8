#include "app.c"
/* >>client implementation: states, backoff, heartbeat, calls, queue, cache - */

/* Someone waiting for a call's answer, until its own deadline: identical
   calls share one request, not their timeouts. */
typedef struct zk__waiter {
    struct zk__waiter *next;
    struct zk__msg *msg;
    zk_result_fn done;
    void *user;
    void (*undo)(zk_client *client, void *user);
    zk_timer timer;
} zk__waiter;

/* A message on its way: an event, or a call (rpc set) waiting in the
   offline queue or for its answer. */
typedef struct zk__msg {
    struct zk__msg *prev, *next;  /* the queue, or the in-flight list */
    char *json;                   /* the envelope as sent */
    size_t len;
    int is_call, queued;
    /* calls */
    zk_client *client;
    char rpc[24];                 /* the rpcId, a decimal string */
    char *key;                    /* "type payload" (dedup and cache) */
    size_t type_len;
    int idempotent, cacheable, dedup, background, is_auth;
    uint32_t ttl_ms;
    zk_timer timer;
    zk__waiter *waiters;
} zk__msg;

typedef struct zk__listener {
    struct zk__listener *next;
    char *type;
    zk_listener_fn fn;            /* NULL: taken off during a dispatch, freed after it */
    void *user;
} zk__listener;

typedef struct zk__cached {
    struct zk__cached *next;
    char *key;
    size_t type_len;
    char *result;                 /* JSON */
    size_t result_len;
    uint64_t expires;
} zk__cached;

typedef struct zk__rejoin {
    struct zk__rejoin *next;
    char *key;                    /* as a call's */
    size_t type_len;
    zk_result_fn done;
    void *user;
} zk__rejoin;

struct zk_client {
    zk_loop *loop;
    zk_client_opts opts;
    char *url;                    /* with the params in its query */
    char *auth;                   /* canonical auth payload, or NULL */
    zk_http_header *headers;      /* copied */
    char *strings;
    zk_conn *conn;
    int state, opened_once, authed, closing, dead, final_code;
    int last_code;
    char last_error[128];
    uint32_t attempts;
    int spread_next;              /* the next attempt follows a 1001 / 1012 */
    zk_timer retry, stable, ping, pong;
    zk__msg *queue, *queue_tail;  /* waiting for the connection */
    size_t queued, queued_bytes;
    size_t pending;               /* waiters: calls that have not had their result */
    zk__msg *flight;              /* calls sent, waiting for answers */
    zk__map rpcs;                 /* rpcId -> call in flight */
    zk__map inflight;             /* key -> call, for dedup */
    zk__cached *cache;
    zk__rejoin *rejoins;
    zk__listener *listeners;
    uint64_t next_rpc, unhandled;
    const char *refused;          /* why we closed the connection ourselves, or NULL */
    const char *protos[8];        /* zocket.msgpack, then opts.protocols (8: the connection's limit) */
    int dispatching;              /* listeners running: zk_client_off only marks */
    zk_doc doc, scratch;
    zk_writer w;                  /* JSON: keys, the cache, JSON envelopes */
    zk_writer mw;                 /* MessagePack envelopes */
    char *buf;                    /* for parsing copies */
    size_t buf_cap;
};

ZK_API const char *zk_client_state_name(int state) {
    switch (state) {
    case ZK_CLIENT_CONNECTING: return "connecting";
    case ZK_CLIENT_OPEN: return "open";
    case ZK_CLIENT_RECONNECTING: return "reconnecting";
    case ZK_CLIENT_CLOSED: return "closed";
    default: return "unknown";
    }
}

ZK__PRIVATE char *zk__strndup(const char *s, size_t n) {
    char *p = (char *)ZK_MALLOC(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---- canonical payloads: members sorted by key, no white space ---- */

typedef struct zk__member_ref {
    zk_str key;
    zk_value value;
} zk__member_ref;

ZK__PRIVATE int zk__member_cmp(const void *a, const void *b) {
    const zk__member_ref *x = (const zk__member_ref *)a, *y = (const zk__member_ref *)b;
    size_t n = x->key.len < y->key.len ? x->key.len : y->key.len;
    int c = n ? memcmp(x->key.ptr, y->key.ptr, n) : 0;
    if (c) return c;
    return x->key.len < y->key.len ? -1 : x->key.len > y->key.len;
}

ZK__PRIVATE void zk__write_canonical(zk_writer *w, zk_value v) {
    int t = zk_value_type(v);
    if (t == ZK_TYPE_OBJECT) {
        size_t n = zk_value_len(v), i = 0;
        zk__member_ref *m = n ? (zk__member_ref *)ZK_MALLOC(n * sizeof *m) : NULL;
        zk_value e;
        if (n && !m) {
            zk__w_fail(w, ZK_ENOMEM);
            return;
        }
        for (e = zk_value_first(v); zk_value_type(e) && i < n; e = zk_value_next(e), i++) {
            m[i].key = zk_value_key(e);
            m[i].value = e;
        }
        n = i; /* the members read: all of them, in a parsed document */
        if (n > 1) qsort(m, n, sizeof *m, zk__member_cmp);
        zk_write_object(w);
        for (i = 0; i < n; i++) {
            zk_write_key_n(w, m[i].key.ptr, m[i].key.len);
            zk__write_canonical(w, m[i].value);
        }
        zk_write_end(w);
        ZK_FREE(m);
    } else if (t == ZK_TYPE_ARRAY) {
        zk_value e;
        zk_write_array(w);
        for (e = zk_value_first(v); zk_value_type(e); e = zk_value_next(e)) zk__write_canonical(w, e);
        zk_write_end(w);
    } else {
        zk_write_value(w, v);
    }
}

/* Parses a copy of json[0..len) into doc; the copy lives in c->buf. */
ZK__PRIVATE int zk__client_parse(zk_client *c, zk_doc *doc, const char *json, size_t len) {
    if (len + 1 > c->buf_cap) {
        char *b = (char *)ZK_REALLOC(c->buf, len + 1);
        if (!b) return ZK_ENOMEM;
        c->buf = b;
        c->buf_cap = len + 1;
    }
    if (len) memcpy(c->buf, json, len);
    return zk_json_parse(doc, c->buf, len);
}

/* "type canonical-payload" into a new string; type_len says where the type
   ends. ZK_EINVAL for a bad type or payload. */
ZK__PRIVATE int zk__client_key(zk_client *c, const char *type, const char *payload, size_t plen, char **out,
                               size_t *type_len) {
    size_t tlen = type ? strlen(type) : 0;
    zk_str canon = {"", 0};
    int rc;
    if (!tlen || tlen > ZK_ROUTE_MAX_NAME || !zk_utf8_valid(type, tlen) || (plen && !payload)) return ZK_EINVAL;
    zk_writer_reset(&c->w);
    if (payload) {
        rc = zk__client_parse(c, &c->scratch, payload, plen);
        if (rc != ZK_OK) return rc == ZK_ENOMEM ? ZK_ENOMEM : ZK_EINVAL;
        zk__write_canonical(&c->w, zk_doc_root(&c->scratch));
        canon = zk_writer_result(&c->w);
        if (!canon.ptr) return c->w.err == ZK_ENOMEM ? ZK_ENOMEM : ZK_EINVAL;
    }
    *out = (char *)ZK_MALLOC(tlen + 1 + canon.len + 1);
    if (!*out) return ZK_ENOMEM;
    memcpy(*out, type, tlen);
    (*out)[tlen] = ' ';
    if (canon.len) memcpy(*out + tlen + 1, canon.ptr, canon.len);
    (*out)[tlen + 1 + canon.len] = '\0';
    *type_len = tlen;
    return 0;
}

/* The envelope of key (type and canonical payload) with rpc (NULL: an
   event) into a new string. */
ZK__PRIVATE char *zk__client_envelope(zk_client *c, const char *key, size_t type_len, const char *rpc, size_t *len) {
    const char *payload = key + type_len + 1;
    size_t plen = strlen(payload);
    zk_writer *w = c->opts.codec == ZK_CODEC_MSGPACK ? &c->mw : &c->w;
    zk_str out;
    if (plen && w == &c->mw && zk__client_parse(c, &c->scratch, payload, plen) != ZK_OK) return NULL;
    zk_writer_reset(w);
    zk_write_object(w);
    zk_write_key(w, "type");
    zk_write_str_n(w, key, type_len);
    if (plen) {
        zk_write_key(w, "payload");
        if (w == &c->mw) zk_write_value(w, zk_doc_root(&c->scratch)); /* the canonical JSON, as MessagePack */
        else zk__write_raw(w, payload, plen);
    }
    if (rpc) {
        zk_write_key(w, "rpcId");
        zk_write_str(w, rpc);
    }
    zk_write_end(w);
    out = zk_writer_result(w);
    if (!out.ptr) return NULL;
    *len = out.len;
    return zk__strndup(out.ptr, out.len);
}

/* ---- states ---- */

ZK__PRIVATE void zk__client_state(zk_client *c, int state, int code, const char *reason) {
    c->last_code = code;
    snprintf(c->last_error, sizeof c->last_error, "%s", reason ? reason : "");
    if (c->state == state) return;
    c->state = state;
    if (c->opts.on_state) c->opts.on_state(c, state, code, c->last_error);
}

ZK_API int zk_client_state(const zk_client *c) { return c->state; }
ZK_API const char *zk_client_error(const zk_client *c, int *code) {
    if (code) *code = c->last_code;
    return c->last_error;
}
ZK_API uint32_t zk_client_attempts(const zk_client *c) { return c->attempts; }
ZK_API void *zk_client_data(const zk_client *c) { return c->opts.data; }
ZK_API zk_loop *zk_client_loop(const zk_client *c) { return c->loop; }
ZK_API uint64_t zk_client_unhandled(const zk_client *c) { return c->unhandled; }

/* ---- messages and results ---- */

ZK__PRIVATE void zk__msg_free(zk__msg *m) {
    zk__waiter *w = m->waiters;
    while (w) {
        zk__waiter *next = w->next;
        zk_timer_stop(&w->timer);
        m->client->pending--;
        ZK_FREE(w);
        w = next;
    }
    zk_timer_stop(&m->timer);
    ZK_FREE(m->json);
    ZK_FREE(m->key);
    ZK_FREE(m);
}

ZK__PRIVATE void zk__queue_unlink(zk_client *c, zk__msg *m) {
    if (m->prev) m->prev->next = m->next;
    else c->queue = m->next;
    if (m->next) m->next->prev = m->prev;
    else c->queue_tail = m->prev;
    m->prev = m->next = NULL;
    m->queued = 0;
    c->queued--;
    c->queued_bytes -= m->len;
}

ZK__PRIVATE void zk__queue_push(zk_client *c, zk__msg *m, int front) {
    m->queued = 1;
    if (front) {
        m->prev = NULL;
        m->next = c->queue;
        if (c->queue) c->queue->prev = m;
        else c->queue_tail = m;
        c->queue = m;
    } else {
        m->next = NULL;
        m->prev = c->queue_tail;
        if (c->queue_tail) c->queue_tail->next = m;
        else c->queue = m;
        c->queue_tail = m;
    }
    c->queued++;
    c->queued_bytes += m->len;
}

ZK__PRIVATE void zk__flight_unlink(zk_client *c, zk__msg *m) {
    if (m->prev) m->prev->next = m->next;
    else if (c->flight == m) c->flight = m->next;
    if (m->next) m->next->prev = m->prev;
    m->prev = m->next = NULL;
}

/* Takes a call out of wherever it is (queue, flight, the tables). */
ZK__PRIVATE void zk__call_detach(zk_client *c, zk__msg *m) {
    if (m->queued) zk__queue_unlink(c, m);
    else zk__flight_unlink(c, m);
    if (m->rpc[0]) zk__map_del_value(&c->rpcs, m->rpc, strlen(m->rpc), m);
    if (m->dedup && m->key) zk__map_del_value(&c->inflight, m->key, strlen(m->key), m);
    zk_timer_stop(&m->timer);
}

/* Gives every waiter of m the result, then frees m (detached already). */
ZK__PRIVATE void zk__call_finish(zk_client *c, zk__msg *m, const zk_result *r) {
    zk__waiter *w = m->waiters;
    m->waiters = NULL;
    while (w) {
        zk__waiter *next = w->next;
        zk_timer_stop(&w->timer);
        if (!r->ok && w->undo) w->undo(c, w->user);
        c->pending--;
        if (w->done) w->done(c, r, w->user);
        ZK_FREE(w);
        w = next;
    }
    zk__msg_free(m);
}

ZK__PRIVATE void zk__call_fail(zk_client *c, zk__msg *m, const char *code, const char *message) {
    zk_result r;
    memset(&r, 0, sizeof r);
    r.code = zk_str_c(code);
    r.message = zk_str_c(message);
    zk__call_detach(c, m);
    zk__call_finish(c, m, &r);
}

ZK__PRIVATE void zk__call_timeout(zk_timer *t) {
    zk__msg *m = (zk__msg *)t->data;
    zk_client *c = m->client;
    if (m->is_auth) { /* the server never answered __auth: try another connection */
        zk__call_detach(c, m);
        zk__msg_free(m);
        c->dead = 1;
        if (c->conn) zk_conn_abort(c->conn);
        return;
    }
    zk__call_fail(c, m, ZK_CODE_TIMEOUT, "no answer in time");
}

/* Sends m now if open (0), else queues it (front or back); ZK_ENOSPACE
   when the queue is full. */
ZK__PRIVATE int zk__client_send(zk_client *c, zk__msg *m, int front) {
    size_t qmax = c->opts.queue_max ? c->opts.queue_max : 1024;
    size_t qbytes = c->opts.queue_max_bytes ? c->opts.queue_max_bytes : (size_t)1 << 20;
    if (c->state == ZK_CLIENT_OPEN && c->conn) {
        int rc = zk_conn_send(c->conn, m->json, m->len, c->opts.codec == ZK_CODEC_MSGPACK);
        if (rc < 0) return rc;
        if (m->is_call) {
            m->next = c->flight;
            m->prev = NULL;
            if (c->flight) c->flight->prev = m;
            c->flight = m;
        } else {
            zk__msg_free(m);
        }
        return 0;
    }
    if (!front && (c->queued >= qmax || c->queued_bytes + m->len > qbytes)) return ZK_ENOSPACE;
    zk__queue_push(c, m, front);
    return 0;
}

/* A new call message for key; not yet sent. timeout_ms 0: no deadline of
   its own (its waiters have theirs). */
ZK__PRIVATE zk__msg *zk__call_new(zk_client *c, char *key, size_t type_len, uint32_t timeout_ms) {
    zk__msg *m = (zk__msg *)ZK_MALLOC(sizeof *m);
    if (!m) return NULL;
    memset(m, 0, sizeof *m);
    m->client = c;
    m->is_call = 1;
    m->key = key;
    m->type_len = type_len;
    snprintf(m->rpc, sizeof m->rpc, "%llu", (unsigned long long)++c->next_rpc);
    m->json = zk__client_envelope(c, key, type_len, m->rpc, &m->len);
    if (!m->json || zk__map_put(&c->rpcs, m->rpc, strlen(m->rpc), m) < 0) {
        ZK_FREE(m->json);
        ZK_FREE(m);
        return NULL;
    }
    zk_timer_init(c->loop, &m->timer, zk__call_timeout, m);
    if (timeout_ms && zk_timer_start(&m->timer, timeout_ms, 0) < 0) {
        zk__map_del(&c->rpcs, m->rpc, strlen(m->rpc));
        ZK_FREE(m->json);
        ZK_FREE(m);
        return NULL;
    }
    return m;
}

/* A waiter's deadline: it alone gets TIMEOUT; a request nobody waits for
   any more is dropped (its late answer with it). */
ZK__PRIVATE void zk__waiter_timeout(zk_timer *t) {
    zk__waiter *w = (zk__waiter *)t->data, **p;
    zk__msg *m = w->msg;
    zk_client *c = m->client;
    zk_result r;
    for (p = &m->waiters; *p && *p != w; p = &(*p)->next) {}
    if (*p) *p = w->next;
    c->pending--;
    if (!m->waiters && !m->background) {
        zk__call_detach(c, m);
        zk__msg_free(m);
    }
    memset(&r, 0, sizeof r);
    r.code = zk_str_c(ZK_CODE_TIMEOUT);
    r.message = zk_str_c("no answer in time");
    if (w->undo) w->undo(c, w->user);
    if (w->done) w->done(c, &r, w->user);
    ZK_FREE(w);
}

ZK__PRIVATE int zk__add_waiter(zk__msg *m, zk_result_fn done, void *user, void (*undo)(zk_client *, void *),
                               uint32_t timeout_ms) {
    zk_client *c = m->client;
    zk__waiter *w = (zk__waiter *)ZK_MALLOC(sizeof *w), **tail = &m->waiters;
    if (!w) return ZK_ENOMEM;
    w->next = NULL;
    w->msg = m;
    w->done = done;
    w->user = user;
    w->undo = undo;
    zk_timer_init(c->loop, &w->timer, zk__waiter_timeout, w);
    if (zk_timer_start(&w->timer, timeout_ms ? timeout_ms : c->opts.call_timeout_ms ? c->opts.call_timeout_ms : 10000,
                       0) < 0) {
        ZK_FREE(w);
        return ZK_ENOMEM;
    }
    while (*tail) tail = &(*tail)->next;
    *tail = w;
    c->pending++;
    return 0;
}

ZK__PRIVATE zk__cached *zk__cache_find(zk_client *c, const char *key) {
    zk__cached *e;
    for (e = c->cache; e; e = e->next)
        if (strcmp(e->key, key) == 0) return e;
    return NULL;
}

ZK__PRIVATE void zk__cache_remove(zk_client *c, zk__cached *e) {
    zk__cached **p = &c->cache;
    while (*p && *p != e) p = &(*p)->next;
    if (*p) *p = e->next;
    ZK_FREE(e->key);
    ZK_FREE(e->result);
    ZK_FREE(e);
}

/* Answers from the cache: 1 when it did. */
ZK__PRIVATE int zk__cache_answer(zk_client *c, const char *key, zk_result_fn done, void *user) {
    zk__cached *e = zk__cache_find(c, key);
    zk_doc doc;
    zk_result r;
    char *copy;
    if (!e) return 0;
    if (zk_loop_now(c->loop) >= e->expires) {
        zk__cache_remove(c, e);
        return 0;
    }
    copy = zk__strndup(e->result, e->result_len);
    if (!copy) return 0;
    zk_doc_init(&doc);
    if (zk_json_parse(&doc, copy, e->result_len) != ZK_OK) {
        zk_doc_free(&doc);
        ZK_FREE(copy);
        return 0;
    }
    memset(&r, 0, sizeof r);
    r.ok = 1;
    r.value = zk_doc_root(&doc);
    r.cached = 1;
    if (done) done(c, &r, user);
    zk_doc_free(&doc);
    ZK_FREE(copy);
    return 1;
}

ZK__PRIVATE void zk__cache_store(zk_client *c, zk__msg *m, zk_value result) {
    zk__cached *e = zk__cache_find(c, m->key);
    zk_str text;
    char *copy;
    zk_writer_reset(&c->w);
    zk_write_value(&c->w, result);
    text = zk_writer_result(&c->w);
    if (!text.ptr || !(copy = zk__strndup(text.ptr, text.len))) return;
    if (!e) {
        e = (zk__cached *)ZK_MALLOC(sizeof *e);
        if (!e || !(e->key = zk__strndup(m->key, strlen(m->key)))) {
            ZK_FREE(e);
            ZK_FREE(copy);
            return;
        }
        e->type_len = m->type_len;
        e->next = c->cache;
        c->cache = e;
    } else {
        ZK_FREE(e->result);
    }
    e->result = copy;
    e->result_len = text.len;
    e->expires = zk_loop_now(c->loop) + (m->ttl_ms ? m->ttl_ms : 30000);
}

ZK_API int zk_client_call(zk_client *c, const char *type, const char *payload, size_t payload_len,
                          const zk_call_opts *opts, zk_result_fn done, void *user) {
    zk_call_opts none;
    char *key = NULL;
    size_t type_len;
    zk__msg *m;
    int rc;
    if (!c) return ZK_EINVAL;
    if (c->state == ZK_CLIENT_CLOSED) return ZK_ECLOSED;
    if (!opts) {
        memset(&none, 0, sizeof none);
        opts = &none;
    }
    rc = zk__client_key(c, type, payload, payload_len, &key, &type_len);
    if (rc < 0) return rc;
    if (opts->cacheable && zk__cache_answer(c, key, done, user)) {
        ZK_FREE(key);
        return 0;
    }
    if (c->pending >= (c->opts.max_pending ? c->opts.max_pending : 4096)) {
        ZK_FREE(key);
        return ZK_ENOSPACE;
    }
    if (!opts->no_dedup) {
        m = (zk__msg *)zk__map_get(&c->inflight, key, strlen(key));
        if (m) { /* the same call is on its way: wait for its answer too */
            ZK_FREE(key);
            if (opts->cacheable && !m->cacheable) {
                m->cacheable = 1;
                m->ttl_ms = opts->cache_ttl_ms;
            }
            return zk__add_waiter(m, done, user, opts->undo, opts->timeout_ms);
        }
    }
    m = zk__call_new(c, key, type_len, 0);
    if (!m) {
        ZK_FREE(key);
        return ZK_ENOMEM;
    }
    m->idempotent = opts->idempotent;
    m->cacheable = opts->cacheable;
    m->ttl_ms = opts->cache_ttl_ms;
    if (zk__add_waiter(m, done, user, opts->undo, opts->timeout_ms) < 0) {
        zk__map_del(&c->rpcs, m->rpc, strlen(m->rpc));
        zk__msg_free(m);
        return ZK_ENOMEM;
    }
    if (!opts->no_dedup) {
        if (zk__map_put(&c->inflight, m->key, strlen(m->key), m) < 0) {
            zk__map_del(&c->rpcs, m->rpc, strlen(m->rpc));
            zk__msg_free(m);
            return ZK_ENOMEM;
        }
        m->dedup = 1;
    }
    rc = zk__client_send(c, m, 0);
    if (rc < 0) {
        zk__call_detach(c, m);
        zk__msg_free(m);
        return rc;
    }
    return 0;
}

ZK_API int zk_client_emit(zk_client *c, const char *type, const char *payload, size_t payload_len) {
    char *key = NULL;
    size_t type_len;
    zk__msg *m;
    int rc;
    if (!c) return ZK_EINVAL;
    if (c->state == ZK_CLIENT_CLOSED) return ZK_ECLOSED;
    rc = zk__client_key(c, type, payload, payload_len, &key, &type_len);
    if (rc < 0) return rc;
    m = (zk__msg *)ZK_MALLOC(sizeof *m);
    if (!m) {
        ZK_FREE(key);
        return ZK_ENOMEM;
    }
    memset(m, 0, sizeof *m);
    m->client = c;
    m->json = zk__client_envelope(c, key, type_len, NULL, &m->len);
    ZK_FREE(key);
    if (!m->json) {
        ZK_FREE(m);
        return ZK_ENOMEM;
    }
    rc = zk__client_send(c, m, 0);
    if (rc < 0) zk__msg_free(m);
    return rc;
}

ZK_API int zk_client_rejoin(zk_client *c, const char *type, const char *payload, size_t payload_len,
                            zk_result_fn done, void *user) {
    zk__rejoin *j, **tail;
    char *key = NULL;
    size_t type_len;
    int rc;
    if (!c) return ZK_EINVAL;
    rc = zk__client_key(c, type, payload, payload_len, &key, &type_len);
    if (rc < 0) return rc;
    j = (zk__rejoin *)ZK_MALLOC(sizeof *j);
    if (!j) {
        ZK_FREE(key);
        return ZK_ENOMEM;
    }
    j->next = NULL;
    j->key = key;
    j->type_len = type_len;
    j->done = done;
    j->user = user;
    for (tail = &c->rejoins; *tail; tail = &(*tail)->next) {}
    *tail = j;
    return 0;
}

/* An internal call (rejoin, revalidation, auth) sent now, ahead of the
   queue. */
ZK__PRIVATE zk__msg *zk__client_internal(zk_client *c, const char *key, size_t type_len, uint32_t timeout_ms) {
    char *k = zk__strndup(key, strlen(key));
    zk__msg *m;
    if (!k) return NULL;
    m = zk__call_new(c, k, type_len, timeout_ms);
    if (!m) {
        ZK_FREE(k);
        return NULL;
    }
    if (zk_conn_send(c->conn, m->json, m->len, c->opts.codec == ZK_CODEC_MSGPACK) < 0) {
        zk__call_detach(c, m);
        zk__msg_free(m);
        return NULL;
    }
    m->next = c->flight;
    if (c->flight) c->flight->prev = m;
    c->flight = m;
    return m;
}

ZK_API size_t zk_client_invalidate(zk_client *c, const char *prefix) {
    size_t n = 0, plen = prefix ? strlen(prefix) : 0;
    zk__cached *e = c->cache, *next;
    for (; e; e = next) {
        next = e->next;
        if (!plen || strncmp(e->key, prefix, plen) == 0) {
            zk__cache_remove(c, e);
            n++;
        }
    }
    return n;
}

/* ---- listeners ---- */

ZK_API int zk_client_on(zk_client *c, const char *type, zk_listener_fn fn, void *user) {
    zk__listener *l, **tail;
    if (!c || !type || !*type || !fn) return ZK_EINVAL;
    l = (zk__listener *)ZK_MALLOC(sizeof *l);
    if (!l || !(l->type = zk__strndup(type, strlen(type)))) {
        ZK_FREE(l);
        return ZK_ENOMEM;
    }
    l->next = NULL;
    l->fn = fn;
    l->user = user;
    for (tail = &c->listeners; *tail; tail = &(*tail)->next) {}
    *tail = l;
    return 0;
}

ZK_API int zk_client_off(zk_client *c, const char *type, zk_listener_fn fn, void *user) {
    zk__listener **p;
    if (!c || !type) return ZK_EINVAL;
    for (p = &c->listeners; *p; p = &(*p)->next) {
        zk__listener *l = *p;
        if (l->fn && l->fn == fn && l->user == user && strcmp(l->type, type) == 0) {
            if (c->dispatching) { /* the dispatch loop may hold it: freed after */
                l->fn = NULL;
                return 0;
            }
            *p = l->next;
            ZK_FREE(l->type);
            ZK_FREE(l);
            return 0;
        }
    }
    return ZK_ENOTFOUND;
}

ZK__PRIVATE void zk__client_event(zk_client *c, zk_str type, zk_value payload) {
    zk__listener *l, **p;
    int heard = 0;
    c->dispatching++;
    for (l = c->listeners; l; l = l->next) /* listeners added now run too */
        if (l->fn && ((l->type[0] == '*' && !l->type[1]) ||
                      (strlen(l->type) == type.len && memcmp(l->type, type.ptr, type.len) == 0))) {
            heard = 1;
            l->fn(c, type, payload, l->user);
        }
    if (--c->dispatching == 0)
        for (p = &c->listeners; *p;) {
            l = *p;
            if (l->fn) {
                p = &l->next;
                continue;
            }
            *p = l->next;
            ZK_FREE(l->type);
            ZK_FREE(l);
        }
    if (!heard) c->unhandled++;
}

/* ---- the connection ---- */

ZK__PRIVATE int zk__client_connect(zk_client *c);
ZK__PRIVATE void zk__client_finish(zk_client *c, int code, const char *reason);
ZK__PRIVATE void zk__client_schedule(zk_client *c, int spread);

ZK__PRIVATE void zk__client_retry(zk_timer *t) { zk__client_connect((zk_client *)t->data); }

ZK__PRIVATE void zk__client_stable(zk_timer *t) { ((zk_client *)t->data)->attempts = 0; }

ZK__PRIVATE void zk__client_ping(zk_timer *t) {
    zk_client *c = (zk_client *)t->data;
    if (!c->conn || zk_timer_active(&c->pong)) return;
    if (zk_conn_ping(c->conn, "zk", 2) == 0)
        zk_timer_start(&c->pong, c->opts.pong_timeout_ms ? c->opts.pong_timeout_ms : 5000, 0);
}

ZK__PRIVATE void zk__client_no_pong(zk_timer *t) {
    zk_client *c = (zk_client *)t->data;
    if (!c->conn) return;
    c->dead = 1; /* on_close tells why */
    zk_conn_abort(c->conn);
}

ZK__PRIVATE void zk__client_alive(zk_client *c) { zk_timer_stop(&c->pong); }

/* The connection is usable: hooks, rejoins, revalidation, then the queue. */
ZK__PRIVATE void zk__client_ready(zk_client *c) {
    int reconnect = c->opened_once;
    zk__rejoin *j;
    zk__cached *e;
    c->opened_once = 1;
    c->state = ZK_CLIENT_OPEN; /* on_state is told after the queue went out */
    c->last_code = 0;
    c->last_error[0] = '\0';
    zk_timer_start(&c->stable, c->opts.stable_ms ? c->opts.stable_ms : 5000, 0);
    if (c->opts.on_open) c->opts.on_open(c, reconnect);
    if (c->state != ZK_CLIENT_OPEN || !c->conn) return;
    for (j = c->rejoins; j; j = j->next) {
        zk__msg *m = zk__client_internal(c, j->key, j->type_len, 0);
        if (m && zk__add_waiter(m, j->done, j->user, NULL, 0) < 0) {
            zk__call_detach(c, m);
            zk__msg_free(m);
            m = NULL;
        }
        if (!m) { /* out of memory: not open without its rooms; the next connection rejoins */
            zk_conn_abort(c->conn);
            return;
        }
    }
    if (reconnect) {
        zk__cached *next;
        for (e = c->cache; e; e = next) { /* expired entries are not brought back */
            next = e->next;
            if (zk_loop_now(c->loop) >= e->expires) zk__cache_remove(c, e);
        }
    }
    if (reconnect)
        for (e = c->cache; e; e = e->next) {
            zk__msg *m = zk__client_internal(c, e->key, e->type_len,
                                             c->opts.call_timeout_ms ? c->opts.call_timeout_ms : 10000);
            if (m) {
                m->background = 1;
                m->cacheable = 1;
            }
        }
    while (c->queue && c->state == ZK_CLIENT_OPEN && c->conn) {
        zk__msg *m = c->queue;
        zk__queue_unlink(c, m);
        if (zk__client_send(c, m, 0) < 0) { /* the connection cannot take it: fail it now */
            if (m->is_call) zk__call_fail(c, m, ZK_CODE_DISCONNECTED, "could not be sent");
            else zk__msg_free(m);
        }
    }
    if (c->state == ZK_CLIENT_OPEN && c->opts.on_state) c->opts.on_state(c, ZK_CLIENT_OPEN, 0, "");
}

ZK__PRIVATE void zk__client_on_open(zk_conn *conn, const zk_http_request *req) {
    zk_client *c = (zk_client *)zk_conn_data(conn);
    (void)req;
    if (!c || c->conn != conn) return;
    if (c->opts.codec == ZK_CODEC_MSGPACK && !zk_str_eq_nocase(zk_conn_protocol(conn), ZK_PROTOCOL_MSGPACK)) {
        c->refused = "the server does not speak zocket.msgpack";
        zk_conn_close(conn, ZK_CLOSE_POLICY, c->refused);
        return;
    }
    zk_timer_start(&c->ping, c->opts.ping_interval_ms ? c->opts.ping_interval_ms : 15000,
                   c->opts.ping_interval_ms ? c->opts.ping_interval_ms : 15000);
    if (c->auth) {
        size_t n = strlen(c->auth);
        char *k = (char *)ZK_MALLOC(7 + n + 1);
        zk__msg *m;
        if (!k) {
            zk_conn_abort(conn);
            return;
        }
        memcpy(k, "__auth ", 7);
        memcpy(k + 7, c->auth, n + 1);
        m = zk__client_internal(c, k, 6, c->opts.auth_timeout_ms ? c->opts.auth_timeout_ms : 10000);
        ZK_FREE(k);
        if (!m) {
            zk_conn_abort(conn);
            return;
        }
        m->is_auth = 1;
        return;
    }
    zk__client_ready(c);
}

ZK__PRIVATE void zk__client_answer(zk_client *c, zk_value root, int ok) {
    zk_value id = zk_value_get(root, "rpcId");
    zk_str ids = zk_value_str(id);
    char buf[24];
    zk__msg *m;
    zk_result r;
    if (zk_value_type(id) == ZK_TYPE_INT) {
        snprintf(buf, sizeof buf, "%lld", (long long)zk_value_int(id, 0));
        ids = zk_str_c(buf);
    }
    m = ids.len ? (zk__msg *)zk__map_get(&c->rpcs, ids.ptr, ids.len) : NULL;
    if (!m) return; /* late (timed out), or not ours */
    memset(&r, 0, sizeof r);
    r.ok = ok;
    if (ok) {
        r.value = zk_value_get(root, "payload");
    } else {
        zk_value e = zk_value_get(root, "error");
        r.code = zk_value_str(zk_value_get(e, "code"));
        r.message = zk_value_str(zk_value_get(e, "message"));
        r.value = zk_value_get(e, "data");
        if (!r.code.len) r.code = zk_str_c(ZK_CODE_INTERNAL);
    }
    zk__call_detach(c, m);
    if (m->is_auth) {
        zk__msg_free(m);
        if (ok) {
            c->authed = 1;
            zk__client_ready(c);
        } else {
            zk__client_finish(c, ZK_CLOSE_UNAUTHORIZED, "authentication failed");
        }
        return;
    }
    if (ok && m->cacheable) zk__cache_store(c, m, r.value);
    if (!ok && m->background) { /* revalidation failed: the entry goes */
        zk__cached *e = zk__cache_find(c, m->key);
        if (e) zk__cache_remove(c, e);
    }
    zk__call_finish(c, m, &r);
}

ZK__PRIVATE void zk__client_on_message(zk_conn *conn, zk_str data, int binary) {
    zk_client *c = (zk_client *)zk_conn_data(conn);
    zk_value root, type;
    zk_str t;
    if (!c || c->conn != conn) return; /* a connection we let go */
    zk__client_alive(c);
    if (binary != (c->opts.codec == ZK_CODEC_MSGPACK) || /* not in our codec, or unreadable: counted */
        (binary ? zk_msgpack_parse(&c->doc, data.ptr, data.len) != ZK_OK
                : zk_json_parse(&c->doc, (char *)(uintptr_t)data.ptr, data.len) != ZK_OK)) {
        c->unhandled++;
        return;
    }
    root = zk_doc_root(&c->doc);
    type = zk_value_get(root, "type");
    t = zk_value_str(type);
    if (zk_value_type(type) != ZK_TYPE_STRING) return;
    if (t.len == 9 && memcmp(t.ptr, "__rpc_res", 9) == 0) zk__client_answer(c, root, 1);
    else if (t.len == 9 && memcmp(t.ptr, "__rpc_err", 9) == 0) zk__client_answer(c, root, 0);
    else if (t.len == 6 && memcmp(t.ptr, "__pong", 6) == 0) return;
    else if (t.len == 7 && memcmp(t.ptr, "__error", 7) == 0) zk__client_event(c, t, zk_value_get(root, "error"));
    else zk__client_event(c, t, zk_value_get(root, "payload"));
}

ZK__PRIVATE void zk__client_on_pong(zk_conn *conn, zk_str data) {
    zk_client *c = (zk_client *)zk_conn_data(conn);
    (void)data;
    if (c && c->conn == conn) zk__client_alive(c);
}

/* Codes after which trying again cannot help. */
ZK__PRIVATE int zk__close_final(int code) {
    return code == ZK_CLOSE_NORMAL || code == ZK_CLOSE_POLICY || (code >= 4500 && code <= 4999);
}

/* Calls in flight when the connection went: idempotent ones are sent again
   (first in the queue, in their order), the others fail. */
ZK__PRIVATE void zk__client_orphan_calls(zk_client *c) {
    zk__msg *m = c->flight, *list = NULL;
    c->flight = NULL;
    /* the flight list is newest first: reverse it to the order sent */
    while (m) {
        zk__msg *next = m->next;
        m->next = list;
        list = m;
        m = next;
    }
    while (list) {
        zk__msg *next = list->next;
        list->prev = list->next = NULL;
        if (list->idempotent && c->state != ZK_CLIENT_CLOSED) {
            zk__queue_push(c, list, 0);
        } else if (list->is_auth || list->background || !list->waiters) {
            zk__call_detach(c, list);
            zk__msg_free(list);
        } else {
            zk__call_fail(c, list, ZK_CODE_DISCONNECTED, "the connection dropped");
        }
        list = next;
    }
}

/* Closed for good: everything waiting fails with CLOSED. */
ZK__PRIVATE void zk__client_finish(zk_client *c, int code, const char *reason) {
    zk_timer_stop(&c->retry);
    zk_timer_stop(&c->stable);
    zk_timer_stop(&c->ping);
    zk_timer_stop(&c->pong);
    zk__client_state(c, ZK_CLIENT_CLOSED, code, reason);
    if (c->conn) {
        zk_conn *conn = c->conn;
        c->conn = NULL;
        zk_conn_set_data(conn, NULL);
        zk_conn_close(conn, ZK_CLOSE_NORMAL, NULL);
    }
    while (c->flight) zk__call_fail(c, c->flight, ZK_CODE_CLOSED, "the client closed");
    while (c->queue) {
        zk__msg *m = c->queue;
        ZK_ASSERT(m->queued && !m->prev); /* the head: unlinking it moves c->queue on */
        if (m->is_call) zk__call_fail(c, m, ZK_CODE_CLOSED, "the client closed");
        else {
            zk__queue_unlink(c, m);
            zk__msg_free(m);
        }
    }
}

/* The next attempt: full jitter over the backoff window of this attempt,
   or over restart_spread_ms when the server went away or restarts. */
ZK__PRIVATE void zk__client_schedule(zk_client *c, int spread) {
    uint64_t window;
    c->attempts++;
    if (spread) {
        window = c->opts.restart_spread_ms ? c->opts.restart_spread_ms : 5000;
    } else {
        uint64_t base = c->opts.backoff_base_ms ? c->opts.backoff_base_ms : 500;
        uint64_t cap = c->opts.backoff_max_ms ? c->opts.backoff_max_ms : 15000;
        uint32_t k = c->attempts - 1;
        window = k >= 32 ? cap : base << k;
        if (window > cap) window = cap;
    }
    if (zk_timer_start(&c->retry, zk_loop_random(c->loop) % (window + 1), 0) < 0)
        zk__client_finish(c, 0, "out of memory");
}

ZK__PRIVATE void zk__client_on_close(zk_conn *conn, int code, zk_str reason, int clean) {
    zk_client *c = (zk_client *)zk_conn_data(conn);
    char why[128];
    int status = zk_conn_http_status(conn);
    (void)clean;
    if (!c || c->conn != conn) return; /* a connection we let go */
    c->conn = NULL;
    zk_timer_stop(&c->ping);
    zk_timer_stop(&c->pong);
    zk_timer_stop(&c->stable);
    if (c->dead) snprintf(why, sizeof why, "no answer to a ping in time");
    else if (status) snprintf(why, sizeof why, "upgrade refused: HTTP %d %s", status, zk_http_status_text(status));
    else if (c->refused) snprintf(why, sizeof why, "%s", c->refused); /* ours, whatever the peer echoed */
    else if (reason.len) snprintf(why, sizeof why, "%.*s", (int)ZK__MIN(reason.len, sizeof why - 1), reason.ptr);
    else snprintf(why, sizeof why, "closed (%d)", code);
    if (c->dead) code = ZK_CLOSE_ABNORMAL;
    if (c->refused) code = ZK_CLOSE_POLICY;
    c->dead = 0;
    c->refused = NULL;
    c->authed = 0;
    if (c->state == ZK_CLIENT_CLOSED) return;
    /* a refusal the same request will meet again (401, 403, 404...) is
       final; 408, 429 and 5xx are worth another try */
    if (zk__close_final(code) || (status >= 400 && status < 500 && status != 408 && status != 429) ||
        c->opts.no_reconnect ||
        (c->opts.max_attempts && c->attempts >= c->opts.max_attempts)) {
        /* closed for good before anyone hears of it: calls in flight get
           CLOSED (not the retriable DISCONNECTED), and a callback that looks
           at the state sees CLOSED */
        zk__client_finish(c, code, why);
        return;
    }
    zk__client_state(c, ZK_CLIENT_RECONNECTING, code, why);
    zk__client_orphan_calls(c);
    if (c->state != ZK_CLIENT_RECONNECTING) return; /* a callback closed it */
    zk__client_schedule(c, code == ZK_CLOSE_GOING_AWAY || code == 1012);
}

/* Appends params to the URL's query, percent-encoded. */
ZK__PRIVATE char *zk__client_url(const zk_client_opts *o) {
    static const char hex[] = "0123456789ABCDEF";
    size_t cap = strlen(o->url) + 2, i, j, n;
    char *u, *p;
    for (i = 0; i < o->param_count; i++) cap += 3 * (o->params[i].name.len + o->params[i].value.len) + 2;
    u = (char *)ZK_MALLOC(cap);
    if (!u) return NULL;
    n = strlen(o->url);
    memcpy(u, o->url, n);
    p = u + n;
    for (i = 0; i < o->param_count; i++) {
        const zk_str parts[2] = {o->params[i].name, o->params[i].value};
        *p++ = (i == 0 && !memchr(o->url, '?', n)) ? '?' : '&';
        for (j = 0; j < 2; j++) {
            size_t k;
            if (j) *p++ = '=';
            for (k = 0; k < parts[j].len; k++) {
                unsigned char ch = (unsigned char)parts[j].ptr[k];
                if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    ch == '-' || ch == '_' || ch == '.' || ch == '~') {
                    *p++ = (char)ch;
                } else {
                    *p++ = '%';
                    *p++ = hex[ch >> 4];
                    *p++ = hex[ch & 15];
                }
            }
        }
    }
    *p = '\0';
    return u;
}

ZK__PRIVATE int zk__client_connect(zk_client *c) {
    zk_conn_opts co;
    int err = 0;
    memset(&co, 0, sizeof co);
    co.url = c->url;
    co.protocols = c->opts.protocols;
    co.protocol_count = c->opts.protocol_count;
    co.headers = c->opts.headers;
    co.header_count = c->opts.header_count;
    co.connect_timeout_ms = c->opts.connect_timeout_ms;
    co.max_message = c->opts.max_message;
    co.cb.on_open = zk__client_on_open;
    co.cb.on_message = zk__client_on_message;
    co.cb.on_close = zk__client_on_close;
    co.cb.on_pong = zk__client_on_pong;
    co.data = c;
    c->conn = c->opts.loopback ? zk_loopback_connect(c->opts.loopback, &co, c->opts.loopback_fault, &err)
                               : zk_conn_connect(c->loop, &co, &err);
    if (!c->conn) { /* at once: as a failed attempt */
        char why[96];
        snprintf(why, sizeof why, "connect: %s", zk_strerror(err));
        if (err == ZK_EINVAL && c->state == ZK_CLIENT_CONNECTING) return ZK_EINVAL; /* zk_client_new says so */
        if (err == ZK_EINVAL || c->opts.no_reconnect ||
            (c->opts.max_attempts && c->attempts >= c->opts.max_attempts)) {
            zk__client_finish(c, 0, why);
            return 0;
        }
        zk__client_state(c, ZK_CLIENT_RECONNECTING, 0, why);
        zk__client_schedule(c, 0);
    }
    return 0;
}

ZK_API zk_client *zk_client_new(zk_loop *loop, const zk_client_opts *opts, int *err) {
    zk_client *c;
    int dummy;
    if (!err) err = &dummy;
    *err = ZK_EINVAL;
    if (!loop || !opts || !opts->url || (opts->param_count && !opts->params)) return NULL;
    if (opts->codec != ZK_CODEC_JSON && opts->codec != ZK_CODEC_MSGPACK) return NULL;
    *err = ZK_ENOMEM;
    c = (zk_client *)ZK_MALLOC(sizeof *c);
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->loop = loop;
    c->opts = *opts;
    if (opts->codec == ZK_CODEC_MSGPACK) { /* zocket.msgpack first, then yours */
        size_t i, n = 0;
        c->protos[n++] = ZK_PROTOCOL_MSGPACK;
        for (i = 0; i < opts->protocol_count && n < 8; i++)
            if (!zk_str_eq_nocase(zk_str_c(opts->protocols[i]), ZK_PROTOCOL_MSGPACK)) c->protos[n++] = opts->protocols[i];
        c->opts.protocols = c->protos;
        c->opts.protocol_count = n;
    }
    c->rpcs.keep = c->inflight.keep = 1; /* they empty after every answer */
    zk_doc_init(&c->doc);
    zk_doc_init(&c->scratch);
    zk_writer_init(&c->w, NULL, 0);
    zk_writer_init(&c->mw, NULL, 0);
    zk_writer_set_codec(&c->mw, ZK_CODEC_MSGPACK);
    zk_timer_init(loop, &c->retry, zk__client_retry, c);
    zk_timer_init(loop, &c->stable, zk__client_stable, c);
    zk_timer_init(loop, &c->ping, zk__client_ping, c);
    zk_timer_init(loop, &c->pong, zk__client_no_pong, c);
    c->url = zk__client_url(opts);
    if (!c->url) goto fail;
    if (opts->auth) {
        char *key = NULL;
        size_t tl;
        int rc = zk__client_key(c, "__auth", opts->auth, strlen(opts->auth), &key, &tl);
        if (rc < 0) {
            *err = rc;
            goto fail;
        }
        c->auth = zk__strndup(key + 7, strlen(key + 7));
        ZK_FREE(key);
        if (!c->auth) goto fail;
    }
    c->state = ZK_CLIENT_CONNECTING;
    c->opts.url = c->url;
    c->opts.auth = c->auth;
    if (zk__client_connect(c) == ZK_EINVAL) { /* a bad URL or header */
        *err = ZK_EINVAL;
        zk_client_free(c);
        return NULL;
    }
    *err = 0;
    return c;
fail:
    zk_client_free(c);
    return NULL;
}

ZK_API void zk_client_close(zk_client *c) {
    if (!c || c->state == ZK_CLIENT_CLOSED) return;
    zk__client_finish(c, ZK_CLOSE_NORMAL, "closed by the application");
}

ZK_API void zk_client_free(zk_client *c) {
    if (!c) return;
    if (c->state != ZK_CLIENT_CLOSED && (c->flight || c->queue || c->conn)) zk__client_finish(c, ZK_CLOSE_NORMAL, "freed");
    if (c->conn) {
        zk_conn_set_data(c->conn, NULL);
        zk_conn_abort(c->conn);
    }
    while (c->flight) zk__call_fail(c, c->flight, ZK_CODE_CLOSED, "the client was freed");
    while (c->queue) {
        zk__msg *m = c->queue;
        zk__queue_unlink(c, m);
        zk__msg_free(m);
    }
    zk_timer_stop(&c->retry);
    zk_timer_stop(&c->stable);
    zk_timer_stop(&c->ping);
    zk_timer_stop(&c->pong);
    while (c->cache) zk__cache_remove(c, c->cache);
    while (c->rejoins) {
        zk__rejoin *j = c->rejoins;
        c->rejoins = j->next;
        ZK_FREE(j->key);
        ZK_FREE(j);
    }
    while (c->listeners) {
        zk__listener *l = c->listeners;
        c->listeners = l->next;
        ZK_FREE(l->type);
        ZK_FREE(l);
    }
    zk__map_free(&c->rpcs);
    zk__map_free(&c->inflight);
    zk_doc_free(&c->doc);
    zk_doc_free(&c->scratch);
    zk_writer_free(&c->w);
    zk_writer_free(&c->mw);
    ZK_FREE(c->buf);
    ZK_FREE(c->url);
    ZK_FREE(c->auth);
    ZK_FREE(c);
}
