"""Faults end with the expected error on every surviving rank, within a bound, never a hang:
a killed peer, ranks calling mismatched collectives, and a rank that never arrives."""

from __future__ import annotations

import os
import signal
import time

import torch
from world import init, run_world


def _killed_peer(rank, size):
    dist = init(rank, size, timeout_s=60)  # detection must not rely on the timeout
    t = torch.ones(1000)
    errors = []
    start = time.monotonic()
    for i in range(4):
        if rank == size - 1 and i == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        if i == 2:
            start = time.monotonic()
        try:
            dist.all_reduce(t)
        except Exception as e:  # noqa: BLE001
            errors.append((i, type(e).__name__, str(e)))
    return errors, time.monotonic() - start


def test_killed_peer_fails_every_survivor_quickly():
    results = run_world(_killed_peer, 3, timeout=60, allow_errors=True)
    assert results[2][0] == "died"
    for rank in (0, 1):
        errors, elapsed = results[rank]
        # The op in flight when rank 2 died and the later one both fail, with PeerError.
        assert [e[0] for e in errors] == [2, 3], f"rank {rank}: {errors}"
        assert all(e[1] == "PeerError" for e in errors), errors
        assert all("rank 2" in e[2] for e in errors), errors
        assert elapsed < 10, f"rank {rank} took {elapsed:.1f}s to notice"


def _killed_during_op(rank, size):
    dist = init(rank, size, timeout_s=60)
    dist.all_reduce(torch.ones(10))
    if rank == 1:
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    start = time.monotonic()
    try:
        dist.all_reduce(torch.ones(10))  # rank 0 waits here when rank 1 dies
        return "no error", 0.0
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}", time.monotonic() - start


def test_peer_killed_while_others_wait_in_an_op():
    results = run_world(_killed_during_op, 2, timeout=60, allow_errors=True)
    text, elapsed = results[0]
    assert text.startswith("PeerError") and "rank 1" in text, text
    assert elapsed < 10


def _mismatch(rank, size, kind):
    dist = init(rank, size, timeout_s=20)
    errors = []
    try:
        if kind == "op":
            if rank == 0:
                dist.all_reduce(torch.ones(10))
            else:
                dist.broadcast(torch.ones(10), src=1)
        elif kind == "count":
            dist.all_reduce(torch.ones(10 + rank))
        elif kind == "dtype":
            dist.all_reduce(torch.ones(10, dtype=torch.float32 if rank == 0 else torch.float64))
        elif kind == "root":
            dist.broadcast(torch.ones(10), src=rank)
        dist.barrier()
    except Exception as e:  # noqa: BLE001
        errors.append((type(e).__name__, str(e)))
    return errors


def test_mismatched_collectives_name_both_sides():
    for kind in ["op", "count", "dtype"]:
        start = time.monotonic()
        results = run_world(_mismatch, 2, kind, timeout=60)
        assert time.monotonic() - start < 40
        for rank, errors in enumerate(results):
            assert errors, f"{kind}: rank {rank} saw no error"
            name, text = errors[0]
            assert name in ("MismatchError", "PeerError"), (kind, rank, errors)
            assert "mismatch" in text and "rank 0" in text and "rank 1" in text, (kind, text)
        assert any(e[0][0] == "MismatchError" for e in results), (kind, results)


def test_mismatched_root():
    results = run_world(_mismatch, 2, "root", timeout=60)
    # Both ranks are roots: neither receives, so the mismatch surfaces at the next op (barrier)
    # or as a broadcast mismatch; either way every rank reports it.
    for rank, errors in enumerate(results):
        assert errors and "root=" in errors[0][1], (rank, errors)


def _late_rank(rank, size):
    dist = init(rank, size, timeout_s=3)
    dist.all_reduce(torch.ones(4))
    if rank == size - 1:
        time.sleep(8)
    start = time.monotonic()
    try:
        dist.all_reduce(torch.ones(4))
        return "no error", 0.0
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}", time.monotonic() - start


def test_timeout_names_the_op_and_the_missing_rank():
    results = run_world(_late_rank, 3, timeout=60)
    for rank in (0, 1):
        text, elapsed = results[rank]
        # One rank times out itself; its abort reaches the other, which reports that reason.
        assert "timed out" in text, text
        assert "ranks [2] have not arrived" in text, text
        assert "allreduce" in text and "op seq 2" in text, text
        assert elapsed < 3 + 4, f"rank {rank} took {elapsed:.1f}s"
    text, _ = results[2]
    assert text != "no error" and "timed out" in text, text
