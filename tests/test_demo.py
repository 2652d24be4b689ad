"""`tensorgrid demo`: trains across a real local cluster, reaches the accuracy bar, writes its files."""

import json
import subprocess
import sys

from tensorgrid import demo


def test_demo_trains_to_095_and_writes_trace_and_picture(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path), "--steps", "300"]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("test accuracy:")[1].split()[0])
    assert accuracy >= 0.95
    trace = json.loads((tmp_path / "trace.json").read_text())
    devices = {e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "process_name"}
    assert devices == {"/job:ps/replica:0/task:0/device:CPU:0", "/job:worker/replica:0/task:0/device:CPU:0",
                       "/job:worker/replica:0/task:1/device:CPU:0"}
    ops = {e["args"]["op"] for e in trace["traceEvents"] if e["ph"] == "X"}
    assert {"_Send", "_Recv", "MatMul"} <= ops
    svg = (tmp_path / "partitions.svg").read_text()
    assert svg.startswith("<svg") and "_Recv" in svg and 'stroke="#dc2626"' in svg


def test_demo_help_and_bad_arguments():
    ok = subprocess.run([sys.executable, "-m", "tensorgrid.cli", "demo", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "--target" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "tensorgrid.cli", "demo", "--steps", "0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--steps" in bad.stderr
    assert "Traceback" not in bad.stderr
