"""A PNG of tensorgrid's time over each peer's, per workload, from the suite's JSON.

    python -m benchmarks --only W1,W2,W3 --json results.json
    python -m benchmarks.plot results.json ratios.png

The input is what `python -m benchmarks --json` writes: a list of summary
rows ({"workload", "system", "median_s", "p10_s", "p90_s", "n"}), the same
rows the suite prints one per line after its table (a file of those lines,
or the whole saved output, is read too). Each tensorgrid row with a
TensorFlow or Ray Compiled Graphs row of the same workload gets one bar per
peer: tensorgrid's median over the peer's (below the line at 1: tensorgrid
is faster), with error bars from tensorgrid's p10/p90 over the peer's median.
Needs matplotlib (the `bench` extra).
"""

import argparse
import json
import sys

PEERS = (("tensorflow", "TensorFlow"), ("ray", "Ray Compiled Graphs"))


def load_rows(path):
    """The summary rows in `path`: a JSON list, or JSON objects one per line among other output."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.startswith('{"workload"')]
    rows = [r for r in data if isinstance(r, dict) and {"workload", "system", "median_s"} <= r.keys()]
    if not rows:
        raise ValueError(f"{path} holds no benchmark rows (expected the output of python -m benchmarks --json)")
    return rows


def base_workload(name):
    """The peer-side name of a tensorgrid row: 'W2 transfer 64MiB (tcp, no shm)' -> 'W2 transfer 64MiB'."""
    return name.split(" (")[0]


def ratios(rows):
    """[(tensorgrid workload, {peer system: (ratio, low, high)})] for every workload with at least one peer."""
    by = {(r["system"], r["workload"]): r for r in rows}
    out = []
    for r in rows:
        if r["system"] != "tensorgrid":
            continue
        got = {}
        for system, _ in PEERS:
            peer = by.get((system, base_workload(r["workload"])))
            if peer and peer["median_s"] > 0:
                m = peer["median_s"]
                got[system] = (r["median_s"] / m, r.get("p10_s", r["median_s"]) / m, r.get("p90_s", r["median_s"]) / m)
        if got:
            out.append((r["workload"], got))
    return out


def plot(rows, png_path, title="tensorgrid time / peer time (below 1: tensorgrid faster)"):
    """Writes the bar chart of `ratios(rows)` to png_path; returns the number of workloads drawn."""
    import matplotlib
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    data = ratios(rows)
    if not data:
        raise ValueError("no tensorgrid workload has a TensorFlow or Ray row to compare with")
    width = 0.8 / len(PEERS)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(data) + 2), 4.5))
    for k, (system, label) in enumerate(PEERS):
        xs, ys, lo, hi = [], [], [], []
        for i, (_, got) in enumerate(data):
            if system in got:
                ratio, p10, p90 = got[system]
                xs.append(i + (k - (len(PEERS) - 1) / 2) * width)
                ys.append(ratio)
                lo.append(max(0.0, ratio - p10))
                hi.append(max(0.0, p90 - ratio))
        if xs:
            bars = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=label)
            ax.bar_label(bars, labels=[f"{y:.2f}x" for y in ys], fontsize=7, padding=2)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(data)))
    ax.set_xticklabels([w.replace(" (", "\n(") for w, _ in data], fontsize=7)
    ax.set_ylabel("median time ratio")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return len(data)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.plot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="the file `python -m benchmarks --json` wrote (or its saved output)")
    p.add_argument("png", help="where to write the PNG")
    args = p.parse_args(argv)
    try:
        n = plot(load_rows(args.results), args.png)
    except (OSError, ValueError) as e:
        print(f"benchmarks.plot: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.png}: {n} workloads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
