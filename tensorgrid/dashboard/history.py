"""The dashboard's history on disk (--history-dir), and RecordedView, which serves it again
(`tensorgrid dashboard --from DIR`) once the cluster has finished or crashed.

The folder holds:
    snapshot.json          the latest snapshot (what the page shows), replaced atomically every second
    graphs/<signature>.svg the latest plan's picture of each step signature
    traces/<signature>.json the latest traced step of each signature (one lane per device)
Every file is written under a temporary name and renamed, so a crash leaves
the previous version whole, never half a file; a master killed with SIGKILL
loses at most its last second.
"""

import json
import os
import re

from tensorgrid.framework import errors

SNAPSHOT = "snapshot.json"


def _file_name(sig_id):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", sig_id)


def _write_atomically(path, data):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)
    os.replace(tmp, path)


class HistoryWriter:
    """Keeps a LiveView's snapshots, graphs and traces in a folder."""

    def __init__(self, folder):
        self.folder = folder
        try:
            os.makedirs(os.path.join(folder, "graphs"), exist_ok=True)
            os.makedirs(os.path.join(folder, "traces"), exist_ok=True)
        except OSError as e:
            raise OSError(f"--history-dir {folder}: {e.strerror or e}") from None
        self._written = {}          # signature id -> (plan version, trace step) on disk

    def write(self, snapshot, view):
        for sig in snapshot["signatures"]:
            have = self._written.get(sig["id"], (None, None))
            name = _file_name(sig["id"])
            if have[0] != sig["plan_version"]:
                svg = view.graph_svg(sig["id"])
                if svg is not None:
                    _write_atomically(os.path.join(self.folder, "graphs", f"{name}.svg"), svg)
            if sig["trace_step"] and have[1] != sig["trace_step"]:
                trace = view.trace(sig["id"])
                if trace is not None:
                    _write_atomically(os.path.join(self.folder, "traces", f"{name}.json"), json.dumps(trace))
            self._written[sig["id"]] = (sig["plan_version"], sig["trace_step"])
        _write_atomically(os.path.join(self.folder, SNAPSHOT), json.dumps(snapshot))


class RecordedView:
    """A dashboard view of a history folder: the last snapshot a master kept, marked not live."""

    live = False
    closed = False

    def __init__(self, folder):
        self.folder = folder
        path = os.path.join(folder, SNAPSHOT)
        try:
            with open(path, encoding="utf-8") as f:
                self._snapshot = json.load(f)
        except FileNotFoundError:
            raise errors.NotFoundError(None, None, f"{path}: no dashboard history here (a master started with "
                                       "--history-dir writes it)") from None
        except (OSError, ValueError) as e:
            raise errors.DataLossError(None, None, f"{path}: cannot read the dashboard history: {e}") from None
        self._snapshot["live"] = False
        self.version = 1

    def snapshot(self):
        return self._snapshot

    def wait(self, version, timeout):
        return self.version, self._snapshot

    def _read(self, kind, sig_id, ext):
        path = os.path.join(self.folder, kind, f"{_file_name(sig_id)}.{ext}")
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except OSError:
            return None

    def graph_svg(self, sig_id):
        return self._read("graphs", sig_id, "svg")

    def trace(self, sig_id):
        data = self._read("traces", sig_id, "json")
        return json.loads(data) if data is not None else None

    def close(self):
        self.closed = True
