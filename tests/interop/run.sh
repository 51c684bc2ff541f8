#!/usr/bin/env bash
# Interop tests: zocket.h against independent implementations, on 127.0.0.1.
#   1. build/echo with Python websockets and Node ws as clients
#   2. the zocket client (build/interop_client) against Python websockets and
#      Node ws echo servers
#   3. malformed frames sent to build/echo with Autobahn|Python
#   4. examples/gameloop with a Python websockets client
#   5. examples/chat: its protocol with Python websockets, its page in
#      headless Chromium driven by playwright-core
# Expects build/echo, build/interop_client, build/gameloop and build/chat
# (tests/run.sh makes them).
# Installs missing peers (apt as root: python3-websockets, chromium, ...;
# npm ci into tests/interop/node/: ws, playwright-core).
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
if [ -x $PY ] && { ! have_websockets || ! have_autobahn; }; then
    apt_install python3-websockets python3-autobahn python3-twisted
elif [ ! -x $PY ]; then
    apt_install python3 python3-websockets python3-autobahn python3-twisted
fi
py_ok=1 ab_ok=1
why_py="" why_ab=""
if [ ! -x $PY ]; then
    py_ok=0 ab_ok=0 why_py="$PY not found" why_ab="$PY not found"
else
    have_websockets || { py_ok=0; why_py="python3-websockets not importable by $PY (apt-get install python3-websockets)"; }
    have_autobahn || { ab_ok=0; why_ab="python3-autobahn/python3-twisted not importable by $PY"; }
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

# One build/chat for both clients, under valgrind memcheck when there is one
# (tests/run.sh installs it): it must survive them and exit 0 on SIGTERM,
# which it does not with a memory error or a leak.
# The Python client also stops a second build/chat with SIGTERM while it is
# connected (it must see 1001); that one must then exit 0 too.
chat_vg=""
if command -v valgrind >/dev/null 2>&1; then
    chat_vg="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect"
elif [ "${CI:-}" = true ]; then
    fail "chat under valgrind (missing dependency under CI: valgrind)"
fi
if [ ! -x $BUILD/chat ]; then
    fail "$BUILD/chat is missing (make $BUILD/chat)"
elif start_server chat $chat_vg $BUILD/chat --host 127.0.0.1; then
    chat_pid=$server_pid chat_url=$server_url
    if [ $py_ok = 1 ]; then
        if start_server chat2 $BUILD/chat --host 127.0.0.1; then
            run_checks "chat <- Python websockets" $PY $HERE/chat_test.py "$chat_url" \
                --sigterm-url "$server_url" --sigterm-pid "$server_pid"
            # it had its SIGTERM from the client: up to 5 s to exit by itself
            for i in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.05; done
            if kill -0 "$server_pid" 2>/dev/null; then
                stop_pid "$server_pid"
                fail "chat: still running 5 s after SIGTERM with clients connected"
            else
                stop_pid "$server_pid"
                if [ "$stop_status" = 0 ]; then pass "chat: exits 0 after SIGTERM with clients connected"
                else fail "chat: exit status after SIGTERM with clients connected: $stop_status"
                     sed 's/^/      /' "$tmp/chat2.err" | tail -20; fi
            fi
        else
            fail "chat: the second build/chat did not start: $server_error"
        fi
    else
        skip "chat <- Python websockets" "$why_py"
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

if [ $skipped -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"
else echo "$passed passed, $failed failed"; fi
[ $failed -eq 0 ]
