#!/usr/bin/env python3
"""One worker repeating one benchmark operation for a while, to profile a system under it:

    .venv/bin/python bench/ps/op_loop.py gradwire sparse 15 &   # prints "READY <pid>"
    perf record -g -p <pid>,<server pids> -- sleep 5             # servers: pgrep -P <pid>

Cases as in throughput.py: dense = push_pull of 16 MB float32 (SGD); sparse = pull_rows +
push_rows of 4,096 uniform ids from 1M rows x 64 (Adagrad). 2 servers, 1 worker in this
process. Prints the mean milliseconds per operation at the end.
"""

from __future__ import annotations

import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)

import systems  # noqa: E402
import torch  # noqa: E402


def main() -> int:
    if len(sys.argv) != 4 or sys.argv[1] not in systems.SYSTEMS:
        print(__doc__, file=sys.stderr)
        return 2
    system, case, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    torch.set_num_threads(1)
    with systems.Servers(system, 2, 1, mode="asp") as srv:
        client = systems.connect(srv.endpoint, 0)
        m = systems.optim_module(system)
        if case == "sparse":
            client.register_sparse(
                "t", 1 << 20, 64, init=m.Normal(std=0.01), optimizer=m.Adagrad(lr=0.01)
            )
            ids = [torch.randint(1 << 20, (4096,)) for _ in range(8)]
            grads = torch.randn(4096, 64)

            def op(i):
                client.pull_rows("t", ids[i % 8])
                client.push_rows("t", ids[i % 8], grads)

        else:
            n = 4 << 20
            client.register_dense("d", torch.zeros(n), optimizer=m.SGD(lr=1e-3))
            grad, out = torch.randn(n), torch.empty(n)

            def op(i):
                client.push_pull("d", grad, out)

        for i in range(5):
            op(i)
        print("READY", os.getpid(), flush=True)
        t0, i = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            op(i)
            i += 1
        print(f"{system} {case}: {(time.perf_counter() - t0) / i * 1e3:.2f} ms/op over {i} ops")
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
