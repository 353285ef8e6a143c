"""Allreduce algorithms (docs/architecture.md, "Algorithm selection"): ring, recursive doubling
and halving-doubling each pinned with GRADWIRE_ALGO give correct sums, averages and maxima for
counts that do not divide evenly, on power-of-two and other group sizes, over shared memory and
TCP, with identical results on every rank; and the cost model's choice is logged."""

from __future__ import annotations

import os

import numpy as np
import pytest
from world import run_world

COUNTS = (1, 2, 3, 7, 1000, 65_537, 300_001)


def _comm(rank, size):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(size))
    from gradwire.comm import Communicator

    return Communicator.from_env(timeout=60)


def _exact(rank, size):
    comm = _comm(rank, size)
    wrong = []
    for count in COUNTS:
        base = (np.arange(count) % 13).astype(np.float64)
        want = {
            "sum": base * size + 3 * size * (size - 1) / 2,
            "max": base + 3 * (size - 1),
            "avg": base + 3 * (size - 1) / 2,
        }
        for op in ("sum", "max", "avg"):
            a = (np.arange(count) % 13 + rank * 3).astype(np.float32)
            comm.allreduce(a, op=op)
            if not np.array_equal(a, want[op].astype(np.float32)):
                wrong.append(f"rank {rank}: {op} of {count} elements")
            everyone = np.empty(count * size, np.float32)
            comm.allgather(a, everyone)
            if any(
                not np.array_equal(everyone[i * count : (i + 1) * count], a) for i in range(size)
            ):
                wrong.append(f"rank {rank}: {op} of {count} elements differs between ranks")
    comm.close()
    return wrong


@pytest.mark.parametrize("algo", ["ring", "rd", "hd"])
@pytest.mark.parametrize("size,transport", [(2, "shm"), (4, "shm"), (5, "shm"), (6, "tcp")])
def test_pinned_algorithms_are_exact_on_every_rank(algo, size, transport):
    env = {"GRADWIRE_ALGO": algo, "GRADWIRE_TRANSPORT": transport}
    wrong = [w for r in run_world(_exact, size, env=env, timeout=120) for w in r]
    assert not wrong, wrong[:10]


def _one_allreduce(rank, size, count):
    comm = _comm(rank, size)
    comm.allreduce(np.ones(count, np.float32))
    comm.close()


@pytest.mark.parametrize(
    "size,nbytes,algo",
    [(4, 64 << 10, "halving-doubling"), (4, 16 << 20, "ring"), (2, 64 << 10, "ring")],
)
def test_the_cost_model_choice_is_logged(size, nbytes, algo, capfd):
    env = {"GRADWIRE_LOG_LEVEL": "debug"}
    run_world(_one_allreduce, size, nbytes // 4, env=env, timeout=60)
    err = capfd.readouterr().err
    line = next(x for x in err.splitlines() if f"allreduce seq 1: {nbytes} B" in x)
    assert f"over shm: {algo};" in line and "predicted ring" in line, line
