"""`python -m meamtm.demo`: the web page of `meamtm.inference.demo` (needs `pip install meamtm[demo]`)."""

import sys

from .inference.demo import main, parse_arguments


__all__ = ["main", "parse_arguments"]

if __name__ == "__main__":
    sys.exit(main())
