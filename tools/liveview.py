# SPDX-License-Identifier: MIT
"""Reading a magpool process's published state (/dev/shm/magpool.<pid>).

The layout is lib/pubseg.h's (version 1), described in docs/live-view.md:
a header of 16 little-endian u64 words, then records of record_size bytes
(40 words known here). The snapshot is read under its seqlock: the words
H_CAPACITY.. and the records are copied, and kept only if the sequence
word was even and unchanged across the copy. The segment is mapped
read-only: any number of readers at once, none of them can disturb the
process or each other.

Python gives no memory-order control: the copy is one memcpy between two
8-byte loads, which on x86-64 (TSO: loads are not reordered with loads)
is the reader side of the seqlock. Other architectures: see
docs/live-view.md.
"""
import errno
import glob
import mmap
import os
import struct
import time

MAGIC = 0x004C4F4F5047414D  # "MAGPOOL\0"
VERSION = 1
HDR_WORDS, REC_WORDS = 16, 40
HDR_BYTES, REC_BYTES = HDR_WORDS * 8, REC_WORDS * 8
(H_MAGIC, H_VERSION, H_HEADER_SIZE, H_RECORD_SIZE, H_PID, H_START_TIME, H_SEQ,
 H_CAPACITY, H_NPOOLS, H_SNAPSHOTS, H_MONO_NS, H_REAL_NS, H_INTERVAL_MS,
 H_UNPUBLISHED) = range(14)
R_STATS, R_NAME, R_NAME_WORDS = 7, 32, 8
RECORD_HEAD = ["uid", "block_size", "max_blocks", "magazine_size", "backend", "layer",
               "diag"]
STAT_FIELDS = ["acquires", "releases", "hits", "misses", "grows", "trims", "failed",
               "blocks_total", "blocks_outstanding", "bytes_reserved", "depot_gets",
               "depot_puts", "steals", "threads", "bytes_returned", "magazines", "errors",
               "reclaims", "spilled"]
BACKENDS = ["lockfree", "mutex"]
LAYERS = [None, "objpool", "bufmgr", "other"]
SHM_DIR = "/dev/shm"


class ViewError(Exception):
    """A reader's failure, told to a person: message and exit status."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


def segment_path(pid):
    return "%s/magpool.%d" % (SHM_DIR, pid)


def parse_pid(text):
    try:
        pid = int(text, 10)
    except (TypeError, ValueError):
        raise ViewError("%r is not a process id (a positive number)" % (text,), 2)
    if pid <= 0 or pid > 2**22:
        raise ViewError("%r is not a process id (a positive number)" % (text,), 2)
    return pid


def proc_stat(pid):
    """(state, start_time) of a live process from /proc/<pid>/stat, or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    # rest[0] is field 3 (state); field 22 (start time) is rest[19]
    try:
        return rest[0], int(rest[19])
    except (IndexError, ValueError):
        return None


def proc_name(pid):
    try:
        with open("/proc/%d/comm" % pid, "rb") as f:
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return "?"


def liveness(pid, start_time):
    """'live', 'exited' (gone or a zombie) or 'reused' (the pid is another
    process now) for the process that wrote a segment."""
    st = proc_stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return "exited"
    if start_time != 0 and st[1] != start_time:
        return "reused"
    return "live"


def _words(buf, offset, count):
    return struct.unpack_from("<%dQ" % count, buf, offset)


