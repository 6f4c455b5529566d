"""Averaging a run's weights over the end of its training (stochastic weight averaging).

`WeightAveraging` is a `TrainerCallback`: past a fraction `start` of the run's optimizer steps, every step's weights
enter a running mean (SWA, Izmailov et al. 2018, taken densely at every step as SWAD does, Cha et al. 2021, which
found it to generalise to unseen domains better than the last weights). `apply` loads the mean into the model at
the end, so the saved model, its evaluation and its checkpoint are the average's. The evaluations during training
read the weights of the moment.

Each checkpoint saved while the mean runs holds it (`weight_average.safetensors`, with the count of steps), so a
resumed run goes on with the same mean. Under FSDP or DeepSpeed each process holds a shard of the weights: not
supported (`check_trainer` refuses it).
"""

import math
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback
from transformers.utils import logging


logger = logging.get_logger(__name__)

AVERAGE_FILE = "weight_average.safetensors"


def averaged_names(model: torch.nn.Module) -> list[str]:
    """The entries of the model's state dict that are averaged: its floating-point weights and saved buffers."""
    return [name for name, value in model.state_dict().items() if value.is_floating_point()]


def check_start(start: float) -> float:
    """`start` as a fraction of training in (0, 1), or a `ValueError` naming it."""
    if not (isinstance(start, (int, float)) and 0 < start < 1):
        raise ValueError(
            f"--weight_averaging_start {start!r} is not a fraction of training in (0, 1): give e.g. 0.5 to average the "
            "weights of the second half of the steps, or 0 for no averaging."
        )
    return float(start)


class WeightAveraging(TrainerCallback):
    """The running mean of the weights of every optimizer step after `start * max_steps`.

    Args:
        start (`float`): the fraction of the run's optimizer steps after which the mean starts, in (0, 1).
        resume_from (`str`, *optional*): the checkpoint folder the run resumes from; its mean, when it has one,
            is where this one goes on.
    """

    def __init__(self, start: float, resume_from: str | None = None):
        self.start = check_start(start)
        self.resume_from = resume_from
        self.average: dict[str, torch.Tensor] | None = None
        self.count = 0

    def first_step(self, max_steps: int) -> int:
        """The first optimizer step (1-based) whose weights enter the mean."""
        return math.floor(self.start * max_steps) + 1

    def load(self, folder: str) -> bool:
        """Go on with the mean saved in checkpoint `folder`; `False` when it holds none."""
        path = Path(folder) / AVERAGE_FILE
        if not path.is_file():
            return False
        with safe_open(str(path), framework="pt") as handle:
            self.count = int(handle.metadata()["count"])
        self.average = load_file(str(path))
        return True

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not self.resume_from or state.global_step < self.first_step(state.max_steps):
            return
        if self.load(self.resume_from):
            devices = {name: value.device for name, value in model.state_dict().items()}
            self.average = {name: value.to(devices[name]) for name, value in self.average.items()}
            logger.info(f"Weight averaging goes on from {self.resume_from} ({self.count} steps averaged).")
        else:
            logger.warning(
                f"{self.resume_from} holds no {AVERAGE_FILE}: the weight average starts again at step "
                f"{state.global_step + 1}, not at step {self.first_step(state.max_steps)}."
            )

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step < self.first_step(state.max_steps):
            return
        weights = model.state_dict()
        with torch.no_grad():
            if self.average is None:
                self.average = {name: weights[name].detach().float().clone() for name in averaged_names(model)}
                self.count = 1
                logger.info(f"Weight averaging starts at step {state.global_step} of {state.max_steps}.")
                return
            self.count += 1
            for name, value in self.average.items():
                value.lerp_(weights[name].detach().float(), 1.0 / self.count)

    def on_save(self, args, state, control, **kwargs):
        if self.average is None or not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            tensors = {name: value.detach().cpu().contiguous() for name, value in self.average.items()}
            save_file(tensors, str(folder / AVERAGE_FILE), metadata={"count": str(self.count)})

    def apply(self, model: torch.nn.Module) -> None:
        """Load the mean into `model` (a run that only loads its final checkpoint takes that checkpoint's mean)."""
        if self.average is None and self.resume_from:
            self.load(self.resume_from)
        if self.average is None:
            logger.warning("No step reached --weight_averaging_start: the model keeps its last weights.")
            return
        state = model.state_dict()
        with torch.no_grad():
            for name, value in self.average.items():
                state[name].copy_(value.to(device=state[name].device, dtype=state[name].dtype))
        logger.info(f"Weights averaged over the last {self.count} optimizer steps.")


def is_sharded(trainer) -> bool:
    """Whether the trainer's processes each hold a shard of the weights (FSDP, DeepSpeed)."""
    return bool(getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False))


def check_trainer(trainer) -> None:
    """Refuse a run whose processes each hold a shard of the weights: the mean needs them whole."""
    if is_sharded(trainer):
        raise ValueError(
            "--weight_averaging_start needs each process to hold the whole model; it is not supported under FSDP "
            "or DeepSpeed: use --average_last_checkpoints N, which averages saved checkpoints, instead."
        )


__all__ = ["AVERAGE_FILE", "WeightAveraging", "averaged_names", "check_start", "check_trainer", "is_sharded"]
