"""Training MEAMTM with the Hugging Face Trainer: model presets, metrics, the Trainer, checkpoints.

`scripts/train.py` is the recipe; this module holds the parts it (and the tests) reuse:

* `build_config`: a fresh `MeamtmConfig` from a preset (`tiny`, `small`, `base`) or a JSON file, plus
  `"key=value,..."` overrides (`PretrainedConfig.update_from_string`, the convention of transformers' example
  scripts).
* `make_compute_metrics`: accuracy and macro F1 (single-label) or mAP, mean AUC and d-prime (multi-label),
  through the `evaluate` modules shipped in `meamtm/metrics`.
* `load_model`: a checkpoint with a new head, or a fresh model; `checked_test_time_settings`: test-time warps and
  frame shifts to set on its config, checked first; `test_time_text`: them as a log line or model card shows them.
* `MeamtmTrainer`: `Trainer` with balanced (PSLA) sampling, optional sharpness-aware minimisation (`--sam_rho`),
  that keeps the run's own model card.
* `resume_point`, `train_or_finish`, `average_last_checkpoints`: resuming after a crash, a rerun of a finished
  run, and weight averaging (`complete_checkpoints`, `average_checkpoints`).
"""

import importlib.util
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from safetensors.torch import load_file
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, Trainer, TrainingArguments
from transformers.trainer_callback import TrainerState
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import has_length, sort_checkpoints
from transformers.utils import logging

from . import metrics
from ..configuration_meamtm import MeamtmConfig
from ..feature_extraction_meamtm import MeamtmFeatureExtractor
from ..frontend_meamtm import mel_filters_of
from ..modeling_meamtm import MeamtmForAudioClassification
from .data import LabelSpace
from .sampling import BalancedSampler


logger = logging.get_logger(__name__)


# Transformer size and window of fresh models. `tiny` and `small` use 56 mel bands, the five rows of 16-band
# patches at stride 10 (`num_mel_bins_read`: every band reaches the encoder), and a 128-frame window (1.28 s at a
# 10 ms hop): short clips (keywords, digits, events) train fast on a CPU. They pool the mean of the patch tokens,
# which trains a small model from scratch faster than AST's cls tokens. `base` is AST-base, cls pooling included.
PRESETS = {
    "tiny": dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, num_mel_bins=56,
        max_length=128, pooling="mean",
    ),
    "small": dict(
        hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=768, num_mel_bins=56,
        max_length=128, pooling="mean",
    ),
    "base": {},
}


