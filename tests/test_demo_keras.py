"""`tensorgrid demo --keras`: a Keras CNN trained with fit across a real local cluster (ps + two workers)."""

import json

from tensorgrid import demo


def test_keras_demo_trains_to_095_across_the_cluster(tmp_path, capsys):
    assert demo.main(["--keras", "--epochs", "5", "--out", str(tmp_path), "--dashboard-port", "-1"]) == 0
    out = capsys.readouterr().out
    assert "Epoch 5/5" in out and "accuracy:" in out
    assert float(out.split("test accuracy:")[1].split()[0]) >= 0.95
    trace = json.loads((tmp_path / "trace.json").read_text())
    devices = {e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "process_name"}
    assert devices == {"/job:ps/replica:0/task:0/device:CPU:0", "/job:worker/replica:0/task:0/device:CPU:0",
                       "/job:worker/replica:0/task:1/device:CPU:0"}
    ops = {e["args"]["op"] for e in trace["traceEvents"] if e["ph"] == "X"}
    assert {"_Send", "_Recv", "Conv2D", "ResourceApplyAdam"} <= ops or {"_Send", "_Recv", "Conv2D"} <= ops
    svg = (tmp_path / "partitions.svg").read_text()
    assert svg.startswith("<svg") and "_Recv" in svg
