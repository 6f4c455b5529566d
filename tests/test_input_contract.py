"""The input contract (README, "Input contract"), case by case, for the feature extractor, the model's
forward and the pipeline; then properties over lengths, dtypes, amplitudes and batch sizes (hypothesis)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import pipeline

from meamtm import MeamtmAudioClassificationPipeline, MeamtmFeatureExtractor, MeamtmForAudioClassification
from meamtm.feature_extraction_meamtm import to_mono_float32

from .conftest import tiny_config


RATE = 16000


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MeamtmForAudioClassification(tiny_config(num_labels=3)).eval()


@pytest.fixture(scope="module")
def extractor(model):
    return MeamtmFeatureExtractor.from_model_config(model.config)


@pytest.fixture(scope="module")
def classifier(model, extractor):
    return pipeline(
        "audio-classification", model=model, feature_extractor=extractor, pipeline_class=MeamtmAudioClassificationPipeline
    )


@pytest.fixture
def transformers_warnings(caplog):
    """Warnings of transformers' loggers as text; `warning_once` forgets what it has shown, so each test sees its own."""
    from transformers.utils import logging

    root = logging.get_logger("transformers")
    root.warning_once.cache_clear()
    root.propagate = True
    with caplog.at_level("WARNING"):
        yield caplog
    root.propagate = False


def logits_of(model, extractor, clips):
    with torch.no_grad():
        return model(**extractor(clips, sampling_rate=RATE, return_tensors="pt")).logits


def speech_like(num_samples, seed=0):
    return (np.random.default_rng(seed).standard_normal(num_samples) * 0.1).astype(np.float32)


# Empty audio


def test_empty_audio_is_an_error_everywhere(model, extractor, classifier):
    with pytest.raises(ValueError, match="empty"):
        extractor(np.zeros(0, np.float32), sampling_rate=RATE)
    with pytest.raises(ValueError, match="empty batch"):
        extractor([], sampling_rate=RATE)
    with pytest.raises(ValueError, match="empty batch or empty waveforms"):
        model(torch.zeros(2, 0))
    with pytest.raises(ValueError, match="empty batch or empty waveforms"):
        model(torch.zeros(0, 1000))
    with pytest.raises(ValueError, match="empty"):
        classifier(np.zeros(0, np.float32))


# Shorter than one analysis window, all zeros, clipped: finite results


def test_a_clip_shorter_than_one_window_is_classified_as_an_empty_spectrogram(
    model, extractor, classifier, transformers_warnings
):
    """Kaldi framing (AST's) gives no frame for fewer than win_length samples: all padding, like AST."""
    short = logits_of(model, extractor, speech_like(model.config.win_length - 1))
    silence = logits_of(model, extractor, np.zeros(model.config.win_length - 1, np.float32))
    torch.testing.assert_close(short, silence)
    one_frame = logits_of(model, extractor, speech_like(model.config.win_length))
    assert not torch.allclose(one_frame, short)
    assert torch.isfinite(short).all()
    assert "fewer than one analysis window" in transformers_warnings.text
    scores = [item["score"] for item in classifier(speech_like(10), top_k=3)]
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "clip",
    [
        np.zeros(8000, np.float32),  # digital silence: the log's floor, no -inf
        np.clip(speech_like(8000) * 40, -1.0, 1.0),  # hard-clipped at full scale
        np.ones(8000, np.float32),  # DC at full scale
        np.full(8000, 32767, np.int16),  # integer full scale
        speech_like(8000) * 3e4,  # unscaled integer PCM stored as float: kept, warned, still finite
    ],
    ids=["zeros", "clipped", "dc", "int16-full-scale", "unscaled-float"],
)
def test_extreme_but_finite_audio_gives_finite_logits(model, extractor, clip):
    assert torch.isfinite(logits_of(model, extractor, clip)).all()


def test_unscaled_float_audio_gets_a_warning(transformers_warnings):
    to_mono_float32(speech_like(100) * 3e4)
    assert "divide it by its full scale" in transformers_warnings.text


# NaN or Inf samples


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_errors_that_say_what_to_do(model, extractor, classifier, bad):
    clip = speech_like(4000)
    clip[123] = bad
    with pytest.raises(ValueError, match=r"1 NaN or infinite samples.*np.nan_to_num"):
        extractor([speech_like(4000), clip], sampling_rate=RATE)
    batch = torch.from_numpy(np.stack([speech_like(4000), clip, speech_like(4000)]))
    with pytest.raises(ValueError, match=r"rows \[1\] hold NaN or infinite samples.*torch.nan_to_num"):
        model(batch)
    with pytest.raises(ValueError, match="NaN or infinite"):
        classifier(clip)


def test_float64_beyond_float32_range_is_reported_as_infinite(extractor):
    with pytest.raises(ValueError, match="NaN or infinite"):
        extractor(np.full(1000, 1e300), sampling_rate=RATE)


# Dtypes: int16 / int32 / int8 / uint8 / float16 / float64 arrays and tensors


PCM = [
    (np.int16, 2.0**15),
    (np.int32, 2.0**31),
    (np.int8, 2.0**7),
]


