#!/usr/bin/env bash
# Client benchmark: what the Zocket client (zk_client) costs over real TCP,
# beside independent client libraries, against the same server.
#
#   bash bench/run_client.sh [--seconds S] [--warmup S] [--rounds R] [--quiet-wait S]
#                            [--clients "zocket node bun"] [--inflight "1 16 100"]
#                            [--client-core C] [--no-inproc] [--no-install]
# (or the same through CLIENT_SECONDS, CLIENT_ROUNDS, ... in the environment)
#
# The server is build/app_server (bench/app_server.c, a zk_app whose route
# bench.echo answers its payload back), pinned to core 0 (taskset -c 0), one
# fresh server per client. The client, pinned to core 1, holds one
# WebSocket and K calls in flight (K = 1, 16, 100): each answer starts the
# next call, a new payload every time ({"n":<counter>}), for S seconds (5)
# after a warm-up of W seconds (1) in the same process and connection.
# Clients:
#   zocket = build/client_load (bench/client_load.c): one zk_client,
#            zk_client_call with the default options (dedup table, a
#            timeout per call), the answer checked in its zk_result_fn;
#   node   = bench/peers/ws_client_rpc.js under Node with the `ws` package
#            (+ bufferutil): JSON.stringify'd envelopes
#            {"type":"bench.echo","payload":{"n":k},"rpcId":"<id>"}, answers
#            JSON.parse'd and matched by rpcId in a Map;
#   bun    = the same script under Bun (its built-in WebSocket client).
# Reported per client and K: calls/s; the client process's CPU per call
# (getrusage / process.cpuUsage: user + system, all threads, the kernel's
# TCP work on its side included); the server's CPU per call (utime+stime
# from /proc/PID/stat). Both CPU figures are read by the client itself at
# the two ends of its timed window (--server-pid), so neither includes the
# warm-up or the connect. Calls/s swing with the machine; compare CPU per
# call, in one run.
# Then (unless --no-inproc) build/bench_client once: zk_client and a zk_app
# in one process over the in-memory loopback transport (no kernel), and the
# memory per client object.
#
# --client-core 0 puts the client on the server's core: no cross-core
# wake-ups (at K = 1 these cost more than either program does on this kind
# of virtual machine), the two processes share one core.
#
# Each measurement waits (bounded by --quiet-wait, 10 s) for a quiet
# machine; with --rounds R the least disturbed of R runs is reported.
# Clients that cannot be installed print SKIPPED. Everything connects to
# 127.0.0.1; every process started here is killed on exit; waits are
# bounded. Logs land in build/client_bench/, the table also in
# build/client_bench/table.md. About 1.5 minutes with the defaults.
set -u
cd "$(dirname "$0")/.." || exit 1

SECS=${CLIENT_SECONDS:-5}
WARMUP=${CLIENT_WARMUP:-1}
ROUNDS=${CLIENT_ROUNDS:-1}
QUIET_WAIT=${CLIENT_QUIET_WAIT:-10}
CLIENTS=${CLIENT_CLIENTS:-"zocket node bun"}
INFLIGHT=${CLIENT_INFLIGHT:-"1 16 100"}
PORT=${CLIENT_PORT:-17700}
CCORE=${CLIENT_CORE:-1}
INPROC=1
INSTALL=1
NPROC=$(nproc)

while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) SECS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --quiet-wait) QUIET_WAIT=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --inflight) INFLIGHT=$2; shift 2 ;;
    --client-core) CCORE=$2; shift 2 ;;
    --no-inproc) INPROC=0; shift ;;
    --no-install) INSTALL=0; shift ;;
    *) echo "usage: $0 [--seconds S] [--warmup S] [--rounds R] [--quiet-wait S] [--clients \"zocket node bun\"] [--inflight \"1 16 100\"] [--client-core C] [--no-inproc] [--no-install]" >&2; exit 2 ;;
    esac
done

OUT=build/client_bench
mkdir -p "$OUT"
PEERS=bench/peers
HZ=$(getconf CLK_TCK)
FLAGS="-std=c99 -Wall -Wextra -Werror -pedantic -Wundef -Wshadow -O2 -march=native -I."