@dataclass
class MeamtmTrainingArguments(TrainingArguments):
    """`TrainingArguments` with defaults for audio classification from decoded audio."""

    output_dir: str | None = field(default="meamtm-output", metadata={"help": "Checkpoints, model and reports."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps, epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save a checkpoint: no, steps, epoch."})
    save_total_limit: int | None = field(
        default=2,
        metadata={"help": "Checkpoints kept, the newest (resuming needs one; --average_last_checkpoints N raises it to "
                          "N when not given); 0 keeps every one."},
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every N optimizer steps."})
    # The transform reads the raw audio and label columns, which the Trainer would otherwise drop.
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep False: the transform needs the audio."})
    # Without an accelerator, `torchrun --nproc_per_node N` is data-parallel only when the Trainer is told to
    # use the CPU (gloo); on one process this changes nothing.
    use_cpu: bool = field(
        default=not torch.accelerator.is_available(), metadata={"help": "Train on the CPU (default when no GPU)."}
    )
    report_to: None | str | list[str] = field(
        default="tensorboard" if importlib.util.find_spec("tensorboard") else "none",
        metadata={"help": "Loggers: tensorboard (default when installed), wandb, none, all."},
    )
    sam_rho: float = field(
        default=0.0,
        metadata={"help": "Sharpness-aware minimisation (Foret et al. 2021): each step takes the gradient at the "
                          "weights moved by this radius up the batch's gradient (two forward and backward passes "
                          "a step). 0 (default) is off; Chen et al. 2022 used 0.05-0.2 for ViTs from scratch."},
    )

    def __post_init__(self):
        super().__post_init__()
        if not (isinstance(self.sam_rho, (int, float)) and math.isfinite(self.sam_rho) and self.sam_rho >= 0):
            raise ValueError(f"--sam_rho {self.sam_rho!r} is not a radius >= 0: give e.g. 0.05, or 0 for no SAM.")
        if self.sam_rho and self.gradient_accumulation_steps != 1:
            raise ValueError(
                f"--sam_rho {self.sam_rho} with --gradient_accumulation_steps {self.gradient_accumulation_steps}: SAM "
                "takes each step's ascent from one batch's gradient; give --gradient_accumulation_steps 1 (a larger "
                "--per_device_train_batch_size instead), or --sam_rho 0."
            )


def apply_overrides(config: MeamtmConfig, overrides: str | None) -> set[str]:
    """Set `"hidden_size=192,num_hidden_layers=4"` on `config` in place; return the names that were set.

    Values are typed by `PretrainedConfig.update_from_string` from the field's current value (bool, int,
    float, str). Before it, each item is checked so that an error names the item and the fix; `none` sets a
    field to `None`, and a field that is `None` (which `update_from_string` cannot type) takes a number.
    """
    if not overrides:
        return set()
    fields = set(MeamtmConfig().to_dict())
    names = set()
    for item in overrides.split(","):
        key, sep, text = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise ValueError(f"Config override {item!r} is not key=value (e.g. 'hidden_size=192,num_hidden_layers=4').")
        if key not in fields:
            raise ValueError(f"Config override {key!r} is not a MeamtmConfig field (see its docstring for the fields).")
        try:
            if text.lower() == "none":
                setattr(config, key, None)
            elif getattr(config, key) is None:
                setattr(config, key, float(text))
            else:
                config.update_from_string(f"{key}={text}")
        except (TypeError, ValueError) as error:
            raise ValueError(f"Config override {key}={text!r} does not fit the field: {error}.") from None
        names.add(key)
    return names


def build_config(
    config_name: str = "small", config_overrides: str | None = None, labels: LabelSpace | None = None
) -> MeamtmConfig:
    """A fresh model's config: a preset name or a config JSON path, then the overrides, then the labels.

    When the overrides change `sampling_rate` but leave `win_length`, `hop_length` and `n_fft` unset, those follow
    the rate, keeping AST's 25 ms window and 10 ms hop (so the window still spans the same time); this is
    logged. Give them explicitly to choose otherwise.
    """
    if config_name in PRESETS:
        config = MeamtmConfig(**PRESETS[config_name])
    elif Path(config_name).is_file():
        config = MeamtmConfig.from_json_file(config_name)
    else:
        raise ValueError(f"--config_name {config_name!r} is neither a preset ({list(PRESETS)}) nor a config JSON file.")
    overridden = apply_overrides(config, config_overrides)
    rate = config.sampling_rate
    if "sampling_rate" in overridden and not {"win_length", "hop_length", "n_fft"} & overridden:
        win_length, hop_length = round(0.025 * rate), round(0.010 * rate)
        config.win_length, config.hop_length = win_length, hop_length
        config.n_fft = 1 << (win_length - 1).bit_length()
        logger.info(f"sampling_rate={rate}: a 25 ms window and 10 ms hop are {win_length} and {hop_length} samples.")
    values = config.to_diff_dict()
    values.pop("model_type", None)
    if labels is not None:
        values.update(label2id=labels.label2id, id2label=labels.id2label, problem_type=labels.problem_type)
    return MeamtmConfig(**values)  # built anew, so the cross-field checks see the overrides


def warn_of_unread_mel_bins(config: MeamtmConfig) -> None:
    """Warn, naming the fix, when the patch grid leaves the top mel bands unread (`num_mel_bins_read`)."""
    read, bins = config.num_mel_bins_read, config.num_mel_bins
    if read == bins:
        return
    lowest_unread_hz = np.argmax(mel_filters_of(config)[:, read]) * config.sampling_rate / config.n_fft
    logger.warning(
        f"num_mel_bins={bins} with patch_size={config.patch_size} and frequency_stride={config.frequency_stride}: "
        f"the patch grid reads the lowest {read} mel bands, so the top {bins - read} (from about "
        f"{lowest_unread_hz:.0f} Hz up) never reach the model. Set num_mel_bins={read} or "
        f"{read + config.frequency_stride} (patch_size + k * frequency_stride) to read every band."
    )


def load_model(
    model_name_or_path: str | None,
    labels: LabelSpace,
    config_name: str = "small",
    config_overrides: str | None = None,
    ignore_mismatched_sizes: bool = True,
    trust_remote_code: bool = False,
):
    """`(model, feature_extractor)`: a checkpoint with a head for `labels`, or a fresh model (`build_config`), of
    whose config `warn_of_unread_mel_bins` warns."""
    if not model_name_or_path:
        config = build_config(config_name, config_overrides, labels)
        warn_of_unread_mel_bins(config)
        return MeamtmForAudioClassification(config), MeamtmFeatureExtractor.from_model_config(config)
    model = AutoModelForAudioClassification.from_pretrained(
        model_name_or_path, num_labels=len(labels.names), label2id=labels.label2id, id2label=labels.id2label,
        problem_type=labels.problem_type, ignore_mismatched_sizes=ignore_mismatched_sizes,
        trust_remote_code=trust_remote_code,
    )
    try:
        extractor = AutoFeatureExtractor.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
    except OSError:  # a converted AST checkpoint saved without its (waveform) feature extractor
        extractor = MeamtmFeatureExtractor.from_model_config(model.config)
    return model, extractor


def checked_test_time_settings(config, **values: float | None) -> dict:
    """The test-time fields among `values` (`test_time_max_warp=...`, `test_time_max_shift=...`) that are not None,
    as the config would take them, checked as the config checks its fields (a `ValueError` naming the value); the
    config itself is left alone."""
    given = {name: value for name, value in values.items() if value is not None}
    checked = type(config)(**{**config.to_dict(), **given})
    return {name: getattr(checked, name) for name in given}


def test_time_text(config, off: str = "off") -> str:
    """The config's test-time warps, frame shifts and tempi as a log line or model card shows them ("warps 0.9, 1,
    1.1; shifts 0, 3, 6 frames; tempi 0.8, 1, 1.2"), or `off`."""
    parts = []
    if config.test_time_warp_factors:
        parts.append("warps " + ", ".join(f"{factor:g}" for factor in config.test_time_warp_factors))
    if config.test_time_frame_shifts:
        parts.append("shifts " + ", ".join(map(str, config.test_time_frame_shifts)) + " frames")
    if config.test_time_tempo_factors:
        parts.append("tempi " + ", ".join(f"{tempo:g}" for tempo in config.test_time_tempo_factors))
    return "; ".join(parts) or off


def make_compute_metrics(labels: LabelSpace):
    """`compute_metrics` for the Trainer: `EvalPrediction` -> metrics dict, with the shipped `evaluate` modules."""
    if labels.multi_label:
        metric = metrics.load("audioset")

        def compute_multi_label(prediction):
            logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
            result = metric.compute(predictions=logits.tolist(), references=prediction.label_ids.astype(int).tolist())
            return {key: value for key, value in result.items() if key != "num_classes_scored"}

        return compute_multi_label

    metric = metrics.load("accuracy_f1")

    def compute_single_label(prediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return metric.compute(
            predictions=np.argmax(logits, axis=-1),
            references=prediction.label_ids,
            labels=list(range(len(labels.names))),
        )

    return compute_single_label


class MeamtmTrainer(Trainer):
    """`Trainer` with balanced sampling, `train_sampling_strategy="group_by_length"` reading the lengths of
    `add_length_column` past the audio-decoding transform, sharpness-aware steps when `args.sam_rho` > 0 (the
    gradient taken at the weights moved `sam_rho` along the batch's normalised gradient, then applied where
    they were), and which keeps the run's own model card.

    Args (beyond `Trainer`'s):
        sampling_weights (`np.ndarray` `(num_clips,)`, *optional*): draw training clips with these weights
            (`balanced_sampling_weights`), seeded by `args.seed` and the epoch, instead of shuffling.

    `push_to_hub` publishes the `README.md` that `report.write_run_report` wrote in the output folder; the
    Trainer's generic card is written only where there is none.
    """

    def __init__(self, *args, sampling_weights: np.ndarray | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.sampling_weights = sampling_weights

    def training_step(self, model, inputs, num_items_in_batch=None):
        rho = getattr(self.args, "sam_rho", 0.0)
        if not rho:
            return super().training_step(model, inputs, num_items_in_batch)
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            raise ValueError(
                f"--sam_rho {rho} needs each process to hold whole gradients; it is not supported under FSDP or "
                "DeepSpeed: give --sam_rho 0 there."
            )
        # Sharpness-aware minimisation: the gradient at w is the ascent direction; the step's gradient is taken
        # at w + rho * g / |g| and applied to w. `inputs` is the same batch for both passes.
        loss = super().training_step(model, dict(inputs), num_items_in_batch)
        parameters = [p for p in model.parameters() if p.grad is not None]
        if not parameters:
            return loss
        with torch.no_grad():
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters]))
            if not torch.isfinite(norm) or norm == 0:
                # Nothing to climb along (or an overflow the step skips): keep the plain gradient.
                return loss
            scale = rho / norm
            # The weights are copied back afterwards, not stepped back: (w + e) - e need not be w in floating point.
            weights = [parameter.detach().clone() for parameter in parameters]
            for parameter in parameters:
                parameter.add_(parameter.grad * scale)
        model.zero_grad(set_to_none=True)
        try:
            super().training_step(model, dict(inputs), num_items_in_batch)
        finally:
            with torch.no_grad():
                for parameter, weight in zip(parameters, weights):
                    parameter.copy_(weight)
        return loss

    def _get_train_sampler(self, train_dataset=None):
        if self.sampling_weights is not None:
            return BalancedSampler(self.sampling_weights, seed=self.args.seed)
        train_dataset = train_dataset if train_dataset is not None else self.train_dataset
        column = self.args.length_column_name
        if self.args.train_sampling_strategy == "group_by_length" and column in getattr(train_dataset, "column_names", ()):
            # The Trainer would read the column through the data set's transform, which decodes audio (and wants
            # the audio column): read it raw. The lengths come from `add_length_column`.
            lengths = train_dataset.with_format(None)[column]
            batch_size = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return LengthGroupedSampler(batch_size, lengths=list(lengths))
        return super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset):
        # The Trainer groups evaluation by length too when training does, reading each length through the
        # audio-decoding transform (every clip decoded once more, and an unreadable one fails): keep the data set's
        # order, which also lines predictions up with the files.
        if self.args.train_sampling_strategy == "group_by_length" and eval_dataset is not None and has_length(eval_dataset):
            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None
        return super()._get_eval_sampler(eval_dataset)

    def create_model_card(self, *args, **kwargs):
        if not (Path(self.args.output_dir) / "README.md").is_file():
            super().create_model_card(*args, **kwargs)


def complete_checkpoints(output_dir: str) -> list[str]:
    """Checkpoint folders of `output_dir` that were written to the end, oldest first.

    The folders and their order are `transformers.trainer_utils.sort_checkpoints`'. The Trainer writes
    `trainer_state.json` last, after weights, optimizer and RNG states, so a run killed while saving leaves a
    folder without a readable one; such folders are skipped. (`get_last_checkpoint` returns the newest folder
    whatever its state, and resuming from a folder cut short fails, so it is not used here.)
    """
    if not Path(output_dir).is_dir():
        return []
    found = []
    for path in sort_checkpoints(output_dir):
        try:
            json.loads((Path(path) / "trainer_state.json").read_text())
        except (OSError, ValueError):
            logger.warning(f"Ignoring incomplete checkpoint {path} (no readable trainer_state.json).")
            continue
        found.append(path)
    return found


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest complete checkpoint folder of `output_dir`, or `None`."""
    found = complete_checkpoints(output_dir)
    return found[-1] if found else None


def is_final_checkpoint(folder: str) -> bool:
    """Whether the checkpoint was saved at the run's last step (its `global_step` reached `max_steps`).

    Resuming from such a checkpoint makes the Trainer (transformers 5.23) take one extra optimizer step at
    learning rate 0 before it notices the end; a run killed after its final checkpoint needs no training at all.
    """
    state = json.loads((Path(folder) / "trainer_state.json").read_text())
    return state.get("max_steps", 0) > 0 and state["global_step"] >= state["max_steps"]


def resume_point(args: TrainingArguments) -> str | None:
    """`--resume_from_checkpoint`, else the newest complete checkpoint in the output folder (a rerun resumes)."""
    if args.resume_from_checkpoint:
        return args.resume_from_checkpoint
    checkpoint = last_complete_checkpoint(args.output_dir)
    if checkpoint:
        logger.warning(f"Resuming from {checkpoint} (the newest complete checkpoint in {args.output_dir}).")
    return checkpoint


def train_or_finish(trainer: Trainer, checkpoint: str | None) -> dict:
    """Train (from `checkpoint` if given) and return the training metrics; a final checkpoint is just loaded."""
    if checkpoint and is_final_checkpoint(checkpoint):
        logger.warning(f"{checkpoint} is the run's last step: loading it instead of training.")
        trainer.model.load_state_dict(load_file(str(Path(checkpoint) / "model.safetensors")))
        trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
        return {"epoch": trainer.state.epoch}
    return trainer.train(resume_from_checkpoint=checkpoint).metrics


def average_last_checkpoints(trainer: Trainer, count: int) -> None:
    """Load into `trainer.model` the mean weights of the last `count` complete checkpoints of its output folder."""
    checkpoints = complete_checkpoints(trainer.args.output_dir)[-count:]
    if len(checkpoints) < count:
        logger.warning(f"Averaging {len(checkpoints)} checkpoints, not {count}: raise --save_total_limit to keep more.")
    trainer.model.load_state_dict(average_checkpoints(checkpoints))
    logger.info(f"Weights averaged over {[Path(c).name for c in checkpoints]}.")


def average_checkpoints(folders: list[str]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the floating-point weights of several checkpoints (AST and PSLA average the last ones).

    Integer tensors (counters, indices) are taken from the last checkpoint. A pure function of the files.
    """
    if not folders:
        raise ValueError("average_checkpoints needs at least one checkpoint folder.")
    states = [load_file(str(Path(folder) / "model.safetensors")) for folder in folders]
    keys = set(states[-1])
    for folder, state in zip(folders, states):
        if set(state) != keys:
            raise ValueError(
                f"Checkpoint {folder} has other weights than {folders[-1]}: average checkpoints of one run."
            )
    averaged = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            averaged[key] = (sum(state[key].double() for state in states) / len(states)).to(last.dtype)
        else:
            averaged[key] = last
    return averaged


__all__ = [
    "PRESETS",
    "MeamtmTrainer",
    "MeamtmTrainingArguments",
    "apply_overrides",
    "average_checkpoints",
    "average_last_checkpoints",
    "build_config",
    "checked_test_time_settings",
    "complete_checkpoints",
    "test_time_text",
    "is_final_checkpoint",
    "last_complete_checkpoint",
    "load_model",
    "make_compute_metrics",
    "resume_point",
    "train_or_finish",
]
