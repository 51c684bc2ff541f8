#!/usr/bin/env bash
# RPC and room fan-out benchmark: zocket.h's app layer (build/app_server,
# bench/app_server.c) against Bun and two floors.
#
#   bash bench/run_fanout.sh [--seconds S] [--warmup S] [--rounds R] [--quiet-wait S]
#                            [--servers "zocket plain bun raw"] [--sizes "30 100"]
#                            [--no-rpc] [--no-fanout] [--no-caller] [--no-install]
# (or the same through FANOUT_SECONDS, FANOUT_ROUNDS, ... in the environment)
#
# Servers: zocket = build/app_server (a zk_app: routes bench.echo, room.join,
# room.send; zocket-schema, RPC only, is the same with an input schema on
# bench.echo); plain = build/app_server --plain (the same three messages on a
# bare zk_server: zk_json_parse, zk_writer, zk_frame to an array of members;
# what the net layer costs without the app layer); bun = Bun.serve with
# JSON.parse/stringify and ws.subscribe/publish, publishToSelf
# (bench/peers/bun_app.js); raw = bench/peers/raw_fanout.c, a minimal epoll
# loop with no JSON parser that writes each member once per pass (fan-out
# only: the floor).
#
# Each server runs alone pinned to core 0 (taskset -c 0), build/loadgen pinned
# to core 1.
# - RPC: 100 connections, one call in flight each
#   ({"type":"bench.echo","payload":{"n":123},"rpcId":"<k>"}, the answer
#   checked), S seconds (5) after a warm-up run (1 s). Calls/s, round trip
#   p50/p99, server CPU per call.
# - Fan-out: N connections in the room "bench" (N = 30 and 100); a round is
#   every connection sending one room.send and every connection receiving
#   all N messages; deliveries/s = rounds x N^2 / time. Deliveries/s, round
#   time p50/p99, server CPU per delivery.
# - build/bench_caller (zk_router_call in process).
# Server CPU = utime+stime of the server process (all threads) from
# /proc/PID/stat before and after the timed run. Each measurement waits
# (bounded by --quiet-wait, 10 s) for a quiet machine; with --rounds R the
# least disturbed of R runs is reported. Peers that cannot be built or
# installed print SKIPPED. Everything binds 127.0.0.1; every process started
# here is killed on exit; waits are bounded. Logs land in build/fanout_bench/,
# the table also in build/fanout_bench/table.md. About 2 minutes with the
# defaults on a quiet machine.
set -u
cd "$(dirname "$0")/.." || exit 1

SECS=${FANOUT_SECONDS:-5}
WARMUP=${FANOUT_WARMUP:-1}
ROUNDS=${FANOUT_ROUNDS:-1}
QUIET_WAIT=${FANOUT_QUIET_WAIT:-10}
SERVERS=${FANOUT_SERVERS:-"zocket plain bun raw"}
SIZES=${FANOUT_SIZES:-"30 100"}
RPC_CONNS=${FANOUT_RPC_CONNS:-100}
PORT=${FANOUT_PORT:-17600}
DO_RPC=1
DO_FANOUT=1
DO_CALLER=1
INSTALL=1
NPROC=$(nproc)

while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) SECS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --quiet-wait) QUIET_WAIT=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --no-rpc) DO_RPC=0; shift ;;
    --no-fanout) DO_FANOUT=0; shift ;;
    --no-caller) DO_CALLER=0; shift ;;
    --no-install) INSTALL=0; shift ;;
    *) echo "usage: $0 [--seconds S] [--warmup S] [--rounds R] [--quiet-wait S] [--servers LIST] [--sizes \"30 100\"] [--no-rpc] [--no-fanout] [--no-caller] [--no-install]" >&2; exit 2 ;;
    esac
done

OUT=build/fanout_bench
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

# ---- build and install what is needed ----
declare -A CMD SKIP VERSION
if make -n build/loadgen >/dev/null 2>&1; then make -s build/loadgen; else ${CC:-cc} $FLAGS bench/loadgen.c -o build/loadgen; fi ||
    { say "cannot build build/loadgen"; exit 1; }
ZK_VERSION="zocket.h of commit $(git log -1 --format=%h -- zocket.h 2>/dev/null || echo '?')$(git diff --quiet -- zocket.h 2>/dev/null || echo ', modified')"
if { if make -n build/app_server >/dev/null 2>&1; then make -s build/app_server; else ${CC:-cc} $FLAGS bench/app_server.c -o build/app_server; fi; } 2>"$OUT/app_server_build.log"; then
    CMD[zocket]="build/app_server --port"
    CMD[zocket-schema]="build/app_server --schema --port"
    CMD[plain]="build/app_server --plain --port"
    VERSION[zocket]="build/app_server, $ZK_VERSION"
    VERSION[plain]="build/app_server --plain, $ZK_VERSION"
else
    for s in zocket zocket-schema plain; do SKIP[$s]="build/app_server does not build (see $OUT/app_server_build.log)"; done
