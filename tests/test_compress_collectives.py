"""Compressed collectives through torch.distributed on real processes: allreduce, reduce_scatter
and allgather agree with dense within each codec's bound for 1-4 ranks and give identical
results on every rank; group-level options; DDP hook (trains, warm-up, fallback, state_dict);
FSDP2's reduce-scatter with a codec; mismatched codecs fail instead of hanging."""

from __future__ import annotations

import logging

import gradwire
import pytest
import torch
from gradwire.compression import Codec
from world import init, run_world

N = 1000  # not a multiple of the 256-element block, nor of 3


def _inputs(rank, size, n=N, seed=0):
    gen = torch.Generator().manual_seed(seed * 100 + rank)
    return torch.randn(n, generator=gen)


def _bound(spec, xs, size):
    """Max |compressed - dense| allowed for a sum over ranks of xs (list of inputs)."""
    mag = sum(x.abs().max() for x in xs).item()
    if spec == "fp16":
        return 2 * size * mag * 2.0**-10
    if spec == "bf16":
        return 2 * size * mag * 2.0**-7
    if spec == "int8":  # one rounding per hop plus the final encoding, each <= step / 2
        return size * mag / 127
    if spec == "int4":
        return size * mag / 7
    raise AssertionError(spec)


def _collectives_run(rank, size):
    dist = init(rank, size)
    xs = [_inputs(r, size) for r in range(size)]  # every rank knows every input
    dense = torch.stack(xs).sum(0)
    report = {}
    for spec in ["fp16", "bf16", "int8", "int4"]:
        y = xs[rank].clone()
        with gradwire.compression(spec + ":noef"):
            dist.all_reduce(y)
        report[spec] = (float((y - dense).abs().max()), _bound(spec, xs, size), y)
    # sparse codecs without feedback: exactly the sum of every rank's selection
    for spec in ["topk:0.1", "threshold:1.0"]:
        y = xs[rank].clone()
        with gradwire.compression(spec + ":noef"):
            dist.all_reduce(y)
        expect = sum((Codec(spec).roundtrip(x) for x in xs), torch.zeros(N))
        report[spec] = (float((y - expect).abs().max()), 1e-5, y)
    # random-k: every rank keeps the same indices, where the result is the dense sum
    y = xs[rank].clone()
    with gradwire.compression("randomk:0.2:noef"):
        dist.all_reduce(y)
    kept = y != 0
    report["randomk"] = (
        float((y[kept] - dense[kept]).abs().max()),
        1e-5,
        y,
    )
    report["randomk_kept"] = int(kept.sum())
    # average
    y = xs[rank].clone()
    with gradwire.compression("int8:noef"):
        dist.all_reduce(y, op=dist.ReduceOp.AVG)
    report["avg"] = (float((y - dense / size).abs().max()), _bound("int8", xs, size) / size, y)
    # reduce_scatter: block `rank` of the sum
    big = [_inputs(r, size, N * size, seed=1) for r in range(size)]
    out = torch.empty(N)
    with gradwire.compression("int8:noef"):
        dist.reduce_scatter_tensor(out, big[rank])
    block = torch.stack(big).sum(0)[rank * N : (rank + 1) * N]
    report["reduce_scatter"] = (float((out - block).abs().max()), _bound("int8", big, size), None)
    out_tk = torch.empty(N)
    with gradwire.compression("topk:0.2:noef"):
        dist.reduce_scatter_tensor(out_tk, big[rank])
    full = sum((Codec("topk:0.2").roundtrip(b) for b in big), torch.zeros(N * size))
    report["reduce_scatter_topk"] = (
        float((out_tk - full[rank * N : (rank + 1) * N]).abs().max()),
        1e-5,
        None,  # each rank holds its own block
    )
    # allgather: every rank's decoded input, on every rank
    gathered = torch.empty(N * size)
    with gradwire.compression("int8:noef"):
        dist.all_gather_into_tensor(gathered, xs[rank])
    report["allgather"] = (
        float((gathered - torch.cat(xs)).abs().max()),
        _bound("int8", xs, 1),
        gathered,
    )
    # integer tensors and MAX run dense inside a compression block
    ints = torch.arange(5, dtype=torch.int64) + rank
    mx = xs[rank].clone()
    with gradwire.compression("int4"):
        dist.all_reduce(ints)
        dist.all_reduce(mx, op=dist.ReduceOp.MAX)
    report["dense_int"] = ints.tolist()
    report["dense_max"] = bool(torch.equal(mx, torch.stack(xs).max(0).values))
    # results identical on every rank
    same = {}
    for k, v in report.items():
        if isinstance(v, tuple) and v[2] is not None:
            parts = [torch.empty_like(v[2]) for _ in range(size)]
            dist.all_gather(parts, v[2])
            same[k] = all(torch.equal(parts[0], p) for p in parts)
        if isinstance(v, tuple):
            report[k] = v[:2]
    report["same"] = same
    report["stats"] = gradwire.compression.stats()
    dist.destroy_process_group()
    return report


