"""Lifetimes at the Python boundary: a communicator whose last reference is dropped inside one of
its own completion callbacks, and the arrays an asynchronous numpy-API op works on."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest
from world import run_world

N = 1 << 16


def _store(rank, size):
    from datetime import timedelta

    from torch.distributed import TCPStore

    port = int(os.environ["MASTER_PORT"])
    return TCPStore("127.0.0.1", port, size, rank == 0, timeout=timedelta(seconds=30))


def _last_reference_in_callback(rank, size):
    """Rank 0 queues four allreduces and drops its own reference; the first op's callback then
    drops the last one, on the communicator's executor thread, while three ops are still queued.
    Rank 1 joins late, so rank 0's ops are all queued before the first completes."""
    import time

    from gradwire import _C

    c = _C.Communicator(_store(rank, size), rank, size, "lifetime", 30.0, "127.0.0.1", "")
    arrays = [np.full(N, float(rank + 1 + i), dtype=np.float32) for i in range(4)]
    holder = [c]
    seen = []

    def drop_last_reference(error):
        seen.append((error, c_alive()))
        holder.clear()

    def c_alive():
        return len(holder)

    if rank == 1:
        time.sleep(1.0)
    works = [c.allreduce(arrays[0], N, 0, 0, drop_last_reference, False)]
    works += [c.allreduce(a, N, 0, 0, None, False) for a in arrays[1:]]
    del c
    for w in works:
        w.wait()  # before the fix: the queued ops were dropped with the communicator (hang)
    gc.collect()
    return [float(a[0]) for a in arrays], [str(e) for e, _ in seen]


def test_last_reference_dropped_in_completion_callback():
    res = run_world(_last_reference_in_callback, 2, timeout=60)
    for sums, errors in res:
        assert sums == [3.0, 5.0, 7.0, 9.0]
        assert errors == ["None"]


def _async_temporaries(rank, size):
    """async_op=True on arrays nobody else references: the op keeps them alive until it
    completes, and its result is intact in the array the Work reports done."""
    from gradwire.comm import Communicator

    comm = Communicator(_store(rank, size), rank, size, "async-arrays", timeout=30)
    ok = []
    for round_ in range(20):
        a = np.full(N, float(rank + round_), dtype=np.float32)
        view = a[:8]  # a view only: the array's own name goes away below
        work = comm.allreduce(a, async_op=True)
        del a
        gc.collect()
        junk = [np.full(N, -1.0, dtype=np.float32) for _ in range(4)]  # reuse freed memory
        work.wait()
        ok.append(float(view[0]) == float(2 * round_ + 1) and junk[0][0] == -1.0)
    # no view kept: only the op's reference holds the array while it runs
    works = [comm.allreduce(np.ones(N, dtype=np.float32), async_op=True) for _ in range(8)]
    for w in works:
        w.wait()
    comm.close()
    return all(ok)


def test_async_op_keeps_its_arrays_alive():
    assert run_world(_async_temporaries, 2, timeout=90) == [True, True]


def _bad_buffers(rank, size):
    from gradwire import _C
    from gradwire.comm import Communicator

    comm = Communicator(_store(rank, size), rank, size, "bad-buffers", timeout=30)
    msgs = {}

    def catch(name, fn):
        try:
            fn()
            msgs[name] = "accepted"
        except Exception as e:  # noqa: BLE001 - the message is the result
            msgs[name] = f"{type(e).__name__}: {e}"

    ro = np.ones(16, dtype=np.float32)
    ro.flags.writeable = False
    catch("readonly allreduce", lambda: comm.allreduce(ro))
    catch("readonly async allreduce", lambda: comm.allreduce(ro, async_op=True))
    catch("readonly recv", lambda: comm.recv(ro, src=1 - rank))
    # the engine's own entry points check counts against the buffer's length
    c = comm._c
    small = np.ones(4, dtype=np.float32)
    catch("count too large", lambda: c.allreduce(small, 5, 0, 0, None, True))
    catch("gather output short", lambda: c.allgather(small, small, 4, 0, None, True))
    catch("bytes object written", lambda: c.allreduce(b"\0" * 64, 16, 0, 0, None, True))
    catch("not a buffer", lambda: c.allreduce(object(), 4, 0, 0, None, True))
    # the group still works, and a read-only array is fine where the op only reads it
    out = np.zeros(2 * 16, dtype=np.float32)
    comm.allgather(ro, out)
    msgs["readonly allgather input"] = out.tolist() == [1.0] * 32
    comm.close()
    del _C
    return msgs


def test_buffers_are_checked_with_clear_errors():
    res = run_world(_bad_buffers, 2, timeout=60)
    for rank, m in enumerate(res):
        for key in ("readonly allreduce", "readonly async allreduce", "readonly recv"):
            assert m[key].startswith("InvalidArgumentError"), (key, m[key])
            assert f"rank {rank}" in m[key] and "read-only" in m[key], (key, m[key])
        assert "holds 16 bytes, but the op needs 20 (5 x float32)" in m["count too large"]
        assert "allgather output holds 16 bytes, but the op needs 32" in m["gather output short"]
        assert "read-only" in m["bytes object written"], m["bytes object written"]
        assert "not a contiguous buffer" in m["not a buffer"], m["not a buffer"]
        assert m["readonly allgather input"] is True


if __name__ == "__main__":
    pytest.main([__file__, "-v"])
