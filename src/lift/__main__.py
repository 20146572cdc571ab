"""`python -m lift` (what torchrun launches) runs the same command as `lift`."""

import sys

from lift.cli import main

if __name__ == "__main__":
    sys.exit(main())
