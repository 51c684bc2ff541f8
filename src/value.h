#include "net.h"
/* >>value: payloads - parsed documents, values, writers (codec-neutral) --- */

/* Handlers read payloads as zk_value handles into a parsed zk_doc and write
   answers with a zk_writer; neither says which codec is on the wire, so the
   same handler serves JSON and (later) MessagePack clients.

   Parsing is zero-copy: string values are views into the message buffer,
   whose escapes are decoded in place (so the parser needs a writable
   buffer). A document's node array is reused from message to message: a
   zk_doc that stays alive allocates only when a message is larger than any
   before it. Limits bound every message: nesting depth (without recursion)
   and node count. */

#ifndef ZK_DOC_MAX_DEPTH
#define ZK_DOC_MAX_DEPTH 64
#endif
#ifndef ZK_DOC_MAX_NODES
#define ZK_DOC_MAX_NODES 65536
#endif

enum {
    ZK_TYPE_NONE = 0, /* no such value (a missing member, an index out of range) */
    ZK_TYPE_NULL,
    ZK_TYPE_BOOL,
    ZK_TYPE_INT,      /* an integer that fits int64 (written without . or e) */
    ZK_TYPE_DOUBLE,   /* any other number */
    ZK_TYPE_STRING,   /* valid UTF-8 */
    ZK_TYPE_BINARY,   /* raw bytes (MessagePack bin; never from JSON) */
    ZK_TYPE_ARRAY,
    ZK_TYPE_OBJECT
};

typedef struct zk__node zk__node;

/* A parsed document. Zero-initialise it (or zk_doc_init), parse into it as
   often as you like, zk_doc_free it once. */
typedef struct zk_doc {
    zk__node *nodes;
    uint32_t count, cap;
    uint32_t max_nodes;  /* values plus object keys; 0: ZK_DOC_MAX_NODES; more: ZK_ETOOBIG */
    uint32_t max_depth;  /* 0 or more than ZK_DOC_MAX_DEPTH: ZK_DOC_MAX_DEPTH */
    const char *error;   /* after a failed parse: what was wrong (static text) */
    size_t error_at;     /* and at which byte of the input */
} zk_doc;

/* A handle to one value of a document: valid while the document and the
   buffer it was parsed from are unchanged. Copy it freely. */
typedef struct zk_value {
    const zk_doc *doc;
    uint32_t at;
} zk_value;

ZK_API void zk_doc_init(zk_doc *doc);
ZK_API void zk_doc_free(zk_doc *doc);

/* Parses one JSON text (RFC 8259) from buf[0..len), which it modifies
   (string escapes are decoded in place). Leading and trailing white space
   is allowed; anything else after the value is an error. Numbers too large
   for a double (1e400) are refused; too small ones become 0. Returns ZK_OK,
   ZK_EPARSE (doc->error and doc->error_at say what and where), ZK_ETOOBIG
   (containers nested deeper than max_depth, or more than max_nodes values
   and keys) or ZK_ENOMEM. Numbers go through the C library's strtod and
   snprintf with the locale's decimal point: do not change the locale
   (setlocale) while another thread parses or writes.
       zk_doc doc = {0};
       if (zk_json_parse(&doc, buf, len) == ZK_OK)
           printf("%s\n", zk_value_str(zk_value_get(zk_doc_root(&doc), "name")).ptr); */
ZK_API int zk_json_parse(zk_doc *doc, char *buf, size_t len);

/* The top value (ZK_TYPE_NONE before a successful parse). */
ZK_API zk_value zk_doc_root(const zk_doc *doc);

ZK_API int zk_value_type(zk_value v);
/* "none", "null", "bool", "int", "double", "string", "binary", "array", "object" */
ZK_API const char *zk_type_name(int type);

/* Typed getters: the value when it has that type, else def. An int is also
   a double; a double is an int only when it is integral and fits. */
ZK_API int64_t zk_value_int(zk_value v, int64_t def);
ZK_API double zk_value_double(zk_value v, double def);
ZK_API int zk_value_bool(zk_value v, int def);
/* A string's (or binary's) bytes; {NULL, 0} for other types. Strings are
   not NUL-terminated. */
ZK_API zk_str zk_value_str(zk_value v);

/* Elements of an array, members of an object, bytes of a string or a
   binary; else 0. */
ZK_API size_t zk_value_len(zk_value v);

/* The member called key of an object (the first one, if repeated), or a
   ZK_TYPE_NONE value. zk_value_get_n takes a length-delimited key. */
ZK_API zk_value zk_value_get(zk_value obj, const char *key);
ZK_API zk_value zk_value_get_n(zk_value obj, const char *key, size_t key_len);
/* Element i of an array (or member value i of an object), or a
   ZK_TYPE_NONE value. O(i). */
ZK_API zk_value zk_value_at(zk_value arr, size_t i);
/* A path of members and indexes: "user.name", "items[2]", "a.b[0].c"; ""
   is v itself. A ZK_TYPE_NONE value when any step is missing or the path is
   malformed. */
ZK_API zk_value zk_value_path(zk_value v, const char *path);

