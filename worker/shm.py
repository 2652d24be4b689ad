"""Shared memory for the same-host data path: segments the sender pools, mappings the receiver caches.

A segment is a file in /dev/shm named "tgdp-<pid>-<random>-<id>". The
sender creates it, writes a tensor into it and sends its name; the receiver
maps it once, unlinks the file (so nothing outlives the two processes, even
if both crash) and keeps the mapping for later tensors in the same segment.
Fresh mappings are slow, since every page faults on first touch (tens of ms
for 64 MiB), so the sender reuses a segment of the same size class once the
receiver says it no longer uses it. Files of dead processes that never got
mapped are swept by `sweep_stale`.
"""

import ctypes
import mmap
import os
import secrets
import threading
import time
import weakref

import numpy as np

PREFIX = "tgdp-"
MIN_SEGMENT_BYTES = 64 << 10
# Idle segments a sender keeps per peer; beyond this the oldest of the largest size class go first.
IDLE_LIMIT_BYTES = 1 << 30
STALE_AFTER_S = 10.0


def shm_dir():
    """The directory of POSIX shared memory on this host, or None when there is none we can write."""
    path = "/dev/shm"
    return path if os.path.isdir(path) and os.access(path, os.W_OK) else None


def size_class(nbytes):
    """The segment (or buffer) size a tensor of nbytes gets: a power of two, so sizes that vary a little share."""
    return max(MIN_SEGMENT_BYTES, 1 << max(nbytes - 1, 0).bit_length())


def lend(buffer, on_free, *args):
    """A ctypes window on all of `buffer` that calls on_free(*args) once nothing references it.

    numpy arrays made from the window (and every view of them) keep it
    alive, so on_free runs exactly when the last of them is gone. Windows
    span whole buffers, whose sizes are size classes, because ctypes keeps
    every array type it ever made.
    """
    window = (ctypes.c_char * memoryview(buffer).nbytes).from_buffer(buffer)
    # not at exit: by then the peer may be gone, and the process frees everything anyway
    weakref.finalize(window, on_free, *args).atexit = False
    return window


def _closed_error():
    return ConnectionResetError("the connection to the peer was closed")


def _valid_name(name):
    return name.startswith(PREFIX) and "/" not in name and name not in (".", "..")


