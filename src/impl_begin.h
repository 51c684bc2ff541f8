#include "broker.h"

#ifdef __cplusplus
}
#endif
#endif /* ZOCKET_H */

/* ======================================================================== */
/*                             IMPLEMENTATION                               */
/* ======================================================================== */
#ifdef ZOCKET_IMPLEMENTATION
#ifndef ZOCKET_IMPLEMENTATION_DONE
#define ZOCKET_IMPLEMENTATION_DONE

#include <string.h>

#ifndef ZK_ASSERT
#include <assert.h>
#define ZK_ASSERT(c) assert(c)
#endif

#if defined(ZK_MALLOC) && defined(ZK_REALLOC) && defined(ZK_FREE)
#elif !defined(ZK_MALLOC) && !defined(ZK_REALLOC) && !defined(ZK_FREE)
#include <stdlib.h>
#define ZK_MALLOC(n) malloc(n)
#define ZK_REALLOC(p, n) realloc(p, n)
#define ZK_FREE(p) free(p)
#else
#error "zocket.h: define all of ZK_MALLOC, ZK_REALLOC and ZK_FREE, or none"
#endif

#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <emmintrin.h>
#define ZK__SSE2 1
#else
#define ZK__SSE2 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ZK__LIKELY(x) __builtin_expect(!!(x), 1)
#define ZK__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define ZK__LIKELY(x) (x)
#define ZK__UNLIKELY(x) (x)
#endif

#define ZK__MIN(a, b) ((a) < (b) ? (a) : (b))

/* Private helpers are static: nothing but the zk_ API leaves this file. */
#define ZK__PRIVATE static
