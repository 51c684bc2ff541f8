#!/usr/bin/env bash
# Soak: thousands of zk_clients chatting through the chat example for
# minutes, over real 127.0.0.1 sockets (build/soak, bench/soak.c: its top
# comment gives the method and what must hold).
#
#   bash bench/run_soak.sh [--seconds S] [--clients N] [--rooms R]
#                          [--interval-ms MS] [--churn PCT] [--text-bytes B]
#                          [--sample-s S] [--seed X] [--quiet-wait S]
# (every option but --quiet-wait goes to build/soak as it is; defaults
# there: 5000 clients in 50 rooms, 180 s, a message per client every 2 s on
# average, 1% of the clients replaced a minute)
#
# Before starting it waits (at most --quiet-wait S, 60) for 2 s in which
# the machine's CPU time outside niced processes is under 20% (background
# jobs at nice 19 are not counted), and says so if none comes; it also
# prints that CPU time over the run. The soak's latency and the server's
# peak memory depend on how much CPU the two processes get.
#
# Builds build/chat and build/soak, raises the soft limit on open files to
# the hard one (the server and the soak each hold one socket per client),
# starts build/chat --port 0 (any free port; in a session of its own, see
# below) and waits at most 10 s for its
# "chat: open http://..." line, runs build/soak against it with
# --server-pid (so the soak reads the server's VmRSS, descriptors and CPU
# from /proc), then stops the server with SIGTERM (graceful: it must exit 0
# within 5 s) and prints the soak's figures. Exit status: the soak's, or 1
# when the server did not start, died during the run or did not stop
# cleanly. Every process started here is killed on exit; waits are
# bounded (the soak: S + 300 s). Logs: build/soak.d/.
set -u
cd "$(dirname "$0")/.." || exit 1

ARGS=()
SECS=180
QUIET_WAIT=60
while [ $# -gt 0 ]; do
    case "$1" in
    --quiet-wait)
        [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
        QUIET_WAIT=$2; shift 2 ;;
    --seconds | --clients | --rooms | --interval-ms | --churn | --text-bytes | --sample-s | --seed)
        [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
        [ "$1" = --seconds ] && SECS=$2
        ARGS+=("$1" "$2"); shift 2 ;;
    *) echo "usage: $0 [--seconds S] [--clients N] [--rooms R] [--interval-ms MS] [--churn PCT] [--text-bytes B] [--sample-s S] [--seed X] [--quiet-wait S]" >&2
       exit 2 ;;
    esac
done
case $SECS in '' | *[!0-9]*) echo "--seconds: a whole number of seconds" >&2; exit 2 ;; esac
case $QUIET_WAIT in '' | *[!0-9]*) echo "--quiet-wait: a whole number of seconds" >&2; exit 2 ;; esac

OUT=build/soak.d
mkdir -p "$OUT"
say() { printf '%s\n' "$*"; }

SERVER_PID= SERVER_JOB=
stop_server() { # TERM, at most 5 s, then KILL; returns 0 when it exited 0 on TERM
    local pid=$SERVER_PID i rc
    SERVER_PID=
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$SERVER_JOB" 2>/dev/null
        return 1
    fi
    wait "$SERVER_JOB"
    rc=$?
    return $rc
}
trap 'stop_server' EXIT
trap 'exit 130' INT TERM

make -s build/chat build/soak || { say "cannot build build/chat and build/soak"; exit 1; }

# one socket per client on each side, and the closing ones of the churn
HARD=$(ulimit -Hn)
if [ "$HARD" = unlimited ]; then ulimit -n 1048576 2>/dev/null || ulimit -n 65536 2>/dev/null; else ulimit -n "$HARD" 2>/dev/null; fi
HZ=$(getconf CLK_TCK)
NPROC=$(nproc)
busy_ticks() { # machine-wide CPU ticks outside niced processes
    local cpu user nice sys idle iowait irq softirq steal rest
    read -r cpu user nice sys idle iowait irq softirq steal rest </proc/stat
    echo $((user + sys + irq + softirq + steal))
}
QUIET="not waited for"
if [ "$QUIET_WAIT" -gt 0 ]; then
    END=$((SECONDS + QUIET_WAIT))
    QUIET="busy: measuring anyway"
    while :; do
        B0=$(busy_ticks); sleep 2; B1=$(busy_ticks)
        if [ $((B1 - B0)) -le $((HZ * 2 * NPROC / 5)) ]; then QUIET="quiet"; break; fi
        [ $SECONDS -ge $END ] && break
    done
