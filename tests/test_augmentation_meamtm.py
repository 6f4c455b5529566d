"""Patchout, SpecAugment, mixup, filter-bank augmentation, pitch shifts and Freq-MixStyle: active only in training, per example,
on the input's device. Test-time warping, frame shifts and tempi: in evaluation only, the mean prediction over the
views."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from transformers.testing_utils import CaptureLogger

from meamtm import MeamtmConfig, MeamtmForAudioClassification
from meamtm.augmentation_meamtm import (
    MeamtmChannelDropout,
    MeamtmFilterBankAugment,
    MeamtmFreqMixStyle,
    MeamtmMixing,
    MeamtmMixup,
    MeamtmPatchout,
    MeamtmPitchShift,
    MeamtmSpecAugment,
    average_test_time_predictions,
    shift_pitch,
    vtlp_positions,
    warp_filter_bank,
)
from meamtm.frontend_meamtm import MeamtmFrontend, dct_projection, power_of, tempo_frames
from meamtm.modeling_meamtm import MeamtmDropPath
from meamtm.modeling_meamtm import logger as modeling_logger

from .conftest import tiny_config


AUGMENTED = dict(
    patchout_time=0.4,
    patchout_frequency=0.2,
    patchout_unstructured=0.25,
    freq_mask_param=12,
    time_mask_param=20,
    mixup_alpha=0.3,
)


def waveforms(batch_size=4, num_samples=9000):
    return torch.randn(batch_size, num_samples) * 0.1


def classifier(**overrides):
    return MeamtmForAudioClassification(tiny_config(num_labels=3, **overrides))


def patch_tokens(config, batch_size):
    """Tokens whose value is their position, so the output shows which ones were kept."""
    positions = torch.arange(config.num_patches + 2, dtype=torch.float32)
    return positions[None, :, None].expand(batch_size, -1, 4).clone()


@pytest.mark.parametrize(
    "overrides",
    [
        dict(patchout_time=0.4),
        dict(patchout_frequency=0.2),
        dict(patchout_unstructured=0.5),
        dict(patchout_time=0.4, patchout_frequency=0.2, patchout_unstructured=0.25),
    ],
)
def test_token_counts_after_patchout_match_the_config(overrides):
    model = classifier(**overrides).train()
    config = model.config
    frequency, time = config.patch_grid  # (5, 10) for the tiny config
    rows = round(overrides.get("patchout_frequency", 0) * frequency)
    columns = round(overrides.get("patchout_time", 0) * time)
    kept = (frequency - rows) * (time - columns)
    kept -= round(overrides.get("patchout_unstructured", 0) * kept)
    assert config.num_training_patches == kept < config.num_patches
    trained = model(waveforms(), output_hidden_states=True).hidden_states
    assert all(state.shape == (4, kept + 2, config.hidden_size) for state in trained)
    evaluated = model.eval()(waveforms(), output_hidden_states=True).hidden_states
    assert evaluated[0].shape == (4, config.num_patches + 2, config.hidden_size)


def test_structured_patchout_drops_whole_rows_and_columns_per_example_and_keeps_special_tokens():
    config = tiny_config(patchout_time=0.4, patchout_frequency=0.2)
    frequency, time = config.patch_grid
    tokens = patch_tokens(config, batch_size=16)
    kept, _ = MeamtmPatchout(config).train()(tokens)
    assert kept.shape == (16, config.num_training_patches + 2, 4)
    assert (kept[:, :2, 0] == torch.tensor([0.0, 1.0])).all()
    patterns = set()
    for example in kept[:, 2:, 0].long() - 2:
        rows, columns = set((example // time).tolist()), set((example % time).tolist())
        assert len(rows) == frequency - 1 and len(columns) == time - 4
        assert set(example.tolist()) == {row * time + column for row in rows for column in columns}
        assert example.tolist() == sorted(example.tolist())  # patches keep their order
        patterns.add(tuple(example.tolist()))
    assert len(patterns) > 1  # a new draw for each example


def test_unstructured_patchout_keeps_distinct_patches_differently_per_example():
    config = tiny_config(patchout_unstructured=0.5)
    kept = MeamtmPatchout(config).train()(patch_tokens(config, batch_size=8))[0][:, 2:, 0]
    assert all(len(set(row.tolist())) == config.num_training_patches == 25 for row in kept)
    assert len({tuple(row.tolist()) for row in kept}) > 1


def test_patchout_draws_on_the_tokens_device():
    """On the meta device a mask drawn on the CPU could not index the tokens."""
    config = tiny_config(patchout_time=0.4, patchout_unstructured=0.3)
    tokens = torch.empty(3, config.num_patches + 2, 8, device="meta")
    kept, _ = MeamtmPatchout(config).train()(tokens)
    assert kept.device.type == "meta" and kept.shape == (3, config.num_training_patches + 2, 8)


def test_spec_augment_masks_one_band_and_one_span_per_example_with_silence():
    config = tiny_config(freq_mask_param=12, time_mask_param=20)
    augment = MeamtmSpecAugment(config).train()
    spectrogram = torch.randn(32, config.max_length, config.num_mel_bins)
    masked = augment(spectrogram) != spectrogram
    silence = -config.spectrogram_mean / (2 * config.spectrogram_std)  # normalised zero log-mel (AST padding)
    assert torch.all(augment(torch.full_like(spectrogram, silence)) == silence)
    frames = masked.all(dim=2)  # frames masked across all bins: the time span
    bins = masked.all(dim=1)  # bins masked across all frames: the frequency band
    assert torch.equal(masked, frames[:, :, None] | bins[:, None, :])
    assert (frames.sum(1) < 20).all() and (bins.sum(1) < 12).all()
    for spans in (frames, bins):  # contiguous, and different across examples
        starts = spans.float().argmax(1)
        assert all(row[start : start + row.sum()].all() for row, start in zip(spans, starts))
        assert len({tuple(row.tolist()) for row in spans}) > 1
    assert augment.eval()(spectrogram) is spectrogram
    on_meta = augment.train()(torch.empty(2, config.max_length, config.num_mel_bins, device="meta"))
    assert on_meta.device.type == "meta"


def test_spec_augment_fills_each_channel_with_its_own_silence():
    config = tiny_config(normalization="global+per_clip", freq_mask_param=12, time_mask_param=20)
    spectrogram = torch.full((6, config.max_length, config.num_mel_bins, 2), 5.0)
    masked = MeamtmSpecAugment(config).train()(spectrogram)
    silence = -config.spectrogram_mean / (2 * config.spectrogram_std)
    changed = masked != 5.0
    assert torch.equal(changed[..., 0], changed[..., 1])  # one mask for both channels
    assert changed.any(dim=(1, 2, 3)).all()  # every example masked
    assert torch.all(masked[..., 0][changed[..., 0]] == torch.tensor(silence, dtype=masked.dtype))
    assert torch.all(masked[..., 1][changed[..., 1]] == 0)


def test_augmentation_modules_disappear_when_off_and_add_no_parameters():
    plain, augmented = classifier(), classifier(**AUGMENTED)
    assert isinstance(plain.meamtm.embeddings.patchout, nn.Identity)
    assert isinstance(plain.meamtm.spec_augment, nn.Identity)
    assert plain.mixup is None
    assert isinstance(augmented.meamtm.embeddings.patchout, MeamtmPatchout)
    assert isinstance(augmented.meamtm.spec_augment, MeamtmSpecAugment)
    assert isinstance(augmented.mixup, MeamtmMixup)
    assert plain.state_dict().keys() == augmented.state_dict().keys()


def test_evaluation_outputs_are_bit_identical_to_the_plain_model():
    plain = classifier().eval()
    augmented = classifier(**AUGMENTED)
    augmented.load_state_dict(plain.state_dict())
    inputs, labels = waveforms(), torch.tensor([0, 1, 2, 1])
    augmented.train()(inputs, labels=labels).loss.backward()  # a training step in between changes nothing
    augmented.eval()
    with torch.no_grad():
        expected = plain(inputs, labels=labels, output_hidden_states=True)
        actual = augmented(inputs, labels=labels, output_hidden_states=True)
    torch.testing.assert_close(actual.logits, expected.logits, atol=0, rtol=0)
    torch.testing.assert_close(actual.loss, expected.loss, atol=0, rtol=0)
    for left, right in zip(actual.hidden_states, expected.hidden_states):
        torch.testing.assert_close(left, right, atol=0, rtol=0)


def test_training_changes_outputs_only_when_augmenting():
    inputs = waveforms()
    plain = classifier()
    with torch.no_grad():
        torch.testing.assert_close(plain.train()(inputs).logits, plain.eval()(inputs).logits, atol=0, rtol=0)
        masked = classifier(freq_mask_param=12, time_mask_param=20)
        masked.load_state_dict(plain.state_dict())
        assert not torch.equal(masked.train()(inputs).logits, plain(inputs).logits)


def fixed_mixing(level="spectrogram"):
    return MeamtmMixing(weights=torch.tensor([0.9, 0.6, 0.75, 1.0]), partners=torch.tensor([2, 0, 3, 1]), level=level)


def test_mixed_single_label_targets_sum_to_one_and_the_loss_is_the_mixed_cross_entropy():
    mixing, labels = fixed_mixing(), torch.tensor([0, 1, 2, 2])
    targets = MeamtmMixup.mix_targets(labels, mixing, "single_label_classification", 3)
    torch.testing.assert_close(targets.sum(-1), torch.ones(4))
    torch.testing.assert_close(targets[0], torch.tensor([0.9, 0.0, 0.1]))
    torch.testing.assert_close(targets[1], torch.tensor([0.4, 0.6, 0.0]))
    config, logits = tiny_config(num_labels=3), torch.randn(4, 3)
    mixup = MeamtmMixup(tiny_config(num_labels=3, mixup_alpha=0.3))
    cross_entropy = nn.functional.cross_entropy
    each = mixing.weights * cross_entropy(logits, labels, reduction="none")
    each += (1 - mixing.weights) * cross_entropy(logits, labels[mixing.partners], reduction="none")
    torch.testing.assert_close(mixup.loss(logits, labels, mixing, config), each.mean())
    # Trainer's gradient accumulation passes the item count of all micro-batches: the loss is a sum over it.
    num_items = torch.tensor(8)
    torch.testing.assert_close(mixup.loss(logits, labels, mixing, config, num_items_in_batch=num_items), each.sum() / 8)


def test_mixed_multi_label_targets_and_bce():
    mixing = fixed_mixing()
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    targets = MeamtmMixup.mix_targets(labels, mixing, "multi_label_classification", 3)
    torch.testing.assert_close(targets[0], torch.tensor([0.9, 0.0, 1.0]))
    config, logits = tiny_config(num_labels=3, problem_type="multi_label_classification"), torch.randn(4, 3)
    mixup = MeamtmMixup(tiny_config(num_labels=3, mixup_alpha=0.3))
    expected = nn.functional.binary_cross_entropy_with_logits(logits, targets)
    torch.testing.assert_close(mixup.loss(logits, labels, mixing, config), expected)


def test_mixup_draws_per_example_weights_and_partners_within_the_batch():
    mixup = MeamtmMixup(tiny_config(mixup_alpha=0.3, mixup_probability=0.5))
    mixing = mixup.draw(64, torch.device("cpu"))
    assert mixing.weights.device == mixing.partners.device == torch.device("cpu")
    assert sorted(mixing.partners.tolist()) == list(range(64))  # each micro-batch mixes within itself
    assert ((mixing.weights >= 0.5) & (mixing.weights <= 1)).all()
    unmixed = (mixing.weights == 1).float().mean()
    assert 0.2 < unmixed < 0.8 and mixing.weights.unique().numel() > 10


def test_ignored_labels_cannot_be_mixed():
    with pytest.raises(ValueError, match="ignored examples"):
        MeamtmMixup.mix_targets(torch.tensor([0, -100, 1, 2]), fixed_mixing(), "single_label_classification", 3)


@pytest.mark.parametrize("level", ["spectrogram", "waveform"])
def test_the_model_mixes_inputs_at_the_configured_level(level, monkeypatch):
    model = classifier(mixup_alpha=0.3, mixup_level=level).train()
    mixing = fixed_mixing(level)
    monkeypatch.setattr(model.mixup, "draw", lambda batch_size, device: mixing)
    seen = {}
    model.meamtm.embeddings.register_forward_pre_hook(lambda module, args: seen.update(spectrogram=args[0]))
    inputs, lengths = waveforms(4, 9000), torch.tensor([9000, 4000, 9000, 2000])
    mask = (torch.arange(9000)[None, :] < lengths[:, None]).long()
    inputs = inputs * mask
    labels = torch.tensor([0, 1, 2, 2])
    output = model(inputs, attention_mask=mask, labels=labels)
    frontend = model.meamtm.frontend
    if level == "spectrogram":
        expected = mixing.mix(frontend(inputs, lengths))
    else:  # a mix is as long as the longer of its two clips
        expected = frontend(mixing.mix(inputs), torch.maximum(lengths, lengths[mixing.partners]))
    torch.testing.assert_close(seen["spectrogram"], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(output.loss, model.mixup.loss(output.logits, labels, mixing, model.config))


def test_training_without_labels_does_not_mix_and_says_so():
    model = classifier(mixup_alpha=0.3).train()
    inputs = waveforms()
    with CaptureLogger(modeling_logger) as captured:
        unlabelled = model(inputs).logits
    assert "no labels, so nothing is mixed" in captured.out
    torch.testing.assert_close(unlabelled, model.eval()(inputs).logits, atol=0, rtol=0)


def test_autocast_with_patchout_keeps_the_frontend_float32_and_the_loss_finite():
    model = classifier(**AUGMENTED).train()
    dtypes = []
    model.meamtm.frontend.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(waveforms(), labels=torch.tensor([0, 1, 2, 0]), output_hidden_states=True)
    assert dtypes == [torch.float32]
    assert output.logits.dtype == torch.bfloat16  # the encoder and head do run in bfloat16
    assert output.hidden_states[0].shape[1] == model.config.num_training_patches + 2
    assert torch.isfinite(output.loss)
    output.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_gradient_checkpointing_with_patchout_gives_the_same_gradients():
    """Patchout draws before the checkpointed layers, so their recomputation sees the same tokens."""
    plain = classifier(patchout_time=0.4, patchout_unstructured=0.3)
    checkpointed = classifier(patchout_time=0.4, patchout_unstructured=0.3)
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.activation_checkpointing_enable()
    inputs, labels = waveforms(), torch.tensor([1, 2, 0, 1])
    for model in (plain, checkpointed):
        torch.manual_seed(1)
        model.train()(inputs, labels=labels).loss.backward()
    for (name, left), right in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(left.grad, right.grad, msg=name)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(patchout_time=1.0), "patchout_time=1.0 must be a fraction in [0, 1)"),
        (dict(patchout_unstructured=-0.1), "patchout_unstructured=-0.1"),
        (dict(patchout_frequency=0.95, max_length=64, num_mel_bins=32), "drops every patch"),
        (dict(freq_mask_param=40), "freq_mask_param=40 must be between 0 (off) and num_mel_bins=32"),
        (dict(time_mask_param=-1), "time_mask_param=-1"),
        (dict(mixup_alpha=-0.3), "mixup_alpha=-0.3 must be >= 0"),
        (dict(mixup_probability=0.0), "mixup_probability=0.0"),
        (dict(mixup_level="label"), "mixup_level='label'"),
        (dict(vtlp_max_warp=1.0), "vtlp_max_warp=1.0 must be in [0, 1)"),
        (dict(mel_tilt_db=-3), "mel_tilt_db=-3 must be >= 0"),
        (dict(mel_band_stop_width=40), "mel_band_stop_width=40 must be between 0 (off) and num_mel_bins=32"),
        (dict(mel_band_stop_width=4, mel_band_stop_db=0), "attenuates nothing"),
        (dict(mel_low_pass_probability=1.5), "mel_low_pass_probability=1.5 must be in [0, 1]"),
        (dict(mel_low_pass_min_cutoff=0), "mel_low_pass_min_cutoff=0 must be in (0, 1]"),
        (dict(mel_low_pass_min_cutoff=1.2), "mel_low_pass_min_cutoff=1.2 must be in (0, 1]"),
        (dict(mel_low_pass_probability=0.5, mel_low_pass_db=0), "mel_low_pass_db=0 attenuates nothing"),
        (dict(pitch_shift_semitones=13), "pitch_shift_semitones=13 must be in [0, 12]"),
        (dict(pitch_shift_semitones=-2), "pitch_shift_semitones=-2 must be in [0, 12]"),
        (dict(freq_mixstyle_probability=1.5), "freq_mixstyle_probability=1.5 must be in [0, 1]"),
        (dict(freq_mixstyle_probability=0.4, freq_mixstyle_alpha=0), "freq_mixstyle_alpha=0 must be positive"),
        (dict(normalization="global+per_clip", channel_dropout=1.5), "channel_dropout=1.5 must be in [0, 1]"),
        (dict(channel_dropout=0.5), "channel_dropout=0.5 drops one of two spectrogram channels, and normalization='global' makes one"),
        (dict(test_time_max_warp=1.2), "test_time_max_warp=1.2 must be in [0, 1)"),
        (dict(test_time_max_warp=-0.1), "test_time_max_warp=-0.1 must be in [0, 1)"),
        (dict(test_time_warps=4), "test_time_warps=4 must be an odd number of at least 3"),
        (dict(test_time_warps=1), "test_time_warps=1 must be an odd number of at least 3"),
        (dict(test_time_max_shift=-1), "test_time_max_shift=-1 must be between 0 (off) and patch_size - time_stride = 2"),
        (dict(test_time_max_shift=3), "test_time_max_shift=3 must be between 0 (off) and patch_size - time_stride = 2"),
        (dict(test_time_max_shift=1, time_stride=8), "test_time_max_shift=1 must be between 0 (off) and patch_size - time_stride = 0"),
        (dict(test_time_shifts=1), "test_time_shifts=1 must be at least 2"),
        (dict(test_time_max_shift=2, test_time_shifts=4), "test_time_shifts=4 must be at least 2 (the clip as it is and a shifted copy) and at most test_time_max_shift"),
        (dict(tempo_perturbation=1.0), "tempo_perturbation=1.0 must be in [0, 1)"),
        (dict(tempo_perturbation=-0.1), "tempo_perturbation=-0.1 must be in [0, 1)"),
        (dict(test_time_max_tempo=1.0), "test_time_max_tempo=1.0 must be in [0, 1)"),
        (dict(test_time_max_tempo=-0.2), "test_time_max_tempo=-0.2 must be in [0, 1)"),
        (dict(test_time_tempos=4), "test_time_tempos=4 must be an odd number of at least 3"),
        (dict(test_time_tempos=1), "test_time_tempos=1 must be an odd number of at least 3"),
    ],
)
def test_invalid_augmentation_settings_raise_value_error(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        tiny_config(**overrides)


def test_ast_base_patchout_geometry():
    """PaSST's setting on AST's 12 x 101 grid: 4 rows and 40 columns dropped, 488 of 1212 patches kept."""
    config = MeamtmConfig(patchout_frequency=1 / 3, patchout_time=0.4)
    assert config.patchout_dropped == (4, 40, 0)
    assert config.num_training_patches == 8 * 61 == 488


FILTER_BANK_AUGMENTED = dict(vtlp_max_warp=0.1, mel_tilt_db=10, mel_band_stop_width=6, mel_low_pass_probability=0.5)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(vtlp_max_warp=0.1),
        dict(mel_tilt_db=10),
        dict(mel_band_stop_width=6),
        dict(mel_low_pass_probability=1.0, mel_low_pass_min_cutoff=0.1),
        FILTER_BANK_AUGMENTED,
    ],
)
def test_filter_bank_augment_gives_each_example_its_own_bank_in_training_only(overrides):
    config = tiny_config(**overrides)
    augment = MeamtmFilterBankAugment(config).train()
    filters = MeamtmFrontend(config).mel_filters.expand(8, -1, -1)
    banks = augment(filters)
    assert banks.shape == filters.shape and torch.isfinite(banks).all()
    assert all(not torch.equal(banks[0], bank) for bank in banks[1:])  # a draw per example
    assert augment.eval()(filters) is filters
    torch.manual_seed(3)
    first = augment.train()(filters)
    torch.manual_seed(3)
    torch.testing.assert_close(augment(filters), first, atol=0, rtol=0)  # deterministic under a seed


def test_filter_bank_augment_draws_on_the_filters_device():
    config = tiny_config(**FILTER_BANK_AUGMENTED)
    on_meta = MeamtmFilterBankAugment(config).train()(torch.empty(2, 257, config.num_mel_bins, device="meta"))
    assert on_meta.device.type == "meta" and on_meta.shape == (2, 257, config.num_mel_bins)


def test_vtlp_keeps_the_ends_of_the_frequency_axis_and_is_monotonic():
    factors = torch.tensor([0.9, 0.95, 1.0, 1.05, 1.1])
    positions = vtlp_positions(factors, 257)
    assert torch.equal(positions[2], torch.arange(257, dtype=torch.float32))  # factor 1: exactly in place
    assert (positions[:, 0] == 0).all()
    torch.testing.assert_close(positions[:, -1], torch.full((5,), 256.0))  # the Nyquist bin stays
    assert (positions.diff(dim=1) > 0).all()
    low = slice(0, 100)  # below the boundary (0.6 of Nyquist, shrunk by the factor) the warp is linear
    torch.testing.assert_close(positions[:, low], factors[:, None] * torch.arange(100.0))


def test_vtlp_moves_a_filter_by_the_warp_factor():
    """A bin at frequency f counts toward the filter centred at about factor * f."""
    config = tiny_config(num_mel_bins=32)
    filters = MeamtmFrontend(config).mel_filters
    warped = warp_filter_bank(filters, torch.tensor([1.0, 1.1]))
    torch.testing.assert_close(warped[0], filters, atol=0, rtol=0)
    band = 20
    centre = (filters[:, band] * torch.arange(257.0)).sum() / filters[:, band].sum()
    moved = (warped[1, :, band] * torch.arange(257.0)).sum() / warped[1, :, band].sum()
    assert moved == pytest.approx(centre.item() / 1.1, rel=0.02)


def test_filter_gains_tilt_and_band_stop_stay_within_their_bounds():
    augment = MeamtmFilterBankAugment(tiny_config(mel_tilt_db=10)).train()
    gains = augment.gains_db(64, 32, torch.device("cpu"))
    spans = gains[:, -1] - gains[:, 0]
    assert (spans.abs() <= 10).all() and (spans > 0).any() and (spans < 0).any()
    torch.testing.assert_close(gains.diff(dim=1), spans[:, None].expand(-1, 31) / 31)  # linear across filters
    notch = MeamtmFilterBankAugment(tiny_config(mel_band_stop_width=6, mel_band_stop_db=20)).train()
    gains = notch.gains_db(64, 32, torch.device("cpu"))
    assert (gains <= 0).all() and (gains >= -20).all()
    stopped = gains < 0
    assert (stopped.sum(1) <= 6).all() and stopped.any()
    for row in stopped:  # one contiguous band
        if row.any():
            start = int(row.float().argmax())
            assert row[start : start + int(row.sum())].all()


def test_low_pass_cuts_the_bins_above_a_drawn_cutoff_by_its_depth_and_leaves_the_rest():
    """A tone above an example's cutoff loses exactly `mel_low_pass_db` dB in every band, one below it nothing; the
    cutoffs lie in `[mel_low_pass_min_cutoff, 1]` of the Nyquist frequency, and about the drawn share is cut."""
    config = tiny_config(mel_low_pass_probability=0.5, mel_low_pass_min_cutoff=0.6, mel_low_pass_db=60)
    augment = MeamtmFilterBankAugment(config).train()
    filters = MeamtmFrontend(config).mel_filters
    num_bins = filters.shape[0]
    torch.manual_seed(0)
    gains = augment.low_pass_gains(4000, num_bins, torch.device("cpu"))
    cut = gains < 1
    assert gains.unique().tolist() == pytest.approx([1e-6, 1.0])
    assert 0.45 < cut.any(1).float().mean() < 0.55
    first_cut = cut.float().argmax(1)[cut.any(1)] / (num_bins - 1)
    assert first_cut.min() > 0.6 and first_cut.max() <= 1
    assert all(row[int(row.float().argmax()) :].all() for row in cut if row.any())  # everything above the cutoff

    torch.manual_seed(1)
    banks = augment(filters.expand(16, -1, -1))
    torch.manual_seed(1)
    drawn = augment.low_pass_gains(16, num_bins, torch.device("cpu"))
    for tone_bin in (int(0.3 * (num_bins - 1)), int(0.95 * (num_bins - 1))):
        power = torch.zeros(num_bins)
        power[tone_bin] = 1.0
        plain = power @ filters
        heard = power @ banks
        bands = plain > 0
        expected = torch.where(drawn[:, tone_bin : tone_bin + 1] < 1, 1e-6, 1.0) * plain
        torch.testing.assert_close(heard[:, bands], expected[:, bands])
        if tone_bin < 0.6 * (num_bins - 1):
            torch.testing.assert_close(heard, plain.expand(16, -1), atol=0, rtol=0)
    assert (drawn[:, int(0.95 * (num_bins - 1))] < 1).any() and (drawn[:, int(0.95 * (num_bins - 1))] == 1).any()


def test_filter_bank_augment_disappears_when_off_and_evaluation_is_bit_identical():
    plain = classifier().eval()
    augmented = classifier(**FILTER_BANK_AUGMENTED)
    assert isinstance(plain.meamtm.frontend.filter_bank_augment, nn.Identity)
    assert isinstance(augmented.meamtm.frontend.filter_bank_augment, MeamtmFilterBankAugment)
    assert plain.state_dict().keys() == augmented.state_dict().keys()
    augmented.load_state_dict(plain.state_dict())
    inputs, labels = waveforms(), torch.tensor([0, 1, 2, 1])
    augmented.train()(inputs, labels=labels).loss.backward()
    augmented.eval()
    with torch.no_grad():
        torch.testing.assert_close(augmented(inputs).logits, plain(inputs).logits, atol=0, rtol=0)
        assert not torch.equal(augmented.train()(inputs).logits, plain(inputs).logits)


@pytest.mark.parametrize("backend", ["conv", "fft"])
def test_training_with_filter_bank_augment_has_finite_gradients_on_both_back_ends(backend):
    model = classifier(stft_backend=backend, trainable_mel=True, **FILTER_BANK_AUGMENTED).train()
    inputs = torch.cat([waveforms(3), torch.zeros(1, 9000)])  # digital silence included
    model(inputs, labels=torch.tensor([0, 1, 2, 1])).loss.backward()
    gradients = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in gradients)
    assert model.meamtm.frontend.mel_filters.grad.abs().sum() > 0


def test_drop_path_rises_linearly_over_depth_and_disappears_when_off():
    plain = classifier(num_hidden_layers=3)
    assert all(isinstance(layer.drop_path, nn.Identity) for layer in plain.meamtm.layers)
    deep = classifier(num_hidden_layers=3, drop_path_rate=0.2)
    rates = [getattr(layer.drop_path, "p", 0.0) for layer in deep.meamtm.layers]
    assert rates == pytest.approx([0.0, 0.1, 0.2])
    assert plain.state_dict().keys() == deep.state_dict().keys()


def test_drop_path_skips_branches_per_example_in_training_only_and_is_seeded():
    drop = MeamtmDropPath(0.5)
    branch = torch.ones(64, 3, 2)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        first = drop.train()(branch)
        torch.manual_seed(1)
        again = drop(branch)
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    per_example = first[:, 0, 0]
    assert set(per_example.tolist()) == {0.0, 2.0}  # skipped, or kept and scaled by 1 / (1 - p)
    assert torch.equal(first, per_example[:, None, None].expand_as(first))  # one draw per example
    assert drop.eval()(branch) is branch


def test_drop_path_keeps_evaluation_bit_identical_and_gradients_finite():
    plain = classifier().eval()
    dropped = classifier(drop_path_rate=0.3)
    dropped.load_state_dict(plain.state_dict())
    inputs, labels = waveforms(), torch.tensor([0, 1, 2, 1])
    loss = dropped.train()(inputs, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in dropped.parameters() if p.grad is not None)
    with torch.no_grad():
        torch.testing.assert_close(dropped.eval()(inputs).logits, plain(inputs).logits, atol=0, rtol=0)


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_invalid_drop_path_rate_raises_value_error(rate):
    with pytest.raises(ValueError, match=rf"drop_path_rate={rate} must be in \[0, 1\)"):
        tiny_config(drop_path_rate=rate)


def coloured_features(batch_size=6, num_frames=40, num_bins=32):
    """Log-mel-like features whose bands have a different mean and spread in every clip."""
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(batch_size, 1, num_bins, generator=generator) * 2
    spreads = torch.rand(batch_size, 1, num_bins, generator=generator) + 0.2
    return means + spreads * torch.randn(batch_size, num_frames, num_bins, generator=generator)


def band_statistics(features, real_frames):
    """Each band's mean and (population) standard deviation over each clip's real frames."""
    stats = [(clip[:n].mean(dim=0), clip[:n].std(dim=0, unbiased=False)) for clip, n in zip(features, real_frames)]
    return torch.stack([m for m, _ in stats]), torch.stack([s for _, s in stats])


def test_freq_mixstyle_gives_each_clip_a_mix_of_two_clips_band_statistics():
    config = tiny_config(freq_mixstyle_probability=1.0)
    features = coloured_features()
    real_frames = torch.tensor([40, 30, 25, 40, 12, 33])
    mixstyle = MeamtmFreqMixStyle(config).train()
    mixed = mixstyle(features, real_frames)
    means, deviations = band_statistics(features, real_frames)
    mixed_means, mixed_deviations = band_statistics(mixed, real_frames)
    changed = 0
    for i in range(len(features)):
        # Some clip j and one weight l per example explain every band's new mean and spread at once.
        weights = [(mixed_means[i] - means[j]) / (means[i] - means[j]) for j in range(len(features)) if j != i]
        partner_found = any(
            torch.allclose(w, w.mean().expand_as(w), atol=1e-3)
            and torch.allclose(mixed_deviations[i], w.mean() * deviations[i] + (1 - w.mean()) * deviations[j], atol=1e-3)
            for j, w in zip([j for j in range(len(features)) if j != i], weights)
        )
        unchanged = torch.allclose(mixed[i], features[i], atol=1e-5)  # partnered with itself
        assert partner_found or unchanged
        changed += not unchanged
        # Padding frames are left as they were.
        assert torch.equal(mixed[i, real_frames[i]:], features[i, real_frames[i]:])
    assert changed >= 3
    assert mixstyle.eval()(features, real_frames) is features


def test_freq_mixstyle_ignores_padding_and_is_seeded():
    config = tiny_config(freq_mixstyle_probability=0.5)
    mixstyle = MeamtmFreqMixStyle(config).train()
    features, real_frames = coloured_features(), torch.tensor([40, 30, 25, 40, 12, 33])
    repadded = features.clone()
    for clip, n in zip(repadded, real_frames):
        clip[n:] = 100.0  # loud padding must not move the statistics
    with torch.random.fork_rng():
        torch.manual_seed(5)
        first = mixstyle(features, real_frames)
        torch.manual_seed(5)
        again = mixstyle(repadded, real_frames)
    for clip, other, n in zip(first, again, real_frames):
        torch.testing.assert_close(clip[:n], other[:n], atol=1e-6, rtol=1e-6)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        torch.testing.assert_close(mixstyle(features, real_frames), first, atol=0, rtol=0)


def test_freq_mixstyle_mixes_only_the_drawn_fraction_of_examples():
    mixstyle = MeamtmFreqMixStyle(tiny_config(freq_mixstyle_probability=0.25)).train()
    features = coloured_features(batch_size=400, num_frames=8)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        mixed = mixstyle(features, torch.full((400,), 8))
    changed = (mixed - features).abs().amax(dim=(1, 2)) > 1e-5
    assert 60 <= int(changed.sum()) <= 140  # about a quarter (fewer: a clip may draw itself as its partner)


def test_freq_mixstyle_disappears_when_off_keeps_evaluation_bit_identical_and_gradients_finite():
    plain = classifier().eval()
    mixed = classifier(freq_mixstyle_probability=1.0, trainable_mel=True)
    assert plain.meamtm.frontend.freq_mixstyle is None
    assert isinstance(mixed.meamtm.frontend.freq_mixstyle, MeamtmFreqMixStyle)
    state = plain.state_dict()
    assert state.keys() == classifier(freq_mixstyle_probability=1.0).state_dict().keys()
    mixed.load_state_dict({**mixed.state_dict(), **state})
    inputs = torch.cat([waveforms(3) * torch.tensor([[1.0], [0.1], [3.0]]), torch.zeros(1, 9000)])  # and silence
    labels = torch.tensor([0, 1, 2, 1])
    loss = mixed.train()(inputs, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in mixed.parameters() if p.grad is not None)
    assert mixed.meamtm.frontend.mel_filters.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(mixed.eval()(inputs).logits, plain(inputs).logits, atol=0, rtol=0)


TEST_TIME_WARPED = dict(test_time_max_warp=0.15, test_time_warps=7)


def assert_training_ignores_test_time_augmentation(augmented, plain, inputs):
    """The same draws give the augmented model in training the same loss as the plain one (same weights)."""
    labels = torch.tensor([0, 1, 2, 1])
    torch.manual_seed(3)
    trained = augmented.train()(inputs, labels=labels).loss
    torch.manual_seed(3)
    torch.testing.assert_close(trained, plain.train()(inputs, labels=labels).loss, atol=0, rtol=0)


def test_test_time_warp_factors_are_evenly_spaced_around_exactly_one():
    assert tiny_config().test_time_warp_factors == []
    factors = tiny_config(**TEST_TIME_WARPED).test_time_warp_factors
    assert len(factors) == 7 and factors[3] == 1.0
    torch.testing.assert_close(torch.tensor(factors, dtype=torch.float64), torch.linspace(0.85, 1.15, 7, dtype=torch.float64))
    assert tiny_config(test_time_max_warp=0.1, test_time_warps=3).test_time_warp_factors == [0.9, 1.0, 1.1]


def test_a_warp_of_one_is_the_plain_frontend_and_a_warp_uses_the_warped_bank_on_both_back_ends():
    inputs, lengths = waveforms(3), torch.tensor([9000, 6000, 4000])
    for backend in ("fft", "conv"):
        frontend = MeamtmFrontend(tiny_config(stft_backend=backend, padding_mode="longest"))
        plain = frontend(inputs, lengths)
        torch.testing.assert_close(frontend(inputs, lengths, 1.0), plain, atol=0, rtol=0)
        warped = frontend(inputs, lengths, 0.9)
        assert not torch.allclose(warped, plain)
        # The same as a frontend whose own bank is the warped one (the dense product: trainable filters).
        reference = MeamtmFrontend(tiny_config(stft_backend=backend, padding_mode="longest", trainable_mel=True))
        with torch.no_grad():
            reference.mel_filters.copy_(warp_filter_bank(frontend.mel_filters, torch.tensor([0.9]))[0])
            torch.testing.assert_close(warped, reference(inputs, lengths), atol=1e-5, rtol=1e-5)


def test_test_time_warping_averages_the_warped_predictions_in_evaluation_only():
    plain = classifier().eval()
    warped = classifier(**TEST_TIME_WARPED)
    warped.load_state_dict(plain.state_dict())
    inputs, mask = waveforms(), torch.ones(4, 9000, dtype=torch.long)
    mask[1, 5000:] = 0
    with torch.no_grad():
        expected = torch.stack([
            plain.classifier(plain.meamtm(inputs, attention_mask=mask, filter_bank_warp=factor).pooler_output).softmax(-1)
            for factor in warped.config.test_time_warp_factors
        ]).mean(0)
        out = warped.eval()(inputs, attention_mask=mask, output_hidden_states=True)
        torch.testing.assert_close(out.logits.softmax(-1), expected, atol=1e-6, rtol=1e-5)
        reference = plain(inputs, attention_mask=mask, output_hidden_states=True)
        assert not torch.allclose(out.logits.softmax(-1), reference.logits.softmax(-1), atol=1e-6)
        # Hidden states are the plain bank's; the loss is the cross-entropy of the mean prediction.
        torch.testing.assert_close(out.hidden_states[-1], reference.hidden_states[-1], atol=0, rtol=0)
        labels = torch.tensor([0, 1, 2, 1])
        loss = warped(inputs, attention_mask=mask, labels=labels).loss
        torch.testing.assert_close(loss, nn.functional.nll_loss(expected.log(), labels), atol=1e-5, rtol=1e-5)
        # A clip gives the same prediction alone as in the padded batch.
        alone = warped(inputs[1:2, :5000]).logits
        torch.testing.assert_close(alone, out.logits[1:2], atol=1e-5, rtol=1e-5)
    assert_training_ignores_test_time_augmentation(warped, plain, inputs)


TEST_TIME_SHIFTED = dict(test_time_max_shift=2, test_time_shifts=3)  # 0, 1 and 2 frames: the most a tiny model takes


def test_test_time_frame_shifts_are_evenly_spaced_from_zero():
    assert tiny_config().test_time_frame_shifts == []
    assert tiny_config(**TEST_TIME_SHIFTED).test_time_frame_shifts == [0, 1, 2]
    # AST's geometry (16-frame patches every 10 frames) takes up to 6.
    assert MeamtmConfig(test_time_max_shift=6).test_time_frame_shifts == [0, 3, 6]
    assert MeamtmConfig(test_time_max_shift=4, test_time_shifts=5).test_time_frame_shifts == [0, 1, 2, 3, 4]
    assert MeamtmConfig(test_time_max_shift=5, test_time_shifts=2).test_time_frame_shifts == [0, 5]


@pytest.mark.parametrize("normalization", ["global", "per_clip", "global+per_clip"])
@pytest.mark.parametrize("padding_mode", ["max_length", "longest"])
def test_a_frame_shift_is_the_log_mel_of_the_clip_delayed_by_as_many_hops(normalization, padding_mode):
    config = tiny_config(normalization=normalization, padding_mode=padding_mode)
    frontend = MeamtmFrontend(config).eval()
    # Clips that start with more than a window of digital silence: delaying them by k hops gives k silent
    # frames and then the same frames, which is what the shift makes without a second STFT.
    inputs, lengths = waveforms(3, 8000), torch.tensor([8000, 6000, 3000])
    inputs[:, :500] = 0
    inputs = inputs * (torch.arange(8000)[None, :] < lengths[:, None])
    for shift in range(1, config.patch_size - config.time_stride + 1):
        delay = shift * config.hop_length
        delayed = nn.functional.pad(inputs, (delay, 0))
        expected = frontend(delayed, lengths + delay)
        shifted = frontend(inputs, lengths, shift=shift)
        frames = shifted.shape[1]  # a "longest" batch keeps the plain view's patch columns
        torch.testing.assert_close(shifted, expected[:, :frames], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(frontend(inputs, lengths, shift=2), frontend(inputs, lengths))


def test_test_time_shifts_and_warps_average_every_pair_in_evaluation_only():
    plain = classifier().eval()
    augmented = classifier(**TEST_TIME_SHIFTED, test_time_max_warp=0.1)
    augmented.load_state_dict(plain.state_dict())
    inputs, mask = waveforms(), torch.ones(4, 9000, dtype=torch.long)
    mask[1, 5000:] = 0
    with torch.no_grad():
        expected = torch.stack([
            plain.classifier(plain.meamtm(inputs, attention_mask=mask, filter_bank_warp=factor, frame_shift=shift)
                             .pooler_output).softmax(-1)
            for shift in (0, 1, 2) for factor in (0.9, 1.0, 1.1)
        ]).mean(0)
        out = augmented.eval()(inputs, attention_mask=mask, output_hidden_states=True)
        torch.testing.assert_close(out.logits.softmax(-1), expected, atol=1e-6, rtol=1e-5)
        warped_only = classifier(test_time_max_warp=0.1)
        warped_only.load_state_dict(plain.state_dict())
        assert not torch.allclose(out.logits, warped_only.eval()(inputs, attention_mask=mask).logits, atol=1e-5)
        # Hidden states are those of the clip as it is, through the plain bank.
        reference = plain(inputs, attention_mask=mask, output_hidden_states=True)
        torch.testing.assert_close(out.hidden_states[-1], reference.hidden_states[-1], atol=0, rtol=0)
        alone = augmented(inputs[1:2, :5000]).logits
        torch.testing.assert_close(alone, out.logits[1:2], atol=1e-5, rtol=1e-5)
    assert_training_ignores_test_time_augmentation(augmented, plain, inputs)


def test_a_shifted_clip_gives_the_same_output_alone_as_in_a_longest_batch():
    """The largest shift moves a clip's last real frames to the end of its own last patch column, never into the next:
    lengths whose last frame falls at every phase of a column give the same logits alone and in a batch."""
    model = classifier(padding_mode="longest", pooling="mean", **TEST_TIME_SHIFTED).eval()
    config = model.config
    lengths = [config.win_length + (config.time_stride * 2 + phase) * config.hop_length for phase in range(config.time_stride)]
    inputs = waveforms(len(lengths), max(lengths) + 3000)
    mask = (torch.arange(inputs.shape[1])[None, :] < torch.tensor(lengths)[:, None]).long()
    with torch.no_grad():
        batch = model(inputs * mask, attention_mask=mask).logits
        for row, length in enumerate(lengths):
            alone = model(inputs[row : row + 1, :length]).logits
            torch.testing.assert_close(alone, batch[row : row + 1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="frame_shift=3 must be between 0 and patch_size - time_stride = 2"):
        model.meamtm(inputs, frame_shift=3)


TEST_TIME_TEMPI = dict(test_time_max_tempo=0.25, test_time_tempos=3)  # 0.75, 1.0 and 1.25


def test_test_time_tempi_are_evenly_spaced_around_exactly_one():
    assert tiny_config().test_time_tempo_factors == []
    assert tiny_config(**TEST_TIME_TEMPI).test_time_tempo_factors == [0.75, 1.0, 1.25]
    tempi = tiny_config(test_time_max_tempo=0.2, test_time_tempos=5).test_time_tempo_factors
    assert tempi[2] == 1.0
    expected = torch.linspace(0.8, 1.2, 5, dtype=torch.float64)
    torch.testing.assert_close(torch.tensor(tempi, dtype=torch.float64), expected)


@pytest.mark.parametrize("padding_mode", ["max_length", "longest"])
def test_a_tempo_view_reads_each_clips_frames_at_tempo_times_their_position(padding_mode):
    """Frame j of a clip at tempo t is its frame j * t, linearly interpolated (the last real frame held); a clip of
    n real frames keeps round(n / t) of them, the rest padding, and a "longest" batch's width follows its longest."""
    config = tiny_config(padding_mode=padding_mode)
    frontend = MeamtmFrontend(config).eval()
    lengths = torch.tensor([9000, 6000, 3000, 420])  # 54, 36, 17 and 1 frame(s) at 16 kHz
    inputs = waveforms(4, 9000) * (torch.arange(9000)[None, :] < lengths[:, None])
    plain = frontend(inputs, lengths)
    torch.testing.assert_close(frontend(inputs, lengths, tempo=1.0), plain, atol=0, rtol=0)
    frames = (lengths - config.win_length) // config.hop_length + 1
    for tempo in (0.75, 0.9, 1.25):
        stretched = frontend(inputs, lengths, tempo=tempo)
        kept = [min(math.floor(n / tempo + 0.5), config.max_length) for n in frames.tolist()]
        if padding_mode == "longest":
            assert stretched.shape[1] == config.num_frames_of_columns(config.num_patch_columns_of(max(kept)))
            kept = [min(k, stretched.shape[1]) for k in kept]  # the grid's 62 frames
        else:
            assert stretched.shape[1] == config.max_length
        assert torch.equal(tempo_frames(frames, tempo).clamp(max=stretched.shape[1]), torch.tensor(kept))
        for row, (n, k) in enumerate(zip(frames.tolist(), kept)):
            positions = torch.arange(k, dtype=torch.float64) * tempo
            source = plain[row, :n].double()
            expected = torch.stack([
                torch.from_numpy(np.interp(positions.numpy(), range(n), source[:, band].numpy()))
                for band in range(config.num_mel_bins)
            ], dim=-1)
            torch.testing.assert_close(stretched[row, :k].double(), expected, atol=1e-5, rtol=1e-5)
            assert torch.all(stretched[row, k:] == torch.tensor(config.silence_value, dtype=stretched.dtype))
    # A slower clip spans more frames, a faster one fewer (36 -> 48 and 29), at most max_length (54 -> 72 -> 64) and,
    # with "longest", the patch grid's 62.
    spans = [[int((frontend(inputs[row : row + 1], lengths[row : row + 1], tempo=tempo)[0] != config.silence_value)
                  .any(-1).sum()) for tempo in (0.75, 1.25)] for row in (0, 1)]
    assert spans == [[64 if padding_mode == "max_length" else 62, 43], [48, 29]]


