/* Real Redis and NATS servers for the broker tests, as child processes.

   bh_start runs redis-server or nats-server on 127.0.0.1 (a free port, or
   one you name), waits until it answers (bounded: BH_START_MS), and
   registers it so that an atexit handler kills it even when a check fails
   or the test exits early; on Linux the child also dies with us
   (PR_SET_PDEATHSIG), so an abort (a sanitizer report) leaves nothing
   behind. bh_kill sends SIGKILL and reaps; bh_restart starts it again on
   the same port. The child's output goes to a temporary file, shown when
   it fails to start and removed at exit (BH_KEEP_LOGS=1 keeps it).

   The query helpers ask the broker itself, over plain blocking sockets
   with timeouts: how many subscribers a Redis channel has (PUBSUB NUMSUB,
   raw RESP) and how many subscriptions a NATS server holds to a subject
   (the monitoring port's /connz?subs=1).

   Binaries are looked up on PATH, then in /usr/sbin and /usr/bin.
   bh_available says whether one is there, and why not.

   Waits between attempts go through bh_idle (set it to step your event
   loop), else poll() with no descriptors: nothing here calls sleep. */
#ifndef ZK_BROKER_HARNESS_H
#define ZK_BROKER_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#ifndef BH_START_MS
#define BH_START_MS 5000  /* a broker must answer within this long */
#endif
#ifndef BH_IO_MS
#define BH_IO_MS 2000     /* send and receive timeouts of the query sockets */
#endif
#define BH_MAX_CHILDREN 16   /* brokers running at once */
#define BH_MAX_LOGS 256      /* output files removed at exit */

enum { BH_REDIS = 0, BH_NATS = 1 };

typedef struct bh_broker {
    int kind;              /* BH_REDIS, BH_NATS */
    pid_t pid;             /* 0: not running */
    int port;              /* client port */
    int monitor_port;      /* NATS: the HTTP monitoring port */
    char password[64];     /* Redis --requirepass, NATS --auth token; "" none */
    char log[128];         /* the child's stdout and stderr */
    char url[256];         /* redis://[:pw@]127.0.0.1:port or nats://[tok@]127.0.0.1:port */
} bh_broker;

/* Called with a number of milliseconds whenever the harness waits. */
static void (*bh_idle)(int ms);

static pid_t bh__children[BH_MAX_CHILDREN];
static char bh__logs[BH_MAX_LOGS][128];
static int bh__atexit_set;

static const char *bh_kind_name(int kind) { return kind == BH_REDIS ? "redis" : "nats"; }
static const char *bh_binary_name(int kind) { return kind == BH_REDIS ? "redis-server" : "nats-server"; }

static uint64_t bh_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void bh_wait_ms(int ms) {
    if (bh_idle) bh_idle(ms);
    else poll(NULL, 0, ms);
}

/* The path of a binary: PATH, then /usr/sbin and /usr/bin. NULL if none. */
static const char *bh_find(const char *name, char *out, size_t cap) {
    const char *path = getenv("PATH");
    char dirs[4096];
    char *dir, *save = NULL;
    struct stat st;
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/usr/bin", path ? path : "");
    for (dir = strtok_r(dirs, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        if (!*dir) continue;
        snprintf(out, cap, "%s/%s", dir, name);
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0) return out;
    }
    return NULL;
}

/* 1 when the broker's binary is there; else 0 and why in why. */
static int bh_available(int kind, char *why, size_t cap) {
    char path[512];
    if (bh_find(bh_binary_name(kind), path, sizeof path)) return 1;
    snprintf(why, cap, "%s not found on PATH, /usr/sbin or /usr/bin (tools/deps.sh %s installs it)",
             bh_binary_name(kind), bh_kind_name(kind));
    return 0;
}

/* A port nobody listens on now: bind 127.0.0.1:0 and give it back. */
static int bh_free_port(void) {
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd < 0) return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* A blocking socket connected to 127.0.0.1:port with BH_IO_MS timeouts,
   or -1 (refused: nobody listens). */
