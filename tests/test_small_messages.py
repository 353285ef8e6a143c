"""Small allreduces through same-host mailboxes (docs/wire-protocol.md, "Mailboxes"), on real
processes: the same bits as over frames for every dtype and op, issue order kept when async
ops are queued, mismatches still named, a dead peer or a late one still an error, not a hang."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from world import run_world

DTYPES = ["float32", "float64", "float16", "int8", "uint8", "int32", "int64", "bool"]
OPS = ["sum", "avg", "min", "max", "prod", "band", "bor", "bxor"]
COUNTS = [1, 3, 17, 64, 511]  # 511 x 8 B still fits a 4 KiB mailbox


def _valid(dtype: str, op: str) -> bool:
    floating = dtype.startswith("float")
    if op in ("band", "bor", "bxor") and floating:
        return False
    return not (op == "avg" and dtype == "bool")


def _data(rank: int, dtype: str, count: int, salt: int) -> np.ndarray:
    rng = np.random.default_rng(1000 * rank + salt)
    if dtype == "bool":
        return rng.integers(0, 2, count).astype(np.bool_)
    if dtype.startswith("float"):
        # values whose sums and products round differently in different orders
        return (rng.standard_normal(count) * 3 + 0.1).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -50), min(info.max, 50), count).astype(dtype)


def _comm(rank: int, size: int, mail_bytes=None):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(size))
    if mail_bytes is not None:
        os.environ["GRADWIRE_SMALL_MSG_BYTES"] = str(mail_bytes)
    from gradwire.comm import Communicator

    return Communicator.from_env(timeout=60)


def _all_results(rank, size, mail_bytes):
    comm = _comm(rank, size, mail_bytes)
    out = {}
    salt = 0
    for dtype in DTYPES:
        for op in OPS:
            if not _valid(dtype, op):
                continue
            for count in COUNTS:
                salt += 1
                a = _data(rank, dtype, count, salt)
                comm.allreduce(a, op=op)
                out[(dtype, op, count)] = a.tobytes()
    stats = comm.stats()
    comm.close()
    return out, stats["mailbox_messages"]


@pytest.mark.parametrize("size", [2, 3, 4])
def test_mailbox_results_equal_frames_bit_for_bit(size):
    mail = run_world(_all_results, size, None, timeout=240)
    frames = run_world(_all_results, size, 0, timeout=240)
    for rank in range(size):
        got, used = mail[rank]
        want, unused = frames[rank]
        assert used > 0 and unused == 0, (used, unused)
        assert got.keys() == want.keys()
        differ = [k for k in got if got[k] != want[k]]
        assert not differ, f"rank {rank}: mailbox results differ from frames for {differ[:5]}"
        # and every rank has the same bits
        assert got == mail[0][0]


def _interleaved(rank, size):
    comm = _comm(rank, size)
    pending = []
    wrong = []
    for i in range(30):
        # queued ops: a large one (ring over frames) and a small one (mailboxes, on the
        # executor thread), then a synchronous small one, which must wait for both
        big = np.full(100_000, float(rank + i), np.float32)
        pending.append(
            (comm.allreduce(big, async_op=True), big, float(sum(range(size)) + size * i))
        )
        tiny = np.array([rank * 3 + i], np.int64)
        pending.append((comm.allreduce(tiny, op="max", async_op=True), tiny, (size - 1) * 3 + i))
        sync = np.array([rank + 1, i], np.int32)
        comm.allreduce(sync)  # a different op and dtype: run out of order, it would mismatch
        if sync.tolist() != [size * (size + 1) // 2, size * i]:
            wrong.append((i, sync.tolist()))
        if i % 7 == 6:
            for w, arr, expect in pending:
                w.wait()
                if not np.all(arr == expect):
                    wrong.append((i, arr[:2].tolist(), expect))
            pending.clear()
            idle = np.array([float(rank)], np.float64)
            comm.allreduce(idle, op="avg")  # nothing queued: runs on this thread
            if idle.tolist() != [(size - 1) / 2]:
                wrong.append((i, "idle", idle.tolist()))
    for w, arr, expect in pending:
        w.wait()
        if not np.all(arr == expect):
            wrong.append(("end", arr[:2].tolist(), expect))
    stats = comm.stats()
    comm.close()
    return wrong, stats["ops_failed"]


@pytest.mark.parametrize("size", [2, 4])
def test_async_and_sync_small_ops_keep_issue_order(size):
    for rank, (wrong, failed) in enumerate(run_world(_interleaved, size, timeout=180)):
        assert not wrong and failed == 0, (rank, wrong[:3])


def _mismatch(rank, size, kind):
    comm = _comm(rank, size)
    try:
        # In step on the mailbox path first. (With 3 ranks, rank 0 may finish this op and abort
        # on the mismatch of the next while rank 1 still waits in this one: then rank 1 fails
        # here, as it would over frames, where the abort follows the data in the same ring.)
        comm.allreduce(np.ones(4, np.float32))
        if kind == "count":
            comm.allreduce(np.ones(4 + (rank == size - 1), np.float32))
        elif kind == "dtype":
            comm.allreduce(np.ones(4, np.float32 if rank == 0 else np.float64))
        elif kind == "op":
            comm.allreduce(np.ones(4, np.float32), op="sum" if rank == 0 else "max")
        elif kind == "broadcast":  # mailboxes on rank 0, frames on the others
            if rank == 0:
                comm.allreduce(np.ones(4, np.float32))
            else:
                comm.broadcast(np.ones(4, np.float32), root=1)
        elif kind == "barrier":  # both on mailboxes
            if rank == 0:
                comm.barrier()
            else:
                comm.allreduce(np.ones(4, np.float32))
        elif kind == "size":  # mailboxes on rank 0, a ring over frames on the others
            comm.allreduce(np.ones(4 if rank == 0 else 1 << 20, np.float32))
        comm.barrier()
        return "no error"
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


@pytest.mark.parametrize("kind", ["count", "dtype", "op", "broadcast", "barrier", "size"])
@pytest.mark.parametrize("size", [2, 3])
def test_mismatch_on_the_mailbox_path_names_both_calls(kind, size):
    start = time.monotonic()
    results = run_world(_mismatch, size, kind, timeout=90)
    assert time.monotonic() - start < 60, "a mismatch must not wait for the timeout"
    assert all(r != "no error" for r in results), results
    assert all(r.split(":")[0] in ("MismatchError", "PeerError") for r in results), results
    named = [r for r in results if r.startswith("MismatchError")]
    assert named, results
    for text in named:
        assert "mismatch" in text and text.count("rank ") >= 2, text
        assert "allreduce(" in text, text
        if kind == "barrier":
            assert "barrier(" in text, text


def _failure_of(call):
    """("Type: message", seconds until it raised), or ("no error", 0.0)."""
    start = time.monotonic()
    try:
        call()
        return "no error", 0.0
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}", time.monotonic() - start


def _killed(rank, size):
    comm = _comm(rank, size)
    a = np.ones(4, np.float32)
    for _ in range(100):
        comm.allreduce(a)
    if rank == size - 1:
        time.sleep(0.5)  # the others are waiting inside the next allreduce by then
        os.kill(os.getpid(), signal.SIGKILL)
    return _failure_of(lambda: comm.allreduce(a))


@pytest.mark.parametrize("size", [2, 4])
def test_killed_peer_during_a_mailbox_op_fails_fast(size):
    results = run_world(_killed, size, timeout=90, allow_errors=True)
    assert results[size - 1][0] == "died"
    for rank in range(size - 1):
        text, elapsed = results[rank]
        assert text.startswith("PeerError"), (rank, text)
        assert f"rank {size - 1}" in text or "aborted" in text, text
        assert elapsed < 10, f"rank {rank} took {elapsed:.1f}s"


def _late(rank, size):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(size))
    from gradwire.comm import Communicator

    comm = Communicator.from_env(timeout=3)
    a = np.ones(2, np.float64)
    comm.allreduce(a)
    if rank == size - 1:
        time.sleep(6)
    return _failure_of(lambda: comm.allreduce(a))


def test_late_rank_times_out_on_the_mailbox_path():
    results = run_world(_late, 2, timeout=60)
    text, elapsed = results[0]
    assert text.startswith("TimeoutError") and "timed out" in text, text
    assert "ranks [1] have not arrived" in text and "op seq 2" in text, text
    assert elapsed < 3 + 4, elapsed


def _uneven_config(rank, size):
    # Ranks configured differently agree on the smallest mailbox (here: none).
    comm = _comm(rank, size, 4096 if rank == 0 else 0)
    a = np.full(8, rank + 1.0, np.float32)
    comm.allreduce(a)
    return a.tolist(), comm.stats()["mailbox_messages"]


def test_ranks_agree_on_the_smallest_mailbox():
    for values, used in run_world(_uneven_config, 2, timeout=60):
        assert values == [3.0] * 8 and used == 0


def _spellings(rank, size):
    comm = _comm(rank, size)
    out = []
    a = np.full(3, rank + 1, np.int32)
    comm.allreduce(a, op="SUM")  # the general path lower-cases it
    out.append(a.tolist())
    b = np.full(4, rank + 1.0, np.dtype("float32", metadata={"unit": "m"}))  # equal, not identical
    comm.allreduce(b, "max")
    out.append(b.tolist())
    c = np.full((2, 2), rank + 1.0)  # 2-d, C contiguous
    comm.allreduce(c)
    out.append(c.ravel().tolist())
    d = np.full(0, 1.0, np.float32)  # empty
    comm.allreduce(d)
    errors = []
    for bad in (np.ones((4, 4))[:, 0], np.ones(2, np.complex64), [1.0]):
        try:
            comm.allreduce(bad)
            errors.append("no error")
        except Exception as e:  # noqa: BLE001
            errors.append(type(e).__name__)
    try:
        comm.allreduce(a, op="median")
        errors.append("no error")
    except Exception as e:  # noqa: BLE001
        errors.append(type(e).__name__)
    comm.close()
    return out, errors


def test_synchronous_allreduce_accepts_and_rejects_what_the_general_path_does():
    for out, errors in run_world(_spellings, 2, timeout=60):
        assert out == [[3, 3, 3], [2.0] * 4, [3.0] * 4]
        assert errors == ["InvalidArgumentError"] * 4, errors


def _every_sync_op(rank, size):
    c = _comm(rank, size)
    a = np.ones(12, np.float32)  # divisible by 2 and 3
    out = np.empty(12 * size, np.float32)
    part = np.empty(12 // size, np.float32)
    before = c.stats()
    calls = [
        lambda: c.allreduce(a),
        lambda: c.allreduce(a, op="max"),
        lambda: c.broadcast(a, root=0),
        lambda: c.reduce(a, root=0),
        lambda: c.allgather(a, out),
        lambda: c.reduce_scatter(a, part),
        lambda: c.alltoall(a, np.empty(12, np.float32)),
        lambda: c.barrier(),
    ]
    if size == 2:
        calls.append(lambda: c.send(a, 1) if rank == 0 else c.recv(a, 0))
    for call in calls:
        call()
    after = c.stats()
    c.close()
    return after["ops_inline"] - before["ops_inline"], len(calls)


@pytest.mark.parametrize("size", [2, 3])
def test_every_synchronous_op_runs_on_the_calling_thread(size):
    # The fast path: with nothing queued, a synchronous op is executed by its caller, with no
    # hand-off to the engine thread (a barrier that skipped it took 3 us instead of 0.8).
    for inline, calls in run_world(_every_sync_op, size, timeout=60):
        assert inline == calls
