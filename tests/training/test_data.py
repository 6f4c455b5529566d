"""meamtm/training_data_meamtm.py: loading, label spaces, the on-the-fly audio transform, collator, sampling."""

import json

import numpy as np
import pytest
import soundfile
import torch
from datasets import ClassLabel, Dataset, Features, Value

from meamtm.training.data import (
    AudioCollator,
    AudioTransform,
    BalancedSampler,
    EpochCallback,
    LabelSpace,
    UnreadableAudioError,
    WaveformAugmentation,
    balanced_sampling_weights,
    check_columns,
    check_labels,
    class_names_of,
    label_space_of,
    load_splits,
    prepare_dataset,
    synthetic_sounds,
    unreadable_files,
)


DIGITS = LabelSpace([str(d) for d in range(10)], multi_label=False)


def transform(train=False, **kwargs) -> AudioTransform:
    return AudioTransform("audio", "label", kwargs.pop("labels", DIGITS), 8000, kwargs.pop("num_samples", 8000),
                          train=train, **kwargs)


@pytest.fixture
def clip_file(tmp_path):
    """A 0.5 s 440 Hz tone at 8 kHz, 16-bit WAV."""
    path = tmp_path / "tone.wav"
    t = np.arange(4000) / 8000
    soundfile.write(path, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000, subtype="PCM_16")
    return str(path)


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


def test_speed_changes_the_length():
    wave = np.sin(np.arange(8000) / 10).astype(np.float32)
    lengths = {len(WaveformAugmentation(speed=0.2).apply(wave, np.random.default_rng(s))) for s in range(10)}
    assert min(lengths) >= 8000 / 1.2 - 2 and max(lengths) <= 8000 / 0.8 + 2 and len(lengths) > 5


def test_tilt_is_a_first_order_filter_within_its_bound():
    wave = (np.random.default_rng(0).standard_normal(4000) * 0.1).astype(np.float32)
    coefficients = set()
    for seed in range(20):
        tilted = WaveformAugmentation(tilt=0.5).apply(wave, np.random.default_rng(seed))
        coefficient = np.random.default_rng(seed).uniform(-0.5, 0.5)
        np.testing.assert_allclose(tilted[1:], wave[1:] - np.float32(coefficient) * wave[:-1], atol=1e-6)
        assert tilted[0] == wave[0] and tilted.dtype == np.float32
        spectrum = np.abs(np.fft.rfft(tilted)) ** 2
        # a > 0 lifts the top of the spectrum against the bottom, a < 0 the other way round
        assert np.sign(spectrum[-500:].mean() - spectrum[:500].mean()) == np.sign(coefficient)
        coefficients.add(round(coefficient, 3))
    assert len(coefficients) == 20


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


def test_label_spaces_from_features_values_and_lists():
    classes = Dataset.from_dict({"label": [0, 1]}, features=Features(label=ClassLabel(names=["no", "yes"])))
    assert label_space_of(classes, "label") == LabelSpace(["no", "yes"], False)
    strings = Dataset.from_dict({"label": ["b", "a", "b"]})
    assert label_space_of(strings, "label") == LabelSpace(["a", "b"], False)
    lists = Dataset.from_dict({"label": [["x", "y"], ["z"], []]})
    space = label_space_of(lists, "label")
    assert space == LabelSpace(["x", "y", "z"], True) and space.problem_type == "multi_label_classification"
    with pytest.raises(ValueError, match="--class_names"):
        label_space_of(strings.to_iterable_dataset(), "label")


def test_check_columns_lists_the_columns():
    dataset = Dataset.from_dict({"file": ["a.wav"], "digit": [1]})
    with pytest.raises(ValueError, match=r"--audio_column 'audio' is not a column of here; its columns are \['file', 'digit'\]"):
        check_columns(dataset, "audio", "digit", where="here")
    check_columns(dataset, "file", "digit")


def test_check_labels_names_labels_missing_from_training():
    evaluation = Dataset.from_dict({"label": ["cat", "dog", "cow"]})
    with pytest.raises(ValueError, match=r"labels \['cow'\] that the training data does not have"):
        check_labels(evaluation, "label", LabelSpace(["cat", "dog"], False), where="the evaluation data")
    with pytest.raises(ValueError, match="holds a list of labels per clip"):
        check_labels(Dataset.from_dict({"label": [["cat"]]}), "label", LabelSpace(["cat"], False), where="it")


def test_balanced_weights_are_inverse_label_frequency():
    dataset = Dataset.from_dict({"label": ["a"] * 6 + ["b"] * 2})
    weights = balanced_sampling_weights(dataset, "label", LabelSpace(["a", "b"], False))
    np.testing.assert_allclose(weights, [1 / 6] * 6 + [1 / 2] * 2)
    multi = Dataset.from_dict({"label": [["a"], ["a", "b"], ["a"]]})
    np.testing.assert_allclose(
        balanced_sampling_weights(multi, "label", LabelSpace(["a", "b"], True)), [1 / 3, 1 / 3 + 1, 1 / 3]
    )


def test_balanced_sampler_evens_out_classes_and_follows_the_epoch():
    weights = np.array([1 / 90] * 90 + [1 / 10] * 10)
    sampler = BalancedSampler(weights, seed=3)
    drawn = np.array([index for _ in range(20) for index in sampler])
    assert len(list(sampler)) == 100
    assert 0.4 < np.mean(drawn >= 90) < 0.6  # the rare class is drawn half of the time, not 10 %
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    with pytest.raises(ValueError, match="non-negative clip weights"):
        BalancedSampler(np.array([0.0, 0.0]))


def test_synthetic_sounds_are_deterministic_and_balanced():
    a, b = synthetic_sounds(num_per_class=10), synthetic_sounds(num_per_class=10)
    assert len(a["train"]) + len(a["test"]) == 60
    row_a = a["train"].cast_column("audio", a["train"].features["audio"].__class__(decode=False))[0]
    row_b = b["train"].cast_column("audio", b["train"].features["audio"].__class__(decode=False))[0]
    assert row_a == row_b
    assert np.bincount(list(a["train"]["label"]) + list(a["test"]["label"])).tolist() == [10] * 6
    out = prepare_dataset(a["test"], AudioTransform("audio", "label", label_space_of(a["test"], "label"), 8000, 8000, False))[0]
    assert out["input_values"].shape == (8000,) and np.isfinite(out["input_values"]).all()


def test_load_splits_needs_one_source_and_reads_metadata_paths_relative_to_the_file(tmp_path, clip_file):
    with pytest.raises(ValueError, match="exactly one data source"):
        load_splits()
    with pytest.raises(ValueError, match="exactly one data source"):
        load_splits(train_dir=str(tmp_path), train_file="x.csv")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "clip.wav").write_bytes(open(clip_file, "rb").read())
    (tmp_path / "meta" / "train.jsonl").write_text(json.dumps({"audio": "clip.wav", "label": "a"}) + "\n")
    splits = load_splits(train_file=str(tmp_path / "meta" / "train.jsonl"))
    assert set(splits) == {"train"}
    assert splits["train"][0]["audio"] == str(tmp_path / "meta" / "clip.wav")
    assert splits["train"].features["audio"] == Value("string")
    with pytest.raises(ValueError, match="must be .csv, .json or .jsonl"):
        load_splits(train_file=str(tmp_path / "train.parquet"))