def test_test_time_tempi_average_every_view_in_evaluation_only():
    plain = classifier(padding_mode="longest", normalization="global+per_clip").eval()
    augmented = classifier(padding_mode="longest", normalization="global+per_clip", **TEST_TIME_TEMPI,
                           **TEST_TIME_SHIFTED, test_time_max_warp=0.1)
    augmented.load_state_dict(plain.state_dict())
    inputs, mask = waveforms(), torch.ones(4, 9000, dtype=torch.long)
    mask[1, 5000:] = 0
    mask[2, 2500:] = 0
    with torch.no_grad():
        expected = torch.stack([
            plain.classifier(plain.meamtm(inputs, attention_mask=mask, filter_bank_warp=factor, frame_shift=shift,
                                          tempo=tempo).pooler_output).softmax(-1)
            for shift in (0, 1, 2) for factor in (0.9, 1.0, 1.1) for tempo in (0.75, 1.0, 1.25)
        ]).mean(0)
        out = augmented.eval()(inputs, attention_mask=mask, output_hidden_states=True)
        torch.testing.assert_close(out.logits.softmax(-1), expected, atol=1e-6, rtol=1e-5)
        without = classifier(padding_mode="longest", normalization="global+per_clip", **TEST_TIME_SHIFTED,
                             test_time_max_warp=0.1)
        without.load_state_dict(plain.state_dict())
        assert not torch.allclose(out.logits, without.eval()(inputs, attention_mask=mask).logits, atol=1e-5)
        # Hidden states are those of the clip as it is, at its own tempo.
        reference = plain(inputs, attention_mask=mask, output_hidden_states=True)
        torch.testing.assert_close(out.hidden_states[-1], reference.hidden_states[-1], atol=0, rtol=0)
        for row, length in ((1, 5000), (2, 2500)):
            alone = augmented(inputs[row : row + 1, :length]).logits
            torch.testing.assert_close(alone, out.logits[row : row + 1], atol=1e-5, rtol=1e-5)
    assert_training_ignores_test_time_augmentation(augmented, plain, inputs)


