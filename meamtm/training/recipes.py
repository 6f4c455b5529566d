"""Training recipes as data: JSON files of `scripts/train.py` arguments, grouped by what they choose.

A recipe file holds a `description` and groups of arguments (`model`, `optimiser`, `augmentation`,
`schedule`, `output`); `base` names a recipe whose groups it starts from; `train_clips`, the number of training
clips its schedule was tuned on. The shipped ones are in `meamtm/training/recipes/` (`available_recipes()`):

    python scripts/train.py --recipe fsdd                  # the FSDD recipe
    python scripts/train.py --recipe fsdd --learning_rate 1e-3 --output_dir mine   # flags win over the recipe

`defaults_from_data` chooses what a run given only its data needs: the model's rate and window from the
clips, both normalisations as two channels, and the FSDD recipe's optimiser, augmentation, schedule and padding mode;
on more clips than the recipe was tuned on, as many epochs as see as many clips as the recipe's schedule does.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from transformers.utils import logging

from .data_summary import DataSummary, window_frames
from .trainer import build_config


logger = logging.get_logger(__name__)

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
GROUPS = ("model", "optimiser", "augmentation", "schedule", "output")
# The recipe whose optimiser and augmentation a fresh model trained on other data starts from.
DEFAULT_RECIPE = "fsdd"
# The highest rate a fresh model picks from the data: AST's, enough for the 128 mel bands of speech and sound
# events; higher rates cost STFT time for bands a classifier rarely needs.
MAX_DEFAULT_SAMPLING_RATE = 16000
# The share of training clips that fit whole in a window sized from the data.
WINDOW_QUANTILE = 0.95
# What a data-only run takes from the recipe's schedule: how long to train and in which order clips come.
SCHEDULE_DEFAULTS = ("num_train_epochs", "train_sampling_strategy")
# What it takes from the recipe's model: settings that change what a step costs, not what the model can learn.
# The rest suits the recipe's data only (its rate, window and model size), or is set apart below: a recipe may
# normalise per clip alone, which removes whatever is steady over a clip, a held tone or hum as well as a
# microphone's colour, so that a class of steady sounds could no longer be told apart.
MODEL_DEFAULTS = ("padding_mode",)
# What it takes from the recipe's test-time augmentation: frame shifts, which no class depends on (the training delay
# augmentation moves clips by more), capped at what the model's patch geometry allows; not warps, which move a
# sound's pitch and would break classes told apart by it.
TEST_TIME_DEFAULTS = ("test_time_max_shift",)
# The normalisation a fresh model trained on its data takes, whatever the recipe's (the `fsdd` recipe's too): AST's
# global one and the per-clip one as two channels.
# The per-clip channel drops a recording's colour (new voices, new microphones); the global one keeps what is steady
# over a clip, which per-clip normalisation alone would erase (a held tone, a hum, a word that is one long vowel).
DATA_NORMALIZATION = "global+per_clip"


@dataclass
class Recipe:
    """A recipe file, its `base` already merged in: `groups` maps a group name to `{argument: value}`."""

    name: str
    description: str
    groups: dict[str, dict] = field(default_factory=dict)
    train_clips: int | None = None  # the training clips its schedule was tuned on

    @property
    def arguments(self) -> dict:
        """Every argument of every group, as `scripts/train.py` takes them."""
        return {key: value for group in self.groups.values() for key, value in group.items()}


def available_recipes() -> list[str]:
    return sorted(path.stem for path in RECIPES_DIR.glob("*.json"))


def recipe_path(name_or_path: str) -> Path:
    """A shipped recipe's name (`fsdd`) or the path of a recipe JSON file -> its path."""
    if (RECIPES_DIR / f"{name_or_path}.json").is_file():
        return RECIPES_DIR / f"{name_or_path}.json"
    if Path(name_or_path).is_file():
        return Path(name_or_path)
    raise ValueError(
        f"--recipe {name_or_path!r} is neither a shipped recipe ({available_recipes()}) nor a recipe JSON file."
    )


def load_recipe(name_or_path: str, _chain: tuple[str, ...] = ()) -> Recipe:
    """Read a recipe and its `base` (recursively); unknown groups and `base` cycles raise `ValueError`."""
    path = recipe_path(name_or_path)
    if str(path) in _chain:
        raise ValueError(f"Recipe {path} is its own base (through {list(_chain)}): break the cycle.")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"Recipe {path} is not valid JSON: {error}.") from None
    unknown = set(content) - {"description", "base", "train_clips", *GROUPS}
    if unknown:
        raise ValueError(
            f"Recipe {path} has unknown keys {sorted(unknown)}; a recipe holds description, base, train_clips and {GROUPS}."
        )
    train_clips = content.get("train_clips")
    if train_clips is not None and (isinstance(train_clips, bool) or not isinstance(train_clips, int) or train_clips < 1):
        raise ValueError(
            f"Recipe {path} has train_clips={train_clips!r}: give the number of training clips its schedule was tuned on "
            "(a positive integer), or leave it out."
        )
    groups = {}
    if content.get("base"):
        base = load_recipe(content["base"], (*_chain, str(path)))
        groups = {name: dict(values) for name, values in base.groups.items()}
        train_clips = base.train_clips if train_clips is None else train_clips
    for name in GROUPS:
        groups.setdefault(name, {}).update(content.get(name, {}))
    return Recipe(
        path.stem, content.get("description", ""), {name: values for name, values in groups.items() if values}, train_clips
    )