@pytest.mark.parametrize("dtype, scale", PCM)
def test_integer_pcm_is_scaled_to_float(extractor, dtype, scale):
    values = np.array([0, 1, -1, np.iinfo(dtype).max, np.iinfo(dtype).min], dtype=dtype)
    expected = values.astype(np.float64) / scale
    for clip in (values, torch.from_numpy(values)):
        output = extractor(clip, sampling_rate=RATE, return_tensors="np")["input_values"][0]
        assert output.dtype == np.float32
        np.testing.assert_allclose(output, expected, rtol=1e-7)


def test_uint8_pcm_is_centred_at_128(extractor):
    values = np.array([0, 128, 255], dtype=np.uint8)
    output = extractor(values, sampling_rate=RATE, return_tensors="np")["input_values"][0]
    np.testing.assert_allclose(output, [-1.0, 0.0, 127 / 128])


@pytest.mark.parametrize("dtype", [np.float16, np.float64, "bfloat16"])
def test_other_float_dtypes_are_cast_to_float32(model, extractor, dtype):
    clip = speech_like(6000)
    reference = logits_of(model, extractor, clip)
    if dtype == "bfloat16":
        converted = torch.from_numpy(clip).to(torch.bfloat16)
        tolerance = 3e-2
    else:
        converted = clip.astype(dtype)
        tolerance = 3e-3 if dtype == np.float16 else 1e-6
    torch.testing.assert_close(logits_of(model, extractor, converted), reference, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize(
    "clip, message",
    [
        (np.zeros(100, np.int64), "integer PCM must be int8, int16, int32 or uint8"),
        (np.zeros(100, np.complex64), "is complex"),
        (np.zeros(100, bool), "audio must be float or integer PCM"),
        (np.array(["a", "b"]), "audio must be float or integer PCM"),
    ],
)
def test_unsupported_dtypes_are_type_errors(extractor, clip, message):
    with pytest.raises(TypeError, match=message):
        extractor(clip, sampling_rate=RATE)


def test_the_model_refuses_integer_tensors_and_accepts_other_floats(model):
    with pytest.raises(TypeError, match="int16: x / 32768"):
        model(torch.zeros(1, 4000, dtype=torch.int16))
    waveform = torch.from_numpy(speech_like(4000))[None]
    with torch.no_grad():
        reference = model(waveform).logits
        torch.testing.assert_close(model(waveform.double()).logits, reference)
        torch.testing.assert_close(model(waveform.half()).logits, reference, atol=3e-3, rtol=3e-3)


# Stereo in (channels, samples) and (samples, channels) layout


def test_stereo_in_either_layout_is_mixed_down_to_mono(model, extractor, classifier):
    left, right = speech_like(6000, seed=1), speech_like(6000, seed=2)
    mono = (left + right) / 2
    expected = logits_of(model, extractor, mono)
    channels_first = np.stack([left, right])
    for clip in (channels_first, channels_first.T, torch.from_numpy(channels_first)):
        torch.testing.assert_close(logits_of(model, extractor, [clip]), expected)
        assert classifier(clip) == classifier(mono)


def test_a_bare_samples_by_channels_array_is_not_read_as_a_batch(extractor):
    with pytest.raises(ValueError, match=r"read as a batch of 6000 clips of 2 samples.*\[clip\]"):
        extractor(np.zeros((6000, 2), np.float32), sampling_rate=RATE)


def test_too_many_channels_and_too_many_dimensions_are_errors(model, extractor):
    with pytest.raises(ValueError, match="neither \\(channels, samples\\) nor \\(samples, channels\\)"):
        extractor([np.zeros((20, 30), np.float32)], sampling_rate=RATE)
    with pytest.raises(ValueError, match="expected \\(num_samples,\\) mono"):
        extractor([np.zeros((2, 2, 100), np.float32)], sampling_rate=RATE)
    with pytest.raises(ValueError, match="mix multi-channel audio down to mono"):
        model(torch.zeros(1, 2, 4000))


# Sampling rate: wrong or missing


def test_a_wrong_sampling_rate_is_an_error_that_says_how_to_resample(extractor):
    with pytest.raises(ValueError, match=r"sampling_rate=8000 Hz but this model expects 16000 Hz.*Audio\(sampling_rate"):
        extractor(speech_like(1000), sampling_rate=8000)


def test_a_missing_sampling_rate_warns_and_assumes_the_models(extractor, transformers_warnings):
    output = extractor(speech_like(1000), return_tensors="np")
    assert "No sampling_rate was passed" in transformers_warnings.text
    assert output["input_values"].shape == (1, 1000)


def test_the_pipeline_resamples_what_declares_its_rate(classifier):
    tone = lambda rate: (0.3 * np.sin(2 * np.pi * 300 * np.arange(rate) / rate)).astype(np.float32)  # noqa: E731
    at_16k = classifier(tone(16000), top_k=3)
    at_44k = classifier({"array": tone(44100), "sampling_rate": 44100}, top_k=3)
    assert [item["label"] for item in at_44k] == [item["label"] for item in at_16k]


# A batch of mixed lengths


def test_a_batch_of_mixed_lengths_gives_each_clip_its_own_result(model, extractor):
    clips = [speech_like(n, seed=n) for n in (300, 5000, 10480, 7000)]
    batch = extractor(clips, sampling_rate=RATE, return_tensors="pt")
    assert batch["input_values"].shape == (4, 10480)
    assert batch["attention_mask"].sum(-1).tolist() == [300, 5000, 10480, 7000]
    with torch.no_grad():
        batched = model(**batch).logits
    for row, clip in enumerate(clips):
        torch.testing.assert_close(batched[row], logits_of(model, extractor, clip)[0], atol=1e-5, rtol=1e-5)


# A 1-hour file


def test_an_hour_long_clip_is_cut_to_the_window_by_extractor_and_model(model, extractor, transformers_warnings):
    """Extractor and model classify the first window (with a warning); the pipeline slides over all of it."""
    hour = np.zeros(3600 * RATE, np.int16)  # 115 MB as int16; the first window is what the model sees
    hour[: model.config.num_samples] = (speech_like(model.config.num_samples) * 2**15).astype(np.int16)
    inputs = extractor(hour, sampling_rate=RATE, return_tensors="pt")
    assert "MeamtmAudioClassificationPipeline" in transformers_warnings.text
    assert inputs["input_values"].shape == (1, model.config.num_samples)
    with torch.no_grad():
        first_window = model(**inputs).logits
        long_tensor = torch.from_numpy(hour[: 60 * RATE].astype(np.float32) / 2**15)[None]
        torch.testing.assert_close(model(long_tensor).logits, first_window, atol=1e-5, rtol=1e-5)


def test_the_pipeline_classifies_an_hour_by_windows(classifier):
    hour = np.zeros(3600 * RATE, np.int16)
    window = classifier.model.config.num_samples
    result = classifier(hour, chunk_overlap=0.0, batch_size=64, return_segments=True, top_k=1)
    assert len(result["segments"]) == -(-hour.size // window)
    assert result["segments"][-1]["end"] == pytest.approx(3600.0)


# Properties


DTYPES = ["float32", "float64", "float16", "int16", "int32", "int8", "uint8", "torch-float32", "torch-int16"]


def make_clip(num_samples: int, dtype: str, amplitude: float, seed: int):
    rng = np.random.default_rng(seed)
    if dtype.startswith("torch-"):
        return torch.from_numpy(np.asarray(make_clip(num_samples, dtype[6:], amplitude, seed)))
    if dtype in ("int16", "int32", "int8", "uint8"):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, num_samples, endpoint=True).astype(dtype)
    return (rng.uniform(-1, 1, num_samples) * amplitude).astype(dtype)


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 12000), min_size=1, max_size=4),
    dtype=st.sampled_from(DTYPES),
    amplitude=st.sampled_from([0.0, 1e-6, 0.01, 1.0, 100.0, 3e4]),
    seed=st.integers(0, 2**16),
)
def test_any_finite_batch_gives_finite_logits(model, extractor, lengths, dtype, amplitude, seed):
    clips = [make_clip(n, dtype, amplitude, seed + i) for i, n in enumerate(lengths)]
    inputs = extractor(clips, sampling_rate=RATE, return_tensors="pt")
    expected_lengths = [min(n, model.config.num_samples) for n in lengths]
    assert inputs["input_values"].dtype == torch.float32
    assert inputs["input_values"].shape == (len(lengths), max(expected_lengths))
    assert inputs["attention_mask"].sum(-1).tolist() == expected_lengths
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (len(lengths), 3)
    assert torch.isfinite(logits).all()


