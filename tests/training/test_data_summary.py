"""meamtm/training/data_summary.py: what a training set holds, read from the headers, and a window from it."""

import numpy as np
import pytest
import soundfile
from datasets import Dataset

from meamtm.training.collate import UnreadableAudioError
from meamtm.training.data import LabelSpace, label_space_of, synthetic_sounds
from meamtm.training.data_summary import summarise_data, window_frames
from meamtm.training.trainer import build_config


def test_summary_of_synthetic_sounds():
    train = synthetic_sounds(num_per_class=5, sampling_rate=8000)["train"]
    labels = label_space_of(train, "label")
    summary = summarise_data(train, "audio", "label", labels)
    assert summary.num_clips == len(train) and summary.sampling_rates == {8000: len(train)}
    lengths = [len(row["audio"]["array"]) / 8000 for row in train]
    np.testing.assert_allclose(np.sort(summary.durations_s), np.sort(lengths), atol=1e-3)
    assert sum(summary.label_counts.values()) == len(train) and set(summary.label_counts) == set(labels.names)
    assert summary.total_clips == len(train)
    text = summary.describe()
    assert "sampling rates: 8000 Hz" in text and "95th percentile" in text and "6 labels" in text
    assert text.startswith(f"{len(train)} of {len(train)} clips read")
    # a few headers of many clips, and of a stream, whose size is not known ahead
    sampled = summarise_data(train, "audio", "label", labels, max_clips=7)
    assert sampled.num_clips < 10 and sampled.total_clips == len(train)
    assert sampled.describe().startswith(f"{sampled.num_clips} of {len(train)} clips read")
    stream = summarise_data(train.to_iterable_dataset(), "audio", "label", labels, max_clips=7)
    assert stream.num_clips == 7 and stream.total_clips is None and stream.describe().startswith("7 clips read")


def test_unreadable_headers_are_named_or_skipped(tmp_path):
    good, broken = tmp_path / "good.wav", tmp_path / "broken.wav"
    soundfile.write(good, np.zeros(800, np.float32), 8000)
    broken.write_bytes(b"not audio")
    dataset = Dataset.from_dict({"audio": [str(good), str(broken)], "label": ["a", "b"]})
    labels = LabelSpace(["a", "b"], False)
    with pytest.raises(UnreadableAudioError, match=r"broken\.wav.*--skip_unreadable_files"):
        summarise_data(dataset, "audio", "label", labels)
    summary = summarise_data(dataset, "audio", "label", labels, skip_unreadable=True)
    assert summary.num_clips == 1 and summary.label_counts == {"a": 1, "b": 1}


@pytest.mark.parametrize("duration", [0.01, 0.3, 0.99, 1.0, 2.37])
def test_window_holds_the_duration_on_the_patch_grid(duration):
    config = build_config("tiny", "sampling_rate=8000")
    frames = window_frames(duration, config)
    assert (frames - config.patch_size) % config.time_stride == 0 and frames >= config.patch_size
    assert (frames - 1) * config.hop_length + config.win_length >= duration * 8000  # the clip fits
    if frames > config.patch_size:  # and one grid step less would not hold it
        smaller = frames - config.time_stride
        assert (smaller - 1) * config.hop_length + config.win_length < duration * 8000
