#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The live view's tools as a person uses them (docs/live-view.md):
#
#   top-keys     magpool-top in a tmux pane on a running magpool-demo: the
#                screen shows the pools sorted by reserved memory; keys n
#                (name, ascending), n again (descending), o, then q quits
#                with status 0. Assertions are on the captured screen.
#   top-vanish   the watched process exits mid-view: magpool-top leaves the
#                screen with "process N exited" and status 1, no hang.
#   record-plot  magpool-record writes JSON lines (two readers at once, each
#                gets its own whole snapshots), stops when the process exits;
#                magpool-plot draws a PNG; both refuse bad files.
#   bad-input    a PID that is not a magpool process, no such process, not a
#                number, a segment of another layout version, a stale segment
#                of a dead process (--list says so, --clean removes it), no
#                terminal: a clear message and a non-zero status each.
#
# Usage: test_tools.sh CASE   (env: TOOLS = the build's tools/ directory)
set -uo pipefail

CASE=${1:?case}
TOOLS=${TOOLS:?TOOLS must name the build\'s tools directory}
PY=/usr/bin/python3
DEMO="$TOOLS/magpool-demo"
TOP=("$PY" "$TOOLS/magpool-top")
RECORD=("$PY" "$TOOLS/magpool-record")
PLOT=("$PY" "$TOOLS/magpool-plot")
WORK=$(mktemp -d)
SOCK="magpool-test-$$"
PIDS=()
fails=0

cleanup() {
  tmux -L "$SOCK" kill-server 2>/dev/null
  # magpool-demo ends cleanly on SIGTERM (its segment goes with it); the
  # rm is for a demo that could not (a crash): no litter in /dev/shm.
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  for p in "${PIDS[@]}"; do rm -f "/dev/shm/magpool.$p"; done
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}

# Start the demo in the background; DEMO_PID is its pid once it publishes.
start_demo() {
  "$DEMO" --seconds "$1" --publish-ms 100 >"$WORK/demo.out" 2>&1 &
  DEMO_PID=$!
  PIDS+=("$DEMO_PID")
  for _ in $(seq 100); do
    [ -e "/dev/shm/magpool.$DEMO_PID" ] && return 0
    sleep 0.05
  done
  echo "magpool-demo did not start publishing:"; cat "$WORK/demo.out"; exit 1
}

# -S -: with the history, where lines printed after curses has left may
# have scrolled to (tmux 3.3 scrolls the pane when it dies)
screen() { tmux -L "$SOCK" capture-pane -p -S - -t view; }

# Wait until the pane shows a line matching $1 (up to 10 s).
wait_screen() {
  for _ in $(seq 100); do
    screen | grep -q -- "$1" && return 0
    sleep 0.1
  done
  echo "--- screen (waiting for '$1'):"; screen; echo "---"
  return 1
}

# Names of the pool rows, top to bottom (the lines after the header).
rows() { screen | awk '/^NAME /{on=1; next} on && NF {print $1}'; }

# The exit status the pane's shell printed after magpool-top ended, as a
# person sees it; "alive" if magpool-top has not ended within 10 s.
pane_dead_status() {
  for _ in $(seq 100); do
    local s
    s=$(screen | sed -n 's/^\[magpool-top ended: status \([0-9]*\)\]$/\1/p' | tail -1)
    [ -n "$s" ] && { echo "$s"; return 0; }
    sleep 0.1
  done
  echo "alive"
}

open_view() { # open_view PID: magpool-top in a 200x30 tmux pane
  local cmd="env LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=xterm ${TOP[*]} -d 0.2 $1"
  tmux -L "$SOCK" -f /dev/null new-session -d -s view -x 200 -y 30 \
    "$cmd; echo \"[magpool-top ended: status \$?]\"; sleep 60"
}

# plant_segment PID VERSION START_TIME: a segment header as a publisher of
# that layout version would have written it (lib/pubseg.h), no snapshot.
plant_segment() {
  "$PY" - "$@" <<'EOF'
import struct, sys
pid, version, start = (int(a) for a in sys.argv[1:4])
words = [0x004C4F4F5047414D, version, 128, 320, pid, start] + [0] * 10
open("/dev/shm/magpool.%d" % pid, "wb").write(struct.pack("<16Q", *words) + bytes(320))
EOF
}

case "$CASE" in
top-keys)
  start_demo 30
  open_view "$DEMO_PID"
  check "the view shows the process and its pools" wait_screen "magpool-top - pid $DEMO_PID - 4 pools"
  check "default sort: reserved, descending" wait_screen "sorted by RESERVED (descending)"
  wait_screen "ACQ/s" >/dev/null
  sleep 0.6  # two refreshes: rates and sparklines have data
  r=$(rows | tr '\n' ' ')
  check "orders, with the most reserved, is the first row ($r)" test "${r%% *}" = orders
  check "a rate per second is shown for orders" \
    sh -c "tmux -L $SOCK capture-pane -p -t view | grep '^orders' | awk '{exit !(\$7 ~ /[0-9]k\$/)}'"
  check "sparklines are drawn" sh -c "tmux -L $SOCK capture-pane -p -t view | grep -q '[▁▂▃▄▅▆▇█]'"
  tmux -L "$SOCK" send-keys -t view n
  check "key n: sorted by name, ascending" wait_screen "sorted by NAME (ascending)"
  r=$(rows | tr '\n' ' ')
  check "rows by name ascending ($r)" test "$r" = "fills idle-0 idle-1 orders "
  tmux -L "$SOCK" send-keys -t view n
  check "n again: descending" wait_screen "sorted by NAME (descending)"
  r=$(rows | tr '\n' ' ')
  check "rows by name descending ($r)" test "$r" = "orders idle-1 idle-0 fills "
  tmux -L "$SOCK" send-keys -t view o
  check "key o: sorted by outstanding" wait_screen "sorted by OUTST (descending)"
  tmux -L "$SOCK" send-keys -t view q
  st=$(pane_dead_status)
  check "q quits with status 0 (got $st)" test "$st" = 0
  ;;