@settings(max_examples=15, deadline=None)
@given(
    num_samples=st.integers(1, 40000),
    amplitude=st.sampled_from([0.0, 0.01, 1.0, 3e4]),
    overlap=st.sampled_from([0.0, 0.5, 0.9]),
    batch_size=st.integers(1, 5),
)
def test_the_pipeline_gives_probabilities_for_any_length(classifier, num_samples, amplitude, overlap, batch_size):
    clip = make_clip(num_samples, "float32", amplitude, num_samples)
    result = classifier(clip, chunk_overlap=overlap, batch_size=batch_size, top_k=3, return_segments=True)
    scores = [item["score"] for item in result["labels"]]
    assert np.isfinite(scores).all() and sum(scores) == pytest.approx(1.0, abs=1e-5)
    assert result["segments"][-1]["end"] == pytest.approx(num_samples / RATE)


@settings(max_examples=20, deadline=None)
@given(
    num_samples=st.integers(1, 5000),
    position=st.floats(0, 1),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
    dtype=st.sampled_from(["float32", "float64", "float16"]),
)
def test_any_non_finite_sample_is_refused_never_propagated(model, extractor, num_samples, position, bad, dtype):
    clip = make_clip(num_samples, dtype, 0.1, num_samples)
    clip[min(int(position * num_samples), num_samples - 1)] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        extractor(clip, sampling_rate=RATE)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(torch.from_numpy(clip.astype(np.float32))[None])
