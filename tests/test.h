/* A tiny test harness shared by the unit tests.

   TEST(name) { ... CHECK(cond); CHECK_EQ_INT(a, b); ... }
   int main(void) { RUN(name); ...; return test_summary(); }

   Each TEST is one counted test: it passes when none of its checks failed.
   test_summary() prints "N passed, N failed" and returns the exit status.
   Set TEST_VERBOSE=1 to see a line per passing test. */
#ifndef ZK_TEST_H
#define ZK_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int test__failed_checks;
static int test__passed, test__failed;
static const char *test__name;

#define TEST(name) static void test_##name(void)

#define RUN(name)                                                             \
    do {                                                                      \
        int before_ = test__failed_checks;                                    \
        test__name = #name;                                                   \
        test_##name();                                                        \
        if (test__failed_checks == before_) {                                 \
            test__passed++;                                                   \
            if (getenv("TEST_VERBOSE")) printf("ok   %s\n", #name);           \
        } else {                                                              \
            test__failed++;                                                   \
            printf("FAIL %s\n", #name);                                       \
        }                                                                     \
    } while (0)

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            test__failed_checks++;                                            \
            printf("  %s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__,     \
                   test__name, #cond);                                        \
        }                                                                     \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                    \
    do {                                                                      \
        long long a_ = (long long)(a), b_ = (long long)(b);                   \
        if (a_ != b_) {                                                       \
            test__failed_checks++;                                            \
            printf("  %s:%d: %s: %s == %lld, expected %s == %lld\n", __FILE__, \
                   __LINE__, test__name, #a, a_, #b, b_);                     \
        }                                                                     \
    } while (0)

/* Compares a (ptr, len) view with a NUL-terminated string. */
#define CHECK_STR(view, lit)                                                  \
    do {                                                                      \
        const char *l_ = (lit);                                               \
        size_t n_ = strlen(l_);                                               \
        if ((view).len != n_ || memcmp((view).ptr, l_, n_) != 0) {            \
            test__failed_checks++;                                            \
            printf("  %s:%d: %s: %s is \"%.*s\", expected \"%s\"\n", __FILE__, \
                   __LINE__, test__name, #view, (int)(view).len,              \
                   (view).ptr ? (view).ptr : "", l_);                         \
        }                                                                     \
    } while (0)

#define CHECK_MEM(ptr, len, exp, exp_len)                                     \
    do {                                                                      \
        if ((size_t)(len) != (size_t)(exp_len) ||                             \
            memcmp((ptr), (exp), (size_t)(exp_len)) != 0) {                   \
            test__failed_checks++;                                            \
            printf("  %s:%d: %s: bytes differ (%zu vs %zu)\n", __FILE__,      \
                   __LINE__, test__name, (size_t)(len), (size_t)(exp_len));   \
        }                                                                     \
    } while (0)

static int test_summary(void) {
    printf("%d passed, %d failed\n", test__passed, test__failed);
    return test__failed ? 1 : 0;
}

/* Guard-page buffers: len bytes placed so that the byte after the last one
   is on an unmapped (PROT_NONE) page, so any over-read faults at once.
   Release with guard_free. */
typedef struct guard_buf {
    unsigned char *data; /* len usable bytes, ending at the guard page */
    void *base;
    size_t map_len;
} guard_buf;

static guard_buf guard_alloc(const void *src, size_t len) {
    guard_buf g;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + page - 1) / page + 1;
    g.map_len = pages * page;
    g.base = mmap(NULL, g.map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g.base == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    if (mprotect((char *)g.base + (pages - 1) * page, page, PROT_NONE) != 0) {
        perror("mprotect");
        exit(2);
    }
    g.data = (unsigned char *)g.base + (pages - 1) * page - len;
    if (len) memcpy(g.data, src, len);
    return g;
}

static void guard_free(guard_buf *g) {
    munmap(g->base, g->map_len);
    g->base = NULL;
}

#endif