@pytest.mark.timeout(180)
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_compressed_collectives_agree_with_dense(size):
    # 3 ranks: chunks of one codec block, so the quantized ring pipelines several chunks
    env = {"GRADWIRE_RING_CHUNK_BYTES": "1K"} if size == 3 else None
    reports = run_world(_collectives_run, size, timeout=150, env=env)
    for rank, rep in enumerate(reports):
        for k, v in rep.items():
            if isinstance(v, tuple):
                err, bound = v
                assert err <= bound, f"{k} on rank {rank} of {size}: error {err} > bound {bound}"
        assert all(rep["same"].values()), f"results differ across ranks: {rep['same']}"
        assert rep["randomk_kept"] == 200
        assert rep["dense_int"] == [sum(range(size)) + i * size for i in range(5)]
        assert rep["dense_max"]
        stats = rep["stats"]
        assert stats["ops"] == 11
        if size > 1:
            assert 0 < stats["wire_bytes"] < stats["raw_bytes"]


def _options_run(rank, size):
    from datetime import timedelta

    import torch.distributed as dist

    dist.init_process_group(
        "gradwire",
        rank=rank,
        world_size=size,
        timeout=timedelta(seconds=60),
        pg_options=gradwire.Options(compression="int8", compress_ops=("allreduce",)),
    )
    x = torch.full((600,), float(rank + 1))
    dist.all_reduce(x)
    g = torch.empty(2 * 600)
    dist.all_gather_into_tensor(g, x * 0 + 0.123456)  # not compressed by these options
    world_stats = gradwire.compression.stats()
    sub = dist.new_group(
        [0, 1], backend="gradwire", pg_options=gradwire.Options(compression="topk:0.5")
    )
    y = torch.arange(10.0) * (rank + 1)
    dist.all_reduce(y, group=sub)
    with gradwire.compression(None):  # an explicit dense block wins over the group's codec
        z = torch.ones(10)
        dist.all_reduce(z, group=sub)
    error = None
    try:
        dist.new_group([0, 1], backend="gradwire", pg_options=object())
    except Exception as e:  # noqa: BLE001 - reported
        error = f"{type(e).__name__}: {e}"
    out = (
        x[:3].tolist(),
        bool((g == 0.123456).all()),
        world_stats,
        y.tolist(),
        z.tolist(),
        gradwire.compression.stats(sub)["ops"],
        error,
    )
    dist.destroy_process_group()
    return out


@pytest.mark.timeout(120)
def test_process_group_options():
    for x, exact_gather, stats, y, z, sub_ops, error in run_world(_options_run, 2, timeout=90):
        assert x == [3.0, 3.0, 3.0]
        assert exact_gather and stats["ops"] == 1
        assert y == [0.0] * 5 + [15.0, 18.0, 21.0, 24.0, 27.0]  # top half of each rank's input
        assert z == [2.0] * 10 and sub_ops == 1
        assert error is not None and "gradwire.Options" in error


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(16, 64)
        self.b = torch.nn.Linear(64, 4)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def _train(ddp, rank, steps=25):
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(100 + rank)
    target = torch.Generator().manual_seed(7)
    w = torch.randn(16, 4, generator=target)
    losses = []
    for _ in range(steps):
        x = torch.randn(32, 16, generator=gen)
        loss = (ddp(x) - x @ w).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _ddp_run(rank, size, specs):
    dist = init(rank, size)
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(0)
    dense_model = _Net()
    dense_losses = _train(DDP(dense_model), rank)
    out = {spec: _ddp_compressed(rank, spec, dense_model, dense_losses) for spec in specs}
    dist.destroy_process_group()
    return out


