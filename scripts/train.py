#!/usr/bin/env python
"""Train or fine-tune a MEAMTM audio classifier with the Hugging Face Trainer, on raw decoded audio.

    python scripts/train.py                                  # the built-in demo recipe (`make run`)
    python scripts/train.py --recipe fsdd                    # a recipe: a shipped name or a recipe JSON file
    python scripts/train.py --train_dir data/train --eval_dir data/test --output_dir out
    python scripts/train.py --dataset_name ORG/NAME --model_name_or_path PATH --output_dir out
    python scripts/train.py args.json                        # the same arguments as a JSON file
    python scripts/train.py --train_shards shards/train --eval_shards shards/eval --max_steps N ...  # WebDataset
    accelerate launch --multi_gpu --num_processes 2 scripts/train.py ...   # data-parallel on GPUs
    torchrun --standalone --nproc_per_node 2 scripts/train.py ...          # data-parallel on CPUs (gloo)

Arguments: `DataTrainingArguments`, `ModelArguments` and `RecipeArguments` below, and every
`transformers.TrainingArguments` (`--help` lists them). Flags on the command line win over the recipe's.
Without a recipe, a fresh model trained on given data takes its sampling rate and window from the clips and the
FSDD recipe's optimiser and augmentation (each choice is logged; any flag overrides it). Without a data
source, the run uses FSDD when it is found ($MEAMTM_FSDD, else ../shared/data/fsdd), else synthetic sounds.
A run that finds a complete checkpoint in its `--output_dir` resumes from it.
"""

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import transformers
from transformers import HfArgumentParser, pipeline
from transformers.trainer_utils import SchedulerType, set_seed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
import meamtm  # noqa: E402, F401  (registers the Auto classes)
from meamtm.audio_io import load_audio  # noqa: E402
from meamtm.training.augmentation import WaveformAugmentation  # noqa: E402
from meamtm.training.averaging import WeightAveraging, check_trainer, is_sharded  # noqa: E402
from meamtm.training.collate import AudioCollator, AudioTransform, EpochCallback, prepare_dataset, unreadable_files  # noqa: E402
from meamtm.training.data import (  # noqa: E402
    check_columns,
    check_labels,
    class_names_of,
    default_splits,
    label_space_of,
    load_splits,
    take_first,
)
from meamtm.training.data_summary import summarise_data  # noqa: E402
from meamtm.training.recipes import DEFAULT_RECIPE, check_arguments, defaults_from_data, load_recipe  # noqa: E402
from meamtm.training.report import write_run_report  # noqa: E402
from meamtm.training.sampling import add_length_column, balanced_sampling_weights  # noqa: E402
from meamtm.training.shards import load_shard_splits  # noqa: E402
from meamtm.training.trainer import (  # noqa: E402
    MeamtmTrainer,
    MeamtmTrainingArguments,
    average_last_checkpoints,
    checked_test_time_settings,
    load_model,
    make_compute_metrics,
    resume_point,
    test_time_text,
    train_or_finish,
)


logger = logging.getLogger("train")

REPO = Path(__file__).resolve().parents[1]
FSDD = Path(os.environ.get("MEAMTM_FSDD", REPO.parent / "shared" / "data" / "fsdd"))
# The recipe of a run given neither a recipe nor data.
DEMO_RECIPE = "demo"


