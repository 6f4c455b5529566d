"""MeamtmAudioClassificationPipeline: sliding windows, aggregation, streaming decode, bounded memory."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import pipeline

from meamtm import MeamtmAudioClassificationPipeline, MeamtmFeatureExtractor, MeamtmForAudioClassification
from meamtm.inference.pipeline import sliding_windows

from ..conftest import REPO, tiny_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = tiny_config(num_labels=4, id2label={0: "zero", 1: "one", 2: "two", 3: "three"})
    model = MeamtmForAudioClassification(config).eval()
    path = tmp_path_factory.mktemp("tiny-classifier")
    model.save_pretrained(path)
    MeamtmFeatureExtractor.from_model_config(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def classifier(checkpoint):
    return pipeline("audio-classification", model=str(checkpoint), pipeline_class=MeamtmAudioClassificationPipeline)


def window_logits(classifier, waveform, window, hop):
    """Logits of each window computed by hand: extractor + model, one window at a time."""
    starts = list(range(0, len(waveform) - window, hop)) + [max(0, len(waveform) - window)]
    rows = []
    for start in starts:
        inputs = classifier.feature_extractor(waveform[start : start + window], sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            rows.append(classifier.model(**inputs).logits[0])
    return starts, torch.stack(rows)


@settings(max_examples=40, deadline=None)
@given(
    num_samples=st.integers(1, 3000),
    window=st.integers(1, 700),
    overlap=st.floats(0, 0.95),
    block=st.integers(1, 1000),
)
def test_sliding_windows_cover_the_stream_whatever_the_blocks(num_samples, window, overlap, block):
    waveform = np.arange(num_samples, dtype=np.float32)
    hop = max(1, round(window * (1 - overlap)))
    blocks = (waveform[start : start + block] for start in range(0, num_samples, block))
    windows = list(sliding_windows(blocks, window, hop))
    starts = [start for start, _, _ in windows]
    assert starts == list(range(0, num_samples - window, hop)) + [max(0, num_samples - window)]
    for start, chunk, is_last in windows:
        np.testing.assert_array_equal(chunk, waveform[start : start + window])
        assert is_last == (start == starts[-1])
    assert windows[-1][0] + len(windows[-1][1]) == num_samples


def test_sliding_windows_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        list(sliding_windows(iter([np.zeros(0, np.float32)]), 100, 50))


def test_a_clip_within_the_window_is_classified_as_by_the_transformers_pipeline(checkpoint, classifier, fsdd_test_files):
    plain = pipeline("audio-classification", model=str(checkpoint))
    waveform = (np.random.default_rng(0).standard_normal(9000) * 0.1).astype(np.float32)
    assert classifier(waveform) == plain(waveform)
    # Files: our streamed ffmpeg decode gives the samples transformers' ffmpeg_read gives (8 -> 16 kHz here).
    ours, theirs = classifier(str(fsdd_test_files[3])), plain(str(fsdd_test_files[3]))
    assert [item["label"] for item in ours] == [item["label"] for item in theirs]
    np.testing.assert_allclose([item["score"] for item in ours], [item["score"] for item in theirs], atol=1e-6)


@pytest.mark.parametrize("aggregation", ["mean", "max"])
def test_long_audio_aggregates_the_logits_of_overlapping_windows(classifier, aggregation):
    waveform = (np.random.default_rng(1).standard_normal(40000) * 0.1).astype(np.float32)
    window, hop = 8000, 6000
    starts, logits = window_logits(classifier, waveform, window, hop)
    assert starts == [0, 6000, 12000, 18000, 24000, 30000, 32000]
    pooled = logits.mean(0) if aggregation == "mean" else logits.amax(0)
    probabilities = pooled.softmax(-1)
    kwargs = dict(chunk_length_s=0.5, chunk_overlap=0.25, aggregation=aggregation, top_k=4, return_segments=True)
    for batch_size in (1, 3):
        result = classifier(waveform, batch_size=batch_size, **kwargs)
        scores = {item["label"]: item["score"] for item in result["labels"]}
        for index, label in classifier.model.config.id2label.items():
            assert scores[label] == pytest.approx(probabilities[index].item(), abs=1e-5)
        assert [(segment["start"], segment["end"]) for segment in result["segments"]] == [
            (start / 16000, (start + window) / 16000) for start in starts
        ]
        first = {item["label"]: item["score"] for item in result["segments"][0]["labels"]}
        assert first[classifier.model.config.id2label[0]] == pytest.approx(logits[0].softmax(-1)[0].item(), abs=1e-5)


def test_inputs_of_every_kind_give_the_same_prediction(classifier, tmp_path):
    rng = np.random.default_rng(2)
    mono = (rng.standard_normal(24000) * 0.1).astype(np.float32)
    expected = classifier(mono, top_k=4)
    stereo = np.stack([mono, mono])
    assert classifier(stereo, top_k=4) == expected
    assert classifier(stereo.T.copy(), top_k=4) == expected
    assert classifier(torch.from_numpy(mono), top_k=4) == expected
    assert classifier({"array": mono, "sampling_rate": 16000}, top_k=4) == expected
    path = tmp_path / "clip.wav"
    sf.write(path, mono, 16000, subtype="FLOAT")
    assert classifier(str(path), top_k=4) == expected
    assert classifier(path.read_bytes(), top_k=4) == expected


def test_a_dict_at_another_rate_is_resampled(classifier):
    time = np.arange(8000) / 8000
    tone = (0.3 * np.sin(2 * np.pi * 440 * time)).astype(np.float32)
    at_8k = classifier({"raw": tone, "sampling_rate": 8000}, top_k=4)
    at_16k = classifier((0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32), top_k=4)
    assert [item["label"] for item in at_8k] == [item["label"] for item in at_16k]
    np.testing.assert_allclose([item["score"] for item in at_8k], [item["score"] for item in at_16k], atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(chunk_length_s=60.0), "at most the model's window"),
        (dict(chunk_length_s=0.01), "at least one analysis window"),
        (dict(chunk_overlap=1.0), r"must be in \[0, 1\)"),
        (dict(aggregation="median"), "is not one of"),
    ],
)
def test_bad_arguments_are_refused(classifier, kwargs, message):
    with pytest.raises(ValueError, match=message):
        classifier(np.zeros(16000, np.float32), **kwargs)


def test_unreadable_and_empty_inputs_name_the_problem(classifier, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(ValueError, match="broken.wav"):
        classifier(str(broken))
    with pytest.raises(ValueError, match="is not a file"):
        classifier(str(tmp_path / "missing.wav"))
    with pytest.raises(ValueError, match="empty"):
        classifier(np.zeros(0, np.float32))


MEASURE = textwrap.dedent(
    """
    import gc, json, sys
    from transformers import pipeline
    from meamtm import MeamtmAudioClassificationPipeline

    def kilobytes(field):
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field))

    classifier = pipeline("audio-classification", model=sys.argv[1], pipeline_class=MeamtmAudioClassificationPipeline)
    options = dict(batch_size=8, chunk_overlap=0.0, return_segments=True)
    classifier(sys.argv[2], **options)  # warm-up: lazy allocations, thread pools
    growth = {}
    for path in sys.argv[2:]:
        gc.collect()
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets the peak resident size (VmHWM) to the current one
        before = kilobytes("VmRSS")
        windows = len(classifier(path, **options)["segments"])
        growth[path] = {"peak_growth_kb": kilobytes("VmHWM") - before, "windows": windows}
    print(json.dumps(growth))
    """
)


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_recording_beyond_its_output(checkpoint, tmp_path):
    """1 min vs 10 min of 8 kHz audio, streamed: the 10-min waveform alone (at 16 kHz) would be 38 MB."""
    rng = np.random.default_rng(3)
    paths = []
    for minutes in (1, 10):
        path = tmp_path / f"{minutes}min.wav"
        with sf.SoundFile(path, "w", samplerate=8000, channels=1, subtype="PCM_16") as file:
            for _ in range(minutes * 60):
                file.write((rng.standard_normal(8000) * 0.1).astype(np.float32))
        paths.append(str(path))
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(checkpoint), *paths], capture_output=True, text=True, env=environment
    )
    assert result.returncode == 0, result.stderr[-3000:]
    short, long = (json.loads(result.stdout.splitlines()[-1])[path] for path in paths)
    assert (short["windows"], long["windows"]) == (92, 917)  # 0.655 s windows, no overlap
    waveform_bytes = 10 * 60 * 16000 * 4
    # What may grow: the output, one logits row and one segment (a few small dicts) per window.
    allowance_kb = 8 * (long["windows"] - short["windows"])
    growth_kb = long["peak_growth_kb"] - short["peak_growth_kb"]
    assert growth_kb < allowance_kb < waveform_bytes / 1024 / 4, (short, long)


@settings(max_examples=40, deadline=None)
@given(num_samples=st.integers(1, 3000), window=st.integers(1, 700), overlap=st.floats(0, 0.95), block=st.integers(1, 1000))
def test_unaligned_last_window_holds_the_rest_of_the_stream(num_samples, window, overlap, block):
    waveform = np.arange(num_samples, dtype=np.float32)
    hop = max(1, round(window * (1 - overlap)))
    blocks = (waveform[start : start + block] for start in range(0, num_samples, block))
    windows = list(sliding_windows(blocks, window, hop, align_last=False))
    regular = list(range(0, num_samples - window, hop))
    assert [start for start, _, _ in windows] == regular + [regular[-1] + hop if regular else 0]
    for start, chunk, _ in windows:
        np.testing.assert_array_equal(chunk, waveform[start : start + window])
    assert windows[-1][0] + len(windows[-1][1]) == num_samples


@pytest.fixture(scope="module")
def longest_classifier(checkpoint):
    return pipeline(
        "audio-classification", model=str(checkpoint), pipeline_class=MeamtmAudioClassificationPipeline,
        model_kwargs={"padding_mode": "longest"},
    )


def test_longest_mode_batches_windows_of_different_lengths_as_one_by_one(longest_classifier):
    assert longest_classifier.model.config.padding_mode == "longest"
    waveform = (np.random.default_rng(2).standard_normal(18000) * 0.1).astype(np.float32)
    kwargs = dict(chunk_length_s=0.5, chunk_overlap=0.25, top_k=4, return_segments=True)
    one_by_one = longest_classifier(waveform, batch_size=1, **kwargs)
    batched = longest_classifier(waveform, batch_size=3, **kwargs)
    spans = [(segment["start"], segment["end"]) for segment in batched["segments"]]
    assert spans == [(0.0, 0.5), (0.375, 0.875), (0.75, 1.125)]  # the last window is the rest, 0.375 s
    for left, right in zip(one_by_one["segments"] + [one_by_one], batched["segments"] + [batched]):
        left = {item["label"]: item["score"] for item in left["labels"]}
        right = {item["label"]: item["score"] for item in right["labels"]}
        assert left == pytest.approx(right, abs=1e-5)