# ---- processes: every one we start is remembered and killed on exit ----
STARTED=()
forget_pid() {
    local p keep=()
    for p in "${STARTED[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    STARTED=("${keep[@]}")
}
stop_pid() { # pid: TERM, wait up to 3 s, then KILL
    local pid=$1 i
    forget_pid "$pid"
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}
cleanup() {
    local p
    for p in "${STARTED[@]}"; do stop_pid "$p"; done
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*"; }

build() { # target source: through the Makefile when it has the rule, else the same flags
    if make -n "$1" >/dev/null 2>&1; then make -s "$1"; else ${CC:-cc} $FLAGS "$2" -o "$1"; fi
}

# ---- build and install what is needed ----
declare -A CMD SKIP VERSION
build build/app_server bench/app_server.c 2>"$OUT/app_server_build.log" ||
    { say "cannot build build/app_server (see $OUT/app_server_build.log)"; exit 1; }
ZK_VERSION="zocket.h of commit $(git log -1 --format=%h -- zocket.h 2>/dev/null || echo '?')$(git diff --quiet -- zocket.h 2>/dev/null || echo ', modified')"
if build build/client_load bench/client_load.c 2>"$OUT/client_load_build.log"; then
    CMD[zocket]="build/client_load"
    VERSION[zocket]="build/client_load, $ZK_VERSION"
else
    SKIP[zocket]="build/client_load does not build (see $OUT/client_load_build.log)"
fi
if [ "$INPROC" = 1 ]; then
    build build/bench_client bench/bench_client.c 2>"$OUT/bench_client_build.log" ||
        say "cannot build build/bench_client (see $OUT/bench_client_build.log)"
fi

if ! command -v node >/dev/null && [ "$INSTALL" = 1 ]; then
    say "installing nodejs and npm ..."
    timeout 600 apt-get install -y nodejs npm >"$OUT/apt_node.log" 2>&1
fi
if command -v npm >/dev/null && [ "$INSTALL" = 1 ] &&
    { [ ! -d $PEERS/node_modules/ws ] || [ ! -d $PEERS/node_modules/bufferutil ] || [ ! -d $PEERS/node_modules/bun ]; }; then
    say "installing npm packages in $PEERS ..."
    (cd $PEERS && timeout 600 npm ci --no-audit --no-fund) >"$OUT/npm.log" 2>&1 ||
        say "npm ci failed (see $OUT/npm.log)"
fi
if command -v node >/dev/null && [ -d $PEERS/node_modules/ws ]; then
    CMD[node]="node $PEERS/ws_client_rpc.js"
    VERSION[node]="node $(node --version), ws $(node -p "require('./$PEERS/node_modules/ws/package.json').version"), bufferutil $(node -p "require('./$PEERS/node_modules/bufferutil/package.json').version" 2>/dev/null || echo missing), bench/peers/ws_client_rpc.js"
else
    SKIP[node]="node or the ws package is missing"
fi
BUN=
for b in $PEERS/node_modules/@oven/bun-linux-x64/bin/bun $PEERS/node_modules/@oven/bun-linux-x64-baseline/bin/bun \
    $PEERS/node_modules/bun/bin/bun.exe $PEERS/node_modules/bun/bin/bun; do
    if [ -x "$b" ] && "$b" --version >/dev/null 2>&1; then BUN=$b; break; fi
done
if [ -n "$BUN" ]; then
    CMD[bun]="$BUN $PEERS/ws_client_rpc.js"
    VERSION[bun]="bun $("$BUN" --version) (its WebSocket client), bench/peers/ws_client_rpc.js"
else
    SKIP[bun]="no runnable bun binary under $PEERS/node_modules"
fi

# ---- helpers ----
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
next_port() {
    PORT=$((PORT + 1))
    while ! port_free "$PORT"; do PORT=$((PORT + 1)); done
}
busy_ticks() { # machine-wide non-idle ticks
    local cpu user nice sys idle iowait irq softirq steal rest
    read -r cpu user nice sys idle iowait irq softirq steal rest </proc/stat
    echo $((user + nice + sys + irq + softirq + steal))
}
wait_quiet() { # at most QUIET_WAIT s for 2 s in which the machine is under 10% busy
    local end=$((SECONDS + QUIET_WAIT)) b0 b1
    while :; do
        b0=$(busy_ticks); sleep 2; b1=$(busy_ticks)
        [ $((b1 - b0)) -le $((HZ * 2 * NPROC / 10)) ] && return 0
        [ $SECONDS -ge $end ] && break
    done
    say "  (the machine is busy with other work: measuring anyway)"
}

SERVER_PID=
start_server() { # log: build/app_server pinned to core 0 on a free port, waits for "listening"
    local log=$1 i
    next_port
    taskset -c 0 build/app_server --port "$PORT" >"$log" 2>&1 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    for i in $(seq 1 100); do
        grep -q '^listening on' "$log" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    say "  build/app_server did not start: $(tail -3 "$log" | tr '\n' ' ')"
    stop_pid "$SERVER_PID"
    return 1
}
field() { # RESULT-line field from a client log
    sed -n '/^RESULT /s/.* '"$2"'=\([^ ]*\).*/\1/p' "$1"
}

# measure CLIENT K LOG: one client run (warm-up inside), keeps the least
# disturbed result per CLIENT.K in R_* arrays.
declare -A R_RATE R_CPU R_USYS R_SRV R_CUTIL R_SUTIL R_OTHER R_ERR
measure() {
    local name=$1 k=$2 log=$3 rate cpu usr sys secs sticks busy srv cutil sutil other errs
    wait_quiet
    timeout "$(awk -v a="$WARMUP" -v b="$SECS" 'BEGIN {printf "%d", a + b + 30}')" taskset -c "$CCORE" ${CMD[$name]} --url "ws://127.0.0.1:$PORT/" --inflight "$k" \
        --seconds "$SECS" --warmup "$WARMUP" --server-pid "$SERVER_PID" >"$log" 2>&1
    rate=$(field "$log" calls_per_s)
    if [ -z "$rate" ]; then
        say "  K=$k: no result ($(tail -2 "$log" | tr '\n' ' '))"
        return 1
    fi
    cpu=$(field "$log" cpu_us_per_call); usr=$(field "$log" user_us_per_call); sys=$(field "$log" sys_us_per_call)
    secs=$(field "$log" seconds); sticks=$(field "$log" server_ticks); busy=$(field "$log" busy_ticks)
    errs=$(field "$log" errors); cutil=$(field "$log" cpu_pct)
    srv=$(awk -v t="$sticks" -v hz="$HZ" -v r="$rate" -v s="$secs" \
        'BEGIN {if (t < 0 || r <= 0) print "-"; else printf "%.2f", t / hz * 1e6 / (r * s)}')
    sutil=$(awk -v t="$sticks" -v hz="$HZ" -v s="$secs" 'BEGIN {if (t < 0) print "-"; else printf "%.0f", 100 * t / hz / s}')
    other=$(awk -v b="$busy" -v t="$sticks" -v hz="$HZ" -v s="$secs" -v c="$cutil" \
        'BEGIN {if (b < 0 || t < 0) {print 0; exit} o = 100 * (b - t) / hz / s - c; if (o < 0) o = 0; printf "%.0f", o}')
    printf '  K=%-3s %8s calls/s, client %7s us/call (user %s, sys %s; %s%% of core %s), server %5s us/call (%s%% of core 0), others %s%%, errors %s\n' \
        "$k" "$rate" "$cpu" "$usr" "$sys" "$cutil" "$CCORE" "$srv" "$sutil" "$other" "$errs"
    if [ -z "${R_OTHER[$name.$k]:-}" ] || [ "$other" -lt "${R_OTHER[$name.$k]}" ]; then
        R_RATE[$name.$k]=$rate
        R_CPU[$name.$k]=$cpu
        R_USYS[$name.$k]="$usr / $sys"
        R_SRV[$name.$k]=$srv
        R_CUTIL[$name.$k]=$cutil
        R_SUTIL[$name.$k]=$sutil
        R_OTHER[$name.$k]=$other
        R_ERR[$name.$k]=$errs
    fi
}

# ---- machine ----
say "== client benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
say "machine: $NPROC cores, $(lscpu | sed -n 's/^Model name:[ ]*//p'), kernel $(uname -r), $(${CC:-cc} --version | head -1)"
say "server build/app_server ($ZK_VERSION) on core 0, client on core $CCORE; ${SECS} s per measurement after ${WARMUP} s warm-up"
for c in $CLIENTS; do
    case $c in zocket | node | bun) ;; *) say "unknown client $c"; exit 2 ;; esac
    if [ -n "${SKIP[$c]:-}" ]; then say "  $c: SKIPPED (${SKIP[$c]})"; else say "  $c: ${VERSION[$c]}"; fi