static int bh_connect(int port) {
    struct sockaddr_in a;
    struct timeval tv;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    tv.tv_sec = BH_IO_MS / 1000;
    tv.tv_usec = (BH_IO_MS % 1000) * 1000;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int bh_send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads into buf (NUL-terminated) until done(buf, len) says so, the peer
   closes, the buffer is full or a read times out. Returns the length, or -1
   when nothing complete came. done may be NULL (read to EOF). */
static long bh_read_until(int fd, char *buf, size_t cap, int (*done)(const char *, size_t)) {
    size_t len = 0;
    buf[0] = '\0';
    for (;;) {
        ssize_t r;
        if (done && done(buf, len)) return (long)len;
        if (len + 1 >= cap) return done ? -1 : (long)len;
        r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return done ? -1 : (long)len;
        len += (size_t)r;
        buf[len] = '\0';
    }
}

/* ---- children ---- */

static void bh__forget(pid_t pid) {
    int i;
    for (i = 0; i < BH_MAX_CHILDREN; i++)
        if (bh__children[i] == pid) bh__children[i] = 0;
}

static void bh__kill_all(void) {
    int i;
    for (i = 0; i < BH_MAX_CHILDREN; i++) {
        if (bh__children[i] > 0) {
            kill(bh__children[i], SIGKILL);
            while (waitpid(bh__children[i], NULL, 0) < 0 && errno == EINTR) {}
            bh__children[i] = 0;
        }
    }
    for (i = 0; i < BH_MAX_LOGS; i++) {
        if (bh__logs[i][0] && !getenv("BH_KEEP_LOGS")) unlink(bh__logs[i]);
        bh__logs[i][0] = '\0';
    }
}

/* 0, or -1 when there is no slot left (the caller removes the file). */
static int bh__remember_log(const char *log) {
    int i;
    for (i = 0; i < BH_MAX_LOGS; i++)
        if (!bh__logs[i][0]) {
            snprintf(bh__logs[i], sizeof bh__logs[i], "%s", log);
            return 0;
        }
    return -1;
}

static void bh__show_log(const bh_broker *b) {
    char buf[2048];
    long n;
    int fd = open(b->log, O_RDONLY);
    if (fd < 0) return;
    n = (long)lseek(fd, 0, SEEK_END);
    lseek(fd, n > (long)sizeof buf - 1 ? n - (long)sizeof buf + 1 : 0, SEEK_SET);
    n = (long)read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0) {
        buf[n] = '\0';
        printf("  --- %s output (%s) ---\n%s\n  ---\n", bh_binary_name(b->kind), b->log, buf);
    }
}

/* Whether the server answers: Redis a reply to PING (any: +PONG, or
   -NOAUTH with a password), NATS its INFO line and its monitoring port. */
static int bh__done_line(const char *buf, size_t len) { return len >= 2 && strstr(buf, "\r\n") != NULL; }
static int bh__answers(const bh_broker *b) {
    char buf[512];
    int fd = bh_connect(b->port), ok = 0;
    if (fd < 0) return 0;
    if (b->kind == BH_REDIS) {
        ok = bh_send_all(fd, "*1\r\n$4\r\nPING\r\n", 14) == 0 &&
             bh_read_until(fd, buf, sizeof buf, bh__done_line) > 0 && (buf[0] == '+' || buf[0] == '-');
    } else {
        ok = bh_read_until(fd, buf, sizeof buf, bh__done_line) > 0 && strncmp(buf, "INFO ", 5) == 0;
    }
    close(fd);
    if (ok && b->kind == BH_NATS) {
        fd = bh_connect(b->monitor_port);
        ok = fd >= 0;
        if (fd >= 0) close(fd);
    }
    return ok;
}

