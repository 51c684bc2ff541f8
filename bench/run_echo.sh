#!/usr/bin/env bash
# Echo-server benchmark: zocket.h's build/echo against independent peers.
#
#   bash bench/run_echo.sh [--seconds S] [--warmup S] [--conns N] [--pipeline K]
#                          [--rounds R] [--quiet-wait S] [--idle-conns N]
#                          [--servers "zocket lws node bun raw"] [--no-memory] [--no-install]
# (or the same through ECHO_SECONDS, ECHO_ROUNDS, ... in the environment)
#
# For each server (zocket = build/echo, lws = libwebsockets 4.1, node = Node
# ws 8 + bufferutil, bun = Bun.serve, raw = bench/peers/raw_echo.c, the
# syscall floor): the server runs pinned to core 0, build/loadgen pinned to
# core 1, N connections (100), one message in flight each, 16 B then 4 KiB
# binary messages for S seconds (10) each after a 2 s warm-up. Reported:
# messages/s, round trip p50/p99, and the server's CPU time per message
# (utime+stime of the server process, all its threads, from /proc/PID/stat
# before and after, over every message echoed in that time).
# Then the memory test: a fresh server, VmRSS after start-up, VmRSS with
# 10,000 idle upgraded connections, the difference divided by 10,000.
# CPU per message is the number to compare: messages/s swing with whatever
# else the machine runs. Each measurement waits (bounded) for a quiet
# machine; with --rounds R, the least disturbed of R rounds is reported.
#
# Peers that cannot be built or installed print SKIPPED. Everything binds
# 127.0.0.1; every process started here is killed on exit; waits are bounded.
# Raw logs land in build/echo_bench/; the table also in build/echo_bench/table.md.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SECS=${ECHO_SECONDS:-10}
WARMUP=${ECHO_WARMUP:-2}
CONNS=${ECHO_CONNS:-100}
PIPELINE=${ECHO_PIPELINE:-1}
IDLE_CONNS=${ECHO_IDLE_CONNS:-10000}
SERVERS=${ECHO_SERVERS:-"zocket lws node bun raw"}
SIZES="16 4096"
MEMORY=1
INSTALL=1
PORT=${ECHO_PORT:-17400}
ROUNDS=${ECHO_ROUNDS:-1}
QUIET_WAIT=${ECHO_QUIET_WAIT:-60}
NPROC=$(nproc)

while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) SECS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --pipeline) PIPELINE=$2; shift 2 ;;
    --idle-conns) IDLE_CONNS=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --no-memory) MEMORY=0; shift ;;
    --no-install) INSTALL=0; shift ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --quiet-wait) QUIET_WAIT=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds S] [--warmup S] [--conns N] [--pipeline K] [--rounds R] [--quiet-wait S] [--idle-conns N] [--servers LIST] [--no-memory] [--no-install]" >&2; exit 2 ;;
    esac
done

OUT=build/echo_bench
mkdir -p "$OUT"
PEERS=bench/peers
HZ=$(getconf CLK_TCK)

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

# ---- limits: 10,000 connections need as many descriptors per process ----
ulimit -n "$(ulimit -Hn)" 2>/dev/null
ulimit -n 65536 2>/dev/null
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((IDLE_CONNS + 200)) ]; then
    say "note: ulimit -n is $NOFILE (cannot be raised here): idle test uses $((NOFILE - 200)) connections"
    IDLE_CONNS=$((NOFILE - 200))
fi

# ---- build and install what is needed ----
declare -A CMD SKIP VERSION
build_loadgen() {
    if make -n build/loadgen >/dev/null 2>&1; then
        make -s build/loadgen
    else # until the Makefile has a rule: the same flags as bench_*
        mkdir -p build
        ${CC:-cc} -std=c99 -Wall -Wextra -Werror -pedantic -Wundef -Wshadow -O2 -march=native -I. \
            bench/loadgen.c -o build/loadgen
    fi
}
make -s build/echo || { say "cannot build build/echo"; exit 1; }
build_loadgen || { say "cannot build build/loadgen"; exit 1; }