done

for round in $(seq 1 "$ROUNDS"); do
    [ "$ROUNDS" -gt 1 ] && say "== round $round of $ROUNDS"
    for c in $CLIENTS; do
        [ -n "${SKIP[$c]:-}" ] && continue
        say "-- $c"
        start_server "$OUT/$c.server.round$round.log" || { SKIP[$c]="the server did not start"; continue; }
        for k in $INFLIGHT; do
            measure "$c" "$k" "$OUT/$c.k$k.round$round.log"
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then say "  the server died (see $OUT/$c.server.round$round.log)"; break; fi
        done
        stop_pid "$SERVER_PID"
    done
done

# ---- in process ----
if [ "$INPROC" = 1 ] && [ -x build/bench_client ]; then
    say "-- in process (build/bench_client, core $CCORE)"
    timeout 120 taskset -c "$CCORE" build/bench_client >"$OUT/bench_client.log" 2>&1
    sed 's/^/  /' "$OUT/bench_client.log"
fi

# ---- the table ----
{
    echo "| client | calls in flight | calls/s | client µs/call | client user / sys µs | server µs/call | client % of core $CCORE | server % of core 0 |"
    echo "|---|---|---|---|---|---|---|---|"
    for c in $CLIENTS; do
        for k in $INFLIGHT; do
            if [ -z "${R_RATE[$c.$k]:-}" ]; then echo "| $c | $k | SKIPPED: ${SKIP[$c]:-no result} | | | | | |"; continue; fi
            echo "| $c | $k | ${R_RATE[$c.$k]} | ${R_CPU[$c.$k]} | ${R_USYS[$c.$k]} | ${R_SRV[$c.$k]} | ${R_CUTIL[$c.$k]} | ${R_SUTIL[$c.$k]} |"
        done
    done
} >"$OUT/table.md"
say ""
say "== results (least disturbed of $ROUNDS round(s), ${SECS} s each)"
cat "$OUT/table.md"
say "others: CPU the rest of the machine used meanwhile (% of one core); errors: failed or wrong answers"
for k in "${!R_RATE[@]}"; do
    say "  $k: others ${R_OTHER[$k]}%, errors ${R_ERR[$k]:-?}"
done | sort -V
