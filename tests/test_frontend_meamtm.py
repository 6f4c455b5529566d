"""The frontend against ASTFeatureExtractor (its numpy path, as installed), and its own guarantees."""

import numpy as np
import pytest
import torch
from transformers import ASTFeatureExtractor

from meamtm import MeamtmConfig, MeamtmFrontend
from meamtm.frontend_meamtm import cepstral_smoothing_of, clip_envelope_of, kaldi_frame_operator, power_of

from .conftest import tiny_config


PARITY = 1e-4


def ast_features(clips, **kwargs) -> np.ndarray:
    extractor = ASTFeatureExtractor(**kwargs)
    return extractor(clips, sampling_rate=extractor.sampling_rate, return_tensors="np")["input_values"]


def padded_batch(clips):
    batch = torch.zeros(len(clips), max(len(clip) for clip in clips))
    for row, clip in enumerate(clips):
        batch[row, : len(clip)] = torch.from_numpy(clip)
    return batch, torch.tensor([len(clip) for clip in clips])


@pytest.fixture(scope="module")
def random_clips():
    rng = np.random.default_rng(1)
    return [
        (rng.standard_normal(160_000) * 0.1).astype(np.float32),  # 10 s
        (rng.standard_normal(170_000) * 0.5).astype(np.float32),  # longer than 1024 frames: cut
        (rng.uniform(-1, 1, 48_000)).astype(np.float32),
    ]


@pytest.mark.parametrize("backend", ["conv", "fft"])
def test_parity_with_ast_feature_extractor_on_fsdd(fsdd_clips_16k, backend):
    frontend = MeamtmFrontend(MeamtmConfig(stft_backend=backend))
    expected = ast_features(fsdd_clips_16k)
    batch, lengths = padded_batch(fsdd_clips_16k)
    with torch.no_grad():
        batched = frontend(batch, lengths).numpy()
    assert batched.shape == expected.shape == (10, 1024, 128)
    np.testing.assert_allclose(batched, expected, atol=PARITY, rtol=0)
    with torch.no_grad():  # each clip alone, no mask: the same features as in the padded batch
        alone = np.stack([frontend(torch.from_numpy(clip)[None])[0].numpy() for clip in fsdd_clips_16k])
    np.testing.assert_allclose(alone, expected, atol=PARITY, rtol=0)


@pytest.mark.parametrize("backend", ["conv", "fft"])
def test_parity_with_ast_feature_extractor_on_random_clips(random_clips, backend):
    frontend = MeamtmFrontend(MeamtmConfig(stft_backend=backend))
    batch, lengths = padded_batch(random_clips)
    with torch.no_grad():
        features = frontend(batch, lengths).numpy()
    np.testing.assert_allclose(features, ast_features(random_clips), atol=PARITY, rtol=0)


def test_parity_with_non_default_settings(fsdd_clips_16k):
    settings = dict(num_mel_bins=64, max_length=128, mean=-5.0, std=3.0)
    config = MeamtmConfig(num_mel_bins=64, max_length=128, spectrogram_mean=-5.0, spectrogram_std=3.0)
    batch, lengths = padded_batch(fsdd_clips_16k)
    with torch.no_grad():
        features = MeamtmFrontend(config)(batch, lengths).numpy()
    np.testing.assert_allclose(features, ast_features(fsdd_clips_16k, **settings), atol=PARITY, rtol=0)


@pytest.mark.parametrize("length", [0, 1, 399, 400, 401, 559, 560, 12_345, 164_080, 200_000])
def test_any_length_alone_or_padded_in_a_batch(length):
    """Frames come from the clip's true length; shorter clips pad with AST's padding frames."""
    config = tiny_config()
    frontend = MeamtmFrontend(config)
    clip = torch.randn(length) * 0.2
    batch = torch.zeros(2, max(length, 15_000) + 777)
    batch[0, :length] = clip
    batch[1] = torch.randn(batch.shape[1]) * 0.2
    lengths = torch.tensor([length, batch.shape[1]])
    with torch.no_grad():
        in_batch = frontend(batch, lengths)[0]
        alone = frontend(clip[None])[0]
    torch.testing.assert_close(in_batch, alone, atol=1e-6, rtol=0)
    frames = min(config.num_frames_of(length), config.max_length)
    padding = (0 - config.spectrogram_mean) / (2 * config.spectrogram_std)
    assert torch.all(alone[frames:] == padding)
    if frames:
        assert not torch.any(alone[:frames] == padding)