def _ddp_compressed(rank, spec, dense_model, dense_losses):
    from torch.nn.parallel import DistributedDataParallel as DDP

    ops_before = gradwire.compression.stats()["ops"]
    torch.manual_seed(0)
    model = _Net()
    ddp = DDP(model, bucket_cap_mb=0.004)  # a few buckets
    state = gradwire.hooks.CompressionState(spec, warmup_steps=3, key_prefix=spec)
    ddp.register_comm_hook(state, gradwire.hooks.compressed)
    losses = _train(ddp, rank)
    params = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    dense = torch.cat([p.detach().reshape(-1) for p in dense_model.parameters()])
    sd = state.state_dict()
    # a fresh state restored from the checkpoint holds the same residuals and progress
    state2 = gradwire.hooks.CompressionState(spec, warmup_steps=3, key_prefix="other")
    state2.load_state_dict(sd)
    sd2 = state2.state_dict()
    restored = sorted(sd2["residuals"]) == sorted(sd["residuals"]) != []
    restored = restored and all(
        torch.equal(sd["residuals"][k], sd2["residuals"][k]) for k in sd2["residuals"]
    )
    restored = restored and sd2["buckets"] == sd["buckets"]
    compressed_ops = gradwire.compression.stats()["ops"] - ops_before
    return (
        params.numpy(),
        dense.numpy(),
        losses,
        dense_losses,
        sd["buckets"],
        restored,
        compressed_ops,
    )


@pytest.mark.timeout(180)
def test_ddp_hook_trains_like_dense():
    specs = ["int8", "topk:0.1"]
    r0, r1 = run_world(_ddp_run, 2, specs, timeout=150)
    for spec in specs:
        _check_ddp(r0[spec], r1[spec])


def _check_ddp(result0, result1):
    (p0, d0, losses, dense_losses, buckets, restored, ops), (p1, *_rest) = result0, result1
    p0, d0, p1 = (torch.from_numpy(a) for a in (p0, d0, p1))
    assert torch.equal(p0, p1), "parameters differ across ranks"
    assert (p0 - d0).abs().max() < 0.1, f"drifted from dense: {(p0 - d0).abs().max()}"
    assert losses[-1] < 0.5 * losses[0], losses
    assert abs(losses[-1] - dense_losses[-1]) < 0.25 * dense_losses[-1] + 0.05
    assert len(buckets) >= 1 and all(b["steps"] == 25 and not b["dense"] for b in buckets.values())
    assert ops == len(buckets) * (25 - 3), "warm-up steps must run dense"
    assert restored


def _fallback_run(rank, size):
    dist = init(rank, size)
    from torch.nn.parallel import DistributedDataParallel as DDP

    records = []

    class Catch(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logging.getLogger("gradwire.compression").addHandler(Catch())
    torch.manual_seed(0)
    model = _Net()
    ddp = DDP(model)
    state = gradwire.hooks.CompressionState(
        "sign", warmup_steps=1, fallback_ratio=0.0, fallback_window=3
    )
    ddp.register_comm_hook(state, gradwire.hooks.compressed)
    _train(ddp, rank, steps=8)
    ops = gradwire.compression.stats()["ops"]
    residuals = gradwire.compression.state_dict()["residuals"]
    dist.destroy_process_group()
    return state.dense_buckets(), records, ops, sorted(residuals)


@pytest.mark.timeout(120)
def test_ddp_hook_falls_back_to_dense_when_the_residual_grows():
    for dense_buckets, records, ops, residuals in run_world(_fallback_run, 2, timeout=90):
        assert dense_buckets == [0]
        assert len(records) == 1 and "falls back to dense" in records[0]
        assert ops == 3  # steps 2-4 compressed, then dense
        assert residuals == []


def _fsdp_run(rank, size):
    dist = init(rank, size)
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (size,))
    dense, _ = _fsdp_train(rank, mesh, None)
    full, losses = _fsdp_train(rank, mesh, "int8")
    stats = gradwire.compression.stats()
    keys = sorted(gradwire.compression.state_dict()["residuals"])
    dist.destroy_process_group()
    return full.numpy(), dense.numpy(), losses, stats, keys


