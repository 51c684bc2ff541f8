#!/usr/bin/env bash
# Runs every test of zocket.h and ends with "N passed, N failed[, N skipped]".
# Under CI=true nothing may be skipped: a missing dependency is a failure.
# FUZZ_SMOKE_RUNS sets how many inputs each fuzzer tries (default 20000).
set -u
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
BUILD=build
mkdir -p "$BUILD"
passed=0 failed=0 skipped=0
log="$BUILD/test.log"
: > "$log"

pass() { passed=$((passed + ${2:-1})); printf 'ok    %s\n' "$1"; }
fail() { failed=$((failed + ${2:-1})); printf 'FAIL  %s\n' "$1"; }
skip() {
    if [ "${CI:-}" = true ]; then fail "$1 (missing dependency under CI: $2)"
    else skipped=$((skipped + 1)); printf 'SKIP  %s: %s\n' "$1" "$2"; fi
}
# step NAME CMD...: one counted test that passes when CMD exits 0.
step() {
    local name=$1; shift
    if out=$("$@" 2>&1); then pass "$name"; else fail "$name"; printf '%s\n' "$out" | tail -30; fi
    printf '== %s\n%s\n' "$name" "$out" >> "$log"
}

# 1. The shipped header matches its parts (before anything regenerates it).
step "amalgamation is up to date" python3 tools/amalgamate.py --check

# 2. Dependencies beyond gcc.
deps_clang=1; deps_fuzz=1
tools/deps.sh clang 2>>"$log" || deps_clang=0
tools/deps.sh libfuzzer 2>>"$log" || deps_fuzz=0
# test_cluster starts redis-server and nats-server itself; when one is still
# missing, its tests say SKIPPED (a failure under CI=true)
tools/deps.sh redis nats 2>>"$log" || echo "note: redis-server or nats-server missing (see $log)"
# test_msgpack's interop tests read and write through Debian's python3-msgpack;
# when it is missing they say SKIPPED (a failure under CI=true)
tools/deps.sh msgpack 2>>"$log" || echo "note: python3-msgpack missing (see $log)"

# 3. Compile checks: the header alone, as C99 and as C++, gcc and clang.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '#define ZOCKET_IMPLEMENTATION\n#include "zocket.h"\nint main(void) { return zk_strerror(ZK_OK) == 0; }\n' > "$tmp/impl.c"
cp "$tmp/impl.c" "$tmp/impl.cpp"
printf '#include "zocket.h"\nint main(void) { return 0; }\n' > "$tmp/decl.c"
W="-Wall -Wextra -Werror -pedantic -Wundef -Wshadow"
compile_set() { # compiler family: gcc | clang
    local cc=$1 cxx=$2
    step "$cc: header as C99"        $cc  -std=c99 $W -I. -c "$tmp/impl.c" -o "$tmp/$cc-c.o"
    step "$cc: declarations only"    $cc  -std=c99 $W -I. -c "$tmp/decl.c" -o "$tmp/$cc-d.o"
    step "$cxx: header as C++98"     $cxx -std=c++98 -Wno-long-long $W -I. -c "$tmp/impl.cpp" -o "$tmp/$cc-cpp98.o"
    step "$cxx: header as C++17"     $cxx -std=c++17 $W -I. -c "$tmp/impl.cpp" -o "$tmp/$cc-cpp.o"
    step "$cc: two files with ZK_STATIC" \
        $cc -std=c99 $W -I. tests/static_a.c tests/static_b.c -o "$tmp/$cc-static"
    step "$cc: two files with ZK_STATIC run" "$tmp/$cc-static"
}
compile_set gcc g++
if [ $deps_clang = 1 ]; then compile_set clang clang++; else skip "clang compile checks" "clang not installed"; fi
symbols() {
    local bad
    bad=$(nm -g --defined-only "$tmp/gcc-c.o" | awk '{print $3}' | grep -v '^zk_' | grep -v '^main$')
    [ -z "$bad" ] || { echo "exported without the zk_ prefix: $bad"; return 1; }
    bad=$(nm -g --defined-only "$tmp/gcc-cpp.o" | awk '{print $3}' | grep -v '^zk_' | grep -v '^main$')
    [ -z "$bad" ] || { echo "C++: exported without the zk_ prefix: $bad"; return 1; }
}
step "only zk_ symbols are exported" symbols

