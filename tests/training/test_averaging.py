"""meamtm/training/averaging.py: the running mean of the weights over the end of training."""

import math
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerControl, TrainerState

from meamtm.training.averaging import AVERAGE_FILE, WeightAveraging, averaged_names, check_start, check_trainer


class Counter(torch.nn.Module):
    """A layer whose weights are set by hand, an integer buffer that is not averaged and a float one that is."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("scale", torch.ones(2))


def set_weights(model: Counter, step: int) -> None:
    with torch.no_grad():
        model.linear.weight.fill_(float(step) ** 2)
        model.linear.bias.fill_(-float(step))
        model.scale.fill_(0.5 * step)
        model.steps.fill_(step)


def train(callback: WeightAveraging, model: Counter, steps: range, max_steps: int, output_dir=None, save_at=()):
    """Call the callback as the Trainer does, the weights of step k set to known values."""
    state = TrainerState(max_steps=max_steps, global_step=steps.start - 1)
    args = SimpleNamespace(output_dir=str(output_dir))
    callback.on_train_begin(args, state, TrainerControl(), model=model)
    for step in steps:
        set_weights(model, step)
        state.global_step = step
        callback.on_step_end(args, state, TrainerControl(), model=model)
        if step in save_at:
            (output_dir / f"checkpoint-{step}").mkdir()
            callback.on_save(args, state, TrainerControl(), model=model)


def test_the_mean_is_that_of_the_steps_after_the_start():
    model = Counter()
    callback = WeightAveraging(0.5)
    train(callback, model, range(1, 11), max_steps=10)  # steps 6-10 enter the mean
    assert callback.first_step(10) == 6 and callback.count == 5
    callback.apply(model)
    torch.testing.assert_close(model.linear.weight, torch.full((2, 3), (36 + 49 + 64 + 81 + 100) / 5))
    torch.testing.assert_close(model.linear.bias, torch.full((2,), -8.0))
    torch.testing.assert_close(model.scale, torch.full((2,), 4.0))
    assert model.steps.item() == 10  # integers are not averaged: the last value stays
    assert "steps" not in averaged_names(model) and "scale" in averaged_names(model)


def test_a_short_run_averages_at_least_its_last_step():
    model = Counter()
    callback = WeightAveraging(0.9)
    train(callback, model, range(1, 3), max_steps=2)
    assert callback.count == 1
    callback.apply(model)
    assert model.linear.weight[0, 0].item() == 4.0


def test_a_resumed_run_goes_on_with_the_saved_mean(tmp_path):
    straight = Counter()
    callback = WeightAveraging(0.4)
    train(callback, straight, range(1, 13), max_steps=12, output_dir=tmp_path, save_at=(4, 8))
    callback.apply(straight)
    assert not (tmp_path / "checkpoint-4" / AVERAGE_FILE).exists()  # the mean starts at step 5
    saved = load_file(str(tmp_path / "checkpoint-8" / AVERAGE_FILE))
    assert set(saved) == {"linear.weight", "linear.bias", "scale"}

    resumed = Counter()
    again = WeightAveraging(0.4, resume_from=str(tmp_path / "checkpoint-8"))
    train(again, resumed, range(9, 13), max_steps=12)
    assert again.count == callback.count == 8
    again.apply(resumed)
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value)

    # A run that only loads its final checkpoint (a finished run run again) takes that checkpoint's mean.
    (tmp_path / "checkpoint-12").mkdir()
    callback.on_save(SimpleNamespace(output_dir=str(tmp_path)), TrainerState(max_steps=12, global_step=12),
                     TrainerControl())
    finished = Counter()
    set_weights(finished, 12)
    WeightAveraging(0.4, resume_from=str(tmp_path / "checkpoint-12")).apply(finished)
    torch.testing.assert_close(finished.linear.weight, straight.linear.weight)


def test_a_checkpoint_without_a_mean_restarts_it_and_says_so(tmp_path, caplog):
    (tmp_path / "checkpoint-8").mkdir()
    callback = WeightAveraging(0.25, resume_from=str(tmp_path / "checkpoint-8"))
    model = Counter()
    from transformers.utils import logging as hf_logging

    hf_logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            train(callback, model, range(9, 13), max_steps=12)
    finally:
        hf_logging.disable_propagation()
    assert "starts again at step 9, not at step 4" in caplog.text
    assert callback.count == 4


def test_the_mean_stays_on_the_weights_device():
    model = Counter().to("meta")
    callback = WeightAveraging(0.5)
    state = TrainerState(max_steps=2, global_step=2)
    callback.on_step_end(SimpleNamespace(output_dir=None), state, TrainerControl(), model=model)
    assert all(value.device.type == "meta" for value in callback.average.values())


@pytest.mark.parametrize("start", [0, 1, 1.5, -0.1, math.nan, "half"])
def test_a_start_outside_the_run_is_refused(start):
    expected = rf"--weight_averaging_start {start!r} is not a fraction of training in \(0, 1\)"
    with pytest.raises(ValueError, match=expected):
        check_start(start)


def test_sharded_weights_are_refused():
    check_trainer(SimpleNamespace(is_fsdp_enabled=False, is_deepspeed_enabled=False))
    with pytest.raises(ValueError, match="not supported under FSDP or DeepSpeed: use --average_last_checkpoints"):
        check_trainer(SimpleNamespace(is_fsdp_enabled=True))