def _fsdp_train(rank, mesh, spec):
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    for i, layer in enumerate(model):
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh)
            if spec:
                layer.set_custom_reduce_scatter(
                    gradwire.hooks.CompressedReduceScatter(spec, key=f"layer{i}")
                )
    fully_shard(model, mesh=mesh)
    losses = _train(model, rank, steps=6)
    full = torch.cat([p.full_tensor().detach().reshape(-1) for p in model.parameters()])
    return full, losses


@pytest.mark.timeout(180)
def test_fsdp2_reduce_scatter_with_a_codec():
    (a, d, losses, stats, keys), (b, *_r) = run_world(_fsdp_run, 2, timeout=150)
    a, b, d = (torch.from_numpy(x) for x in (a, b, d))
    assert torch.equal(a, b), "parameters differ across ranks"
    assert (a - d).abs().max() < 0.05
    assert stats["ops"] == 12 and stats["wire_bytes"] < stats["raw_bytes"]
    assert keys == ["fsdp/layer0", "fsdp/layer2"]
    assert losses[-1] < losses[0]


def _mismatch_run(rank, size):
    import gradwire.errors

    dist = init(rank, size, timeout_s=20)
    x = torch.ones(100)
    try:
        with gradwire.compression("int8" if rank == 0 else "fp16"):
            dist.all_reduce(x)
    except gradwire.errors.GradwireError as e:
        return type(e).__name__, str(e)
    return "no error", ""


@pytest.mark.timeout(60)
def test_ranks_with_different_codecs_fail_clearly():
    for kind, msg in run_world(_mismatch_run, 2, timeout=45):
        assert kind in ("MismatchError", "PeerError"), (kind, msg)


def _bench(*args):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "gradwire.bench", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.timeout(150)
def test_bench_reports_wire_bytes_and_ratio(tmp_path):
    import json

    out = tmp_path / "rows.json"
    small = ["-b", "4K", "-e", "64K", "-f", "16", "-n", "2", "-w", "1", "--no-progress"]
    p = _bench(
        "allreduce,reduce_scatter", "--codec", "int8", "--np", "2", *small, "--json", str(out)
    )
    assert p.returncode == 0, p.stderr
    assert "# codec int8: wire bytes" in p.stdout
    rows = json.loads(out.read_text())["rows"]
    assert {r["op"] for r in rows} == {"allreduce", "reduce_scatter"}
    for r in rows:
        assert r["codec"] == "int8" and r["wrong"] is None
        assert 0 < r["wire_bytes"] < r["nbytes"] and r["ratio"] > 2, r


@pytest.mark.parametrize(
    "args, message",
    [
        (["--codec", "int9"], "unknown codec spec 'int9'"),
        (["--codec", "int8", "--backend", "gloo"], "--codec needs --backend gradwire"),
        (["broadcast", "--codec", "int8"], "not broadcast"),
        (["--codec", "int8", "-d", "int32"], "floating-point data"),
        (["--codec", "int8", "-o", "max"], "sum and avg"),
    ],
)
def test_bench_bad_codec_is_a_clear_error(args, message):
    p = _bench(*args)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr, p.stderr


