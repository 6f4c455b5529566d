"""`python -m meamtm.predict`: top-k labels per file and per segment, errors reported per file."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import pipeline

from meamtm import MeamtmAudioClassificationPipeline, MeamtmFeatureExtractor, MeamtmForAudioClassification
from meamtm.predict import main, parse_arguments

from ..conftest import REPO, tiny_config


LABELS = {index: f"digit-{index}" for index in range(10)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = tiny_config(num_labels=10, id2label=LABELS)
    path = tmp_path_factory.mktemp("tiny-classifier")
    MeamtmForAudioClassification(config).save_pretrained(path)
    MeamtmFeatureExtractor.from_model_config(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def long_file(tmp_path_factory):
    """3.5 s of 44.1 kHz stereo: resampled and mixed down on the way in, longer than the 0.65 s window."""
    path = tmp_path_factory.mktemp("audio") / "long.flac"
    rng = np.random.default_rng(0)
    sf.write(path, (rng.standard_normal((int(3.5 * 44100), 2)) * 0.1).astype(np.float32), 44100)
    return path


def test_prints_the_top_k_labels_of_each_file_as_the_pipeline_ranks_them(checkpoint, fsdd_test_files, capsys):
    files = [str(path) for path in fsdd_test_files[:2]]
    assert main(["--model", str(checkpoint), "--top_k", "3", *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    classifier = pipeline(
        "audio-classification", model=str(checkpoint), pipeline_class=MeamtmAudioClassificationPipeline
    )
    assert len(lines) == 2
    for line, path in zip(lines, files):
        expected = classifier(path, top_k=3)
        assert line == f"{path}: " + ", ".join(f"{item['label']} {item['score']:.3f}" for item in expected)


def test_segments_give_each_window_with_its_time_span(checkpoint, long_file, capsys):
    argv = ["--model", str(checkpoint), "--segments", "--chunk_length_s", "0.5", "--chunk_overlap", "0"]
    assert main([*argv, "--top_k", "2", "--aggregation", "max", str(long_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{long_file}: digit-")
    spans = [line.split(":")[0].strip() for line in lines[1:]]
    assert spans == [f"{start:9.2f}-{start + 0.5:9.2f} s".strip() for start in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)]
    assert all(line.count("digit-") == 2 for line in lines[1:])


def test_an_unreadable_file_is_reported_with_its_path_and_the_rest_still_run(checkpoint, long_file, tmp_path, capsys):
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"\x00" * 100)
    assert main(["--model", str(checkpoint), str(broken), str(long_file)]) == 1
    captured = capsys.readouterr()
    assert f"{broken}: error: Could not decode audio from {broken}" in captured.err
    assert captured.out.startswith(f"{long_file}: digit-")


def test_bad_arguments_stop_before_loading_anything(capsys):
    with pytest.raises(SystemExit):
        parse_arguments(["--model", "x", "--aggregation", "median", "a.wav"])
    assert "is not one of ('mean', 'max')" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_arguments(["--model", "x"])  # no FILE


@pytest.mark.slow
def test_runs_as_a_module(checkpoint, fsdd_test_files):
    environment = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "meamtm.predict", "--model", str(checkpoint), "--top_k", "1", str(fsdd_test_files[0])],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"{fsdd_test_files[0]}: digit-")
