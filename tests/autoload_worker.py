"""A spawn-helper worker that never imports gradwire: the backend comes from torch's autoload.

Kept apart from the test module (which imports gradwire) so the spawned child loads nothing of
gradwire but what `import torch` loads through the entry point.
"""

import sys

ENGINE = ("gradwire.backend", "gradwire._C", "gradwire.compression", "gradwire.hooks")


def allreduce_without_import(rank: int, size: int) -> dict:
    import torch
    import torch.distributed as dist

    before = sorted(m for m in ENGINE if m in sys.modules)
    dist.init_process_group("gradwire", rank=rank, world_size=size)
    t = torch.arange(4, dtype=torch.float32) * (rank + 1)
    dist.all_reduce(t)
    out = {
        "engine_before_init": before,
        "engine_after_init": sorted(m for m in ENGINE if m in sys.modules),
        "group_type": type(dist.distributed_c10d._get_default_group()).__name__,
        "sum": t.tolist(),
    }
    dist.destroy_process_group()
    return out