top-vanish)
  start_demo 2
  open_view "$DEMO_PID"
  check "the view shows the pools" wait_screen "magpool-top - pid $DEMO_PID"
  st=$(pane_dead_status)
  [ "$st" = alive ] && { sleep 3; st=$(pane_dead_status); }
  check "magpool-top ends when the process does, status 1 (got $st)" test "$st" = 1
  check "and says why" wait_screen "magpool-top: process $DEMO_PID exited"
  ;;
record-plot)
  start_demo 3
  "${RECORD[@]}" "$DEMO_PID" -o "$WORK/a.jsonl" 2>"$WORK/a.err" &
  ra=$!
  "${RECORD[@]}" "$DEMO_PID" -o "$WORK/b.jsonl" --interval 0.05 2>"$WORK/b.err" &
  rb=$!
  wait "$ra"; sa=$?
  wait "$rb"; sb=$?
  check "two recorders at once both end with status 0 when the process exits ($sa, $sb)" \
    test "$sa$sb" = 00
  check "and say why they stopped" grep -q "stopped: process $DEMO_PID exited" "$WORK/a.err"
  wait "$DEMO_PID"; sd=$?
  check "the published process itself exited cleanly (status $sd; ASan: no leak)" test "$sd" = 0
  check "each line is a whole snapshot with the demo's pools" "$PY" - "$WORK/a.jsonl" "$WORK/b.jsonl" <<'EOF'
import json, sys
for path in sys.argv[1:]:
    lines = [json.loads(l) for l in open(path)]
    assert len(lines) >= 10, (path, len(lines))
    seqs = [s["snapshot"] for s in lines]
    assert seqs == sorted(set(seqs)), "snapshots repeated or out of order"
    for s in lines:
        names = sorted(p["name"] for p in s["pools"])
        assert names == ["fills", "idle-0", "idle-1", "orders"], names
        for p in s["pools"]:
            assert p["hits"] + p["misses"] == p["acquires"] or p["acquires"] >= p["hits"], p
            assert p["blocks_outstanding"] <= p["blocks_total"], p
    assert any(p["acquires"] > 0 for s in lines for p in s["pools"] if p["name"] == "orders")
EOF
  check "magpool-plot draws a PNG" "${PLOT[@]}" "$WORK/a.jsonl" -o "$WORK/a.png"
  check "which is a PNG of some size" sh -c "head -c 8 '$WORK/a.png' | od -An -tx1 | grep -q '89 50 4e 47' && [ \$(stat -c %s '$WORK/a.png') -gt 20000 ]"
  : >"$WORK/empty.jsonl"
  "${PLOT[@]}" "$WORK/empty.jsonl" -o "$WORK/e.png" 2>"$WORK/e.err"
  check "an empty file is refused with a message" sh -c "[ $? -ne 0 ] && grep -q 'no snapshots' '$WORK/e.err'"
  printf '{"pid": 1}\nnot json\n' >"$WORK/bad.jsonl"
  "${PLOT[@]}" "$WORK/bad.jsonl" -o "$WORK/b.png" 2>"$WORK/bad.err"
  check "a line that is not a magpool-record line is named" sh -c "[ $? -ne 0 ] && grep -q 'bad.jsonl:1: not a magpool-record line' '$WORK/bad.err'"
  "${PLOT[@]}" "$WORK/nothere.jsonl" -o "$WORK/n.png" 2>"$WORK/n.err"
  check "a missing file is refused" sh -c "[ $? -ne 0 ] && grep -q 'cannot read' '$WORK/n.err'"
  "${RECORD[@]}" "$DEMO_PID" -c 1 2>"$WORK/gone.err" >/dev/null
  check "recording a process that is gone fails with a message" sh -c "[ $? -eq 1 ] && grep -q 'no process $DEMO_PID' '$WORK/gone.err'"
  ;;
