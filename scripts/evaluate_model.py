#!/usr/bin/env python
"""Evaluate a trained MEAMTM classifier on labelled clips, as `scripts/train.py`'s final evaluation does.

    python scripts/evaluate_model.py --model meamtm-fsdd --eval_dir ../shared/data/fsdd/test --output_dir eval-fsdd
    python scripts/evaluate_model.py --model meamtm-fsdd --eval_file test.csv --test_time_max_warp 0.1 \
        --test_time_max_shift 6 --output_dir eval-tta

The clips come from an `audiofolder` (`--eval_dir`) or a CSV/JSON metadata file (`--eval_file`), decoded at the
model's rate; their labels must be among the model's. `--test_time_max_warp` and `--test_time_max_shift` set the
config fields of those names for this evaluation (the model's own values otherwise). Writes `eval_results.json`
(accuracy and macro F1, or mAP for multi-label models) to `--output_dir` and prints it.
"""

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoConfig, HfArgumentParser

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from meamtm.training.collate import AudioCollator, AudioTransform, prepare_dataset  # noqa: E402
from meamtm.training.data import LabelSpace, check_columns, check_labels, class_names_of, load_splits  # noqa: E402
from meamtm.training.trainer import (  # noqa: E402
    MeamtmTrainer,
    MeamtmTrainingArguments,
    checked_test_time_settings,
    load_model,
    make_compute_metrics,
    test_time_text,
)


logger = logging.getLogger("evaluate")


@dataclass
class EvaluateArguments:
    model: str = field(metadata={"help": "A MEAMTM classifier's folder or Hub id (what scripts/train.py saved)."})
    output_dir: str = field(metadata={"help": "Where eval_results.json goes."})
    eval_dir: str | None = field(default=None, metadata={"help": "audiofolder of labelled clips (label/clip.wav)."})
    eval_file: str | None = field(default=None, metadata={"help": "CSV/JSON metadata of labelled clips (paths)."})
    audio_column: str = field(default="audio", metadata={"help": "Column with the audio (or paths)."})
    label_column: str = field(default="label", metadata={"help": "Column with a label, or a list of labels per clip."})
    test_time_max_warp: float | None = field(
        default=None, metadata={"help": "Average over filter banks warped by 1-N..1+N (config field); 0 = off."}
    )
    test_time_max_shift: int | None = field(
        default=None, metadata={"help": "Average over the log-mel shifted by 0..N frames too (config field); 0 = off."}
    )
    test_time_max_tempo: float | None = field(
        default=None, metadata={"help": "Average over the clip at tempi 1-N..1+N too (config field); 0 = off."}
    )
    trim_silence_db: float | None = field(
        default=None,
        metadata={"help": "Cut each clip to its frames within N dB of its loudest (config field); 0 = off."},
    )
    trim_silence_margin: float | None = field(
        default=None, metadata={"help": "Seconds kept on each side of what --trim_silence_db keeps (config field)."}
    )
    batch_size: int = field(default=64, metadata={"help": "Clips per forward pass."})


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(EvaluateArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if bool(args.eval_dir) == bool(args.eval_file):
        raise ValueError(f"Give exactly one of --eval_dir and --eval_file, got {args.eval_dir!r} and {args.eval_file!r}.")
    # The clips are loaded as load_splits loads a training source: one split.
    clips = load_splits(train_dir=args.eval_dir, train_file=args.eval_file, audio_column=args.audio_column)["train"]
    check_columns(clips, args.audio_column, args.label_column, where="the evaluation data")
    labels = labels_of_model(args.model)
    model, extractor = load_model(args.model, labels)
    check_labels(clips, args.label_column, labels, where="the evaluation data")
    test_time = checked_test_time_settings(
        model.config, test_time_max_warp=args.test_time_max_warp, test_time_max_shift=args.test_time_max_shift,
        test_time_max_tempo=args.test_time_max_tempo,
    )
    for name, value in test_time.items():
        setattr(model.config, name, value)
    trim = {name: value for name, value in (("trim_silence_db", args.trim_silence_db),
                                           ("trim_silence_margin", args.trim_silence_margin)) if value is not None}
    if trim:  # checked as the config checks them, then set on the loaded model
        checked = type(model.config)(**{**model.config.to_dict(), **trim})
        for name in trim:
            setattr(model.config, name, getattr(checked, name))
    logger.info(f"Test-time augmentation: {test_time_text(model.config)}.")
    if model.config.trim_silence_db:
        logger.info(f"Silence trimmed at {model.config.trim_silence_db:g} dB, {model.config.trim_silence_margin:g} s "
                    "kept each side.")
    transform = AudioTransform(
        args.audio_column, args.label_column, labels, extractor.sampling_rate, extractor.num_samples, train=False,
        column_class_names=class_names_of(clips, args.label_column),
        pad_to_window=model.config.padding_mode == "max_length",
    )
    training_args = MeamtmTrainingArguments(
        output_dir=args.output_dir, per_device_eval_batch_size=args.batch_size, report_to="none",
        remove_unused_columns=False, disable_tqdm=True, eval_strategy="no", save_strategy="no",
    )
    trainer = MeamtmTrainer(model=model, args=training_args, data_collator=AudioCollator(),
                            processing_class=extractor, compute_metrics=make_compute_metrics(labels))
    metrics = trainer.evaluate(prepare_dataset(clips, transform), metric_key_prefix="eval")
    metrics["test_time_warps"] = model.config.test_time_warp_factors
    metrics["test_time_shifts"] = model.config.test_time_frame_shifts
    metrics["test_time_tempi"] = model.config.test_time_tempo_factors
    metrics["trim_silence_db"] = model.config.trim_silence_db
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    Path(args.output_dir, "eval_results.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(json.dumps(metrics, indent=1))
    return metrics


def labels_of_model(model: str) -> LabelSpace:
    """The label space the model was trained on (its `id2label`), so that `load_model` keeps its head."""
    config = AutoConfig.from_pretrained(model)
    names = [config.id2label[index] for index in range(config.num_labels)]
    return LabelSpace(names, config.problem_type == "multi_label_classification")


if __name__ == "__main__":
    main()
