"""Codecs on their own: each round-trips within its documented error bound (docs/compression.md)
over sizes that do and do not fill whole blocks, adversarial values, stochastic rounding is
unbiased, both kernel builds produce the same bytes, bad specs raise; error feedback over steps
and its state_dict on a one-rank group."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import gradwire
import pytest
import torch
from gradwire.compression import Codec
from gradwire.errors import InvalidArgumentError
from world import run_world

BLOCK = 256
SIZES = [0, 1, 7, 255, 256, 257, 1000, 4099]
QUANTIZED = ["fp16", "bf16", "int8", "int8:stochastic", "int4", "int4:stochastic", "sign", "qsgd:4"]
SPARSE = ["topk:0.1", "topk:0.05:sampled", "randomk:0.2", "threshold:0.5"]


def _blocks(x: torch.Tensor):
    for first in range(0, x.numel(), BLOCK):
        yield slice(first, min(first + BLOCK, x.numel()))


def _bound(spec: str, x: torch.Tensor) -> torch.Tensor:
    """Per-element bound on |decode(encode(x)) - x| for the quantized codecs."""
    b = torch.empty_like(x)
    if spec == "fp16":
        return x.abs() * 2.0**-11 + 2.0**-24
    if spec == "bf16":
        return x.abs() * 2.0**-8
    for s in _blocks(x):
        blk = x[s]
        m = blk.abs().max()
        if spec.startswith("int8"):
            step = m / 127
        elif spec.startswith("int4"):
            step = m / 7
        elif spec == "sign":  # |x - sign(x) * mean|x|| <= max(|x|, mean|x|)
            step = m * 2
        else:  # qsgd:4
            step = blk.norm() / 4 * 2
        half = 0.5 if spec in ("int8", "int4") else 1.0
        b[s] = step * half * (1 + 1e-5) + 1e-30
    return b


@pytest.mark.parametrize("spec", QUANTIZED)
def test_quantized_roundtrip_within_bound(spec):
    codec = Codec.parse(spec)
    gen = torch.Generator().manual_seed(1)
    for n in SIZES:
        for scale in (1e-3, 1.0, 1e4):
            x = torch.randn(n, generator=gen) * scale
            data = codec.encode(x, seed=3)
            assert len(data) == codec.encoded_bytes(n)
            y = codec.decode(data, n, seed=3)
            err = (y - x).abs()
            assert bool((err <= _bound(spec, x)).all()), (
                f"{spec} n={n} scale={scale}: max err {err.max() if n else 0}"
            )


def test_sign_decodes_to_block_mean_magnitude():
    x = torch.randn(700)
    y = Codec("sign").roundtrip(x)
    for s in _blocks(x):
        expect = torch.where(x[s] < 0, -1.0, 1.0) * x[s].abs().mean()
        assert torch.allclose(y[s], expect, rtol=1e-6)


@pytest.mark.parametrize("spec", QUANTIZED + SPARSE)
def test_all_zero_and_huge_values(spec):
    codec = Codec.parse(spec)
    z = torch.zeros(600)
    assert torch.equal(codec.roundtrip(z), z)
    huge = torch.full((300,), 1e30)
    huge[::2] = -1e30
    y = codec.roundtrip(huge)
    if spec == "fp16":  # beyond fp16's range: infinities of the right sign
        assert torch.equal(y, torch.sign(huge) * math.inf)
    elif spec in ("int8", "int4", "sign", "bf16"):
        assert torch.allclose(y, huge, rtol=1e-2)
    else:
        assert bool(torch.isfinite(y).all())


@pytest.mark.parametrize("spec", ["int8", "int4", "sign", "qsgd:4"])
def test_non_finite_poisons_only_its_block(spec):
    x = torch.randn(3 * BLOCK)
    x[BLOCK + 5] = math.nan
    x[2 * BLOCK + 1] = math.inf
    y = Codec(spec).roundtrip(x)
    assert bool(torch.isfinite(y[:BLOCK]).all())
    assert bool(torch.isnan(y[BLOCK:]).all())


def test_casts_keep_non_finite():
    x = torch.tensor([math.nan, math.inf, -math.inf, 1.0])
    for spec in ("fp16", "bf16"):
        y = Codec(spec).roundtrip(x)
        assert math.isnan(y[0]) and y[1] == math.inf and y[2] == -math.inf and y[3] == 1.0


@pytest.mark.parametrize("spec", ["int8:stochastic", "int4:stochastic", "qsgd:4"])
def test_stochastic_rounding_is_unbiased(spec):
    codec = Codec(spec)
    x = torch.randn(BLOCK, generator=torch.Generator().manual_seed(5))
    trials = 1500
    acc = torch.zeros(BLOCK, dtype=torch.float64)
    for seed in range(trials):
        acc += codec.roundtrip(x, seed=seed).double()
    mean = acc / trials
    # Each draw errs by less than one step; the mean of `trials` draws by ~step / sqrt(trials).
    step = _bound(spec, x).double()
    assert bool(((mean - x.double()).abs() <= 6 * step / math.sqrt(trials)).all())
    # and the rounding really is random: two seeds differ somewhere
    assert not torch.equal(codec.roundtrip(x, seed=1), codec.roundtrip(x, seed=2))


def test_topk_keeps_exactly_the_largest():
    gen = torch.Generator().manual_seed(2)
    for n in SIZES[1:]:
        x = torch.randn(n, generator=gen)
        codec = Codec("topk:0.1")
        k = codec.native.keep_count(n)
        assert k == max(1, round(0.1 * n))
        y = codec.roundtrip(x)
        kept = y != 0
        assert int(kept.sum()) == k
        assert torch.equal(y[kept], x[kept])
        if k < n:
            assert x[kept].abs().min() >= x[~kept].abs().max()


def test_topk_sampled_keeps_about_k_of_the_largest():
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(4))
    y = Codec("topk:0.01:sampled").roundtrip(x)
    kept = y != 0
    assert 1000 < int(kept.sum()) < 4000  # k = 2000, estimated from a sample
    assert torch.equal(y[kept], x[kept])
    assert x[kept].abs().min() >= x[~kept].abs().max()


def test_randomk_and_threshold_structure():
    x = torch.randn(1000) + 10  # no zeros
    rk = Codec("randomk:0.2")
    y1, y2 = rk.roundtrip(x, seed=1), rk.roundtrip(x, seed=2)
    assert int((y1 != 0).sum()) == 200 and len(rk.encode(x, seed=1)) == 800
    assert torch.equal(y1[y1 != 0], x[y1 != 0])
    assert not torch.equal(y1 != 0, y2 != 0), "the index set must change with the seed"
    t = torch.randn(1000)
    y = Codec("threshold:0.5").roundtrip(t)
    assert torch.equal(y, torch.where(t.abs() >= 0.5, t, torch.zeros(())))


def test_spec_names_round_trip():
    for spec in QUANTIZED + SPARSE + ["none", "qsgd:64", "int8:noef", "topk:0.001"]:
        c = Codec.parse(spec)
        assert Codec.parse(c.spec) == c
    assert Codec("int8").error_feedback and not Codec("int8:noef").error_feedback
    assert not Codec("none").lossy and Codec.parse(None).spec == "none"
    assert Codec("qsgd:4").encoded_bytes(512) == 8 + 256  # 4-bit codes
    assert Codec("int8").encoded_bytes(257) == 8 + 257
    assert Codec("sign").encoded_bytes(1000) == 16 + 125


@pytest.mark.parametrize(
    "spec, words",
    [
        ("int9", "unknown codec spec"),
        ("", "unknown codec spec"),
        ("topk", "takes 1 or 2"),
        ("topk:0", "(0, 1]"),
        ("topk:1.5", "(0, 1]"),
        ("topk:abc", "finite number"),
        ("topk:0.1:fast", "unknown top-k option"),
        ("randomk:nan", "finite number"),
        ("qsgd:0", "[1, 127]"),
        ("qsgd:2.5", "[1, 127]"),
        ("threshold:-1", ">= 0"),
        ("int8:floor", "unknown rounding"),
        ("none:noef", "no error feedback"),
    ],
)
def test_bad_specs_raise_clearly(spec, words):
    with pytest.raises(InvalidArgumentError, match=None) as e:
        Codec.parse(spec)
    assert words in str(e.value) and isinstance(e.value, ValueError)


def test_non_string_spec_raises():
    with pytest.raises(InvalidArgumentError):
        Codec.parse(8)
    with pytest.raises(InvalidArgumentError):
        gradwire.Options(compression="int8", compress_ops=("broadcast",))


_ENCODE_SNIPPET = """
import sys, torch
from gradwire.compression import Codec
x = torch.randn(5000, generator=torch.Generator().manual_seed(9)) * 3
out = b"".join(Codec(s).encode(x, seed=11) for s in sys.argv[1:])
sys.stdout.write(out.hex())
"""


def test_generic_and_simd_builds_encode_identically():
    specs = ["fp16", "bf16", "int8", "int8:stochastic", "int4", "int4:stochastic", "sign", "qsgd:4"]

    def run(simd):
        env = dict(os.environ, GRADWIRE_SIMD=simd)
        r = subprocess.run(
            [sys.executable, "-c", _ENCODE_SNIPPET, *specs],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return r.stdout

    assert run("generic") == run("auto")


# ---- error feedback on a one-rank group -------------------------------------------------------


def _feedback_gaps(dist, spec, steps, checkpoint_at=None):
    """||sum of inputs - sum of outputs|| after each step of a one-rank compressed allreduce."""
    gen = torch.Generator().manual_seed(21)
    sum_in = torch.zeros(1000, dtype=torch.float64)
    sum_out = torch.zeros(1000, dtype=torch.float64)
    gaps, saved = [], None
    for step in range(steps):
        x = torch.randn(1000, generator=gen)
        sum_in += x.double()
        with gradwire.compression(spec, key=spec):
            dist.all_reduce(x)
        sum_out += x.double()
        gaps.append(float((sum_in - sum_out).norm()))
        if step == checkpoint_at:
            saved = gradwire.compression.state_dict(prefix=spec + "/")
            residual = saved["residuals"][f"{spec}/allreduce/1000#0"]
            assert torch.allclose(residual.double(), sum_in - sum_out, atol=1e-3)
    return gaps, saved


def _feedback_run(rank, size, spec, steps):
    from world import init

    dist = init(rank, size)
    gaps, saved = _feedback_gaps(dist, spec, steps, checkpoint_at=steps // 2)
    plain, _ = _feedback_gaps(dist, spec + ":noef", steps)
    # restore into a fresh state: the residual comes back bit for bit
    key = f"{spec}/allreduce/1000#0"
    gradwire.compression.load_state_dict({"residuals": {}})
    assert gradwire.compression.state_dict()["residuals"] == {}
    gradwire.compression.load_state_dict(saved)
    again = gradwire.compression.state_dict()["residuals"]
    assert torch.equal(again[key], saved["residuals"][key])
    dist.destroy_process_group()
    return gaps, plain


@pytest.mark.timeout(120)
def test_error_feedback_tracks_the_sum_of_inputs():
    steps = 40
    for spec in ["int8", "sign", "topk:0.05", "randomk:0.25"]:
        ((gaps, plain),) = run_world(_feedback_run, 1, spec, steps, timeout=90)
        # With feedback the gap is the residual: bounded, not growing ...
        late, early = max(gaps[steps // 2 :]), max(gaps[: steps // 2])
        assert late < 2.5 * early + 1e-3, f"{spec}: residual keeps growing: {gaps}"
        # ... and well below the drift of the same codec without feedback.
        assert late < plain[-1] / 2, f"{spec}: feedback {gaps[-1]} vs none {plain[-1]}"
