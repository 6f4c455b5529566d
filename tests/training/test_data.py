"""meamtm/training/data.py: loading, columns, label spaces, the synthetic data set."""

import json

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Value

from meamtm.training.collate import AudioTransform, prepare_dataset
from meamtm.training.data import LabelSpace, check_columns, check_labels, label_space_of, load_splits, synthetic_sounds


def test_label_spaces_from_features_values_and_lists():
    classes = Dataset.from_dict({"label": [0, 1]}, features=Features(label=ClassLabel(names=["no", "yes"])))
    assert label_space_of(classes, "label") == LabelSpace(["no", "yes"], False)
    strings = Dataset.from_dict({"label": ["b", "a", "b"]})
    assert label_space_of(strings, "label") == LabelSpace(["a", "b"], False)
    lists = Dataset.from_dict({"label": [["x", "y"], ["z"], []]})
    space = label_space_of(lists, "label")
    assert space == LabelSpace(["x", "y", "z"], True) and space.problem_type == "multi_label_classification"
    with pytest.raises(ValueError, match="--class_names"):
        label_space_of(strings.to_iterable_dataset(), "label")


def test_check_columns_lists_the_columns():
    dataset = Dataset.from_dict({"file": ["a.wav"], "digit": [1]})
    with pytest.raises(ValueError, match=r"--audio_column 'audio' is not a column of here; its columns are \['file', 'digit'\]"):
        check_columns(dataset, "audio", "digit", where="here")
    check_columns(dataset, "file", "digit")


def test_check_labels_names_labels_missing_from_training():
    evaluation = Dataset.from_dict({"label": ["cat", "dog", "cow"]})
    with pytest.raises(ValueError, match=r"labels \['cow'\] that the training data does not have"):
        check_labels(evaluation, "label", LabelSpace(["cat", "dog"], False), where="the evaluation data")
    with pytest.raises(ValueError, match="holds a list of labels per clip"):
        check_labels(Dataset.from_dict({"label": [["cat"]]}), "label", LabelSpace(["cat"], False), where="it")


def test_synthetic_sounds_are_deterministic_and_balanced():
    a, b = synthetic_sounds(num_per_class=10), synthetic_sounds(num_per_class=10)
    assert len(a["train"]) + len(a["test"]) == 60
    row_a = a["train"].cast_column("audio", a["train"].features["audio"].__class__(decode=False))[0]
    row_b = b["train"].cast_column("audio", b["train"].features["audio"].__class__(decode=False))[0]
    assert row_a == row_b
    assert np.bincount(list(a["train"]["label"]) + list(a["test"]["label"])).tolist() == [10] * 6
    out = prepare_dataset(a["test"], AudioTransform("audio", "label", label_space_of(a["test"], "label"), 8000, 8000, False))[0]
    assert out["input_values"].shape == (8000,) and np.isfinite(out["input_values"]).all()


def test_load_splits_needs_one_source_and_reads_metadata_paths_relative_to_the_file(tmp_path, clip_file):
    with pytest.raises(ValueError, match="exactly one data source"):
        load_splits()
    with pytest.raises(ValueError, match="exactly one data source"):
        load_splits(train_dir=str(tmp_path), train_file="x.csv")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "clip.wav").write_bytes(open(clip_file, "rb").read())
    (tmp_path / "meta" / "train.jsonl").write_text(json.dumps({"audio": "clip.wav", "label": "a"}) + "\n")
    splits = load_splits(train_file=str(tmp_path / "meta" / "train.jsonl"))
    assert set(splits) == {"train"}
    assert splits["train"][0]["audio"] == str(tmp_path / "meta" / "clip.wav")
    assert splits["train"].features["audio"] == Value("string")
    with pytest.raises(ValueError, match="must be .csv, .json or .jsonl"):
        load_splits(train_file=str(tmp_path / "train.parquet"))
