#!/usr/bin/env bash
# Interop tests: zocket.h against independent implementations, on 127.0.0.1.
#   1. build/echo with Python websockets and Node ws as clients
#   2. the zocket client (build/interop_client) against Python websockets and
#      Node ws echo servers
#   3. malformed frames sent to build/echo with Autobahn|Python
#   4. examples/gameloop with a Python websockets client
#   5. examples/chat: its protocol with Python websockets, run once per
#      codec (JSON, then MessagePack with Debian's python3-msgpack, and JSON
#      and MessagePack clients in one room), its page in headless Chromium
#      driven by playwright-core (JSON, MessagePack and mixed), and the
#      page's zocket.js under Node (its MessagePack codec against the spec's
#      byte vectors, its codec option)
#   6. zk_client through a killed and restarted build/chat: reconnect,
#      rejoin, offline queue, delivery (build/restart_test)
#   7. 1000 zk_clients through a graceful restart and a kill of build/chat:
#      is the reconnect spread over time (build/herd_test)
#   8. examples/zkcat (the command-line client) against build/chat, with
#      JSON and with --msgpack (and a python3-msgpack client in the room)
#   9. examples/zkcat (zk_client) against an independent Zocket server on
#      Python websockets (tests/interop/py_zocket_server.py), with JSON and
#      with --msgpack against python3-msgpack
#  10. chat across nodes: two build/chat sharing a Redis, then a NATS server
#      (redis-server and nats-server started here), as one chat, with the
#      broker unreachable when the first starts, and through a SIGKILL and
#      restart of the broker (tests/interop/chat_nodes_test.py)
#  11. slow and silent peers against a zk_app: 1000 slow handshakes, 1000
#      non-readers and 1000 slow messages, each closed at its deadline, and
#      a normal client's round trip with and without them
#      (build/slowloris)
# Expects build/echo, build/interop_client, build/gameloop, build/chat,
# build/restart_test, build/herd_test, build/zkcat and build/slowloris
# (tests/run.sh makes them).
# Installs missing peers (apt as root: python3-websockets, python3-msgpack,
# chromium, ...;
# npm ci into tests/interop/node/: ws, playwright-core; tools/deps.sh redis
# nats for redis-server and nats-server).
# A peer that cannot be had is skipped (SKIP name: reason), a failure under
# CI=true. Ends with "N passed, N failed[, N skipped]".
set -u
cd "$(dirname "$0")/../.."
HERE=tests/interop
BUILD=build
PY=/usr/bin/python3          # Debian's interpreter: it sees the apt packages
STEP=${INTEROP_STEP_TIMEOUT:-60}   # seconds any one client run may take
READY=15                     # seconds a server may take to say "listening"
passed=0 failed=0 skipped=0

pass() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"; }
skip() {
    if [ "${CI:-}" = true ]; then fail "$1 (missing dependency under CI: $2)"
    else skipped=$((skipped + 1)); printf 'SKIP  %s: %s\n' "$1" "$2"; fi
}

tmp=$(mktemp -d)
pids=""
cleanup() {
    local p
    for p in $pids; do kill -TERM "$p" 2>/dev/null; done
    for p in $pids; do stop_pid "$p"; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_pid PID: SIGTERM, up to 5 s for it to exit, then SIGKILL. Sets
# stop_status to its exit status, or "killed" when it had to be killed, and
# forgets the pid (so cleanup never signals a reused one).
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        stop_status=killed
    else
        wait "$pid" 2>/dev/null
        stop_status=$?
    fi
    pids=$(printf '%s\n' $pids | grep -vx "$pid" | tr '\n' ' ')
}

# A port nothing listens on now: bind port 0, read it, let it go.
free_port() {
    if [ -x $PY ]; then
        $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    else
        node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
    fi
}

# start_server NAME CMD... : starts CMD --port P on a free port (three tries)
# and waits, at most $READY s, for its "listening on ws://..." line (or
# build/chat's "chat: open http://..."). Sets server_pid and server_url (the
# line's URL); returns 1 (with the reason in server_error) if it never got
# ready.
start_server() {
    local name=$1 attempt port deadline line
    shift
    server_pid="" server_url="" server_error=""
    for attempt in 1 2 3; do
        port=$(free_port) || { server_error="no free port"; return 1; }
        : > "$tmp/$name.out"
        "$@" --port "$port" > "$tmp/$name.out" 2> "$tmp/$name.err" &
        server_pid=$!
        pids="$pids $server_pid"
        deadline=$((SECONDS + READY))
        while [ $SECONDS -le $deadline ]; do
            line=$(grep -m1 -E '^(listening on ws|chat: open http)://' "$tmp/$name.out")
            if [ -n "$line" ]; then
                server_url=${line##* }
                return 0
            fi
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.05
        done
        server_error="not ready within ${READY} s: $(tail -3 "$tmp/$name.err" | tr '\n' ' ')"
        stop_pid "$server_pid"
    done
    return 1
}

# run_checks GROUP CMD... : runs a client under timeout; each of its "ok X" /
# "FAIL X: why" lines is one counted test "GROUP: X". A crash, a timeout or
# a non-zero exit without a FAIL line is one more failure.
run_checks() {
    local group=$1 rc out line nfail=0 nok=0
    shift
    out="$tmp/run.out"
    # in the background, so a signal to this script is handled at once
    timeout -k 5 "$STEP" "$@" > "$out" 2> "$tmp/run.err" &
    local pid=$!
    pids="$pids $pid"
    wait "$pid"
    rc=$?
    pids=$(printf '%s\n' $pids | grep -vx "$pid" | tr '\n' ' ')
    while IFS= read -r line; do
        case $line in
            "ok "*) pass "$group: ${line#ok }"; nok=$((nok + 1)) ;;
            "FAIL "*) fail "$group: ${line#FAIL }"; nfail=$((nfail + 1)) ;;
        esac
    done < "$out"
    if [ $rc = 124 ] || [ $rc = 137 ]; then
        fail "$group: timed out after ${STEP} s"
    elif [ $rc != 0 ] && [ $nfail = 0 ]; then
        fail "$group: exit status $rc after $nok checks"
    fi
    if [ $rc != 0 ]; then sed 's/^/      /' "$tmp/run.err" | tail -30; fi
}

# ---- dependencies --------------------------------------------------------

apt_updated=0
apt_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
    if [ $apt_updated = 0 ]; then
        timeout 300 apt-get update -qq >"$tmp/apt.log" 2>&1 || return 1
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "$@" >>"$tmp/apt.log" 2>&1
}

have_websockets() { $PY -c 'import websockets' 2>/dev/null; }
have_autobahn() { $PY -c 'import autobahn.twisted.websocket, twisted' 2>/dev/null; }
have_msgpack() { $PY -c 'import msgpack' 2>/dev/null; }
if [ -x $PY ] && { ! have_websockets || ! have_autobahn || ! have_msgpack; }; then
    apt_install python3-websockets python3-autobahn python3-twisted python3-msgpack
elif [ ! -x $PY ]; then
    apt_install python3 python3-websockets python3-autobahn python3-twisted python3-msgpack
fi
py_ok=1 ab_ok=1 mp_ok=1
why_py="" why_ab="" why_mp=""
if [ ! -x $PY ]; then
    py_ok=0 ab_ok=0 mp_ok=0 why_py="$PY not found" why_ab="$PY not found" why_mp="$PY not found"
else
    have_websockets || { py_ok=0; why_py="python3-websockets not importable by $PY (apt-get install python3-websockets)"; }
    have_autobahn || { ab_ok=0; why_ab="python3-autobahn/python3-twisted not importable by $PY"; }
    # the MessagePack peer: Debian's python3-msgpack, with python3-websockets
    if ! have_msgpack; then mp_ok=0; why_mp="python3-msgpack not importable by $PY (tools/deps.sh msgpack)"
    elif [ $py_ok = 0 ]; then mp_ok=0; why_mp=$why_py; fi
fi

command -v node >/dev/null || apt_install nodejs npm
node_ok=1 why_node=""
if ! command -v node >/dev/null; then
    node_ok=0 why_node="node not found"
elif ! (cd $HERE/node && timeout 60 npm ls --silent >/dev/null 2>&1); then
    # node_modules missing or not what package-lock.json pins
    if ! command -v npm >/dev/null; then
        node_ok=0 why_node="npm not found"
    elif ! (cd $HERE/node && timeout 300 npm ci --no-audit --no-fund --silent >"$tmp/npm.log" 2>&1); then
        node_ok=0 why_node="npm ci in $HERE/node failed: $(tail -3 "$tmp/npm.log" | tr '\n' ' ')"
    fi
fi

# Chromium for the chat page (Debian's, at /usr/bin/chromium unless CHROMIUM
# says otherwise; playwright-core drives it and downloads no browser of its own)
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || apt_install chromium
browser_ok=1 why_browser=""
if [ ! -x "$CHROMIUM" ]; then
    browser_ok=0 why_browser="$CHROMIUM not found (apt-get install chromium)"
elif [ $node_ok = 0 ]; then
    browser_ok=0 why_browser="playwright-core: $why_node"