# Static analysis: cppcheck's warnings over the whole implementation. Each
# finding it cannot see through is suppressed where it is, with the reason.
if tools/deps.sh cppcheck 2>>"$log"; then
    step "cppcheck: no warnings" cppcheck --enable=warning,portability --std=c99 -q \
        -DZOCKET_IMPLEMENTATION --inline-suppr --error-exitcode=1 zocket.h
else
    skip "cppcheck" "cppcheck not installed"
fi

# clang's static analyzer over the implementation, the header included (by
# default it skips functions in headers, that is all of zocket.h). It takes
# a few minutes of one core, so it runs beside the tests and is collected
# at the end.
analyzer_pid=
if [ $deps_clang = 1 ]; then
    printf '#define ZOCKET_IMPLEMENTATION\n#include "zocket.h"\n' > "$tmp/analyze.c"
    ( clang --analyze -Xclang -analyzer-opt-analyze-headers --analyzer-output text -std=c99 -I. \
        "$tmp/analyze.c" -o /dev/null > "$tmp/analyzer.txt" 2>&1; echo $? > "$tmp/analyzer.rc" ) &
    analyzer_pid=$!
else
    skip "clang static analyzer" "clang not installed"
fi
analyzer_clean() {
    cat "$tmp/analyzer.txt"
    [ "$(cat "$tmp/analyzer.rc" 2>/dev/null)" = 0 ] && ! grep -q 'warning:' "$tmp/analyzer.txt"
}

# 4. Build the unit tests (ASan + UBSan), examples and benchmarks.
if ! make -s all >"$BUILD/make.log" 2>&1; then
    fail "build"; tail -40 "$BUILD/make.log"
fi

# 5. Unit tests: each binary reports its own "N passed, N failed". They run
#    built by gcc and by clang, each with ASan and UBSan; the loop and
#    connection tests also run on every poller backend.
unit() { # unit LABEL BINARY [VAR=VALUE...]
    local label=$1 bin=$2 out rc line p f s; shift 2
    if [ "$bin" = valgrind ]; then
        out=$(valgrind "$@" 2>&1); rc=$?
    else
        if [ ! -x "$bin" ]; then fail "$label (not built)"; return; fi
        out=$(env "$@" "$bin" 2>&1); rc=$?
    fi
    printf '== %s\n%s\n' "$label" "$out" >> "$log"
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
    if [ -z "$line" ]; then
        fail "$label (crashed, exit $rc)"; printf '%s\n' "$out" | tail -30; return
    fi
    p=$(echo "$line" | awk '{print $1}'); f=$(echo "$line" | awk '{print $3}' | tr -d ,)
    s=$(echo "$line" | sed -n 's/.*, \([0-9]*\) skipped.*/\1/p') # a test whose dependency is missing
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + ${s:-0}))
    printf '%s\n' "$out" | grep '^SKIPPED' | sed "s/^SKIPPED /SKIP  $label: /"
    if [ "$f" = 0 ]; then printf 'ok    %s (%s tests)\n' "$label" "$p"
    else printf 'FAIL  %s\n' "$label"; printf '%s\n' "$out" | grep -v '^ok ' | tail -40; fi
}
if [ $deps_clang = 1 ] && ! make -s clang-tests >>"$BUILD/make.log" 2>&1; then
    fail "build (clang)"; tail -40 "$BUILD/make.log"
fi
if ! make -s kqueue-tests >>"$BUILD/make.log" 2>&1; then
    fail "build (kqueue shim)"; tail -40 "$BUILD/make.log"
fi
for t in tests/test_*.c; do
    [ -e "$t" ] || continue
    name=$(basename "$t" .c)
    unit "$name" "$BUILD/$name"
    [ $deps_clang = 1 ] && unit "$name (clang)" "$BUILD/clang/$name"
    case $name in test_loop|test_net)
        unit "$name (poll)" "$BUILD/$name" ZK_TEST_POLLER=poll
        unit "$name (kqueue)" "$BUILD/kqueue/$name" ZK_TEST_POLLER=kqueue ;;
    test_client|test_app) # again with the clients speaking MessagePack
        unit "$name (msgpack)" "$BUILD/$name" ZK_TEST_CODEC=msgpack ;;
    esac
done