@dataclass
class DataTrainingArguments:
    """Where the audio comes from, which columns hold what, and how clips are prepared."""

    dataset_name: str | None = field(default=None, metadata={"help": "A data set on the Hub."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration name."})
    train_split_name: str = field(default="train", metadata={"help": "Training split of --dataset_name."})
    eval_split_name: str = field(default="test", metadata={"help": "Evaluation split of --dataset_name ('' for none)."})
    train_dir: str | None = field(default=None, metadata={"help": "audiofolder of training clips (label/clip.wav)."})
    eval_dir: str | None = field(default=None, metadata={"help": "audiofolder of evaluation clips."})
    train_file: str | None = field(default=None, metadata={"help": "CSV/JSON metadata of training clips (paths)."})
    eval_file: str | None = field(default=None, metadata={"help": "CSV/JSON metadata of evaluation clips."})
    train_shards: str | None = field(
        default=None, metadata={"help": "WebDataset shards of scripts/make_shards.py: folder, glob or hf:// URL."}
    )
    eval_shards: str | None = field(default=None, metadata={"help": "Evaluation shards (folder, glob or URL)."})
    shuffle_buffer_size: int = field(default=1000, metadata={"help": "Shards: clips in the shuffle buffer."})
    audio_column: str = field(default="audio", metadata={"help": "Column with the audio (or paths)."})
    label_column: str = field(default="label", metadata={"help": "Column with a label, or a list of labels per clip."})
    class_names: list[str] | None = field(default=None, metadata={"help": "Class names, when the data cannot tell."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training clips."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation clips."})
    streaming: bool = field(default=False, metadata={"help": "Stream the data (IterableDataset); needs --max_steps."})
    balanced_sampling: bool = field(default=False, metadata={"help": "Draw clips by inverse label frequency (PSLA)."})
    skip_unreadable_files: bool = field(
        default=False, metadata={"help": "Skip (and count) clips that cannot be decoded instead of stopping."}
    )
    gain_db: float = field(default=0.0, metadata={"help": "Training augmentation: random gain of up to +-N dB."})
    shift_s: float = field(default=0.0, metadata={"help": "Training augmentation: random delay of up to N seconds."})
    noise_snr_db: float = field(default=0.0, metadata={"help": "Training augmentation: noise at SNR N..N+20 dB."})
    noise_color: float = field(
        default=0.0, metadata={"help": "Training augmentation: noise coloured by a pole b in [-N, N] (0: white)."}
    )
    speed: float = field(default=0.0, metadata={"help": "Training augmentation: speed factor in [1-N, 1+N]."})
    tempo: float = field(
        default=0.0, metadata={"help": "Training augmentation: tempo factor in [1-N, 1+N], pitch and formants kept."}
    )
    tilt: float = field(default=0.0, metadata={"help": "Training augmentation: spectral tilt x[n] - a x[n-1], |a| <= N."})
    reverb_s: float = field(
        default=0.0, metadata={"help": "Training augmentation: half the clips reverberated, RT60 in [N/4, N] seconds."}
    )
    trim_s: float = field(
        default=0.0, metadata={"help": "Training augmentation: half the clips lose up to N seconds at each end."}
    )
    trim_db: float = field(
        default=0.0,
        metadata={"help": "Training augmentation: each end, half the time, cut where the clip gets within N/2..N dB of its peak."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded data and models are stored."})

    @property
    def has_source(self) -> bool:
        return bool(self.dataset_name or self.train_dir or self.train_file or self.train_shards)

    @property
    def augmentation(self) -> WaveformAugmentation:
        return WaveformAugmentation(**{change.name: getattr(self, change.name) for change in fields(WaveformAugmentation)})


@dataclass
class ModelArguments:
    """Which model to start from: a checkpoint, or a fresh one from a preset."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A MEAMTM (or converted AST) checkpoint folder or Hub id; else a fresh model."}
    )
    config_name: str = field(default="small", metadata={"help": "Fresh model: tiny/small/base or a config JSON."})
    config_overrides: str | None = field(
        default=None, metadata={"help": "Fresh model: 'hidden_size=192,num_hidden_layers=4,sampling_rate=8000'."}
    )
    ignore_mismatched_sizes: bool = field(default=True, metadata={"help": "Replace a head of another size."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow a checkpoint's own code to run."})
    average_last_checkpoints: int = field(
        default=0, metadata={"help": "Average the weights of the last N checkpoints at the end (AST/PSLA); 0 = off."}
    )
    weight_averaging_start: float = field(
        default=0.0,
        metadata={
            "help": "Average the weights of every optimizer step after this fraction of training (SWA), e.g. 0.5, "
            "and save the average; 0 = off."
        },
    )
    test_time_max_warp: float | None = field(
        default=None,
        metadata={
            "help": "The saved model averages its predictions over filter banks warped by 1-N..1+N "
            "(config test_time_max_warp; 0 = off); evaluation during training runs on the plain bank."
        },
    )
    test_time_max_shift: int | None = field(
        default=None,
        metadata={
            "help": "The saved model also averages its predictions over the log-mel shifted by 0..N frames "
            "(config test_time_max_shift; 0 = off); evaluation during training does not."
        },
    )
    test_time_max_tempo: float | None = field(
        default=None,
        metadata={
            "help": "The saved model also averages its predictions over the clip at tempi 1-N..1+N, its log-mel "
            "stretched along time (config test_time_max_tempo; 0 = off); evaluation during training does not."
        },
    )


@dataclass
class RecipeArguments:
    """A recipe whose arguments are the defaults of this run."""

    recipe: str | None = field(
        default=None,
        metadata={"help": "A shipped recipe (fsdd, demo) or a recipe JSON file; flags given here win over it."},
    )


ARGUMENT_CLASSES = (DataTrainingArguments, ModelArguments, RecipeArguments, MeamtmTrainingArguments)


@dataclass
class Arguments:
    data: DataTrainingArguments
    model: ModelArguments
    recipe: RecipeArguments
    training: MeamtmTrainingArguments


def read_command(argv: list[str]) -> list[str] | dict:
    """The command line, or the arguments of a JSON file given alone (`train.py args.json`)."""
    if len(argv) == 1 and argv[0].endswith(".json"):
        return json.loads(Path(argv[0]).read_text())
    return argv


def parse(command: list[str] | dict, defaults: dict | None = None) -> Arguments:
    """The command's arguments, with `defaults` in place of the dataclasses' own where the command is silent."""
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    if isinstance(command, dict):
        return Arguments(*parser.parse_dict({**(defaults or {}), **command}))
    parser.set_defaults(**(defaults or {}))
    return Arguments(*parser.parse_args_into_dataclasses(args=command))


def given_arguments(command: list[str] | dict) -> set[str]:
    """The names of the arguments the command itself sets."""
    if isinstance(command, dict):
        return set(command)
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    for action in parser._actions:
        action.default = argparse.SUPPRESS  # an argument absent from the command is absent from the namespace
    return set(vars(parser.parse_known_args(command)[0]))


def parse_arguments(command: list[str] | dict) -> Arguments:
    """The command over its recipe: `--recipe`, or the demo recipe when neither a recipe nor data is given."""
    args = parse(command)
    name = args.recipe.recipe or (None if args.data.has_source else DEMO_RECIPE)
    if name is None:
        return args
    recipe = load_recipe(name)
    check_arguments(recipe, {action.dest for action in HfArgumentParser(ARGUMENT_CLASSES)._actions})
    logger.info(f"Recipe {recipe.name!r}: {recipe.description}")
    args = parse(command, recipe.arguments)
    args.recipe.recipe = name
    return args


def keep_checkpoints_to_average(command: list[str] | dict, args: Arguments) -> None:
    """Keep as many checkpoints as `--average_last_checkpoints` averages: raise the default `save_total_limit` to it,
    or refuse a given limit that would delete checkpoints the average needs."""
    count, limit = args.model.average_last_checkpoints, args.training.save_total_limit
    if count <= 1 or not limit or limit <= 0 or limit >= count:
        return
    if "save_total_limit" in given_arguments(command):
        raise ValueError(
            f"--average_last_checkpoints {count} averages the last {count} checkpoints, but --save_total_limit {limit} "
            f"keeps {limit}: give --save_total_limit {count} or more (0 keeps every one)."
        )
    args.training.save_total_limit = count
    logger.info(f"save_total_limit={count}, the checkpoints --average_last_checkpoints {count} averages.")


def weight_averaging(command: list[str] | dict, args: Arguments, checkpoint: str | None) -> WeightAveraging | None:
    """`--weight_averaging_start`'s callback (resuming from `checkpoint`; it checks the value), or `None` when off.

    Beside `--average_last_checkpoints` or `--load_best_model_at_end`, which choose other final weights, it is
    refused when the command gives both, and turned off when the start comes from a recipe or the data defaults
    (`drop_default_averaging`).
    """
    start, count = args.model.weight_averaging_start, args.model.average_last_checkpoints
    if not start:
        return None
    other = (f"--average_last_checkpoints {count}", "averages checkpoints") if count > 1 else (
        ("--load_best_model_at_end", "keeps the best checkpoint") if args.training.load_best_model_at_end else None)
    if other is None:
        return WeightAveraging(start, resume_from=checkpoint)
    if "weight_averaging_start" in given_arguments(command):
        raise ValueError(
            f"--weight_averaging_start {start} and {other[0]} both choose the final weights (one averages the "
            f"steps after {start:g} of training, the other {other[1]}): give one of them."
        )
    drop_default_averaging(command, args, f"{other[0]} {other[1]} instead")
    return None


def drop_default_averaging(command: list[str] | dict, args: Arguments, reason: str) -> None:
    """Turn off weight averaging that a recipe or the data defaults chose, with the constant learning rate chosen for
    it (the last weights at a constant rate are worse than a decayed run's), and log both."""
    args.model.weight_averaging_start = 0.0
    message = f"weight_averaging_start=0: {reason}"
    if args.training.lr_scheduler_type == SchedulerType.CONSTANT_WITH_WARMUP and (
        "lr_scheduler_type" not in given_arguments(command)
    ):
        args.training.lr_scheduler_type = SchedulerType.LINEAR
        message += "; lr_scheduler_type=linear, as the constant rate of the recipe is meant for the average"
    logger.warning(message + " (give the flags to choose otherwise).")


def averaging_for_trainer(command: list[str] | dict, args: Arguments, trainer, averaging: WeightAveraging | None):
    """`averaging`, or `None` when the trainer shards the weights (FSDP, DeepSpeed) and the averaging came from a
    recipe or the data defaults; refused (`check_trainer`) when the command asked for it."""
    if averaging is None or not is_sharded(trainer):
        return averaging
    if "weight_averaging_start" in given_arguments(command):
        check_trainer(trainer)
    trainer.remove_callback(averaging)
    drop_default_averaging(command, args, "each process holds a shard of the weights (FSDP or DeepSpeed)")
    return None


def uses_data_defaults(args: Arguments) -> bool:
    """A fresh model trained on given data, without a recipe, takes its defaults from the data."""
    # A stream of shards is not read ahead to summarise it.
    return (args.data.has_source and not args.data.train_shards and not args.recipe.recipe
            and not args.model.model_name_or_path)


def apply_data_defaults(command: list[str] | dict, args: Arguments, train_split, labels) -> Arguments:
    """Inspect the training clips, log what they hold, and re-read the command over the defaults they suggest."""
    summary = summarise_data(train_split, args.data.audio_column, args.data.label_column, labels,
                             skip_unreadable=args.data.skip_unreadable_files)
    logger.info("The training data:\n  " + summary.describe().replace("\n", "\n  "))
    defaults, overrides, choices = defaults_from_data(summary, args.model.config_name, args.model.config_overrides)
    if args.data.streaming and defaults.get("train_sampling_strategy") == "group_by_length":
        # A stream has no lengths to group by ahead of time.
        del defaults["train_sampling_strategy"]
        choices = [choice for choice in choices if not choice.startswith("train_sampling_strategy=")]
        choices.append("train_sampling_strategy: the Trainer's (a stream cannot be grouped by length)")
    given = given_arguments(command)
    logger.info("Defaults of a fresh model for this data (a flag overrides each):")
    for choice in choices:
        key = choice.partition("=")[0]
        logger.info(f"  {key}: given on the command line" if key in given else f"  {choice}")
    args = parse(command, defaults)
    args.model.config_overrides = overrides
    return args


def load_data(args: Arguments) -> tuple[dict, str]:
    """The train/eval splits and a name for the data (`default_splits` when no source is given)."""
    data = args.data
    if not data.has_source:
        return default_splits(FSDD)
    if data.train_shards:
        splits = load_shard_splits(
            data.train_shards, data.eval_shards, data.audio_column, data.label_column, args.training,
            data.shuffle_buffer_size, balanced=data.balanced_sampling,
        )
        return splits, data.train_shards
    splits = load_splits(
        dataset_name=data.dataset_name, dataset_config_name=data.dataset_config_name,
        train_split_name=data.train_split_name, eval_split_name=data.eval_split_name, train_dir=data.train_dir,
        eval_dir=data.eval_dir, train_file=data.train_file, eval_file=data.eval_file, audio_column=data.audio_column,
        streaming=data.streaming, cache_dir=data.cache_dir,
    )
    return splits, str(data.dataset_name or data.train_dir or data.train_file)


def check_data(splits: dict, args: Arguments):
    """Columns and labels checked up front; the training data's label space. Evaluation is off without eval data."""
    data = args.data
    for role, dataset in splits.items():
        check_columns(dataset, data.audio_column, data.label_column, where=f"the {role} data")
    labels = label_space_of(splits["train"], data.label_column, data.class_names)
    if "eval" in splits:
        check_labels(splits["eval"], data.label_column, labels, where="the evaluation data")
    elif args.training.eval_strategy != "no":
        args.training.eval_strategy = "no"
        logger.warning("No evaluation data: evaluation is off.")
    return labels


def prepare_data(splits: dict, labels, extractor, args: Arguments, padding_mode: str) -> tuple[dict, AudioTransform, str]:
    """Each split with its on-the-fly transform; the training transform; the file that lists unreadable clips.

    With the model's `padding_mode="longest"` clips are not padded to the window (the collator pads each batch
    to its longest); with `train_sampling_strategy="group_by_length"` the training split gets a length column.
    """
    data, training = args.data, args.training
    os.makedirs(training.output_dir, exist_ok=True)
    fault_log = os.path.join(training.output_dir, "unreadable_files.txt")
    limits = {"train": data.max_train_samples, "eval": data.max_eval_samples}
    transforms, datasets = {}, {}
    for role, split in splits.items():
        transforms[role] = AudioTransform(
            data.audio_column, data.label_column, labels, extractor.sampling_rate, extractor.num_samples,
            train=role == "train", augmentation=data.augmentation, seed=training.seed,
            skip_unreadable=data.skip_unreadable_files, fault_log=fault_log,
            column_class_names=class_names_of(split, data.label_column),
            pad_to_window=padding_mode == "max_length",
        )
        split = take_first(split, limits[role])
        if role == "train" and training.train_sampling_strategy == "group_by_length":
            split = add_length_column(split, data.audio_column, extractor.sampling_rate, training.length_column_name,
                                      skip_unreadable=data.skip_unreadable_files)
        datasets[role] = prepare_dataset(split, transforms[role])
    return datasets, transforms["train"], fault_log


def test_time_settings(config, model_args: ModelArguments) -> dict:
    """`--test_time_max_warp` / `--test_time_max_shift` / `--test_time_max_tempo` as the config takes them (checked;
    only those given)."""
    return checked_test_time_settings(
        config, test_time_max_warp=model_args.test_time_max_warp, test_time_max_shift=model_args.test_time_max_shift,
        test_time_max_tempo=model_args.test_time_max_tempo,
    )


def set_test_time_augmentation(model, settings: dict) -> None:
    """The trained model's config takes the test-time `settings`, so that the final evaluation and every later use
    of the saved model average over the warped filter banks and the shifted log-mels."""
    for name, value in settings.items():
        setattr(model.config, name, value)
    logger.info(f"Test-time augmentation of the saved model and the final evaluation: {test_time_text(model.config)}.")


def evaluate(trainer, datasets: dict, train_metrics: dict, fault_log: str) -> tuple[dict, object]:
    """Training metrics plus the evaluation split's (with its predictions), and the count of skipped files."""
    metrics, prediction = dict(train_metrics), None
    if "eval" in datasets:
        prediction = trainer.predict(datasets["eval"], metric_key_prefix="eval")
        metrics.update(prediction.metrics)
    skipped = unreadable_files(fault_log)
    metrics["unreadable_files_skipped"] = len(skipped)
    if skipped:
        logger.warning(f"Skipped {len(skipped)} unreadable files (listed in {fault_log}).")
    return metrics, prediction


def warmup_text(training) -> str:
    """The Trainer's `warmup_steps` as the card reads it: below 1 a share of the steps, else a count."""
    steps = training.warmup_steps
    return f"{steps:.0%} of the steps" if 0 < steps < 1 else f"{steps:g} steps"


def recipe_card(args: Arguments, trainer) -> dict:
    """The settings of this run, as the model card lists them."""
    training, model = trainer.args, args.model
    return {
        "recipe": args.recipe.recipe or (DEFAULT_RECIPE + " defaults, sized from the data" if uses_data_defaults(args)
                                         else "command-line arguments"),
        "model": model.model_name_or_path
        or f"fresh '{model.config_name}' preset, {model.config_overrides or 'no overrides'}",
        "parameters": f"{trainer.model.num_parameters() / 1e6:.2f} M",
        "epochs": training.num_train_epochs if training.max_steps <= 0 else f"{training.max_steps} steps",
        "batch size": training.per_device_train_batch_size * training.world_size * training.gradient_accumulation_steps,
        "learning rate": training.learning_rate,
        "learning rate schedule": f"{SchedulerType(training.lr_scheduler_type).value}, warm-up {warmup_text(training)}",
        "augmentation": args.data.augmentation,
        "balanced sampling": args.data.balanced_sampling,
        "padding mode": trainer.model.config.padding_mode,
        "weights averaged over last checkpoints": model.average_last_checkpoints or "no",
        "weights averaged over the steps after": f"{model.weight_averaging_start:g} of training"
        if model.weight_averaging_start else "no",
        "test-time augmentation": test_time_text(trainer.model.config, off="no"),
    }


def classify_held_out_clip(output_dir: str, eval_dataset, audio_column: str, label_column: str) -> None:
    """The demo's last step: one evaluation clip through pipeline("audio-classification")."""
    from datasets import Audio

    row = eval_dataset.cast_column(audio_column, Audio(decode=False))[0]
    classifier = pipeline("audio-classification", model=output_dir)
    value = row[audio_column]
    if value.get("path") and os.path.isfile(value["path"]):
        clip, shown = value["path"], value["path"]
    else:
        clip, shown = load_audio(value, classifier.feature_extractor.sampling_rate), "a held-out synthetic clip"
    names = class_names_of(eval_dataset, label_column)
    true = names[row[label_column]] if names else row[label_column]
    print(f"\nHeld-out clip {shown} (true label: {true}):")
    for guess in classifier(clip, top_k=3):
        print(f"  {guess['label']:>12}  {guess['score']:.3f}")


def experiment_command(
    data: list[str], output_dir: str, num_train_epochs, seed: int, *, recipe: str | None = None,
    config_overrides: str | None = None, max_train_samples: int | None = None, max_eval_samples: int | None = None,
) -> list[str]:
    """The command line of one run of an experiment script (`ablation.py`, `compare_patchout.py`): `data`'s flags
    (`--train_file ...` or `--train_dir ...`), the recipe if any, no checkpoints and no loggers; the caller appends
    its own flags, which win."""
    command = [*(["--recipe", recipe] if recipe else []), *data]
    if config_overrides:
        command += ["--config_overrides", config_overrides]
    command += [
        "--num_train_epochs", str(num_train_epochs),
        "--seed", str(seed),
        "--output_dir", str(output_dir),
        "--save_strategy", "no",
        "--report_to", "none",
    ]
    for name, value in (("max_train_samples", max_train_samples), ("max_eval_samples", max_eval_samples)):
        if value is not None:
            command += [f"--{name}", str(value)]
    return command


def main(argv: list[str] | None = None) -> dict:
    command = read_command(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_arguments(command)
    keep_checkpoints_to_average(command, args)
    transformers.utils.logging.set_verbosity(args.training.get_process_log_level())

    splits, data_name = load_data(args)
    labels = check_data(splits, args)
    if uses_data_defaults(args):
        # the clips it will train on: --max_train_samples counts
        args = apply_data_defaults(command, args, take_first(splits["train"], args.data.max_train_samples), labels)
        check_data(splits, args)
    set_seed(args.training.seed)
    model, extractor = load_model(
        args.model.model_name_or_path, labels, args.model.config_name, args.model.config_overrides,
        args.model.ignore_mismatched_sizes, args.model.trust_remote_code,
    )
    test_time = test_time_settings(model.config, args.model)  # a bad value fails now, not after training
    checkpoint = resume_point(args.training)
    averaging = weight_averaging(command, args, checkpoint)
    datasets, train_transform, fault_log = prepare_data(splits, labels, extractor, args, model.config.padding_mode)
    weights = None
    if args.data.balanced_sampling and not args.data.train_shards:  # shards draw balanced clips in the stream
        train_split = take_first(splits["train"], args.data.max_train_samples)
        weights = balanced_sampling_weights(train_split, args.data.label_column, labels)
    trainer = MeamtmTrainer(
        model=model, args=args.training, train_dataset=datasets["train"], eval_dataset=datasets.get("eval"),
        data_collator=AudioCollator(), processing_class=extractor, compute_metrics=make_compute_metrics(labels),
        callbacks=[EpochCallback(train_transform), *([averaging] if averaging else [])], sampling_weights=weights,
    )
    averaging = averaging_for_trainer(command, args, trainer, averaging)

    train_metrics = train_or_finish(trainer, checkpoint)
    if averaging:
        averaging.apply(trainer.model)
    if args.model.average_last_checkpoints > 1:
        average_last_checkpoints(trainer, args.model.average_last_checkpoints)
    if test_time:
        set_test_time_augmentation(trainer.model, test_time)
    trainer.save_model()
    trainer.save_metrics("train", train_metrics)
    metrics, prediction = evaluate(trainer, datasets, train_metrics, fault_log)
    write_run_report(trainer, metrics, prediction, labels, data_name, recipe_card(args, trainer),
                     base_model=args.model.model_name_or_path, hub_dataset=bool(args.data.dataset_name))
    if trainer.is_world_process_zero():
        shown = {k: v for k, v in metrics.items() if k.startswith("eval_") or k == "unreadable_files_skipped"}
        print(json.dumps(shown, indent=1))
    if args.training.push_to_hub:
        trainer.push_to_hub(commit_message="End of training")
    if not args.data.has_source and trainer.is_world_process_zero():
        classify_held_out_clip(args.training.output_dir, splits["eval"], args.data.audio_column, args.data.label_column)
    # Every process leaves the process group together: one torn down at interpreter exit aborts about half the
    # processes whose work is done (SIGABRT), and the launcher then reports the whole run as failed.
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    return metrics


if __name__ == "__main__":
    main()
