"""Compressed dense pushes to the parameter server: each shard's part of a gradient travels
encoded (register_dense(..., compression=spec)), with error feedback on the worker. The
servers apply exactly the decoded gradient, the residual keeps what the codec dropped, the
write-ahead log replays compressed pushes, and bad specs are clear errors."""

from __future__ import annotations

import gradwire.ps as ps
import pytest
import torch
from gradwire.errors import InvalidArgumentError

N = 200_000  # 4 blocks of 64K elements: both shards hold several


def _grad(step: int, n: int = N) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(n, generator=g) * 0.1


@pytest.mark.timeout(60)
def test_fp16_push_applies_the_decoded_gradient_and_keeps_the_rest_as_residual():
    with ps.start_local_servers(2, 1) as servers:
        c = ps.connect(servers.addresses, worker_id=0, num_workers=1)
        init = torch.arange(N, dtype=torch.float32) / 64
        c.register_dense("w", init, optimizer=ps.SGD(lr=1.0), compression="fp16")
        g = _grad(0)
        c.push("w", g)
        got = c.pull("w", torch.empty(N))
        assert torch.equal(got, init - g.half().float())
        state = c.compression_state()
        assert sorted(state) == ["w/0", "w/1"]
        # residual = g - fp16(g), on each shard's elements
        total = sum(float(r.double().sum()) for r in state.values())
        assert total == pytest.approx(float((g - g.half().float()).double().sum()), abs=1e-6)
        assert sum(r.numel() for r in state.values()) == N
        assert c.push_dense_bytes == 4 * N and c.push_wire_bytes == 2 * N
        c.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("spec,min_ratio", [("int8", 3.9), ("topk:0.01", 40.0), ("sign", 25.0)])
def test_error_feedback_keeps_the_sum_of_pushed_gradients(spec, min_ratio):
    """value_T - residual_T = init - sum of true gradients (SGD, lr 1, one shard, in order)."""
    steps = 6
    with ps.start_local_servers(1, 1) as servers:
        c = ps.connect(servers.addresses, worker_id=0, num_workers=1)
        init = torch.zeros(N)
        c.register_dense("w", init, optimizer=ps.SGD(lr=1.0), compression=spec)
        total = torch.zeros(N, dtype=torch.float64)
        for step in range(steps):
            g = _grad(step)
            total += g.double()
            c.push("w", g)
        value = c.pull("w", torch.empty(N)).double()
        residual = c.compression_state()["w/0"].double()
        assert residual.abs().max() > 0  # the codec did drop something
        err = (value - residual - (init.double() - total)).abs().max().item()
        assert err < 1e-4, err
        assert c.push_dense_bytes / c.push_wire_bytes >= min_ratio
        c.close()


@pytest.mark.timeout(60)
def test_compression_state_round_trips_into_a_new_client():
    with ps.start_local_servers(1, 1) as servers:
        c = ps.connect(servers.addresses, worker_id=0, num_workers=1)
        c.register_dense("w", torch.zeros(N), compression="int4")
        c.push("w", _grad(0))
        state = c.compression_state()
        c.close()
        d = ps.connect(servers.addresses, worker_id=0, num_workers=1)
        d.register_dense("w", torch.zeros(N), compression="int4")
        d.load_compression_state(state)
        again = d.compression_state()
        assert sorted(again) == sorted(state)
        assert all(torch.equal(again[k], state[k]) for k in state)
        d.close()


@pytest.mark.timeout(90)
def test_compressed_pushes_replay_from_the_write_ahead_log(tmp_path):
    with ps.start_local_servers(2, 1, checkpoint_dir=str(tmp_path)) as servers:
        c = ps.connect(servers.addresses, worker_id=0, num_workers=1, timeout=60)
        c.register_dense("w", torch.ones(N), optimizer=ps.SGD(lr=0.5), compression="int8")
        for step in range(3):
            c.push("w", _grad(step))
        before = c.pull("w", torch.empty(N))
        servers.kill(0)  # SIGKILL: the pushes since the last checkpoint live only in the log
        servers.restart(0)
        after = c.pull("w", torch.empty(N))
        assert torch.equal(before, after)
        c.close()


def test_a_bad_codec_spec_is_a_clear_error():
    with ps.start_local_servers(1, 1) as servers:
        c = ps.connect(servers.addresses, worker_id=0, num_workers=1)
        with pytest.raises(InvalidArgumentError, match=r"register_dense\('w'\): compression.*int9"):
            c.register_dense("w", torch.zeros(10), compression="int9")
        with pytest.raises(TypeError, match="compression must be a codec spec"):
            c.register_dense("w", torch.zeros(10), compression=8)
        c.close()