def _feedback_run(rank, size):
    """Two allreduces with error feedback over several cache tiles per segment; returns each
    step's input, and the residual after each step."""
    dist = init(rank, size)
    n = 300_001  # segments of 100,000+ elements: several ring chunks, offsets off the 256-block grid
    out = {}
    for spec in ["fp16", "int8"]:
        steps = []
        for step in range(2):
            x = _inputs(rank, size, n, seed=step + 1) * (step + 1)
            y = x.clone()
            with gradwire.compression(spec, key="fb-" + spec):
                dist.all_reduce(y)
            (residual,) = gradwire.compression.state_dict(prefix="fb-" + spec)["residuals"].values()
            steps.append((x.numpy(), residual.numpy().copy()))
        out[spec] = steps
    dist.destroy_process_group()
    return out


@pytest.mark.parametrize("size", [1, 3])
def test_error_feedback_residual_is_what_the_codec_dropped(size):
    """residual_t = (x_t + residual_{t-1}) - roundtrip(x_t + residual_{t-1}), segment by segment
    (each rank's ring segments are encoded on their own), bit for bit."""
    n = 300_001
    base, extra = divmod(n, size)
    bounds = [i * base + min(i, extra) for i in range(size + 1)]
    for rank, out in enumerate(run_world(_feedback_run, size, timeout=120)):
        for spec, steps in out.items():
            codec = Codec(spec + ":noef")
            prev = torch.zeros(n)
            for step, (x, residual) in enumerate(steps):
                x, residual = torch.from_numpy(x), torch.from_numpy(residual)
                comp = x + prev
                sent = torch.cat(
                    [codec.roundtrip(comp[bounds[i] : bounds[i + 1]]) for i in range(size)]
                )
                want = comp - sent
                assert torch.equal(residual, want), f"{spec} rank {rank} step {step}"
                prev = want


# The quantized ring, modelled exactly: segment q's partial sum starts as rank q + 1's encoded
# contribution and travels q + 2, ..., q; every rank on the way decodes its own contribution, adds
# the incoming bytes with the codec's accumulating decode (the engine's kernel, fused
# multiply-add included) and, except the owner, re-encodes. The owner's sum is encoded once more
# for the allgather.
def _ring_reference(codec, xs, bounds):
    n = len(xs)
    sums = []
    for q in range(n):
        lo, hi = bounds[q], bounds[q + 1]
        sent = codec.encode(xs[(q + 1) % n][lo:hi])
        for hop in range(2, n + 1):
            p = (q + hop) % n
            s = codec.roundtrip(xs[p][lo:hi]).contiguous()
            codec.native.decode(sent, hi - lo, s.data_ptr(), 0, True)
            sent = codec.encode(s)
        sums.append(s if n > 1 else codec.roundtrip(xs[q][lo:hi]))
    return sums


_RING_SIZES = [30_001, 777, 1, 2_560, 30_001]  # growing and shrinking: scratch buffers reused