CMD[zocket]="build/echo --host 127.0.0.1 --port"
VERSION[zocket]="zocket.h of commit $(git log -1 --format=%h -- zocket.h 2>/dev/null || echo '?')$(git diff --quiet -- zocket.h 2>/dev/null || echo ', modified')"

if ${CC:-cc} -std=c99 -Wall -Wextra -Werror -pedantic -Wundef -Wshadow -O2 -I. \
    $PEERS/raw_echo.c -o build/raw_echo 2>"$OUT/raw_build.log"; then
    CMD[raw]="build/raw_echo"
    VERSION[raw]="bench/peers/raw_echo.c"
else
    SKIP[raw]="does not build (see $OUT/raw_build.log)"
fi

if [ ! -f /usr/include/libwebsockets.h ] && [ "$INSTALL" = 1 ]; then
    say "installing libwebsockets-dev ..."
    timeout 300 apt-get install -y libwebsockets-dev >"$OUT/apt_lws.log" 2>&1 ||
        { timeout 300 apt-get update >>"$OUT/apt_lws.log" 2>&1 &&
          timeout 300 apt-get install -y libwebsockets-dev >>"$OUT/apt_lws.log" 2>&1; }
fi
if cc -O2 $PEERS/lws_echo.c -lwebsockets -o build/lws_echo 2>"$OUT/lws_build.log"; then
    CMD[lws]="build/lws_echo"
    VERSION[lws]="libwebsockets $(dpkg-query -W -f='${Version}' libwebsockets-dev 2>/dev/null || echo '?')"
else
    SKIP[lws]="libwebsockets-dev missing or build failed (see $OUT/lws_build.log)"
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
    CMD[node]="node $PEERS/ws_echo.js"
    VERSION[node]="node $(node --version), ws $(node -p "require('./$PEERS/node_modules/ws/package.json').version"), bufferutil $(node -p "require('./$PEERS/node_modules/bufferutil/package.json').version" 2>/dev/null || echo missing)"
else
    SKIP[node]="node or the ws package is missing"
fi
BUN=
for b in $PEERS/node_modules/@oven/bun-linux-x64/bin/bun $PEERS/node_modules/@oven/bun-linux-x64-baseline/bin/bun \
    $PEERS/node_modules/bun/bin/bun.exe $PEERS/node_modules/bun/bin/bun; do
    if [ -x "$b" ] && "$b" --version >/dev/null 2>&1; then BUN=$b; break; fi
done
if [ -n "$BUN" ]; then
    CMD[bun]="$BUN $PEERS/bun_echo.js"
    VERSION[bun]="bun $("$BUN" --version)"
else
    SKIP[bun]="no runnable bun binary under $PEERS/node_modules"
fi

