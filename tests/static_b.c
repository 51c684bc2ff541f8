#define ZK_STATIC
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

int static_b_accept(char out[29]);

int static_b_accept(char out[29]) {
    zk_ws_accept_key(zk_str_c("dGhlIHNhbXBsZSBub25jZQ=="), out);
    return 0;
}