class Segment:
    """One process's segment, open and mapped read-only."""

    def __init__(self, pid, wait_ready=2.0):
        self.pid = pid
        self.path = segment_path(pid)
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if proc_stat(pid) is None:
                raise ViewError("no process %d (and no magpool segment %s)" % (pid, self.path))
            raise ViewError(
                "process %d (%s) publishes no magpool state (no %s): it does not use "
                "magpool, or publishing is off; start it with MAGPOOL_PUBLISH=1000 in its "
                "environment or magpool_publish_start(1000)" % (pid, proc_name(pid), self.path))
        except PermissionError:
            raise ViewError("cannot read %s: permission denied (segments are mode 0600: run "
                            "as the user of process %d, or root)" % (self.path, pid))
        self.ino = os.fstat(self.fd).st_ino
        self.map = None
        deadline = time.monotonic() + wait_ready
        while True:
            self._remap()
            hdr = _words(self.map, 0, HDR_WORDS) if len(self.map) >= HDR_BYTES else None
            if hdr is not None and hdr[H_MAGIC] == MAGIC:
                break
            if hdr is not None and hdr[H_MAGIC] != 0:
                raise ViewError("%s is not a magpool segment (bad magic number)" % self.path)
            if time.monotonic() > deadline:  # created but never filled in
                raise ViewError("%s is not a magpool segment (empty)" % self.path)
            time.sleep(0.02)
        if hdr[H_VERSION] != VERSION or hdr[H_HEADER_SIZE] != HDR_BYTES \
                or hdr[H_RECORD_SIZE] < REC_BYTES:
            raise ViewError("%s has layout version %d; this tool reads version %d (use the "
                            "magpool tools of the library version process %d runs)"
                            % (self.path, hdr[H_VERSION], VERSION, pid), 3)
        if hdr[H_PID] != pid:
            raise ViewError("%s names process %d, not %d: not a segment of this process"
                            % (self.path, hdr[H_PID], pid))
        self.start_time = hdr[H_START_TIME]
        self.record_size = hdr[H_RECORD_SIZE]
        self.check_alive()

    def _remap(self):
        if self.map is not None:
            self.map.close()
        size = os.fstat(self.fd).st_size
        self.map = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ) if size else b""

    def close(self):
        if self.map is not None and not isinstance(self.map, bytes):
            self.map.close()
        os.close(self.fd)

    def check_alive(self):
        """Raise ViewError when the process is gone, its pid reused, or it
        stopped publishing (the name was removed)."""
        state = liveness(self.pid, self.start_time)
        if state == "exited":
            raise ViewError("process %d exited (%s is %s)" % (
                self.pid, self.path, "gone" if not os.path.exists(self.path)
                else "a stale segment it left; magpool-top --clean removes it"))
        if state == "reused":
            raise ViewError("process %d that wrote %s exited and its pid now belongs to "
                            "another process (%s); the segment is stale: magpool-top --clean "
                            "removes it" % (self.pid, self.path, proc_name(self.pid)))
        try:
            if os.stat(self.path).st_ino != self.ino:
                self._reopen()  # stopped and started again: follow it
        except FileNotFoundError:
            # A process removes its segment at exit, a moment before it is
            # gone: give it that moment, so that an exit is reported as one.
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                if liveness(self.pid, self.start_time) != "live":
                    raise ViewError("process %d exited (%s is gone)" % (self.pid, self.path))
                time.sleep(0.02)
            raise ViewError("process %d stopped publishing (%s was removed)"
                            % (self.pid, self.path))

    def _reopen(self):
        """The process made a new segment (magpool_publish_stop, then
        _start): read that one from now on."""
        fresh = Segment(self.pid)
        self.close()
        self.__dict__.update(fresh.__dict__)

    def snapshot(self, tries=10000):
        """The last whole snapshot as a dict (pools: a list of dicts), or
        None before the first one."""
        for _ in range(tries):
            m = self.map
            s1 = _words(m, H_SEQ * 8, 1)[0]
            if s1 & 1:
                continue
            hdr = _words(m, 0, HDR_WORDS)
            n = hdr[H_NPOOLS]
            need = HDR_BYTES + n * self.record_size
            if need > len(m):  # the segment grew: map it whole, then retry
                self._remap()
                continue
            body = m[HDR_BYTES:need]
            if _words(m, H_SEQ * 8, 1)[0] != s1:
                continue
            if hdr[H_SNAPSHOTS] == 0:
                return None
            return self._parse(hdr, body, n)
        raise ViewError("no consistent snapshot of %s in %d tries (writer stuck mid-write?)"
                        % (self.path, tries))

    def _parse(self, hdr, body, n):
        pools = []
        for k in range(n):
            w = _words(body, k * self.record_size, REC_WORDS)
            p = dict(zip(RECORD_HEAD, w[:R_STATS]))
            p.update(zip(STAT_FIELDS, w[R_STATS:R_STATS + len(STAT_FIELDS)]))
            raw = struct.pack("<%dQ" % R_NAME_WORDS, *w[R_NAME:R_NAME + R_NAME_WORDS])
            p["name"] = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
            p["backend"] = BACKENDS[p["backend"]] if p["backend"] < 2 else "?"
            p["layer"] = LAYERS[p["layer"]] if p["layer"] < 4 else "other"
            p["hit_rate"] = p["hits"] / p["acquires"] if p["acquires"] else 0.0
            p["blocks_idle"] = max(p["blocks_total"] - p["blocks_outstanding"], 0)
            pools.append(p)
        return {"pid": self.pid, "snapshot": hdr[H_SNAPSHOTS], "time": hdr[H_REAL_NS] / 1e9,
                "mono": hdr[H_MONO_NS] / 1e9, "interval_ms": hdr[H_INTERVAL_MS],
                "unpublished": hdr[H_UNPUBLISHED], "pools": pools}


def open_segment(pid_text):
    return Segment(parse_pid(pid_text))


def list_segments():
    """[(path, pid, status)] for every /dev/shm/magpool.* segment; status
    'live', 'exited', 'reused', 'unreadable', 'version N' or 'not magpool'."""
    out = []
    for path in sorted(glob.glob(SHM_DIR + "/magpool.*")):
        tail = path.rsplit(".", 1)[1]
        if not tail.isdigit():
            continue
        pid = int(tail)
        try:
            with open(path, "rb") as f:
                head = f.read(HDR_BYTES)
        except OSError:
            out.append((path, pid, "unreadable"))
            continue
        if len(head) < HDR_BYTES or _words(head, 0, 1)[0] != MAGIC:
            out.append((path, pid, "not magpool"))
            continue
        hdr = _words(head, 0, HDR_WORDS)
        if hdr[H_VERSION] != VERSION:
            status = "version %d" % hdr[H_VERSION]
            state = liveness(pid, 0 if hdr[H_VERSION] != VERSION else hdr[H_START_TIME])
            out.append((path, pid, status if state == "live" else state))
            continue
        out.append((path, pid, liveness(pid, hdr[H_START_TIME])))
    return out


def clean_stale():
    """Remove the segments whose process is gone (or whose pid was reused);
    returns [(path, pid, status, error or None)]."""
    done = []
    for path, pid, status in list_segments():
        if status in ("exited", "reused"):
            try:
                os.unlink(path)
                done.append((path, pid, status, None))
            except OSError as e:
                done.append((path, pid, status, os.strerror(e.errno or errno.EIO)))
    return done