fi
say "== soak $(date -u +%Y-%m-%dT%H:%MZ)"
say "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name:[ ]*//p'), kernel $(uname -r), $(${CC:-cc} --version | head -1)"
say "zocket.h of commit $(git log -1 --format=%h -- zocket.h 2>/dev/null || echo '?')$(git diff --quiet -- zocket.h 2>/dev/null || echo ', modified'); open files: ulimit -n $(ulimit -n)"
say "machine before the run: $QUIET (CPU outside niced processes under 20% for 2 s, waited at most $QUIET_WAIT s); load average $(cut -d' ' -f1-3 /proc/loadavg)"

# The server runs in a session of its own (setsid), as a daemon would. With
# the kernel's autogroups (kernel.sched_autogroup_enabled=1) CPU time is
# shared between sessions first and by nice only within one: in the
# soak's session, the server would split one share with the soak.
LOG=$OUT/chat.log
SETSID=
command -v setsid >/dev/null && SETSID="setsid -w" # -w: its status is the server's
# (setsid forks when it is a process group leader: the server says its
# own pid, through the shell it replaces)
rm -f "$OUT/chat.pid"
$SETSID sh -c 'echo $$ > "$1"; exec build/chat --port 0' sh "$OUT/chat.pid" >"$LOG" 2>&1 &
SERVER_JOB=$!
SERVER_PID=
PORT=
for i in $(seq 1 100); do
    [ -z "$SERVER_PID" ] && SERVER_PID=$(cat "$OUT/chat.pid" 2>/dev/null)
    PORT=$(sed -n 's|^chat: open http://127\.0\.0\.1:\([0-9]*\)/$|\1|p' "$LOG")
    [ -n "$PORT" ] && [ -n "$SERVER_PID" ] && break
    [ -n "$SERVER_PID" ] && ! kill -0 "$SERVER_PID" 2>/dev/null && break
    sleep 0.1
done
if [ -z "$PORT" ]; then
    say "build/chat did not start: $(tail -3 "$LOG" | tr '\n' ' ')"
    exit 1
fi
if [ "$(cat "/proc/$SERVER_PID/comm" 2>/dev/null)" != chat ]; then # setsid forked: not what we can watch
    say "build/chat is not pid $SERVER_PID: cannot watch it"
    exit 1
fi
say "server: build/chat on port $PORT, pid $SERVER_PID${SETSID:+, in a session of its own}"

B0=$(busy_ticks); T0=$SECONDS
timeout $((SECS + 300)) build/soak --url "ws://127.0.0.1:$PORT/ws" --server-pid "$SERVER_PID" "${ARGS[@]}" 2>&1 |
    tee "$OUT/soak.log"
RC=${PIPESTATUS[0]}
B1=$(busy_ticks); T1=$SECONDS
[ "$T1" -gt "$T0" ] && say "machine CPU outside niced processes during the soak: $(awk -v b=$((B1 - B0)) -v hz="$HZ" -v t=$((T1 - T0)) 'BEGIN {printf "%.0f", 100 * b / hz / t}')% of one core over $((T1 - T0)) s (the soak and the server included; $NPROC cores)"
[ "$RC" = 124 ] && say "FAIL: build/soak did not finish within $((SECS + 300)) s"

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    say "FAIL: the server died during the run (see $LOG)"
    wait "$SERVER_JOB" 2>/dev/null
    SERVER_PID=
    RC=1
elif ! stop_server; then
    say "FAIL: the server did not exit cleanly on SIGTERM (see $LOG)"
    RC=1
else
    say "server: stopped on SIGTERM, exit status 0"
fi
if grep -v '^chat: open ' "$LOG" | grep -q .; then
    say "server said:"
    grep -v '^chat: open ' "$LOG" | head -20 | sed 's/^/  /'
fi
say "log: $OUT/soak.log"
exit "$RC"