# ---- helpers ----
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
next_port() {
    PORT=$((PORT + 1))
    while ! port_free "$PORT"; do PORT=$((PORT + 1)); done
}
cpu_ticks() { # utime + stime of a process (all threads), in clock ticks
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    s=${s##*) }
    set -- $s
    echo $(( ${12} + ${13} ))
}
busy_ticks() { # machine-wide non-idle ticks
    local cpu user nice sys idle iowait irq softirq steal rest
    read -r cpu user nice sys idle iowait irq softirq steal rest </proc/stat
    echo $((user + nice + sys + irq + softirq + steal))
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

SERVER_PID=
start_server() { # name log: starts it pinned to core 0 on a free port, waits for "listening"
    local name=$1 log=$2 i
    next_port
    taskset -c 0 ${CMD[$name]} "$PORT" >"$log" 2>&1 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    for i in $(seq 1 100); do
        grep -q '^listening on' "$log" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    say "  $name did not start: $(tail -3 "$log" | tr '\n' ' ')"
    stop_pid "$SERVER_PID"
    return 1
}

run_load() { # size seconds log: loadgen pinned to core 1
    timeout $(($2 + 90)) taskset -c 1 build/loadgen --url "ws://127.0.0.1:$PORT/" \
        --conns "$CONNS" --size "$1" --seconds "$2" --pipeline "$PIPELINE" >"$3" 2>&1
}

field() { # RESULT-line field from a loadgen log
    sed -n '/^RESULT /s/.* '"$2"'=\([^ ]*\).*/\1/p' "$1"
}

# ---- machine ----
say "== echo benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
say "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name:[ ]*//p'), kernel $(uname -r), $(${CC:-cc} --version | head -1)"
say "load: $CONNS connections, pipeline $PIPELINE, ${SECS} s per size after ${WARMUP} s warm-up; server on core 0, loadgen on core 1"
for s in $SERVERS; do
    if [ -n "${SKIP[$s]:-}" ]; then say "  $s: SKIPPED (${SKIP[$s]})"; else say "  $s: ${VERSION[$s]}"; fi
done

# ---- throughput and CPU per message ----
# Other work on the machine skews everything: before each measurement wait
# (at most QUIET_WAIT s) for 2 s in which the machine is under 10% busy, and
# with several rounds keep, per server and size, the round the rest of the
# machine disturbed least.
wait_quiet() {
    local end=$((SECONDS + QUIET_WAIT)) b0 b1
    while :; do
        b0=$(busy_ticks); sleep 2; b1=$(busy_ticks)
        [ $((b1 - b0)) -le $((HZ * 2 * NPROC / 10)) ] && return 0
        [ $SECONDS -ge $end ] && break
    done
    say "  (the machine is busy with other work: measuring anyway)"
}
declare -A RATE CPU LAT UTIL OTHER ERR RSS LGCPU
for round in $(seq 1 "$ROUNDS"); do
    [ "$ROUNDS" -gt 1 ] && say "== round $round of $ROUNDS"
    for s in $SERVERS; do
        [ -n "${SKIP[$s]:-}" ] && continue
        [ -n "${CMD[$s]:-}" ] || { SKIP[$s]="unknown server name"; continue; }
        say "-- $s"
        if ! start_server "$s" "$OUT/$s.server.log"; then
            SKIP[$s]="did not start (see $OUT/$s.server.log)"
            continue
        fi
        for size in $SIZES; do
            log="$OUT/$s.$size.round$round.log"
            run_load "$size" "$WARMUP" "$OUT/$s.$size.warmup.log"
            wait_quiet
            c0=$(cpu_ticks "$SERVER_PID"); b0=$(busy_ticks); t0=$(date +%s.%N)
            run_load "$size" "$SECS" "$log"
            c1=$(cpu_ticks "$SERVER_PID"); b1=$(busy_ticks); t1=$(date +%s.%N)
            msgs=$(field "$log" msgs); msgs=${msgs:-0}
            lgcpu=$(field "$log" loadgen_cpu)
            if [ "$msgs" -gt 0 ]; then
                cpu=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v m="$msgs" 'BEGIN {printf "%.2f", t / hz * 1e6 / m}')
            else
                cpu="-"
            fi
            util=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", 100 * t / hz / (b - a)}')
            other=$(awk -v all=$((b1 - b0)) -v srv=$((c1 - c0)) -v lg="${lgcpu:-0}" -v hz="$HZ" -v a="$t0" -v b="$t1" \
                'BEGIN {o = 100 * all / hz / (b - a) - 100 * srv / hz / (b - a) - lg; if (o < 0) o = 0; printf "%.0f", o}')
            say "  ${size} B: $(field "$log" msgs_per_s) msg/s, server $cpu us/msg ($util% of core 0), rtt p50/p99 $(field "$log" p50_us)/$(field "$log" p99_us) us, loadgen ${lgcpu:-?}%, others $other%, errors $(field "$log" errors)"
            if [ -z "${OTHER[$s.$size]:-}" ] || [ "$other" -lt "${OTHER[$s.$size]}" ]; then
                RATE[$s.$size]=$(field "$log" msgs_per_s)
                LAT[$s.$size]="$(field "$log" p50_us)/$(field "$log" p99_us)"
                ERR[$s.$size]=$(field "$log" errors)
                CPU[$s.$size]=$cpu
                UTIL[$s.$size]=$util
                OTHER[$s.$size]=$other
                LGCPU[$s.$size]=${lgcpu:-?}
            fi
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then say "  $s died (see $OUT/$s.server.log)"; break; fi
        done
        stop_pid "$SERVER_PID"
    done
done

# ---- memory: RSS per idle upgraded connection ----
if [ "$MEMORY" = 1 ]; then
    for s in $SERVERS; do
        [ -n "${SKIP[$s]:-}" ] && continue
        say "-- $s: $IDLE_CONNS idle connections"
        start_server "$s" "$OUT/$s.idle.server.log" || continue
        sleep 1
        r0=$(rss_kb "$SERVER_PID")
        ilog="$OUT/$s.idle.log"
        taskset -c 1 build/loadgen --url "ws://127.0.0.1:$PORT/" --conns "$IDLE_CONNS" --idle --seconds 300 >"$ilog" 2>&1 &
        lg=$!
        STARTED+=("$lg")
        ready=
        for i in $(seq 1 1200); do # up to 120 s
            ready=$(sed -n 's/^ready \([0-9]*\).*/\1/p' "$ilog" 2>/dev/null)
            [ -n "$ready" ] && break
            kill -0 "$lg" 2>/dev/null || break
            sleep 0.1
        done
        if [ "${ready:-0}" = "$IDLE_CONNS" ]; then
            sleep 2 # let the server finish the last handshakes' work
            r1=$(rss_kb "$SERVER_PID")
            RSS[$s]=$(awk -v a="$r0" -v b="$r1" -v n="$IDLE_CONNS" 'BEGIN {printf "%.0f", (b - a) * 1024 / n}')
            say "  VmRSS $r0 kB -> $r1 kB: ${RSS[$s]} B per connection"
        else
            RSS[$s]="-"
            say "  only ${ready:-0} of $IDLE_CONNS connections came up: $(tail -2 "$ilog" | tr '\n' ' ')"
        fi
        stop_pid "$lg"
        stop_pid "$SERVER_PID"
    done
fi

# ---- the table ----
human_bytes() {
    case "$1" in
    -|'') echo "-" ;;
    *) awk -v b="$1" 'BEGIN {if (b >= 1024) printf "%.1f KB", b / 1024; else printf "%d B", b}' ;;
    esac
}
{
    echo "| server | msg/s 16 B | server µs/msg 16 B | rtt p50/p99 µs 16 B | msg/s 4 KiB | server µs/msg 4 KiB | rtt p50/p99 µs 4 KiB | idle RSS/conn |"
    echo "|---|---|---|---|---|---|---|---|"
    for s in $SERVERS; do
        if [ -n "${SKIP[$s]:-}" ]; then
            echo "| $s | SKIPPED: ${SKIP[$s]} | | | | | | |"
            continue
        fi
        echo "| $s | ${RATE[$s.16]:--} | ${CPU[$s.16]:--} | ${LAT[$s.16]:--} | ${RATE[$s.4096]:--} | ${CPU[$s.4096]:--} | ${LAT[$s.4096]:--} | $(human_bytes "${RSS[$s]:-}") |"
    done
} >"$OUT/table.md"
say ""
say "== results ($CONNS connections, pipeline $PIPELINE, ${SECS} s per size, least disturbed of $ROUNDS round(s); idle RSS at $IDLE_CONNS connections)"
cat "$OUT/table.md"
say "server: % of core 0 it used; loadgen: % of core 1; others: CPU the rest of the machine used meanwhile (% of one core, ~0 when quiet)"
for s in $SERVERS; do
    [ -n "${SKIP[$s]:-}" ] && continue
    say "  $s: 16 B server ${UTIL[$s.16]:-?}%, loadgen ${LGCPU[$s.16]:-?}%, others ${OTHER[$s.16]:-?}%, errors ${ERR[$s.16]:-?}; 4 KiB server ${UTIL[$s.4096]:-?}%, loadgen ${LGCPU[$s.4096]:-?}%, others ${OTHER[$s.4096]:-?}%, errors ${ERR[$s.4096]:-?}"
done
