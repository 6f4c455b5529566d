"""Run transformers' own common tests on MEAMTM: `ModelTesterMixin` and `ConfigTester` on its models,
`SequenceFeatureExtractionTestMixin` on its feature extractor.

transformers' wheel holds no tests; its source distribution on the package index holds the common test modules
(`tests/test_modeling_common.py`, `tests/test_configuration_common.py`, ...), though not the helper packages they
import (`tests/utils`, `tests/generation`, `tests/exporters`). This script downloads the sdist of the installed
transformers version, unpacks those modules as the package `transformers_tests`, adds the three helper modules
(two empty mixins, generation and export, which an encoder-only audio model does not use, and the config kwargs of
`ConfigTester`'s common-kwargs check), installs `parameterized` (which they import), and runs
`tests/transformers_common/` against them:

    python scripts/transformers_common_tests.py [--work_dir build/transformers-tests] [pytest arguments ...]

Nothing is copied into this repository; the work folder is under `build/`, which git ignores. Without it,
`make test` skips `tests/transformers_common/` and says how to run it.
"""

import argparse
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import transformers


REPO = Path(__file__).resolve().parents[1]
PACKAGE = "transformers_tests"

# The helper modules the sdist lacks, by path inside the package.
HELPERS = {
    "utils/__init__.py": "",
    "utils/test_configuration_utils.py": '''"""The fields of transformers' base config, each at a value that is not its default."""

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
''',
    "generation/__init__.py": "",
    "generation/test_utils.py": "class GenerationTesterMixin:  # MEAMTM does not generate\n    pass\n",
    "exporters/__init__.py": "",
    "exporters/test_export.py": "class ExportTesterMixin:  # scripts/export_onnx.py and its tests cover export\n    pass\n",
}


def unpack_common_tests(work_dir: Path) -> Path:
    """Download transformers' sdist (the installed version) into `work_dir` and unpack its common tests as a package."""
    version = transformers.__version__
    package = work_dir / f"transformers-{version}" / PACKAGE
    if (package / "test_modeling_common.py").is_file():
        return package.parent
    work_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", f"transformers=={version}", "--no-deps", "--no-binary", ":all:",
         "--dest", str(work_dir), "--quiet"],
        check=True,
    )
    archive = work_dir / f"transformers-{version}.tar.gz"
    if not archive.is_file():
        raise FileNotFoundError(f"pip downloaded no {archive.name} into {work_dir}: is the package index reachable?")
    prefix = f"transformers-{version}/tests/"
    with tarfile.open(archive) as tar:
        members = [member for member in tar.getmembers() if member.name.startswith(prefix) and member.isfile()
                   and "/" not in member.name[len(prefix):] and member.name.endswith(".py")]
        if not any(member.name.endswith("test_modeling_common.py") for member in members):
            raise FileNotFoundError(f"{archive.name} holds no tests/test_modeling_common.py.")
        package.mkdir(parents=True, exist_ok=True)
        for member in members:
            (package / Path(member.name).name).write_bytes(tar.extractfile(member).read())
    (package / "__init__.py").write_text("")
    for path, text in HELPERS.items():
        (package / path).parent.mkdir(parents=True, exist_ok=True)
        (package / path).write_text(text)
    return package.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default=str(REPO / "build" / "transformers-tests"))
    args, pytest_args = parser.parse_known_args(argv)
    root = unpack_common_tests(Path(args.work_dir))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "parameterized"], check=True)
    env = {**os.environ, "MEAMTM_TRANSFORMERS_TESTS": str(root), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-rfs", str(REPO / "tests" / "transformers_common"), *pytest_args]
    return subprocess.run(command, env=env, cwd=REPO).returncode


if __name__ == "__main__":
    sys.exit(main())
