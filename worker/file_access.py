"""Which files the kernels of this process may open: the process's file-access policy.

A graph is code from a client: a kernel that opens a path the graph names
(tg.print's `output_stream="file://..."`, Dataset.cache(filename), tg.io's
read_file / write_file, TFRecord readers and writers) opens it with this
process's rights. So every such kernel asks `check_path(path, mode)` first
and opens the path it returns.

Who allows what (docs/security.md):

- The user's own process (in-process sessions, eager mode, the tasks of
  tg.train.Server a user's script starts) is unrestricted, as in
  TensorFlow: the graph comes from the same person who runs the process.
- A standalone `tensorgrid worker` (and the master) restricts access to the
  directories named by `--allow-file-access DIR` (repeatable; default from
  TENSORGRID_ALLOW_FILE_ACCESS, directories separated by os.pathsep), and to
  none when there is none: graph file access is then off.

Under a restriction a path is resolved first (os.path.realpath: `..`,
symlinks and relative paths against the process's working directory) and
allowed only when the result lies inside an allowed directory, which is
itself resolved when the policy is set. A symlink inside an allowed
directory that points outside it is refused; so is `..` that climbs out.

    from tensorgrid.worker import file_access
    real = file_access.check_path(path, "w", who=f"PrintV2 '{node.name}' on {node.device}")
    with open(real, "a") as f: ...
"""

import os
import threading

from tensorgrid.framework import errors

ENV = "TENSORGRID_ALLOW_FILE_ACCESS"
FLAG = "--allow-file-access"
_MODES = {"r": "read", "w": "write"}

_lock = threading.Lock()
_allowed = None  # None: unrestricted; else a tuple of resolved directories (empty: no file access)


def restrict(directories):
    """Limits this process's graph file access to `directories` (an empty list turns it off).

    Each directory is resolved now; one that does not exist or is not a
    directory is a ValueError (a typo must not silently allow nothing).
    """
    resolved = []
    for d in directories:
        real = os.path.realpath(os.path.expanduser(str(d)))
        if not os.path.isdir(real):
            raise ValueError(f"{FLAG} {d}: not a directory")
        if real not in resolved:
            resolved.append(real)
    global _allowed
    with _lock:
        _allowed = tuple(resolved)


def unrestrict():
    """Lifts the restriction (the default of a user's own process)."""
    global _allowed
    with _lock:
        _allowed = None


def allowed_directories():
    """The resolved allowed directories, or None when this process is unrestricted."""
    return _allowed


def directories_from_env():
    """The directories TENSORGRID_ALLOW_FILE_ACCESS names (os.pathsep-separated), [] when unset."""
    return [d for d in os.environ.get(ENV, "").split(os.pathsep) if d]


def _inside(path, directory):
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def allows(path):
    """Whether graphs of this process may open `path` (resolved) at all."""
    allowed = _allowed
    return allowed is None or any(_inside(os.path.realpath(path), d) for d in allowed)


def check_path(path, mode, who=None):
    """The resolved path a kernel may open for `mode` ("r" or "w"); PermissionDeniedError when it may not.

    `who` names the kernel for the message ("PrintV2 'p' on /job:worker/...").
    Unrestricted, the path comes back as given.
    """
    if mode not in _MODES:
        raise ValueError(f"file access mode must be 'r' or 'w', got {mode!r}")
    path = os.fsdecode(path)
    allowed = _allowed
    if allowed is None:
        return path
    prefix = f"{who}: " if who else ""
    if "\0" in path:
        raise errors.InvalidArgumentError(None, None, f"{prefix}file path {path!r} contains a NUL byte")
    real = os.path.realpath(path)
    if any(_inside(real, d) for d in allowed):
        return real
    shown = path if real == path else f"{path} (resolved to {real})"
    if not allowed:
        reason = (f"this process does not let graphs {_MODES[mode]} files (start the worker with "
                  f"{FLAG} DIR to allow a directory)")
    else:
        reason = (f"this process lets graphs {_MODES[mode]} files only under {', '.join(allowed)} "
                  f"(its {FLAG} directories)")
    raise errors.PermissionDeniedError(None, None, f"{prefix}may not {_MODES[mode]} {shown}: {reason}")
