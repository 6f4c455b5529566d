"""meamtm/training/collate.py: the on-the-fly audio transform, its faults log, the collator, the epoch callback."""

import numpy as np
import pytest
import soundfile
import torch
from datasets import ClassLabel, Dataset, Features

from meamtm.training.augmentation import WaveformAugmentation
from meamtm.training.collate import AudioCollator, AudioTransform, EpochCallback, UnreadableAudioError, unreadable_files
from meamtm.training.data import LabelSpace, class_names_of


DIGITS = LabelSpace([str(d) for d in range(10)], multi_label=False)


def transform(train=False, **kwargs) -> AudioTransform:
    return AudioTransform("audio", "label", kwargs.pop("labels", DIGITS), 8000, kwargs.pop("num_samples", 8000),
                          train=train, **kwargs)


def test_eval_transform_pads_from_the_start_with_a_mask(clip_file):
    out = transform()({"audio": [{"path": clip_file, "bytes": None}], "label": [3]})
    window, mask = out["input_values"][0], out["attention_mask"][0]
    assert window.shape == (8000,) and window.dtype == np.float32
    assert mask[:4000].all() and not mask[4000:].any()
    reference, _ = soundfile.read(clip_file, dtype="float32")
    np.testing.assert_allclose(window[:4000], reference, atol=1e-4)
    assert out["labels"] == [3]


def test_eval_transform_keeps_the_first_window_of_a_long_clip(clip_file):
    out = transform(num_samples=1000)({"audio": [clip_file], "label": ["3"]})
    reference, _ = soundfile.read(clip_file, dtype="float32")
    np.testing.assert_allclose(out["input_values"][0], reference[:1000], atol=1e-4)
    assert out["attention_mask"][0].all()


def test_transform_resamples_to_the_model_rate(clip_file):
    at_16k = AudioTransform("audio", "label", DIGITS, 16000, 16000, train=False)
    out = at_16k({"audio": [clip_file], "label": [0]})
    assert out["attention_mask"][0].sum() == pytest.approx(8000, abs=2)  # 0.5 s at 16 kHz


def test_training_augmentation_is_seeded_by_seed_epoch_and_clip(clip_file):
    augmentation = WaveformAugmentation(gain_db=6, shift_s=0.2, noise_snr_db=10, speed=0.1)
    batch = {"audio": [clip_file], "label": [1]}
    first = transform(train=True, augmentation=augmentation, seed=0)
    again = transform(train=True, augmentation=augmentation, seed=0)
    np.testing.assert_array_equal(first(batch)["input_values"][0], again(batch)["input_values"][0])
    np.testing.assert_array_equal(first(batch)["input_values"][0], first(batch)["input_values"][0])
    other_seed = transform(train=True, augmentation=augmentation, seed=1)
    assert not np.array_equal(first(batch)["input_values"][0], other_seed(batch)["input_values"][0])
    next_epoch = transform(train=True, augmentation=augmentation, seed=0)
    EpochCallback(next_epoch).on_epoch_begin(None, type("State", (), {"epoch": 1.0})(), None)
    assert next_epoch.epoch == 1
    assert not np.array_equal(first(batch)["input_values"][0], next_epoch(batch)["input_values"][0])


def test_gain_and_shift_stay_within_their_bounds(clip_file):
    reference, _ = soundfile.read(clip_file, dtype="float32")
    for seed in range(20):
        out = transform(train=True, augmentation=WaveformAugmentation(gain_db=6, shift_s=0.1), seed=seed)(
            {"audio": [clip_file], "label": [0]}
        )
        window, mask = out["input_values"][0], out["attention_mask"][0]
        delay = int(np.argmax(np.abs(window) > 1e-3))
        assert 0 <= delay <= 800 + 5  # 0.1 s at 8 kHz
        gain = np.abs(window).max() / np.abs(reference).max()
        assert 10 ** (-6 / 20) - 1e-3 <= gain <= 10 ** (6 / 20) + 1e-3
        assert mask.sum() == pytest.approx(delay + 4000, abs=6)  # the delay is real signal, then the clip


