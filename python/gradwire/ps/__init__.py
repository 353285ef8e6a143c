"""gradwire's sharded parameter server (docs/parameter-server.md).

Servers: ``gradwire ps serve ...``, ``gradwire run --num-servers S ...`` or
:func:`start_local_servers`. Workers::

    import gradwire.ps as ps
    client = ps.connect()                      # addresses and ids from the launcher
    client.register_dense("w", torch.zeros(4), optimizer=ps.SGD(lr=0.1))
    client.push("w", torch.ones(4)); client.pull("w", out)
    client.register_sparse("emb", 10**7, 64, init=ps.Normal(std=0.01), optimizer=ps.Adagrad(0.05))
    rows = client.pull_rows("emb", ids); client.push_rows("emb", ids, grads)
"""

from gradwire.ps.client import Client, Future, connect
from gradwire.ps.embedding import ShardedEmbedding
from gradwire.ps.optim import SGD, Adagrad, Adam, Normal, Uniform, Zeros
from gradwire.ps.server import LocalServers, start_local_servers

__all__ = [
    "SGD",
    "Adagrad",
    "Adam",
    "Client",
    "Future",
    "LocalServers",
    "Normal",
    "ShardedEmbedding",
    "Uniform",
    "Zeros",
    "connect",
    "start_local_servers",
]
