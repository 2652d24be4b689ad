"""Graph file access: a standalone worker opens files only under its --allow-file-access directories."""

import os
import subprocess
import sys

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.framework import errors
from tensorgrid.runtime.cluster import LocalCluster
from tensorgrid.worker import file_access

tf = tg.compat.v1


@pytest.fixture
def restricted(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    file_access.restrict([str(allowed)])
    try:
        yield allowed
    finally:
        file_access.unrestrict()


def test_the_users_own_process_is_unrestricted(tmp_path):
    assert file_access.allowed_directories() is None
    path = str(tmp_path / "anywhere.txt")
    assert file_access.check_path(path, "w") == path


def test_paths_inside_are_resolved_and_allowed(restricted):
    assert file_access.check_path(str(restricted / "a.txt"), "w") == os.path.realpath(restricted / "a.txt")
    assert file_access.check_path(str(restricted / "sub" / ".." / "b"), "r") == os.path.realpath(restricted / "b")
    assert file_access.check_path(str(restricted), "r") == os.path.realpath(restricted)


def test_dotdot_and_symlink_escapes_are_refused(restricted, tmp_path):
    outside = tmp_path / "outside.txt"
    with pytest.raises(errors.PermissionDeniedError, match="may not write .*outside.txt.*--allow-file-access"):
        file_access.check_path(str(restricted / ".." / "outside.txt"), "w")
    (restricted / "link").symlink_to(tmp_path)
    with pytest.raises(errors.PermissionDeniedError, match="resolved to"):
        file_access.check_path(str(restricted / "link" / "outside.txt"), "w")
    # a sibling whose name starts with the allowed one's is outside
    with pytest.raises(errors.PermissionDeniedError):
        file_access.check_path(str(tmp_path / "allowed-not") + "/x", "r", who="ReadFile 'r'")
    assert not outside.exists()


def test_no_directories_means_no_file_access(tmp_path):
    file_access.restrict([])
    try:
        with pytest.raises(errors.PermissionDeniedError, match="does not let graphs read files"):
            file_access.check_path(str(tmp_path / "x"), "r")
    finally:
        file_access.unrestrict()


def test_restrict_refuses_a_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        file_access.restrict([str(tmp_path / "missing")])
    assert file_access.allowed_directories() is None


def _print_to(target, path):
    g = tg.Graph()
    with g.as_default():
        with tg.device("/job:worker/task:0"):
            op = tg.print("written by a graph", tg.constant(7), output_stream=f"file://{path}")
    with tg.Session(target, graph=g) as sess:
        sess.run(op)


def _cache_through(target, prefix):
    g = tg.Graph()
    with g.as_default():
        with tg.device("/job:worker/task:0"):
            it = tf.data.make_one_shot_iterator(tg.data.Dataset.range(3).cache(prefix))
            nxt = it.get_next()
    with tg.Session(target, graph=g) as sess:
        got = [int(sess.run(nxt)) for _ in range(3)]
        with pytest.raises(errors.OutOfRangeError):  # the pass completes: the cache file is written
            sess.run(nxt)
        return got


def test_a_worker_process_refuses_graph_files_unless_allowed(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    victim = tmp_path / "victim.txt"
    with LocalCluster(num_workers=1) as cluster:
        # no --allow-file-access: tg.print to a file and a file cache are refused, nothing is written
        with pytest.raises(errors.PermissionDeniedError,
                           match=r"PrintV2 .* on /job:worker/replica:0/task:0.*may not write .*victim.txt.*--allow-file-access"):
            _print_to(cluster.target, victim)
        with pytest.raises(errors.PermissionDeniedError, match="CacheDataset"):
            _cache_through(cluster.target, str(allowed / "c"))
        assert not victim.exists() and not os.listdir(allowed)

        cluster.extra_worker_args = [file_access.FLAG, str(allowed)]
        cluster.restart_worker(0)
        _print_to(cluster.target, allowed / "log.txt")
        assert (allowed / "log.txt").read_text() == "written by a graph 7\n"
        assert _cache_through(cluster.target, str(allowed / "c")) == [0, 1, 2]
        assert (allowed / "c.tgcache").exists()
        # `..` out of the allowed directory and a symlink pointing out of it are refused
        with pytest.raises(errors.PermissionDeniedError, match="resolved to"):
            _print_to(cluster.target, f"{allowed}/../victim.txt")
        (allowed / "out").symlink_to(tmp_path)
        with pytest.raises(errors.PermissionDeniedError, match="resolved to"):
            _print_to(cluster.target, allowed / "out" / "victim.txt")
        assert not victim.exists()
        _io_ops_obey_the_policy(cluster.target, allowed, tmp_path)


def _io_ops_obey_the_policy(target, allowed, tmp_path):
    (tmp_path / "secret.txt").write_text("top secret")
    g = tg.Graph()
    with g.as_default(), tg.device("/job:worker/task:0"):
        name = tf.placeholder(tg.string, [])
        contents = tg.io.read_file(name)
        write = tg.io.write_file(name, tg.constant("from a graph"))
        listed = tg.io.matching_files(name)
    with tg.Session(target, graph=g) as sess:
        sess.run(write, {name: str(allowed / "sub" / "w.txt")})
        assert sess.run(contents, {name: str(allowed / "sub" / "w.txt")}) == b"from a graph"
        assert list(sess.run(listed, {name: str(allowed / "sub" / "*")})) == [str(allowed / "sub" / "w.txt").encode()]
        for op in (contents, write, listed):
            with pytest.raises(errors.PermissionDeniedError, match="--allow-file-access"):
                sess.run(op, {name: str(tmp_path / "secret.txt")})
        with pytest.raises(errors.PermissionDeniedError):
            sess.run(write, {name: str(tmp_path / "newdir" / "x.txt")})
    assert (tmp_path / "secret.txt").read_text() == "top secret" and not (tmp_path / "newdir").exists()


def test_worker_refuses_a_missing_allowed_directory(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tensorgrid.cli", "worker", "--master", "127.0.0.1:1",
                           "--master-wait", "0", file_access.FLAG, str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "--allow-file-access" in proc.stderr and "not a directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_in_process_sessions_keep_tensorflows_behaviour(tmp_path):
    path = tmp_path / "p.txt"
    g = tg.Graph()
    with g.as_default():
        op = tg.print("in process", np.float32(1.5), output_stream=f"file://{path}")
    with tg.Session(graph=g) as sess:
        sess.run(op)
    assert path.read_text() == "in process 1.5\n"
