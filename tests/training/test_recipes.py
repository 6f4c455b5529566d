"""meamtm/training/recipes.py: recipe files, their bases, and the defaults a fresh model takes from its data."""

import json
import math
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


def summary(durations, rate=16000, total_clips=None) -> DataSummary:
    return DataSummary(
        len(durations), Counter({rate: len(durations)}), np.asarray(durations), {"a": len(durations)}, total_clips
    )


def recipe_model_items(recipe) -> list[str]:
    """The recipe's config overrides a data-only run takes: its padding mode."""
    items = (recipe.groups["model"].get("config_overrides") or "").split(",")
    return [item for item in items if item.split("=")[0] == "padding_mode"]


def test_defaults_from_data_size_the_window_and_take_the_recipe_optimiser():
    arguments, overrides, choices = defaults_from_data(summary([0.5] * 19 + [3.0] * 1 + [0.9] * 80), "tiny", None)
    fsdd = load_recipe("fsdd")
    schedule = {key: value for key, value in fsdd.groups["schedule"].items() if key in ("num_train_epochs", "train_sampling_strategy")}
    # and the recipe's test-time frame shifts (any class survives a shift), not its warps (pitch would move)
    test_time = {"test_time_max_shift": fsdd.groups["model"]["test_time_max_shift"]}
    assert arguments == {**fsdd.groups["optimiser"], **fsdd.groups["augmentation"], **schedule, **test_time}
    assert "num_train_epochs" in arguments and "test_time_max_warp" not in arguments
    # 95th percentile 0.9 s at 16 kHz, 10 ms hop: 89 frames, rounded up to 16 + 8 * 10 = 96 on the patch grid
    model_items = recipe_model_items(fsdd)
    assert overrides == ",".join([*model_items, "normalization=global+per_clip", "sampling_rate=16000", "max_length=96"])
    assert len(choices) == len(arguments) + len(model_items) + 3
    # nor its evaluation-only silence trimming (measured on speech only)
    assert "trim_silence_db" in fsdd.groups["model"]["config_overrides"] and "trim_silence" not in overrides
    _, overrides, choices = defaults_from_data(summary([0.9] * 10, rate=44100), "tiny", "max_length=50,hidden_size=96")
    # capped rate; the given window kept; the command line's items come last and win
    assert overrides == ",".join(
        [*model_items, "normalization=global+per_clip", "sampling_rate=16000", "max_length=50", "hidden_size=96"]
    )
    assert "max_length as --config_overrides gives it" in choices
    _, overrides, choices = defaults_from_data(summary([0.9] * 10), "tiny", "normalization=global")
    assert "normalization=global+per_clip" not in overrides and overrides.endswith("normalization=global")
    assert "normalization as --config_overrides gives it" in choices
    # A patch geometry that allows fewer frames caps the shifts; a value in the overrides is the user's.
    arguments, _, choices = defaults_from_data(summary([0.9] * 10), "tiny", "time_stride=14")
    assert arguments["test_time_max_shift"] == 2
    assert any("capped at patch_size - time_stride = 2" in choice for choice in choices)
    arguments, _, choices = defaults_from_data(summary([0.9] * 10), "tiny", "time_stride=15")
    assert arguments["test_time_max_shift"] == 0 and any("test_time_shifts=3: off" in choice for choice in choices)
    arguments, _, _ = defaults_from_data(summary([0.9] * 10), "tiny", "test_time_max_shift=2")
    assert "test_time_max_shift" not in arguments


def test_defaults_from_data_take_the_recipe_padding_mode_but_not_what_suits_its_own_data(tmp_path):
    recipe = tmp_path / "voices.json"
    recipe.write_text(json.dumps({
        "model": {"config_overrides": "sampling_rate=8000,max_length=100,normalization=per_clip,padding_mode=longest,"
                                      "hidden_size=96"},
        "optimiser": {"learning_rate": 1e-3},
        "schedule": {"num_train_epochs": 7, "train_sampling_strategy": "group_by_length", "logging_steps": 5},
    }))
    arguments, overrides, choices = defaults_from_data(summary([0.5] * 10), "tiny", "hidden_size=48", recipe=str(recipe))
    assert arguments == {"learning_rate": 1e-3, "num_train_epochs": 7, "train_sampling_strategy": "group_by_length"}
    # per-clip normalisation alone would erase a steady tone (both channels keep it), and a width suits the
    # recipe's own data size
    assert overrides.split(",") == [
        "padding_mode=longest", "normalization=global+per_clip", "sampling_rate=16000", "max_length=56", "hidden_size=48"
    ]
    assert "padding_mode=longest (the voices recipe's model)" in choices
    _, overrides, choices = defaults_from_data(summary([0.5] * 10), "tiny", "padding_mode=max_length", recipe=str(recipe))
    assert overrides.split(",")[-1] == "padding_mode=max_length"  # the command line's wins
    assert not any(choice.startswith("padding_mode=longest") for choice in choices)


def test_a_data_only_run_on_more_clips_than_the_recipe_saw_trains_as_many_clips_not_as_many_epochs(tmp_path):
    fsdd = load_recipe("fsdd")
    epochs, clips = fsdd.arguments["num_train_epochs"], fsdd.train_clips
    assert clips == 2250 and load_recipe("demo").train_clips == clips  # FSDD's official training split; the base's
    # up to the recipe's size, and for a stream (size unknown), the recipe's epochs
    for total in (None, 100, clips):
        arguments, _, choices = defaults_from_data(summary([0.9] * 10, total_clips=total), "tiny", None)
        assert arguments["num_train_epochs"] == epochs
        assert f"num_train_epochs={epochs} (the fsdd recipe's)" in choices
    # four times the clips: a quarter of the epochs (rounded up), and the log says why
    arguments, _, choices = defaults_from_data(summary([0.9] * 10, total_clips=4 * clips), "tiny", None)
    assert arguments["num_train_epochs"] == math.ceil(epochs / 4)
    assert any(choice.startswith(f"num_train_epochs={math.ceil(epochs / 4)} (the fsdd recipe's {epochs} epochs of {clips}")
               for choice in choices)
    assert sum(choice.startswith("num_train_epochs=") for choice in choices) == 1
    # however large the data, at least one epoch
    arguments, _, _ = defaults_from_data(summary([0.9] * 10, total_clips=10**9), "tiny", None)
    assert arguments["num_train_epochs"] == 1
    # a recipe without train_clips keeps its epochs
    recipe = tmp_path / "untuned.json"
    recipe.write_text(json.dumps({"schedule": {"num_train_epochs": 7}}))
    arguments, _, _ = defaults_from_data(summary([0.9] * 10, total_clips=10**6), "tiny", None, recipe=str(recipe))
    assert arguments["num_train_epochs"] == 7


@pytest.mark.parametrize("value", [0, -5, 2.5, "2250", True])
def test_a_recipe_with_an_invalid_train_clips_is_refused(tmp_path, value):
    recipe = tmp_path / "bad.json"
    recipe.write_text(json.dumps({"train_clips": value, "schedule": {"num_train_epochs": 7}}))
    with pytest.raises(ValueError, match=r"train_clips=.*positive integer"):
        load_recipe(str(recipe))
