"""Shared pieces of the parameter-server tests: deterministic gradients and reference runs."""

from __future__ import annotations

import threading

import torch


def dyadic_grad(worker: int, step: int, n: int) -> torch.Tensor:
    """Gradients in quarter units: sums and products with lr 0.5 / momentum 0.5 are exact in
    float32, so BSP results can be compared bit for bit whatever the summation hardware."""
    g = torch.Generator().manual_seed(1000 * worker + step)
    return torch.randint(-8, 9, (n,), generator=g).float() / 4


def int_grad(worker: int, step: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(7919 * worker + step + 1)
    return torch.randint(-3, 4, (n,), generator=g).float()


def in_threads(fn, size, *args, timeout: float = 60.0):
    """Runs fn(rank, size, *args) for every rank, each in its own thread with its own client
    (the cheap way to have several workers; the servers are real processes either way)."""
    results, errors = [None] * size, []

    def body(rank):
        try:
            results[rank] = fn(rank, size, *args)
        except BaseException as e:  # reported below
            errors.append(f"worker {rank}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=body, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    assert not errors, errors
    return results
