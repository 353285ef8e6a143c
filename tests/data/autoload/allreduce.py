"""An unmodified torch.distributed script: it never imports gradwire, it only names the backend.

Under torchrun each rank prints one JSON line: which gradwire modules `import torch` loaded,
the group's backend and the result of an all_reduce.
"""

import json
import sys

import torch
import torch.distributed as dist

ENGINE = ("gradwire.backend", "gradwire._C", "gradwire.compression", "gradwire.hooks")
loaded_by_import_torch = sorted(m for m in ENGINE if m in sys.modules)

dist.init_process_group("gradwire")
rank, size = dist.get_rank(), dist.get_world_size()
t = torch.full((5,), float(rank + 1))
dist.all_reduce(t)
record = {
    "rank": rank,
    "engine_after_import_torch": loaded_by_import_torch,
    "backend": dist.get_backend(),
    "group_type": type(dist.distributed_c10d._get_default_group()).__name__,
    "sum": t.tolist(),
}
dist.destroy_process_group()
print(json.dumps(record), flush=True)
