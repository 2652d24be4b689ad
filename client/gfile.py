"""tg.io.gfile: TF's file API over the local file system, in the client's process.

TF2's names (tf.io.gfile.exists, glob, GFile, ...) and, in `v1_namespace()`,
TF1's (tf.gfile.Exists, Glob, Open, ...). Failures are TF's error classes:
NotFoundError for a missing path, AlreadyExistsError where a target must
not exist, PermissionDeniedError, FailedPreconditionError for a directory
where a file is wanted.
"""

import collections
import glob as _glob
import os
import shutil
import types

from tensorgrid.framework import errors
from tensorgrid.ops.io_ops import os_errors as _os_errors

__all__ = ["GFile", "exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "remove", "rmtree", "rename", "copy",
           "stat", "walk", "join", "get_registered_schemes"]

FileStatistics = collections.namedtuple("FileStatistics", ["length", "mtime_nsec", "is_directory"])


def _path(name):
    name = os.fspath(name)
    name = name.decode("utf-8") if isinstance(name, bytes) else name
    return name[len("file://"):] if name.startswith("file://") else name


class GFile:
    """A file: read/write/readline/readlines/seek/tell/flush/close, a context manager and a line iterator.

    Text modes ('r', 'w', 'a') read and write str, binary modes ('rb', ...)
    bytes, as TF's GFile. A missing file fails when it is opened for reading.
    """

    def __init__(self, name, mode="r"):
        self.name = _path(name)
        self.mode = mode
        if mode.replace("b", "").replace("+", "") not in ("r", "w", "a"):
            raise errors.InvalidArgumentError(None, None, f"mode {mode!r} not supported: use r, w, a (with b, +)")
        with _os_errors(self.name):
            self._f = open(self.name, mode) if "b" in mode else open(self.name, mode, encoding="utf-8")

    def read(self, n=-1):
        return self._f.read(n)

    def readline(self):
        return self._f.readline()

    def readlines(self):
        return self._f.readlines()

    def write(self, data):
        if "b" in self.mode and isinstance(data, str):
            data = data.encode("utf-8")
        elif "b" not in self.mode and isinstance(data, (bytes, bytearray)):
            data = bytes(data).decode("utf-8")
        self._f.write(data)

    def seek(self, offset=None, whence=0, position=None):
        return self._f.seek(position if offset is None else offset, whence)

    def tell(self):
        return self._f.tell()

    def size(self):
        return os.fstat(self._f.fileno()).st_size

    def seekable(self):
        return True

    def flush(self):
        self._f.flush()

    def close(self):
        self._f.close()

    @property
    def closed(self):
        return self._f.closed

    def __iter__(self):
        return iter(self._f)

    def __next__(self):
        return next(self._f)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<GFile {self.name!r} mode {self.mode!r}>"


def exists(path):
    """Whether path exists."""
    return os.path.exists(_path(path))


def glob(pattern):
    """The paths `pattern` matches (a list of str); a list of patterns matches each."""
    patterns = [pattern] if isinstance(pattern, (str, bytes, os.PathLike)) else list(pattern)
    out = []
    for p in patterns:
        out.extend(sorted(_glob.glob(_path(p))))
    return out


def isdir(path):
    return os.path.isdir(_path(path))


def listdir(path):
    """The names of the entries of directory `path`; NotFoundError when it is not one."""
    path = _path(path)
    if not os.path.isdir(path):
        raise errors.NotFoundError(None, None, f"Could not find directory {path}")
    with _os_errors(path):
        return sorted(os.listdir(path))


def makedirs(path):
    """Makes directory `path` and its parents; nothing when it exists."""
    path = _path(path)
    with _os_errors(path):
        os.makedirs(path, exist_ok=True)


def mkdir(path):
    """Makes directory `path` (its parent must exist); nothing when it exists, as TF's."""
    path = _path(path)
    if os.path.isdir(path):
        return
    with _os_errors(path):
        os.mkdir(path)


def remove(path):
    """Deletes file `path`."""
    path = _path(path)
    with _os_errors(path):
        os.remove(path)


def rmtree(path):
    """Deletes directory `path` and everything under it."""
    path = _path(path)
    if not os.path.exists(path):
        raise errors.NotFoundError(None, None, f"{path} not found")
    with _os_errors(path):
        shutil.rmtree(path)


def _to(src, dst, overwrite, move):
    src, dst = _path(src), _path(dst)
    if not overwrite and os.path.exists(dst):
        raise errors.AlreadyExistsError(None, None, f"file already exists: {dst}")
    with _os_errors(src):
        (os.replace if move else shutil.copyfile)(src, dst)


def rename(src, dst, overwrite=False):
    """Renames src to dst; AlreadyExistsError when dst exists and overwrite is False."""
    _to(src, dst, overwrite, move=True)


def copy(src, dst, overwrite=False):
    """Copies file src to dst; AlreadyExistsError when dst exists and overwrite is False."""
    _to(src, dst, overwrite, move=False)


def stat(path):
    """FileStatistics(length, mtime_nsec, is_directory) of path."""
    path = _path(path)
    with _os_errors(path):
        st = os.stat(path)
    return FileStatistics(st.st_size, st.st_mtime_ns, os.path.isdir(path))


def walk(top, topdown=True, onerror=None):
    """(dirname, subdirectory names, file names) for each directory under top, as os.walk."""
    yield from os.walk(_path(top), topdown=topdown, onerror=onerror)


def join(path, *paths):
    return os.path.join(_path(path), *[_path(p) for p in paths])


def get_registered_schemes():
    """The URL schemes paths may use: the local file system's."""
    return ["", "file"]


def v1_namespace():
    """TF1's tf.gfile: the same functions under TF1's names."""
    return types.SimpleNamespace(
        GFile=GFile, Open=GFile, FastGFile=GFile, Exists=exists, Glob=glob, IsDirectory=isdir,
        ListDirectory=listdir, MakeDirs=makedirs, MkDir=mkdir, Remove=remove, DeleteRecursively=rmtree,
        Rename=rename, Copy=copy, Stat=stat, Walk=walk)