bad-input)
  sleep 30 &
  other=$!
  PIDS+=("$other")
  "${TOP[@]}" -b "$other" 2>"$WORK/1.err"; s=$?
  check "a process without magpool: status 1 ($s)" test "$s" = 1
  check "and a message naming it" grep -q "process $other (sleep) publishes no magpool state" "$WORK/1.err"
  "${TOP[@]}" -b 4194000 2>"$WORK/2.err"; s=$?
  check "no such process: status 1 ($s) and a message" sh -c "[ $s = 1 ] && grep -q 'no process 4194000' '$WORK/2.err'"
  "${TOP[@]}" -b 12abc 2>"$WORK/3.err"; s=$?
  check "not a number: status 2 ($s)" sh -c "[ $s = 2 ] && grep -q 'not a process id' '$WORK/3.err'"
  # A segment of another layout version under the live pid of `sleep`.
  plant_segment "$other" 2 0
  "${TOP[@]}" -b "$other" 2>"$WORK/4.err"; s=$?
  check "another layout version: status 3 ($s)" test "$s" = 3
  check "and the versions named" grep -q "has layout version 2; this tool reads version 1" "$WORK/4.err"
  "${RECORD[@]}" "$other" 2>"$WORK/4r.err"; s=$?
  check "magpool-record says the same ($s)" sh -c "[ $s = 3 ] && grep -q 'layout version 2' '$WORK/4r.err'"
  rm -f "/dev/shm/magpool.$other"
  # The reader follows a segment that grows (more pools than it had room
  # for): a synthetic writer under the pid of `sleep`.
  check "the reader remaps a segment that grew" "$PY" - "$TOOLS" "$other" <<'EOF'
import os, struct, sys
sys.path.insert(0, sys.argv[1])
import liveview as m
pid = int(sys.argv[2])
path = m.segment_path(pid)
hdr = [m.MAGIC, 1, 128, 320, pid, 0, 0, 1, 0, 1, 0, 0, 1000, 0, 0, 0]
with open(path, "wb") as f:
    f.write(struct.pack("<16Q", *hdr) + bytes(320))
seg = m.Segment(pid)
assert seg.snapshot()["pools"] == []
n = 100
recs = b"".join(struct.pack("<40Q", *([i + 1, 64] + [0] * 38))[:256]
                + ("pool-%d" % i).encode().ljust(64, b"\0") for i in range(n))
hdr[7], hdr[8], hdr[9] = n, n, 2
with open(path, "r+b") as f:  # grow, then publish (seq even, unchanged)
    f.truncate(128 + n * 320)
    f.seek(128)
    f.write(recs)
    f.seek(0)
    f.write(struct.pack("<16Q", *hdr))
snap = seg.snapshot()
names = [p["name"] for p in snap["pools"]]
assert names == ["pool-%d" % i for i in range(n)], names[:3]
os.unlink(path)
EOF
  # A stale segment: its process is gone.
  true & dead=$!
  wait "$dead"
  plant_segment "$dead" 1 123
  "${TOP[@]}" -b "$dead" 2>"$WORK/5.err"; s=$?
  check "a stale segment: status 1 ($s) and 'exited ... stale'" sh -c "[ $s = 1 ] && grep -q 'process $dead exited.*stale segment' '$WORK/5.err'"
  check "--list shows it as exited" sh -c "${TOP[*]} --list | grep -q 'magpool.$dead .*exited'"
  check "--clean removes it" sh -c "${TOP[*]} --clean | grep -q 'removed /dev/shm/magpool.$dead' && [ ! -e /dev/shm/magpool.$dead ]"
  # Not a terminal.
  start_demo 10
  "${TOP[@]}" "$DEMO_PID" >"$WORK/6.out" 2>"$WORK/6.err"; s=$?
  check "no terminal: status 2 and a pointer to --batch" sh -c "[ $s = 2 ] && grep -q 'needs a terminal' '$WORK/6.err'"
  "${TOP[@]}" -b -n 2 -d 0.2 "$DEMO_PID" >"$WORK/7.out"; s=$?
  check "--batch prints frames ($s)" sh -c "[ $s = 0 ] && [ \$(grep -c '^magpool-top - pid' '$WORK/7.out') = 2 ] && grep -q '^orders' '$WORK/7.out'"
  "${RECORD[@]}" "$DEMO_PID" --interval 0 2>"$WORK/8.err"; s=$?
  check "magpool-record --interval 0 is refused ($s)" sh -c "[ $s = 2 ] && grep -q 'interval must be' '$WORK/8.err'"
  "${RECORD[@]}" "$DEMO_PID" -c 1 -o /nonexistent/dir/x.jsonl 2>"$WORK/9.err"; s=$?
  check "an unwritable output is refused ($s)" sh -c "[ $s = 2 ] && grep -q 'cannot write' '$WORK/9.err'"
  kill -TERM "$DEMO_PID"; wait "$DEMO_PID"; s=$?
  check "magpool-demo ends cleanly on SIGTERM ($s)" test "$s" = 0
  check "and its segment is gone" test ! -e "/dev/shm/magpool.$DEMO_PID"
  ;;
*)
  echo "unknown case $CASE"; exit 2 ;;
esac

echo "$CASE: $fails failure(s)"
[ "$fails" = 0 ]
