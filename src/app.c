#include "msgpack.c"
#include <stdarg.h>
/* >>app implementation: router, requests, schemas, caller, app, rooms ---- */

/* ---- a string-keyed hash table: open addressing, linear probing,
   deletion by backward shift (no tombstones, so a million join/leave
   cycles leave it as it was). Keys live in the values it points to. ---- */

typedef struct zk__slot {
    uint64_t hash;
    const char *key;
    size_t len;
    void *val;         /* NULL: empty slot */
} zk__slot;

typedef struct zk__map {
    zk__slot *slots;
    size_t cap, count; /* cap: a power of two, or 0 */
    int keep;          /* keep the slots when it empties (tables that fill and
                          empty all the time); otherwise they are given back */
} zk__map;

ZK__PRIVATE uint64_t zk__hash(const char *s, size_t n) {
    uint64_t h = 14695981039346656037ull;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

/* The slot of key, or the empty slot where it would go. */
ZK__PRIVATE size_t zk__map_probe(const zk__map *m, const char *key, size_t len, uint64_t h) {
    size_t i = (size_t)h & (m->cap - 1);
    for (;;) {
        const zk__slot *s = &m->slots[i];
        if (!s->val) return i;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) return i;
        i = (i + 1) & (m->cap - 1);
    }
}

ZK__PRIVATE void *zk__map_get(const zk__map *m, const char *key, size_t len) {
    if (!m->count) return NULL;
    return m->slots[zk__map_probe(m, key, len, zk__hash(key, len))].val;
}

