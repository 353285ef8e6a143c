"""Everything one benchmark run needs to know, validated before any process starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from gradwire.bench.collectives import PLACEMENTS, PRIMARY, REDOPS, Collective
from gradwire.bench.dtypes import DType
from gradwire.bench.errors import BenchUsageError


@dataclass
class Options:
    """`budget` (seconds) shortens slow rows: warm-up stops after the first call when more
    would not fit in it, and the row does min(iters, max(min_iters, budget / warm-up time))
    repetitions; every rank derives the same counts from the same shared times."""

    collectives: List[Collective]
    sizes: List[int]
    dtypes: List[DType]
    backend: str = "gradwire"
    redop: str = "sum"
    root: int = 0
    iters: int = 20
    warmup: int = 5
    warmup_time: float = 0.1  # seconds of warm-up calls a fast row does at least (--warmup-time)
    min_iters: int = 5
    budget: Optional[float] = None
    check: bool = True
    placements: Tuple[str, ...] = PLACEMENTS
    timeout: float = 300.0
    label: str = ""
    progress: bool = True
    tables: bool = True
    codec: Optional[str] = None  # gradwire compression spec (None: dense)
    extra: dict = field(default_factory=dict)

    def validate(self) -> Options:
        if not self.collectives:
            raise BenchUsageError("no collective selected (-o)")
        if not self.dtypes:
            raise BenchUsageError("no data type selected (-d)")
        if self.redop not in REDOPS:
            raise BenchUsageError(f"unknown reduction '{self.redop}' (one of {', '.join(REDOPS)})")
        if self.iters < 1 or self.warmup < 0 or self.min_iters < 1:
            raise BenchUsageError("need -n >= 1, -w >= 0 and --min-iters >= 1")
        if self.warmup_time < 0:
            raise BenchUsageError(f"--warmup-time must be >= 0, got {self.warmup_time}")
        if self.budget is not None and self.budget <= 0:
            raise BenchUsageError(f"--budget must be positive, got {self.budget}")
        if self.timeout <= 0:
            raise BenchUsageError(f"--timeout must be positive, got {self.timeout}")
        for p in self.placements:
            if p not in PLACEMENTS + (PRIMARY,):
                raise BenchUsageError(f"unknown placement '{p}' (out, in, primary)")
        if self.codec is not None:
            self._validate_codec()
        return self

    def _validate_codec(self) -> None:
        from gradwire.compression import COMPRESSIBLE_OPS, Codec
        from gradwire.errors import InvalidArgumentError

        try:
            self.codec = Codec.parse(self.codec).spec
        except InvalidArgumentError as e:
            raise BenchUsageError(f"--codec: {e}") from None
        if self.backend != "gradwire":
            raise BenchUsageError("--codec needs --backend gradwire")
        for c in self.collectives:
            if c.name not in COMPRESSIBLE_OPS:
                raise BenchUsageError(
                    f"--codec compresses {', '.join(COMPRESSIBLE_OPS)}; not {c.name}"
                )
        for d in self.dtypes:
            if not d.is_float:
                raise BenchUsageError(f"--codec compresses floating-point data, not {d.name}")
        if self.redop not in ("sum", "avg"):
            raise BenchUsageError("--codec compresses sum and avg reductions only")
        self.check = False  # results are approximate by design

    def check_world(self, world: int) -> None:
        if not 0 <= self.root < world:
            raise BenchUsageError(f"root {self.root} is outside a world of {world} ranks")
        if world < 2 and any(c.name == "sendrecv" for c in self.collectives):
            raise BenchUsageError("sendrecv needs at least 2 ranks")
