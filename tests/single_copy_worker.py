"""A rank for the single-copy tests that must run outside run_world (e.g. in another pid
namespace): collectives with messages above GRADWIRE_CMA_MIN_BYTES, results checked here.
Prints one JSON line: {"ok": bool, "single_copy": bytes received by single copy}."""

import json
import os

import numpy as np
from gradwire.comm import Communicator

comm = Communicator.from_env()
rank, size = comm.rank, comm.size
a = np.arange(200_000, dtype=np.float32) * (rank + 1)
comm.allreduce(a)
ok = bool(np.array_equal(a, np.arange(200_000, dtype=np.float32) * sum(range(1, size + 1))))
b = np.arange(100_000, dtype=np.int64) if rank == 0 else np.zeros(100_000, dtype=np.int64)
comm.broadcast(b, root=0)
ok = ok and bool(np.array_equal(b, np.arange(100_000, dtype=np.int64)))
print(json.dumps({"ok": ok, "single_copy": comm.stats()["bytes_single_copy"], "pid": os.getpid()}))
comm.close()