def test_float32_precision_option_is_close():
    """float32 STFT is the fast option; it stays within 5e-4 of the float64 default on real-ish audio."""
    waveform = torch.randn(2, 40_000) * 0.1
    exact = MeamtmFrontend(tiny_config(stft_backend="conv"))(waveform)
    for backend in ("conv", "fft"):
        fast = MeamtmFrontend(tiny_config(stft_backend=backend, stft_precision="float32"))(waveform)
        torch.testing.assert_close(fast, exact, atol=5e-4, rtol=0)


def test_folded_kernels_are_the_kaldi_frame_operator_on_nnaudio_basis():
    """The conv kernels equal nnAudio's Fourier basis applied after Kaldi's per-frame steps."""
    config = tiny_config()
    frontend = MeamtmFrontend(config)
    frames = torch.randn(5, config.win_length, dtype=torch.float64)
    processed = frames @ torch.from_numpy(kaldi_frame_operator(config)).T
    expected = torch.fft.rfft(processed, n=config.n_fft)
    start = frontend.left_pad
    kernel_cos = frontend.stft.wcos[:, 0, start : start + config.win_length]
    kernel_sin = frontend.stft.wsin[:, 0, start : start + config.win_length]
    # nnAudio's basis starts at the kernel's first tap, so bin k is off by a phase of -2 pi k start / n_fft
    phase = torch.exp(2j * torch.pi * torch.arange(config.n_fft // 2 + 1, dtype=torch.float64) * start / config.n_fft)
    got = (frames @ kernel_cos.T - 1j * (frames @ kernel_sin.T)) * phase
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


def test_sparse_mel_product_equals_the_dense_one():
    frontend = MeamtmFrontend(tiny_config())
    squares = torch.rand(2, 7, frontend.mel_filters.shape[0], 2) ** 4 * 100
    sparse = frontend._log_mel_sparse(squares, frontend._sparse_mel_filters(frontend.mel_filters))
    torch.testing.assert_close(sparse, frontend._log_mel(power_of(squares), frontend.mel_filters), rtol=1e-6, atol=1e-6)
    assert frontend._sparse_mel_filters(frontend.mel_filters)._nnz() == int((frontend.mel_filters != 0).sum())


def test_trainable_mel_filters_learn_on_the_fft_back_end():
    """With a frozen STFT the FFT back end runs; trainable filters then take the dense product, with gradients."""
    frontend = MeamtmFrontend(tiny_config(trainable_mel=True))
    waveform = torch.randn(2, 12_000)
    assert frontend.backend_for(waveform) == "fft"
    frontend(waveform).sum().backward()
    assert frontend.mel_filters.grad is not None and frontend.mel_filters.grad.abs().sum() > 0
    with torch.no_grad():  # and the sparse product otherwise, with the same result
        torch.testing.assert_close(frontend(waveform), MeamtmFrontend(tiny_config())(waveform), atol=1e-6, rtol=0)


def test_trainable_frontend_has_parameters_and_finite_gradients_on_silence():
    config = tiny_config(trainable_stft=True, trainable_mel=True)
    frontend = MeamtmFrontend(config)
    parameters = dict(frontend.named_parameters())
    assert set(parameters) == {"stft.wsin", "stft.wcos", "mel_filters"}
    silence = torch.zeros(3, 12_000, requires_grad=True)
    frontend(silence).sum().backward()
    for name, parameter in parameters.items():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert torch.isfinite(silence.grad).all()
    tone = torch.sin(torch.arange(12_000) * 0.3)[None].repeat(2, 1)
    frontend.zero_grad()
    frontend(tone).sum().backward()
    assert parameters["stft.wcos"].grad.abs().sum() > 0


def test_frozen_kernels_stay_out_of_the_state_dict():
    assert list(MeamtmFrontend(tiny_config()).state_dict()) == []
    trainable = MeamtmFrontend(tiny_config(trainable_stft=True))
    assert set(trainable.state_dict()) == {"stft.wsin", "stft.wcos"}


def test_fft_back_end_equals_nnaudio_convolution():
    """The CPU fast path is held to the nnAudio layer (float64 both: far inside 1e-4)."""
    waveform = torch.randn(4, 30_000) * torch.logspace(-4, 0, 4)[:, None]
    conv = MeamtmFrontend(tiny_config(stft_backend="conv"))
    fft = MeamtmFrontend(tiny_config(stft_backend="fft"))
    assert conv.backend_for(waveform) == "conv" and fft.backend_for(waveform) == "fft"
    torch.testing.assert_close(fft(waveform), conv(waveform), atol=1e-5, rtol=0)


@pytest.mark.parametrize("piece_frames", [1, 7, 64, 200])
def test_fft_pieces_of_part_of_a_clip_or_several_clips_give_the_same_features(monkeypatch, piece_frames):
    """The FFT back end tiles the batch into pieces of whole frames; any tiling gives the conv result."""
    from meamtm import frontend_meamtm

    config = tiny_config(stft_backend="fft")
    monkeypatch.setattr(frontend_meamtm, "FFT_PIECE_BYTES", piece_frames * config.n_fft * 8)
    frontend = MeamtmFrontend(config)
    pieces = frontend._fft_pieces(5, config.max_length)
    covered = torch.zeros(5, config.max_length, dtype=torch.int64)
    for clips, frames in pieces:
        covered[clips, frames] += 1
    assert torch.all(covered == 1)
    waveform = torch.randn(5, 12_000) * torch.logspace(-3, 0, 5)[:, None]
    lengths = torch.tensor([12_000, 11_000, 4_000, 400, 12_000])
    expected = MeamtmFrontend(tiny_config(stft_backend="conv"))(waveform, lengths)
    torch.testing.assert_close(frontend(waveform, lengths), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["conv", "fft"])
def test_features_are_stored_mel_major_for_the_patch_embedding(backend):
    """`(batch, max_length, num_mel_bins)` as AST's features, stored as the `(frequency, time)` image the
    patch embedding convolves, so it gets a contiguous input without a copy."""
    config = tiny_config(stft_backend=backend)
    features = MeamtmFrontend(config)(torch.randn(2, 12_000), torch.tensor([12_000, 5_000]))
    assert features.shape == (2, config.max_length, config.num_mel_bins)
    assert features.transpose(1, 2).is_contiguous()


def test_auto_back_end_uses_fft_on_cpu_only_when_frozen():
    waveform = torch.zeros(1, 1000)
    assert MeamtmFrontend(tiny_config()).backend_for(waveform) == "fft"
    assert MeamtmFrontend(tiny_config(trainable_stft=True)).backend_for(waveform) == "conv"
    assert MeamtmFrontend(tiny_config()).backend_for(waveform.requires_grad_()) == "conv"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_stays_in_its_precision_under_autocast_and_half(dtype):
    frontend = MeamtmFrontend(tiny_config())
    waveform = torch.randn(2, 8000) * 0.1
    reference = frontend(waveform)
    with torch.autocast("cpu", dtype=dtype):
        under_autocast = frontend(waveform)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, reference)
    frontend.to(dtype)
    assert frontend.stft.wcos.dtype == torch.float64 and frontend.mel_filters.dtype == torch.float32
    torch.testing.assert_close(frontend(waveform), reference)


@pytest.mark.parametrize("piece_frames", [7, 200])
def test_per_example_filter_banks_give_the_same_features_on_every_back_end_and_tiling(monkeypatch, piece_frames):
    """In training with filter-bank augmentation the mel product is batched; the FFT back end's pieces take
    their clips' banks, so any tiling gives the conv result of the same draw."""
    from meamtm import frontend_meamtm

    augmentation = dict(vtlp_max_warp=0.1, mel_tilt_db=10, mel_band_stop_width=6)
    monkeypatch.setattr(frontend_meamtm, "FFT_PIECE_BYTES", piece_frames * 512 * 8)
    waveform = torch.randn(5, 12_000) * torch.logspace(-3, 0, 5)[:, None]
    lengths = torch.tensor([12_000, 11_000, 4_000, 400, 12_000])
    features = {}
    for backend in ("conv", "fft"):
        torch.manual_seed(7)
        features[backend] = MeamtmFrontend(tiny_config(stft_backend=backend, **augmentation)).train()(waveform, lengths)
    torch.testing.assert_close(features["fft"], features["conv"], atol=1e-5, rtol=0)
    plain = MeamtmFrontend(tiny_config())(waveform, lengths)
    assert not torch.allclose(features["fft"], plain)
    assert features["fft"].transpose(1, 2).is_contiguous()


def test_per_clip_normalisation_ignores_padding_alone_or_in_a_batch():
    config = tiny_config(normalization="per_clip")
    frontend = MeamtmFrontend(config)
    clip = torch.randn(5_000) * 0.2
    batch = torch.randn(3, 15_000) * 0.2
    batch[0] = 0
    batch[0, :5_000] = clip
    batch[1, 5_000:] = 0.7  # loud padding that the mask excludes
    lengths = torch.tensor([5_000, 5_000, 15_000])
    with torch.no_grad():
        in_batch = frontend(batch, lengths)
        alone = frontend(clip[None])[0]
    torch.testing.assert_close(in_batch[0], alone, atol=1e-5, rtol=0)
    frames = config.num_frames_of(5_000)
    assert torch.all(alone[frames:] == 0) and torch.all(in_batch[1, frames:] == 0)
    torch.testing.assert_close(alone[:frames].mean(0), torch.zeros(config.num_mel_bins), atol=1e-5, rtol=0)
    with torch.no_grad():
        unmasked = frontend(batch[1:2])[0]  # without its mask, the loud tail counts: a different mean
    assert not torch.allclose(unmasked[:frames], in_batch[1, :frames], atol=1e-3)


def test_per_clip_normalisation_is_the_global_one_minus_the_clip_mean_and_cancels_the_level():
    waveform = torch.randn(2, 12_000) * 0.2
    lengths = torch.tensor([12_000, 6_000])
    config = tiny_config(normalization="per_clip")
    with torch.no_grad():
        per_clip = MeamtmFrontend(config)(waveform, lengths)
        global_ = MeamtmFrontend(tiny_config())(waveform, lengths)
        quieter = MeamtmFrontend(config)(waveform * 0.1, lengths)  # a level change: the same features
    frames = [config.num_frames_of(length) for length in (12_000, 6_000)]
    for row, count in enumerate(frames):
        real = global_[row, :count]
        torch.testing.assert_close(per_clip[row, :count], real - real.mean(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(quieter, per_clip, atol=1e-4, rtol=0)
    assert per_clip.transpose(1, 2).is_contiguous()


def test_per_clip_normalisation_has_finite_gradients_on_silence():
    frontend = MeamtmFrontend(tiny_config(normalization="per_clip", trainable_mel=True))
    waveform = torch.cat([torch.zeros(1, 9_000), torch.randn(1, 9_000)]).requires_grad_()
    frontend(waveform, torch.tensor([9_000, 3_000])).square().sum().backward()
    assert torch.isfinite(waveform.grad).all() and torch.isfinite(frontend.mel_filters.grad).all()


def test_per_clip_envelope_removes_the_smooth_part_of_the_clip_mean_and_keeps_a_steady_tone():
    config = tiny_config(normalization="per_clip_envelope", envelope_coefficients=6)
    sampling_rate, length = config.sampling_rate, 12_000
    time = torch.arange(length) / sampling_rate
    tone = 0.3 * torch.sin(2 * torch.pi * 1_000 * time)
    waveform = torch.stack([tone + 0.05 * torch.randn(length), 0.2 * torch.randn(length)])
    lengths = torch.tensor([length, 7_000])
    frontend = MeamtmFrontend(config)
    with torch.no_grad():
        envelope = frontend(waveform, lengths)
        global_ = MeamtmFrontend(tiny_config())(waveform, lengths)
        quieter = frontend(waveform * 0.1, lengths)  # a level change: the same features
    projection = torch.from_numpy(clip_envelope_of(config)).float()
    for row, length_ in enumerate(lengths.tolist()):
        count = config.num_frames_of(length_)
        real = global_[row, :count]
        torch.testing.assert_close(envelope[row, :count], real - real.mean(0) @ projection, atol=1e-4, rtol=0)
        assert torch.all(envelope[row, count:] == 0)
    torch.testing.assert_close(quieter, envelope, atol=1e-3, rtol=0)
    # The tone's bands stay far above the rest of the clip's mean; "per_clip" flattens every band's mean to 0.
    band_means = envelope[0].mean(0)
    peak = int(band_means.argmax())
    assert band_means[peak] - band_means.median() > 0.5
    flat = MeamtmFrontend(tiny_config(normalization="per_clip"))
    with torch.no_grad():
        assert flat(waveform, lengths)[0].mean(0).abs().max() < 1e-5
    assert "clip_envelope" not in frontend.state_dict()


def test_per_clip_envelope_of_every_coefficient_is_per_clip_and_ignores_padding():
    bins = tiny_config().num_mel_bins
    batch = torch.randn(2, 15_000) * 0.2
    batch[0, 5_000:] = 0.7  # loud padding that the mask excludes
    lengths = torch.tensor([5_000, 15_000])
    every = MeamtmFrontend(tiny_config(normalization="per_clip_envelope", envelope_coefficients=bins))
    envelope = MeamtmFrontend(tiny_config(normalization="per_clip_envelope"))
    with torch.no_grad():
        torch.testing.assert_close(
            every(batch, lengths), MeamtmFrontend(tiny_config(normalization="per_clip"))(batch, lengths),
            atol=1e-5, rtol=0,
        )
        torch.testing.assert_close(envelope(batch, lengths)[0], envelope(batch[:1, :5_000])[0], atol=1e-5, rtol=0)
    level_only = MeamtmFrontend(tiny_config(normalization="per_clip_envelope", envelope_coefficients=1))
    with torch.no_grad():
        out = level_only(batch[1:])[0]
    assert out.mean().abs() < 1e-5 and out.mean(0).std() > 0.01  # the level goes, the colour stays


def test_per_clip_envelope_has_finite_gradients_on_silence():
    frontend = MeamtmFrontend(tiny_config(normalization="per_clip_envelope", trainable_mel=True))
    waveform = torch.cat([torch.zeros(1, 9_000), torch.randn(1, 9_000)]).requires_grad_()
    frontend(waveform, torch.tensor([9_000, 3_000])).square().sum().backward()
    assert torch.isfinite(waveform.grad).all() and torch.isfinite(frontend.mel_filters.grad).all()


@pytest.mark.parametrize("normalization", ["per_clip", "per_clip_envelope"])
def test_clip_mean_over_active_frames_ignores_the_silence_around_a_word(normalization):
    config = tiny_config(normalization=normalization, clip_mean_range_db=30)
    hop = config.hop_length
    word = torch.randn(4_000) * 0.3 * torch.hann_window(4_000)
    lead = 20 * hop  # 20 frames of faint noise, 60 dB under the word
    with_silence = torch.cat([torch.randn(lead) * 3e-4, word, torch.zeros(3_000)])
    frontend, every_frame = MeamtmFrontend(config), MeamtmFrontend(tiny_config(normalization=normalization))
    with torch.no_grad():
        alone, padded = frontend(word[None])[0], frontend(with_silence[None])[0]
        plain_alone, plain_padded = every_frame(word[None])[0], every_frame(with_silence[None])[0]
        batch = frontend(torch.stack([with_silence, torch.cat([word, torch.zeros(lead + 3_000)])]),
                         torch.tensor([with_silence.numel(), word.numel()]))
    frames = config.num_frames_of(word.numel())
    loud = slice(3, frames - 3)  # the word's louder frames, whose neighbours are the word too
    torch.testing.assert_close(padded[20:][loud], alone[loud], atol=1e-4, rtol=0)
    assert (plain_padded[20:][loud] - plain_alone[loud]).abs().max() > 0.05  # the plain mean moves with the silence
    torch.testing.assert_close(batch[0], padded, atol=1e-5, rtol=0)
    torch.testing.assert_close(batch[1, :frames], alone[:frames], atol=1e-5, rtol=0)
    assert torch.all(batch[1, frames:] == 0)


def test_clip_mean_over_active_frames_has_finite_gradients_and_is_checked():
    frontend = MeamtmFrontend(tiny_config(normalization="per_clip", clip_mean_range_db=20, trainable_mel=True))
    waveform = torch.cat([torch.zeros(1, 9_000), torch.randn(1, 9_000)]).requires_grad_()
    frontend(waveform, torch.tensor([9_000, 3_000])).square().sum().backward()
    assert torch.isfinite(waveform.grad).all() and torch.isfinite(frontend.mel_filters.grad).all()
    with pytest.raises(ValueError, match="clip_mean_range_db=30 needs a per-clip normalization"):
        tiny_config(clip_mean_range_db=30)
    with pytest.raises(ValueError, match="clip_mean_range_db=-1"):
        tiny_config(normalization="per_clip", clip_mean_range_db=-1)


def test_global_and_per_clip_channels_are_the_two_normalisations_alone_or_in_a_batch():
    waveform = torch.randn(3, 12_000) * 0.2
    waveform[1, 6_000:] = 0.7  # loud padding that the mask excludes
    lengths = torch.tensor([12_000, 6_000, 9_000])
    with torch.no_grad():
        both = MeamtmFrontend(tiny_config(normalization="global+per_clip"))(waveform, lengths)
        global_ = MeamtmFrontend(tiny_config())(waveform, lengths)
        per_clip = MeamtmFrontend(tiny_config(normalization="per_clip"))(waveform, lengths)
        alone = MeamtmFrontend(tiny_config(normalization="global+per_clip"))(waveform[1:2, :6_000])[0]
    assert both.shape == (*global_.shape, 2)
    torch.testing.assert_close(both[..., 0], global_, atol=0, rtol=0)
    torch.testing.assert_close(both[..., 1], per_clip, atol=0, rtol=0)
    torch.testing.assert_close(alone, both[1], atol=1e-5, rtol=0)


def test_a_steady_tone_keeps_its_spectrum_in_the_global_channel_only():
    """Per-clip normalisation flattens a held tone to 0; the global channel keeps it, so the classes of steady
    sounds that `"per_clip"` would merge stay apart."""
    config = tiny_config(normalization="global+per_clip")
    time = torch.arange(16_000) / config.sampling_rate
    tones = torch.stack([0.3 * torch.sin(2 * torch.pi * f * time) for f in (500.0, 2_000.0)])
    with torch.no_grad():
        features = MeamtmFrontend(config)(tones)
    frames = config.num_frames_of(16_000)
    global_, per_clip = features[:, :frames, :, 0], features[:, :frames, :, 1]
    # Each tone's spectrum over the clip: apart in the global channel, 0 for both in the per-clip one.
    assert (global_[0].mean(0) - global_[1].mean(0)).abs().amax() > 1.0
    torch.testing.assert_close(per_clip.mean(1), torch.zeros(2, config.num_mel_bins), atol=1e-5, rtol=0)


def test_two_channels_reach_a_two_channel_patch_embedding_and_train():
    from meamtm import MeamtmForAudioClassification

    model = MeamtmForAudioClassification(
        tiny_config(normalization="global+per_clip", padding_mode="longest", num_labels=3, trainable_mel=True,
                    freq_mask_param=4, time_mask_param=4)
    )
    assert model.config.spectrogram_channels == 2
    assert model.meamtm.embeddings.patch_embeddings.projection.in_channels == 2
    waveform, lengths = torch.randn(4, 9_000) * 0.2, torch.tensor([9_000, 7_000, 5_000, 9_000])
    mask = (torch.arange(9_000)[None, :] < lengths[:, None]).long()
    loss = model.train()(waveform, attention_mask=mask, labels=torch.tensor([0, 1, 2, 0])).loss
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(model.meamtm.frontend.mel_filters.grad).all()
    model.eval()
    with torch.no_grad():
        alone = model(waveform[2:3, :5_000]).logits
        in_batch = model(waveform, attention_mask=mask).logits[2:3]
    torch.testing.assert_close(alone, in_batch, atol=1e-5, rtol=1e-5)


def test_normalisation_setting_is_checked():
    with pytest.raises(ValueError, match="normalization='clip' is not one of"):
        tiny_config(normalization="clip")
    with pytest.raises(ValueError, match="do_normalize=False normalises nothing"):
        tiny_config(normalization="per_clip", do_normalize=False)
    with pytest.raises(ValueError, match="do_normalize=False normalises nothing"):
        tiny_config(normalization="per_clip_envelope", do_normalize=False)
    with pytest.raises(ValueError, match="envelope_coefficients=0 must be in \\[1, num_mel_bins="):
        tiny_config(normalization="per_clip_envelope", envelope_coefficients=0)
    tiny_config(envelope_coefficients=0)  # unused with the global mean
    with pytest.raises(ValueError, match="do_normalize=False normalises nothing"):
        tiny_config(normalization="global+per_clip", do_normalize=False)


def test_cepstral_smoothing_is_a_symmetric_projection_that_keeps_constants_and_envelopes():
    config = tiny_config(cepstral_coefficients=10)
    projection = cepstral_smoothing_of(config)
    bins = config.num_mel_bins
    np.testing.assert_allclose(projection, projection.T, atol=1e-12)
    np.testing.assert_allclose(projection @ projection, projection, atol=1e-12)
    np.testing.assert_allclose(np.ones(bins) @ projection, np.ones(bins), atol=1e-12)
    assert np.trace(projection) == pytest.approx(10)
    # A slow envelope (low quefrency) stays; a ripple as fine as pitch harmonics (high quefrency) goes.
    position = (np.arange(bins) + 0.5) / bins
    envelope, ripple = np.cos(np.pi * 2 * position), np.cos(np.pi * (bins - 3) * position)
    np.testing.assert_allclose((envelope + ripple) @ projection, envelope, atol=1e-9)
    np.testing.assert_allclose(cepstral_smoothing_of(tiny_config(cepstral_coefficients=bins)), np.eye(bins), atol=1e-12)


@pytest.mark.parametrize("normalization", ["global", "per_clip"])
def test_cepstral_smoothing_smooths_every_frame_and_ignores_padding(normalization):
    smooth = MeamtmFrontend(tiny_config(cepstral_coefficients=12, normalization=normalization))
    plain = MeamtmFrontend(tiny_config(normalization=normalization))
    assert not hasattr(plain, "cepstral_smoothing")
    batch = torch.randn(2, 15_000) * 0.2
    batch[0, 5_000:] = 0.7  # loud padding that the mask excludes
    lengths = torch.tensor([5_000, 15_000])
    with torch.no_grad():
        smoothed, unsmoothed = smooth(batch, lengths), plain(batch, lengths)
        alone = smooth(batch[:1, :5_000])[0]
    projection = torch.from_numpy(cepstral_smoothing_of(smooth.config)).float()
    torch.testing.assert_close(smoothed, unsmoothed @ projection, atol=1e-4, rtol=0)
    torch.testing.assert_close(smoothed[0], alone, atol=1e-5, rtol=0)
    frames = smooth.config.num_frames_of(5_000)
    torch.testing.assert_close(smoothed[0, frames:], unsmoothed[0, frames:], atol=1e-6, rtol=0)  # padding as it was
    assert smoothed.transpose(1, 2).is_contiguous()
    assert "cepstral_smoothing" not in smooth.state_dict()  # derived from the config, like the mel filters


def test_cepstral_coefficients_are_checked():
    with pytest.raises(ValueError, match="cepstral_coefficients=65 must be in \\[1, num_mel_bins=64\\]"):
        tiny_config(num_mel_bins=64, cepstral_coefficients=65)
    with pytest.raises(ValueError, match="cepstral_coefficients=-1"):
        tiny_config(cepstral_coefficients=-1)


def test_trainable_mel_filters_learn_with_padding_masks():
    """Padding frames are written after the mel product; with filters that learn, their gradients stay finite."""
    frontend = MeamtmFrontend(tiny_config(trainable_mel=True))
    frontend(torch.randn(2, 9_000), torch.tensor([9_000, 3_000])).sum().backward()
    assert torch.isfinite(frontend.mel_filters.grad).all() and frontend.mel_filters.grad.abs().sum() > 0


def numpy_trim(config, clip: np.ndarray) -> np.ndarray:
    """The reference: frames of `win_length` every `hop_length` wholly inside the clip, level 10 log10 of the
    variance of each frame's samples, the span of those within `trim_silence_db` of the loudest, plus the margin."""
    win, hop = config.win_length, config.hop_length
    if len(clip) < win:
        return clip
    frames = np.lib.stride_tricks.sliding_window_view(clip.astype(np.float64), win)[::hop]
    level = 10 * np.log10(frames.var(axis=1) + 1e-10)
    active = np.flatnonzero(level >= level.max() - config.trim_silence_db)
    margin = round(config.trim_silence_margin * config.sampling_rate)
    start = max(active[0] * hop - margin, 0)
    end = min(active[-1] * hop + win + margin, len(clip))
    return clip[start:end]


def word_in_quiet(generator, lead: int, word: int, tail: int, quiet: float = 0.0, dc: float = 0.0) -> np.ndarray:
    """A 'word' (noise under a rising and falling envelope) between stretches of quiet (hiss of `quiet` rms)."""
    envelope = np.sin(np.linspace(0, np.pi, word)) ** 0.5
    clip = np.concatenate([
        generator.normal(0, quiet, lead),
        0.3 * envelope * generator.normal(0, 1, word),
        generator.normal(0, quiet, tail),
    ])
    return (clip + dc).astype(np.float32)


def test_trim_silence_cuts_each_clip_as_the_reference_does_in_a_batch():
    from meamtm.frontend_meamtm import trim_silence

    config = MeamtmConfig(sampling_rate=8000, win_length=200, hop_length=80, n_fft=256, trim_silence_db=30)
    generator = np.random.default_rng(0)
    clips = [
        word_in_quiet(generator, 1600, 3000, 2400),  # digital silence around the word
        word_in_quiet(generator, 400, 2500, 3000, quiet=1e-4),  # a faint hiss, 60 dB down: cut
        word_in_quiet(generator, 800, 2000, 800, quiet=0.05),  # a loud hiss, 15 dB down: kept
        word_in_quiet(generator, 1000, 1500, 1000, quiet=1e-5, dc=0.2),  # a DC offset is not sound
        word_in_quiet(generator, 0, 150, 0),  # shorter than one frame: kept whole
        np.zeros(3000, np.float32),  # nothing above the floor: kept whole
    ]
    waveforms, lengths = padded_batch(clips)
    trimmed, new_lengths = trim_silence(config, waveforms, lengths)
    cut = 0
    for row, clip in enumerate(clips):
        want = numpy_trim(config, clip) if row < 4 else clip
        assert int(new_lengths[row]) == len(want), row
        np.testing.assert_array_equal(trimmed[row, : len(want)].numpy(), want)
        assert not trimmed[row, len(want) :].any()  # zeros after the clip
        cut += len(want) < len(clip)
    assert cut == 3  # the first, second and fourth clips lose their quiet; the loud hiss stays
    alone = [trim_silence(config, torch.from_numpy(clip)[None], None) for clip in clips]
    for row, (values, length) in enumerate(alone):
        assert int(length[0]) == int(new_lengths[row])
        torch.testing.assert_close(values[0, : int(length[0])], trimmed[row, : int(length[0])], rtol=0, atol=0)


def test_a_model_that_trims_silence_hears_a_word_the_same_after_any_quiet():
    from meamtm import MeamtmForAudioClassification

    generator = np.random.default_rng(1)
    word = word_in_quiet(generator, 0, 4000, 0)
    quiet = 800 + 400  # the 0.05 s kept at 16 kHz, and a frame that reaches into the word; leads in whole hops
    outputs = {}
    for trim in (0, 30):
        for padding_mode in ("max_length", "longest"):
            torch.manual_seed(0)
            config = tiny_config(num_labels=3, trim_silence_db=trim, padding_mode=padding_mode)
            model = MeamtmForAudioClassification(config).eval()
            clips = [np.concatenate([np.zeros(quiet + lead, np.float32), word, np.zeros(quiet + tail, np.float32)])
                     for lead, tail in ((0, 0), (1600, 0), (3200, 800))]
            waveforms, lengths = padded_batch(clips)
            mask = (torch.arange(waveforms.shape[1])[None] < lengths[:, None]).long()
            with torch.no_grad():
                batch = model(waveforms, attention_mask=mask).logits
                alone = torch.cat([model(torch.from_numpy(clip)[None]).logits for clip in clips])
            torch.testing.assert_close(batch, alone, rtol=0, atol=1e-5)
            outputs[trim, padding_mode] = batch
    for padding_mode in ("max_length", "longest"):
        trimmed, plain = outputs[30, padding_mode], outputs[0, padding_mode]
        torch.testing.assert_close(trimmed[1:], trimmed[:1].expand(2, -1), rtol=0, atol=1e-5)
        assert (plain[1:] - plain[:1]).abs().max() > 1e-3  # without the trim the quiet moves the logits


def test_trimming_silence_in_training_keeps_gradients_finite():
    from meamtm import MeamtmForAudioClassification

    torch.manual_seed(0)
    model = MeamtmForAudioClassification(tiny_config(num_labels=3, trim_silence_db=30, padding_mode="longest")).train()
    generator = np.random.default_rng(2)
    clips = [word_in_quiet(generator, 800 * k, 3000, 400 * k) for k in range(4)]
    waveforms, lengths = padded_batch(clips)
    mask = (torch.arange(waveforms.shape[1])[None] < lengths[:, None]).long()
    loss = model(waveforms, attention_mask=mask, labels=torch.tensor([0, 1, 2, 0])).loss
    loss.backward()
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    assert gradients and all(torch.isfinite(g).all() for g in gradients)


def test_trimming_silence_in_evaluation_only_leaves_training_as_without_it():
    from meamtm import MeamtmForAudioClassification

    generator = np.random.default_rng(3)
    clips = [word_in_quiet(generator, 1600, 3000, 800, quiet=1e-4), word_in_quiet(generator, 400, 4000, 2400)]
    waveforms, lengths = padded_batch(clips)
    mask = (torch.arange(waveforms.shape[1])[None] < lengths[:, None]).long()
    labels = torch.tensor([0, 1])
    logits = {}
    for name, overrides in {
        "plain": {}, "always": dict(trim_silence_db=30),
        "evaluation": dict(trim_silence_db=30, trim_silence_in_training=False),
    }.items():
        torch.manual_seed(0)
        model = MeamtmForAudioClassification(tiny_config(num_labels=3, padding_mode="longest", **overrides))
        logits[name, "train"] = model.train()(waveforms, attention_mask=mask, labels=labels).logits.detach()
        with torch.no_grad():
            logits[name, "eval"] = model.eval()(waveforms, attention_mask=mask).logits
    torch.testing.assert_close(logits["evaluation", "train"], logits["plain", "train"], rtol=0, atol=0)
    torch.testing.assert_close(logits["evaluation", "eval"], logits["always", "eval"], rtol=0, atol=0)
    assert (logits["always", "train"] - logits["plain", "train"]).abs().max() > 1e-3
    assert (logits["evaluation", "eval"] - logits["plain", "eval"]).abs().max() > 1e-3
