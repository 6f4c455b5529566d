import pytest
from transformers import ASTConfig, AutoConfig

from meamtm import MeamtmConfig

from .conftest import tiny_config


def test_defaults_are_ast_base():
    config, ast = MeamtmConfig(), ASTConfig()
    for name in (
        "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
        "layer_norm_eps", "patch_size", "qkv_bias", "frequency_stride", "time_stride", "max_length", "num_mel_bins",
    ):
        assert getattr(config, name) == getattr(ast, name), name
    assert config.sampling_rate == 16000
    assert (config.win_length, config.hop_length, config.n_fft) == (400, 160, 512)


def test_derived_geometry():
    config = MeamtmConfig()
    assert config.patch_grid == (12, 101)
    assert config.num_patches == 1212  # + cls + distillation = AST's 1214 tokens
    assert config.num_mel_bins_read == 126  # AST's grid leaves its top 2 of 128 bands unread
    assert MeamtmConfig(num_mel_bins=64).num_mel_bins_read == 56
    assert MeamtmConfig(num_mel_bins=66).num_mel_bins_read == 66
    assert MeamtmConfig(num_mel_bins=40, frequency_stride=8).num_mel_bins_read == 40
    assert config.num_samples == 1023 * 160 + 400
    assert config.num_frames_of(config.num_samples) == 1024
    assert config.num_frames_of(160000) == 998
    assert config.num_frames_of(399) == 0
    assert config.mel_fmax == 8000


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(hidden_size=30, num_attention_heads=4), "not divisible by num_attention_heads=4"),
        (dict(fmax=9000), "above the Nyquist frequency 8000"),
        (dict(win_length=600), "win_length=600 is longer than n_fft=512"),
        (dict(patch_size=40, num_mel_bins=32), "patch_size=40 is larger than the spectrogram's num_mel_bins=32"),
        (dict(patch_size=16, max_length=10), "max_length=10"),
        (dict(mel_scale="bark"), "mel_scale='bark'"),
        (dict(stft_backend="cuda"), "stft_backend='cuda'"),
        (dict(stft_backend="fft", trainable_stft=True), "cannot train STFT kernels"),
        (dict(stft_precision="float16"), "stft_precision='float16'"),
        (dict(hop_length=0), "hop_length must be positive"),
        (dict(fmin=9000.0, fmax=8000), "fmin < fmax"),
        (dict(num_mel_bins=300), "num_mel_bins=300 exceeds the 257 frequency bins"),
        (dict(preemphasis=1.5), "preemphasis=1.5"),
        (dict(hidden_dropout_prob=1.0), "hidden_dropout_prob=1.0"),
        (dict(window="triangle-ish"), "window='triangle-ish'"),
        (dict(pooling="max"), "pooling='max'"),
        (dict(trim_silence_db=-10), "trim_silence_db=-10 must be a finite number of dB >= 0"),
        (dict(trim_silence_db=float("nan")), "trim_silence_db=nan"),
        (dict(trim_silence_margin=-0.1), "trim_silence_margin=-0.1 must be a finite number of seconds >= 0"),
    ],
)
def test_invalid_combinations_raise_value_error_naming_the_values(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MeamtmConfig(**overrides)


def test_round_trip_through_auto_config(tmp_path):
    config = tiny_config(id2label={0: "yes", 1: "no"}, spectrogram_mean=-3.0, trainable_mel=True)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, MeamtmConfig)
    stored = {key: value for key, value in config.to_dict().items() if key != "_name_or_path"}
    assert {key: loaded.to_dict()[key] for key in stored} == stored
    assert loaded.id2label == {0: "yes", 1: "no"}


def test_derived_values_are_not_stored():
    stored = MeamtmConfig().to_dict()
    for derived in ("num_samples", "patch_grid", "num_patches", "num_mel_bins_read", "mel_fmax", "nyquist"):
        assert derived not in stored
