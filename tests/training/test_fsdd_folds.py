"""scripts/fsdd_folds.py: leave-one-speaker-out folds never put the test speaker in training."""

import csv
import importlib.util

from ..conftest import REPO


spec = importlib.util.spec_from_file_location("fsdd_folds", REPO / "scripts" / "fsdd_folds.py")
fsdd_folds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fsdd_folds)


def test_folds_hold_out_each_speaker(fsdd_dir, tmp_path):
    fsdd_folds.main(["--fsdd_dir", str(fsdd_dir), "--output_dir", str(tmp_path)])
    speakers = {"george", "jackson", "lucas", "theo", "yweweler"}
    assert {p.name for p in tmp_path.iterdir()} == speakers
    for speaker in speakers:
        with open(tmp_path / speaker / "train.csv") as file:
            train = list(csv.DictReader(file))
        with open(tmp_path / speaker / "test.csv") as file:
            test = list(csv.DictReader(file))
        assert len(train) + len(test) == 2500 and len(test) == 500
        assert all(f"/{speaker}_" in row["audio"] for row in test)
        assert not any(f"/{speaker}_" in row["audio"] for row in train)
        assert {row["label"] for row in test} == {str(d) for d in range(10)}