/* Iteration over an array's elements or an object's member values:
       for (e = zk_value_first(arr); zk_value_type(e); e = zk_value_next(e)) ...
   zk_value_key gives an object member's key (an empty view otherwise). */
ZK_API zk_value zk_value_first(zk_value container);
ZK_API zk_value zk_value_next(zk_value element);
ZK_API zk_str zk_value_key(zk_value member);

/* Writers. A zk_writer builds one value (a payload, an envelope) into a
   buffer: yours, fixed, or its own, grown as needed and kept for reuse.
   It cannot produce invalid output: strings are escaped for you, a key is
   required before each value in an object and refused elsewhere, NaN and
   infinities are refused, containers must be closed; the first misuse is
   kept in zk_writer_error and later calls do nothing. */
typedef struct zk_writer {
    char *buf;
    size_t len, cap;
    size_t max;          /* growable buffer: at most this many bytes (past it:
                            ZK_ETOOBIG); 0: 16 MiB */
    int err;             /* the first error (ZK_EINVAL, ZK_ENOSPACE, ZK_ETOOBIG, ZK_ENOMEM) */
    int owned;           /* buf was allocated by the writer */
    uint32_t depth;
    int root_done;
    unsigned char want_key[ZK_DOC_MAX_DEPTH]; /* per level: 1 object wanting a key, 2 object wanting a value, 0 array */
    unsigned char first[ZK_DOC_MAX_DEPTH];    /* per level: no element written yet */
    unsigned char codec;                      /* ZK_CODEC_*: what it writes */
    uint32_t mp_at[ZK_DOC_MAX_DEPTH];         /* MessagePack: where each open container's header is */
    uint32_t mp_n[ZK_DOC_MAX_DEPTH];          /* and how many elements or members it has so far */
} zk_writer;

/* buf NULL: the writer allocates (and zk_writer_free releases); otherwise it
   writes into buf[0..cap) and fails with ZK_ENOSPACE past it. */
ZK_API void zk_writer_init(zk_writer *w, char *buf, size_t cap);
/* Starts a new value, keeping the buffer. */
ZK_API void zk_writer_reset(zk_writer *w);
ZK_API void zk_writer_free(zk_writer *w);

ZK_API void zk_write_object(zk_writer *w);
ZK_API void zk_write_array(zk_writer *w);
ZK_API void zk_write_end(zk_writer *w);   /* closes the innermost object or array */
ZK_API void zk_write_key(zk_writer *w, const char *key);
ZK_API void zk_write_key_n(zk_writer *w, const char *key, size_t len);
ZK_API void zk_write_str(zk_writer *w, const char *s);          /* NULL writes null */
ZK_API void zk_write_str_n(zk_writer *w, const char *s, size_t len);
ZK_API void zk_write_int(zk_writer *w, int64_t v);
ZK_API void zk_write_double(zk_writer *w, double v);
ZK_API void zk_write_bool(zk_writer *w, int v);
ZK_API void zk_write_null(zk_writer *w);
/* Copies a parsed value, whatever its codec, with everything inside it
   (binary as a base64 string in JSON). A ZK_TYPE_NONE value: ZK_EINVAL. */
ZK_API void zk_write_value(zk_writer *w, zk_value v);

/* Raw bytes: MessagePack bin; in JSON, a base64 string (RFC 4648, padded). */
ZK_API void zk_write_binary(zk_writer *w, const void *p, size_t len);

/* ---- MessagePack ----
   The same documents and writers speak MessagePack: a handler reads
   zk_value handles and writes with zk_write_* whatever the codec. */

enum {
    ZK_CODEC_JSON = 0,           /* a writer's default */
    ZK_CODEC_MSGPACK = 1
};

/* What a writer writes from its next value on: ZK_CODEC_JSON or
   ZK_CODEC_MSGPACK (the smallest form of each integer, string, binary and
   container header; doubles as float64; containers are counted as they are
   written and their headers fitted when they close). Call it after init or
   reset, before writing: ZK_EINVAL otherwise, or for another codec. It
   stays through resets. */
ZK_API int zk_writer_set_codec(zk_writer *w, int codec);

/* Parses one MessagePack value from buf[0..len) into doc, as zk_json_parse
   does JSON: the same node types, limits and errors. nil, bool, every
   integer width (an unsigned one above INT64_MAX becomes a double, as a JSON
   integer that large does), float32 and float64, str (valid UTF-8, else
   refused), bin (ZK_TYPE_BINARY), array and map (keys must be strings).
   Refused with ZK_EPARSE: ext types (no handler could read them), NaN and
   infinities (JSON cannot carry them), the never-used byte 0xc1, a length
   or count larger than the bytes left (checked before anything is
   allocated), data after the value. The buffer is not modified: strings are
   views into it. Returns ZK_OK, ZK_EPARSE, ZK_ETOOBIG, ZK_ENOMEM. */
ZK_API int zk_msgpack_parse(zk_doc *doc, const char *buf, size_t len);

/* The finished value: {buf, len} when exactly one complete value was
   written and no error happened, else {NULL, 0}. */
ZK_API zk_str zk_writer_result(const zk_writer *w);
/* ZK_OK, or the first error. */
ZK_API int zk_writer_error(const zk_writer *w);
