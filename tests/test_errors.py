"""Bad input raises a clear Python exception naming the problem and the rank, before anything
is sent: the group stays usable afterwards."""

from __future__ import annotations

import torch
from world import init, run_world


def _bad_inputs(rank, size):
    dist = init(rank, size)
    from gradwire import InvalidArgumentError

    cases = {
        "int16 dtype": lambda: dist.all_reduce(torch.ones(4, dtype=torch.int16)),
        "BXOR on float": lambda: dist.all_reduce(torch.ones(4), op=dist.ReduceOp.BXOR),
        "AVG on bool": lambda: dist.all_reduce(
            torch.ones(4, dtype=torch.bool), op=dist.ReduceOp.AVG
        ),
        "allgather wrong count": lambda: dist.all_gather(
            [torch.ones(4)] * (size + 1), torch.ones(4)
        ),
        "allgather wrong size": lambda: dist.all_gather([torch.ones(3)] * size, torch.ones(4)),
        "all_gather_into_tensor wrong size": lambda: dist.all_gather_into_tensor(
            torch.empty(size * 4 + 1), torch.ones(4)
        ),
        "reduce_scatter_tensor wrong size": lambda: dist.reduce_scatter_tensor(
            torch.empty(3), torch.ones(size * 4)
        ),
        "all_to_all_single bad splits": lambda: dist.all_to_all_single(
            torch.empty(4), torch.ones(4), [1] * size, [5] + [0] * (size - 1)
        ),
    }
    outcomes = {}
    for name, call in cases.items():
        try:
            call()
            outcomes[name] = "no error"
        except InvalidArgumentError as e:
            outcomes[name] = f"ok: {e}"
        except Exception as e:  # noqa: BLE001
            outcomes[name] = f"wrong type {type(e).__name__}: {e}"
    # Nothing was sent: the group still works.
    t = torch.ones(3)
    dist.all_reduce(t)
    outcomes["after"] = t.tolist()
    dist.destroy_process_group()
    return outcomes


def test_bad_input_is_rejected_before_sending():
    results = run_world(_bad_inputs, 2, timeout=120)
    for rank, outcomes in enumerate(results):
        assert outcomes.pop("after") == [2.0, 2.0, 2.0]
        for name, text in outcomes.items():
            assert text.startswith("ok: "), f"rank {rank}, {name}: {text}"
            assert f"rank {rank}" in text, f"rank {rank}, {name}: {text}"
