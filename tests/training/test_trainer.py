"""meamtm/training/trainer.py: presets and overrides, metrics glue, checkpoints, the Trainer subclass."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import EvalPrediction

from meamtm import MeamtmConfig
from meamtm.training.data import LabelSpace
from meamtm.training.sampling import BalancedSampler
from meamtm.training.trainer import (
    PRESETS,
    MeamtmTrainingArguments,
    apply_overrides,
    average_checkpoints,
    build_config,
    complete_checkpoints,
    is_final_checkpoint,
    last_complete_checkpoint,
    load_model,
    make_compute_metrics,
)


def test_overrides_are_typed_by_the_config_field():
    config = MeamtmConfig()
    names = apply_overrides(
        config, "hidden_size=192, num_hidden_layers=4,fmax=3500,trainable_mel=true,window=hamming,fmin=0"
    )
    assert names == {"hidden_size", "num_hidden_layers", "fmax", "trainable_mel", "window", "fmin"}
    assert (config.hidden_size, config.num_hidden_layers, config.fmax, config.trainable_mel, config.window) == (
        192, 4, 3500.0, True, "hamming"
    )
    assert config.fmin == 0 and isinstance(config.fmin, float)
    apply_overrides(config, "fmax=none")
    assert config.fmax is None
    assert apply_overrides(config, None) == set()
    assert build_config("tiny", "hidden_size=96,intermediate_size=100").hidden_size == 96


@pytest.mark.parametrize(
    "text, message",
    [("hidden=3", "'hidden' is not a MeamtmConfig field"), ("hidden_size", "'hidden_size' is not key=value"),
     ("qkv_bias=maybe", "qkv_bias='maybe' does not fit the field: can't derive true or false"),
     ("preemphasis=high", "preemphasis='high' does not fit the field: could not convert"),
     ("hidden_size=1.5", "hidden_size='1.5' does not fit the field"), ("fmax=high", "fmax='high' does not fit")],
)
def test_override_errors_name_the_item(text, message):
    with pytest.raises(ValueError, match=message):
        build_config("tiny", text)


def test_presets_build_valid_configs():
    for name, values in PRESETS.items():
        config = build_config(name)
        for key, value in values.items():
            assert getattr(config, key) == value
    assert build_config("small").num_hidden_layers == 4 and build_config("base").hidden_size == 768


def test_sampling_rate_override_keeps_a_25_ms_window_and_10_ms_hop():
    config = build_config("tiny", "sampling_rate=8000")
    assert (config.win_length, config.hop_length, config.n_fft) == (200, 80, 256)
    explicit = build_config("tiny", "sampling_rate=8000,win_length=256,hop_length=128,n_fft=256")
    assert (explicit.win_length, explicit.hop_length) == (256, 128)


def test_a_fresh_model_whose_grid_leaves_mel_bands_unread_is_warned_of_once_with_the_fix(monkeypatch):
    from meamtm.training import trainer

    warnings = []
    monkeypatch.setattr(trainer.logger, "warning", warnings.append)
    labels = LabelSpace(["a", "b"], multi_label=False)
    config = build_config("tiny", "sampling_rate=8000,num_mel_bins=64")
    assert config.num_mel_bins_read == 56 and warnings == []  # a config alone (as data defaults derive one) is quiet
    model, _ = load_model(None, labels, "tiny", "sampling_rate=8000,num_mel_bins=64")
    (message,) = warnings
    assert "num_mel_bins=64 with patch_size=16 and frequency_stride=10" in message
    assert "the top 8 (from about 3031 Hz up) never reach the model" in message
    assert "Set num_mel_bins=56 or 66" in message
    warnings.clear()
    for overrides in ("num_mel_bins=56", "num_mel_bins=66", "num_mel_bins=40,frequency_stride=8"):
        load_model(None, labels, "tiny", f"sampling_rate=8000,{overrides}")
    assert warnings == []


def test_build_config_from_json_and_labels(tmp_path):
    MeamtmConfig(hidden_size=48, num_attention_heads=4, num_hidden_layers=1).to_json_file(tmp_path / "c.json")
    labels = LabelSpace(["a", "b", "c"], multi_label=True)
    config = build_config(str(tmp_path / "c.json"), "intermediate_size=96", labels)
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (48, 1, 96)
    assert config.num_labels == 3 and config.id2label[2] == "c"
    assert config.problem_type == "multi_label_classification"
    with pytest.raises(ValueError, match=r"neither a preset \(\['tiny', 'small', 'base'\]\) nor a config JSON"):
        build_config("huge")
    with pytest.raises(ValueError, match="not divisible by num_attention_heads"):
        build_config("tiny", "num_attention_heads=5")


def test_training_argument_defaults_suit_raw_audio(tmp_path):
    args = MeamtmTrainingArguments(output_dir=str(tmp_path))
    assert args.remove_unused_columns is False  # the transform needs the audio and label columns
    assert args.eval_strategy == "epoch" and args.save_strategy == "epoch"
    assert args.use_cpu == (not torch.accelerator.is_available())


def test_compute_metrics_single_label():
    compute = make_compute_metrics(LabelSpace(["a", "b", "c"], False))
    logits = np.array([[2.0, 0, 0], [0, 2, 0], [0, 2, 0], [0, 0, 1]])
    result = compute(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 2, 2])))
    assert result["accuracy"] == 0.75
    assert result["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_compute_metrics_multi_label():
    compute = make_compute_metrics(LabelSpace(["a", "b"], True))
    logits = np.array([[3.0, -1], [-2, 2], [1, 1], [-1, -3]])
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float32)
    result = compute(EvalPrediction(predictions=logits, label_ids=targets))
    assert set(result) == {"mAP", "mAUC", "d_prime"}
    assert result["mAP"] == 1.0 and result["mAUC"] == 1.0


def write_checkpoint(folder, step, state=None, complete=True, max_steps=10):
    path = folder / f"checkpoint-{step}"
    path.mkdir()
    if state is not None:
        save_file(state, str(path / "model.safetensors"))
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": max_steps}))
    else:
        (path / "trainer_state.json").write_text('{"global_st')  # killed while writing
    return path


def test_complete_checkpoints_skip_folders_cut_short(tmp_path):
    write_checkpoint(tmp_path, 10)
    write_checkpoint(tmp_path, 2)
    write_checkpoint(tmp_path, 12, complete=False)
    (tmp_path / "checkpoint-x").mkdir()
    assert [p.rsplit("/", 1)[1] for p in complete_checkpoints(str(tmp_path))] == ["checkpoint-2", "checkpoint-10"]
    assert last_complete_checkpoint(str(tmp_path)).endswith("checkpoint-10")
    assert last_complete_checkpoint(str(tmp_path / "nothing")) is None
    assert is_final_checkpoint(str(tmp_path / "checkpoint-10")) and not is_final_checkpoint(str(tmp_path / "checkpoint-2"))


def test_average_checkpoints_is_the_mean_of_float_weights(tmp_path):
    a = {"w": torch.tensor([1.0, 2.0]), "step": torch.tensor([1])}
    b = {"w": torch.tensor([3.0, 6.0]), "step": torch.tensor([2])}
    folders = [str(write_checkpoint(tmp_path, 1, a)), str(write_checkpoint(tmp_path, 2, b))]
    averaged = average_checkpoints(folders)
    torch.testing.assert_close(averaged["w"], torch.tensor([2.0, 4.0]))
    assert averaged["step"].item() == 2  # integers come from the last checkpoint
    write_checkpoint(tmp_path, 3, {"v": torch.zeros(2)})
    with pytest.raises(ValueError, match="other weights"):
        average_checkpoints([folders[0], str(tmp_path / "checkpoint-3")])
    with pytest.raises(ValueError, match="at least one"):
        average_checkpoints([])


def test_trainer_uses_the_balanced_sampler_when_given_weights(tmp_path):
    from meamtm import MeamtmForAudioClassification
    from meamtm.training.trainer import MeamtmTrainer

    from ..conftest import tiny_config

    args = MeamtmTrainingArguments(output_dir=str(tmp_path), report_to="none", seed=5, eval_strategy="no")
    model = MeamtmForAudioClassification(tiny_config(num_labels=2))
    dataset = [{"input_values": np.zeros(10, np.float32), "labels": 0}] * 4
    trainer = MeamtmTrainer(model=model, args=args, train_dataset=dataset, sampling_weights=np.array([1.0, 1, 1, 3]))
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, BalancedSampler) and sampler.seed == 5
    plain = MeamtmTrainer(model=model, args=args, train_dataset=dataset)
    assert not isinstance(plain._get_train_sampler(), BalancedSampler)


def test_trainer_groups_by_the_length_column_without_decoding(tmp_path):
    from datasets import Dataset
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from meamtm import MeamtmForAudioClassification
    from meamtm.training.trainer import MeamtmTrainer

    from ..conftest import tiny_config

    def refuse(batch):
        raise AssertionError("the sampler decoded audio")

    lengths = torch.randperm(48).add(1).mul(100).tolist()
    dataset = Dataset.from_dict({"audio": ["a.wav"] * 48, "label": [0] * 48, "length": lengths})
    dataset.set_transform(refuse)
    args = MeamtmTrainingArguments(
        output_dir=str(tmp_path), report_to="none", eval_strategy="no", per_device_train_batch_size=4,
        train_sampling_strategy="group_by_length",
    )
    model = MeamtmForAudioClassification(tiny_config(num_labels=2))
    sampler = MeamtmTrainer(model=model, args=args, train_dataset=dataset)._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    order = list(sampler)
    assert sorted(order) == list(range(48))
    # transformers sorts mega-batches of 3 batches by length (the longest clip of all is swapped to the front).
    for start in range(0, 48, 12):
        run = [lengths[index] for index in order[start + 1 : start + 12]]
        assert run == sorted(run, reverse=True)


def test_evaluation_keeps_the_data_set_order_when_training_groups_by_length(tmp_path):
    from datasets import Dataset
    from torch.utils.data import SequentialSampler

    from meamtm import MeamtmForAudioClassification
    from meamtm.training.trainer import MeamtmTrainer, MeamtmTrainingArguments

    from ..conftest import tiny_config

    args = MeamtmTrainingArguments(output_dir=str(tmp_path), train_sampling_strategy="group_by_length", report_to="none",
                                    eval_strategy="no")
    trainer = MeamtmTrainer(model=MeamtmForAudioClassification(tiny_config(num_labels=2)), args=args)
    eval_dataset = Dataset.from_dict({"input_values": [[0.0] * n for n in (5, 1, 3)], "label": [0, 1, 0]})
    sampler = trainer._get_eval_sampler(eval_dataset)
    assert isinstance(sampler, SequentialSampler) and list(sampler) == [0, 1, 2]


def sam_setup(tmp_path, rho, **overrides):
    from meamtm import MeamtmForAudioClassification
    from meamtm.training.trainer import MeamtmTrainer

    from ..conftest import tiny_config

    torch.manual_seed(0)
    model = MeamtmForAudioClassification(tiny_config(num_labels=3, **overrides))
    args = MeamtmTrainingArguments(output_dir=str(tmp_path), report_to="none", eval_strategy="no", sam_rho=rho)
    trainer = MeamtmTrainer(model=model, args=args)
    trainer.current_gradient_accumulation_steps = 1  # what the training loop sets before its steps
    generator = torch.Generator().manual_seed(1)
    inputs = {"input_values": torch.randn(4, 4000, generator=generator), "labels": torch.tensor([0, 1, 2, 1])}
    return model, trainer, inputs


def gradient_at(model, inputs, shift=None):
    """The batch's gradient at the model's weights (moved by `shift`, a list matching `parameters()`)."""
    model.train()
    model.zero_grad(set_to_none=True)
    parameters = list(model.parameters())
    weights = [parameter.detach().clone() for parameter in parameters]
    with torch.no_grad():
        for parameter, step in zip(parameters, shift or []):
            parameter.add_(step)
    model(**inputs).loss.backward()
    gradients = [None if p.grad is None else p.grad.clone() for p in parameters]
    with torch.no_grad():
        for parameter, weight in zip(parameters, weights):
            parameter.copy_(weight)
    model.zero_grad(set_to_none=True)
    return gradients


def test_sharpness_aware_step_takes_the_gradient_at_the_ascended_weights(tmp_path):
    rho = 0.5
    model, trainer, inputs = sam_setup(tmp_path, rho)
    before = [p.detach().clone() for p in model.parameters()]
    plain = gradient_at(model, inputs)
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in plain if g is not None]))
    ascent = [torch.zeros_like(p) if g is None else g * rho / norm for p, g in zip(model.parameters(), plain)]
    expected = gradient_at(model, inputs, ascent)

    loss = trainer.training_step(model, inputs)

    assert torch.allclose(loss, model(**inputs).loss.detach(), atol=1e-6)  # the loss at w, not at the ascent
    for parameter, weight in zip(model.parameters(), before):
        assert torch.equal(parameter, weight)  # the weights are back where they were
    compared = 0
    for parameter, want, at_w in zip(model.parameters(), expected, plain):
        if want is None:
            assert parameter.grad is None or not parameter.grad.any()
            continue
        torch.testing.assert_close(parameter.grad, want, rtol=1e-4, atol=1e-6)
        compared += int(not torch.allclose(want, at_w, rtol=1e-3, atol=1e-7))
    assert compared > 0  # the ascent changed the gradient, so the comparison could fail


def test_sharpness_aware_minimisation_off_is_the_plain_step(tmp_path):
    model, trainer, inputs = sam_setup(tmp_path, 0.0)
    plain = gradient_at(model, inputs)
    trainer.training_step(model, inputs)
    for parameter, want in zip(model.parameters(), plain):
        if want is not None:
            torch.testing.assert_close(parameter.grad, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(sam_rho=-0.1), "--sam_rho -0.1 is not a radius >= 0"),
        (dict(sam_rho=float("inf")), "--sam_rho inf is not a radius"),
        (dict(sam_rho=0.05, gradient_accumulation_steps=4), "--gradient_accumulation_steps 1"),
    ],
)
def test_sharpness_aware_settings_that_cannot_work_are_refused(tmp_path, values, message):
    with pytest.raises(ValueError, match=message):
        MeamtmTrainingArguments(output_dir=str(tmp_path), report_to="none", **values)
