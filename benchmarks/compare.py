"""Two versions of tensorgrid side by side in one run: this tree against a git revision.

    python -m benchmarks.compare --baseline main~3                 # W1 and W2, 3 rounds
    python -m benchmarks.compare --baseline 963970d --only W1 --rounds 5

The baseline revision is exported (git archive) and installed into a
temporary directory; each round then runs the benchmark child of
benchmarks/run.py once for each version, in alternating order (ABBA), each
on a fresh local cluster, W2 also with TENSORGRID_TRANSPORT=tcp. The table
gives each workload's median over the rounds of each round's median, and
this tree's over the baseline's (below 1: this tree is faster). On a shared
machine, more rounds give steadier medians.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from benchmarks import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("client", "runtime", "worker", "proto", "tensorgrid")


def install_revision(revision, into):
    """Exports `revision` of this repository and installs it under into/site; returns that directory."""
    src, site = os.path.join(into, "src"), os.path.join(into, "site")
    os.makedirs(src)
    archive = subprocess.run(["git", "-C", ROOT, "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-t", site,
                    src], check=True, stdout=subprocess.DEVNULL)
    shutil.copytree(os.path.join(src, "benchmarks"), os.path.join(site, "benchmarks"))
    return site


def _round(root, workloads):
    medians = {name: statistics.median(s) for name, s in run._run_child("tensorgrid", workloads, root=root).items()}
    if "W2" in workloads:
        tcp = run._run_child("tensorgrid", ["W2"], "tcp", root=root)
        medians.update({f"{k} (tcp, no shm)": statistics.median(s) for k, s in tcp.items()})
    return medians


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True, help="git revision to compare this tree with")
    p.add_argument("--only", default="W1,W2", help="comma-separated workloads (default: W1,W2)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of both versions (default: 3)")
    args = p.parse_args(argv)
    workloads = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    with tempfile.TemporaryDirectory(prefix="tensorgrid-baseline-") as tmp:
        baseline = install_revision(args.baseline, tmp)
        sides = {"baseline": (baseline, []), "this tree": (ROOT, [])}
        for r in range(args.rounds):
            order = ["baseline", "this tree"] if r % 2 == 0 else ["this tree", "baseline"]
            for side in order:
                root, rounds = sides[side]
                rounds.append(_round(root, workloads))
                print(f"round {r + 1} {side}: " + ", ".join(f"{k} {v * 1e3:.3f} ms"
                                                           for k, v in rounds[-1].items()), flush=True)
    base, this = sides["baseline"][1], sides["this tree"][1]
    print(f"\n{'workload':<48}{'baseline':>12}{'this tree':>12}{'ratio':>8}   ({args.rounds} rounds, "
          f"medians of per-round medians; baseline {args.baseline})")
    report = []
    for name in base[0]:
        b = statistics.median(r[name] for r in base if name in r)
        t = statistics.median(r[name] for r in this if name in r)
        print(f"{name:<48}{b * 1e3:>10.3f}ms{t * 1e3:>10.3f}ms{t / b:>8.3f}")
        report.append({"workload": name, "baseline_s": b, "this_s": t, "ratio": t / b,
                       "baseline_rounds": [r.get(name) for r in base], "this_rounds": [r.get(name) for r in this]})
    for row in report:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