fi
if ${CC:-cc} $FLAGS $PEERS/raw_fanout.c -o build/raw_fanout 2>"$OUT/raw_build.log"; then
    CMD[raw]="build/raw_fanout"
    VERSION[raw]="bench/peers/raw_fanout.c"
else
    SKIP[raw]="does not build (see $OUT/raw_build.log)"
fi
if [ "$DO_CALLER" = 1 ]; then
    make -s build/bench_caller 2>"$OUT/caller_build.log" || say "cannot build build/bench_caller (see $OUT/caller_build.log)"
fi

if ! command -v npm >/dev/null && [ "$INSTALL" = 1 ]; then
    say "installing nodejs and npm ..."
    timeout 600 apt-get install -y nodejs npm >"$OUT/apt_node.log" 2>&1
fi
if command -v npm >/dev/null && [ "$INSTALL" = 1 ] && [ ! -d $PEERS/node_modules/bun ]; then
    say "installing npm packages in $PEERS ..."
    (cd $PEERS && timeout 600 npm ci --no-audit --no-fund) >"$OUT/npm.log" 2>&1 ||
        say "npm ci failed (see $OUT/npm.log)"
fi
BUN=
for b in $PEERS/node_modules/@oven/bun-linux-x64/bin/bun $PEERS/node_modules/@oven/bun-linux-x64-baseline/bin/bun \
    $PEERS/node_modules/bun/bin/bun.exe $PEERS/node_modules/bun/bin/bun; do
    if [ -x "$b" ] && "$b" --version >/dev/null 2>&1; then BUN=$b; break; fi
done
if [ -n "$BUN" ]; then
    CMD[bun]="$BUN $PEERS/bun_app.js"
    VERSION[bun]="bun $("$BUN" --version), bench/peers/bun_app.js"
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
field() { # RESULT-line field from a loadgen log
    sed -n '/^RESULT /s/.* '"$2"'=\([^ ]*\).*/\1/p' "$1"
}

# measure NAME KEY LOGBASE LOADGEN-ARGS...: warm-up, quiet wait, timed run;
# keeps the least disturbed result per KEY in R_* arrays.
declare -A R_RATE R_LAT R_CPU R_UTIL R_LG R_OTHER R_ERR
measure() {
    local name=$1 key=$2 base=$3 c0 c1 b0 b1 t0 t1 log count rate unit cpu util other lg
    shift 3
    timeout $((WARMUP + 30)) taskset -c 1 build/loadgen --url "ws://127.0.0.1:$PORT/" "$@" --seconds "$WARMUP" >"$base.warmup.log" 2>&1
    wait_quiet
    log="$base.log"
    c0=$(cpu_ticks "$SERVER_PID"); b0=$(busy_ticks); t0=$(date +%s.%N)
    timeout $((SECS + 30)) taskset -c 1 build/loadgen --url "ws://127.0.0.1:$PORT/" "$@" --seconds "$SECS" >"$log" 2>&1
    c1=$(cpu_ticks "$SERVER_PID"); b1=$(busy_ticks); t1=$(date +%s.%N)
    if [ "$(field "$log" mode)" = fanout ]; then
        count=$(field "$log" deliveries); rate=$(field "$log" deliveries_per_s); unit=ns
    else
        count=$(field "$log" msgs); rate=$(field "$log" msgs_per_s); unit=us
    fi
    count=${count:-0}
    lg=$(field "$log" loadgen_cpu)
    if [ "$count" -gt 0 ]; then
        cpu=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v m="$count" -v u="$unit" \
            'BEGIN {printf (u == "ns" ? "%.0f" : "%.2f"), t / hz * (u == "ns" ? 1e9 : 1e6) / m}')
    else
        cpu="-"
    fi
    util=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", 100 * t / hz / (b - a)}')
    other=$(awk -v all=$((b1 - b0)) -v srv=$((c1 - c0)) -v l="${lg:-0}" -v hz="$HZ" -v a="$t0" -v b="$t1" \
        'BEGIN {o = 100 * all / hz / (b - a) - 100 * srv / hz / (b - a) - l; if (o < 0) o = 0; printf "%.0f", o}')
    say "  $key: ${rate:-?}/s, server $cpu $unit each ($util% of core 0), p50/p99 $(field "$log" p50_us)/$(field "$log" p99_us) us, loadgen ${lg:-?}%, others $other%, errors $(field "$log" errors)$( [ "$(field "$log" errors)" = 0 ] || echo " ($(sed -n 's/^errors [0-9]*  first: //p' "$log"))")"
    if [ -z "${R_OTHER[$name.$key]:-}" ] || [ "$other" -lt "${R_OTHER[$name.$key]}" ]; then
        R_RATE[$name.$key]=${rate:--}
        R_LAT[$name.$key]="$(field "$log" p50_us)/$(field "$log" p99_us)"
        R_CPU[$name.$key]=$cpu
        R_UTIL[$name.$key]=$util
        R_LG[$name.$key]=${lg:-?}
        R_OTHER[$name.$key]=$other
        R_ERR[$name.$key]=$(field "$log" errors)
    fi
}