static int bh__spawn(bh_broker *b) {
    char bin[512], port[16], mport[16];
    const char *argv[16];
    int argc = 0, i, slot = -1, fd;
    pid_t pid;
    if (!bh__atexit_set) {
        atexit(bh__kill_all);
        bh__atexit_set = 1;
    }
    if (!bh_find(bh_binary_name(b->kind), bin, sizeof bin)) {
        printf("  %s not found\n", bh_binary_name(b->kind));
        return -1;
    }
    for (i = 0; i < BH_MAX_CHILDREN; i++)
        if (bh__children[i] == 0) {
            slot = i;
            break;
        }
    if (slot < 0) {
        printf("  bh_start: more than %d brokers at once\n", BH_MAX_CHILDREN);
        return -1;
    }
    if (!b->log[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(b->log, sizeof b->log, "%s/zk_%s_XXXXXX", tmp && *tmp ? tmp : "/tmp", bh_kind_name(b->kind));
        fd = mkstemp(b->log);
        if (fd < 0) {
            printf("  bh_start: mkstemp %s: %s\n", b->log, strerror(errno));
            b->log[0] = '\0';
            return -1;
        }
        close(fd);
        if (bh__remember_log(b->log) != 0) {
            printf("  bh_start: more than %d brokers in one run\n", BH_MAX_LOGS);
            unlink(b->log);
            b->log[0] = '\0';
            return -1;
        }
    }
    snprintf(port, sizeof port, "%d", b->port);
    snprintf(mport, sizeof mport, "%d", b->monitor_port);
    argv[argc++] = bin;
    if (b->kind == BH_REDIS) {
        argv[argc++] = "--port"; argv[argc++] = port;
        argv[argc++] = "--bind"; argv[argc++] = "127.0.0.1";
        argv[argc++] = "--save"; argv[argc++] = "";
        argv[argc++] = "--appendonly"; argv[argc++] = "no";
        if (b->password[0]) { argv[argc++] = "--requirepass"; argv[argc++] = b->password; }
    } else {
        argv[argc++] = "-a"; argv[argc++] = "127.0.0.1";
        argv[argc++] = "-p"; argv[argc++] = port;
        argv[argc++] = "-m"; argv[argc++] = mport;
        if (b->password[0]) { argv[argc++] = "--auth"; argv[argc++] = b->password; }
    }
    argv[argc] = NULL;
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        printf("  bh_start: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int out = open(b->log, O_WRONLY | O_APPEND), in = open("/dev/null", O_RDONLY);
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1) _exit(126); /* the test died before the prctl */
#endif
        if (in >= 0) dup2(in, 0);
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    bh__children[slot] = pid;
    b->pid = pid;
    return 0;
}

/* Kills the broker (SIGKILL) and reaps it; nothing when not running. */
static void bh_kill(bh_broker *b) {
    if (b->pid <= 0) return;
    kill(b->pid, SIGKILL);
    while (waitpid(b->pid, NULL, 0) < 0 && errno == EINTR) {}
    bh__forget(b->pid);
    b->pid = 0;
}

/* (Re)starts b on b->port (and b->monitor_port) and waits until it answers.
   0, or -1 with the reason printed. */
static int bh_restart(bh_broker *b) {
    uint64_t end = bh_now_ms() + BH_START_MS;
    int status;
    if (b->pid > 0) bh_kill(b);
    if (bh__spawn(b) != 0) return -1;
    for (;;) {
        pid_t r = waitpid(b->pid, &status, WNOHANG);
        if (r == b->pid) {
            printf("  %s exited at start (status %d)\n", bh_binary_name(b->kind), status);
            bh__forget(b->pid);
            b->pid = 0;
            bh__show_log(b);
            return -1;
        }
        if (bh__answers(b)) return 0;
        if (bh_now_ms() >= end) {
            printf("  %s did not answer on port %d within %d ms\n", bh_binary_name(b->kind), b->port, BH_START_MS);
            bh__show_log(b);
            bh_kill(b);
            return -1;
        }
        bh_wait_ms(5);
    }
}

/* Starts a broker of kind on port (0: a free one) with password (Redis
   requirepass, NATS token; NULL or "": none). 0, or -1 (printed). */
static int bh_start(bh_broker *b, int kind, int port, const char *password) {
    memset(b, 0, sizeof *b);
    b->kind = kind;
    b->port = port > 0 ? port : bh_free_port();
    b->monitor_port = kind == BH_NATS ? bh_free_port() : 0;
    if (b->port <= 0 || (kind == BH_NATS && b->monitor_port <= 0)) {
        printf("  bh_start: no free port\n");
        return -1;
    }
    if (password) snprintf(b->password, sizeof b->password, "%s", password);
    if (kind == BH_REDIS)
        snprintf(b->url, sizeof b->url, "redis://%s%s%s127.0.0.1:%d", b->password[0] ? ":" : "",
                 b->password, b->password[0] ? "@" : "", b->port);
    else
        snprintf(b->url, sizeof b->url, "nats://%s%s127.0.0.1:%d", b->password, b->password[0] ? "@" : "",
                 b->port);
    return bh_restart(b);
}

/* ---- queries ---- */

/* The count in a RESP reply to PUBSUB NUMSUB of one channel
   (*2 $n channel :count), -2 while incomplete, -1 when it is not that. */
static long bh__numsub_count(const char *buf, size_t len) {
    const char *p = buf, *end = buf + len, *eol;
    long n;
    if (len && buf[0] == '-') return memchr(buf, '\n', len) ? -1 : -2;
    if (len < 4) return -2;
    if (strncmp(p, "*2\r\n", 4) != 0) return -1;
    p += 4;
    if (p >= end) return -2;
    if (*p != '$') return -1;
    eol = (const char *)memchr(p, '\n', (size_t)(end - p));
    if (!eol) return -2;
    n = atol(p + 1);
    if (n < 0) return -1;
    p = eol + 1;
    if (end - p < n + 2) return -2;
    p += n + 2;
    if (p >= end) return -2;
    if (*p != ':') return -1;
    eol = (const char *)memchr(p, '\n', (size_t)(end - p));
    if (!eol) return -2;
    return atol(p + 1);
}
static int bh__done_numsub(const char *buf, size_t len) { return bh__numsub_count(buf, len) != -2; }
static int bh__done_ok(const char *buf, size_t len) { return len >= 2 && strstr(buf, "\r\n") != NULL; }

/* Redis: subscribers of channel (PUBSUB NUMSUB), or -1 on any error. */
static int bh_redis_numsub(const bh_broker *b, const char *channel) {
    char cmd[512], buf[512];
    int fd = bh_connect(b->port), n;
    long got;
    size_t len;
    if (fd < 0) return -1;
    if (b->password[0]) {
        len = (size_t)snprintf(cmd, sizeof cmd, "*2\r\n$4\r\nAUTH\r\n$%u\r\n%s\r\n", (unsigned)strlen(b->password),
                               b->password);
        if (bh_send_all(fd, cmd, len) != 0 || bh_read_until(fd, buf, sizeof buf, bh__done_ok) < 0 ||
            buf[0] != '+') {
            close(fd);
            return -1;
        }
    }
    len = (size_t)snprintf(cmd, sizeof cmd, "*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n$%u\r\n%s\r\n",
                           (unsigned)strlen(channel), channel);
    n = -1;
    if (bh_send_all(fd, cmd, len) == 0 && (got = bh_read_until(fd, buf, sizeof buf, bh__done_numsub)) > 0)
        n = (int)bh__numsub_count(buf, (size_t)got);
    close(fd);
    return n < 0 ? -1 : n;
}

/* NATS: how many subscriptions (of all connections) are to exactly
   subject, from the monitoring port's /connz?subs=1; -1 on any error. */
static int bh_nats_subs(const bh_broker *b, const char *subject) {
    static char buf[1 << 18];
    char want[300];
    const char *body, *p;
    int fd = bh_connect(b->monitor_port), count = 0;
    static const char req[] = "GET /connz?subs=1&limit=1024 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (fd < 0) return -1;
    if (bh_send_all(fd, req, sizeof req - 1) != 0 || bh_read_until(fd, buf, sizeof buf, NULL) <= 0) {
        close(fd);
        return -1;
    }
    close(fd);
    if (strncmp(buf, "HTTP/1.", 7) != 0 || strncmp(buf + 9, "200", 3) != 0) return -1;
    body = strstr(buf, "\r\n\r\n");
    if (!body || !strstr(body, "\"connections\"")) return -1;
    snprintf(want, sizeof want, "\"%s\"", subject);
    for (p = strstr(body, want); p; p = strstr(p + 1, want)) count++;
    return count;
}

#endif
