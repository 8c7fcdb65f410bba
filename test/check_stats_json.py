#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check the statistics printer's JSON with a real parser (test/stats_json.c).

usage: check_stats_json.py STATS_JSON_EXE one|all|exit-json|exit-text|exit-off
"""
import json
import os
import subprocess
import sys

STAT_KEYS = ["acquires", "releases", "hits", "misses", "hit_rate", "grows", "trims",
             "failed", "blocks_total", "blocks_outstanding", "bytes_reserved",
             "depot_gets", "depot_puts", "steals", "threads", "bytes_returned",
             "magazines", "errors", "reclaims", "spilled"]
POOL_KEYS = ["name", "address", "block_size", "backend", "max_blocks", "magazine_size",
             "layer", "diagnostics", "stats"]
# stats_json.c's odd_name, as a JSON parser must read it back: escapes
# undone, well-formed UTF-8 kept, every other byte U+FFFD.
ODD_NAME = 'q"b\\\n\t\x01\u00e9\u20ac\U0001F600' + "\ufffd" * 3 + "z" + "\ufffd"


def fail(msg, out=""):
    print("FAIL:", msg)
    if out:
        print("--- output ---")
        print(out)
    sys.exit(1)


def run(exe, mode, show=None):
    env = {k: v for k, v in os.environ.items() if k != "MAGPOOL_SHOW_STATS"}
    if show is not None:
        env["MAGPOOL_SHOW_STATS"] = show
    r = subprocess.run([exe, mode], env=env, capture_output=True, timeout=60)
    if r.returncode != 0:
        fail(f"{mode} exited {r.returncode}", r.stdout.decode(errors="replace")
             + r.stderr.decode(errors="replace"))
    return r.stdout, r.stderr


def parse_all(data, what):
    """Every JSON document in data, in order (strict UTF-8, strict JSON)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        fail(f"{what}: not UTF-8: {e}", repr(data))
    dec, docs, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return docs
        try:
            doc, i = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            fail(f"{what}: invalid JSON: {e}", text)
        docs.append(doc)


def check_pool(p):
    if list(p) != POOL_KEYS:
        fail(f"pool keys {list(p)}")
    s = p["stats"]
    if list(s) != STAT_KEYS:
        fail(f"stats keys {list(s)}")
    for k in STAT_KEYS:
        want = float if k == "hit_rate" else int
        if type(s[k]) is not want or s[k] < 0:
            fail(f"{p['name']!r}: {k} = {s[k]!r}")
    if s["acquires"] - s["releases"] != s["blocks_outstanding"]:
        fail(f"{p['name']!r}: acquires - releases != blocks_outstanding: {s}")
    rate = s["hits"] / s["acquires"] if s["acquires"] else 0.0
    if abs(s["hit_rate"] - rate) > 1e-6:
        fail(f"{p['name']!r}: hit_rate {s['hit_rate']} != hits/acquires {rate}")
    if p["backend"] not in ("lockfree", "mutex") or not p["address"].startswith("0x"):
        fail(f"pool {p}")
    if not isinstance(p["diagnostics"], list):
        fail(f"diagnostics {p['diagnostics']!r}")


def by_name(pools):
    return {p["name"]: p for p in pools}


def main():
    exe, mode = sys.argv[1], sys.argv[2]
    if mode == "one":
        out, _ = run(exe, "one")
        lines = out.splitlines()
        if len(lines) != 2:
            fail("want one line per pool", out.decode(errors="replace"))
        pools = [parse_all(line, "one")[0] for line in lines]
        for p in pools:
            check_pool(p)
        a, b = pools
        if a["name"] != ODD_NAME:
            fail(f"name read back as {a['name']!r}, want {ODD_NAME!r}")
        if a["stats"]["blocks_outstanding"] != 3 or a["backend"] != "lockfree" \
                or a["layer"] is not None or a["block_size"] != 64:
            fail(f"pool a {a}")
        if b["backend"] != "mutex" or "checked" not in b["diagnostics"] \
                or b["stats"]["releases"] != 3:
            fail(f"pool b {b}")
    elif mode == "all":
        out, _ = run(exe, "all")
        docs = parse_all(out, "all")
        if len(docs) != 1 or not isinstance(docs[0], list):
            fail("want one array", out.decode())
        for p in docs[0]:
            check_pool(p)
        names = [p["name"] for p in docs[0]]
        pools = by_name(docs[0])
        for n in ("plain", "mutex", "checked", ODD_NAME):
            if n not in pools:
                fail(f"{n!r} missing from {names}")
        if "gone" in pools:
            fail(f"a destroyed pool is listed: {names}")
        if names.index("plain") > names.index("checked"):
            fail(f"not oldest first: {names}")
        layers = [p["layer"] for p in docs[0]]
        if layers.count("objpool") != 1 or layers.count("bufmgr") != 1:
            fail(f"layers {layers}")
        if pools["plain"]["stats"]["blocks_outstanding"] != 6:
            fail(f"plain {pools['plain']}")
    elif mode in ("exit-json", "exit-text", "exit-off"):
        show = {"exit-json": "json", "exit-text": "1", "exit-off": None}[mode]
        _, err = run(exe, "exit", show)
        if mode == "exit-off":
            if err:
                fail("MAGPOOL_SHOW_STATS unset, yet stderr got", err.decode())
            _, err = run(exe, "exit", "0")
            if err:
                fail("MAGPOOL_SHOW_STATS=0, yet stderr got", err.decode())
            return
        if mode == "exit-text":
            txt = err.decode()
            # the child that created a pool, then the parent; not the other child
            if txt.count('magpool: pool "exit-a"') != 2 or txt.count('"child-own"') != 1 \
                    or "exit-gone" in txt or "magpool:   hit_rate" not in txt:
                fail("text report", txt)
            return
        docs = parse_all(err, "exit-json")
        if len(docs) != 2:
            fail(f"want 2 reports (child with a pool of its own, parent), got {len(docs)}",
                 err.decode())
        child, parent = (by_name(d) for d in docs)
        for d in docs:
            for p in d:
                check_pool(p)
        if set(child) != {"exit-a", "exit-b", "child-own"}:
            fail(f"child's report: {sorted(child)}")
        if set(parent) != {"exit-a", "exit-b"}:
            fail(f"parent's report: {sorted(parent)}")
        if parent["exit-a"]["stats"]["blocks_outstanding"] != 2:
            fail(f"exit-a {parent['exit-a']}")
    else:
        fail(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
    print("ok")