/* Adds key (not present) -> val (not NULL). 0 or ZK_ENOMEM. */
ZK__PRIVATE int zk__map_put(zk__map *m, const char *key, size_t len, void *val) {
    uint64_t h = zk__hash(key, len);
    size_t i;
    if ((m->count + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16, j;
        zk__slot *old = m->slots, *slots = (zk__slot *)ZK_MALLOC(cap * sizeof *slots);
        if (!slots) return ZK_ENOMEM;
        memset(slots, 0, cap * sizeof *slots);
        m->slots = slots;
        j = m->cap;
        m->cap = cap;
        while (j--)
            if (old[j].val) m->slots[zk__map_probe(m, old[j].key, old[j].len, old[j].hash)] = old[j];
        ZK_FREE(old);
    }
    i = zk__map_probe(m, key, len, h);
    m->slots[i].hash = h;
    m->slots[i].key = key;
    m->slots[i].len = len;
    m->slots[i].val = val;
    m->count++;
    return 0;
}

/* Removes key when it maps to val (any value when val is NULL). */
ZK__PRIVATE void zk__map_del_value(zk__map *m, const char *key, size_t len, const void *val) {
    size_t i, j, want, mask = m->cap - 1;
    if (!m->count) return;
    i = zk__map_probe(m, key, len, zk__hash(key, len));
    if (!m->slots[i].val || (val && m->slots[i].val != val)) return;
    /* pull later members of the cluster back over the hole when their home
       slot does not lie between the hole and them */
    for (j = (i + 1) & mask;; j = (j + 1) & mask) {
        if (!m->slots[j].val) break;
        want = (size_t)m->slots[j].hash & mask;
        if (((j - want) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].val = NULL;
    m->count--;
    if (!m->count && !m->keep) { /* an empty table gives its memory back */
        ZK_FREE(m->slots);
        m->slots = NULL;
        m->cap = 0;
    }
}

ZK__PRIVATE void zk__map_del(zk__map *m, const char *key, size_t len) { zk__map_del_value(m, key, len, NULL); }

ZK__PRIVATE void zk__map_free(zk__map *m) {
    ZK_FREE(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

/* Writes a value that is already valid JSON (our own writer's output). */
ZK__PRIVATE void zk__write_raw(zk_writer *w, const char *s, size_t n) {
    if (zk__w_begin(w) < 0) return;
    zk__w_put(w, s, n);
    zk__w_done(w);
}

/* ---- router ---- */

typedef struct zk__route {
    char *name;
    size_t name_len;
    zk_handler_fn handler;
    const zk_schema *input;
    zk_middleware_fn *middleware;
    size_t middleware_count;
    void *data;
} zk__route;

struct zk_router {
    zk__map map;
    zk__route **routes;
    size_t count, cap;
    zk_middleware_fn *middleware;
    size_t middleware_count;
    /* the caller's buffers, reused from call to call when not nested */
    zk_doc doc;
    zk_writer writer;
    char *buf;
    size_t buf_cap;
    int busy;
};

/* Dotted names: parts of [A-Za-z0-9_-], at most ZK_ROUTE_MAX_NAME bytes. */
ZK__PRIVATE int zk__name_valid(const char *s, size_t n) {
    size_t i, part = 0;
    if (!n || n > ZK_ROUTE_MAX_NAME) return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (!part) return 0;
            part = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '_' || c == '-') {
            part++;
        } else {
            return 0;
        }
    }
    return part > 0;
}

ZK_API zk_router *zk_router_new(void) {
    zk_router *r = (zk_router *)ZK_MALLOC(sizeof *r);
    if (!r) return NULL;
    memset(r, 0, sizeof *r);
    zk_doc_init(&r->doc);
    zk_writer_init(&r->writer, NULL, 0);
    return r;
}

ZK__PRIVATE void zk__route_free(zk__route *rt) {
    ZK_FREE(rt->middleware);
    ZK_FREE(rt);
}

ZK_API void zk_router_free(zk_router *r) {
    size_t i;
    if (!r) return;
    for (i = 0; i < r->count; i++) zk__route_free(r->routes[i]);
    ZK_FREE(r->routes);
    ZK_FREE(r->middleware);
    zk__map_free(&r->map);
    zk_doc_free(&r->doc);
    zk_writer_free(&r->writer);
    ZK_FREE(r->buf);
    ZK_FREE(r);
}

/* A route named prefix.name (prefix may be empty) with middleware first
   then more; not yet registered. */
ZK__PRIVATE zk__route *zk__route_new(const char *prefix, size_t plen, const char *name, size_t nlen,
                                     zk_handler_fn handler, const zk_schema *input,
                                     const zk_middleware_fn *first, size_t nfirst,
                                     const zk_middleware_fn *more, size_t nmore, void *data) {
    size_t len = plen ? plen + 1 + nlen : nlen, nmw = nfirst + nmore;
    zk__route *rt = (zk__route *)ZK_MALLOC(sizeof *rt + len + 1);
    if (!rt) return NULL;
    memset(rt, 0, sizeof *rt);
    rt->name = (char *)(rt + 1);
    if (plen) {
        memcpy(rt->name, prefix, plen);
        rt->name[plen] = '.';
        memcpy(rt->name + plen + 1, name, nlen);
    } else {
        memcpy(rt->name, name, nlen);
    }
    rt->name[len] = '\0';
    rt->name_len = len;
    rt->handler = handler;
    rt->input = input;
    rt->data = data;
    if (nmw) {
        rt->middleware = (zk_middleware_fn *)ZK_MALLOC(nmw * sizeof *rt->middleware);
        if (!rt->middleware) {
            ZK_FREE(rt);
            return NULL;
        }
        if (nfirst) memcpy(rt->middleware, first, nfirst * sizeof *first);
        if (nmore) memcpy(rt->middleware + nfirst, more, nmore * sizeof *more);
        rt->middleware_count = nmw;
    }
    return rt;
}

/* Makes room for n more routes in the list and the table. */
ZK__PRIVATE int zk__router_reserve(zk_router *r, size_t n) {
    if (r->count + n > r->cap) {
        size_t cap = r->cap ? r->cap : 16;
        zk__route **routes;
        while (cap < r->count + n) cap *= 2;
        routes = (zk__route **)ZK_REALLOC(r->routes, cap * sizeof *routes);
        if (!routes) return ZK_ENOMEM;
        r->routes = routes;
        r->cap = cap;
    }
    return 0;
}

ZK__PRIVATE int zk__router_add(zk_router *r, zk__route *rt) {
    if (zk__router_reserve(r, 1) < 0 || zk__map_put(&r->map, rt->name, rt->name_len, rt) < 0) return ZK_ENOMEM;
    r->routes[r->count++] = rt;
    return 0;
}

ZK_API int zk_router_on(zk_router *r, const char *name, zk_handler_fn handler, const zk_route_opts *opts) {
    size_t len;
    zk__route *rt;
    if (!r || !name || !handler) return ZK_EINVAL;
    len = strlen(name);
    if (!zk__name_valid(name, len) || zk__map_get(&r->map, name, len)) return ZK_EINVAL;
    if (opts && opts->middleware_count && !opts->middleware) return ZK_EINVAL;
    rt = zk__route_new(NULL, 0, name, len, handler, opts ? opts->input : NULL,
                       opts ? opts->middleware : NULL, opts ? opts->middleware_count : 0, NULL, 0,
                       opts ? opts->data : NULL);
    if (!rt) return ZK_ENOMEM;
    if (zk__router_add(r, rt) < 0) {
        zk__route_free(rt);
        return ZK_ENOMEM;
    }
    return 0;
}

ZK_API int zk_router_use(zk_router *r, zk_middleware_fn fn) {
    zk_middleware_fn *m;
    if (!r || !fn) return ZK_EINVAL;
    m = (zk_middleware_fn *)ZK_REALLOC(r->middleware, (r->middleware_count + 1) * sizeof *m);
    if (!m) return ZK_ENOMEM;
    r->middleware = m;
    m[r->middleware_count++] = fn;
    return 0;
}

ZK_API int zk_router_mount(zk_router *r, const char *prefix, const zk_router *sub) {
    size_t plen, i, j, start;
    char name[ZK_ROUTE_MAX_NAME + 1];
    if (!r || !prefix || !sub || r == sub) return ZK_EINVAL;
    plen = strlen(prefix);
    if (!zk__name_valid(prefix, plen)) return ZK_EINVAL;
    /* every name first, so that a failure adds nothing */
    for (i = 0; i < sub->count; i++) {
        const zk__route *s = sub->routes[i];
        if (plen + 1 + s->name_len > ZK_ROUTE_MAX_NAME) return ZK_EINVAL;
        memcpy(name, prefix, plen);
        name[plen] = '.';
        memcpy(name + plen + 1, s->name, s->name_len);
        if (zk__map_get(&r->map, name, plen + 1 + s->name_len)) return ZK_EINVAL;
    }
    if (zk__router_reserve(r, sub->count) < 0) return ZK_ENOMEM;
    start = r->count;
    for (i = 0; i < sub->count; i++) {
        const zk__route *s = sub->routes[i];
        zk__route *rt = zk__route_new(prefix, plen, s->name, s->name_len, s->handler, s->input,
                                      sub->middleware, sub->middleware_count, s->middleware,
                                      s->middleware_count, s->data);
        if (!rt || zk__router_add(r, rt) < 0) {
            if (rt) zk__route_free(rt);
            for (j = start; j < r->count; j++) {
                zk__map_del(&r->map, r->routes[j]->name, r->routes[j]->name_len);
                zk__route_free(r->routes[j]);
            }
            r->count = start;
            return ZK_ENOMEM;
        }
    }
    return 0;
}

ZK_API size_t zk_router_count(const zk_router *r) { return r ? r->count : 0; }

/* ---- schemas ---- */

typedef struct zk__issues {
    zk_writer *w;
    size_t count;
    char path[256];
    size_t path_len;
} zk__issues;

ZK__PRIVATE void zk__issue(zk__issues *is, const char *fmt, ...) {
    char msg[160];
    va_list ap;
    is->count++;
    if (!is->w || is->count > ZK_SCHEMA_MAX_ISSUES) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    zk_write_object(is->w);
    zk_write_key(is->w, "path");
    zk_write_str_n(is->w, is->path, is->path_len);
    zk_write_key(is->w, "message");
    zk_write_str(is->w, msg);
    zk_write_end(is->w);
}

/* Appends ".name" (or "name" at the root) or "[i]" to the path; returns the
   old length to restore. A path longer than the buffer is cut short. */
ZK__PRIVATE size_t zk__path_push(zk__issues *is, const char *name, size_t nlen, size_t index) {
    size_t old = is->path_len, room = sizeof is->path - 1 - old;
    char tmp[32];
    size_t n;
    if (name) {
        if (old && room) is->path[is->path_len++] = '.', room--;
        n = nlen < room ? nlen : room;
        memcpy(is->path + is->path_len, name, n);
    } else {
        n = (size_t)snprintf(tmp, sizeof tmp, "[%lu]", (unsigned long)index);
        if (n > room) n = room;
        memcpy(is->path + is->path_len, tmp, n);
    }
    is->path_len += n;
    /* never cut a UTF-8 sequence: a path must stay a valid string */
    while (is->path_len > old && !zk_utf8_valid(is->path + old, is->path_len - old)) is->path_len--;
    return old;
}

ZK__PRIVATE const char *zk__schema_type_name(int type) {
    return type == ZK_TYPE_DOUBLE ? "number" : type == ZK_TYPE_INT ? "integer" : zk_type_name(type);
}

ZK__PRIVATE int zk__is_integral(zk_value v) {
    int t = zk_value_type(v);
    double d;
    if (t == ZK_TYPE_INT) return 1;
    if (t != ZK_TYPE_DOUBLE) return 0;
    d = zk_value_double(v, 0.5);
    /* the range first: converting a double outside int64 is undefined */
    return d >= -9223372036854775808.0 && d < 9223372036854775808.0 && d == (double)(int64_t)d;
}

/* unit: "bytes long" (strings), "items", "members", or NULL (numbers) */
ZK__PRIVATE void zk__bounds(zk__issues *is, const zk_schema *s, double n, const char *unit) {
    const char *verb = unit && unit[0] == 'b' ? "be" : unit ? "have" : "be";
    if ((s->flags & ZK_SCHEMA_MIN) && n < s->min)
        zk__issue(is, "must %s at least %.15g%s%s", verb, s->min, unit ? " " : "", unit ? unit : "");
    else if ((s->flags & ZK_SCHEMA_MAX) && n > s->max)
        zk__issue(is, "must %s at most %.15g%s%s", verb, s->max, unit ? " " : "", unit ? unit : "");
}

ZK__PRIVATE void zk__check(zk__issues *is, const zk_schema *s, zk_value v) {
    int t = zk_value_type(v), ok;
    if (t == ZK_TYPE_NONE) {
        if (!(s->flags & ZK_SCHEMA_OPTIONAL)) zk__issue(is, "required");
        return;
    }
    if (t == ZK_TYPE_NULL && (s->flags & ZK_SCHEMA_NULLABLE)) return;
    switch (s->type) {
    case ZK_TYPE_NONE: ok = 1; break;
    case ZK_TYPE_DOUBLE: ok = t == ZK_TYPE_INT || t == ZK_TYPE_DOUBLE; break;
    case ZK_TYPE_INT: ok = zk__is_integral(v); break;
    default: ok = t == s->type; break;
    }
    if (!ok) {
        zk__issue(is, "expected %s, got %s", zk__schema_type_name(s->type), zk_type_name(t));
        return;
    }
    switch (s->type) {
    case ZK_TYPE_STRING:
    case ZK_TYPE_BINARY: zk__bounds(is, s, (double)zk_value_len(v), "bytes long"); break;
    case ZK_TYPE_INT:
    case ZK_TYPE_DOUBLE: zk__bounds(is, s, zk_value_double(v, 0), NULL); break;
    case ZK_TYPE_ARRAY: {
        zk_value e;
        size_t i = 0;
        zk__bounds(is, s, (double)zk_value_len(v), "items");
        if (s->items)
            for (e = zk_value_first(v); zk_value_type(e); e = zk_value_next(e), i++) {
                size_t old = zk__path_push(is, NULL, 0, i);
                zk__check(is, s->items, e);
                is->path_len = old;
            }
        break;
    }
    case ZK_TYPE_OBJECT: {
        const zk_schema *f;
        zk__bounds(is, s, (double)zk_value_len(v), "members");
        for (f = s->fields; f && f->name; f++) {
            size_t old = zk__path_push(is, f->name, strlen(f->name), 0);
            zk__check(is, f, zk_value_get(v, f->name));
            is->path_len = old;
        }
        if ((s->flags & ZK_SCHEMA_STRICT)) {
            zk_value m;
            for (m = zk_value_first(v); zk_value_type(m); m = zk_value_next(m)) {
                zk_str key = zk_value_key(m);
                for (f = s->fields; f && f->name; f++)
                    if (strlen(f->name) == key.len && memcmp(f->name, key.ptr, key.len) == 0) break;
                if (!f || !f->name) {
                    size_t old = zk__path_push(is, key.ptr, key.len, 0);
                    zk__issue(is, "unknown member");
                    is->path_len = old;
                }
            }
        }
        break;
    }
    default: break;
    }
}

ZK_API size_t zk_schema_check(const zk_schema *schema, zk_value v, zk_writer *w) {
    zk__issues is;
    is.w = w;
    is.count = 0;
    is.path_len = 0;
    if (w) zk_write_array(w);
    if (schema) zk__check(&is, schema, v);
    if (w) zk_write_end(w);
    return is.count;
}

/* ---- requests ---- */

typedef struct zk__member zk__member;

enum { ZK__RPC_NONE, ZK__RPC_STRING, ZK__RPC_INT };

struct zk_request {
    zk_router *router;
    const zk__route *route;
    zk_app *app;
    zk_conn *conn;
    zk__member *member;
    void *context;               /* zk_router_call's (an app's is the member's) */
    zk_str type;
    zk_value payload;
    char rpc_id[ZK_RPC_ID_MAX + 1];
    size_t rpc_len;
    int rpc_kind;
    const char *keys[ZK_REQUEST_MAX_VALUES];
    void *values[ZK_REQUEST_MAX_VALUES];
    unsigned nvalues;
    zk_writer writer;
    zk_answer_fn done;           /* zk_router_call's sink */
    void *user;
    unsigned char answered;      /* answered, or kept (the copy answers) */
    unsigned char heap;          /* a kept copy */
    unsigned char timed_out;     /* kept: TIMEOUT went out already */
    unsigned char is_auth;       /* an __auth request */
    /* kept copies only */
    zk_timer deadline;
    zk_request *prev, *next;     /* the member's kept list, or the app's orphans */
};

ZK_API zk_str zk_request_type(const zk_request *r) { return r->type; }
ZK_API zk_value zk_request_payload(const zk_request *r) { return r->payload; }
ZK_API int zk_request_is_call(const zk_request *r) { return r->rpc_kind != ZK__RPC_NONE; }
ZK_API zk_conn *zk_request_conn(const zk_request *r) { return r->conn; }
ZK_API zk_app *zk_request_app(const zk_request *r) { return r->app; }
ZK_API void *zk_request_route_data(const zk_request *r) { return r->route ? r->route->data : NULL; }
ZK_API zk_writer *zk_request_writer(zk_request *r) { return &r->writer; }

ZK_API int zk_request_set(zk_request *r, const char *key, void *value) {
    unsigned i;
    if (!key) return ZK_EINVAL;
    for (i = 0; i < r->nvalues; i++)
        if (strcmp(r->keys[i], key) == 0) {
            r->values[i] = value;
            return 0;
        }
    if (r->nvalues == ZK_REQUEST_MAX_VALUES) return ZK_ENOSPACE;
    r->keys[r->nvalues] = key;
    r->values[r->nvalues++] = value;
    return 0;
}

ZK_API void *zk_request_get(const zk_request *r, const char *key) {
    unsigned i;
    if (!key) return NULL;
    for (i = 0; i < r->nvalues; i++)
        if (strcmp(r->keys[i], key) == 0) return r->values[i];
    return NULL;
}

/* ---- the app's state ---- */

typedef struct zk__room zk__room;

typedef struct zk__seat {        /* a room's entry for a member */
    zk__member *member;
    uint32_t slot;               /* where the room is in member->rooms */
    uint64_t joined;             /* loop time (a broker delivers only what was sent since) */
} zk__seat;

typedef struct zk__membership {  /* a member's entry for a room */
    zk__room *room;
    uint32_t seat;               /* where the member is in room->seats */
} zk__membership;

struct zk__room {
    zk__seat *seats;
    uint32_t count, cap;
    char *name;                  /* follows the struct */
    size_t name_len;
};

struct zk__member {
    zk_app *app;
    zk_conn *conn;
    void *context;
    char id[23];
    size_t index;                /* in app->members */
    zk__membership *rooms;
    uint32_t room_count, room_cap;
    uint64_t mark;               /* the last send that reached it */
    uint64_t since;              /* loop time it connected */
    unsigned char codec;         /* ZK_CODEC_* */
    uint64_t tokens;             /* rate limit: thousandths of a message */
    uint64_t refilled;           /* loop time of the last refill */
    uint32_t strikes;            /* messages refused in a row */
    unsigned char authed;
    zk_timer auth_timer;
    zk_request *kept;            /* kept requests not answered yet */
    size_t kept_count;
    zk_request *active;          /* the request its handler runs for now */
};

struct zk_app {
    zk_loop *loop;
    zk_server *server;
    zk_router *router;
    zk_app_opts opts;
    char *path;
    zk__member **members;
    size_t count, cap;
    zk__map ids, rooms;
    zk_doc doc;
    zk_writer results;           /* lent to each request in turn */
    zk_writer envelope;          /* answers on the way out */
    zk_writer payload;           /* zk_app_message's */
    zk_writer message;
    char message_type[ZK_ROUTE_MAX_NAME + 1];
    int message_started;
    zk_frame *frame;             /* the last message, reused when no queue holds it */
    size_t frame_cap;
    zk_frame *frame_mp;          /* the same message in MessagePack, made when needed */
    size_t frame_mp_cap;
    int frame_mp_state;          /* 0 not made for this message, 1 made, -1 cannot be */
    zk_str frame_type, frame_payload; /* what the frames say (views valid during a send) */
    zk_doc mp_doc;               /* the payload, read again to write it in MessagePack */
    zk_writer mp_copy, mp_out;
    const char *protocols[2];    /* offered when server.protocols is NULL */
    uint64_t mark;
    zk_app_stats stats;
    zk_request *orphans;         /* kept requests whose connection is gone */
    unsigned char ids_pool[512]; /* random bytes from the OS, for client ids */
    size_t ids_left;
    zk_broker *broker;           /* rooms across processes (broker.c), or NULL */
};

/* broker.c: a room got its first local member (on 1) or lost its last (0);
   a message to publish (before it is delivered here); the app going away. */
ZK__PRIVATE int zk__broker_room(zk_broker *b, const char *room, size_t len, int on);
ZK__PRIVATE int zk__broker_publish(zk_broker *b, const zk_target *to);

ZK_API void *zk_request_context(const zk_request *r) { return r->app ? (r->member ? r->member->context : NULL) : r->context; }
ZK_API void zk_request_set_context(zk_request *r, void *ctx) {
    if (r->member) r->member->context = ctx;
    else if (!r->app) r->context = ctx;
}

/* The default text of a code. */
ZK__PRIVATE const char *zk__code_text(const char *code) {
    static const char *const texts[][2] = {
        {ZK_CODE_BAD_REQUEST, "bad request"},
        {ZK_CODE_NOT_FOUND, "not found"},
        {ZK_CODE_INVALID_INPUT, "invalid input"},
        {ZK_CODE_UNAUTHORIZED, "unauthorized"},
        {ZK_CODE_FORBIDDEN, "forbidden"},
        {ZK_CODE_TIMEOUT, "timed out"},
        {ZK_CODE_TOO_MANY_REQUESTS, "too many requests"},
        {ZK_CODE_PAYLOAD_TOO_LARGE, "payload too large"},
        {ZK_CODE_INTERNAL, "internal error"}};
    size_t i;
    for (i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (strcmp(code, texts[i][0]) == 0) return texts[i][1];
    return "error";
}

ZK__PRIVATE void zk__kept_unlink(zk_request *r);
ZK__PRIVATE void zk__send_answer(zk_request *r, const zk_answer *a);

/* Delivers an answer to the request's sink; the request is answered. */
ZK__PRIVATE void zk__deliver(zk_request *r, const zk_answer *a) {
    r->answered = 1;
    if (r->done) r->done(a, r->user);
    else if (r->app && r->conn) zk__send_answer(r, a);
}

/* Ends a kept copy after its answer (or the owner's answer attempt). */
ZK__PRIVATE void zk__kept_free(zk_request *r) {
    zk_timer_stop(&r->deadline);
    zk__kept_unlink(r);
    zk_writer_free(&r->writer);
    ZK_FREE(r);
}

ZK__PRIVATE int zk__answer_status(zk_request *r) {
    if (!r->heap) return r->answered ? ZK_EINVAL : 0;
    if (r->timed_out) return ZK_ETIMEDOUT;
    if (r->app && !r->conn) return ZK_ECLOSED;
    return 0;
}

/* zk__fail and zk__ok answer r and leave it be; a kept copy is freed by the
   public calls, the only ones a kept copy reaches. */
ZK__PRIVATE int zk__fail(zk_request *r, const char *code, const char *message, zk_str data) {
    zk_answer a;
    int status = zk__answer_status(r);
    if (status) return status;
    if (!code || !*code || strlen(code) > 64 || !zk_utf8_valid(code, strlen(code))) code = ZK_CODE_INTERNAL;
    if (!message || !zk_utf8_valid(message, strlen(message))) message = zk__code_text(code);
    if (strcmp(code, ZK_CODE_INTERNAL) == 0 && r->app && !r->app->opts.expose_internal) {
        message = zk__code_text(code);
        data.ptr = NULL;
        data.len = 0;
    }
    a.ok = 0;
    a.code = zk_str_c(code);
    a.message = zk_str_c(message);
    a.data = data;
    zk__deliver(r, &a);
    return 0;
}

ZK__PRIVATE int zk__ok(zk_request *r) {
    zk_answer a;
    zk_str result;
    int status = zk__answer_status(r);
    if (status) return status;
    result = zk_writer_result(&r->writer);
    if (!result.ptr) {
        if (r->writer.len || r->writer.err) {
            zk_str none = {NULL, 0};
            return zk__fail(r, ZK_CODE_INTERNAL,
                            r->writer.err ? "the result could not be written" : "the result is incomplete", none);
        }
        result = r->writer.codec == ZK_CODEC_MSGPACK ? zk_str_c("\xc0") : zk_str_c("null");
    }
    a.ok = 1;
    a.code.ptr = a.message.ptr = NULL;
    a.code.len = a.message.len = 0;
    a.data = result;
    zk__deliver(r, &a);
    return 0;
}

ZK_API int zk_request_fail(zk_request *r, const char *code, const char *message) {
    int rc = zk__fail(r, code, message, zk_writer_result(&r->writer));
    if (r->heap) zk__kept_free(r);
    return rc;
}

ZK_API int zk_request_ok(zk_request *r) {
    int rc = zk__ok(r);
    if (r->heap) zk__kept_free(r);
    return rc;
}

ZK__PRIVATE void zk__kept_deadline(zk_timer *t);

ZK_API zk_request *zk_request_keep(zk_request *r) {
    zk_request *k;
    size_t extra;
    zk_str none = {NULL, 0};
    if (r->answered || r->heap) return NULL;
    extra = r->type.len + 1;
    k = (zk_request *)ZK_MALLOC(sizeof *k + extra);
    if (!k) {
        zk__fail(r, ZK_CODE_INTERNAL, "out of memory", none);
        return NULL;
    }
    memcpy(k, r, sizeof *k);
    memcpy((char *)(k + 1), r->type.ptr, r->type.len);
    ((char *)(k + 1))[r->type.len] = '\0';
    k->type.ptr = (const char *)(k + 1);
    k->payload.doc = NULL;
    k->payload.at = 0;
    k->heap = 1;
    k->prev = k->next = NULL;
    /* the writer: its own buffer, with whatever was written so far */
    zk_writer_init(&k->writer, NULL, 0);
    k->writer.codec = r->writer.codec;
    if (r->writer.len) {
        memcpy(&k->writer, &r->writer, sizeof k->writer);
        k->writer.buf = (char *)ZK_MALLOC(r->writer.len);
        k->writer.cap = k->writer.buf ? r->writer.len : 0;
        k->writer.owned = 1;
        if (k->writer.buf) memcpy(k->writer.buf, r->writer.buf, r->writer.len);
        else zk__w_fail(&k->writer, ZK_ENOMEM);
    }
    memset(&k->deadline, 0, sizeof k->deadline);
    if (r->member) {
        zk__member *m = r->member;
        uint32_t ms = r->app->opts.request_timeout_ms ? r->app->opts.request_timeout_ms : 30000;
        zk_timer_init(r->app->loop, &k->deadline, zk__kept_deadline, k);
        if (zk_timer_start(&k->deadline, ms, 0) < 0) {
            zk_writer_free(&k->writer);
            ZK_FREE(k);
            zk__fail(r, ZK_CODE_INTERNAL, "out of memory", none);
            return NULL;
        }
        k->next = m->kept;
        if (m->kept) m->kept->prev = k;
        m->kept = k;
        m->kept_count++;
    } else if (r->app) { /* its connection is gone already */
        k->next = r->app->orphans;
        if (r->app->orphans) r->app->orphans->prev = k;
        r->app->orphans = k;
    }
    r->answered = 1; /* the copy answers now */
    return k;
}

/* The server's deadline for a kept request: the client hears TIMEOUT; the
   copy waits for its owner's answer, which is then refused. */
ZK__PRIVATE void zk__kept_deadline(zk_timer *t) {
    zk_request *r = (zk_request *)t->data;
    zk_answer a;
    if (r->timed_out || !r->conn) return;
    a.ok = 0;
    a.code = zk_str_c(ZK_CODE_TIMEOUT);
    a.message = zk_str_c("the request was not answered in time");
    a.data.ptr = NULL;
    a.data.len = 0;
    zk__deliver(r, &a);
    r->timed_out = 1;
}

/* ---- dispatch: schema, middleware, handler ---- */

ZK__PRIVATE void zk__run(zk_request *r) {
    const zk__route *rt = r->route;
    size_t i;
    if (rt->input) {
        zk_writer *w = &r->writer;
        zk_write_object(w);
        zk_write_key(w, "issues");
        if (zk_schema_check(rt->input, r->payload, w)) {
            zk_write_end(w);
            zk__fail(r, ZK_CODE_INVALID_INPUT, "invalid input", zk_writer_result(w));
            return;
        }
        zk_writer_reset(w);
    }
    for (i = 0; i < r->router->middleware_count + rt->middleware_count; i++) {
        zk_middleware_fn fn = i < r->router->middleware_count
                                  ? r->router->middleware[i]
                                  : rt->middleware[i - r->router->middleware_count];
        int rc = fn(r);
        if (r->answered) return;
        if (rc) {
            zk_str none = {NULL, 0};
            zk__fail(r, ZK_CODE_INTERNAL, "middleware refused without an answer", none);
            return;
        }
    }
    rt->handler(r);
    if (!r->answered) zk__ok(r);
}

/* ---- caller ---- */

ZK_API int zk_router_call(zk_router *router, const char *type, const char *payload, size_t payload_len,
                          void *context, zk_answer_fn done, void *user) {
    zk_request r;
    zk_doc local_doc, *doc;
    zk_writer *shared = NULL;
    char *buf = NULL;
    int nested, rc = 0;
    if (!router || !type || !done || (payload_len && !payload)) return ZK_EINVAL;
    nested = router->busy;
    memset(&r, 0, sizeof r);
    r.router = router;
    r.context = context;
    r.done = done;
    r.user = user;
    r.type = zk_str_c(type);
    r.rpc_kind = ZK__RPC_STRING;
    memcpy(r.rpc_id, "call", 5);
    r.rpc_len = 4;
    if (nested) { /* a handler calls again: buffers of its own */
        doc = &local_doc;
        zk_doc_init(doc);
        zk_writer_init(&r.writer, NULL, 0);
    } else {
        doc = &router->doc;
        shared = &router->writer;
        r.writer = *shared;
        zk_writer_reset(&r.writer);
    }
    router->busy++;
    if (payload) {
        if (nested || payload_len + 1 > router->buf_cap) {
            buf = (char *)ZK_MALLOC(payload_len + 1);
            if (!buf) {
                rc = ZK_ENOMEM;
                goto out;
            }
            if (!nested) {
                ZK_FREE(router->buf);
                router->buf = buf;
                router->buf_cap = payload_len + 1;
            }
        } else {
            buf = router->buf;
        }
        memcpy(buf, payload, payload_len);
        if (zk_json_parse(doc, buf, payload_len) != ZK_OK) {
            zk_str none = {NULL, 0};
            zk__fail(&r, ZK_CODE_BAD_REQUEST, doc->error ? doc->error : "malformed payload", none);
            goto out;
        }
        r.payload = zk_doc_root(doc);
    }
    r.route = (const zk__route *)zk__map_get(&router->map, type, strlen(type));
    if (!r.route) {
        zk_str none = {NULL, 0};
        zk__fail(&r, ZK_CODE_NOT_FOUND, "unknown message type", none);
        goto out;
    }
    zk__run(&r);
out:
    router->busy--;
    if (nested) {
        zk_doc_free(doc);
        zk_writer_free(&r.writer);
        ZK_FREE(buf);
    } else {
        *shared = r.writer; /* the buffer, perhaps grown, goes back */
    }
    return rc;
}

/* ---- app: connections ---- */

ZK__PRIVATE void zk__kept_unlink(zk_request *r) {
    if (!r->app) return;
    if (r->prev) r->prev->next = r->next;
    else if (r->member && r->member->kept == r) r->member->kept = r->next;
    else if (r->app->orphans == r) r->app->orphans = r->next;
    if (r->next) r->next->prev = r->prev;
    if (r->member) r->member->kept_count--;
    r->prev = r->next = NULL;
}

ZK__PRIVATE void zk__app_close_slow(zk__member *m);

/* Sends text (an answer, a __pong) to one member's connection, counting
   it. Past the write limit it is lost, so the connection goes (4001), as
   for a room message: the client's calls then fail rather than wait. */
ZK__PRIVATE int zk__app_send_text(zk_app *app, zk_conn *c, zk_str s, int binary) {
    int rc = zk_conn_send(c, s.ptr, s.len, binary);
    if (rc >= 0) {
        app->stats.messages_out++;
        app->stats.bytes_out += s.len;
    } else if (rc != ZK_ECLOSED) {
        app->stats.dropped++;
        if (rc == ZK_EBACKPRESSURE && c->app) zk__app_close_slow((zk__member *)c->app);
    }
    return rc;
}

ZK__PRIVATE void zk__write_rpc_id(zk_writer *w, const zk_request *r) {
    zk_write_key(w, "rpcId");
    if (r->rpc_kind == ZK__RPC_INT) zk_write_int(w, (int64_t)strtoll(r->rpc_id, NULL, 10));
    else zk_write_str_n(w, r->rpc_id, r->rpc_len);
}

/* The envelope of an answer, or {NULL, 0} if it cannot be written. */
ZK__PRIVATE zk_str zk__encode_answer(zk_writer *w, const zk_request *r, const zk_answer *a) {
    zk_writer_reset(w);
    w->codec = (unsigned char)(r->member ? (int)r->member->codec : (int)ZK_CODEC_JSON);
    zk_write_object(w);
    zk_write_key(w, "type");
    if (a->ok) {
        zk_write_str(w, "__rpc_res");
        zk_write_key(w, "payload");
        zk__write_raw(w, a->data.ptr, a->data.len);
        zk__write_rpc_id(w, r);
    } else {
        zk_write_str(w, r->rpc_kind ? "__rpc_err" : "__error");
        if (r->rpc_kind) zk__write_rpc_id(w, r);
        zk_write_key(w, "error");
        zk_write_object(w);
        zk_write_key(w, "code");
        zk_write_str_n(w, a->code.ptr, a->code.len);
        zk_write_key(w, "message");
        zk_write_str_n(w, a->message.ptr, a->message.len);
        if (!r->rpc_kind && r->type.len) {
            zk_write_key(w, "ref");
            zk_write_str_n(w, r->type.ptr, r->type.len);
        }
        if (a->data.len) {
            zk_write_key(w, "data");
            zk__write_raw(w, a->data.ptr, a->data.len);
        }
        zk_write_end(w);
    }
    zk_write_end(w);
    return zk_writer_result(w);
}

ZK__PRIVATE void zk__send_answer(zk_request *r, const zk_answer *a) {
    zk_app *app = r->app;
    zk_conn *c = r->conn;
    zk_answer fb;
    zk_str out;
    if (a->ok && r->rpc_kind == ZK__RPC_NONE) { /* an event that went well */
        out.ptr = NULL;
    } else {
        out = zk__encode_answer(&app->envelope, r, a);
        if (!out.ptr) { /* too big, or out of memory: say so rather than lose it */
            fb.ok = 0;
            fb.code = zk_str_c(ZK_CODE_INTERNAL);
            fb.message = zk_str_c("the answer could not be encoded");
            fb.data.ptr = NULL;
            fb.data.len = 0;
            a = &fb;
            out = zk__encode_answer(&app->envelope, r, a);
        }
        if (!a->ok) app->stats.errors++;
        if (out.ptr) zk__app_send_text(app, c, out, app->envelope.codec == ZK_CODEC_MSGPACK);
    }
    if (r->is_auth && r->member) {
        if (a->ok) {
            r->member->authed = 1;
            zk_timer_stop(&r->member->auth_timer);
        } else {
            zk_conn_close(c, ZK_CLOSE_UNAUTHORIZED, "unauthorized");
        }
    }
}

ZK__PRIVATE void zk__base64url(const unsigned char *in, size_t len, char *out) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t i, o = 0;
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
        out[o++] = abc[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
    }
    out[o] = '\0';
}

/* 16 random bytes from the OS (through a small pool), so ids cannot be
   guessed from other ids; the loop's generator, which is not made for
   secrets, only if the OS has none to give. */
ZK__PRIVATE void zk__app_random(zk_app *app, unsigned char out[16]) {
    if (app->ids_left < 16) {
        size_t got = 0;
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            while (got < sizeof app->ids_pool) {
                ssize_t n = read(fd, app->ids_pool + got, sizeof app->ids_pool - got);
                if (n <= 0) break;
                got += (size_t)n;
            }
            close(fd);
        }
        if (got < sizeof app->ids_pool) zk_loop_random_bytes(app->loop, app->ids_pool + got, sizeof app->ids_pool - got);
        app->ids_left = sizeof app->ids_pool;
    }
    app->ids_left -= 16;
    memcpy(out, app->ids_pool + app->ids_left, 16);
    memset(app->ids_pool + app->ids_left, 0, 16);
}

ZK__PRIVATE void zk__auth_deadline(zk_timer *t) {
    zk__member *m = (zk__member *)t->data;
    zk_conn_close(m->conn, ZK_CLOSE_UNAUTHORIZED, "authentication timed out");
}

ZK__PRIVATE zk__member *zk__member_new(zk_app *app, zk_conn *c) {
    zk__member *m;
    unsigned char rnd[16];
    if (app->count == app->cap) {
        size_t cap = app->cap ? app->cap * 2 : 64;
        zk__member **a = (zk__member **)ZK_REALLOC(app->members, cap * sizeof *a);
        if (!a) return NULL;
        app->members = a;
        app->cap = cap;
    }
    m = (zk__member *)ZK_MALLOC(sizeof *m);
    if (!m) return NULL;
    memset(m, 0, sizeof *m);
    m->app = app;
    m->conn = c;
    do {
        zk__app_random(app, rnd);
        zk__base64url(rnd, 16, m->id);
    } while (zk__map_get(&app->ids, m->id, 22));
    if (zk__map_put(&app->ids, m->id, 22, m) < 0) {
        ZK_FREE(m);
        return NULL;
    }
    zk_timer_init(app->loop, &m->auth_timer, zk__auth_deadline, m);
    m->since = zk_loop_now(app->loop);
    m->refilled = m->since;
    m->tokens = (uint64_t)app->opts.rate_burst * 1000; /* a full bucket */
    m->index = app->count;
    app->members[app->count++] = m;
    m->authed = !app->opts.require_auth;
    c->app = m;
    return m;
}

ZK__PRIVATE void zk__room_leave_slot(zk__member *m, uint32_t slot);

ZK__PRIVATE void zk__member_free(zk__member *m) {
    zk_app *app = m->app;
    zk__member *last;
    while (m->room_count) zk__room_leave_slot(m, m->room_count - 1);
    ZK_FREE(m->rooms);
    while (m->kept) { /* their owners still answer them: they become orphans */
        zk_request *r = m->kept;
        zk__kept_unlink(r);
        zk_timer_stop(&r->deadline);
        r->conn = NULL;
        r->member = NULL;
        r->next = app->orphans;
        if (app->orphans) app->orphans->prev = r;
        app->orphans = r;
    }
    if (m->active) { /* a handler closed its own connection: its request lives on */
        m->active->member = NULL;
        m->active->conn = NULL;
    }
    zk_timer_stop(&m->auth_timer);
    zk__map_del(&app->ids, m->id, 22);
    last = app->members[--app->count];
    app->members[m->index] = last;
    last->index = m->index;
    if (m->conn) m->conn->app = NULL;
    ZK_FREE(m);
}

ZK__PRIVATE int zk__app_upgrade(zk_conn *c, const zk_http_request *req, const zk_ws_upgrade *up) {
    zk_app *app = (zk_app *)zk_server_data(zk_conn_server(c));
    zk__member *m;
    void *context = NULL;
    int status = 0, codec = up->protocol && zk_str_eq_nocase(zk_str_c(up->protocol), ZK_PROTOCOL_MSGPACK)
                                ? ZK_CODEC_MSGPACK : ZK_CODEC_JSON;
    if (app->path && (req->path.len != strlen(app->path) || memcmp(req->path.ptr, app->path, req->path.len))) {
        app->stats.refused++;
        return 404;
    }
    if (!(app->opts.codecs & (codec == ZK_CODEC_MSGPACK ? ZK_APP_MSGPACK : ZK_APP_JSON))) {
        static const char json_only[] = "this endpoint speaks JSON: offer the subprotocol zocket.json or none\n";
        static const char mp_only[] = "this endpoint speaks MessagePack: offer the subprotocol zocket.msgpack\n";
        app->stats.refused++;
        if (codec == ZK_CODEC_MSGPACK) zk_conn_respond(c, 400, NULL, 0, json_only, sizeof json_only - 1);
        else zk_conn_respond(c, 400, NULL, 0, mp_only, sizeof mp_only - 1);
        return 400;
    }
    m = zk__member_new(app, c);
    if (!m) {
        app->stats.refused++;
        return 503;
    }
    m->codec = (unsigned char)codec;
    if (app->opts.on_connect) status = app->opts.on_connect(c, req, &context);
    if (!status && c->state != ZK__C_HANDSHAKE) status = 400; /* it answered (or dropped) the request itself */
    if (status) {
        app->stats.refused++;
        zk__member_free(m);
        return status;
    }
    m->context = context;
    return 0;
}

ZK__PRIVATE void zk__app_open(zk_conn *c, const zk_http_request *req) {
    zk__member *m = (zk__member *)c->app;
    zk_app *app;
    (void)req;
    if (!m) return;
    app = m->app;
    app->stats.connections++;
    app->stats.accepted++;
    if (app->opts.require_auth)
        zk_timer_start(&m->auth_timer, app->opts.auth_timeout_ms ? app->opts.auth_timeout_ms : 10000, 0);
}

ZK__PRIVATE void zk__app_close(zk_conn *c, int code, zk_str reason, int clean) {
    zk__member *m = (zk__member *)c->app;
    zk_app *app;
    (void)reason;
    (void)clean;
    if (!m) return;
    app = m->app;
    if (c->opened) app->stats.connections--;
    if (app->opts.on_disconnect) app->opts.on_disconnect(c, m->context, code);
    zk__member_free(m);
}

/* {"type":"__pong"} with the ping's payload: browsers cannot send ping
   frames, so their clients ping with messages. */
ZK__PRIVATE void zk__app_pong(zk_app *app, zk_conn *c, zk_value payload) {
    zk_writer *w = &app->envelope;
    zk_str out;
    zk_writer_reset(w);
    w->codec = ((zk__member *)c->app)->codec;
    zk_write_object(w);
    zk_write_key(w, "type");
    zk_write_str(w, "__pong");
    if (zk_value_type(payload)) {
        zk_write_key(w, "payload");
        zk_write_value(w, payload);
    }
    zk_write_end(w);
    out = zk_writer_result(w);
    if (out.ptr) zk__app_send_text(app, c, out, w->codec == ZK_CODEC_MSGPACK);
}

/* Answers an envelope that never reached a route. */
ZK__PRIVATE void zk__app_reject(zk_request *r, const char *code, const char *message) {
    zk_str none = {NULL, 0};
    zk__fail(r, code, message, none);
}

ZK__PRIVATE void zk__app_message(zk_conn *c, zk_str data, int binary) {
    zk__member *m = (zk__member *)c->app;
    zk_app *app;
    zk_request r;
    zk_value root, v;
    int rc, limited = 0;
    char why[96];
    if (!m) return;
    app = m->app;
    app->stats.messages_in++;
    app->stats.bytes_in += data.len;
    memset(&r, 0, sizeof r);
    r.router = app->router;
    r.app = app;
    r.conn = c;
    r.member = m;
    if (app->opts.rate_per_sec != ZK_RATE_UNLIMITED) { /* the token bucket */
        uint64_t now = zk_loop_now(app->loop), cap = (uint64_t)app->opts.rate_burst * 1000;
        m->tokens += (now - m->refilled) * app->opts.rate_per_sec; /* per ms: rate / 1000 messages */
        if (m->tokens > cap) m->tokens = cap;
        m->refilled = now;
        if (m->tokens >= 1000) {
            m->tokens -= 1000;
            m->strikes = 0;
        } else if (++m->strikes > app->opts.rate_burst) {
            zk_conn_close(c, ZK_CLOSE_POLICY, "too many messages");
            return;
        } else {
            limited = 1; /* answered TOO_MANY_REQUESTS once it is read */
        }
    }
    if (binary != (m->codec == ZK_CODEC_MSGPACK)) {
        zk__app_reject(&r, ZK_CODE_BAD_REQUEST, binary ? "binary messages need the zocket.msgpack protocol"
                                                       : "text messages need the zocket.json protocol (or none)");
        return;
    }
    if (binary) {
        rc = zk_msgpack_parse(&app->doc, data.ptr, data.len);
    } else { /* the message is ours to change: it sits in the connection's buffer */
        rc = zk_json_parse(&app->doc, (char *)(uintptr_t)data.ptr, data.len);
    }
    if (rc == ZK_ETOOBIG) {
        zk__app_reject(&r, ZK_CODE_PAYLOAD_TOO_LARGE, "the message is nested too deeply or has too many values");
        return;
    }
    if (rc != ZK_OK) {
        if (rc == ZK_EPARSE)
            snprintf(why, sizeof why, "malformed %s: %s at byte %lu", binary ? "MessagePack" : "JSON",
                     app->doc.error, (unsigned long)app->doc.error_at);
        else
            snprintf(why, sizeof why, "the message could not be read");
        zk__app_reject(&r, rc == ZK_EPARSE ? ZK_CODE_BAD_REQUEST : ZK_CODE_INTERNAL, why);
        return;
    }
    root = zk_doc_root(&app->doc);
    if (zk_value_type(root) != ZK_TYPE_OBJECT) {
        zk__app_reject(&r, ZK_CODE_BAD_REQUEST, binary ? "a message is a MessagePack map" : "a message is a JSON object");
        return;
    }
    v = zk_value_get(root, "rpcId");
    switch (zk_value_type(v)) {
    case ZK_TYPE_NONE:
    case ZK_TYPE_NULL: break;
    case ZK_TYPE_STRING: {
        zk_str id = zk_value_str(v);
        if (id.len > ZK_RPC_ID_MAX) {
            zk__app_reject(&r, ZK_CODE_BAD_REQUEST, "rpcId is too long");
            return;
        }
        memcpy(r.rpc_id, id.ptr, id.len);
        r.rpc_len = id.len;
        r.rpc_kind = ZK__RPC_STRING;
        break;
    }
    case ZK_TYPE_INT:
        r.rpc_len = (size_t)snprintf(r.rpc_id, sizeof r.rpc_id, "%lld", (long long)zk_value_int(v, 0));
        r.rpc_kind = ZK__RPC_INT;
        break;
    default:
        zk__app_reject(&r, ZK_CODE_BAD_REQUEST, "rpcId must be a string or an integer");
        return;
    }
    v = zk_value_get(root, "type");
    if (zk_value_type(v) != ZK_TYPE_STRING || zk_value_len(v) == 0) {
        zk__app_reject(&r, ZK_CODE_BAD_REQUEST, "type must be a non-empty string");
        return;
    }
    if (zk_value_len(v) > ZK_ROUTE_MAX_NAME) {
        zk__app_reject(&r, ZK_CODE_NOT_FOUND, "unknown message type (the name is too long)");
        return;
    }
    r.type = zk_value_str(v);
    r.payload = zk_value_get(root, "payload");
    if (limited) {
        zk__app_reject(&r, ZK_CODE_TOO_MANY_REQUESTS, "too many messages: slow down");
        return;
    }
    if (r.type.len == 6 && memcmp(r.type.ptr, "__ping", 6) == 0) { /* a browser's heartbeat */
        if (r.rpc_kind == ZK__RPC_NONE) {
            zk__app_pong(app, c, r.payload);
        } else { /* a call like any other: its one answer, the payload back */
            r.writer = app->results;
            zk_writer_reset(&r.writer);
            r.writer.codec = m->codec;
            if (zk_value_type(r.payload)) zk_write_value(&r.writer, r.payload);
            zk__ok(&r);
            app->results = r.writer;
        }
        return;
    }
    r.is_auth = app->opts.require_auth && r.type.len == 6 && memcmp(r.type.ptr, "__auth", 6) == 0;
    if (!m->authed && !r.is_auth) { /* (authed is 1 without require_auth) */
        zk__app_reject(&r, ZK_CODE_UNAUTHORIZED, "authenticate first (__auth)");
        return;
    }
    r.route = (const zk__route *)zk__map_get(&app->router->map, r.type.ptr, r.type.len);
    if (!r.route) {
        zk__app_reject(&r, ZK_CODE_NOT_FOUND, "unknown message type");
        return;
    }
    if (app->opts.max_kept_per_conn && m->kept_count >= app->opts.max_kept_per_conn) {
        zk__app_reject(&r, ZK_CODE_TOO_MANY_REQUESTS, "too many requests in progress");
        return;
    }
    r.writer = app->results; /* lent for the request, given back after */
    zk_writer_reset(&r.writer);
    r.writer.codec = m->codec; /* the result is written in the client's codec */
    m->active = &r;
    zk__run(&r);
    if (r.member) r.member->active = NULL;
    app->results = r.writer;
}

ZK_API zk_app *zk_app_new(zk_loop *loop, const zk_app_opts *opts, int *err) {
    zk_app *app;
    zk_server_opts so;
    int dummy;
    if (!err) err = &dummy;
    *err = ZK_EINVAL;
    if (!loop || !opts || !opts->router) return NULL;
    so = opts->server;
    if (so.cb.on_open || so.cb.on_message || so.cb.on_close || so.cb.on_drain || so.cb.on_pong ||
        so.on_upgrade || so.on_http || so.data)
        return NULL;
    if (opts->require_auth && !zk__map_get(&opts->router->map, "__auth", 6)) return NULL;
    if (opts->path && opts->path[0] != '/') return NULL;
    if (opts->codecs & ~(ZK_APP_JSON | ZK_APP_MSGPACK)) return NULL;
    *err = ZK_ENOMEM;
    app = (zk_app *)ZK_MALLOC(sizeof *app);
    if (!app) return NULL;
    memset(app, 0, sizeof *app);
    app->loop = loop;
    app->router = opts->router;
    app->opts = *opts;
    if (!app->opts.codecs) app->opts.codecs = ZK_APP_JSON | ZK_APP_MSGPACK;
    if (!app->opts.rate_per_sec) app->opts.rate_per_sec = 10000;
    if (!app->opts.rate_burst) app->opts.rate_burst = app->opts.rate_per_sec;
    if (!so.protocols) { /* a client offering both gets MessagePack */
        if (app->opts.codecs & ZK_APP_MSGPACK) app->protocols[so.protocol_count++] = ZK_PROTOCOL_MSGPACK;
        if (app->opts.codecs & ZK_APP_JSON) app->protocols[so.protocol_count++] = ZK_PROTOCOL_JSON;
        so.protocols = app->protocols;
    }
    if (!app->opts.max_rooms_per_conn) app->opts.max_rooms_per_conn = 64;
    if (!app->opts.max_kept_per_conn) app->opts.max_kept_per_conn = 1024;
    if (opts->path) {
        size_t n = strlen(opts->path) + 1;
        app->path = (char *)ZK_MALLOC(n);
        if (!app->path) {
            ZK_FREE(app);
            return NULL;
        }
        memcpy(app->path, opts->path, n);
    }
    zk_doc_init(&app->doc);
    zk_writer_init(&app->results, NULL, 0);
    zk_writer_init(&app->envelope, NULL, 0);
    zk_writer_init(&app->payload, NULL, 0);
    zk_writer_init(&app->message, NULL, 0);
    zk_writer_init(&app->mp_copy, NULL, 0);
    zk_writer_init(&app->mp_out, NULL, 0);
    zk_writer_set_codec(&app->mp_out, ZK_CODEC_MSGPACK);
    so.cb.on_open = zk__app_open;
    so.cb.on_message = zk__app_message;
    so.cb.on_close = zk__app_close;
    so.on_upgrade = zk__app_upgrade;
    so.on_http = opts->on_http;
    so.data = app;
    app->server = zk_server_new(loop, &so);
    if (!app->server) {
        ZK_FREE(app->path);
        ZK_FREE(app);
        return NULL;
    }
    *err = 0;
    return app;
}

ZK_API void zk_app_free(zk_app *app) {
    if (!app) return;
    zk_broker_free(app->broker);
    zk_server_free(app->server); /* on_close for each: members go */
    while (app->count) zk__member_free(app->members[app->count - 1]);
    while (app->orphans) {
        zk_request *r = app->orphans;
        app->orphans = r->next;
        zk_writer_free(&r->writer);
        ZK_FREE(r);
    }
    ZK_FREE(app->members);
    zk__map_free(&app->ids);
    zk__map_free(&app->rooms);
    zk_doc_free(&app->doc);
    zk_writer_free(&app->results);
    zk_writer_free(&app->envelope);
    zk_writer_free(&app->payload);
    zk_writer_free(&app->message);
    zk_writer_free(&app->mp_copy);
    zk_writer_free(&app->mp_out);
    zk_doc_free(&app->mp_doc);
    zk_frame_free(app->frame);
    zk_frame_free(app->frame_mp);
    ZK_FREE(app->path);
    ZK_FREE(app);
}

ZK_API zk_server *zk_app_server(const zk_app *app) { return app->server; }
ZK_API void *zk_app_data(const zk_app *app) { return app->opts.data; }

ZK_API zk_app *zk_conn_app(const zk_conn *c) { return c && c->app ? ((zk__member *)c->app)->app : NULL; }
ZK_API const char *zk_conn_id(const zk_conn *c) { return c && c->app ? ((zk__member *)c->app)->id : ""; }
ZK_API void *zk_conn_context(const zk_conn *c) { return c && c->app ? ((zk__member *)c->app)->context : NULL; }
ZK_API int zk_conn_codec(const zk_conn *c) { return c && c->app ? (int)((zk__member *)c->app)->codec : (int)ZK_CODEC_JSON; }
ZK_API void zk_conn_set_context(zk_conn *c, void *context) {
    if (c && c->app) ((zk__member *)c->app)->context = context;
}

ZK_API zk_conn *zk_app_find(const zk_app *app, const char *id) {
    zk__member *m;
    if (!app || !id) return NULL;
    m = (zk__member *)zk__map_get(&app->ids, id, strlen(id));
    return m && m->conn && m->conn->opened ? m->conn : NULL;
}

/* ---- rooms ---- */

ZK__PRIVATE zk__member *zk__open_member(const zk_conn *c) {
    zk__member *m = c ? (zk__member *)c->app : NULL;
    return m && c->state == ZK__C_OPEN ? m : NULL;
}

ZK__PRIVATE int zk__room_name_ok(const char *room, size_t *len) {
    if (!room) return 0;
    *len = strlen(room);
    return *len && *len <= ZK_ROOM_MAX_NAME && zk_utf8_valid(room, *len);
}

ZK__PRIVATE int zk__member_slot(const zk__member *m, const char *room, size_t len) {
    uint32_t i;
    for (i = 0; i < m->room_count; i++) {
        const zk__room *rm = m->rooms[i].room;
        if (rm->name_len == len && memcmp(rm->name, room, len) == 0) return (int)i;
    }
    return -1;
}

ZK_API int zk_room_join(zk_conn *c, const char *room) {
    zk__member *m = zk__open_member(c);
    zk_app *app;
    zk__room *rm;
    size_t len;
    if (!m || !zk__room_name_ok(room, &len)) return ZK_EINVAL;
    app = m->app;
    rm = (zk__room *)zk__map_get(&app->rooms, room, len);
    if (rm && zk__member_slot(m, room, len) >= 0) return 1;
    if (m->room_count >= app->opts.max_rooms_per_conn) return ZK_ENOSPACE;
    if (m->room_count == m->room_cap) {
        uint32_t cap = m->room_cap ? m->room_cap * 2 : 4;
        zk__membership *a = (zk__membership *)ZK_REALLOC(m->rooms, cap * sizeof *a);
        if (!a) return ZK_ENOMEM;
        m->rooms = a;
        m->room_cap = cap;
    }
    if (!rm) {
        rm = (zk__room *)ZK_MALLOC(sizeof *rm + len + 1);
        if (!rm) return ZK_ENOMEM;
        memset(rm, 0, sizeof *rm);
        rm->name = (char *)(rm + 1);
        memcpy(rm->name, room, len + 1);
        rm->name_len = len;
        if (zk__map_put(&app->rooms, rm->name, len, rm) < 0) {
            ZK_FREE(rm);
            return ZK_ENOMEM;
        }
        if (app->broker && zk__broker_room(app->broker, rm->name, len, 1) < 0) {
            zk__map_del(&app->rooms, rm->name, len);
            ZK_FREE(rm);
            return ZK_ENOMEM;
        }
    }
    if (rm->count == rm->cap) {
        uint32_t cap = rm->cap ? rm->cap * 2 : 4;
        zk__seat *a = (zk__seat *)ZK_REALLOC(rm->seats, cap * sizeof *a);
        if (!a) {
            if (!rm->count) {
                if (app->broker) zk__broker_room(app->broker, rm->name, len, 0);
                zk__map_del(&app->rooms, rm->name, len);
                ZK_FREE(rm);
            }
            return ZK_ENOMEM;
        }
        rm->seats = a;
        rm->cap = cap;
    }
    rm->seats[rm->count].member = m;
    rm->seats[rm->count].slot = m->room_count;
    rm->seats[rm->count].joined = zk_loop_now(app->loop);
    m->rooms[m->room_count].room = rm;
    m->rooms[m->room_count].seat = rm->count;
    rm->count++;
    m->room_count++;
    return 0;
}

/* Takes m out of the room in its slot; an empty room goes. */
ZK__PRIVATE void zk__room_leave_slot(zk__member *m, uint32_t slot) {
    zk__room *rm = m->rooms[slot].room;
    uint32_t seat = m->rooms[slot].seat;
    /* the room's last seat moves into ours */
    rm->seats[seat] = rm->seats[--rm->count];
    rm->seats[seat].member->rooms[rm->seats[seat].slot].seat = seat;
    /* and m's last room into this slot */
    m->rooms[slot] = m->rooms[--m->room_count];
    if (slot < m->room_count) {
        zk__membership *moved = &m->rooms[slot];
        moved->room->seats[moved->seat].slot = slot;
    }
    if (!rm->count) {
        if (m->app->broker) zk__broker_room(m->app->broker, rm->name, rm->name_len, 0);
        zk__map_del(&m->app->rooms, rm->name, rm->name_len);
        ZK_FREE(rm->seats);
        ZK_FREE(rm);
    } else if (rm->count * 4 < rm->cap && rm->cap > 16) { /* a room that emptied gives memory back */
        zk__seat *a = (zk__seat *)ZK_REALLOC(rm->seats, (rm->cap / 2) * sizeof *a);
        if (a) {
            rm->seats = a;
            rm->cap /= 2;
        }
    }
    if (!m->room_count) {
        ZK_FREE(m->rooms);
        m->rooms = NULL;
        m->room_cap = 0;
    }
}

ZK_API int zk_room_leave(zk_conn *c, const char *room) {
    zk__member *m = c ? (zk__member *)c->app : NULL;
    size_t len;
    int slot;
    if (!m || !zk__room_name_ok(room, &len)) return ZK_EINVAL;
    slot = zk__member_slot(m, room, len);
    if (slot < 0) return ZK_ENOTFOUND;
    zk__room_leave_slot(m, (uint32_t)slot);
    return 0;
}

ZK_API int zk_room_has(const zk_conn *c, const char *room) {
    const zk__member *m = c ? (const zk__member *)c->app : NULL;
    size_t len;
    if (!m || !zk__room_name_ok(room, &len)) return 0;
    return zk__member_slot(m, room, len) >= 0;
}

ZK_API size_t zk_room_list(const zk_conn *c, const char **out, size_t cap) {
    const zk__member *m = c ? (const zk__member *)c->app : NULL;
    size_t i;
    if (!m) return 0;
    for (i = 0; i < m->room_count && i < cap; i++) out[i] = m->rooms[i].room->name;
    return m->room_count;
}

ZK_API size_t zk_room_members(const zk_app *app, const char *room, zk_conn **out, size_t cap) {
    const zk__room *rm;
    size_t i, len;
    if (!app || !zk__room_name_ok(room, &len)) return 0;
    rm = (const zk__room *)zk__map_get(&app->rooms, room, len);
    if (!rm) return 0;
    for (i = 0; i < rm->count && i < cap; i++) out[i] = rm->seats[i].member->conn;
    return rm->count;
}

ZK_API size_t zk_app_rooms(const zk_app *app, const char **out, size_t cap) {
    size_t i, n = 0;
    if (!app) return 0;
    for (i = 0; i < app->rooms.cap; i++)
        if (app->rooms.slots[i].val) {
            if (n < cap) out[n] = ((const zk__room *)app->rooms.slots[i].val)->name;
            n++;
        }
    return n;
}

/* ---- sending ---- */

ZK_API zk_writer *zk_app_message(zk_app *app, const char *type) {
    size_t len = type ? strlen(type) : 0;
    zk_writer_reset(&app->payload);
    app->message_started = 0;
    if (!len || len > ZK_ROUTE_MAX_NAME || !zk_utf8_valid(type, len)) {
        zk__w_fail(&app->payload, ZK_EINVAL); /* zk_app_send will say so */
        return &app->payload;
    }
    memcpy(app->message_type, type, len + 1);
    app->message_started = 1;
    return &app->payload;
}

/* Encodes a message (payload: JSON text, or none when empty) as one server
   frame in app->frame. */
/* A frame of len bytes in *fp (capacity *capp), reused when no queue holds it. */
ZK__PRIVATE zk_frame *zk__app_frame_buf(zk_frame **fp, size_t *capp, zk_str msg, int binary) {
    unsigned char header[14];
    size_t hlen = zk_ws_frame_header(header, binary ? ZK_WS_BINARY : ZK_WS_TEXT, 1, msg.len, NULL);
    size_t need = sizeof(zk_frame) + hlen + msg.len;
    zk_frame *f;
    if (*fp && (*fp)->refs > 1) { /* queues still send it: theirs now */
        zk_frame_free(*fp);
        *fp = NULL;
        *capp = 0;
    }
    if (!*fp || need > *capp) {
        f = (zk_frame *)ZK_REALLOC(*fp, need);
        if (!f) return NULL;
        *fp = f;
        *capp = need;
    }
    f = *fp;
    f->refs = 1;
    f->size = hlen + msg.len;
    f->header = hlen;
    f->binary = binary;
    memcpy(ZK__FRAME_BYTES(f), header, hlen);
    memcpy(ZK__FRAME_BYTES(f) + hlen, msg.ptr, msg.len);
    return f;
}

/* The MessagePack frame of the message app->frame holds, made once per
   message for however many MessagePack recipients: the payload (JSON, the
   canonical form) is read again and written as MessagePack. */
ZK__PRIVATE const zk_frame *zk__app_frame_mp(zk_app *app) {
    zk_writer *w = &app->mp_out;
    zk_str msg;
    if (app->frame_mp_state) return app->frame_mp_state > 0 ? app->frame_mp : NULL;
    app->frame_mp_state = -1;
    zk_writer_reset(w);
    zk_write_object(w);
    zk_write_key(w, "type");
    zk_write_str_n(w, app->frame_type.ptr, app->frame_type.len);
    if (app->frame_payload.ptr) {
        zk_writer_reset(&app->mp_copy);
        zk__w_put(&app->mp_copy, app->frame_payload.ptr, app->frame_payload.len);
        if (app->mp_copy.err ||
            zk_json_parse(&app->mp_doc, app->mp_copy.buf, app->mp_copy.len) != ZK_OK)
            return NULL;
        zk_write_key(w, "payload");
        zk_write_value(w, zk_doc_root(&app->mp_doc));
    }
    zk_write_end(w);
    msg = zk_writer_result(w);
    if (!msg.ptr || !zk__app_frame_buf(&app->frame_mp, &app->frame_mp_cap, msg, 1)) return NULL;
    app->frame_mp_state = 1;
    return app->frame_mp;
}

ZK__PRIVATE int zk__app_frame_of(zk_app *app, zk_str type, zk_str payload) {
    zk_writer *w = &app->message;
    zk_str msg;
    app->frame_type = type;
    app->frame_payload = payload;
    app->frame_mp_state = 0;
    zk_writer_reset(w);
    zk_write_object(w);
    zk_write_key(w, "type");
    zk_write_str_n(w, type.ptr, type.len);
    if (payload.ptr) {
        zk_write_key(w, "payload");
        zk__write_raw(w, payload.ptr, payload.len);
    }
    zk_write_end(w);
    msg = zk_writer_result(w);
    if (!msg.ptr) return w->err == ZK_ENOMEM ? ZK_ENOMEM : ZK_EINVAL;
    return zk__app_frame_buf(&app->frame, &app->frame_cap, msg, 0) ? 0 : ZK_ENOMEM;
}

/* The started message. */
ZK__PRIVATE int zk__app_frame(zk_app *app) {
    zk_str payload = zk_writer_result(&app->payload), type;
    if (!app->message_started || app->payload.err || (app->payload.len && !payload.ptr)) return ZK_EINVAL;
    type.ptr = app->message_type;
    type.len = strlen(app->message_type);
    return zk__app_frame_of(app, type, payload);
}

ZK__PRIVATE void zk__app_close_slow(zk__member *m) {
    m->app->stats.slow_closed++;
    zk_conn_close(m->conn, ZK_CLOSE_SLOW_CONSUMER, "slow consumer");
}

/* One recipient: at most once per send, by the delivery policy. */
ZK__PRIVATE int zk__deliver_to(zk_app *app, zk__member *m, const zk_target *to, const zk_frame *f) {
    zk_conn *c = m->conn;
    int rc;
    if (m->mark == app->mark || c == to->except) return 0;
    m->mark = app->mark;
    if (c->state != ZK__C_OPEN || !m->authed) return 0;
    if (m->codec == ZK_CODEC_MSGPACK && !(f = zk__app_frame_mp(app))) {
        app->stats.dropped++; /* cannot happen for a payload the app wrote */
        return 0;
    }
    if (to->delivery != ZK_DELIVER_QUEUE && c->wq_bytes >= c->high_water) { /* backpressure now */
        app->stats.dropped++;
        if (to->delivery == ZK_DELIVER_CLOSE_SLOW) zk__app_close_slow(m);
        return 0;
    }
    rc = zk_conn_send_frame(c, f);
    if (rc < 0) {
        app->stats.dropped++;
        /* past the write limit: a member that misses a message and stays
           connected never learns it; closed, it reconnects and catches up */
        if (rc == ZK_EBACKPRESSURE) zk__app_close_slow(m);
        return 0;
    }
    app->stats.messages_out++;
    app->stats.bytes_out += f->size - f->header;
    return 1;
}

ZK_API int zk_app_send(zk_app *app, const zk_target *to) {
    const zk_frame *f;
    size_t i, j;
    int n = 0, rc;
    if (!app || !to) return ZK_EINVAL;
    rc = zk__app_frame(app);
    if (rc < 0) return rc;
    if (app->broker) { /* published first: refused (queue full), it goes nowhere */
        rc = zk__broker_publish(app->broker, to);
        if (rc < 0) return rc;
    }
    f = app->frame;
    app->mark++;
    if (to->all) {
        for (i = 0; i < app->count; i++) n += zk__deliver_to(app, app->members[i], to, f);
        return n;
    }
    for (i = 0; i < to->conn_count; i++) {
        zk__member *m = to->conns[i] ? (zk__member *)to->conns[i]->app : NULL;
        if (m && m->app == app) n += zk__deliver_to(app, m, to, f);
    }
    for (i = 0; i < to->id_count; i++) {
        zk__member *m = to->ids[i] ? (zk__member *)zk__map_get(&app->ids, to->ids[i], strlen(to->ids[i])) : NULL;
        if (m) n += zk__deliver_to(app, m, to, f);
    }
    for (i = 0; i < to->room_count; i++) {
        size_t len;
        zk__room *rm;
        if (!zk__room_name_ok(to->rooms[i], &len)) continue;
        rm = (zk__room *)zk__map_get(&app->rooms, to->rooms[i], len);
        /* closing slow consumers does not change membership now */
        for (j = 0; rm && j < rm->count; j++) n += zk__deliver_to(app, rm->seats[j].member, to, f);
    }
    return n;
}

ZK_API void zk_app_get_stats(const zk_app *app, zk_app_stats *out) { *out = app->stats; }
