"""The device side of tg.data (worker/data/): prefetch's background thread, parallel map's
concurrent calls, the shuffle buffer's statistics, the file cache, and the --allow-pickle gate."""

import gc
import os
import threading

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.worker import executor as executor_lib
from tensorgrid.worker.data import base, shuffle, sources

_barrier = threading.Barrier(2, timeout=60)


def _meet(value):
    """Returns value once a second call is waiting too: only concurrent calls get through."""
    _barrier.wait()
    return value


def _values(ds):
    return [int(v) for v in ds.as_numpy_iterator()]


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "tg-data-prefetch"]


def test_prefetch_produces_ahead_on_a_background_thread_within_its_bound():
    produced = []
    ahead = threading.Event()

    def gen():
        for i in range(12):
            produced.append(threading.get_ident())
            if len(produced) == 4:
                ahead.set()
            yield i

    ds = tg.data.Dataset.from_generator(gen, output_types=tg.int64).prefetch(3)
    it = iter(ds)
    assert int(next(it)) == 0
    # The consumer asked for one element; the thread goes on to fill the buffer of 3 by itself.
    assert ahead.wait(timeout=60)
    consumed = 1
    assert threading.get_ident() not in produced
    for expected in range(1, 12):
        # a full queue holds 3 and the producer at most one more in hand
        assert len(produced) <= consumed + 3 + 1
        assert int(next(it)) == expected
        consumed += 1
    with pytest.raises(StopIteration):
        next(it)


def test_prefetch_thread_stops_when_its_iterator_is_dropped():
    before = set(_prefetch_threads())
    it = iter(tg.data.Dataset.range(10**9).prefetch(2))
    assert int(next(it)) == 0
    del it
    gc.collect()
    for t in set(_prefetch_threads()) - before:
        t.join(timeout=60)
        assert not t.is_alive()


def test_parallel_map_runs_calls_concurrently():
    ds = tg.data.Dataset.range(8).map(lambda v: tg.numpy_function(_meet, [v], tg.int64), num_parallel_calls=2)
    assert _values(ds) == list(range(8))  # each call waits for another one at the barrier: they overlap


def test_shuffle_positions_are_uniform_and_the_buffer_bounds_how_far_an_element_moves():
    n, runs = 8, 800
    full = tg.data.Dataset.range(n).shuffle(n, seed=11)
    orders = np.array([_values(full) for _ in range(runs)])  # every iteration reshuffles
    counts = np.stack([(orders == v).sum(axis=0) for v in range(n)])  # value x position
    expected = runs / n
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 120, chi2  # 49 degrees of freedom: far above the 99.99th percentile (~95)
    small = tg.data.Dataset.range(30).shuffle(4, seed=2)
    for _ in range(50):
        order = _values(small)
        assert sorted(order) == list(range(30))
        # the k-th output comes from the first 4 + k input elements
        assert all(v < 4 + k for k, v in enumerate(order))


def test_shuffle_of_blocks_and_of_single_elements_agree():
    """The vectorized buffer (blocks of rows) and the list buffer (elements of differing shapes) make
    the same draws, so they give the same order."""
    blocks = _values(tg.data.Dataset.range(200).shuffle(16, seed=9))
    ragged = tg.data.Dataset.range(200).map(lambda v: tg.fill(tg.reshape(v % 3 + 1, [1]), v)).shuffle(16, seed=9)
    assert [int(e[0]) for e in ragged.as_numpy_iterator()] == blocks


def test_shuffle_buffer_exchange_matches_the_sequential_algorithm():
    rng = np.random.default_rng(0)
    size = 5
    buf = shuffle._Buffer(size)
    contents = list(range(size))
    buf.append([np.arange(size)])
    for start in range(size, 60, 7):
        incoming = np.arange(start, start + 7)
        draws = rng.integers(0, size, size=7)
        got = np.concatenate([b[0] for b in buf.exchange(draws, [incoming])]).tolist()
        want = []
        for j, v in zip(draws.tolist(), incoming.tolist()):
            want.append(contents[j])
            contents[j] = v
        assert got == want


def test_cache_to_a_file_is_written_once_complete_and_read_back(tmp_path):
    calls = []

    def gen():
        calls.append(1)
        yield from ([b"ab", b""], [b"\x00z", b"q"])

    prefix = str(tmp_path / "cache")
    make = lambda: tg.data.Dataset.from_generator(gen, output_signature=tg.TensorSpec([2], tg.string)).cache(prefix)
    partial = iter(make())
    next(partial)
    del partial
    gc.collect()
    assert not os.listdir(tmp_path)  # a pass that stopped early keeps nothing
    first = [list(e) for e in make().as_numpy_iterator()]
    assert os.path.exists(prefix + ".tgcache") and len(calls) == 2
    second = [list(e) for e in make().as_numpy_iterator()]  # a new dataset reads the file
    assert first == second == [[b"ab", b""], [b"\x00z", b"q"]] and len(calls) == 2
    numbers = tg.data.Dataset.range(5).map(lambda v: tg.cast(v, tg.float32) / 2.0).cache(str(tmp_path / "f"))
    assert _values(numbers.map(lambda v: tg.cast(v * 2.0, tg.int64))) == list(range(5))
    assert [float(v) for v in numbers.as_numpy_iterator()] == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_a_device_that_refuses_pickles_refuses_from_generator():
    g = tg.Graph()
    with g.as_default():
        ds = tg.data.Dataset.from_generator(lambda: iter([1]), output_types=tg.int64, name="gen")
        ds.make_initializable_iterator()
        one_shot = tg.data.Dataset.from_generator(lambda: iter([1]), output_types=tg.int64)
        tg.compat.v1.data.make_one_shot_iterator(one_shot)
    device = executor_lib.DeviceContext("/job:worker/replica:0/task:1/device:CPU:0", allow_pickle=False)
    with pytest.raises(tg.errors.PermissionDeniedError, match="'gen'.*--allow-pickle"):
        executor_lib.Executable(g.to_ir(), device)


def test_runtime_sources_hand_out_read_only_blocks_of_views():
    x = np.arange(10_000, dtype=np.float32).reshape(5000, 2)
    ds = sources.TensorSlices([x])
    blocks = list(ds.blocks(base.Context()))
    assert sum(len(b[0]) for b in blocks) == 5000 and len(blocks) > 1
    assert all(np.shares_memory(b[0], x) and not b[0].flags.writeable for b in blocks)
