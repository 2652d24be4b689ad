"""benchmarks/plot.py: the PNG of tensorgrid's ratios against TensorFlow and Ray from the suite's JSON."""

import json
import struct

import pytest

from benchmarks import plot

pytest.importorskip("matplotlib")


def _row(workload, system, median):
    return {"workload": workload, "system": system, "median_s": median, "p10_s": median * 0.9,
            "p90_s": median * 1.2, "n": 10}


ROWS = [_row("W1 step latency", "tensorgrid", 0.0007), _row("W1 step latency", "tensorflow", 0.0028),
        _row("W1 step latency", "ray", 0.0005),
        _row("W2 transfer 64MiB", "tensorgrid", 0.02), _row("W2 transfer 64MiB (tcp, no shm)", "tensorgrid", 0.05),
        _row("W2 transfer 64MiB", "tensorflow", 0.1),
        _row("W4 many small ops", "tensorgrid", 0.01),  # no peer: not drawn
        _row("memcpy 64MiB", "limit", 0.003)]


def test_ratios_pair_each_tensorgrid_row_with_its_peers():
    got = dict(plot.ratios(ROWS))
    assert list(got) == ["W1 step latency", "W2 transfer 64MiB", "W2 transfer 64MiB (tcp, no shm)"]
    assert got["W1 step latency"]["tensorflow"][0] == pytest.approx(0.25)
    assert got["W1 step latency"]["ray"][0] == pytest.approx(1.4)
    assert got["W2 transfer 64MiB (tcp, no shm)"] == {"tensorflow": pytest.approx((0.5, 0.45, 0.6))}


@pytest.mark.parametrize("as_lines", [False, True])
def test_main_writes_a_png(tmp_path, as_lines, capsys):
    src = tmp_path / "results.json"
    if as_lines:  # the suite's printed output: a table, then one row per line
        src.write_text("workload  median\nW1 ...\n\n" + "\n".join(json.dumps(r) for r in ROWS) + "\n")
    else:
        src.write_text(json.dumps(ROWS))
    png = tmp_path / "ratios.png"
    assert plot.main([str(src), str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300 and height > 300
    assert "3 workloads" in capsys.readouterr().out


def test_no_rows_is_a_clear_error(tmp_path, capsys):
    src = tmp_path / "empty.json"
    src.write_text(json.dumps([_row("W1 step latency", "tensorgrid", 0.001)]))
    assert plot.main([str(src), str(tmp_path / "x.png")]) == 1
    assert "no tensorgrid workload has a TensorFlow or Ray row" in capsys.readouterr().err
    src.write_text("nothing here")
    assert plot.main([str(src), str(tmp_path / "x.png")]) == 1
    assert "holds no benchmark rows" in capsys.readouterr().err