# ---- machine ----
say "== RPC and fan-out benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
say "machine: $NPROC cores, $(lscpu | sed -n 's/^Model name:[ ]*//p'), kernel $(uname -r), $(${CC:-cc} --version | head -1)"
say "server on core 0, loadgen on core 1; ${SECS} s per measurement after ${WARMUP} s warm-up"
RPC_SERVERS=
FAN_SERVERS=
for s in $SERVERS; do
    case $s in
    zocket) RPC_SERVERS="$RPC_SERVERS zocket zocket-schema"; FAN_SERVERS="$FAN_SERVERS zocket" ;;
    plain | bun) RPC_SERVERS="$RPC_SERVERS $s"; FAN_SERVERS="$FAN_SERVERS $s" ;;
    raw) FAN_SERVERS="$FAN_SERVERS raw" ;;
    *) say "unknown server $s"; exit 2 ;;
    esac
done
for s in $SERVERS; do
    if [ -n "${SKIP[$s]:-}" ]; then say "  $s: SKIPPED (${SKIP[$s]})"; else say "  $s: ${VERSION[$s]}"; fi
done

for round in $(seq 1 "$ROUNDS"); do
    [ "$ROUNDS" -gt 1 ] && say "== round $round of $ROUNDS"
    if [ "$DO_RPC" = 1 ]; then
        for s in $RPC_SERVERS; do
            [ -n "${SKIP[$s]:-}" ] && continue
            say "-- rpc: $s ($RPC_CONNS connections, 1 call in flight each)"
            start_server "$s" "$OUT/$s.rpc.server.log" || { SKIP[$s]="did not start"; continue; }
            measure "$s" rpc "$OUT/$s.rpc.round$round" --rpc --conns "$RPC_CONNS"
            stop_pid "$SERVER_PID"
        done
    fi
    if [ "$DO_FANOUT" = 1 ]; then
        for s in $FAN_SERVERS; do
            [ -n "${SKIP[$s]:-}" ] && continue
            say "-- fan-out: $s"
            start_server "$s" "$OUT/$s.fanout.server.log" || { SKIP[$s]="did not start"; continue; }
            for n in $SIZES; do
                measure "$s" "n$n" "$OUT/$s.fanout$n.round$round" --fanout --conns "$n"
                if ! kill -0 "$SERVER_PID" 2>/dev/null; then say "  $s died (see $OUT/$s.fanout.server.log)"; break; fi
            done
            stop_pid "$SERVER_PID"
        done
    fi
done

# ---- the caller, in process ----
if [ "$DO_CALLER" = 1 ] && [ -x build/bench_caller ]; then
    say "-- caller (build/bench_caller)"
    timeout 60 build/bench_caller >"$OUT/caller.log" 2>&1
    sed 's/^/  /' "$OUT/caller.log"
fi

# ---- the tables ----
{
    if [ "$DO_RPC" = 1 ]; then
        echo "| server | calls/s | rtt p50/p99 µs | server µs/call | server % of core 0 |"
        echo "|---|---|---|---|---|"
        for s in $RPC_SERVERS; do
            if [ -z "${R_RATE[$s.rpc]:-}" ]; then echo "| $s | SKIPPED: ${SKIP[$s]:-no result} | | | |"; continue; fi
            echo "| $s | ${R_RATE[$s.rpc]} | ${R_LAT[$s.rpc]} | ${R_CPU[$s.rpc]} | ${R_UTIL[$s.rpc]} |"
        done
        echo
    fi
    if [ "$DO_FANOUT" = 1 ]; then
        head="| server |"; sep="|---|"
        for n in $SIZES; do
            head="$head N=$n deliveries/s | N=$n server ns/delivery | N=$n round p50/p99 µs |"
            sep="$sep---|---|---|"
        done
        echo "$head"
        echo "$sep"
        for s in $FAN_SERVERS; do
            line="| $s |"
            for n in $SIZES; do
                if [ -z "${R_RATE[$s.n$n]:-}" ]; then line="$line SKIPPED: ${SKIP[$s]:-no result} | | |"; continue; fi
                line="$line ${R_RATE[$s.n$n]} | ${R_CPU[$s.n$n]} | ${R_LAT[$s.n$n]} |"
            done
            echo "$line"
        done
    fi
} >"$OUT/table.md"
say ""
say "== results (least disturbed of $ROUNDS round(s), ${SECS} s each)"
cat "$OUT/table.md"
say "server: % of core 0 it used; loadgen: % of core 1; others: CPU the rest of the machine used meanwhile (% of one core)"
for k in "${!R_RATE[@]}"; do
    say "  $k: server ${R_UTIL[$k]}%, loadgen ${R_LG[$k]}%, others ${R_OTHER[$k]}%, errors ${R_ERR[$k]:-?}"
done | sort
