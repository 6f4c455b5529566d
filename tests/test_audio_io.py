"""meamtm/audio_io.py: one decoder and resampler for training, inference and scripts."""

import numpy as np
import pytest
import soundfile

from meamtm.audio_io import audio_info, load_audio, resample, stream_audio


@pytest.fixture
def stereo_44k(tmp_path):
    """0.7 s of two different tones at 44.1 kHz, float WAV (a rate that does not divide 16 kHz)."""
    t = np.arange(int(0.7 * 44100)) / 44100
    stereo = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 1234 * t)], axis=1)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, stereo.astype(np.float32), 44100, subtype="FLOAT")
    return str(path)


def test_training_and_inference_read_the_same_samples(fsdd_test_files):
    from meamtm import MeamtmAudioClassificationPipeline, MeamtmFeatureExtractor, MeamtmForAudioClassification
    from meamtm.training.collate import AudioTransform
    from meamtm.training.data import LabelSpace

    from .conftest import tiny_config

    path = str(fsdd_test_files[7])  # 8 kHz 16-bit WAV, read at 16 kHz
    model = MeamtmForAudioClassification(tiny_config())
    classifier = MeamtmAudioClassificationPipeline(model=model, feature_extractor=MeamtmFeatureExtractor.from_model_config(model.config))
    inference = np.concatenate(list(classifier.load_blocks(path, block_samples=1000)))
    training = AudioTransform("audio", "label", LabelSpace(["7"], False), 16000, 16000, train=False).decode(
        {"path": path, "bytes": None}
    )
    assert training.dtype == inference.dtype == np.float32
    np.testing.assert_array_equal(training, inference)
    np.testing.assert_array_equal(training, load_audio(path, 16000))
    with open(path, "rb") as file:
        np.testing.assert_array_equal(training, load_audio(file.read(), 16000))
    assert len(training) == 2 * soundfile.info(path).frames


def test_resampling_an_array_equals_decoding_at_the_new_rate(fsdd_test_files, stereo_44k):
    # Mono: bit for bit. Stereo: mixing down before or inside the resampler rounds differently (1 float32 ulp).
    for path, rate, atol in ((str(fsdd_test_files[3]), 8000, 0.0), (stereo_44k, 44100, 1e-6)):
        native = load_audio(path, rate)
        decoded = load_audio(path, 16000)
        np.testing.assert_allclose(resample(native, rate, 16000), decoded, atol=atol, rtol=0)
        np.testing.assert_allclose(load_audio({"array": native, "sampling_rate": rate}, 16000), decoded, atol=atol, rtol=0)
    assert resample(native, 44100, 44100) is native


def test_stream_blocks_join_into_the_whole_file(stereo_44k):
    whole = load_audio(stereo_44k, 16000)
    blocks = list(stream_audio(stereo_44k, 16000, block_samples=777))
    assert max(len(block) for block in blocks) == 777
    # FFmpeg mixes the channels before resampling, torchcodec after: the same up to float32 rounding.
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6, rtol=0)
    assert len(whole) == pytest.approx(0.7 * 16000, abs=2)


def test_multi_channel_file_is_mixed_down(stereo_44k):
    left_right, _ = soundfile.read(stereo_44k, dtype="float32")
    mono = load_audio(stereo_44k, 44100)
    assert mono.shape == (left_right.shape[0],)
    np.testing.assert_allclose(mono, left_right.mean(axis=1), atol=1e-6)


def test_bad_sources_are_named(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEjunk" * 8)
    with pytest.raises(ValueError, match=r"Could not decode audio from .*broken\.wav"):
        load_audio(str(broken), 16000)
    with pytest.raises(ValueError, match="needs 'sampling_rate'"):
        load_audio({"array": np.zeros(10)}, 16000)
    with pytest.raises(ValueError, match=r"missing\.wav is not a file"):
        next(stream_audio(str(tmp_path / "missing.wav"), 16000, 100))


def test_audio_info_reads_the_header(stereo_44k):
    info = audio_info(stereo_44k)
    assert info.sampling_rate == 44100 and info.num_channels == 2 and info.duration_s == pytest.approx(0.7, abs=1e-3)