@pytest.mark.parametrize("padding_mode", ["max_length", "longest"])
def test_a_tempo_view_gives_a_clip_the_same_output_alone_as_in_a_batch(padding_mode):
    """Clips whose stretched frames end at every phase of a patch column, slowed past the batch's plain width or
    the window, and shorter than one analysis window: the same pooled output alone and in the padded batch."""
    model = classifier(padding_mode=padding_mode, normalization="global+per_clip").eval()
    config = model.config
    hop, stride = config.hop_length, config.time_stride
    lengths = [config.win_length + (stride * 3 + phase) * hop for phase in range(stride)]
    lengths += [config.win_length + 70 * hop, config.win_length // 2]
    inputs = waveforms(len(lengths), max(lengths))
    mask = (torch.arange(inputs.shape[1])[None, :] < torch.tensor(lengths)[:, None]).long()
    with torch.no_grad():
        for tempo in (0.75, 0.8, 1.2, 1.25):
            for shift in (0, 2):
                batch = model.meamtm(inputs * mask, attention_mask=mask, tempo=tempo, frame_shift=shift).pooler_output
                for row, length in enumerate(lengths):
                    alone = model.meamtm(inputs[row : row + 1, :length], tempo=tempo, frame_shift=shift).pooler_output
                    torch.testing.assert_close(alone, batch[row : row + 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding_mode", ["max_length", "longest"])
def test_tempo_perturbation_stretches_each_training_example_to_its_own_tempo(padding_mode):
    config = tiny_config(padding_mode=padding_mode, normalization="global+per_clip", tempo_perturbation=0.25)
    model = MeamtmForAudioClassification(tiny_config(**{**config.to_dict(), "num_labels": 3}))
    plain = classifier(padding_mode=padding_mode, normalization="global+per_clip")
    plain.load_state_dict(model.state_dict())
    inputs, mask = waveforms(), torch.ones(4, 9000, dtype=torch.long)
    mask[2, 5000:] = 0
    inputs = inputs * mask
    # Off in evaluation: bit-identical to the plain model.
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(inputs, attention_mask=mask).logits,
                                   plain.eval()(inputs, attention_mask=mask).logits, atol=0, rtol=0)
    # In training: each example's tempo drawn in [0.75, 1.25] from the global generator; what the model encodes is
    # the frontend's stretch of each clip to its own tempo, with the stretched clips' patch mask.
    seen = {}

    def keep(module, args, output):
        seen["spectrogram"] = output

    handle = model.meamtm.frontend.register_forward_hook(keep)
    torch.manual_seed(5)
    loss = model.train()(inputs, attention_mask=mask, labels=torch.tensor([0, 1, 2, 1])).loss
    handle.remove()
    torch.manual_seed(5)
    tempi = 1 + 0.25 * (2 * torch.rand(4) - 1)
    assert len(set(tempi.tolist())) == 4 and ((tempi >= 0.75) & (tempi <= 1.25)).all()
    frontend = model.meamtm.frontend
    for row in range(4):
        alone = frontend(inputs[row : row + 1], mask[row : row + 1].sum(-1), tempo=float(tempi[row]))
        width = min(alone.shape[1], seen["spectrogram"].shape[1])
        torch.testing.assert_close(seen["spectrogram"][row, :width], alone[0, :width], atol=1e-5, rtol=1e-5)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(grad).all() for grad in grads)
    # Deterministic under a seed, different from the plain model's loss.
    torch.manual_seed(5)
    again = model.train()(inputs, attention_mask=mask, labels=torch.tensor([0, 1, 2, 1])).loss
    torch.testing.assert_close(again, loss, atol=0, rtol=0)
    torch.manual_seed(5)
    assert not torch.allclose(plain.train()(inputs, attention_mask=mask, labels=torch.tensor([0, 1, 2, 1])).loss, loss)
    # A test-time view is refused in training, where the config draws the tempi.
    with pytest.raises(ValueError, match="tempo=0.9 is a test-time view"):
        model.train().meamtm(inputs, attention_mask=mask, tempo=0.9)


def test_a_tempo_view_cannot_be_traced():
    model = classifier(**TEST_TIME_TEMPI).eval()
    with pytest.raises(RuntimeError, match="Set model.config.test_time_max_tempo = 0 before exporting"):
        torch.jit.trace(lambda x: model(x).logits, (waveforms(2),), check_trace=False)


def test_averaged_multi_label_and_regression_predictions():
    logits = torch.tensor([[[40.0, -40.0, 0.0]], [[-40.0, -60.0, 2.0]]])  # 2 warps, 1 clip, 3 labels
    multi = average_test_time_predictions(logits, tiny_config(num_labels=3, problem_type="multi_label_classification"))
    assert torch.isfinite(multi).all()
    torch.testing.assert_close(multi.sigmoid(), logits.sigmoid().mean(0))
    single = average_test_time_predictions(logits, tiny_config(num_labels=3))
    torch.testing.assert_close(single.softmax(-1), logits.softmax(-1).mean(0))
    values = torch.tensor([[[1.5]], [[2.5]]])
    torch.testing.assert_close(average_test_time_predictions(values, tiny_config(num_labels=1)), torch.tensor([[2.0]]))


def test_channel_dropout_silences_one_whole_channel_of_the_drawn_examples_with_its_own_silence():
    config = tiny_config(normalization="global+per_clip", channel_dropout=0.5)
    spectrogram = torch.full((256, config.max_length, config.num_mel_bins, 2), 5.0)
    torch.manual_seed(0)
    dropped = MeamtmChannelDropout(config).train()(spectrogram)
    changed = (dropped != 5.0).flatten(1, 2)  # (batch, frames * bins, 2)
    whole = changed.all(dim=1)
    assert torch.equal(changed.any(dim=1), whole)  # a channel is silenced in every frame or in none
    assert not (whole[:, 0] & whole[:, 1]).any()  # never both
    global_only, per_clip_only = int(whole[:, 1].sum()), int(whole[:, 0].sum())
    assert 32 <= global_only <= 96 and 32 <= per_clip_only <= 96  # each about a quarter of 256
    assert 96 <= 256 - global_only - per_clip_only <= 160  # about half keep both
    silence = -config.spectrogram_mean / (2 * config.spectrogram_std)
    assert torch.all(dropped[whole[:, 0], ..., 0] == torch.tensor(silence, dtype=dropped.dtype))
    assert torch.all(dropped[whole[:, 1], ..., 1] == 0)
    torch.manual_seed(0)
    assert torch.equal(MeamtmChannelDropout(config).train()(spectrogram), dropped)  # seeded
    assert MeamtmChannelDropout(config).eval()(spectrogram) is spectrogram
    meta = MeamtmChannelDropout(config).train()(spectrogram[:4].to("meta"))
    assert meta.device.type == "meta" and meta.shape == spectrogram[:4].shape


def test_channel_dropout_disappears_when_off_keeps_evaluation_bit_identical_and_gradients_finite():
    plain = classifier(normalization="global+per_clip").eval()
    dropping = classifier(normalization="global+per_clip", channel_dropout=1.0, trainable_mel=True)
    assert isinstance(plain.meamtm.channel_dropout, nn.Identity)
    assert isinstance(dropping.meamtm.channel_dropout, MeamtmChannelDropout)
    state = plain.state_dict()
    assert state.keys() == classifier(normalization="global+per_clip", channel_dropout=0.5).state_dict().keys()
    dropping.load_state_dict({**dropping.state_dict(), **state})
    inputs = torch.cat([waveforms(3), torch.zeros(1, 9000)])  # and digital silence
    labels = torch.tensor([0, 1, 2, 1])
    loss = dropping.train()(inputs, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in dropping.parameters() if p.grad is not None)
    with torch.no_grad():
        assert not torch.equal(dropping(inputs).logits, plain(inputs).logits)  # training drops a channel
        torch.testing.assert_close(dropping.eval()(inputs).logits, plain(inputs).logits, atol=0, rtol=0)


PITCH_SHIFTED = dict(sampling_rate=8000, n_fft=256, win_length=200, hop_length=80, pitch_shift_semitones=3)


def voiced(f0, sampling_rate=8000, seconds=0.5, formant=700.0):
    """A held vowel: harmonics of `f0` under one formant-like peak, `(1, samples)`."""
    t = torch.arange(int(seconds * sampling_rate), dtype=torch.float64) / sampling_rate
    wave = sum(
        math.exp(-(((h * f0 - formant) / 400) ** 2)) * torch.sin(2 * math.pi * h * f0 * t)
        for h in range(1, int(sampling_rate / 2 / f0))
    )
    return (0.5 * wave / wave.abs().max()).float()[None]


def pitch_and_envelope_peak(power, sampling_rate=8000):
    """(pitch in Hz from the cepstral peak, frequency of the spectral envelope's peak) of `(frames, freq)` power."""
    bins = power.shape[-1]
    log_spectrum = power.double().mean(0).log()
    k = torch.arange(bins, dtype=torch.float64)[:, None]
    basis = torch.cos(math.pi * k * (2 * torch.arange(bins, dtype=torch.float64)[None, :] + 1) / (2 * bins))  # DCT-II
    cepstrum = basis @ log_spectrum
    # coefficient q repeats every sampling_rate / q Hz: a pitch between 80 and 400 Hz peaks at q = sampling_rate / f0
    low, high = sampling_rate // 400, sampling_rate // 80
    quefrency = low + int(cepstrum[low:high].argmax())
    envelope = torch.from_numpy(dct_projection(bins, 20)) @ log_spectrum
    return sampling_rate / quefrency, float(envelope.argmax()) * sampling_rate / (2 * (bins - 1))


@pytest.mark.parametrize("semitones", [-3, -1.5, 2, 3])
def test_pitch_shift_moves_the_harmonics_and_keeps_the_envelope(semitones):
    config = tiny_config(**PITCH_SHIFTED)
    frontend = MeamtmFrontend(config)
    power = power_of(frontend._squares_fft(voiced(150.0)))
    factor = 2 ** (semitones / 12)
    shifted = shift_pitch(power, torch.tensor([factor]), frontend.pitch_envelope, config.mel_floor * 1e-4)
    pitch, peak = pitch_and_envelope_peak(power[0])
    shifted_pitch, shifted_peak = pitch_and_envelope_peak(shifted[0])
    assert pitch == pytest.approx(150.0, rel=0.03)
    assert shifted_pitch == pytest.approx(150.0 * factor, rel=0.03)
    assert shifted_peak == pytest.approx(peak, abs=70)  # the formant stays (bins are 31 Hz apart)


def test_a_pitch_shift_of_one_gives_the_power_back_and_silence_stays_silence():
    config = tiny_config(**PITCH_SHIFTED)
    frontend = MeamtmFrontend(config)
    power = power_of(frontend._squares_fft(torch.cat([voiced(120.0), torch.zeros(1, 4000)])))
    floor = config.mel_floor * 1e-4
    same = shift_pitch(power, torch.ones(2), frontend.pitch_envelope, floor)
    torch.testing.assert_close(same, power.clamp_min(floor), rtol=1e-4, atol=0)  # the floor is all that changes
    shifted = shift_pitch(power, torch.full((2,), 1.2), frontend.pitch_envelope, floor)
    assert (shifted[1] < config.mel_floor * 1e-3).all()  # under the mel floor after any filter: still silence


def test_pitch_shift_draws_per_example_on_the_inputs_device_in_training_only_and_is_seeded():
    config = tiny_config(**PITCH_SHIFTED)
    shift = MeamtmPitchShift(config).train()
    factors = shift.draw(256, torch.device("cpu"))
    assert factors.min() >= 2 ** (-3 / 12) and factors.max() <= 2 ** (3 / 12)
    assert factors.unique().numel() == 256 and (factors < 1).any() and (factors > 1).any()
    assert shift.draw(4, torch.device("meta")).device.type == "meta"
    assert shift.eval().draw(4, torch.device("cpu")) is None
    frontend = MeamtmFrontend(config).train()
    clips = voiced(130.0).expand(4, -1)
    torch.manual_seed(5)
    features = frontend(clips)
    assert all(not torch.equal(features[0], row) for row in features[1:])  # one draw per example
    torch.manual_seed(5)
    torch.testing.assert_close(frontend(clips), features, atol=0, rtol=0)
    frontend.eval()
    features = frontend(clips)
    assert all(torch.equal(features[0], row) for row in features[1:])


def test_pitch_shift_disappears_when_off_and_keeps_evaluation_bit_identical():
    plain = classifier(**{**PITCH_SHIFTED, "pitch_shift_semitones": 0}).eval()
    shifting = classifier(**PITCH_SHIFTED)
    assert plain.meamtm.frontend.pitch_shift is None and not hasattr(plain.meamtm.frontend, "pitch_envelope")
    assert isinstance(shifting.meamtm.frontend.pitch_shift, MeamtmPitchShift)
    assert plain.state_dict().keys() == shifting.state_dict().keys()
    shifting.load_state_dict(plain.state_dict())
    inputs, labels = waveforms(4, 6000), torch.tensor([0, 1, 2, 1])
    shifting.train()(inputs, labels=labels).loss.backward()
    with torch.no_grad():
        torch.testing.assert_close(shifting.eval()(inputs).logits, plain(inputs).logits, atol=0, rtol=0)
        assert not torch.equal(shifting.train()(inputs).logits, plain(inputs).logits)


@pytest.mark.parametrize("backend", ["conv", "fft"])
def test_training_with_pitch_shift_has_finite_gradients_on_both_back_ends(backend):
    model = classifier(stft_backend=backend, trainable_mel=True, **PITCH_SHIFTED).train()
    inputs = torch.cat([waveforms(3, 6000), torch.zeros(1, 6000)])  # digital silence included
    model(inputs, labels=torch.tensor([0, 1, 2, 1])).loss.backward()
    gradients = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in gradients)
    assert model.meamtm.frontend.mel_filters.grad.abs().sum() > 0
