#!/usr/bin/env python3
"""Builds zocket.h from the parts in src/.

The parts are listed below in the order they appear in the shipped header.
Local includes (#include "...") are stripped: they exist so each part can be
edited and checked on its own. The output depends only on the parts, so it is
byte-identical on every run.

  tools/amalgamate.py            write zocket.h
  tools/amalgamate.py --check    exit 1 if the committed zocket.h differs
  tools/amalgamate.py --lines F  write a debug copy to F with #line directives
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PARTS = [
    # declarations (inside the include guard)
    "src/zocket_head.h",
    "src/common.h",
    "src/http.h",
    "src/ws.h",
    "src/loop.h",
    "src/net.h",
    "src/value.h",
    "src/app.h",
    "src/client.h",
    "src/broker.h",
    # implementation (under ZOCKET_IMPLEMENTATION)
    "src/impl_begin.h",
    "src/common.c",
    "src/sha1.c",
    "src/base64.c",
    "src/utf8.c",
    "src/http.c",
    "src/ws.c",
    "src/loop.c",
    "src/net.c",
    "src/json.c",
    "src/msgpack.c",
    "src/app.c",
    "src/client.c",
    "src/broker.c",
    "src/impl_end.h",
]

LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s+"[^"]+"\s*$')


def build(with_lines):
    out = []
    for part in PARTS:
        with open(os.path.join(ROOT, part), encoding="utf-8") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if with_lines:
            out.append('#line 1 "%s"' % part)
        for number, line in enumerate(lines, 1):
            if LOCAL_INCLUDE.match(line):
                if with_lines:
                    out.append("")
                continue
            out.append(line.rstrip())
    return "\n".join(out) + "\n"


def main(argv):
    target = os.path.join(ROOT, "zocket.h")
    if len(argv) == 2 and argv[1] == "--check":
        text = build(False)
        try:
            with open(target, encoding="utf-8") as f:
                current = f.read()
        except OSError:
            current = None
        if current != text:
            sys.stderr.write("zocket.h is out of date: run tools/amalgamate.py\n")
            return 1
        return 0
    if len(argv) == 3 and argv[1] == "--lines":
        with open(argv[2], "w", encoding="utf-8", newline="\n") as f:
            f.write(build(True))
        return 0
    if len(argv) == 1:
        text = build(False)
        with open(target, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
