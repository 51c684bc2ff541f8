#!/usr/bin/env bash
# Cross-node room fan-out through Redis and NATS (build/cluster_bench,
# bench/cluster_bench.c: its top comment gives the method).
#
#   bash bench/run_cluster.sh [--clients "10 100"] [--seconds S] [--latency-seconds S]
#                             [--senders K] [--window W] [--quiet-wait S] [--no-install]
#
# Starts redis-server (--save '' --appendonly no) and nats-server on free
# 127.0.0.1 ports, each pinned to core 1 (taskset, when there are 2 cores
# or more), and runs build/cluster_bench pinned to core 0 against both in
# one run, with "none" (node A alone, no broker) beside them. A broker that
# is not installed (and, without --no-install, cannot be: tools/deps.sh)
# is left out with the reason. Before the run it waits (at most
# --quiet-wait S, 10) for a second in which the machine is under 10% busy,
# and says so if none comes. Every process started here is killed on exit;
# waits are bounded. Prints the machine, the versions and the table; the
# table also lands in build/cluster_bench.d/table.md. About 35 s with the
# defaults (about 5 s per row, six rows).
set -u
cd "$(dirname "$0")/.." || exit 1

ARGS=()
INSTALL=1
QUIET_WAIT=10
while [ $# -gt 0 ]; do
    case "$1" in
    --clients|--seconds|--latency-seconds|--senders|--window)
        [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
        ARGS+=("$1" "$2"); shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --quiet-wait) [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
        QUIET_WAIT=$2; shift 2 ;;
    *) echo "usage: $0 [--clients \"10 100\"] [--seconds S] [--latency-seconds S] [--senders K] [--window W] [--quiet-wait S] [--no-install]" >&2
       exit 2 ;;
    esac
done

OUT=build/cluster_bench.d
mkdir -p "$OUT"
say() { printf '%s\n' "$*"; }

STARTED=()
stop_pid() { # TERM, at most 3 s, then KILL
    local pid=$1 i
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

PIN_BENCH="" PIN_BROKER=""
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    PIN_BENCH="taskset -c 0" PIN_BROKER="taskset -c 1"
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

make -s build/cluster_bench || { say "cannot build build/cluster_bench"; exit 1; }
if [ "$INSTALL" = 1 ] && [ -x tools/deps.sh ]; then tools/deps.sh redis nats 2>/dev/null; fi

# start_broker KIND: on a free port, at most 10 s to say it is ready. Sets
# BROKER_PORT and BROKER_PID; 1 if it did not start.
start_broker() {
    local kind=$1 log=$OUT/$1.log ready i
    BROKER_PORT=$(free_port) BROKER_PID=""
    : > "$log"
    if [ "$kind" = redis ]; then
        $PIN_BROKER redis-server --bind 127.0.0.1 --port "$BROKER_PORT" --save '' --appendonly no >"$log" 2>&1 &
        ready='Ready to accept connections'
    else
        $PIN_BROKER nats-server -a 127.0.0.1 -p "$BROKER_PORT" >"$log" 2>&1 &
        ready='Server is ready'
    fi
    BROKER_PID=$!
    STARTED+=("$BROKER_PID")
    for i in $(seq 1 100); do
        grep -q "$ready" "$log" && return 0
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    say "$kind-server did not start: $(tail -3 "$log" | tr '\n' ' ')"
    return 1
}

BENCH=(build/cluster_bench)
VERSIONS=""
for kind in redis nats; do
    if ! command -v "$kind-server" >/dev/null; then
        say "SKIPPED $kind: $kind-server not found (apt-get install $kind-server)"
        continue
    fi
    start_broker "$kind" || { say "SKIPPED $kind: did not start"; continue; }
    BENCH+=("--$kind" "$kind://127.0.0.1:$BROKER_PORT" "--$kind-pid" "$BROKER_PID")
    VERSIONS="$VERSIONS${VERSIONS:+, }$kind-server $("$kind-server" --version 2>&1 | grep -oE 'v=?[0-9]+\.[0-9.]+' | head -1 | tr -d 'v=')"
done

say "machine: nproc $(nproc); $(lscpu | grep 'Model name' | sed 's/  */ /g'); kernel $(uname -r)"
say "compiler: $(${CC:-cc} --version | head -1); flags of the Makefile's bench programs (-O2 -march=native)"
say "zocket.h of commit $(git log -1 --format=%h -- zocket.h 2>/dev/null || echo '?')$(git diff --quiet -- zocket.h 2>/dev/null || echo ', modified')"
say "brokers: ${VERSIONS:-none}; pinned: bench ${PIN_BENCH:-no}, brokers ${PIN_BROKER:-no}"
say ""
busy_ticks() { # machine-wide non-idle clock ticks
    local cpu user nice sys idle iowait irq softirq steal rest
    read -r cpu user nice sys idle iowait irq softirq steal rest </proc/stat
    echo $((user + nice + sys + irq + softirq + steal))
}
quiet_end=$((SECONDS + QUIET_WAIT)) quiet=0
while [ $SECONDS -lt $quiet_end ]; do
    b0=$(busy_ticks); sleep 1; b1=$(busy_ticks)
    if [ $((b1 - b0)) -le $(($(getconf CLK_TCK) * $(nproc) / 10)) ]; then quiet=1; break; fi
done
[ $quiet = 1 ] || say "(the machine is busy with other work: measuring anyway)"
# the bench exits 1 when a check failed: the table is printed either way
timeout -k 5 600 $PIN_BENCH "${BENCH[@]}" "${ARGS[@]}" 2>"$OUT/bench.err" | tee "$OUT/table.md"
rc=${PIPESTATUS[0]}
[ -s "$OUT/bench.err" ] && sed 's/^/  stderr: /' "$OUT/bench.err"
say ""
say "table: $OUT/table.md"
exit "$rc"
