"""`python -m meamtm.predict`: the command line of `meamtm.inference.predict`."""

import sys

from .inference.predict import main, parse_arguments


__all__ = ["main", "parse_arguments"]

if __name__ == "__main__":
    sys.exit(main())