elif ! node -e "require('./$HERE/node/node_modules/playwright-core')" 2>/dev/null; then
    browser_ok=0 why_browser="playwright-core not loadable from $HERE/node/node_modules"
fi

versions="peers:"
[ $py_ok = 1 ] && versions="$versions websockets $($PY -c 'import websockets; print(websockets.__version__)')"
[ $mp_ok = 1 ] && versions="$versions, msgpack $($PY -c 'import msgpack; print(".".join(map(str, msgpack.version)))')"
[ $ab_ok = 1 ] && versions="$versions, autobahn $($PY -c 'import autobahn; print(autobahn.__version__)')"
[ $node_ok = 1 ] && versions="$versions, node $(node --version), ws $(node -p "require('./$HERE/node/node_modules/ws/package.json').version")"
[ $browser_ok = 1 ] && versions="$versions, $("$CHROMIUM" --version 2>/dev/null | grep -o 'Chromium [0-9.]*'), playwright-core $(node -p "require('./$HERE/node/node_modules/playwright-core/package.json').version")"
echo "$versions"

bins_ok=1
for b in $BUILD/echo $BUILD/interop_client; do
    if [ ! -x "$b" ]; then fail "$b is missing (make $b)"; bins_ok=0; fi
done

# ---- 1 and 3: build/echo against independent clients ---------------------

# echo_group NAME SIGTERM CLIENT...: a fresh echo for the client (its URL is
# the client's first argument). With SIGTERM=yes a second echo too, which
# the client stops with SIGTERM (it must see 1001) and which must then exit
# 0. The first echo must have survived the run and exit 0 on SIGTERM.
echo_group() {
    local name=$1 sigterm=$2 url main_pid status
    shift 2
    if ! start_server echo $BUILD/echo --host 127.0.0.1; then
        fail "$name: build/echo did not start: $server_error"; return
    fi
    main_pid=$server_pid url=$server_url
    if [ "$sigterm" = yes ]; then
        if ! start_server echo2 $BUILD/echo --host 127.0.0.1; then
            fail "$name: second build/echo did not start: $server_error"; return
        fi
        run_checks "$name" "$@" "$url" --sigterm-url "$server_url" --sigterm-pid "$server_pid"
        stop_pid "$server_pid"; status=$stop_status
        if [ "$status" = 0 ]; then pass "$name: echo exits 0 after SIGTERM with a client connected"
        else fail "$name: echo exit status after SIGTERM with a client connected: $status"; fi
    else
        run_checks "$name" "$@" "$url"
    fi
    if kill -0 "$main_pid" 2>/dev/null; then
        stop_pid "$main_pid"; status=$stop_status
        if [ "$status" = 0 ]; then pass "$name: echo still up after the run, exits 0 on SIGTERM"
        else fail "$name: echo exit status on SIGTERM: $status"; fi
    else
        stop_pid "$main_pid"
        fail "$name: echo died during the run (exit status $stop_status)"
        sed 's/^/      /' "$tmp/echo.err" | tail -20
    fi
}

if [ $bins_ok = 1 ]; then
    if [ $py_ok = 1 ]; then echo_group "echo <- Python websockets" yes $PY $HERE/py_client.py
    else skip "echo <- Python websockets" "$why_py"; fi
    if [ $node_ok = 1 ]; then echo_group "echo <- Node ws" yes node $HERE/node_client.js
    else skip "echo <- Node ws" "$why_node"; fi
    if [ $ab_ok = 1 ]; then echo_group "echo <- Autobahn bad frames" no $PY $HERE/bad_frames.py
    else skip "echo <- Autobahn bad frames" "$why_ab"; fi
fi

# ---- 2: the zocket client against independent servers --------------------

client_group() {
    local name=$1 pid status
    shift
    if ! start_server peer "$@"; then
        fail "$name: the peer server did not start: $server_error"; return
    fi
    pid=$server_pid
    run_checks "$name" $BUILD/interop_client "$server_url"
    stop_pid "$pid"; status=$stop_status
    [ "$status" = 0 ] || { echo "      (peer server exit status: $status)"; tail -5 "$tmp/peer.err"; }
}

if [ $bins_ok = 1 ]; then
    if [ $py_ok = 1 ]; then client_group "zocket client -> Python websockets" $PY $HERE/py_server.py
    else skip "zocket client -> Python websockets" "$why_py"; fi
    if [ $node_ok = 1 ]; then client_group "zocket client -> Node ws" node $HERE/node_server.js
    else skip "zocket client -> Node ws" "$why_node"; fi
fi

# ---- 4: examples/gameloop with a Python websockets client -----------------

if [ -x $BUILD/gameloop ] && [ $py_ok = 1 ]; then
    if start_server gameloop $BUILD/gameloop; then
        run_checks "gameloop <- Python websockets" $PY $HERE/gameloop_client.py "$server_url"
        stop_pid "$server_pid"
    else
        fail "gameloop: did not start: $server_error"
    fi
elif [ $py_ok = 1 ]; then
    fail "$BUILD/gameloop is missing (make $BUILD/gameloop)"
else
    skip "gameloop <- Python websockets" "$why_py"
fi

# ---- 5: examples/chat with Python websockets and headless Chromium --------

# One build/chat for all the clients, under valgrind memcheck when there is
# one (tests/run.sh installs it): it must survive them and exit 0 on
# SIGTERM, which it does not with a memory error or a leak.
# The Python client (tests/interop/chat_test.py) runs twice, every check in
# each codec: JSON, then MessagePack (--codec msgpack, with python3-msgpack;
# that run adds its MessagePack checks and the mixed room of JSON and
# MessagePack clients). Each run also stops a second build/chat of its own
# with SIGTERM while it is connected (it must see 1001); that one must then
# exit 0 too.
chat_vg=""
if command -v valgrind >/dev/null 2>&1; then
    chat_vg="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect"
elif [ "${CI:-}" = true ]; then
    fail "chat under valgrind (missing dependency under CI: valgrind)"
fi

# chat_python CODEC GROUP CLIENTS: chat_test.py --codec CODEC against the
# shared build/chat ($chat_url), and against a second one of its own that it
# stops with SIGTERM; CLIENTS names those clients in the lines about it.
chat_python() {
    local codec=$1 group=$2 clients=$3 i
    if ! start_server chat2 $BUILD/chat --host 127.0.0.1; then
        fail "$group: the second build/chat did not start: $server_error"; return
    fi
    run_checks "$group" $PY $HERE/chat_test.py "$chat_url" --codec "$codec" \
        --sigterm-url "$server_url" --sigterm-pid "$server_pid"
    # it had its SIGTERM from the client: up to 5 s to exit by itself
    for i in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$server_pid" 2>/dev/null; then
        stop_pid "$server_pid"
        fail "chat: still running 5 s after SIGTERM with $clients connected"
    else
        stop_pid "$server_pid"
        if [ "$stop_status" = 0 ]; then pass "chat: exits 0 after SIGTERM with $clients connected"
        else fail "chat: exit status after SIGTERM with $clients connected: $stop_status"
             sed 's/^/      /' "$tmp/chat2.err" | tail -20; fi
    fi
}

if [ ! -x $BUILD/chat ]; then
    fail "$BUILD/chat is missing (make $BUILD/chat)"
elif start_server chat $chat_vg $BUILD/chat --host 127.0.0.1; then
    chat_pid=$server_pid chat_url=$server_url
    if [ $py_ok = 1 ]; then
        chat_python json "chat <- Python websockets" clients
    else
        skip "chat <- Python websockets" "$why_py"
    fi
    if [ $mp_ok = 1 ]; then
        chat_python msgpack "chat <- Python websockets, MessagePack" "MessagePack clients"
    else
        skip "chat <- Python websockets, MessagePack" "$why_mp"
    fi
    if [ $browser_ok = 1 ]; then
        run_checks "chat <- Chromium" node $HERE/chat_browser.js "$chat_url"
    else skip "chat <- Chromium" "$why_browser"; fi
    if kill -0 "$chat_pid" 2>/dev/null; then
        stop_pid "$chat_pid"
        if [ "$stop_status" = 0 ]; then pass "chat: still up after the runs, exits 0 on SIGTERM"
        else fail "chat: exit status on SIGTERM: $stop_status"; sed 's/^/      /' "$tmp/chat.err" | tail -20; fi
    else
        stop_pid "$chat_pid"
        fail "chat: died during the runs (exit status $stop_status)"
        sed 's/^/      /' "$tmp/chat.err" | tail -20
    fi
else
    fail "chat: did not start: $server_error"
fi

# The page's zocket.js under Node, without a browser, a server or an npm
# package: its MessagePack encoder and decoder against byte vectors from the
# spec, and its codec option over a fake WebSocket (zocket_js_test.js).
if command -v node >/dev/null; then
    run_checks "zocket.js <- Node" node $HERE/zocket_js_test.js
else
    skip "zocket.js <- Node" "node not found"
fi

