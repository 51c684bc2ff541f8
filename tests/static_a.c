/* Two translation units, each with its own private (ZK_STATIC) copy of the
   implementation: this must compile, link and run without clashes. */
#define ZK_STATIC
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

int static_b_accept(char out[29]);

int main(void) {
    char a[29], b[29];
    zk_ws_accept_key(zk_str_c("dGhlIHNhbXBsZSBub25jZQ=="), a);
    static_b_accept(b);
    return memcmp(a, b, 29) != 0 || memcmp(a, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 29) != 0;
}
