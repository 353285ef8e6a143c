"""Reduction kernels against numpy, and the AVX2 build bit-identical to the baseline build."""

from __future__ import annotations

import numpy as np
import pytest
from gradwire import _C

CODES = {"float32": 0, "float64": 1, "float16": 2, "int8": 4, "uint8": 5, "int32": 6, "int64": 7}
OPS = {"SUM": 0, "MIN": 2, "MAX": 3, "PRODUCT": 4, "BAND": 5, "BOR": 6, "BXOR": 7}
LEVELS = ["generic"] + (["avx2"] if _C.simd_level() == "avx2" else [])


def _arrays(dtype, n, seed):
    rng = np.random.default_rng(seed)
    if dtype.startswith("float"):
        a = rng.normal(0, 100, n).astype(dtype)
        b = rng.normal(0, 100, n).astype(dtype)
        if n > 20:  # special values: NaN, infinities, signed zeros, subnormals
            a[:6] = [np.nan, np.inf, -np.inf, -0.0, 0.0, np.finfo(dtype).tiny / 4]
            b[6:12] = [np.nan, -np.inf, np.inf, 0.0, -0.0, -np.finfo(dtype).tiny / 2]
        return a, b
    info = np.iinfo(dtype)
    return (
        rng.integers(info.min, info.max, n, endpoint=True).astype(dtype),
        rng.integers(info.min, info.max, n, endpoint=True).astype(dtype),
    )


def _expected(op, a, b):
    with np.errstate(all="ignore"):
        if op == "SUM":
            return (
                (a.astype(np.float32) + b.astype(np.float32)).astype(a.dtype)
                if a.dtype == np.float16
                else a + b
            )
        if op == "PRODUCT":
            return (
                (a.astype(np.float32) * b.astype(np.float32)).astype(a.dtype)
                if a.dtype == np.float16
                else a * b
            )
        if op == "MIN":
            return np.minimum(a, b)  # propagates NaN, as torch.minimum
        if op == "MAX":
            return np.maximum(a, b)
        return {"BAND": np.bitwise_and, "BOR": np.bitwise_or, "BXOR": np.bitwise_xor}[op](a, b)


@pytest.mark.parametrize("dtype", list(CODES))
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("level", LEVELS)
def test_kernel_matches_numpy(dtype, op, level):
    if op in ("BAND", "BOR", "BXOR") and dtype.startswith("float"):
        pytest.skip("bitwise ops are integer-only")
    for n in [0, 1, 7, 8, 9, 31, 1000, 4099]:
        a, b = _arrays(dtype, n, n)
        want = _expected(op, a, b)
        got = a.copy()
        _C.reduce_into_with(level, got.ctypes.data, b.ctypes.data, n, CODES[dtype], OPS[op])
        np.testing.assert_array_equal(
            got.view(f"u{got.itemsize}"),
            want.view(f"u{want.itemsize}"),
            err_msg=f"{dtype} {op} n={n} level={level}",
        )


def test_half_conversions_match_numpy_for_every_fp16_value():
    bits = np.arange(65536, dtype=np.uint16)
    as_f32 = bits.view(np.float16).astype(np.float32)
    for b in range(0, 65536, 97):
        got = _C.f16_to_f32(int(b))
        want = float(as_f32[b])
        assert (np.isnan(got) and np.isnan(want)) or got == want, hex(b)
    rng = np.random.default_rng(0)
    for x in np.concatenate([rng.normal(0, 1e4, 3000), rng.normal(0, 1e-6, 3000)]).astype(
        np.float32
    ):
        assert _C.f32_to_f16(float(x)) == int(np.float32(x).astype(np.float16).view(np.uint16)), x


def test_bf16_round_trip_rounds_to_nearest_even():
    # 1 + 2^-8 lies exactly between two bf16 values: ties go to the even mantissa.
    assert _C.bf16_to_f32(_C.f32_to_bf16(1.0 + 2**-8)) == 1.0
    assert _C.bf16_to_f32(_C.f32_to_bf16(1.0 + 3 * 2**-8)) == 1.0 + 2**-6
    assert _C.bf16_to_f32(_C.f32_to_bf16(3.0)) == 3.0