def _ring_exact_run(rank, size):
    dist = init(rank, size)
    out = []
    for spec in ["int8:noef", "fp16:noef"]:
        for i, n in enumerate(_RING_SIZES):
            x = _inputs(rank, size, n, seed=i + 1)
            y = x.clone()
            with gradwire.compression(spec):
                dist.all_reduce(y)
            z = x.clone()
            with gradwire.compression(spec):
                dist.all_reduce(z, op=dist.ReduceOp.AVG)
            per = -(-n // size)
            big = _inputs(rank, size, per * size, seed=i + 1)
            rs = torch.empty(per)
            with gradwire.compression(spec):
                dist.reduce_scatter_tensor(rs, big)
            ag = torch.empty(per * size)
            with gradwire.compression(spec):
                dist.all_gather_into_tensor(ag, big[:per].contiguous())
            out.append((spec, i + 1, n) + tuple(t.numpy() for t in (y, z, rs, ag)))
    dist.destroy_process_group()
    return out


@pytest.mark.timeout(180)
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_quantized_ring_matches_an_exact_model(size):
    """Allreduce (sum and average), reduce_scatter and allgather with int8 and fp16 equal, bit for
    bit, the ring modelled in Python, with segments cut into many chunks (4 codec blocks each),
    lengths off the block grid, and sizes growing and shrinking within one process."""
    env = {"GRADWIRE_RING_CHUNK_BYTES": "4K"}
    results = run_world(_ring_exact_run, size, timeout=150, env=env)
    for rank, rows in enumerate(results):
        for spec, i, n, *tensors in rows:
            y, z, rs, ag = (torch.from_numpy(t) for t in tensors)
            codec = Codec(spec)
            what = f"{spec}, {n} elements, rank {rank} of {size}"
            xs = [_inputs(r, size, n, seed=i) for r in range(size)]
            base, extra = divmod(n, size)
            bounds = [k * base + min(k, extra) for k in range(size + 1)]
            sums = _ring_reference(codec, xs, bounds)
            want = torch.cat([codec.roundtrip(s) for s in sums])
            assert torch.equal(y, want), f"allreduce sum: {what}"
            assert torch.equal(z, want / size), f"allreduce average: {what}"
            per = -(-n // size)
            bigs = [_inputs(r, size, per * size, seed=i) for r in range(size)]
            block_sums = _ring_reference(codec, bigs, [k * per for k in range(size + 1)])
            assert torch.equal(rs, block_sums[rank]), f"reduce_scatter: {what}"
            want_ag = torch.cat([codec.roundtrip(b[:per]) for b in bigs])
            assert torch.equal(ag, want_ag), f"allgather: {what}"


def _subnormal_run(rank, size):
    import numpy as np

    dist = init(rank, size)
    x = torch.full((512,), 1e-39)  # block 0: subnormal values only
    x[256:] = torch.linspace(-1, 1, 256)  # block 1: normal values
    y = x.clone()
    with gradwire.compression("int8:noef"):
        dist.all_reduce(y)
    # this thread's float mode is the caller's again: subnormal products survive
    after = float(np.float32(1e-39) * np.float32(1.0))
    dist.destroy_process_group()
    return y.numpy(), x.numpy(), after


@pytest.mark.timeout(60)
def test_codec_math_flushes_subnormals_and_restores_the_float_mode():
    """Compressed ops read and produce no subnormal floats (they cost a microcode assist each on
    x86 and carry nothing a codec keeps): a block of subnormal values sums to zero. The calling
    thread's floating-point mode is unchanged afterwards."""
    for y, x, after in run_world(_subnormal_run, 2, timeout=45):
        assert not y[:256].any(), "a block of subnormal inputs must decode to zero"
        want = torch.from_numpy(x[256:]) * 2
        assert (torch.from_numpy(y[256:]) - want).abs().max() <= 2 / 127
        assert after != 0.0, "the caller's thread was left flushing subnormals"


def _killed_mid_op_run(rank, size):
    import os
    import signal
    import threading
    import time

    dist = init(rank, size)
    x = torch.randn(4 << 20)  # 16 MB: the ring is still moving chunks when the peer dies
    with gradwire.compression("int8", key="killed"):
        dist.all_reduce(x.clone())  # warm: scratch buffers, connections
        if rank == size - 1:
            threading.Timer(0.02, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
        start = time.monotonic()
        try:
            for _ in range(50):
                dist.all_reduce(x)
            return "no error", 0.0
        except Exception as e:  # noqa: BLE001
            return f"{type(e).__name__}: {e}", time.monotonic() - start


@pytest.mark.timeout(120)
def test_peer_killed_during_a_compressed_allreduce_fails_fast():
    """A rank killed while int8 chunks are in flight: the others get an error naming it (or the
    abort it caused) and the op with its codec within seconds, not a hang."""
    size = 3
    results = run_world(_killed_mid_op_run, size, timeout=90, allow_errors=True)
    assert results[size - 1][0] == "died"
    for rank in range(size - 1):
        text, elapsed = results[rank]
        assert text != "no error", f"rank {rank} saw no error"
        assert f"rank {size - 1}" in text or "abort" in text, text
        assert "codec int8" in text, text  # the op is described with its codec
        assert elapsed < 20, f"rank {rank} took {elapsed:.1f}s: {text}"
