#!/usr/bin/env bash
# Installs what the tests need beyond a C compiler, from Debian's registry.
# Usage: tools/deps.sh NAME...   NAME is one of: clang libfuzzer valgrind
#        redis (redis-server) nats (nats-server) msgpack (python3-msgpack,
#        for Debian's /usr/bin/python3, the MessagePack interop peer)
#        cppcheck (static analysis)
# Prints nothing and exits 0 when everything is present; exits 1 (with the
# reason on stderr) when something is missing and cannot be installed.
set -u

have_clang() { command -v clang >/dev/null 2>&1 && command -v clang++ >/dev/null 2>&1; }
have_libfuzzer() {
    local d; d=$(mktemp -d) || return 1
    printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$d/f.c"
    clang -fsanitize=fuzzer,address "$d/f.c" -o "$d/f" >/dev/null 2>&1
    local rc=$?; rm -rf "$d"; return $rc
}
# Debian puts some servers in /usr/sbin, which is not on every user's PATH.
have_server() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
# /usr/bin/python3: the one Debian's python3-* packages install for (a
# python3 earlier on PATH, from pyenv or a venv, may not see them).
have_msgpack() { /usr/bin/python3 -c 'import msgpack' >/dev/null 2>&1; }

apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "cannot install $* (needs root and apt-get)" >&2
        return 1
    fi
    if [ -z "${ZK_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1
        export ZK_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 ||
        { echo "apt-get install $* failed" >&2; return 1; }
}

status=0
for want in "$@"; do
    case "$want" in
    clang) have_clang || apt_install clang || status=1
           have_clang || { echo "clang is not available" >&2; status=1; } ;;
    libfuzzer) have_libfuzzer || apt_install clang libclang-rt-dev || status=1
               have_libfuzzer || { echo "libFuzzer (clang -fsanitize=fuzzer) is not available" >&2; status=1; } ;;
    valgrind) command -v valgrind >/dev/null 2>&1 || apt_install valgrind || status=1
              command -v valgrind >/dev/null 2>&1 || { echo "valgrind is not available" >&2; status=1; } ;;
    redis) have_server redis-server || apt_install redis-server || status=1
           have_server redis-server || { echo "redis-server is not available" >&2; status=1; } ;;
    nats) have_server nats-server || apt_install nats-server || status=1
          have_server nats-server || { echo "nats-server is not available" >&2; status=1; } ;;
    msgpack) have_msgpack || apt_install python3-msgpack || status=1
             have_msgpack || { echo "python3-msgpack is not available" >&2; status=1; } ;;
    cppcheck) command -v cppcheck >/dev/null 2>&1 || apt_install cppcheck || status=1
              command -v cppcheck >/dev/null 2>&1 || { echo "cppcheck is not available" >&2; status=1; } ;;
    *) echo "deps.sh: unknown dependency $want" >&2; status=1 ;;
    esac
done
exit $status
