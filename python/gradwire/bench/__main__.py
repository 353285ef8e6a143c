"""`python -m gradwire.bench ...` is `gradwire bench ...` (and what launchers start)."""

import sys

from gradwire.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
