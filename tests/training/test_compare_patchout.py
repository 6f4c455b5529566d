"""scripts/compare_patchout.py: two real (tiny) runs of train.py that differ only in patchout + SpecAugment."""

import json
import sys

import pytest

from ..conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import compare_patchout  # noqa: E402


@pytest.mark.slow
def test_both_runs_go_through_train_py_and_are_reported(tmp_path, fsdd_dir):
    results = compare_patchout.main([
        "--fsdd_dir", str(fsdd_dir), "--epochs", "1", "--max_train_samples", "48", "--max_eval_samples", "16",
        "--output_dir", str(tmp_path),
    ])
    plain, augmented = results
    assert plain["config_overrides"] + "," + compare_patchout.ComparisonArguments.augmentation == augmented["config_overrides"]
    assert plain["patch_tokens_in_training"] == plain["patch_tokens"] == augmented["patch_tokens"]
    assert augmented["patch_tokens_in_training"] < plain["patch_tokens"]  # patchout dropped tokens
    for result in results:
        assert 0 <= result["test_accuracy"] <= 1 and result["train_seconds"] > 0
        assert (tmp_path / f"compare-{result['run']}" / "model.safetensors").is_file()
    report = json.loads((tmp_path / "compare_patchout.json").read_text())
    assert [row["run"] for row in report["results"]] == ["plain", "augmented"]
    table = (tmp_path / "compare_patchout.md").read_text()
    assert table.count("\n| ") == 3  # header + two runs
