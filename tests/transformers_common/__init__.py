"""transformers' own common tests on MEAMTM; `scripts/transformers_common_tests.py` downloads and runs them."""

import os
import sys

import pytest


def add_common_tests_to_path() -> None:
    """Put the common test modules the script unpacked on `sys.path`, or skip the calling test module without them."""
    root = os.environ.get("MEAMTM_TRANSFORMERS_TESTS")
    if not root:
        pytest.skip(
            "transformers' common tests are not here: run python scripts/transformers_common_tests.py",
            allow_module_level=True,
        )
    if root not in sys.path:
        sys.path.insert(0, root)
