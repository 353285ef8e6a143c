"""`python -m gradwire.run [options] script.py args...`: the same as `gradwire run`."""

import sys

from gradwire.launch.cli import main

if __name__ == "__main__":
    sys.exit(main())
