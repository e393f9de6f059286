"""`python -m flowerlib ...` runs the `flowerlib` command (see `flowerlib.cli`)."""

import sys

from flowerlib.cli import main

if __name__ == "__main__":
    sys.exit(main())
