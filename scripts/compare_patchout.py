#!/usr/bin/env python
"""Does patchout + SpecAugment cost accuracy? The FSDD recipe trained twice through `scripts/train.py`.

    python scripts/compare_patchout.py                          # both runs (the README's numbers)
    python scripts/compare_patchout.py --runs augmented --augmentation "patchout_time=0.3,time_mask_param=10"

Both runs are `scripts/train.py --recipe fsdd` (`meamtm/training/recipes/fsdd.json`: a fresh `small` MEAMTM at
8 kHz over a 0.78 s window) with the same seed, hence the same initial weights, data order, waveform augmentation,
optimiser and schedule; the second adds `--augmentation` to the model's config overrides: patchout drops
patch tokens in training (a cheaper step) and SpecAugment masks the log-mel. Each run's test accuracy and
training time are written to `OUTPUT_DIR/compare_patchout.{json,md}`; each run's own output (model, plots,
model card) is in `OUTPUT_DIR/compare-<run>/`.
"""

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train  # noqa: E402  (scripts/train.py)
from meamtm import MeamtmConfig  # noqa: E402
from meamtm.training.recipes import load_recipe  # noqa: E402


FSDD_RECIPE = load_recipe("fsdd").arguments


@dataclass
class ComparisonArguments:
    fsdd_dir: str = field(default=str(train.FSDD), metadata={"help": "FSDD in audiofolder layout (train/, test/)."})
    epochs: int = field(default=FSDD_RECIPE["num_train_epochs"], metadata={"help": "Epochs of both runs."})
    augmentation: str = field(
        default="patchout_time=0.12,patchout_frequency=0.2,freq_mask_param=4,time_mask_param=5",
        metadata={"help": "Config overrides of the second run: 1 of 9 time columns, 1 of 5 frequency rows, masks."},
    )
    runs: list[str] = field(default_factory=lambda: ["plain", "augmented"], metadata={"help": "plain, augmented"})
    seed: int = 0
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training clips."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N test clips."})
    output_dir: str = "benchmark_results"

    def __post_init__(self):
        unknown = set(self.runs) - {"plain", "augmented"}
        if unknown:
            raise ValueError(f"Unknown --runs {sorted(unknown)}: choose from plain, augmented.")
        if not (Path(self.fsdd_dir) / "train").is_dir():
            raise ValueError(f"--fsdd_dir {self.fsdd_dir} has no train/ folder: point it at FSDD (audiofolder layout).")


def config_overrides(args: ComparisonArguments, run: str) -> str:
    return FSDD_RECIPE["config_overrides"] + ("," + args.augmentation if run == "augmented" else "")


def train_arguments(args: ComparisonArguments, run: str) -> list[str]:
    """The `scripts/train.py` command line of one run (its flags win over the recipe's)."""
    data = ["--train_dir", os.path.join(args.fsdd_dir, "train"), "--eval_dir", os.path.join(args.fsdd_dir, "test")]
    return train.experiment_command(
        data, Path(args.output_dir) / f"compare-{run}", args.epochs, args.seed, recipe="fsdd",
        config_overrides=config_overrides(args, run), max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
    )


def run_one(args: ComparisonArguments, run: str) -> dict:
    metrics = train.main(train_arguments(args, run))
    config = MeamtmConfig.from_pretrained(Path(args.output_dir) / f"compare-{run}")
    return dict(
        run=run,
        epochs=args.epochs,
        config_overrides=config_overrides(args, run),
        patch_tokens=config.num_patches,
        patch_tokens_in_training=config.num_training_patches,
        test_accuracy=metrics["eval_accuracy"],
        train_seconds=metrics["train_runtime"],
    )


def markdown_of(results: list[dict]) -> str:
    lines = [
        f"FSDD train -> test, `scripts/train.py` with the FSDD recipe, same seed (torch threads: {torch.get_num_threads()}).",
        "",
        "| run | config overrides | epochs | patch tokens in training | test accuracy | training time (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for result in results:
        lines.append(
            f"| {result['run']} | `{result['config_overrides']}` | {result['epochs']} | "
            f"{result['patch_tokens_in_training']} of {result['patch_tokens']} | {100 * result['test_accuracy']:.1f}% | "
            f"{result['train_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    (args,) = HfArgumentParser(ComparisonArguments).parse_args_into_dataclasses(args=argv)
    results = [run_one(args, run) for run in args.runs]
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "compare_patchout.json").write_text(json.dumps(dict(settings=asdict(args), results=results), indent=2))
    markdown = markdown_of(results)
    (output / "compare_patchout.md").write_text(markdown)
    print(markdown)
    return results


if __name__ == "__main__":
    main()
