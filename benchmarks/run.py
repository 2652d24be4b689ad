"""Runs the SPEC section 9 suite and prints a table plus one JSON line per workload.

    python -m benchmarks                  # every workload, tensorgrid and (if installed) TensorFlow
    python -m benchmarks --only W1,W2     # a subset
    python -m benchmarks --no-tensorflow  # tensorgrid only
    python -m benchmarks --json r.json    # also the summary rows as JSON; python -m benchmarks.plot r.json r.png

Each system runs in a child process of its own against a local cluster of
two worker processes: tensorgrid's master + 2 workers, or TensorFlow's two
`tf.distribute.Server` processes (default session config). W2 runs twice
for tensorgrid: with the same-host shared-memory path (the default) and with
it switched off (TENSORGRID_TRANSPORT=tcp, the cross-host path over loopback).
W1 also runs side by side on a second cluster whose master and workers
serve --metrics-port and the master --dashboard-port, while a scraper
process reads every /metrics once a second and follows the dashboard's
event stream: the cost of observability on the step path, in one run.
Where Ray is installed (the `bench` extra) Ray Compiled Graphs run W1-W3's shapes in the same run
(benchmarks/peers.py), and every run measures the raw limits: a Python gRPC round trip, a 64 MiB
memcpy and W2's compute alone.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _summary(name, system, samples):
    xs = sorted(samples)

    def pct(p):
        return xs[min(len(xs) - 1, max(0, round(p * (len(xs) - 1))))]
    return {"workload": name, "system": system, "median_s": statistics.median(xs),
            "p10_s": pct(0.1), "p90_s": pct(0.9), "n": len(xs)}


# ---- children: one system each -------------------------------------------------------------

# Scrapes every /metrics URL once a second and reads the dashboard's event stream, until killed.
_SCRAPER = """
import sys, threading, time, urllib.request
def follow(url):
    with urllib.request.urlopen(url) as r:
        for _ in r:
            pass
threading.Thread(target=follow, args=(sys.argv[1],), daemon=True).start()
while True:
    for url in sys.argv[2:]:
        urllib.request.urlopen(url).read()
    time.sleep(1.0)
