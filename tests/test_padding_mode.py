"""`padding_mode`: AST's fixed window ("max_length", unchanged) beside the batch's longest clip ("longest")."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from torch._dynamo.utils import counters

from meamtm import MeamtmConfig, MeamtmForAudioClassification, MeamtmModel
from meamtm.inference.export import bucket_num_samples, export_onnx, onnx_logits
from meamtm.modeling_meamtm import MeamtmEmbeddings, real_patches

from .conftest import WITHOUT_MEAMTM, tiny_config


REFERENCE = Path(__file__).parent / "data" / "max_length_reference.pt"


def classifier(**overrides):
    return MeamtmForAudioClassification(tiny_config(num_labels=3, **overrides)).eval()


def mixed_batch(config, lengths):
    """Zero-padded waveforms `(batch, max(lengths))` and their mask."""
    generator = torch.Generator().manual_seed(0)
    width = max(lengths)
    waveforms = torch.randn(len(lengths), width, generator=generator) * 0.1
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return waveforms * mask, mask


def tiny_lengths(config):
    """A clip shorter than one analysis window, one shorter than one patch, two in between, one past the window."""
    patch_samples = (config.patch_size - 1) * config.hop_length + config.win_length
    return [config.win_length - 50, patch_samples - 300, 3000, 6100, config.num_samples + 2000]


def test_padding_mode_is_validated():
    with pytest.raises(ValueError, match="padding_mode='shortest'"):
        tiny_config(padding_mode="shortest")
    assert MeamtmConfig().padding_mode == "max_length"


def test_patch_columns_of_a_clip():
    config = tiny_config()  # patch 8, stride 6, 10 columns
    assert [config.num_patch_columns_of(frames) for frames in (0, 1, 6, 7, 54, 55, 64, 1000)] == [1, 1, 1, 2, 9, 10, 10, 10]
    assert config.num_frames_of_columns(10) == 62 <= config.max_length


@pytest.mark.parametrize("padding_mode", ["max_length", "longest"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_a_clip_gives_the_same_logits_alone_and_in_a_mixed_length_batch(padding_mode, pooling, attn_implementation):
    model = classifier(padding_mode=padding_mode, pooling=pooling, attn_implementation=attn_implementation)
    lengths = tiny_lengths(model.config)
    waveforms, mask = mixed_batch(model.config, lengths)
    with torch.no_grad():
        together = model(waveforms, attention_mask=mask).logits
        for row, length in enumerate(lengths):
            alone = model(waveforms[row : row + 1, :length]).logits
            torch.testing.assert_close(together[row : row + 1], alone, atol=2e-5, rtol=1e-5)


def test_longest_cuts_the_spectrogram_to_whole_patch_columns_of_the_longest_clip():
    model = MeamtmModel(tiny_config(padding_mode="longest")).eval()
    config = model.config
    waveforms, mask = mixed_batch(config, [3000, 6100])
    with torch.no_grad():
        output = model(waveforms, attention_mask=mask)
        # Padding past the longest clip (to the window) changes nothing.
        padded = torch.nn.functional.pad(waveforms, (0, config.num_samples - waveforms.shape[1]))
        padded_mask = torch.nn.functional.pad(mask, (0, config.num_samples - mask.shape[1]))
        torch.testing.assert_close(model(padded, attention_mask=padded_mask).last_hidden_state, output.last_hidden_state)
    frames = config.num_frames_of(6100)  # 36
    columns = config.num_patch_columns_of(frames)  # 6
    assert model.frontend(waveforms, mask.sum(-1)).shape[1] == config.num_frames_of_columns(columns)
    assert output.last_hidden_state.shape[1] == 2 + config.patch_grid[0] * columns


def test_real_patches_marks_columns_whose_first_frame_is_audio():
    config = tiny_config()  # win 400, hop 160, stride 6: 6 frames per column
    lengths = torch.tensor([100, 400 + 160 * 5, 400 + 160 * 6, 400 + 160 * 60])  # 0, 6, 7, 61 frames
    mask = real_patches(config, lengths, config.num_frames_of_columns(10)).view(4, config.patch_grid[0], 10)
    assert mask.all(dim=1).eq(mask.any(dim=1)).all()  # whole columns
    assert mask[:, 0].sum(-1).tolist() == [1, 1, 2, 10]


def test_changing_padded_samples_changes_nothing_in_longest_mode():
    model = classifier(padding_mode="longest", pooling="mean")
    waveforms, mask = mixed_batch(model.config, [2500, 7000])
    noisy = waveforms + (1 - mask) * torch.randn_like(waveforms)  # padding no longer zero
    with torch.no_grad():
        torch.testing.assert_close(model(noisy, attention_mask=mask).logits, model(waveforms, attention_mask=mask).logits)


def test_masked_mean_pooling_ignores_padded_patches():
    model = MeamtmModel(tiny_config(padding_mode="longest", pooling="mean")).eval()
    waveforms, mask = mixed_batch(model.config, [2500, 7000])
    with torch.no_grad():
        output = model(waveforms, attention_mask=mask)
    real = real_patches(model.config, mask.sum(-1), model.config.num_frames_of_columns(
        (output.last_hidden_state.shape[1] - 2) // model.config.patch_grid[0]))
    assert not real[0].all() and real[1].all()
    patches = output.last_hidden_state[0, 2:]
    torch.testing.assert_close(output.pooler_output[0], patches[real[0]].mean(0))
    assert not torch.allclose(output.pooler_output[0], patches.mean(0))


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_full_window_clips_run_the_max_length_graph_in_longest_mode(pooling, attn_implementation, monkeypatch):
    """A batch in which no patch is padding costs what "max_length" costs: no attention mask, a plain mean, the
    positional embeddings as they are, and the same outputs to the bit."""
    fixed = classifier(pooling=pooling, attn_implementation=attn_implementation)
    longest = classifier(pooling=pooling, attn_implementation=attn_implementation, padding_mode="longest")
    longest.load_state_dict(fixed.state_dict())
    window = fixed.config.num_samples
    waveforms, mask = mixed_batch(fixed.config, [window, window, window])
    masks, selected = [], []
    for layer in longest.meamtm.layers:
        layer.register_forward_pre_hook(lambda module, args: masks.append(args[1]))
    first_columns = MeamtmEmbeddings.first_columns
    monkeypatch.setattr(MeamtmEmbeddings, "first_columns", lambda *args: selected.append(args) or first_columns(*args))
    with torch.no_grad():
        expected = fixed(waveforms, attention_mask=mask, output_hidden_states=True)
        for inputs in ({"attention_mask": mask}, {}):
            output = longest(waveforms, output_hidden_states=True, **inputs)
            assert torch.equal(output.logits, expected.logits)
            assert all(torch.equal(ours, theirs) for ours, theirs in zip(output.hidden_states, expected.hidden_states))
    assert masks == [None] * 2 * len(longest.meamtm.layers) and not selected
    # One clip shorter by a patch column takes the masked graph, the same model otherwise.
    waveforms, mask = mixed_batch(fixed.config, [window, window - fixed.config.time_stride * fixed.config.hop_length * 2])
    with torch.no_grad():
        longest(waveforms, attention_mask=mask)
    assert masks[-1] is not None


def reference_inputs():
    """The inputs of tests/data/make_max_length_reference.py."""
    torch.manual_seed(0)
    waveforms = torch.randn(3, 9000) * 0.1
    mask = torch.ones(3, 9000, dtype=torch.long)
    mask[1, 5000:] = 0
    mask[2, 300:] = 0
    return waveforms * mask, mask


@pytest.mark.parametrize(
    "name, overrides, train",
    [
        ("cls", {}, False),
        ("mean", {"pooling": "mean"}, False),
        ("eager", {"attn_implementation": "eager"}, False),
        (
            "train_patchout_specaugment",
            {"patchout_time": 0.3, "patchout_frequency": 0.2, "patchout_unstructured": 0.1, "freq_mask_param": 8,
             "time_mask_param": 16, "pooling": "mean"},
            True,
        ),
        ("train_mixup_spectrogram", {"mixup_alpha": 0.3, "pooling": "mean"}, True),
    ],
)
def test_max_length_mode_is_bit_for_bit_the_graph_it_was(name, overrides, train):
    """Outputs stored by tests/data/make_max_length_reference.py, run on the code whose AST graph this holds.

    One thread, as the reference was made: with several, the split of a matrix product's sums can change with
    the shapes (patchout's), and with it the last bit.
    """
    reference = torch.load(REFERENCE)
    waveforms, mask = reference_inputs()
    model = MeamtmForAudioClassification(tiny_config(num_labels=3, **overrides))
    model.load_state_dict(reference["state"])
    model.train(train)
    torch.manual_seed(2)
    labels = torch.tensor([0, 1, 2]) if "mixup" in name else None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            result = model(waveforms, attention_mask=mask, labels=labels)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(result.logits, reference[name])
    if labels is not None:
        assert torch.equal(result.loss, reference[name + "_loss"])


def test_the_mode_survives_save_and_load_and_can_be_overridden(tmp_path):
    model = classifier(padding_mode="longest")
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["padding_mode"] == "longest"
    loaded = MeamtmForAudioClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.padding_mode == "longest"
    waveforms, mask = mixed_batch(model.config, [2500, 7000])
    with torch.no_grad():
        torch.testing.assert_close(loaded(waveforms, attention_mask=mask).logits, model(waveforms, attention_mask=mask).logits)
    fixed = MeamtmForAudioClassification.from_pretrained(tmp_path, padding_mode="max_length").eval()
    assert fixed.config.padding_mode == "max_length"
    with pytest.raises(ValueError, match="padding_mode='nearest'"):
        MeamtmForAudioClassification.from_pretrained(tmp_path, padding_mode="nearest")


@pytest.mark.slow
def test_trust_remote_code_loads_the_mode_without_meamtm(tmp_path):
    model = classifier(padding_mode="longest")
    model.save_pretrained(tmp_path / "checkpoint")
    waveforms, mask = mixed_batch(model.config, [2500, 7000])
    torch.save((waveforms, mask), tmp_path / "inputs.pt")
    script = WITHOUT_MEAMTM + textwrap.dedent(
        f"""
        import torch
        from transformers import AutoModelForAudioClassification
        path = {str(tmp_path / "checkpoint")!r}
        model = AutoModelForAudioClassification.from_pretrained(path, trust_remote_code=True).eval()
        fixed = AutoModelForAudioClassification.from_pretrained(path, trust_remote_code=True, padding_mode="max_length")
        waveforms, mask = torch.load({str(tmp_path / "inputs.pt")!r})
        with torch.no_grad():
            logits = model(waveforms, attention_mask=mask).logits
        torch.save((model.config.padding_mode, fixed.config.padding_mode, logits), {str(tmp_path / "out.pt")!r})
        """
    )
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    mode, overridden, logits = torch.load(tmp_path / "out.pt")
    assert (mode, overridden) == ("longest", "max_length")
    with torch.no_grad():
        torch.testing.assert_close(logits, model(waveforms, attention_mask=mask).logits)


def test_patchout_drops_columns_of_the_grid_present_and_its_mask_follows():
    config = tiny_config(padding_mode="longest", patchout_time=0.4, patchout_frequency=0.2)
    model = MeamtmModel(config).train()
    waveforms, mask = mixed_batch(config, [2500, 5000])  # 5000 samples: 29 frames, 5 of 10 columns
    columns = config.num_patch_columns_of(config.num_frames_of(5000))
    rows, dropped_columns, _ = config.patchout_dropped_for((config.patch_grid[0], columns))
    assert (columns, dropped_columns) == (5, 2)
    output = model(waveforms, attention_mask=mask, output_hidden_states=True)
    kept = (config.patch_grid[0] - rows) * (columns - dropped_columns)
    assert output.last_hidden_state.shape == (2, 2 + kept, config.hidden_size)
    patchout = model.embeddings.patchout
    tokens = torch.arange(2 + config.patch_grid[0] * columns, dtype=torch.float32)[None, :, None].expand(2, -1, 1)
    patch_mask = torch.rand(2, config.patch_grid[0] * columns) < 0.5
    kept_tokens, kept_mask = patchout(tokens, patch_mask)
    indices = kept_tokens[:, 2:, 0].long() - 2
    assert torch.equal(kept_mask, patch_mask.gather(1, indices))
    assert all((row % columns).unique().numel() == columns - dropped_columns for row in indices)


@pytest.mark.parametrize("mixup_level", ["waveform", "spectrogram"])
def test_longest_mode_trains_with_spec_augment_patchout_and_mixup(mixup_level):
    config = tiny_config(
        num_labels=3, padding_mode="longest", pooling="mean", patchout_time=0.3, patchout_unstructured=0.2,
        freq_mask_param=6, time_mask_param=10, mixup_alpha=0.3, mixup_level=mixup_level,
    )
    model = MeamtmForAudioClassification(config).train()
    waveforms, mask = mixed_batch(config, tiny_lengths(config)[:4])
    output = model(waveforms, attention_mask=mask, labels=torch.tensor([0, 1, 2, 0]))
    assert torch.isfinite(output.loss)
    output.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def batch_of(config, lengths, width):
    waveforms, mask = mixed_batch(config, lengths)
    padding = width - waveforms.shape[1]
    return torch.nn.functional.pad(waveforms, (0, padding)), torch.nn.functional.pad(mask, (0, padding))


@pytest.mark.slow
def test_one_exported_graph_takes_two_lengths_in_longest_mode(tmp_path):
    pytest.importorskip("onnxruntime")
    model = classifier(padding_mode="longest", stft_backend="fft")
    path = str(tmp_path / "model.onnx")
    program = export_onnx(model, path)
    widths = set()
    for lengths in ([3000, 1200, 300], [model.config.num_samples, 6100]):
        width = bucket_num_samples(model.config, max(lengths))
        widths.add(width)
        waveforms, mask = batch_of(model.config, lengths, max(width, max(lengths)))
        waveforms, mask = waveforms[:, :width], mask[:, :width]  # samples past the last frame are not read
        with torch.no_grad():
            expected = model(waveforms, attention_mask=mask).logits
            torch.testing.assert_close(program.module()(waveforms, mask), expected, atol=1e-4, rtol=0)
        onnx = onnx_logits(path, waveforms.numpy(), mask.numpy())
        assert abs(onnx - expected.numpy()).max() < 1e-4
    assert len(widths) == 2


def test_bucket_num_samples_is_whole_patch_columns():
    config = tiny_config(padding_mode="longest")
    frequency, time = config.patch_grid
    samples = [bucket_num_samples(config, length) for length in (100, 3000, 6100, config.num_samples)]
    columns = [config.num_patch_columns_of(config.num_frames_of(width)) for width in samples]
    assert columns == [2, 3, 6, time] and samples[-1] == config.longest_num_samples
    for length, width in zip((100, 3000, 6100), samples):
        assert config.num_frames_of(width) >= config.num_frames_of(length)  # every frame of the clip fits


@pytest.mark.slow
def test_torch_compile_does_not_recompile_per_length():
    model = classifier(padding_mode="longest", stft_backend="fft")
    compiled = torch.compile(model, backend="eager")
    torch._dynamo.reset()
    counters["stats"].clear()
    graphs = []
    window = model.config.num_samples
    for lengths in (
        [3000, 1200], [9000, 300], [4100, 4000], [7000, 2000], [5500, 800], [window, 5000], [window + 900, 10],
        [window, window],  # no padded patch: eager mode takes max_length's graph; the compiled graph stays one
    ):
        waveforms, mask = mixed_batch(model.config, lengths)
        with torch.no_grad():
            torch.testing.assert_close(
                compiled(waveforms, attention_mask=mask).logits, model(waveforms, attention_mask=mask).logits
            )
        graphs.append(counters["stats"]["unique_graphs"])
    # The first length compiles a static graph; the second makes the length dynamic, for every later one that
    # fits the grid. A batch whose frames fill the grid's last column adds one graph (the cap at the grid).
    assert graphs[:5] == [1, 2, 2, 2, 2] and graphs[-1] <= 3


def test_the_feature_extractor_pads_a_batch_to_its_longest_clip_and_the_model_pays_only_that():
    from meamtm import MeamtmFeatureExtractor

    model = classifier(padding_mode="longest")
    extractor = MeamtmFeatureExtractor.from_model_config(model.config)
    clips = [torch.randn(length).numpy() * 0.1 for length in (2500, 4800, 300)]
    batch = extractor(clips, sampling_rate=16000, return_tensors="pt")
    assert batch["input_values"].shape == (3, 4800)
    with torch.no_grad():
        output = model(**batch, output_hidden_states=True)
        columns = model.config.num_patch_columns_of(model.config.num_frames_of(4800))
        assert output.hidden_states[0].shape[1] == 2 + model.config.patch_grid[0] * columns
        for row, clip in enumerate(clips):
            alone = model(**extractor(clip, sampling_rate=16000, return_tensors="pt")).logits
            torch.testing.assert_close(output.logits[row : row + 1], alone, atol=2e-5, rtol=1e-5)


def test_the_mode_can_be_switched_on_a_built_model():
    model = classifier()
    waveforms, mask = mixed_batch(model.config, [2500, 7000])
    with torch.no_grad():
        fixed = model(waveforms, attention_mask=mask).logits
        model.config.padding_mode = "longest"
        longest = model(waveforms, attention_mask=mask).logits
        alone = model(waveforms[:1, :2500]).logits
    torch.testing.assert_close(longest[:1], alone, atol=2e-5, rtol=1e-5)
    assert not torch.allclose(longest[:1], fixed[:1], atol=1e-4)  # AST's padding attended; now it does not


def test_agreement_script_reports_both_modes_on_real_clips(fsdd_dir, tmp_path):
    import importlib.util

    from .conftest import REPO

    spec = importlib.util.spec_from_file_location("padding_mode_agreement", REPO / "scripts" / "padding_mode_agreement.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    window = tiny_config().num_samples / 16000
    report = script.main([
        "--geometry", "tiny", "--clips_per_group", "3", "--group_seconds", "0", str(window), "--fsdd_dir", str(fsdd_dir),
        "--output_dir", str(tmp_path),
    ])
    groups = report["result"]["groups"]
    short, full = groups["FSDD recording"], groups[f"{window:g} s"]
    assert short["share_of_window"] < 1 and short["max_abs_logit_difference"] > 1e-4  # AST attended to padding
    assert full["max_abs_logit_difference"] < 1e-5 and full["top1_agreement"] == 1.0  # nothing to drop
    assert json.loads((tmp_path / "padding_mode_agreement.json").read_text())["result"] == report["result"]
    assert "random" in (tmp_path / "padding_mode_agreement.md").read_text()
