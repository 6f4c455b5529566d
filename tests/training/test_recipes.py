"""meamtm/training/recipes.py: recipe files, their bases, and the defaults a fresh model takes from its data."""

import json
from collections import Counter

import numpy as np
import pytest

from meamtm.training.data_summary import DataSummary
from meamtm.training.recipes import available_recipes, defaults_from_data, load_recipe, merge_overrides


def test_shipped_recipes_and_the_base_they_extend():
    assert {"fsdd", "demo"} <= set(available_recipes())
    fsdd, demo = load_recipe("fsdd"), load_recipe("demo")
    assert fsdd.description and demo.description
    # demo is fsdd with its own schedule and output folder
    assert demo.groups["optimiser"] == fsdd.groups["optimiser"] and demo.groups["augmentation"] == fsdd.groups["augmentation"]
    assert demo.arguments["num_train_epochs"] < fsdd.arguments["num_train_epochs"]
    assert demo.arguments["output_dir"] != fsdd.arguments["output_dir"]


def test_a_recipe_file_with_a_base_cycle_is_refused(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"base": str(tmp_path / "b.json")}))
    (tmp_path / "b.json").write_text(json.dumps({"base": str(tmp_path / "a.json")}))
    with pytest.raises(ValueError, match="is its own base"):
        load_recipe(str(tmp_path / "a.json"))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_recipe(str(tmp_path / "broken.json"))


def test_merged_overrides_put_the_later_items_last():
    assert merge_overrides("sampling_rate=8000", "max_length=64") == "sampling_rate=8000,max_length=64"
    assert merge_overrides(None, "a=1") == "a=1" and merge_overrides(None, None) is None


def summary(durations, rate=16000) -> DataSummary:
    return DataSummary(len(durations), Counter({rate: len(durations)}), np.asarray(durations), {"a": len(durations)})


def test_defaults_from_data_size_the_window_and_take_the_recipe_optimiser():
    arguments, overrides, choices = defaults_from_data(summary([0.5] * 19 + [3.0] * 1 + [0.9] * 80), "tiny", None)
    fsdd = load_recipe("fsdd")
    assert arguments == {**fsdd.groups["optimiser"], **fsdd.groups["augmentation"], "num_train_epochs": fsdd.arguments["num_train_epochs"]}
    # 95th percentile 0.9 s at 16 kHz, 10 ms hop: 89 frames, rounded up to 16 + 8 * 10 = 96 on the patch grid
    assert overrides == "sampling_rate=16000,max_length=96"
    assert len(choices) == len(arguments) + 2
    _, overrides, choices = defaults_from_data(summary([0.9] * 10, rate=44100), "tiny", "max_length=50,hidden_size=96")
    assert overrides == "sampling_rate=16000,max_length=50,hidden_size=96"  # capped rate; the given window kept
    assert "max_length as --config_overrides gives it" in choices