# The tests that post from other threads (zk_loop_post), under ThreadSanitizer.
if [ $deps_clang = 1 ] && [ -e tests/test_loop.c ]; then
    if make -s tsan-tests >>"$BUILD/make.log" 2>&1; then
        unit "test_loop (tsan)" "$BUILD/tsan/test_loop" TSAN_OPTIONS=halt_on_error=1
        unit "test_loop (tsan, poll)" "$BUILD/tsan/test_loop" TSAN_OPTIONS=halt_on_error=1 ZK_TEST_POLLER=poll
        unit "test_loop (tsan, kqueue)" "$BUILD/tsan/kqueue/test_loop" TSAN_OPTIONS=halt_on_error=1 ZK_TEST_POLLER=kqueue
        unit "test_app (tsan)" "$BUILD/tsan/test_app" TSAN_OPTIONS=halt_on_error=1
    else
        fail "build (tsan)"; tail -40 "$BUILD/make.log"
    fi
fi

# The socket tests again under valgrind memcheck (no sanitizers there).
if tools/deps.sh valgrind 2>>"$log"; then
    if make -s valgrind-tests >>"$BUILD/make.log" 2>&1; then
        for t in tests/test_loop.c tests/test_net.c tests/test_cluster.c; do
            [ -e "$t" ] || continue
            name=$(basename "$t" .c)
            unit "$name (valgrind)" valgrind -q --error-exitcode=99 --leak-check=full \
                --errors-for-leak-kinds=definite,indirect "$BUILD/plain/$name"
        done
    else
        fail "build (valgrind tests)"; tail -40 "$BUILD/make.log"
    fi
else
    skip "valgrind runs" "valgrind not installed"
fi

# 6. Fuzzers, briefly: each must survive its seed corpus and fresh inputs.
if [ $deps_fuzz = 1 ]; then
    for f in tests/fuzz/fuzz_*.c; do
        [ -e "$f" ] || continue
        name=$(basename "$f" .c); short=${name#fuzz_}
        if ! make -s "$BUILD/$name" >>"$BUILD/make.log" 2>&1; then fail "$name (build)"; continue; fi
        mkdir -p "$BUILD/corpus/$short"
        step "$name: ${FUZZ_SMOKE_RUNS:-20000} runs" "$BUILD/$name" -runs="${FUZZ_SMOKE_RUNS:-20000}" \
            -seed=1 -artifact_prefix="$BUILD/" "$BUILD/corpus/$short" "tests/fuzz/corpus/$short"
    done
else
    skip "fuzzers" "libFuzzer not available (clang with libclang-rt)"
fi

# 7. Interop against independent peers (Python websockets, Node ws,
#    Autobahn|Python). tests/interop/run.sh installs the peers it needs and
#    ends with its own "N passed, N failed[, N skipped]".
if make -s "$BUILD/echo" "$BUILD/gameloop" "$BUILD/interop_client" "$BUILD/chat" "$BUILD/zkcat" \
    "$BUILD/restart_test" "$BUILD/herd_test" "$BUILD/slowloris" >>"$BUILD/make.log" 2>&1; then
    out=$(timeout 600 bash tests/interop/run.sh 2>&1); rc=$?
    printf '== interop\n%s\n' "$out" >> "$log"
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
    if [ -z "$line" ]; then
        fail "interop (no summary, exit $rc)"; printf '%s\n' "$out" | tail -30
    else
        p=$(echo "$line" | awk '{print $1}'); f=$(echo "$line" | awk '{print $3}' | tr -d ,)
        s=$(echo "$line" | sed -n 's/.*, \([0-9]*\) skipped.*/\1/p')
        if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
        passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + ${s:-0}))
        printf '%s\n' "$out" | grep '^SKIP'
        if [ "$f" = 0 ]; then printf 'ok    interop (%s tests)\n' "$p"
        else printf 'FAIL  interop\n'; printf '%s\n' "$out" | grep '^FAIL' | tail -40; fi
    fi
else
    fail "interop (build)"; tail -40 "$BUILD/make.log"
fi

if [ -n "$analyzer_pid" ]; then
    wait "$analyzer_pid"
    step "clang static analyzer: no warnings" analyzer_clean
fi

if [ $skipped -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"
else echo "$passed passed, $failed failed"; fi
[ $failed -eq 0 ]
