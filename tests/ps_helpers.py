"""Shared pieces of the parameter-server tests: deterministic gradients and reference runs."""

from __future__ import annotations

import torch


def dyadic_grad(worker: int, step: int, n: int) -> torch.Tensor:
    """Gradients in quarter units: sums and products with lr 0.5 / momentum 0.5 are exact in
    float32, so BSP results can be compared bit for bit whatever the summation hardware."""
    g = torch.Generator().manual_seed(1000 * worker + step)
    return torch.randint(-8, 9, (n,), generator=g).float() / 4


def int_grad(worker: int, step: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(7919 * worker + step + 1)
    return torch.randint(-3, 4, (n,), generator=g).float()