def test_unreadable_file_error_names_the_file(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEjunk" * 8)
    with pytest.raises(UnreadableAudioError, match=r"Cannot read audio file .*broken\.wav.*--skip_unreadable_files"):
        transform()({"audio": [str(broken)], "label": [0]})
    assert issubclass(UnreadableAudioError, ValueError)


@pytest.mark.parametrize(
    "samples, name, problem",
    [(np.zeros(0, np.float32), "empty", "No audio frames"), (np.full(800, np.nan, np.float32), "nan", "800 NaN")],
)
def test_empty_or_nan_audio_is_unreadable(tmp_path, samples, name, problem):
    path = tmp_path / f"{name}.wav"
    soundfile.write(path, samples, 8000, subtype="FLOAT")
    with pytest.raises(UnreadableAudioError, match=rf"{name}\.wav.*{problem}"):
        transform()({"audio": [str(path)], "label": [0]})


def test_skipped_files_are_marked_logged_and_counted_once(tmp_path, clip_file):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    log = tmp_path / "faults.txt"
    skipping = transform(skip_unreadable=True, fault_log=str(log))
    for _ in range(3):  # three epochs meet the same file
        out = skipping({"audio": [clip_file, str(broken)], "label": [1, 2]})
        assert out["input_values"][0] is not None and out["input_values"][1] is None
    assert unreadable_files(str(log)) == [str(broken)]
    assert unreadable_files(str(tmp_path / "missing.txt")) == []


def test_collator_stacks_and_drops_unreadable_clips(clip_file):
    out = transform(skip_unreadable=True)({"audio": [clip_file, "/nonexistent.wav", clip_file], "label": [1, 2, 3]})
    rows = [{key: out[key][i] for key in out} for i in range(3)]
    batch = AudioCollator()(rows)
    assert batch["input_values"].shape == (2, 8000) and batch["input_values"].dtype == torch.float32
    assert batch["attention_mask"].shape == (2, 8000)
    assert batch["labels"].tolist() == [1, 3] and batch["labels"].dtype == torch.long
    with pytest.raises(UnreadableAudioError, match="All 1 clips of a batch were unreadable"):
        AudioCollator()([rows[1]])


def test_multi_label_targets_are_multi_hot(clip_file):
    labels = LabelSpace(["dog", "rain", "speech"], multi_label=True)
    out = transform(labels=labels)({"audio": [clip_file], "label": [["speech", "dog"]]})
    np.testing.assert_array_equal(out["labels"][0], [1, 0, 1])
    batch = AudioCollator()([{key: out[key][0] for key in out}])
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (1, 3)


def test_unknown_label_names_the_clip_and_the_label(clip_file):
    with pytest.raises(ValueError, match=r"tone\.wav has label 'eleven'.*training classes"):
        transform()({"audio": [clip_file], "label": ["eleven"]})
    with pytest.raises(ValueError, match=r"has label '12'"):
        transform()({"audio": [clip_file], "label": [12]})
    with pytest.raises(ValueError, match=r"has label 2,"):
        transform(column_class_names=["3", "4"])({"audio": [clip_file], "label": [2]})


def test_class_label_integers_are_mapped_by_name(clip_file):
    # An evaluation folder with only some of the classes numbers them in its own order.
    evaluation = Dataset.from_dict({"label": [0, 1]}, features=Features(label=ClassLabel(names=["dog", "rain"])))
    names = class_names_of(evaluation, "label")
    assert names == ["dog", "rain"]
    labels = LabelSpace(["cat", "dog", "rain"], False)
    out = transform(labels=labels, column_class_names=names)({"audio": [clip_file] * 2, "label": [0, 1]})
    assert out["labels"] == [1, 2]
    assert class_names_of(Dataset.from_dict({"label": ["x"]}), "label") is None


def test_transform_without_padding_keeps_each_clip_its_own_length_and_the_collator_pads_to_the_longest(clip_file):
    out = transform(pad_to_window=False)({"audio": [clip_file], "label": [3]})
    assert out["input_values"][0].shape == (4000,) and out["attention_mask"][0].all()
    cropped = transform(pad_to_window=False, num_samples=1000)({"audio": [clip_file], "label": [3]})
    assert cropped["input_values"][0].shape == (1000,)  # longer clips are still cut to the window
    rows = [
        {"input_values": np.ones(3, np.float32), "attention_mask": np.ones(3, np.int32), "labels": 0},
        {"input_values": np.ones(5, np.float32), "attention_mask": np.ones(5, np.int32), "labels": 1},
    ]
    batch = AudioCollator()(rows)
    assert batch["input_values"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
