"""MeamtmFeatureExtractor: rates, dtypes, channels, lengths, saving."""

import logging

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor

from meamtm import MeamtmFeatureExtractor

from .conftest import tiny_config


@pytest.fixture
def extractor():
    return MeamtmFeatureExtractor.from_model_config(tiny_config())


def test_matches_the_model_config():
    config = tiny_config(sampling_rate=22050)
    extractor = MeamtmFeatureExtractor.from_model_config(config)
    assert extractor.sampling_rate == 22050
    assert extractor.num_samples == config.num_samples == 63 * 160 + 400


def test_wrong_sampling_rate_says_to_resample(extractor):
    with pytest.raises(ValueError, match=r"sampling_rate=8000 Hz but this model expects 16000 Hz.*Resample"):
        extractor(np.zeros(1000, dtype=np.float32), sampling_rate=8000)


def test_missing_sampling_rate_warns(extractor, caplog):
    logger = logging.getLogger("meamtm.feature_extraction_meamtm")
    logger.addHandler(caplog.handler)
    try:
        extractor(np.zeros(1000, dtype=np.float32))
    finally:
        logger.removeHandler(caplog.handler)
    assert "No sampling_rate was passed" in caplog.text


@pytest.mark.parametrize(
    "clip, expected",
    [
        (np.array([0, 16384, -32768], dtype=np.int16), [0.0, 0.5, -1.0]),
        (np.array([0, 2**30, -(2**31)], dtype=np.int32), [0.0, 0.5, -1.0]),
        (np.array([128, 192, 0], dtype=np.uint8), [0.0, 0.5, -1.0]),
        (np.array([0, 64, -128], dtype=np.int8), [0.0, 0.5, -1.0]),
        (np.array([0.25, -0.5, 1.0], dtype=np.float64), [0.25, -0.5, 1.0]),
        (np.array([0.25, -0.5, 1.0], dtype=np.float16), [0.25, -0.5, 1.0]),
        (torch.tensor([0.25, -0.5, 1.0]), [0.25, -0.5, 1.0]),
        (torch.tensor([0, 16384, -32768], dtype=torch.int16), [0.0, 0.5, -1.0]),
        ([0.25, -0.5, 1.0], [0.25, -0.5, 1.0]),
    ],
)
def test_dtypes_are_scaled_to_float32(extractor, clip, expected):
    values = extractor(clip, sampling_rate=16000, return_tensors="np")["input_values"]
    assert values.dtype == np.float32
    np.testing.assert_allclose(values[0], expected)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_stereo_is_averaged_to_mono(extractor, layout):
    left, right = np.full(1000, 0.5, np.float32), np.full(1000, -0.25, np.float32)
    stereo = np.stack([left, right]) if layout == "channels_first" else np.stack([left, right], axis=1)
    values = extractor([stereo], sampling_rate=16000, return_tensors="np")["input_values"]
    assert values.shape == (1, 1000)
    np.testing.assert_allclose(values[0], 0.125)


def test_a_two_dimensional_array_is_a_batch(extractor):
    batch = np.random.randn(3, 2000).astype(np.float32)
    values = extractor(batch, sampling_rate=16000, return_tensors="np")["input_values"]
    np.testing.assert_array_equal(values, batch)


def test_mixed_lengths_pad_to_the_longest_with_a_mask(extractor):
    clips = [np.ones(500, np.float32), np.ones(1200, np.float32), np.ones(40, np.float32)]
    batch = extractor(clips, sampling_rate=16000, return_tensors="pt")
    assert batch["input_values"].shape == (3, 1200)
    assert batch["attention_mask"].sum(-1).tolist() == [500, 1200, 40]
    assert batch["input_values"][0, 500:].abs().sum() == 0


def test_long_clips_are_cut_to_the_model_window(extractor):
    batch = extractor(np.ones(50_000, np.float32), sampling_rate=16000, return_tensors="pt")
    assert batch["input_values"].shape == (1, extractor.num_samples)
    batch = extractor(np.ones(50_000, np.float32), sampling_rate=16000, truncation=False, return_tensors="pt")
    assert batch["input_values"].shape == (1, 50_000)


def test_padding_to_max_length(extractor):
    batch = extractor(np.ones(100, np.float32), sampling_rate=16000, padding="max_length", return_tensors="pt")
    assert batch["input_values"].shape == (1, extractor.num_samples)
    assert batch["attention_mask"].sum() == 100


@pytest.mark.parametrize(
    "clip, error, message",
    [
        (np.zeros(0, np.float32), ValueError, "Clip 0 is empty"),
        (np.array([0.0, np.nan, 0.1], np.float32), ValueError, "1 NaN or infinite samples"),
        (np.array([0.0, np.inf], np.float32), ValueError, "NaN or infinite"),
        (np.zeros((40, 40), np.float32), None, None),  # a batch of 40 clips, fine
        (np.zeros((2, 3, 100), np.float32), ValueError, "shape"),
        (np.array([True, False]), TypeError, "dtype bool"),
        (np.array([1, 2], dtype=np.int64), TypeError, "int64"),
        ("clip.wav", TypeError, "Unsupported audio input of type str"),
    ],
)
def test_bad_clips_get_clear_errors(extractor, clip, error, message):
    if error is None:
        extractor(clip, sampling_rate=16000)
        return
    with pytest.raises(error, match=message):
        extractor(clip, sampling_rate=16000)


def test_too_many_channels_is_refused(extractor):
    with pytest.raises(ValueError, match="neither"):
        extractor([np.zeros((20, 30000), np.float32)], sampling_rate=16000)


def test_saves_as_preprocessor_config_and_loads_through_auto(tmp_path, extractor):
    extractor.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").exists()
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(loaded, MeamtmFeatureExtractor)
    assert loaded.to_dict() == extractor.to_dict()
