#!/usr/bin/env python
"""Train or fine-tune a MEAMTM audio classifier with the Hugging Face Trainer, on raw decoded audio.

    python scripts/train.py                                  # the built-in recipe (see README, "Training")
    python scripts/train.py --train_dir data/train --eval_dir data/test --output_dir out
    python scripts/train.py --dataset_name ORG/NAME --model_name_or_path PATH --output_dir out
    python scripts/train.py args.json                        # the same arguments as a JSON file
    accelerate launch --multi_gpu --num_processes 2 scripts/train.py ...   # data-parallel on GPUs
    torchrun --standalone --nproc_per_node 2 scripts/train.py ...          # data-parallel on CPUs (gloo)

Arguments: `DataTrainingArguments` and `ModelArguments` below, and every `transformers.TrainingArguments`
(`--help` lists them). A run that finds a complete checkpoint in its `--output_dir` resumes from it.
"""

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import transformers
from datasets import Audio
from transformers import (
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    HfArgumentParser,
    TrainingArguments,
    pipeline,
)
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import set_seed
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
import meamtm  # noqa: E402  (registers the Auto classes)
from meamtm.audio_io import load_audio  # noqa: E402
from meamtm.training.augmentation import WaveformAugmentation  # noqa: E402
from meamtm.training.collate import AudioCollator, AudioTransform, EpochCallback, prepare_dataset, unreadable_files  # noqa: E402
from meamtm.training.data import (  # noqa: E402
    check_columns,
    check_labels,
    class_names_of,
    label_space_of,
    load_splits,
    synthetic_sounds,
)
from meamtm.training.sampling import balanced_sampling_weights  # noqa: E402
from meamtm.training.trainer import (  # noqa: E402
    MeamtmTrainer,
    MeamtmTrainingArguments,
    average_checkpoints,
    build_config,
    complete_checkpoints,
    is_final_checkpoint,
    last_complete_checkpoint,
    make_compute_metrics,
)
from meamtm.training.report import plot_confusion_matrix, plot_learning_curve, write_model_card  # noqa: E402


logger = logging.getLogger("train")

REPO = Path(__file__).resolve().parents[1]
FSDD = Path(os.environ.get("MEAMTM_FSDD", REPO.parent / "shared" / "data" / "fsdd"))

# The FSDD recipe (README, "Accuracy on FSDD"): a fresh `small` MEAMTM (mean pooling) at 8 kHz over a 1 s
# window, AdamW at 3e-4, and waveform augmentation chosen for speakers the training set lacks (gain, delay,
# noise, speed, tilt). `scripts/compare_patchout.py` trains it too.
FSDD_CONFIG_OVERRIDES = "sampling_rate=8000,max_length=100"
FSDD_EPOCHS = 54
FSDD_RECIPE = [
    "--config_name", "small",
    "--config_overrides", FSDD_CONFIG_OVERRIDES,
    "--learning_rate", "3e-4",
    "--warmup_steps", "0.05",
    "--weight_decay", "0.05",
    "--per_device_train_batch_size", "32",
    "--per_device_eval_batch_size", "64",
    "--gain_db", "6",
    "--shift_s", "0.1",
    "--noise_snr_db", "20",
    "--speed", "0.1",
    "--tilt", "0.5",
]