def check_arguments(recipe: Recipe, known: set[str]) -> None:
    """Raise a `ValueError` naming recipe arguments that `scripts/train.py` does not take."""
    unknown = sorted(set(recipe.arguments) - known)
    if unknown:
        raise ValueError(f"Recipe {recipe.name!r} sets {unknown}, which are not scripts/train.py arguments (see --help).")


def merge_overrides(first: str | None, then: str | None) -> str | None:
    """Two `"key=value,..."` strings as one in which `then`'s items win (they are applied later)."""
    return ",".join(part for part in (first, then) if part) or None


def defaults_from_data(
    summary: DataSummary, config_name: str, config_overrides: str | None, recipe: str = DEFAULT_RECIPE
) -> tuple[dict, str, list[str]]:
    """What a fresh model trained on `summary`'s data starts from, when the command line does not say.

    Returns `(arguments, config_overrides, choices)`: the optimiser, augmentation and number of epochs of
    `recipe` as argument defaults (fewer epochs on more clips than its `train_clips`, so that a run sees as many
    clips; and its schedule's `SCHEDULE_DEFAULTS`, its model's `TEST_TIME_DEFAULTS`); config
    overrides that carry the recipe's `MODEL_DEFAULTS`, then set the normalisation (`DATA_NORMALIZATION`), the
    sampling rate (the clips' most common rate, at most `MAX_DEFAULT_SAMPLING_RATE`) and the window
    (`WINDOW_QUANTILE` of the clip durations, on the patch grid), with `config_overrides` after them so that its
    items win; and one line per choice, for the log.
    """
    chosen = load_recipe(recipe)
    # The schedule too: a fresh model trained for the Trainer's default 3 epochs is far from converged.
    schedule = {key: value for key, value in chosen.groups.get("schedule", {}).items() if key in SCHEDULE_DEFAULTS}
    arguments = {**chosen.groups.get("optimiser", {}), **chosen.groups.get("augmentation", {}), **schedule}
    choices = [f"{key}={value} (the {chosen.name} recipe's)" for key, value in arguments.items() if key != "num_train_epochs"]
    epochs = arguments.get("num_train_epochs")
    if epochs and chosen.train_clips and summary.total_clips and summary.total_clips > chosen.train_clips:
        # As many clips seen as the recipe's schedule sees (its optimiser steps at its batch size): a run's time grows
        # with the data's clip length and the model, not with its number of clips.
        arguments["num_train_epochs"] = max(1, math.ceil(epochs * chosen.train_clips / summary.total_clips))
        choices.append(
            f"num_train_epochs={arguments['num_train_epochs']} (the {chosen.name} recipe's {epochs} epochs of "
            f"{chosen.train_clips} clips, as many clips seen in {summary.total_clips}; --num_train_epochs sets another)"
        )
    elif epochs:
        choices.append(f"num_train_epochs={epochs} (the {chosen.name} recipe's)")
    given = {item.partition("=")[0].strip() for item in (config_overrides or "").split(",") if item.strip()}
    model_items = [
        item for item in (chosen.groups.get("model", {}).get("config_overrides") or "").split(",")
        if item.strip() and item.partition("=")[0].strip() in MODEL_DEFAULTS
    ]
    derived = list(model_items)
    choices += [f"{item} (the {chosen.name} recipe's model)" for item in model_items if item.partition("=")[0].strip() not in given]
    choices += [f"{key} as --config_overrides gives it" for key in ("normalization", "sampling_rate", "max_length") if key in given]
    if "normalization" not in given:
        derived.append(f"normalization={DATA_NORMALIZATION}")
        choices.append(
            f"normalization={DATA_NORMALIZATION} (AST's global and the per-clip normalisation as two channels: a "
            "recording's colour removed in one, steady sounds kept in the other)"
        )
    if "sampling_rate" not in given:
        rate = min(summary.common_sampling_rate, MAX_DEFAULT_SAMPLING_RATE)
        derived.append(f"sampling_rate={rate}")
        choices.append(f"sampling_rate={rate} (the clips' most common rate, at most {MAX_DEFAULT_SAMPLING_RATE})")
    config = build_config(config_name, merge_overrides(",".join(derived), config_overrides))
    for key in TEST_TIME_DEFAULTS:
        wanted = chosen.groups.get("model", {}).get(key)
        if wanted is None or key in given:
            continue
        most = max(config.patch_size - config.time_stride, 0)
        arguments[key] = min(wanted, most)
        limit = "" if wanted <= most else f", capped at patch_size - time_stride = {most}"
        if arguments[key] < config.test_time_shifts - 1:  # too few frames for that many different shifts
            arguments[key] = 0
            limit += f", too few frames for test_time_shifts={config.test_time_shifts}: off"
        choices.append(
            f"{key}={arguments[key]} (the {chosen.name} recipe's{limit}: predictions averaged over the log-mel shifted "
            "by up to that many frames)"
        )
    if "max_length" not in given:
        duration = summary.duration_quantile(WINDOW_QUANTILE)
        frames = window_frames(duration, config)
        seconds = ((frames - 1) * config.hop_length + config.win_length) / config.sampling_rate
        derived.append(f"max_length={frames}")
        choices.append(
            f"max_length={frames} ({seconds:.2f} s: {WINDOW_QUANTILE:.0%} of the clips are at most {duration:.2f} s; "
            "rounded up to the patch grid)"
        )
    overrides = merge_overrides(",".join(derived), config_overrides)
    return arguments, overrides, choices


__all__ = [
    "DATA_NORMALIZATION",
    "DEFAULT_RECIPE",
    "TEST_TIME_DEFAULTS",
    "Recipe",
    "available_recipes",
    "check_arguments",
    "defaults_from_data",
    "load_recipe",
    "merge_overrides",
    "recipe_path",
]
