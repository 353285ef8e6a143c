"""gradwire.bench: collective microbenchmarks for gradwire and its peers.

From the shell, `gradwire bench` (or `python -m gradwire.bench`)::

    gradwire bench allreduce -b 4 -e 256M -f 2 --np 2 --json out.json --plot out.png

From Python, the same command line::

    from gradwire.bench import main
    main(["allreduce", "-b", "4", "-e", "1M", "--np", "2", "--backend", "gloo"])

Results files are read back with `read_json`; docs/benchmarks.md explains every column.
"""

from gradwire.bench.cli import main
from gradwire.bench.results import Row, Timing, read_json

__all__ = ["Row", "Timing", "main", "read_json"]