# With no data source the script runs the FSDD recipe for 12 epochs (a few minutes on 2 cores); arguments on
# the command line come after it and win.
BUILTIN_RECIPE = FSDD_RECIPE + [
    "--output_dir", "meamtm-builtin",
    "--num_train_epochs", "12",
    "--save_total_limit", "2",
    "--logging_steps", "20",
]


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
    noise_snr_db: float = field(default=0.0, metadata={"help": "Training augmentation: white noise at SNR N..N+20 dB."})
    speed: float = field(default=0.0, metadata={"help": "Training augmentation: speed factor in [1-N, 1+N]."})
    tilt: float = field(default=0.0, metadata={"help": "Training augmentation: spectral tilt x[n] - a x[n-1], |a| <= N."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded data and models are stored."})

    @property
    def has_source(self) -> bool:
        return bool(self.dataset_name or self.train_dir or self.train_file)

    @property
    def augmentation(self) -> WaveformAugmentation:
        return WaveformAugmentation(self.gain_db, self.shift_s, self.noise_snr_db, self.speed, self.tilt)


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


def parse_arguments(argv: list[str]) -> tuple[DataTrainingArguments, ModelArguments, MeamtmTrainingArguments]:
    parser = HfArgumentParser((DataTrainingArguments, ModelArguments, MeamtmTrainingArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    data_args, model_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if not data_args.has_source:
        data_args, model_args, training_args = parser.parse_args_into_dataclasses(args=BUILTIN_RECIPE + argv)
    return data_args, model_args, training_args


def load_data(data_args: DataTrainingArguments) -> tuple[dict, str]:
    """The train/eval splits and a name for the data; the built-in data set when no source is given."""
    if data_args.has_source:
        splits = load_splits(
            dataset_name=data_args.dataset_name, dataset_config_name=data_args.dataset_config_name,
            train_split_name=data_args.train_split_name, eval_split_name=data_args.eval_split_name,
            train_dir=data_args.train_dir, eval_dir=data_args.eval_dir, train_file=data_args.train_file,
            eval_file=data_args.eval_file, audio_column=data_args.audio_column, streaming=data_args.streaming,
            cache_dir=data_args.cache_dir,
        )
        name = data_args.dataset_name or data_args.train_dir or data_args.train_file
        return splits, str(name)
    if (FSDD / "train").is_dir() and (FSDD / "test").is_dir():
        logger.info(f"No data source given: training on the Free Spoken Digit Dataset in {FSDD}.")
        return load_splits(train_dir=str(FSDD / "train"), eval_dir=str(FSDD / "test")), "free-spoken-digit-dataset"
    logger.info(f"No data source given and no FSDD at {FSDD}: training on the synthetic sound classes.")
    sounds = synthetic_sounds()
    return {"train": sounds["train"], "eval": sounds["test"]}, "meamtm-synthetic-sounds"


def select(dataset, limit: int | None):
    if limit is None:
        return dataset
    return dataset.take(limit) if not hasattr(dataset, "select") else dataset.select(range(min(limit, len(dataset))))


def load_model(model_args: ModelArguments, labels):
    """The model and its feature extractor: from a checkpoint, with a head for `labels`, or fresh from a preset."""
    if model_args.model_name_or_path:
        model = AutoModelForAudioClassification.from_pretrained(
            model_args.model_name_or_path, num_labels=len(labels.names), label2id=labels.label2id,
            id2label=labels.id2label, problem_type=labels.problem_type,
            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, trust_remote_code=model_args.trust_remote_code,
        )
        try:
            extractor = AutoFeatureExtractor.from_pretrained(
                model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
            )
        except OSError:  # a converted AST checkpoint saved without its (waveform) feature extractor
            extractor = meamtm.MeamtmFeatureExtractor.from_model_config(model.config)
    else:
        config = build_config(model_args.config_name, model_args.config_overrides, labels)
        model = meamtm.MeamtmForAudioClassification(config)
        extractor = meamtm.MeamtmFeatureExtractor.from_model_config(config)
    return model, extractor


def resume_point(training_args: TrainingArguments) -> str | None:
    """`--resume_from_checkpoint`, else the newest complete checkpoint in the output folder (a rerun resumes)."""
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    checkpoint = last_complete_checkpoint(training_args.output_dir)
    if checkpoint:
        logger.warning(f"Resuming from {checkpoint} (the newest complete checkpoint in {training_args.output_dir}).")
    return checkpoint


def train_or_finish(trainer, checkpoint: str | None) -> dict:
    """Train (from `checkpoint` if given) and return the training metrics; a final checkpoint is just loaded."""
    if checkpoint and is_final_checkpoint(checkpoint):
        logger.warning(f"{checkpoint} is the run's last step: loading it instead of training.")
        trainer.model.load_state_dict(load_file(os.path.join(checkpoint, "model.safetensors")))
        trainer.state = TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))
        return {"epoch": trainer.state.epoch}
    return trainer.train(resume_from_checkpoint=checkpoint).metrics


def average_weights(trainer, count: int) -> None:
    checkpoints = complete_checkpoints(trainer.args.output_dir)[-count:]
    if len(checkpoints) < count:
        logger.warning(f"Averaging {len(checkpoints)} checkpoints, not {count}: raise --save_total_limit to keep more.")
    state = average_checkpoints(checkpoints)
    trainer.model.load_state_dict(state)
    logger.info(f"Weights averaged over {[Path(c).name for c in checkpoints]}.")


def write_reports(trainer, metrics: dict, prediction, labels, data_name: str, model_args, data_args) -> None:
    """Metrics JSON, learning curve, confusion matrix and model card in the output folder (main process only)."""
    output_dir = trainer.args.output_dir
    trainer.save_metrics("eval", metrics)
    trainer.save_state()
    figures = [plot_learning_curve(trainer.state.log_history, f"{output_dir}/learning_curve.png",
                                   "mAP" if labels.multi_label else "accuracy")]
    if prediction is not None and not labels.multi_label:
        figures.append(plot_confusion_matrix(prediction.label_ids, prediction.predictions.argmax(-1), labels.names,
                                             f"{output_dir}/confusion_matrix.png"))
    args = trainer.args
    recipe = {
        "model": model_args.model_name_or_path
        or f"fresh '{model_args.config_name}' preset, {model_args.config_overrides or 'no overrides'}",
        "parameters": f"{trainer.model.num_parameters() / 1e6:.2f} M",
        "epochs": args.num_train_epochs if args.max_steps <= 0 else f"{args.max_steps} steps",
        "batch size": args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps,
        "learning rate": args.learning_rate,
        "augmentation": data_args.augmentation,
        "balanced sampling": data_args.balanced_sampling,
        "weights averaged over last checkpoints": model_args.average_last_checkpoints or "no",
    }
    write_model_card(output_dir, args.hub_model_id or Path(output_dir).name, data_name, metrics, labels.names, recipe,
                     base_model=model_args.model_name_or_path, figures=figures,
                     hub_dataset=bool(data_args.dataset_name))


def classify_held_out_clip(output_dir: str, eval_dataset, audio_column: str, label_column: str, labels) -> None:
    """The built-in recipe's last step: one evaluation clip through pipeline("audio-classification")."""
    row = eval_dataset.cast_column(audio_column, Audio(decode=False))[0]
    classifier = pipeline("audio-classification", model=output_dir)
    value = row[audio_column]
    if value.get("path") and os.path.isfile(value["path"]):
        clip, shown = value["path"], value["path"]
    else:
        rate = classifier.feature_extractor.sampling_rate
        clip = load_audio(value, rate)
        shown = "a held-out synthetic clip"
    names = class_names_of(eval_dataset, label_column)
    true = names[row[label_column]] if names else row[label_column]
    print(f"\nHeld-out clip {shown} (true label: {true}):")
    for guess in classifier(clip, top_k=3):
        print(f"  {guess['label']:>12}  {guess['score']:.3f}")


def main(argv: list[str] | None = None) -> dict:
    data_args, model_args, training_args = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    set_seed(training_args.seed)

    splits, data_name = load_data(data_args)
    for role, dataset in splits.items():
        check_columns(dataset, data_args.audio_column, data_args.label_column, where=f"the {role} data")
    labels = label_space_of(splits["train"], data_args.label_column, data_args.class_names)
    if "eval" in splits:
        check_labels(splits["eval"], data_args.label_column, labels, where="the evaluation data")
    elif training_args.eval_strategy != "no":
        training_args.eval_strategy = "no"
        logger.warning("No evaluation data: evaluation is off.")

    model, extractor = load_model(model_args, labels)
    fault_log = os.path.join(training_args.output_dir, "unreadable_files.txt")
    os.makedirs(training_args.output_dir, exist_ok=True)
    transforms = {
        role: AudioTransform(
            data_args.audio_column, data_args.label_column, labels, extractor.sampling_rate, extractor.num_samples,
            train=role == "train", augmentation=data_args.augmentation, seed=training_args.seed,
            skip_unreadable=data_args.skip_unreadable_files, fault_log=fault_log,
            column_class_names=class_names_of(splits[role], data_args.label_column),
        )
        for role in splits
    }
    limits = {"train": data_args.max_train_samples, "eval": data_args.max_eval_samples}
    datasets = {role: prepare_dataset(select(splits[role], limits[role]), transforms[role]) for role in splits}

    trainer = MeamtmTrainer(
        model=model,
        args=training_args,
        train_dataset=datasets["train"],
        eval_dataset=datasets.get("eval"),
        data_collator=AudioCollator(),
        processing_class=extractor,
        compute_metrics=make_compute_metrics(labels),
        callbacks=[EpochCallback(transforms["train"])],
        sampling_weights=balanced_sampling_weights(
            select(splits["train"], limits["train"]), data_args.label_column, labels
        ) if data_args.balanced_sampling else None,
    )
    train_metrics = train_or_finish(trainer, resume_point(training_args))
    if model_args.average_last_checkpoints > 1:
        average_weights(trainer, model_args.average_last_checkpoints)
    trainer.save_model()
    trainer.save_metrics("train", train_metrics)

    metrics, prediction = dict(train_metrics), None
    if "eval" in datasets:
        prediction = trainer.predict(datasets["eval"], metric_key_prefix="eval")
        metrics.update(prediction.metrics)
    skipped = unreadable_files(fault_log)
    metrics["unreadable_files_skipped"] = len(skipped)
    if skipped:
        logger.warning(f"Skipped {len(skipped)} unreadable files (listed in {fault_log}).")
    if trainer.is_world_process_zero():
        trainer.model_card = lambda: write_reports(
            trainer, metrics, prediction, labels, data_name, model_args, data_args
        )
        trainer.create_model_card()
        shown = {k: v for k, v in metrics.items() if k.startswith("eval_") or k == "unreadable_files_skipped"}
        print(json.dumps(shown, indent=1))
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="End of training")
    if not data_args.has_source and trainer.is_world_process_zero():
        classify_held_out_clip(
            training_args.output_dir, splits["eval"], data_args.audio_column, data_args.label_column, labels
        )
    return metrics


if __name__ == "__main__":
    main()
