"""The AudioSet recipe (meamtm/training/recipes/audioset.json): a dry run on multi-label shards of FSDD clips."""

import json
from pathlib import Path

import pytest
import torch
from datasets import Audio, ClassLabel, Dataset, Features, List
from safetensors.torch import load_file

from meamtm.training import shards
from meamtm.training.data import label_space_of
from meamtm.training.recipes import available_recipes, load_recipe

from .test_shards import QUIET, train_script


SPEAKERS = ["george", "jackson", "lucas", "theo", "yweweler"]
# The dry run keeps every setting of the recipe but the size: a 2-layer, 32-wide model over 1.28 s, a few steps.
TINY = "hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=37,max_length=128,time_mask_param=24"


def multi_label_shards(fsdd_dir: Path, folder: Path, split: str, per_digit: int) -> Path:
    """FSDD clips labelled with their digit and their speaker (two labels each), as 16 kHz shards of 8 clips."""
    paths, labels = [], []
    for digit in range(10):
        for index in range(per_digit):
            speaker = SPEAKERS[index % 5]
            take = index // 5 + (5 if split == "train" else 0)
            paths.append(str(fsdd_dir / split / str(digit) / f"{speaker}_{take}.wav"))
            labels.append([f"digit-{digit}", f"speaker-{speaker}"])
    names = [f"digit-{d}" for d in range(10)] + [f"speaker-{s}" for s in SPEAKERS]
    dataset = Dataset.from_dict(
        {"audio": paths, "label": [[names.index(name) for name in row] for row in labels]},
        features=Features(audio=Audio(), label=List(ClassLabel(names=names))),
    ).shuffle(seed=0)
    shards.write_shards(dataset, str(folder / split), "audio", "label", label_space_of(dataset, "label"),
                        shard_size=8, sampling_rate=16000, prefix=split)
    return folder / split


def test_recipe_sets_the_audioset_choices():
    assert "audioset" in available_recipes()
    arguments = load_recipe("audioset").arguments
    overrides = dict(item.split("=") for item in arguments["config_overrides"].split(","))
    assert arguments["config_name"] == "base" and overrides["sampling_rate"] == "16000"
    assert overrides["max_length"] == "1024" and overrides["num_mel_bins"] == "128"  # 10.24 s, AST's features
    assert float(overrides["mixup_alpha"]) > 0 and float(overrides["patchout_time"]) > 0
    args = train_script.parse_arguments(["--recipe", "audioset", "--train_shards", "x", "--learning_rate", "1"])
    assert args.data.balanced_sampling and args.model.average_last_checkpoints == 5 and args.training.bf16
    assert args.training.max_steps == arguments["max_steps"] and args.training.learning_rate == 1  # a flag wins


@pytest.mark.slow
def test_recipe_dry_run_on_shards(fsdd_dir, tmp_path):
    train = multi_label_shards(fsdd_dir, tmp_path / "shards", "train", 4)
    evaluation = multi_label_shards(fsdd_dir, tmp_path / "shards", "test", 1)
    overrides = load_recipe("audioset").arguments["config_overrides"]
    output = tmp_path / "out"
    metrics = train_script.main(
        ["--recipe", "audioset", "--train_shards", str(train), "--eval_shards", str(evaluation), *QUIET,
         "--config_overrides", f"{overrides},{TINY}", "--max_steps", "4", "--per_device_train_batch_size", "4",
         "--per_device_eval_batch_size", "5", "--eval_steps", "2", "--save_steps", "2", "--warmup_steps", "0",
         "--learning_rate", "1e-3", "--bf16", "false", "--shuffle_buffer_size", "16", "--output_dir", str(output)]
    )
    for key in ("eval_mAP", "eval_mAUC", "eval_d_prime"):
        assert key in metrics and metrics[key] == metrics[key]  # evaluated, and not NaN
    config = json.loads((output / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and len(config["id2label"]) == 15
    assert config["mixup_alpha"] == 10 and config["patchout_time"] == 0.4 and config["sampling_rate"] == 16000
    # Weight averaging: with checkpoints at steps 2 and 4 only, the model is their mean.
    final = load_file(str(output / "model.safetensors"))
    two, four = (load_file(str(output / f"checkpoint-{step}" / "model.safetensors")) for step in (2, 4))
    for key in final:
        torch.testing.assert_close(final[key], (two[key] + four[key]) / 2, atol=1e-6, rtol=0)
