#!/usr/bin/env bash
# MessagePack against JSON in zocket.h, and msgpack-c as the peer on the
# same MessagePack bytes, in one run (about 20 s).
#
#   bash bench/run_codec.sh [--seconds S] [--no-install]
#
# 1. build/bench_codec: per payload (rpc, chat, game, numbers, text; see
#    bench/bench_codec.c), the size in each codec and ns to decode and to
#    encode with zk_json_parse / zk_msgpack_parse and zk_write_value.
# 2. msgpack-c (Debian's libmsgpack-dev, installed when missing unless
#    --no-install; SKIPPED when it cannot be): bench/peers/msgpackc_codec.c
#    decodes and encodes the MessagePack bytes bench_codec wrote.
# 3. build/bench_client: calls/s through zk_client to a zk_app in one
#    process over loopback, with JSON and with MessagePack on the wire.
# Best of 5 repetitions each; pinned to core 0 with taskset when there is
# more than one core. The table is also written to build/codec_bench/table.md.
set -u
cd "$(dirname "$0")/.." || exit 1
SECS=1.5
INSTALL=1
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) SECS=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    *) echo "usage: $0 [--seconds S] [--no-install]" >&2; exit 2 ;;
    esac
done
out=build/codec_bench
mkdir -p "$out"
pin=""
[ "$(nproc)" -gt 1 ] && command -v taskset >/dev/null 2>&1 && pin="taskset -c 0"

make -s build/bench_codec build/bench_client || exit 1
$pin build/bench_codec --seconds "$SECS" --dump "$out" | tee "$out/zocket.txt"

have_msgpackc() { [ -e /usr/include/msgpack.h ] && { [ -e /usr/lib/x86_64-linux-gnu/libmsgpackc.so ] || ls /usr/lib/*/libmsgpackc.so >/dev/null 2>&1; }; }
if ! have_msgpackc && [ $INSTALL = 1 ] && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmsgpack-dev >/dev/null 2>&1
fi
echo
if have_msgpackc && cc -O2 -march=native bench/peers/msgpackc_codec.c -lmsgpackc -o "$out/msgpackc_codec" 2>"$out/peer.err"; then
    ver=$(dpkg-query -W -f='${Version}' libmsgpack-dev 2>/dev/null || echo "?")
    echo "peer: msgpack-c (libmsgpack-dev $ver), the same MessagePack bytes"
    printf '%-8s %8s | %9s %9s | %9s %9s\n' payload "mpack B" "dec zk" "dec peer" "enc zk" "enc peer"
    $pin "$out/msgpackc_codec" "$out" rpc chat game numbers text > "$out/peer.txt" || echo "peer failed"
    while read -r name bytes dec enc _; do
        zk=$(awk -v n="$name" '$1 == n {print $7, $13}' "$out/zocket.txt")
        printf '%-8s %8s | %7sns %7sns | %7sns %7sns\n' "$name" "$bytes" "$(echo "$zk" | awk '{print $1}' | tr -d ns)" "$dec" \
            "$(echo "$zk" | awk '{print $2}' | tr -d ns)" "$enc"
    done < "$out/peer.txt"
else
    echo "SKIPPED msgpack-c: libmsgpack-dev not installed (apt-get install libmsgpack-dev)"
fi
echo
$pin build/bench_client --seconds "$SECS" | grep "calls in flight"
