"""The demo's logic without a browser: classification through the pipeline with the frontend's own log-mel,
warnings for silent and clipped audio, the decoder's errors, the checkpoint panel, examples, arguments."""

import importlib.util
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

from meamtm import MeamtmFeatureExtractor, MeamtmForAudioClassification
from meamtm.inference.demo import (
    DemoArguments,
    DemoClassifier,
    audio_stats,
    describe_checkpoint,
    find_examples,
    padding_columns,
    parse_arguments,
    plot_spectrogram,
    plot_timeline,
)
from meamtm.audio_io import load_audio
from meamtm.inference.predict import load_classifier

from ..conftest import REPO, TINY, tiny_config


LABELS = {index: f"digit-{index}" for index in range(10)}


def save_tiny_checkpoint(path, **overrides):
    torch.manual_seed(0)
    config = tiny_config(num_labels=10, id2label=LABELS, **overrides)
    MeamtmForAudioClassification(config).save_pretrained(path)
    MeamtmFeatureExtractor.from_model_config(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-classifier"))


@pytest.fixture(scope="module")
def demo_classifier(checkpoint):
    return DemoClassifier(load_classifier(DemoArguments(model=str(checkpoint))), top_k=3)


def write(path, waveform, rate=16000):
    sf.write(path, np.asarray(waveform, dtype=np.float32), rate, subtype="PCM_16")
    return str(path)


def test_labels_are_the_pipelines_and_the_log_mel_is_the_frontends_own(demo_classifier, fsdd_test_files):
    path = str(fsdd_test_files[3])
    result = demo_classifier(path)
    classifier = demo_classifier.classifier
    assert result.labels == classifier(path, top_k=3)
    assert len(result.segments) == 1

    config = classifier.model.config
    waveform = load_audio(path, config.sampling_rate)
    inputs = classifier.feature_extractor(waveform, sampling_rate=config.sampling_rate, return_tensors="pt")
    with torch.no_grad():
        expected = classifier.model.meamtm.frontend(inputs["input_values"], inputs["attention_mask"].sum(-1))[0]
    torch.testing.assert_close(torch.from_numpy(result.spectrogram), expected, atol=1e-5, rtol=0)
    assert result.num_frames == config.num_frames_of(len(waveform)) < config.max_length
    assert result.stats.num_samples == len(waveform) and result.stats.warnings() == []


def test_long_audio_gives_every_window_and_keeps_one_log_mel(demo_classifier, tmp_path):
    rng = np.random.default_rng(0)
    path = write(tmp_path / "long.wav", rng.standard_normal(3 * 16000) * 0.1)
    result = demo_classifier(path)
    expected = demo_classifier.classifier(path, top_k=3, return_segments=True)
    assert result.labels == expected["labels"]
    assert [(s["start"], s["end"]) for s in result.segments] == [(s["start"], s["end"]) for s in expected["segments"]]
    assert len(result.segments) > 1
    config = demo_classifier.config
    assert result.spectrogram.shape == (config.max_length, config.num_mel_bins)
    assert result.num_frames == config.max_length  # the first window is full of audio
    figure = plot_timeline(result.segments, result.stats.seconds)
    assert f"{len(result.segments)} windows" in figure.axes[0].get_title()


def test_silent_and_clipped_audio_warn_and_are_still_classified(demo_classifier, tmp_path):
    silent = demo_classifier(write(tmp_path / "silent.wav", np.zeros(8000)))
    assert [message.split(" (")[0] for message in silent.stats.warnings()] == ["The recording is silent"]
    assert len(silent.labels) == 3
    tone = 3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    clipped = demo_classifier(write(tmp_path / "clipped.wav", np.clip(tone, -1, 1)))
    (message,) = clipped.stats.warnings()
    assert message.startswith("The audio is clipped:") and len(clipped.labels) == 3
    quiet = demo_classifier(write(tmp_path / "quiet.wav", 0.5 * tone / 3))
    assert quiet.stats.warnings() == []


def test_input_that_is_not_audio_raises_the_decoders_errors(demo_classifier, tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n")
    with pytest.raises(ValueError, match="Could not decode audio from .*notes.wav"):
        demo_classifier(str(text))
    empty = write(tmp_path / "empty.wav", np.zeros(0))
    with pytest.raises(ValueError, match="decodes to 0 samples"):
        demo_classifier(empty)
    with pytest.raises(ValueError, match="is not a file"):
        demo_classifier(str(tmp_path / "missing.wav"))
    # The classifier still works after refusing input.
    assert len(demo_classifier(write(tmp_path / "ok.wav", np.full(4000, 0.1))).labels) == 3


def test_the_level_check_streams_long_files(tmp_path):
    """Ten minutes at 16 kHz is 38 MB as one float32 array; the check holds blocks of 10 s (0.6 MB)."""
    path = tmp_path / "ten-minutes.wav"
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as file:
        for _ in range(60):
            file.write(np.full(160000, 0.25, dtype=np.float32))
    tracemalloc.start()
    stats = audio_stats(str(path), 16000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert stats.num_samples == 600 * 16000 and stats.peak == pytest.approx(0.25, abs=1e-4)
    assert peak < 8 * 160000 * 4


def test_padding_patches_are_the_time_columns_past_the_audio():
    config = tiny_config()  # 10 columns of 8 frames, stride 6
    assert padding_columns(config, num_frames=28) == [5, 6, 7, 8, 9]  # column 4 (frames 24-31) holds audio
    assert padding_columns(config, num_frames=30) == [5, 6, 7, 8, 9]
    assert padding_columns(config, num_frames=31) == [6, 7, 8, 9]  # column 5 starts at frame 30
    assert padding_columns(config, config.max_length) == []
    figure = plot_spectrogram(np.zeros((config.max_length, config.num_mel_bins)), 28, config)
    (legend,) = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == "5 of 10 columns: padding patches (the model attends to them)"
    # padding_mode="longest": the frontend returns the patch columns that hold audio only; the rest is skipped.
    config.padding_mode = "longest"
    figure = plot_spectrogram(np.zeros((32, config.num_mel_bins)), 28, config)
    (legend,) = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == "5 of 10 columns: padding patches, skipped by the model"


def test_checkpoint_panel_names_labels_rate_window_parameters_and_card_results(tmp_path):
    from meamtm.training.report import write_model_card

    path = save_tiny_checkpoint(tmp_path / "model", sampling_rate=8000)
    write_model_card(str(path), "tiny", "fsdd", {"eval_accuracy": 0.925, "eval_runtime": 3.0}, list(LABELS.values()), {})
    model = MeamtmForAudioClassification.from_pretrained(path)
    text = describe_checkpoint(str(path), model)
    assert "| labels | 10: digit-0, digit-1," in text and "| sampling rate | 8000 Hz" in text
    assert f"| window | {model.config.num_samples / 8000:.2f} s ({model.config.num_samples} samples)" in text
    assert f"| parameters | {model.num_parameters() / 1e6:.2f} M |" in text
    assert "| fsdd | accuracy | 0.9250 |" in text and "runtime" not in text
    bare = describe_checkpoint(str(save_tiny_checkpoint(tmp_path / "bare")), model)
    assert "The model card lists no results." in bare


def test_examples_take_one_clip_of_each_class_first(tmp_path):
    for label in ("digit-1", "digit-0", "other"):
        (tmp_path / label).mkdir()
        for index in range(2):
            (tmp_path / label / f"{label}_{index}.wav").write_bytes(b"")
    (tmp_path / "digit-0" / "notes.txt").write_text("")
    found = find_examples(str(tmp_path), list(LABELS.values()), 4)
    names = [path.rsplit("/", 1)[1] for path in found]
    assert names == ["digit-0_0.wav", "digit-1_0.wav", "digit-0_1.wav", "digit-1_1.wav"]
    with pytest.raises(ValueError, match="does not exist"):
        find_examples(str(tmp_path / "nowhere"), [], 4)


def test_arguments_take_the_model_from_the_space_variable(monkeypatch, capsys):
    monkeypatch.setenv("MEAMTM_MODEL", "org/model")
    monkeypatch.setenv("MEAMTM_EXAMPLES", "clips")
    arguments = parse_arguments(["--port", "7000", "--share", "false"])
    assert (arguments.model, arguments.examples, arguments.port, arguments.share) == ("org/model", "clips", 7000, False)
    assert parse_arguments(["--model", "mine"]).model == "mine"
    monkeypatch.delenv("MEAMTM_MODEL")
    with pytest.raises(SystemExit):
        parse_arguments([])
    assert "pass --model DIR_OR_HUB_ID or set the MEAMTM_MODEL variable" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_arguments(["--model", "m", "--chunk_overlap", "1"])


@pytest.mark.slow
def test_importing_meamtm_and_the_demo_module_needs_no_gradio():
    probe = "import sys, meamtm, meamtm.demo, meamtm.inference.demo; print('gradio' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"


def load_convert_script():
    spec = importlib.util.spec_from_file_location("convert_ast_checkpoint", REPO / "scripts" / "convert_ast_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_checkpoint_converted_from_ast_loads_builds_the_page_and_classifies(tmp_path, fsdd_test_files):
    pytest.importorskip("gradio", reason="the page needs the demo extra: pip install -e .[demo]")
    ast = ASTForAudioClassification(ASTConfig(**TINY, id2label={0: "dog", 1: "cat", 2: "rain"})).eval()
    ast.save_pretrained(tmp_path / "ast")
    ASTFeatureExtractor(num_mel_bins=32, max_length=64).save_pretrained(tmp_path / "ast")
    load_convert_script().main(["--ast_model", str(tmp_path / "ast"), "--output_dir", str(tmp_path / "meamtm")])

    from meamtm.inference.demo import build_demo

    arguments = DemoArguments(model=str(tmp_path / "meamtm"))
    classifier = load_classifier(arguments)
    demo = build_demo(arguments, classifier)
    assert type(demo).__name__ == "Blocks"
    result = DemoClassifier(classifier, top_k=2)(str(fsdd_test_files[0]))
    assert result.labels == classifier(str(fsdd_test_files[0]), top_k=2)
    assert {item["label"] for item in result.labels} <= {"dog", "cat", "rain"}
    assert "| labels | 3: dog, cat, rain |" in describe_checkpoint(arguments.model, classifier.model)
