"""Between-graph replicated training with real processes: examples/mnist_replica.py as ps and worker tasks,
each its own OS process (tg.train.Server + MonitoredTrainingSession), on free ports, always stopped."""

import os
import re

import pytest

from tests.taskprocs import EXAMPLES, cluster_of, tasks  # noqa: F401 - the fixture

SCRIPT = os.path.join(EXAMPLES, "mnist_replica.py")
DONE = re.compile(r"worker (\d+): done at global step (\d+) after (\d+) local steps; test loss ([\d.]+), "
                  r"test accuracy ([\d.]+)")
PROGRESS = re.compile(r"worker 0: local step \d+, global step (\d+)")


def _start(tasks, cluster, job, index, *args, env=None):
    hosts = [f"--ps_hosts={','.join(cluster['ps'])}", f"--worker_hosts={','.join(cluster['worker'])}"]
    return tasks.script(f"{job}{index}", SCRIPT, *hosts, f"--job_name={job}", f"--task_index={index}", *args, env=env)


def _result(task):
    assert task.wait(240) == 0, task.log()[-3000:]
    m = DONE.search(task.log())
    assert m, task.log()[-3000:]
    return {"global_step": int(m[2]), "local_steps": int(m[3]), "loss": float(m[4]), "accuracy": float(m[5])}


def test_mnist_replica_trains_to_a_target_loss(tasks, tmp_path):
    cluster = cluster_of(ps=1, worker=2)
    _start(tasks, cluster, "ps", 0)
    workers = [_start(tasks, cluster, "worker", i, f"--checkpoint_dir={tmp_path}") for i in range(2)]
    results = [_result(w) for w in workers]
    for r in results:
        assert r["loss"] < 0.15 and r["accuracy"] > 0.95, results
        assert r["global_step"] >= 400 and r["local_steps"] > 20, results
    assert sum(r["local_steps"] for r in results) >= 400


def test_training_resumes_from_the_last_checkpoint_after_the_ps_is_killed(tasks, tmp_path):
    cluster = cluster_of(ps=1, worker=2)
    args = [f"--checkpoint_dir={tmp_path}", "--train_steps=600", "--save_checkpoint_steps=50", "--log_every=10"]
    ps = _start(tasks, cluster, "ps", 0)
    workers = [_start(tasks, cluster, "worker", i, *args) for i in range(2)]
    chief = workers[0]
    chief.wait_until(lambda log: any(int(s) >= 200 for s in PROGRESS.findall(log)), "global step 200")
    killed_at = len(chief.log())
    ps.kill()
    _start(tasks, cluster, "ps", 0)
    results = [_result(w) for w in workers]
    assert all(r["global_step"] >= 600 for r in results), results
    after = chief.log()[killed_at:]
    assert "a run failed with UnavailableError" in after and "creating the session again" in after, after
    restored = re.search(r"restored the model from \S+model\.ckpt-(\d+)", after)
    assert restored and int(restored[1]) >= 150, after
    resumed = [int(s) for s in PROGRESS.findall(after[restored.end():])]
    assert resumed and min(resumed) >= int(restored[1]), after        # went on from the checkpoint, not from 0
    assert all(r["loss"] < 0.2 for r in results), results
