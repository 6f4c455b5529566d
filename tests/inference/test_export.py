"""Export of waveform -> logits (meamtm/export_meamtm.py, scripts/export_onnx.py): ONNX Runtime and torch.export
match the eager PyTorch model on real FSDD clips, for any batch size."""

import importlib.util

import numpy as np
import pytest
import torch

from meamtm import MeamtmFeatureExtractor, MeamtmForAudioClassification
from meamtm.inference.export import bucket_num_samples, export_onnx, export_program, onnx_logits

from ..conftest import REPO, tiny_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = MeamtmForAudioClassification(tiny_config(num_labels=10)).eval()
    path = tmp_path_factory.mktemp("tiny-classifier")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def reference(checkpoint):
    """The eager model as users run it (stft_backend="auto": FFT in float64 on CPU)."""
    return MeamtmForAudioClassification.from_pretrained(checkpoint).eval()


@pytest.fixture(scope="module")
def fsdd_batch(fsdd_clips_16k, reference):
    """Ten spoken digits, padded to the model's window with their masks (clips shorter than it keep padding)."""
    extractor = MeamtmFeatureExtractor.from_model_config(reference.config)
    window = reference.config.num_samples  # 0.65 s: the middle of each clip, where the digit is spoken
    clips = [clip[max(0, (len(clip) - window) // 2) :][:window] for clip in fsdd_clips_16k]
    batch = extractor(clips, sampling_rate=16000, padding="max_length", return_tensors="pt")
    assert (batch["attention_mask"].sum(-1) < reference.config.num_samples).any(), "some clips should be padded"
    return batch["input_values"], batch["attention_mask"].long()  # the exported signature takes int64


def expected_logits(reference, input_values, attention_mask):
    with torch.no_grad():
        return reference(input_values, attention_mask=attention_mask).logits.numpy()


@pytest.mark.parametrize(
    "backend, precision", [("fft", "float64"), ("conv", "float32")], ids=["fft-float64", "conv-float32"]
)
def test_onnx_runtime_matches_pytorch_on_real_clips_at_any_batch_size(
    checkpoint, reference, fsdd_batch, tmp_path, backend, precision
):
    model = MeamtmForAudioClassification.from_pretrained(checkpoint, stft_backend=backend, stft_precision=precision)
    path = str(tmp_path / "model.onnx")
    export_onnx(model, path)
    input_values, attention_mask = fsdd_batch
    expected = expected_logits(reference, input_values, attention_mask)
    assert np.abs(expected).max() > 0.1  # logits that differ between clips, not a constant
    for rows in (slice(0, 1), slice(0, 3), slice(None)):
        logits = onnx_logits(path, input_values[rows].numpy(), attention_mask[rows].numpy())
        np.testing.assert_allclose(logits, expected[rows], atol=1e-4, rtol=0)


def test_torch_export_program_matches_eager_with_a_dynamic_batch(checkpoint, reference, fsdd_batch):
    model = MeamtmForAudioClassification.from_pretrained(checkpoint, stft_backend="fft")
    program = export_program(model)
    exported = program.module()
    input_values, attention_mask = fsdd_batch
    expected = expected_logits(reference, input_values, attention_mask)
    for rows in (slice(0, 1), slice(2, 6), slice(None)):
        with torch.no_grad():
            logits = exported(input_values[rows], attention_mask[rows]).numpy()
        np.testing.assert_allclose(logits, expected[rows], atol=1e-5, rtol=0)
    # nnAudio's STFT.forward would store num_samples on the module; the frontend calls its convolutions instead.
    assert not hasattr(model.meamtm.frontend.stft, "num_samples")


def test_back_ends_that_cannot_export_or_run_are_refused_with_the_fix(checkpoint, tmp_path):
    auto = MeamtmForAudioClassification.from_pretrained(checkpoint)
    with pytest.raises(ValueError, match="stft_backend='fft' or 'conv' for export"):
        export_program(auto)
    conv64 = MeamtmForAudioClassification.from_pretrained(checkpoint, stft_backend="conv")
    with pytest.raises(ValueError, match="float64 Conv nodes"):
        export_onnx(conv64, str(tmp_path / "model.onnx"))
    stretched = MeamtmForAudioClassification.from_pretrained(checkpoint, stft_backend="fft", test_time_max_tempo=0.2)
    with pytest.raises(ValueError, match=r"test_time_max_tempo=0.2: .* Set model.config.test_time_max_tempo = 0"):
        export_program(stretched)


@pytest.mark.slow
def test_the_export_script_writes_checks_and_saves_both_graphs(checkpoint, fsdd_test_files, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("export_onnx", REPO / "scripts" / "export_onnx.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    onnx_path, program_path = tmp_path / "model.onnx", tmp_path / "model.pt2"
    argv = ["--model", str(checkpoint), "--output", str(onnx_path), "--torch_export", str(program_path)]
    difference = script.main([*argv, "--check_audio", *map(str, fsdd_test_files[:4])])
    assert 0 <= difference <= 1e-4
    assert "ONNX Runtime vs PyTorch on 4 clips" in capsys.readouterr().out
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    batch_dims = {value.type.tensor_type.shape.dim[0].dim_param for value in graph.input}
    assert len(batch_dims) == 1 and batch_dims != {""}  # one symbolic batch size shared by both inputs
    assert any(node.op_type == "DFT" for node in graph.node)  # the frontend is in the graph
    loaded = torch.export.load(str(program_path)).module()
    assert loaded(torch.zeros(3, 10480), torch.ones(3, 10480, dtype=torch.long)).shape == (3, 10)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        dict(normalization="global"),
        dict(normalization="per_clip_envelope"),
        # the fsdd recipe's model: 3 warped passes of 3 shifted log-mels
        dict(normalization="global+per_clip", test_time_max_warp=0.1, test_time_max_shift=2),
        # each clip cut to its loud part inside the graph
        dict(normalization="global+per_clip", trim_silence_db=30),
    ],
    ids=["global", "per_clip_envelope", "global+per_clip+test_time_augmentation", "trim_silence"],
)
def test_the_export_script_checks_a_longest_mode_model_at_two_widths(overrides, tmp_path, capsys):
    torch.manual_seed(0)
    path = tmp_path / "longest"
    config = tiny_config(num_labels=10, padding_mode="longest", **overrides)
    MeamtmForAudioClassification(config).save_pretrained(path)
    spec = importlib.util.spec_from_file_location("export_onnx", REPO / "scripts" / "export_onnx.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    difference = script.main(["--model", str(path), "--output", str(tmp_path / "model.onnx")])
    assert 0 <= difference <= 1e-4
    assert "ONNX Runtime vs PyTorch on 6 clips" in capsys.readouterr().out


def test_a_model_that_trims_silence_exports_and_trims_inside_the_graph(fsdd_clips_16k, tmp_path):
    torch.manual_seed(0)
    config = tiny_config(num_labels=10, padding_mode="longest", trim_silence_db=30, stft_backend="fft")
    model = MeamtmForAudioClassification(config).eval()
    # Each digit after 0.05-0.2 s of quiet (digital silence or a faint hiss), so every row is cut differently.
    generator = np.random.default_rng(0)
    clips = []
    for index, clip in enumerate(fsdd_clips_16k[:6]):
        lead = generator.normal(0, 1e-5 * (index % 2), int(16000 * (0.05 + 0.03 * index))).astype(np.float32)
        clips.append(np.concatenate([lead, clip])[: config.num_samples])
    extractor = MeamtmFeatureExtractor.from_model_config(config)
    width = bucket_num_samples(config, max(map(len, clips)))  # the widths a "longest" graph takes
    batch = extractor(clips, sampling_rate=16000, padding="max_length", max_length=width, return_tensors="pt")
    input_values, attention_mask = batch["input_values"], batch["attention_mask"].long()
    plain_config = tiny_config(num_labels=10, padding_mode="longest", stft_backend="fft")
    untrimmed = MeamtmForAudioClassification(plain_config).eval()
    untrimmed.load_state_dict(model.state_dict())
    with torch.no_grad():
        expected = model(input_values, attention_mask=attention_mask).logits.numpy()
        plain = untrimmed(input_values, attention_mask=attention_mask).logits.numpy()
    assert np.abs(expected - plain).max() > 1e-3  # the trim changes these clips, so the comparison can fail
    path = str(tmp_path / "model.onnx")
    export_onnx(model, path)
    for rows in (slice(0, 1), slice(None)):
        logits = onnx_logits(path, input_values[rows].numpy(), attention_mask[rows].numpy())
        np.testing.assert_allclose(logits, expected[rows], atol=1e-4, rtol=0)


def test_onnx_logits_refuses_a_width_the_graph_does_not_take_naming_the_fix(tmp_path):
    from meamtm.inference.export import exported_widths

    torch.manual_seed(0)
    config = tiny_config(num_labels=3, padding_mode="longest", stft_backend="fft")
    model = MeamtmForAudioClassification(config).eval()
    path = str(tmp_path / "model.onnx")
    export_onnx(model, path)
    widths = exported_widths(config)
    inputs = np.random.default_rng(0).normal(0, 0.1, (2, config.num_samples)).astype(np.float32)
    mask = np.ones_like(inputs, dtype=np.int64)
    assert config.num_samples not in widths  # the window is past the last whole patch column
    with pytest.raises(ValueError, match=rf"{config.num_samples} samples wide; .* takes widths {widths[0]},"):
        onnx_logits(path, inputs, mask)
    width = widths[-2]
    with torch.no_grad():
        expected = model(torch.from_numpy(inputs[:, :width]), attention_mask=torch.from_numpy(mask[:, :width])).logits
    logits = onnx_logits(path, inputs[:, :width], mask[:, :width])
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-4, rtol=0)