# The page across a restart and a stopped server (chat_browser_restart.js),
# with a build/chat of its own (under valgrind too). The script asks on its
# stdout and is answered on its stdin: "do restart" (SIGTERM, after which the
# server must exit 0, then build/chat again on the same port), "do stop"
# (SIGSTOP), "do cont" (SIGCONT); "# ..." lines are measurements.
# chat_on_port PORT: build/chat on PORT; sets rs_pid; 1 if it did not say
# "chat: open" within $READY s.
chat_on_port() {
    local deadline=$((SECONDS + READY))
    : > "$tmp/chat3.out"
    $chat_vg $BUILD/chat --host 127.0.0.1 --port "$1" > "$tmp/chat3.out" 2> "$tmp/chat3.err" \
        {rs_out}<&- {rs_in}>&- &
    rs_pid=$!
    pids="$pids $rs_pid"
    while [ $SECONDS -le $deadline ]; do
        grep -q '^chat: open http://' "$tmp/chat3.out" && return 0
        kill -0 "$rs_pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
rs_group="chat <- Chromium, restart and heartbeat"
if [ ! -x $BUILD/chat ]; then
    :   # reported above
elif [ $browser_ok = 0 ]; then
    skip "$rs_group" "$why_browser"
elif ! start_server chat3 $chat_vg $BUILD/chat --host 127.0.0.1; then
    fail "$rs_group: build/chat did not start: $server_error"
else
    rs_pid=$server_pid rs_port=${server_url#http://*:}
    rs_port=${rs_port%%/*}
    coproc RS { timeout -k 5 "$STEP" node $HERE/chat_browser_restart.js "$server_url" 2> "$tmp/rs.err"; }
    rs_node=$RS_PID
    exec {rs_out}<&"${RS[0]}" {rs_in}>&"${RS[1]}"
    pids="$pids $rs_node"
    rs_nfail=0 rs_nok=0
    # (the answers are written by a subshell: a SIGPIPE if the script is gone
    # must not end this one)
    while IFS= read -r -t $((STEP + 10)) -u "$rs_out" line; do
        case $line in
            "ok "*) pass "$rs_group: ${line#ok }"; rs_nok=$((rs_nok + 1)) ;;
            "FAIL "*) fail "$rs_group: ${line#FAIL }"; rs_nfail=$((rs_nfail + 1)) ;;
            "# "*) printf '      %s\n' "${line#\# }" ;;
            "do restart")
                stop_pid "$rs_pid"
                if [ "$stop_status" = 0 ]; then pass "chat: exits 0 after SIGTERM with a page connected"
                else fail "chat: exit status after SIGTERM with a page connected: $stop_status"
                     sed 's/^/      /' "$tmp/chat3.err" | tail -20; fi
                if chat_on_port "$rs_port"; then (echo "done restart" >&"$rs_in") 2>/dev/null
                else (echo "fail restart: not listening again on $rs_port: $(tail -3 "$tmp/chat3.err" | tr '\n' ' ')" >&"$rs_in") 2>/dev/null; fi ;;
            "do stop"|"do cont")
                if kill -"$(echo "${line#do }" | tr a-z A-Z)" "$rs_pid"; then (echo "done ${line#do }" >&"$rs_in") 2>/dev/null
                else (echo "fail ${line#do }: no build/chat" >&"$rs_in") 2>/dev/null; fi ;;
        esac
    done
    kill -CONT "$rs_pid" 2>/dev/null
    exec {rs_out}<&- {rs_in}>&-
    wait "$rs_node"
    rc=$?
    pids=$(printf '%s\n' $pids | grep -vx "$rs_node" | tr '\n' ' ')
    if [ $rc = 124 ] || [ $rc = 137 ]; then fail "$rs_group: timed out after ${STEP} s"
    elif [ $rc != 0 ] && [ $rs_nfail = 0 ]; then fail "$rs_group: exit status $rc after $rs_nok checks"; fi
    if [ $rc != 0 ]; then sed 's/^/      /' "$tmp/rs.err" | tail -30; fi
    if kill -0 "$rs_pid" 2>/dev/null; then
        stop_pid "$rs_pid"
        if [ "$stop_status" = 0 ]; then pass "chat: restarted, stopped and continued, still up, exits 0 on SIGTERM"
        else fail "chat (restarted): exit status on SIGTERM: $stop_status"; sed 's/^/      /' "$tmp/chat3.err" | tail -20; fi
    else
        stop_pid "$rs_pid"
        fail "chat (restarted): died during the run (exit status $stop_status)"
        sed 's/^/      /' "$tmp/chat3.err" | tail -20
    fi
fi

# ---- 6 and 7: zk_client through server restarts ---------------------------

# restart_on NAME PORT CMD...: starts CMD --port PORT again (the port a
# server just left) and waits, at most $READY s, for its ready line. Sets
# server_pid; returns 1 (reason in server_error) if it never got ready.
restart_on() {
    local name=$1 port=$2 deadline
    shift 2
    server_pid="" server_error=""
    : > "$tmp/$name.out"
    "$@" --port "$port" > "$tmp/$name.out" 2> "$tmp/$name.err" &
    server_pid=$!
    pids="$pids $server_pid"
    deadline=$((SECONDS + READY))
    while [ $SECONDS -le $deadline ]; do
        grep -qm1 -E '^(listening on ws|chat: open http)://' "$tmp/$name.out" && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    server_error="not ready on port $port within ${READY} s: $(tail -3 "$tmp/$name.err" | tr '\n' ' ')"
    stop_pid "$server_pid"
    server_pid=""
    return 1
}

# wait_line FILE REGEX PID SECONDS: until a line of FILE matches, PID has
# exited, or SECONDS passed; 0 only for a match.
wait_line() {
    local deadline=$((SECONDS + $4))
    while [ $SECONDS -le $deadline ]; do
        grep -qm1 -E "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || { grep -qm1 -E "$2" "$1" 2>/dev/null; return; }
        sleep 0.05
    done
    return 1
}

# start_prog NAME SECONDS CMD...: CMD in the background under timeout,
# output in $tmp/NAME.out; sets prog_pid.
start_prog() {
    local name=$1 limit=$2
    shift 2
    timeout -k 5 "$limit" "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" &
    prog_pid=$!
    pids="$pids $prog_pid"
}

# end_prog GROUP NAME: waits for the program started by start_prog and
# counts its "ok X" / "FAIL X: why" lines as in run_checks; "# ..." lines
# (measurements) are shown.
end_prog() {
    local group=$1 name=$2 rc line nfail=0 nok=0
    wait "$prog_pid"
    rc=$?
    pids=$(printf '%s\n' $pids | grep -vx "$prog_pid" | tr '\n' ' ')
    while IFS= read -r line; do
        case $line in
            "ok "*) pass "$group: ${line#ok }"; nok=$((nok + 1)) ;;
            "FAIL "*) fail "$group: ${line#FAIL }"; nfail=$((nfail + 1)) ;;
            "#"*) printf '      %s\n' "${line#\# }" ;;
        esac
    done < "$tmp/$name.out"
    if [ $rc = 124 ] || [ $rc = 137 ]; then
        fail "$group: timed out"
    elif [ $rc != 0 ] && [ $nfail = 0 ]; then
        fail "$group: exit status $rc after $nok checks"
    fi
    if [ $rc != 0 ]; then sed 's/^/      /' "$tmp/$name.err" | tail -30; fi
}

# kill_pid PID: SIGKILL, and wait for it at once (so bash reports no
# "Killed" job); forgets the pid.
kill_pid() {
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    pids=$(printf '%s\n' $pids | grep -vx "$1" | tr '\n' ' ')
}

# listen_overflows: the system's count of connections dropped because a
# listen queue was full (TcpExt ListenOverflows), or "?"
listen_overflows() {
    awk '/^TcpExt:/ { if (!seen) { for (i = 1; i <= NF; i++) name[i] = $i; seen = 1 }
                      else for (i = 1; i <= NF; i++) if (name[i] == "ListenOverflows") print $i }' \
        /proc/net/netstat 2>/dev/null | grep . || echo "?"
}

# chat_port: the port of the last start_server's URL (http://H:P/)
chat_port() { local p=${server_url##*:}; echo "${p%/}"; }

# 6. K clients keep calling chat.send while the server is killed (SIGKILL)
#    and started again on the same port; build/restart_test says what must
#    hold (reconnect, rejoin, queued calls answered ok, delivery exactly once
#    and in order) and checks it.
group="restart: zk_client through a killed build/chat"
if [ ! -x $BUILD/restart_test ] || [ ! -x $BUILD/chat ]; then
    fail "$group: $BUILD/restart_test or $BUILD/chat is missing (make $BUILD/restart_test $BUILD/chat)"
elif ! start_server restart $BUILD/chat --host 127.0.0.1; then
    fail "$group: build/chat did not start: $server_error"
else
    port=$(chat_port)
    start_prog restart_test "$STEP" $BUILD/restart_test "ws://127.0.0.1:$port/ws"
    if wait_line "$tmp/restart_test.out" '^ready$' "$prog_pid" 30; then
        kill_pid "$server_pid"
        restart_on restart "$port" $BUILD/chat --host 127.0.0.1 ||
            fail "$group: build/chat did not start again: $server_error"
    fi
    end_prog "$group" restart_test
    if [ -n "$server_pid" ]; then
        if kill -0 "$server_pid" 2>/dev/null; then
            stop_pid "$server_pid"
            if [ "$stop_status" = 0 ]; then pass "$group: the restarted chat is still up, exits 0 on SIGTERM"
            else fail "$group: the restarted chat's exit status on SIGTERM: $stop_status"; fi
        else
            stop_pid "$server_pid"
            fail "$group: the restarted chat died during the run (exit status $stop_status)"
            sed 's/^/      /' "$tmp/restart.err" | tail -20
        fi
    fi
fi

# 7. The thundering herd: 1000 clients, the server stopped with SIGTERM
#    (1001: the first reconnect is spread over restart_spread_ms) and started
#    again, then killed (1006) and started again. build/herd_test prints
#    the histograms and checks the 1001 spread; build/chat has to take the
#    connections (and the file limit has to allow them: raised here to the
#    hard limit at most).
group="herd: 1000 zk_clients through restarts of build/chat"
HERD_N=${HERD_N:-1000}
nofile=$(ulimit -n)
if [ "$nofile" != unlimited ] && [ "$nofile" -lt $((HERD_N + 100)) ]; then
    ulimit -S -n $((HERD_N + 100)) 2>/dev/null || ulimit -S -n "$(ulimit -H -n)"
fi
if [ ! -x $BUILD/herd_test ] || [ ! -x $BUILD/chat ]; then
    fail "$group: $BUILD/herd_test or $BUILD/chat is missing (make $BUILD/herd_test $BUILD/chat)"
elif ! start_server herd $BUILD/chat --host 127.0.0.1; then
    fail "$group: build/chat did not start: $server_error"
else
    port=$(chat_port)
    overflows=$(listen_overflows)
    start_prog herd_test $((STEP * 2)) $BUILD/herd_test "ws://127.0.0.1:$port/ws" "$HERD_N"
    if wait_line "$tmp/herd_test.out" '^ready 1$' "$prog_pid" 45; then
        t0=$(date +%s%3N)
        stop_pid "$server_pid"
        if [ "$stop_status" = 0 ]; then pass "$group: chat exits 0 after SIGTERM with $HERD_N clients"
        else fail "$group: chat exit status after SIGTERM with $HERD_N clients: $stop_status"; fi
        if restart_on herd "$port" $BUILD/chat --host 127.0.0.1; then
            echo "      server down (SIGTERM to ready again, seen by polling): $(($(date +%s%3N) - t0)) ms"
            if wait_line "$tmp/herd_test.out" '^ready 2$' "$prog_pid" 45; then
                kill_pid "$server_pid"
                restart_on herd "$port" $BUILD/chat --host 127.0.0.1 ||
                    fail "$group: build/chat did not start again after SIGKILL: $server_error"
            fi
        else
            fail "$group: build/chat did not start again after SIGTERM: $server_error"
        fi
    fi
    end_prog "$group" herd_test
    [ -n "$server_pid" ] && stop_pid "$server_pid"
    if [ "$overflows" != "?" ]; then
        echo "      listen queue overflows (the whole system's, TcpExt ListenOverflows) during the run: $(($(listen_overflows) - overflows))"
    fi
fi

# 8. examples/zkcat against build/chat: --call with its exit statuses, and
#    stream mode (stdin lines in, every message out); then with --msgpack
#    (MessagePack on the wire, the same JSON lines in and out): --call, the
#    same stream giving the same lines, and a MessagePack client of
#    python3-msgpack in a room getting what zkcat --msgpack sends there.

# The MessagePack listener: MP_LISTEN URL ROOM joins ROOM (offering
# zocket.msgpack, which must be selected), prints "ready", then the payload of
# the first chat.message as JSON (keys as received) and exits 0; exits 1 on
# a text frame, a frame that is not MessagePack, or 10 s without it.
MP_LISTEN='
import asyncio, json, sys
import msgpack, websockets

async def main(url, room):
    async with websockets.connect(url, subprotocols=["zocket.msgpack"], open_timeout=5,
                                  ping_interval=None, compression=None) as ws:
        if ws.subprotocol != "zocket.msgpack":
            sys.exit(f"subprotocol {ws.subprotocol!r} selected")
        await ws.send(msgpack.packb({"type": "chat.join", "payload": {"room": room}, "rpcId": "j"},
                                    use_bin_type=True))
        while True:
            frame = await asyncio.wait_for(ws.recv(), 10)
            if not isinstance(frame, bytes):
                sys.exit(f"a text frame: {frame!r}")
            m = msgpack.unpackb(frame, raw=False)
            if m.get("rpcId") == "j":
                if m.get("type") != "__rpc_res":
                    sys.exit(f"join failed: {m!r}")
                print("ready", flush=True)
            elif m.get("type") == "chat.message":
                print(json.dumps(m["payload"], ensure_ascii=False, separators=(",", ":")), flush=True)
                return

asyncio.run(main(sys.argv[1], sys.argv[2]))
'

# zkcat_check NAME WANT_STATUS WANT_REGEX ARGS... [< input]: runs zkcat
# (at most 15 s; under valgrind memcheck like the chat server when there is
# one: a memory error or a leak exits 99); passes when it exits WANT_STATUS
# and its stdout matches
# WANT_REGEX (grep -E, over the whole output as one line).
zkcat_check() {
    local name=$1 want=$2 regex=$3 rc out
    shift 3
    timeout -k 5 15 $chat_vg $BUILD/zkcat "$@" > "$tmp/zkcat.out" 2> "$tmp/zkcat.err"
    rc=$?
    out=$(tr '\n' ' ' < "$tmp/zkcat.out")
    if [ "$rc" = "$want" ] && printf '%s\n' "$out" | grep -qE -- "$regex"; then pass "zkcat: $name"
    else fail "zkcat: $name (exit $rc, want $want; stdout: ${out:0:300}; stderr: $(tail -3 "$tmp/zkcat.err" | tr '\n' ' '))"; fi
}

if [ ! -x $BUILD/zkcat ] || [ ! -x $BUILD/chat ]; then
    fail "zkcat: $BUILD/zkcat or $BUILD/chat is missing (make $BUILD/zkcat $BUILD/chat)"
elif ! start_server zkcat_chat $BUILD/chat --host 127.0.0.1; then
    fail "zkcat: build/chat did not start: $server_error"
else
    url="ws://127.0.0.1:$(chat_port)/ws"
    zkcat_check "--call answers, exit 0" 0 '^\{"room":"z","members":\["zed"\]\} $' \
        "$url" -p name=zed --call chat.join '{"room":"z"}'
    zkcat_check "--call error from the server, exit 1" 1 '"code":"NOT_FOUND"' \
        "$url" -p name=zed --call no.such.route
    zkcat_check "--call error from the server with -H and --protocol, exit 1" 1 '"code":"FORBIDDEN"' \
        "$url" -p name=zed -H 'X-Test: 1' --protocol zocket.json --call chat.send '{"room":"z","text":"x"}'
    zkcat_check "--call and no server, exit 2 (TIMEOUT)" 2 '"code":"TIMEOUT"' \
        "ws://127.0.0.1:$(free_port)/ws" -p name=zed --timeout 500 --call chat.rooms
    zkcat_check "--call and no server with --no-reconnect, exit 2 (CLOSED)" 2 '"code":"CLOSED"' \
        "ws://127.0.0.1:$(free_port)/ws" -p name=zed --no-reconnect --call chat.rooms
    zkcat_check "bad arguments, exit 64" 64 '^$' --timeout x "$url"
    printf '%s\n' '{"type":"chat.join","payload":{"room":"s"},"rpcId":"j"}' 'not json' \
        '{"type":"chat.send","payload":{"room":"s","text":"one"}}' '' \
        '{"type":"chat.send","payload":{"room":"s","text":"two"},"rpcId":2}' \
        '{"type":"chat.send","payload":{"room":"elsewhere","text":"x"}}' \
        '{"type":"chat.rooms","rpcId":"end"}' > "$tmp/zkcat.in"
    stream_re='^\{"type":"__rpc_res","payload":\{"room":"s","members":\["sam"\]\},"rpcId":"j"\} \{"type":"chat.message","payload":\{"room":"s","from":"sam","text":"one"\}\} \{"type":"chat.message","payload":\{"room":"s","from":"sam","text":"two"\}\} \{"type":"__rpc_res","payload":\{"ok":true\},"rpcId":2\} \{"type":"__error","error":\{"code":"FORBIDDEN",[^}]*\}\} \{"type":"__rpc_res","payload":\[[^]]*\],"rpcId":"end"\} $'
    zkcat_check "stream: lines in order, answers with their rpcId, events, __error" 0 "$stream_re" \
        "$url" -p name=sam < "$tmp/zkcat.in"
    if grep -q 'line 2: not a Zocket envelope' "$tmp/zkcat.err"; then
        pass "zkcat: stream: a line that is not an envelope is reported on stderr"
    else fail "zkcat: stream: no report of the bad line 2 on stderr: $(tr '\n' ' ' < "$tmp/zkcat.err")"; fi
    cp "$tmp/zkcat.out" "$tmp/zkcat_json.out"
    zkcat_check "--msgpack --call answers as with JSON, exit 0" 0 '^\{"room":"z","members":\["zed"\]\} $' \
        "$url" --msgpack -p name=zed --call chat.join '{"room":"z"}'
    zkcat_check "--msgpack --call chat.rooms answers a list of {room, members}, exit 0" 0 \
        '^\[(\{"room":"[^"]*","members":[0-9]+\},?)*\] $' "$url" --msgpack -p name=zed --call chat.rooms
    zkcat_check "--msgpack --call error from the server, exit 1" 1 '^\{"code":"NOT_FOUND","message":"[^"]*"\} $' \
        "$url" --msgpack -p name=zed --call no.such.route
    zkcat_check "--msgpack --call error with data (INVALID_INPUT issues), exit 1" 1 \
        '^\{"code":"INVALID_INPUT","message":"[^"]*","data":\{"issues":\[\{"path":"room","message":"[^"]*"\}\]\}\} $' \
        "$url" --msgpack -p name=zed --call chat.join '{"room":""}'
    zkcat_check "--msgpack stream: lines in order, answers with their rpcId, events, __error" 0 "$stream_re" \
        "$url" --msgpack -p name=sam < "$tmp/zkcat.in"
    if [ -s "$tmp/zkcat_json.out" ] && cmp -s "$tmp/zkcat_json.out" "$tmp/zkcat.out"; then
        pass "zkcat: --msgpack stream: the same lines out as with JSON ($(wc -l < "$tmp/zkcat.out") lines)"
    else fail "zkcat: --msgpack stream: other lines than with JSON: $(diff "$tmp/zkcat_json.out" "$tmp/zkcat.out" | head -10 | tr '\n' ' ')"; fi
    if grep -q 'line 2: not a Zocket envelope' "$tmp/zkcat.err"; then
        pass "zkcat: --msgpack stream: the line that is not an envelope is reported on stderr"
    else fail "zkcat: --msgpack stream: no report of the bad line 2 on stderr: $(tr '\n' ' ' < "$tmp/zkcat.err")"; fi
    if [ $mp_ok = 1 ]; then
        start_prog mp_listen 20 $PY -c "$MP_LISTEN" "$url?name=mona" zp
        if wait_line "$tmp/mp_listen.out" '^ready$' "$prog_pid" 10; then
            printf '%s\n' '{"type":"chat.join","payload":{"room":"zp"},"rpcId":"j"}' \
                '{"type":"chat.send","payload":{"room":"zp","text":"h\u00e9 \"q\" \\ \ud83d\ude00"},"rpcId":"s"}' \
                > "$tmp/zkcat_mp.in"
            zkcat_check "--msgpack stream: join and send to a room with a python3-msgpack client in it" 0 \
                '^\{"type":"__rpc_res","payload":\{"room":"zp","members":\["mona","zed"\]\},"rpcId":"j"\} \{"type":"chat.message","payload":\{"room":"zp","from":"zed","text":"hé \\"q\\" \\\\ 😀"\}\} \{"type":"__rpc_res","payload":\{"ok":true\},"rpcId":"s"\} (\{"type":"chat.left","payload":\{"room":"zp","name":"mona"\}\} )?$' \
                "$url" --msgpack -p name=zed < "$tmp/zkcat_mp.in"
        else
            kill -TERM "$prog_pid" 2>/dev/null
        fi
        wait "$prog_pid"
        rc=$?
        pids=$(printf '%s\n' $pids | grep -vx "$prog_pid" | tr '\n' ' ')
        want='{"room":"zp","from":"zed","text":"hé \"q\" \\ 😀"}'
        if [ $rc = 0 ] && [ "$(cat "$tmp/mp_listen.out")" = "ready
$want" ]; then
            pass "zkcat: --msgpack: a python3-msgpack client in the room gets zkcat's message, decoded exactly"
        else fail "zkcat: --msgpack: the python3-msgpack client in the room (exit $rc): $(tr '\n' ' ' < "$tmp/mp_listen.out") $(tail -3 "$tmp/mp_listen.err" | tr '\n' ' '), want $want"; fi
    else
        skip "zkcat: --msgpack: a python3-msgpack client in the room" "$why_mp"
    fi
    stop_pid "$server_pid"
    if [ "$stop_status" = 0 ]; then pass "zkcat: chat exits 0 on SIGTERM after the zkcat runs"
    else fail "zkcat: chat exit status on SIGTERM: $stop_status"; fi
fi

# 9. build/zkcat (zk_client) against a Zocket server not written with
#    zocket.h: tests/interop/py_zocket_server.py, on Python websockets. Its
#    routes: math.add, fail, whoami, emit.me, close.with, slow, conns (the
#    connections it has accepted, the asking one included: a reconnect
#    shows as one more), and for the codecs: echo, types, wire, raw. Then
#    the same with --msgpack, against python3-msgpack on the other end: the
#    results, errors and events as with JSON; zkcat's MessagePack is byte
#    for byte python3-msgpack's (wire); python3-msgpack reads each value as
#    its type (types); every JSON value makes the round trip exactly
#    (echo), str32 included; the forms python3-msgpack never writes (raw)
#    read as their values; malformed answers dropped; and a server that
#    does not select zocket.msgpack refused.
group="zkcat -> Python Zocket server"

# pz_conns: the server's connection count (a --call conns of its own), or
# "?" when it did not answer
pz_conns() {
    local n
    n=$(timeout -k 5 15 $BUILD/zkcat "$pz_url" --call conns 2>/dev/null)
    case $n in ''|*[!0-9]*) echo "?" ;; *) echo "$n" ;; esac
}

# pz_feed FILE SECONDS LINE1 LINE2: writes LINE1, then, once FILE (zkcat's
# stderr) says it is reconnecting or closed (at most SECONDS), LINE2; stdin
# stays open until then, so LINE2 is not in flight when the server closes
# and zkcat does not see the end of its input before it sees the close.
pz_feed() {
    local deadline=$((SECONDS + $2))
    trap '' PIPE   # zkcat may be gone when LINE2 comes: nothing to report
    printf '%s\n' "$3" 2>/dev/null
    while [ $SECONDS -le $deadline ] && ! grep -qE '^zkcat: (reconnecting|closed) \(' "$1" 2>/dev/null; do
        sleep 0.05
    done
    printf '%s\n' "$4" 2>/dev/null
}

# zkcat_same NAME WANT_FILE ARGS... [< input]: runs zkcat as zkcat_check
# does; passes when it exits 0 and its stdout is exactly WANT_FILE.
zkcat_same() {
    local name=$1 want=$2 rc
    shift 2
    timeout -k 5 15 $chat_vg $BUILD/zkcat "$@" > "$tmp/zkcat.out" 2> "$tmp/zkcat.err"
    rc=$?
    if [ "$rc" = 0 ] && cmp -s "$want" "$tmp/zkcat.out"; then pass "zkcat: $name"
    else fail "zkcat: $name (exit $rc, want 0; stdout $(wc -c < "$tmp/zkcat.out") bytes, want $(wc -c < "$want"), first difference: $(cmp "$want" "$tmp/zkcat.out" 2>&1 | head -1); stderr: $(tail -3 "$tmp/zkcat.err" | tr '\n' ' '))"; fi
}

# pz_close CODE final|reconnects [OPTION...]: a stream whose first line is
# the call close.with {code}, then the call math.add {2,3} (rpcId "after").
# The call in flight at the close fails DISCONNECTED (CLOSED when the code is final:
# the client is closed for good before it hears). final: zkcat ends, exit 2,
# "closed (CODE" on stderr, "after" never sent, one connection. reconnects:
# "reconnecting (CODE" on stderr, "after" answered 5 (queued or sent on
# the new connection), exit 0 at the end of stdin, two connections. The
# OPTIONs are zkcat's (--msgpack), and named in the checks.
pz_close() {
    local code=$1 kind=$2 before after n want regex feeder label
    shift 2
    label="Python Zocket server${1:+ $*}"
    local first='{"type":"close.with","payload":{"code":'$code'},"rpcId":"c"}'
    local second='{"type":"math.add","payload":{"a":2,"b":3},"rpcId":"after"}'
    local dropped='\{"type":"__rpc_err","rpcId":"c","error":\{"code":"DISCONNECTED",[^}]*\}\}'
    if [ "$kind" = final ]; then
        dropped='\{"type":"__rpc_err","rpcId":"c","error":\{"code":"CLOSED",[^}]*\}\}'
        want=2 n=1 regex="^$dropped \$"
    else
        want=0 n=2 regex="^$dropped \\{\"type\":\"__rpc_res\",\"payload\":5,\"rpcId\":\"after\"\\} \$"
    fi
    before=$(pz_conns)
    : > "$tmp/zkcat.err"
    zkcat_check "$label: close $code ($kind): exit $want, the call in flight $([ "$kind" = final ] && echo CLOSED || echo 'DISCONNECTED, the next one answered')" \
        "$want" "$regex" "$pz_url" "$@" < <(pz_feed "$tmp/zkcat.err" 10 "$first" "$second")
    feeder=$!
    wait "$feeder" 2>/dev/null
    if [ "$kind" = final ]; then
        if grep -q "^zkcat: closed ($code " "$tmp/zkcat.err" && ! grep -q '^zkcat: reconnecting' "$tmp/zkcat.err"; then
            pass "zkcat: $label: close $code: closed for good, no reconnect"
        else fail "zkcat: $label: close $code: want \"closed ($code\" and no reconnect on stderr: $(tr '\n' ' ' < "$tmp/zkcat.err")"; fi
    else
        if grep -q "^zkcat: reconnecting ($code " "$tmp/zkcat.err"; then
            pass "zkcat: $label: close $code: reconnecting"
        else fail "zkcat: $label: close $code: want \"reconnecting ($code\" on stderr: $(tr '\n' ' ' < "$tmp/zkcat.err")"; fi
    fi
    after=$(pz_conns)
    if [ "$before" != "?" ] && [ "$after" != "?" ] && [ $((after - before - 1)) = "$n" ]; then
        pass "zkcat: $label: close $code: $n connection(s) made (conns $before -> $after)"
    else fail "zkcat: $label: close $code: want $n connection(s) made, conns $before -> $after (the second count's own connection included)"; fi
}

if [ $py_ok = 0 ]; then
    skip "$group" "$why_py"
elif [ ! -x $BUILD/zkcat ]; then
    fail "$group: $BUILD/zkcat is missing (make $BUILD/zkcat)"
elif ! start_server pyzocket $PY $HERE/py_zocket_server.py; then
    fail "$group: the server did not start: $server_error"
else
    pz_url=$server_url
    zkcat_check "Python Zocket server: --call math.add answers 5, exit 0" 0 '^5 $' \
        "$pz_url" --call math.add '{"a":2,"b":3}'
    zkcat_check "Python Zocket server: --call error FORBIDDEN with its data, exit 1" 1 \
        '^\{"code":"FORBIDDEN","message":"no","data":\{"why":"test"\}\} $' "$pz_url" --call fail
    zkcat_check "Python Zocket server: --call an unknown route, NOT_FOUND, exit 1" 1 \
        '^\{"code":"NOT_FOUND","message":"[^"]*"\} $' "$pz_url" --call no.such.route
    zkcat_check "Python Zocket server: -p, -H and --protocol seen by the server (query, header, zocket.json selected)" 0 \
        '^\{"query":\{"name":"zed"\},"x_test":"1","protocol":"zocket.json"\} $' \
        "$pz_url" -p name=zed -H 'X-Test: 1' --protocol zocket.json --call whoami
    printf '%s\n' '{"type":"emit.me","payload":{"n":3},"rpcId":"e"}' \
        '{"type":"math.add","payload":{"a":1,"b":2},"rpcId":9}' > "$tmp/pz.in"
    zkcat_check "Python Zocket server: stream: three events in order, then the answers" 0 \
        '^\{"type":"tick","payload":0\} \{"type":"tick","payload":1\} \{"type":"tick","payload":2\} \{"type":"__rpc_res","payload":\{"ok":true\},"rpcId":"e"\} \{"type":"__rpc_res","payload":3,"rpcId":9\} $' \
        "$pz_url" < "$tmp/pz.in"
    printf '%s\n' '{"type":"no.such.route"}' '{"type":"fail","payload":{}}' \
        '{"type":"math.add","payload":{"a":1,"b":2},"rpcId":"end"}' > "$tmp/pz.in"
    zkcat_check "Python Zocket server: stream: failed events come back as __error with their ref" 0 \
        '^\{"type":"__error","error":\{"code":"NOT_FOUND","message":"[^"]*","ref":"no.such.route"\}\} \{"type":"__error","error":\{"code":"FORBIDDEN","message":"no","data":\{"why":"test"\},"ref":"fail"\}\} \{"type":"__rpc_res","payload":3,"rpcId":"end"\} $' \
        "$pz_url" < "$tmp/pz.in"
    pz_close 4501 final
    pz_close 1011 reconnects
    pz_close 4000 reconnects
    pz_close 1008 final
    # the same with the whole input piped at once: stdin ends before the
    # close, and the final code must still end zkcat with a failure
    printf '%s\n' '{"type":"close.with","payload":{"code":4501},"rpcId":"c"}' > "$tmp/pz_once.in"
    zkcat_check "Python Zocket server: close 4501 with stdin already ended: the call CLOSED, exit 2" 2 \
        '^\{"type":"__rpc_err","rpcId":"c","error":\{"code":"CLOSED",[^}]*\}\} $' "$pz_url" < "$tmp/pz_once.in"
    zkcat_check "Python Zocket server: --timeout 300 --call slow, TIMEOUT, exit 2" 2 \
        '^\{"code":"TIMEOUT","message":"[^"]*"\} $' "$pz_url" --timeout 300 --call slow
    # a payload of every JSON value: integers either side of each
    # MessagePack width, doubles, strings of each str length (str32: 70000
    # bytes), arrays and maps of each size class (keys sorted: zk_client
    # sends payloads canonical), literals; written by Python's json, the
    # answer echoing it wanted byte for byte
    $PY -c '
import json, sys
p = {"a_ints": [0, 1, -1, 127, 128, -32, -33, 255, 256, -128, -129, 65535, 65536, -32768, -32769,
                4294967295, 4294967296, -2147483648, -2147483649, 9007199254740993,
                9223372036854775807, -9223372036854775808],
     "b_doubles": [1.5, 0.1, -2.5e-300, 1e+300, 123456.789,
                  2.2250738585072014e-308, 1.7976931348623157e+308, 0.30000000000000004],
     "c_strs": ["", "a", "x" * 31, "y" * 32, "z" * 255, "w" * 256, "v" * 65535, "u" * 70000,
                "\u00e9\u20ac\U0001F600 \"q\" \\ / \n\t\u2028\u0000\u001f"],
     "d_arrays": [[], list(range(15)), list(range(16)), [[[[None]]]]],
     "e_maps": [{}, {f"k{i:02}": i for i in range(15)}, {f"k{i:02}": i for i in range(16)}],
     "f_literals": [None, True, False]}
line = lambda m: json.dumps(m, separators=(",", ":"), ensure_ascii=False) + "\n"
open(sys.argv[1], "w").write(line({"type": "echo", "payload": p, "rpcId": 1}))
open(sys.argv[2], "w").write(line({"type": "__rpc_res", "payload": p, "rpcId": 1}))
' "$tmp/pz_echo.in" "$tmp/pz_echo.want"
    zkcat_same "Python Zocket server: stream: every JSON value echoed exactly (str up to 70000 bytes)" \
        "$tmp/pz_echo.want" "$pz_url" < "$tmp/pz_echo.in"

    if [ $mp_ok = 0 ]; then
        skip "$group: --msgpack" "$why_mp"
    else
        zkcat_check "Python Zocket server --msgpack: --call math.add answers 5, exit 0" 0 '^5 $' \
            "$pz_url" --msgpack --call math.add '{"a":2,"b":3}'
        zkcat_check "Python Zocket server --msgpack: --call error FORBIDDEN with its data, exit 1" 1 \
            '^\{"code":"FORBIDDEN","message":"no","data":\{"why":"test"\}\} $' "$pz_url" --msgpack --call fail
        zkcat_check "Python Zocket server --msgpack: --call an unknown route, NOT_FOUND, exit 1" 1 \
            '^\{"code":"NOT_FOUND","message":"[^"]*"\} $' "$pz_url" --msgpack --call no.such.route
        zkcat_check "Python Zocket server --msgpack: -p and -H seen by the server, zocket.msgpack selected" 0 \
            '^\{"query":\{"name":"zed"\},"x_test":"1","protocol":"zocket.msgpack"\} $' \
            "$pz_url" --msgpack -p name=zed -H 'X-Test: 1' --call whoami
        # with --msgpack, zocket.msgpack is offered first whatever else is
        # (the refusal of a server that selects another codec is in test_client)
        zkcat_check "Python Zocket server --msgpack --protocol zocket.json: zocket.msgpack offered first and selected" 0 \
            '^\{"query":\{\},"x_test":null,"protocol":"zocket.msgpack"\} $' "$pz_url" --msgpack --protocol zocket.json --call whoami
        printf '%s\n' '{"type":"emit.me","payload":{"n":3},"rpcId":"e"}' \
            '{"type":"math.add","payload":{"a":1,"b":2},"rpcId":9}' > "$tmp/pz.in"
        zkcat_check "Python Zocket server --msgpack: stream: three events in order, then the answers" 0 \
            '^\{"type":"tick","payload":0\} \{"type":"tick","payload":1\} \{"type":"tick","payload":2\} \{"type":"__rpc_res","payload":\{"ok":true\},"rpcId":"e"\} \{"type":"__rpc_res","payload":3,"rpcId":9\} $' \
            "$pz_url" --msgpack < "$tmp/pz.in"
        printf '%s\n' '{"type":"no.such.route"}' '{"type":"fail","payload":{}}' \
            '{"type":"math.add","payload":{"a":1,"b":2},"rpcId":"end"}' > "$tmp/pz.in"
        zkcat_check "Python Zocket server --msgpack: stream: failed events come back as __error with their ref" 0 \
            '^\{"type":"__error","error":\{"code":"NOT_FOUND","message":"[^"]*","ref":"no.such.route"\}\} \{"type":"__error","error":\{"code":"FORBIDDEN","message":"no","data":\{"why":"test"\},"ref":"fail"\}\} \{"type":"__rpc_res","payload":3,"rpcId":"end"\} $' \
            "$pz_url" --msgpack < "$tmp/pz.in"
        zkcat_same "Python Zocket server --msgpack: stream: every JSON value echoed exactly (str8/16/32, every integer width)" \
            "$tmp/pz_echo.want" "$pz_url" --msgpack < "$tmp/pz_echo.in"
        sed 's/^{"type":"echo"/{"type":"wire"/' "$tmp/pz_echo.in" > "$tmp/pz_wire.in"
        zkcat_check "Python Zocket server --msgpack: zkcat's frame is byte for byte what python3-msgpack packs for it (every JSON value)" 0 \
            '^\{"type":"__rpc_res","payload":\{"codec":"msgpack","canonical":true,"frame":"83a474797065a477697265a77061796c6f616486' \
            "$pz_url" --msgpack < "$tmp/pz_wire.in"
        zkcat_check "Python Zocket server --msgpack: python3-msgpack decodes each value as its type (1 an int, 1.0 and 2^64-1 floats)" 0 \
            '^\{"a":"int","b":"int","c":"float","d":"float","e":"float","f":"str","g":\["nil","bool","bool"\],"h":\{"i":\[\]\}\} $' \
            "$pz_url" --msgpack --call types '{"a":1,"b":-9223372036854775808,"c":1.5,"d":1.0,"e":18446744073709551615,"f":"x","g":[null,true,false],"h":{"i":[]}}'
        # the answer's payload as raw bytes: forms python3-msgpack never
        # writes, each read as its value
        : > "$tmp/pz.in"; : > "$tmp/pz.want"
        while read -r hex json; do
            printf '{"type":"raw","payload":{"hex":"%s"},"rpcId":"%s"}\n' "$hex" "$hex" >> "$tmp/pz.in"
            printf '{"type":"__rpc_res","payload":%s,"rpcId":"%s"}\n' "$json" "$hex" >> "$tmp/pz.want"
        done <<'RAW'
ca3fc00000 1.5
cc05 5
d0e0 -32
d3ffffffffffffffff -1
cd00ff 255
cfffffffffffffffff 1.8446744073709552e+19
c403010203 "AQID"
c400 ""
d90161 "a"
da0002c3a9 "é"
de0001a16b01 {"k":1}
dc0001c0 [null]
dd00000000 []
82a17a01a16102 {"z":1,"a":2}
c0 null
RAW
        zkcat_same "Python Zocket server --msgpack: forms python3-msgpack never writes (float32, wide ints, str8/16 and map16/array16/array32 when smaller fit, bin as base64, uint64 over INT64_MAX as a double), keys in their order" \
            "$tmp/pz.want" "$pz_url" --msgpack < "$tmp/pz.in"
        # malformed answers: an ext type, a str that is not UTF-8, 0xc1, a
        # str32 longer than the frame, NaN; each dropped by the client (the
        # call times out), the connection still answering
        : > "$tmp/pz.in"
        for hex in c7010500 a2fffe c1 dbffffffff cb7ff8000000000000; do
            printf '{"type":"raw","payload":{"hex":"%s"},"rpcId":"%s"}\n' "$hex" "$hex" >> "$tmp/pz.in"
        done
        printf '%s\n' '{"type":"math.add","payload":{"a":1,"b":2},"rpcId":"end"}' >> "$tmp/pz.in"
        zkcat_check "Python Zocket server --msgpack: malformed answers (ext, bad UTF-8, 0xc1, str32 past the end, NaN) dropped: those calls time out, the next one is answered" 0 \
            '^\{"type":"__rpc_res","payload":3,"rpcId":"end"\} (\{"type":"__rpc_err","rpcId":"(c7010500|a2fffe|c1|dbffffffff|cb7ff8000000000000)","error":\{"code":"TIMEOUT",[^}]*\}\} ){5}$' \
            "$pz_url" --msgpack --timeout 1000 < "$tmp/pz.in"
        pz_close 4501 final --msgpack
        pz_close 4000 reconnects --msgpack
    fi
    if kill -0 "$server_pid" 2>/dev/null; then
        stop_pid "$server_pid"
        if [ "$stop_status" = 0 ]; then pass "$group: the server is still up after the runs, exits 0 on SIGTERM"
        else fail "$group: the server's exit status on SIGTERM: $stop_status"; sed 's/^/      /' "$tmp/pyzocket.err" | tail -20; fi
    else
        stop_pid "$server_pid"
        fail "$group: the server died during the runs (exit status $stop_status)"
        sed 's/^/      /' "$tmp/pyzocket.err" | tail -20
    fi
fi

# 10. Chat across nodes: for Redis, then NATS, a broker on a free port and
#     two build/chat on ports of their own attached to it (--redis URL,
#     --nats URL), run under valgrind like section 5's. Node 1 starts before
#     the broker, with nothing on its port: it must log that it is not
#     connected ("chat: broker connecting: WHY", no "open") and still serve
#     its own rooms (chat_nodes_test.py --local-only: two members of a room
#     each get the other's message once). Then the broker starts on that
#     port, and node 1 must connect by itself within 15 s (its backoff is
#     full jitter capped at 5 s); then node 2 starts. Once both say
#     "chat: broker open", tests/interop/chat_nodes_test.py checks that they
#     are one chat: room messages, chat.joined and chat.left cross once each,
#     and through a SIGKILL of the broker and its restart on the same port
#     (answered once both nodes have logged that they are reconnecting)
#     what each node sent meanwhile reaches the other once, in order. The
#     script asks on its stdout ("do kill-broker", "do start-broker") and is
#     answered on its stdin, as in section 5's restart; it ends by stopping
#     node 2 with SIGTERM (its users' chat.left must reach node 1, and it
#     must exit 0). Both nodes must have logged the outage ("chat: broker
#     reconnecting", then "open" again); node 1 must still be up and exit 0
#     on SIGTERM.
tools/deps.sh redis nats 2>/dev/null   # (installs what it can; checked below)

# broker_on KIND PORT: redis-server or nats-server on 127.0.0.1:PORT, at most
# $READY s to say it is ready. Sets broker_pid (remembered for cleanup); 1
# (reason in broker_error) if it never got ready.
broker_on() {
    local kind=$1 port=$2 deadline ready
    broker_pid="" broker_error=""
    : > "$tmp/$kind.out"; : > "$tmp/$kind.err"
    if [ "$kind" = redis ]; then
        redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
            > "$tmp/$kind.out" 2> "$tmp/$kind.err" &
        ready='Ready to accept connections'
    else
        nats-server -a 127.0.0.1 -p "$port" > "$tmp/$kind.out" 2> "$tmp/$kind.err" &
        ready='Server is ready'
    fi
    broker_pid=$!
    pids="$pids $broker_pid"
    deadline=$((SECONDS + READY))
    while [ $SECONDS -le $deadline ]; do
        grep -qs "$ready" "$tmp/$kind.out" "$tmp/$kind.err" && return 0
        kill -0 "$broker_pid" 2>/dev/null || break
        sleep 0.05
    done
    broker_error="$kind-server not ready on port $port within ${READY} s: $(cat "$tmp/$kind.out" "$tmp/$kind.err" | tail -3 | tr '\n' ' ')"
    stop_pid "$broker_pid"
    broker_pid=""
    return 1
}

# broker_port: a free port for a broker started later, below the ephemeral
# range: while nothing listens there, neither free_port nor the local end of
# an outgoing connection can take it (node 1's own attempts to reach it
# included, which would connect to themselves). free_port if none is found.
broker_port() {
    $PY -c '
import random, socket
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
for port in random.sample(range(10000, low), min(100, low - 10000)) if low > 10000 else []:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit(1)' 2>/dev/null || free_port
}

# ms_now: milliseconds since the epoch.
ms_now() { date +%s%3N; }

# more_lines FILE REGEX N SECONDS: until more than N lines of FILE match, at
# most SECONDS; 0 only then.
more_lines() {
    local deadline=$((SECONDS + $4))
    while [ $SECONDS -le $deadline ]; do
        [ "$(grep -c -E "$2" "$1")" -gt "$3" ] && return 0
        sleep 0.05
    done
    return 1
}

# nodes_group KIND: one broker of KIND (redis or nats), two nodes, the checks.
nodes_group() {
    local kind=$1 group="chat across nodes ($1)" bport n1 n2 u1 u2 nok=0 nfail=0 rc line p i r1 r2 t0 ms
    broker_pid=""
    bport=$(broker_port) || { fail "$group: no free port for the broker"; return; }
    # the broker is not there yet
    if ! start_server node1 $chat_vg $BUILD/chat --host 127.0.0.1 --"$kind" "$kind://127.0.0.1:$bport"; then
        fail "$group: node 1 did not start: $server_error"; return
    fi
    n1=$server_pid u1=$server_url
    if wait_line "$tmp/node1.err" '^chat: broker connecting' "$n1" 10 &&
       ! grep -q '^chat: broker open' "$tmp/node1.err"; then
        pass "$group: node 1 started with nothing on port $bport, logs it is not connected ($(grep -m1 '^chat: broker connecting' "$tmp/node1.err"))"
    else fail "$group: node 1's broker log with nothing on port $bport: $(grep '^chat: broker' "$tmp/node1.err" | tr '\n' ' ')"; fi
    run_checks "$group" $PY $HERE/chat_nodes_test.py --local-only "$u1"
    if ! broker_on "$kind" "$bport"; then
        fail "$group: the broker did not start: $broker_error"; stop_pid "$n1"; return
    fi
    t0=$(ms_now)
    if wait_line "$tmp/node1.err" '^chat: broker open' "$n1" 15; then
        ms=$(($(ms_now) - t0))
        pass "$group: node 1 connected once the broker appeared (after $((ms / 1000)).$((ms % 1000 / 100)) s)"
    else fail "$group: node 1 did not say \"chat: broker open\" within 15 s of the broker starting: $(grep '^chat: broker' "$tmp/node1.err" | tail -3 | tr '\n' ' ')"; fi
    if ! start_server node2 $chat_vg $BUILD/chat --host 127.0.0.1 --"$kind" "$kind://127.0.0.1:$bport"; then
        fail "$group: node 2 did not start: $server_error"; stop_pid "$n1"; stop_pid "$broker_pid"; return
    fi
    n2=$server_pid u2=$server_url
    if grep -q '^chat: broker open' "$tmp/node1.err" &&
       wait_line "$tmp/node2.err" '^chat: broker open' "$n2" 10; then
        pass "$group: both nodes connected to $kind-server ($("$kind-server" --version 2>/dev/null | grep -oE 'v=?[0-9.]+' | head -1))"
        coproc NODES { timeout -k 5 "$STEP" $PY $HERE/chat_nodes_test.py "$u1" "$u2" --outage --sigterm-pid2 "$n2" 2> "$tmp/nodes.err"; }
        local node_pid=$NODES_PID nodes_out nodes_in
        exec {nodes_out}<&"${NODES[0]}" {nodes_in}>&"${NODES[1]}"
        pids="$pids $node_pid"
        while IFS= read -r -t $((STEP + 10)) -u "$nodes_out" line; do
            case $line in
                "ok "*) pass "$group: ${line#ok }"; nok=$((nok + 1)) ;;
                "FAIL "*) fail "$group: ${line#FAIL }"; nfail=$((nfail + 1)) ;;
                "# "*) printf '      %s\n' "${line#\# }" ;;
                "do kill-broker")   # done once both nodes have noticed
                    r1=$(grep -c '^chat: broker reconnecting' "$tmp/node1.err")
                    r2=$(grep -c '^chat: broker reconnecting' "$tmp/node2.err")
                    kill_pid "$broker_pid"
                    broker_pid=""
                    if more_lines "$tmp/node1.err" '^chat: broker reconnecting' "$r1" 5 &&
                       more_lines "$tmp/node2.err" '^chat: broker reconnecting' "$r2" 5; then
                        (echo "done kill-broker" >&"$nodes_in") 2>/dev/null
                    else (echo "fail kill-broker: the nodes did not log \"chat: broker reconnecting\" within 5 s" >&"$nodes_in") 2>/dev/null; fi ;;
                "do start-broker")
                    if broker_on "$kind" "$bport"; then (echo "done start-broker" >&"$nodes_in") 2>/dev/null
                    else (echo "fail start-broker: $broker_error" >&"$nodes_in") 2>/dev/null; fi ;;
            esac
        done
        exec {nodes_out}<&- {nodes_in}>&-
        wait "$node_pid"
        rc=$?
        pids=$(printf '%s\n' $pids | grep -vx "$node_pid" | tr '\n' ' ')
        if [ $rc = 124 ] || [ $rc = 137 ]; then fail "$group: timed out after ${STEP} s"
        elif [ $rc != 0 ] && [ $nfail = 0 ]; then fail "$group: exit status $rc after $nok checks"; fi
        if [ $rc != 0 ]; then sed 's/^/      /' "$tmp/nodes.err" | tail -30; fi
        for p in 1 2; do
            if grep -q '^chat: broker reconnecting' "$tmp/node$p.err" &&
               [ "$(grep -c '^chat: broker open' "$tmp/node$p.err")" -ge 2 ]; then
                pass "$group: node $p logged the outage on stderr (reconnecting, then open again)"
            else fail "$group: node $p's broker log on stderr: $(grep '^chat: broker' "$tmp/node$p.err" | tr '\n' ' ')"; fi
        done
    else
        fail "$group: the checks not run: node 1 not connected, or node 2 did not say \"chat: broker open\" within 10 s: $(grep -h '^chat: broker' "$tmp/node1.err" "$tmp/node2.err" | tr '\n' ' ')"
        kill -TERM "$n2" 2>/dev/null   # the script did not run to do it
    fi
    # node 2 had its SIGTERM from the script (unless it stopped before): up
    # to 5 s to exit by itself, with status 0
    for i in $(seq 100); do kill -0 "$n2" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$n2" 2>/dev/null; then
        stop_pid "$n2"
        fail "$group: node 2 still running 5 s after the script's SIGTERM (or the script never sent it)"
    else
        stop_pid "$n2"
        if [ "$stop_status" = 0 ]; then pass "$group: node 2 exits 0 after SIGTERM with clients connected"
        else fail "$group: node 2's exit status after SIGTERM: $stop_status"; sed 's/^/      /' "$tmp/node2.err" | tail -20; fi
    fi
    if kill -0 "$n1" 2>/dev/null; then
        stop_pid "$n1"
        if [ "$stop_status" = 0 ]; then pass "$group: node 1 still up after the run, exits 0 on SIGTERM"
        else fail "$group: node 1's exit status on SIGTERM: $stop_status"; sed 's/^/      /' "$tmp/node1.err" | tail -20; fi
    else
        stop_pid "$n1"
        fail "$group: node 1 died during the run (exit status $stop_status)"
        sed 's/^/      /' "$tmp/node1.err" | tail -20
    fi
    [ -n "$broker_pid" ] && stop_pid "$broker_pid"
}

for kind in redis nats; do
    if [ $py_ok = 0 ]; then
        skip "chat across nodes ($kind)" "$why_py"
    elif [ ! -x $BUILD/chat ]; then
        fail "chat across nodes ($kind): $BUILD/chat is missing (make $BUILD/chat)"
    elif ! command -v "$kind-server" >/dev/null 2>&1; then
        skip "chat across nodes ($kind)" "$kind-server not found (tools/deps.sh $kind; apt-get install $kind-server)"
    else
        nodes_group "$kind"
    fi
done

# 11. Slow and silent peers (tests/interop/slowloris.c, no peer needed): a
#     forked zk_app with short deadlines against 1000 connections sending
#     the upgrade request a byte a second, 1000 that never read (their
#     queues fill) and 1000 sending a message a byte a second; each must be
#     closed at its deadline (handshake_timeout_ms, write_timeout_ms,
#     message_timeout_ms then close_timeout_ms), every call of a normal
#     zk_client answered before and during, and the server's descriptors
#     back to their count. One check, passed on exit 0; its figures (round
#     trip p50/p99/max with and without them, peak RSS, close times) are
#     printed either way, and its failed checks when it fails.
if [ -x $BUILD/slowloris ]; then
    timeout -k 5 "$STEP" $BUILD/slowloris > "$tmp/slowloris.out" 2> "$tmp/slowloris.err" &
    sl_pid=$!
    pids="$pids $sl_pid"
    wait "$sl_pid"
    sl_rc=$?
    pids=$(printf '%s\n' $pids | grep -vx "$sl_pid" | tr '\n' ' ')
    sed -n 's/^# /      /p' "$tmp/slowloris.out"
    if [ $sl_rc = 0 ]; then
        pass "slow and silent peers: each closed at its deadline, calls answered throughout ($(tail -1 "$tmp/slowloris.out"))"
    elif [ $sl_rc = 124 ] || [ $sl_rc = 137 ]; then
        fail "slow and silent peers: timed out after ${STEP} s"
    else
        fail "slow and silent peers: exit status $sl_rc ($(tail -1 "$tmp/slowloris.out"))"
        grep '^FAIL ' "$tmp/slowloris.out" | sed 's/^/      /'
        tail -5 "$tmp/slowloris.err" | sed 's/^/      /'
    fi
else
    fail "$BUILD/slowloris is missing (make $BUILD/slowloris)"
fi

if [ $skipped -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"
else echo "$passed passed, $failed failed"; fi
[ $failed -eq 0 ]
