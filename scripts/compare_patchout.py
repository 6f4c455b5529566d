"""Does patchout + SpecAugment cost accuracy? Two FSDD runs that differ only in those settings.

    python scripts/compare_patchout.py                   # ~ a few minutes per run on 2 CPU cores
    python scripts/compare_patchout.py --epochs 3        # shorter
    python scripts/compare_patchout.py --runs augmented --augmented_epochs 12 --time_mask_param 10

Both runs train the same small MEAMTM from the same initial weights with the plain transformers `Trainer`
(same data order, optimiser, schedule and number of epochs) on the FSDD train split and report test
accuracy and training time. AST's frontend is used (16 kHz, 128 mels, 16x16 patches with stride 10),
over 1 s windows (100 frames: 99% of FSDD clips are shorter), so each clip has 12 x 9 = 108 patches.
"""

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Audio, load_dataset
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed

from meamtm import MeamtmConfig, MeamtmFeatureExtractor, MeamtmForAudioClassification


logger = logging.getLogger("compare_patchout")

DEFAULT_FSDD = os.environ.get("MEAMTM_FSDD", str(Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"))
MODEL = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256, max_length=100)
# FSDD's log-mel statistics (AST normalises each data set with its own; AudioSet's are -4.27 / 4.57),
# measured with MEAMTM's frontend over the frames of 200 training clips.
FSDD_MEAN, FSDD_STD = -9.39, 4.90


@dataclass
class ComparisonArguments:
    fsdd_dir: str = field(default=DEFAULT_FSDD, metadata={"help": "FSDD in audiofolder layout (train/, test/)."})
    epochs: int = 8
    augmented_epochs: int | None = field(
        default=None, metadata={"help": "Epochs of the patchout run (default: --epochs); it has a cheaper step."}
    )
    runs: list[str] = field(default_factory=lambda: ["plain", "augmented"], metadata={"help": "plain, augmented"})
    batch_size: int = 32
    learning_rate: float = 5e-4
    seed: int = 0
    patchout_time: float = field(default=1 / 3, metadata={"help": "3 of the 9 time columns."})
    patchout_frequency: float = field(default=0.25, metadata={"help": "3 of the 12 frequency rows."})
    freq_mask_param: int = field(default=24, metadata={"help": "AST's freqm for ESC-50 (24 of 128 mels)."})
    time_mask_param: int = field(default=20, metadata={"help": "about AST's ESC-50 share (96 of 512 frames)."})
    output_dir: str = "benchmark_results"

    def __post_init__(self):
        unknown = set(self.runs) - {"plain", "augmented"}
        if unknown:
            raise ValueError(f"Unknown --runs {sorted(unknown)}: choose from plain, augmented.")


def load_fsdd(args: ComparisonArguments, extractor: MeamtmFeatureExtractor):
    """FSDD train/test as waveforms at the model's rate, truncated to its window (no padding stored)."""
    dataset = load_dataset("audiofolder", data_dir=args.fsdd_dir)
    dataset = dataset.cast_column("audio", Audio(sampling_rate=extractor.sampling_rate))

    def to_waveforms(batch):
        arrays = [audio["array"] for audio in batch["audio"]]
        return extractor(arrays, sampling_rate=extractor.sampling_rate, padding=False, return_attention_mask=False)

    return dataset.map(to_waveforms, batched=True, remove_columns=["audio"])


def train_and_test(name: str, config: MeamtmConfig, initial_state: dict, data, extractor, args, epochs: int) -> dict:
    set_seed(args.seed)
    model = MeamtmForAudioClassification(config)
    model.load_state_dict(initial_state)
    with tempfile.TemporaryDirectory() as scratch:
        training = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=epochs,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=64,
            learning_rate=args.learning_rate,
            weight_decay=0.05,
            warmup_steps=0.1,
            lr_scheduler_type="cosine",
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="epoch",
            report_to=[],
            seed=args.seed,
            data_seed=args.seed,
            use_cpu=not torch.cuda.is_available(),
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model, args=training, train_dataset=data["train"], processing_class=extractor
        )
        # CPU time as well as wall time: on a machine shared with other jobs, wall time mostly measures them.
        cpu_start = time.process_time()
        metrics = trainer.train().metrics
        cpu_seconds = time.process_time() - cpu_start
        predictions = trainer.predict(data["test"])
    accuracy = float((predictions.predictions.argmax(-1) == predictions.label_ids).mean())
    result = dict(
        run=name,
        epochs=epochs,
        test_accuracy=accuracy,
        train_seconds=metrics["train_runtime"],
        train_cpu_seconds=cpu_seconds,
        train_loss=metrics["train_loss"],
        patch_tokens_in_training=config.num_training_patches,
    )
    logger.info("%s", result)
    return result


def markdown_of(results: list[dict], args: ComparisonArguments) -> str:
    lines = [
        f"FSDD, batch {args.batch_size}, same initial weights and data order (torch threads: "
        f"{torch.get_num_threads()}).",
        "",
        "| run | epochs | patch tokens in training | test accuracy | training wall time (s) | training CPU time (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        lines.append(
            f"| {result['run']} | {result['epochs']} | {result['patch_tokens_in_training']} | {100 * result['test_accuracy']:.1f}% | "
            f"{result['train_seconds']:.0f} | {result['train_cpu_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    (args,) = HfArgumentParser(ComparisonArguments).parse_args_into_dataclasses()
    common = dict(MODEL, num_labels=10, spectrogram_mean=FSDD_MEAN, spectrogram_std=FSDD_STD)
    plain = MeamtmConfig(**common)
    augmented = MeamtmConfig(
        **common,
        patchout_time=args.patchout_time,
        patchout_frequency=args.patchout_frequency,
        freq_mask_param=args.freq_mask_param,
        time_mask_param=args.time_mask_param,
    )
    extractor = MeamtmFeatureExtractor.from_model_config(plain)
    data = load_fsdd(args, extractor)
    names = data["train"].features["label"].names
    for config in (plain, augmented):
        config.id2label = dict(enumerate(names))
        config.label2id = {label: index for index, label in enumerate(names)}
    set_seed(args.seed)
    initial_state = MeamtmForAudioClassification(plain).state_dict()
    runs = dict(
        plain=lambda: train_and_test("plain", plain, initial_state, data, extractor, args, args.epochs),
        augmented=lambda: train_and_test(
            "patchout + SpecAugment", augmented, initial_state, data, extractor, args,
            args.augmented_epochs or args.epochs,
        ),
    )
    results = [runs[name]() for name in args.runs]
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "compare_patchout.json").write_text(json.dumps(dict(settings=asdict(args), results=results), indent=2))
    markdown = markdown_of(results, args)
    (output / "compare_patchout.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
