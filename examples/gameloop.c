/* gameloop: zocket driven by a fixed-timestep game loop.

   build/gameloop [--port N] [--ticks N]   (default 9002; 0 ticks: forever)

   The game owns the main loop: 60 times a second it calls zk_loop_step
   with timeout 0 (handle whatever network events are ready, never wait),
   advances its simulation, and sends the new state to every connected
   client as a small JSON text message. */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define TICK_NS (1000000000L / 60)
#define MAX_PLAYERS 64

static zk_conn *players[MAX_PLAYERS];
static int nplayers;

static void on_open(zk_conn *conn, const zk_http_request *req) {
    (void)req;
    if (nplayers == MAX_PLAYERS) {
        zk_conn_close(conn, 4503, "game full");
        return;
    }
    players[nplayers++] = conn;
}

static void on_close(zk_conn *conn, int code, zk_str reason, int clean) {
    int i;
    (void)code, (void)reason, (void)clean;
    for (i = 0; i < nplayers; i++) {
        if (players[i] == conn) {
            players[i] = players[--nplayers];
            break;
        }
    }
}

static void sleep_until(struct timespec *next) {
    next->tv_nsec += TICK_NS;
    if (next->tv_nsec >= 1000000000L) {
        next->tv_nsec -= 1000000000L;
        next->tv_sec++;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, next, NULL) != 0) {}
}

int main(int argc, char **argv) {
    zk_server_opts opts;
    zk_server *server;
    zk_loop *loop;
    struct timespec next;
    long tick, ticks = 0;
    int port = 9002, i;
    double x = 0, v = 1.5;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--ticks") == 0 && i + 1 < argc) ticks = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--port N] [--ticks N]\n", argv[0]);
            return 2;
        }
    }
    loop = zk_loop_new(NULL);
    memset(&opts, 0, sizeof opts);
    opts.port = port;
    opts.cb.on_open = on_open;
    opts.cb.on_close = on_close;
    server = zk_server_new(loop, &opts);
    if (!loop || !server || zk_server_listen(server) < 0) {
        fprintf(stderr, "gameloop: cannot listen on port %d\n", port);
        return 1;
    }
    printf("listening on ws://127.0.0.1:%d\n", zk_server_port(server));
    printf("sending the game state 60 times a second to every client\n");
    fflush(stdout);

    clock_gettime(CLOCK_MONOTONIC, &next);
    for (tick = 0; ticks == 0 || tick < ticks; tick++) {
        char state[96];
        int n;
        zk_loop_step(loop, 0); /* network: only what is ready now */
        x += v;                /* simulation */
        if (x < 0 || x > 100) v = -v;
        n = snprintf(state, sizeof state, "{\"type\":\"state\",\"payload\":{\"tick\":%ld,\"x\":%.1f}}",
                     tick, x);
        if (nplayers) { /* encoded once, copied to every player */
            zk_frame *frame = zk_frame_new(state, (size_t)n, 0, NULL);
            if (frame) {
                for (i = 0; i < nplayers; i++) zk_conn_send_frame(players[i], frame);
                zk_frame_free(frame);
            }
        }
        sleep_until(&next);
    }
    zk_server_free(server);
    zk_loop_free(loop);
    return 0;
}
