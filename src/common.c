#include "impl_begin.h"
/* >>common implementation ------------------------------------------------ */

ZK__PRIVATE unsigned char zk__lower(unsigned char c) {
    return (unsigned char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
}

ZK_API zk_str zk_str_c(const char *s) {
    zk_str r;
    r.ptr = s ? s : "";
    r.len = s ? strlen(s) : 0;
    return r;
}

ZK_API int zk_str_eq_nocase(zk_str a, const char *b) {
    size_t i;
    for (i = 0; i < a.len; i++) {
        if (b[i] == '\0' || zk__lower((unsigned char)a.ptr[i]) != zk__lower((unsigned char)b[i]))
            return 0;
    }
    return b[a.len] == '\0';
}

ZK_API const char *zk_err_name(int err) {
    switch (err) {
#define ZK__ERR_NAME(name, value, text) case value: return #name;
        ZK_ERRORS(ZK__ERR_NAME)
#undef ZK__ERR_NAME
    default: return "ZK_E?";
    }
}

ZK_API const char *zk_strerror(int err) {
    switch (err) {
#define ZK__ERR_TEXT(name, value, text) case value: return text;
        ZK_ERRORS(ZK__ERR_TEXT)
#undef ZK__ERR_TEXT
    default: return "unknown error";
    }
}
