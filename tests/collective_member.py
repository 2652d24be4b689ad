"""One member of a collective group in its own process, for tests/test_collectives.py.

argv: comma-separated member addresses, this member's rank, the scenario. Prints one JSON line
per result ("RESULT {...}") or the error ("ERROR <class> <message>").
"""

import json
import sys
import time

import numpy as np

import tensorgrid as tg
from tensorgrid.client.distribute import collective_ops as co
from tensorgrid.worker import collectives


def report(**kw):
    print("RESULT " + json.dumps(kw), flush=True)


def main():
    members, rank, scenario = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3]
    n = len(members)
    comm = collectives.Communicator(members, rank).start()
    collectives.set_current(comm)
    comm.wait_for_peers(60)
    try:
        if scenario == "ops":
            rng = np.random.RandomState(rank)
            x = rng.randn(5, 7).astype(np.float32)
            report(kind="sum", value=co.all_reduce_v2(tg.constant(x), n, 1, 1).numpy().tolist(), input=x.tolist())
            big = rng.randn(300_000).astype(np.float32)   # over the shared-memory threshold
            report(kind="big", value=float(co.all_reduce_v2(tg.constant(big), n, 1, 2).numpy().sum()),
                   input=float(big.astype(np.float64).sum()))
            ints = np.arange(2, dtype=np.int64) + rank    # fewer elements than members: empty chunks
            for op in ("Add", "Mul", "Min", "Max"):
                report(kind=op, value=co.all_reduce(tg.constant(ints), n, 1, 10, merge_op=op).numpy().tolist(),
                       input=ints.tolist())
            report(kind="mean", value=co.all_reduce(tg.constant(x), n, 1, 3, final_op="Div").numpy().tolist())

            @tg.function
            def gathered(v):
                return co.all_gather_v2(v, n, 1, 4)
            report(kind="gather", value=gathered(tg.constant(np.full((rank + 1, 2), rank, np.int32))).numpy().tolist())
            if rank == 0:
                out = co.broadcast_send_v2(tg.constant(x), n, 1, 5)
            else:
                out = co.broadcast_recv_v2([5, 7], tg.float32, n, 1, 5)
            report(kind="stats", shm=comm.plane.stats()["bytes_sent_shm"])
            report(kind="bcast", value=out.numpy().tolist(), rank0=np.random.RandomState(0).randn(5, 7)
                   .astype(np.float32).tolist())
        elif scenario == "die":
            x = tg.constant(np.ones(1000, np.float32))
            report(kind="first", value=float(co.all_reduce_v2(x, n, 1, 1).numpy()[0]))
            if rank == n - 1:
                print("DYING", flush=True)
                time.sleep(600)   # the test SIGKILLs this one here
            started = time.monotonic()
            try:
                co.all_reduce_v2(x, n, 1, 1)
            except tg.errors.OpError as e:
                print(f"ERROR {type(e).__name__} after {time.monotonic() - started:.2f} s: {e.message}", flush=True)
                try:
                    co.all_reduce_v2(x, n, 1, 2)
                except tg.errors.OpError as e2:
                    print(f"AGAIN {type(e2).__name__}: {e2.message}", flush=True)
                return
            print("NO ERROR", flush=True)
    finally:
        comm.close()


if __name__ == "__main__":
    main()
