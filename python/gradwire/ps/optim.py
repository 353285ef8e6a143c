"""Server-side optimizers and row initializers of the parameter server.

They are specifications: the servers apply them (per dense shard or per sparse row) with the
update rules of torch.optim, and keep their state beside the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

_SGD, _ADAGRAD, _ADAM = 1, 2, 3
_ZEROS, _NORMAL, _UNIFORM = 1, 2, 3


@dataclass(frozen=True)
class SGD:
    """``p -= lr * buf`` with ``buf = momentum * buf + grad`` (torch.optim.SGD, dampening 0)."""

    lr: float
    momentum: float = 0.0

    def _spec(self) -> Tuple[int, float, float, float, float, float]:
        return (_SGD, float(self.lr), float(self.momentum), 1e-10, 0.9, 0.999)


@dataclass(frozen=True)
class Adagrad:
    """torch.optim.Adagrad with lr_decay 0 and initial accumulator 0; state per element/row."""

    lr: float
    eps: float = 1e-10

    def _spec(self) -> Tuple[int, float, float, float, float, float]:
        return (_ADAGRAD, float(self.lr), 0.0, float(self.eps), 0.9, 0.999)


@dataclass(frozen=True)
class Adam:
    """torch.optim.Adam (no weight decay, no amsgrad). Sparse rows count their own steps, as
    torch.optim.SparseAdam does."""

    lr: float
    betas: Tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def _spec(self) -> Tuple[int, float, float, float, float, float]:
        return (_ADAM, float(self.lr), 0.0, float(self.eps), *map(float, self.betas))


@dataclass(frozen=True)
class Zeros:
    """New sparse rows start at zero."""

    def _spec(self) -> Tuple[int, float, float, int]:
        return (_ZEROS, 0.0, 0.0, 0)


@dataclass(frozen=True)
class Normal:
    """New sparse rows are drawn from N(mean, std^2), deterministically per (seed, row id)."""

    std: float = 0.01
    mean: float = 0.0
    seed: int = 0

    def _spec(self) -> Tuple[int, float, float, int]:
        return (_NORMAL, float(self.mean), float(self.std), int(self.seed))


@dataclass(frozen=True)
class Uniform:
    """New sparse rows are drawn from U(low, high), deterministically per (seed, row id)."""

    low: float = -0.01
    high: float = 0.01
    seed: int = 0

    def _spec(self) -> Tuple[int, float, float, int]:
        return (_UNIFORM, float(self.low), float(self.high), int(self.seed))


Optimizer = (SGD, Adagrad, Adam)
Initializer = (Zeros, Normal, Uniform)
