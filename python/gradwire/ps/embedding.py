"""``ShardedEmbedding``: an embedding table that lives on the parameter servers."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from gradwire.ps.optim import Adagrad, Normal


class _PullPush(torch.autograd.Function):
    """Forward pulls the rows of ``ids``; backward pushes their gradients (the servers apply
    the table's optimizer). ``anchor`` only makes autograd call backward."""

    @staticmethod
    def forward(ctx, anchor, ids, module):
        ctx.ids, ctx.module = ids, module
        rows = module.client.pull_rows(module.table, ids)
        return rows.reshape(*ids.shape, module.dim)

    @staticmethod
    def backward(ctx, grad):
        m = ctx.module
        m.client.push_rows(m.table, ctx.ids.reshape(-1), grad.reshape(-1, m.dim).float())
        return None, None, None


class ShardedEmbedding(nn.Module):
    """Like ``nn.Embedding(num_rows, dim)``, but the table is sharded over the parameter
    servers: forward pulls only the rows it needs, backward pushes their gradients and the
    servers update the rows with ``optimizer``. No local copy of the table exists, so it may be
    far larger than one process's memory. The module has no local parameters; call
    ``client.clock()`` once per step under BSP/SSP.

    Example::

        client = gradwire.ps.connect()
        emb = gradwire.ps.ShardedEmbedding(10_000_000, 64, client=client,
                                           optimizer=gradwire.ps.Adagrad(lr=0.05))
        loss = model(emb(ids)).mean(); loss.backward()  # rows updated on the servers
    """

    def __init__(
        self,
        num_rows: int,
        dim: int,
        client=None,
        table: str = "emb",
        optimizer=None,
        init=None,
    ):
        super().__init__()
        if client is None:
            from gradwire.ps.client import connect

            client = connect()
        self.client, self.table = client, table
        self.num_rows, self.dim = int(num_rows), int(dim)
        client.register_sparse(
            table,
            self.num_rows,
            self.dim,
            init=Normal(std=0.01) if init is None else init,
            optimizer=Adagrad(lr=0.01) if optimizer is None else optimizer,
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        anchor: Optional[torch.Tensor] = torch.empty(0, requires_grad=torch.is_grad_enabled())
        return _PullPush.apply(anchor, ids, self)

    def extra_repr(self) -> str:
        return f"{self.num_rows}, {self.dim}, table='{self.table}'"