"""


def _w1_observed(tf, plain_target, devs):
    """W1 with observability on and off, side by side (workloads.w1_observed) against a second cluster."""
    from benchmarks import workloads as wl
    from tensorgrid.runtime.cluster import LocalCluster
    with LocalCluster(num_workers=2, extra_master_args=["--metrics-port", "0", "--dashboard-port", "0"],
                      extra_worker_args=["--metrics-port", "0"]) as observed:
        ports = [observed.master.info["metrics_port"]] + [observed.worker_info(i)["metrics_port"] for i in range(2)]
        scraper = subprocess.Popen([sys.executable, "-c", _SCRAPER, observed.dashboard_url + "api/events",
                                    *[f"http://127.0.0.1:{p}/metrics" for p in ports]])
        try:
            return wl.w1_observed(tf, plain_target, observed.target, devs)
        finally:
            scraper.kill()
            scraper.wait()


def _child_tensorgrid(workloads, transport):
    import tensorgrid.compat.v1 as tf
    from benchmarks import workloads as wl
    from tensorgrid.runtime.cluster import LocalCluster
    tf.disable_eager_execution()
    env = {"TENSORGRID_TRANSPORT": transport} if transport else {}
    with LocalCluster(num_workers=2, env=env) as cluster:
        devs = ["/job:worker/task:0", "/job:worker/task:1"]
        for w in workloads:
            if w == "W5":
                from tensorgrid import demo
                yield {"W5 training": demo.time_training_steps(tf, cluster.target, ps_device=devs[0],
                                                              worker_devices=devs)}
            else:
                yield wl.ALL[w](tf, cluster.target, devs)
            if w == "W1" and not transport:
                yield _w1_observed(tf, cluster.target, devs)


def _child_tensorflow(workloads):
    import tensorflow.compat.v1 as tf
    from benchmarks import workloads as wl
    tf.disable_eager_execution()
    ports = [_free_port(), _free_port()]
    spec = json.dumps({"worker": [f"localhost:{p}" for p in ports]})
    procs = []
    code = ("import json,sys,tensorflow as tf;"
            "cs=tf.train.ClusterSpec(json.loads(sys.argv[1]));"
            "s=tf.distribute.Server(cs,job_name='worker',task_index=int(sys.argv[2]));s.join()")
    try:
        for i in range(2):
            procs.append(subprocess.Popen([sys.executable, "-c", code, spec, str(i)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in ports:
            _wait_port(p)
        target = f"grpc://localhost:{ports[0]}"
        devs = ["/job:worker/task:0", "/job:worker/task:1"]
        for w in workloads:
            if w == "W5":
                from tensorgrid import demo
                yield {"W5 training": demo.time_training_steps(tf, target, ps_device=devs[0], worker_devices=devs)}
            else:
                yield wl.ALL[w](tf, target, devs)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _wait_port(port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def _child(args):
    workloads = args.only.split(",")
    if args.child == "ray":
        from benchmarks import peers
        gen = peers.ray_compiled_graphs(workloads)
    elif args.child == "limits":
        from benchmarks import peers
        gen = iter([peers.limits()])
    elif args.child == "tensorflow":
        gen = _child_tensorflow(workloads)
    else:
        gen = _child_tensorgrid(workloads, args.transport)
    for result in gen:
        for name, samples in result.items():
            print("RESULT " + json.dumps({"name": name, "samples": samples}), flush=True)
    return 0


# ---- parent: orchestration and the table ----------------------------------------------------

def _run_child(system, workloads, transport=None, root=ROOT):
    """{name: samples} of one benchmark child, run with the packages and benchmarks found under `root`."""
    cmd = [sys.executable, "-m", "benchmarks.run", "--child", system, "--only", ",".join(workloads)]
    if transport:
        cmd += ["--transport", transport]
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(cmd, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT "):])
            out[r["name"]] = r["samples"]
    if proc.returncode != 0:
        print(f"warning: {system} benchmark child exited {proc.returncode}", file=sys.stderr)
    return out


def _installed(module):
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="W1,W2,W3,W4,W5,W6,W7,W8", help="comma-separated workloads (W1..W8)")
    p.add_argument("--no-tensorflow", action="store_true", help="skip TensorFlow even where installed")
    p.add_argument("--no-ray", action="store_true", help="skip Ray Compiled Graphs even where installed")
    p.add_argument("--json", metavar="PATH",
                   help="also write the summary rows as one JSON list to PATH (benchmarks/plot.py draws them)")
    p.add_argument("--child", choices=["tensorgrid", "tensorflow", "ray", "limits"], help=argparse.SUPPRESS)
    p.add_argument("--transport", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    workloads = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8")]
    if unknown:
        p.error(f"unknown workload(s) {unknown}; choose from W1..W8")
    in_cluster = [w for w in workloads if w not in ("W7", "W8")]
    results = {"tensorgrid": _run_child("tensorgrid", in_cluster) if in_cluster else {}}
    if "W2" in workloads:
        tcp = _run_child("tensorgrid", ["W2"], transport="tcp")
        results["tensorgrid"].update({k + " (tcp, no shm)": v for k, v in tcp.items()})
    with_tf = not args.no_tensorflow and _installed("tensorflow")
    if with_tf:
        results["tensorflow"] = _run_child("tensorflow", in_cluster) if in_cluster else {}
    if not args.no_ray and _installed("ray") and {"W1", "W2", "W3"} & set(workloads):
        results["ray"] = _run_child("ray", in_cluster)
    results["limits"] = _run_child("limits", in_cluster)
    if "W8" in workloads:
        from benchmarks import w8
        for system in ("tensorgrid", "tensorflow") if with_tf else ("tensorgrid",):
            results[system].update(w8.run(system))
    w7_where = None
    if "W7" in workloads:
        from benchmarks import w7
        w7_results, w7_where = w7.run()
        for system, rows in w7_results.items():
            if system == "tensorgrid" or with_tf:
                results.setdefault(system, {}).update(rows)
    rows = _report(results)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    if "W7" in workloads:
        w7.report(results, w7_where)
    if "W8" in workloads:
        w8.report(results)
    return 0 if results["tensorgrid"] else 1


def _report(results):
    tg = results.get("tensorgrid", {})
    peers = [(results.get("tensorflow", {}), "tensorflow", "TF"), (results.get("ray", {}), "ray", "Ray CG")]
    rows = []
    print(f"\n{'workload':<42}{'tensorgrid median':>18}{'p10':>10}{'p90':>10}{'TF median':>12}{'ratio':>8}"
          f"{'Ray CG median':>15}{'ratio':>8}")
    for name, samples in tg.items():
        s = _summary(name, "tensorgrid", samples)
        rows.append(s)
        base = name.replace(" (tcp, no shm)", "").split(" (")[0]
        line = f"{name:<42}{s['median_s'] * 1e3:>15.3f} ms{s['p10_s'] * 1e3:>10.3f}{s['p90_s'] * 1e3:>10.3f}"
        for peer, system, _ in peers:
            ps = _summary(base, system, peer[base]) if base in peer else None
            ratio = f"{s['median_s'] / ps['median_s']:.2f}x" if ps else "-"
            line += f"{(ps['median_s'] * 1e3 if ps else float('nan')):>{12 if system == 'tensorflow' else 15}.3f}{ratio:>8}"
        if name.startswith("W2"):
            line += f"  ({64 * 2**20 / s['median_s'] / 1e9:.2f} GB/s)"
        print(line)
    for peer, system, _ in peers:
        for name, samples in peer.items():
            rows.append(_summary(name, system, samples))
    limits = results.get("limits", {})
    if limits:
        print("\nlimits on this machine, same run:")
        for name, samples in limits.items():
            s = _summary(name, "limit", samples)
            rows.append(s)
            print(f"  {name:<40}{s['median_s'] * 1e3:>12.3f} ms  (p10 {s['p10_s'] * 1e3:.3f}, p90 {s['p90_s'] * 1e3:.3f})")
    on, off = tg.get("W1 step latency (metrics+dashboard on)"), tg.get("W1 step latency (observability off)")
    if on and off:
        print(f"\nW1 with metrics and dashboard on / off, side by side: "
              f"{statistics.median(on) / statistics.median(off):.3f}x")
    print()
    for r in rows:
        print(json.dumps(r))
    return rows


if __name__ == "__main__":
    sys.exit(main())