class Segment:
    """One shared-memory file of `size` bytes, created and mapped by the sender."""

    __slots__ = ("ident", "name", "size", "array", "reserved", "_mmap", "_path", "_fd")

    def __init__(self, directory, name, ident, size):
        self.ident = ident
        self.name = name
        self.size = size
        self.reserved = 0
        self._path = os.path.join(directory, name)
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(self._fd, size)
            self._mmap = mmap.mmap(self._fd, size)
        except BaseException:
            os.close(self._fd)
            os.unlink(self._path)
            raise
        self.array = np.frombuffer(self._mmap, dtype=np.uint8)

    def reserve(self, nbytes):
        """Allocates the file's first nbytes now: OSError (ENOSPC) here, not SIGBUS on a write to a full /dev/shm."""
        if nbytes > self.reserved:
            os.posix_fallocate(self._fd, 0, nbytes)
            self.reserved = nbytes

    def destroy(self):
        """Unlinks the file (if the receiver has not yet) and unmaps it; a second call does nothing (its
        descriptor number may belong to someone else by then)."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass
        os.close(fd)
        self.array = None
        try:
            self._mmap.close()
        except BufferError:
            pass  # a sender thread still copies into it; the mapping goes when that view does

    def __repr__(self):
        return f"Segment({self.name}, {self.size} bytes)"


class SegmentPool:
    """The segments one sender uses for one peer: busy ones lent to the peer, idle ones by size class."""

    def __init__(self, directory, idle_limit=None):
        self._directory = directory
        self._prefix = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}-"
        self._idle_limit = IDLE_LIMIT_BYTES if idle_limit is None else idle_limit
        self._next_ident = 1
        self._idle = {}
        self._idle_bytes = 0
        self._busy = {}
        self._lock = threading.Lock()
        self._closed = False
        self.dropped = []

    def acquire(self, nbytes):
        """A segment whose first nbytes are allocated and unused by the peer, marked busy.

        Raises OSError when /dev/shm has no room for them (or no room for one more file), and
        ConnectionResetError once the pool is closed.
        """
        size = size_class(nbytes)
        with self._lock:
            self._check_open()
            idle = self._idle.get(size)
            seg = idle.pop(0) if idle else None  # the most recently used: its pages are the likeliest cached
            if seg is not None:
                self._idle_bytes -= size
            else:
                ident = self._next_ident
                self._next_ident += 1
        if seg is None:
            seg = Segment(self._directory, f"{self._prefix}{ident}", ident, size)
        try:
            seg.reserve(nbytes)
        except OSError:
            with self._lock:
                keep = not self._closed
                if keep:
                    self._idle.setdefault(size, []).insert(0, seg)
                    self._idle_bytes += size
            if not keep:
                seg.destroy()
            raise
        with self._lock:
            if not self._closed:
                self._busy[seg.ident] = seg
                return seg
        seg.destroy()   # a close() since the check above destroyed every segment it knew, but not this one
        raise _closed_error()

    def _check_open(self):
        if self._closed:
            raise _closed_error()

    def release(self, ident):
        """The peer no longer uses segment `ident`: it becomes idle (or is destroyed beyond the idle limit).

        Ids of destroyed segments collect in `dropped`, for the sender to tell the peer.
        """
        with self._lock:
            seg = self._busy.pop(ident, None)
            if seg is None:
                return
            self._idle.setdefault(seg.size, []).insert(0, seg)
            self._idle_bytes += seg.size
            doomed = []
            while self._idle_bytes > self._idle_limit:
                largest = max((s for s in self._idle if self._idle[s]), default=None)
                victim = self._idle[largest].pop()
                self._idle_bytes -= victim.size
                doomed.append(victim)
        for victim in doomed:
            victim.destroy()
            self.dropped.append(victim.ident)

    def abandon(self, ident):
        """Destroys a busy segment whose descriptor never reached the peer."""
        with self._lock:
            seg = self._busy.pop(ident, None)
        if seg is not None:
            seg.destroy()

    def close(self):
        """Destroys every segment, busy or idle (the peer keeps its own mappings of busy ones); acquire()
        fails from now on."""
        with self._lock:
            self._closed = True
            segs = list(self._busy.values()) + [s for idle in self._idle.values() for s in idle]
            self._busy.clear()
            self._idle.clear()
            self._idle_bytes = 0
        for seg in segs:
            seg.destroy()

    def counts(self):
        """(live segments, busy segments, bytes of live segments)."""
        with self._lock:
            idle = sum(len(v) for v in self._idle.values())
            busy_bytes = sum(s.size for s in self._busy.values())
            return idle + len(self._busy), len(self._busy), busy_bytes + self._idle_bytes


class Mappings:
    """The receiver's mappings of one sender's segments, by segment id."""

    def __init__(self, directory):
        self._directory = directory
        self._maps = {}

    def get(self, ident, name, size):
        """The mapping of segment `ident`, mapping (and unlinking) the file on first use."""
        mm = self._maps.get(ident)
        if mm is not None:
            return mm
        if not _valid_name(name):
            raise ValueError(f"{name!r} is not a data-plane segment name")
        path = os.path.join(self._directory, name)
        fd = os.open(path, os.O_RDWR)
        try:
            actual = os.fstat(fd).st_size
            # a mapping longer than its file would SIGBUS on access
            if actual < size:
                raise ValueError(f"segment {name} is {actual} bytes, the sender says {size}")
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        os.unlink(path)
        self._maps[ident] = mm
        return mm

    def drop(self, ident):
        """Forgets segment `ident`; arrays still lent from it keep their memory until they go."""
        self._maps.pop(ident, None)

    def clear(self):
        self._maps.clear()

    def __len__(self):
        return len(self._maps)


def make_probe(directory):
    """Creates a probe file holding 16 random bytes; returns (name, content)."""
    name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(8)}-probe"
    content = secrets.token_bytes(16)
    fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    return name, content


def remove_probe(directory, name):
    try:
        os.unlink(os.path.join(directory, name))
    except FileNotFoundError:
        pass


def check_probe(directory, name, content):
    """True when this process sees the probe file `name` holding `content`: the sender shares our /dev/shm."""
    if directory is None or not _valid_name(name):
        return False
    try:
        with open(os.path.join(directory, name), "rb") as f:
            return f.read(len(content) + 1) == content
    except OSError:
        return False


def pid_alive(pid):
    """Whether process `pid` of this host exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(directory, min_age_s=STALE_AFTER_S):
    """Unlinks segment and probe files whose creating process is gone; returns how many."""
    removed = 0
    now = time.time()
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        if not name.startswith(PREFIX):
            continue
        try:
            pid = int(name.split("-")[1])
        except (IndexError, ValueError):
            continue
        path = os.path.join(directory, name)
        try:
            # another pid namespace may reuse pids, so only old files count as stale
            if pid_alive(pid) or now - os.stat(path).st_mtime < min_age_s:
                continue
            os.unlink(path)
            removed += 1
        except OSError:
            continue
    return removed
