"""What each rank runs: open the backend, measure, and (rank 0) print tables and save results."""

from __future__ import annotations

import sys
from typing import List, Optional

from gradwire.bench import report
from gradwire.bench.backends import Backend, open_backend
from gradwire.bench.collectives import Collective
from gradwire.bench.dtypes import DType
from gradwire.bench.machine import describe
from gradwire.bench.options import Options
from gradwire.bench.progress import Progress
from gradwire.bench.results import Row, write_json
from gradwire.bench.runner import count_steps, run_all


def run_worker(
    opts: Options, rank: int, size: int, json_path: Optional[str], plot_path: Optional[str]
) -> List[Row]:
    """Measure on this rank; rank 0 prints and writes the outputs. Returns the rows."""
    machine = describe()  # before measuring: it records the load average at the start
    backend = open_backend(opts.backend, rank, size, opts.timeout)
    try:
        backend.set_codec(opts.codec)
        opts.check_world(backend.size)
        lead = backend.rank == 0
        on_table = _table_printer(opts, backend) if lead and opts.tables else None
        progress = Progress(count_steps(opts, backend), enabled=opts.progress and lead)
        rows = run_all(opts, backend, on_table, progress)
    except BaseException:
        backend.close(orderly=False)
        raise
    backend.close()
    if lead:
        meta = {"machine": machine, "backend": backend.name, "api": backend.api, **opts.extra}
        _save(rows, meta, json_path, plot_path)
    return rows


def _table_printer(opts: Options, backend: Backend):
    how = f"{opts.warmup} warm-up, up to {opts.iters} timed repetitions"
    if opts.budget is not None:
        how += f" (fewer past {opts.budget:g}s, at least {opts.min_iters})"

    def on_table(coll: Collective, dtype: DType, rows: List[Row]) -> None:
        redop = opts.redop if coll.reduces else "none"
        out = [
            report.title(
                coll.name, dtype.name, redop, backend.name, backend.api, backend.size, how
            ),
            report.nccl_header(),
        ]
        for nbytes in dict.fromkeys(r.nbytes for r in rows):
            out.append(report.nccl_line({r.placement: r for r in rows if r.nbytes == nbytes}))
        out += [report.nccl_footer(rows, coll.primary), "#", report.osu_table(rows, coll.primary)]
        if opts.codec is not None:
            out += ["#", report.compression_table(rows, coll.primary)]
        print("\n".join(out) + "\n", flush=True)

    return on_table


def _save(rows: List[Row], meta: dict, json_path, plot_path) -> None:
    if json_path:
        write_json(json_path, rows, meta)
    if plot_path:
        from gradwire.bench.plot import plot_rows

        plot_rows(rows, plot_path)
        print(f"# plot written to {plot_path}", file=sys.stderr)
