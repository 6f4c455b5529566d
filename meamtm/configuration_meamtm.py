"""MEAMTM configuration: an Audio Spectrogram Transformer whose log-mel frontend lives inside the model."""

import math

import torch
from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


# `pitch_shift_semitones` keeps a frame's spectral envelope up to this quefrency: harmonics of a pitch up to 400 Hz lie
# above it.
PITCH_ENVELOPE_QUEFRENCY_S = 0.0025


def evenly_around_one(spread: float, count: int) -> list[float]:
    """`count` factors evenly spaced over `[1 - spread, 1 + spread]`, the middle one exactly 1 (`count` odd); `[]`
    for a spread of 0 (off)."""
    if spread <= 0:
        return []
    return [1 + float(spread) * (2 * index - (count - 1)) / (count - 1) for index in range(count)]


@strict
class MeamtmConfig(PreTrainedConfig):
    r"""
    Configuration of a MEAMTM model. The transformer fields carry AST's names and defaults
    (`ASTConfig`, i.e. `MIT/ast-finetuned-audioset-10-10-0.4593`); the frontend fields default to the
    Kaldi filter bank that `ASTFeatureExtractor` computes, so a converted AST checkpoint gives the same
    predictions from raw waveforms.

    Frontend (waveform -> normalised log-mel, inside the model):
        sampling_rate (`int`, defaults to 16000): rate in Hz the model expects its waveforms at.
        win_length (`int`, defaults to 400): analysis window in samples (25 ms at 16 kHz).
        hop_length (`int`, defaults to 160): frame shift in samples (10 ms at 16 kHz).
        n_fft (`int`, defaults to 512): FFT size; each frame is zero-padded from `win_length` to it.
        window (`str`, defaults to `"hann"`): symmetric window, any name `transformers.audio_utils.window_function`
            knows (`"hann"`, `"hamming"`, `"povey"`, `"boxcar"`).
        fmin (`float`, defaults to 20.0) / fmax (`float`, *optional*, defaults to `sampling_rate / 2`): mel filter range in Hz.
        mel_scale (`str`, defaults to `"kaldi"`): `"kaldi"`, `"htk"` or `"slaney"`.
        preemphasis (`float`, defaults to 0.97): per-frame pre-emphasis coefficient (0 disables it).
        remove_dc_offset (`bool`, defaults to `True`): subtract each frame's mean before pre-emphasis.
        mel_floor (`float`, defaults to 1.1920929e-07): floor applied to mel energies before the log.
        do_normalize (`bool`, defaults to `True`): map log-mel `x` to `(x - spectrogram_mean) / (2 * spectrogram_std)`.
        spectrogram_mean (`float`, defaults to -4.2677393) / spectrogram_std (`float`, defaults to 4.5689974):
            AudioSet statistics, as in `ASTFeatureExtractor`.
        normalization (`str`, defaults to `"global"`): which mean `do_normalize` removes. `"global"` is AST's
            `spectrogram_mean` (converted AST checkpoints keep it). `"per_clip"` removes each mel band's mean over
            the clip's real frames (padding frames excluded), cepstral mean normalisation on the log-mel: a fixed
            microphone or room response and the recording level, which are offsets of the log-mel, cancel. The
            result is still divided by `2 * spectrogram_std` (one scale for every band: a per-band standard
            deviation over a short clip is noisy and would blow up near-silent bands); padding frames are 0.
            `"per_clip_envelope"` removes only the smooth envelope of that mean (its first `envelope_coefficients`
            DCT-II coefficients across the bands): the level and a microphone's or a voice's broad colour cancel,
            while a steady sound that is narrow in frequency (a held tone, a hum line) keeps its peak above its
            neighbours, so classes of steady sounds can still be told apart. `"global+per_clip"` gives the patch
            embedding both, as two input channels: AST's global normalisation (a recording's colour and a steady
            sound's spectrum kept) and `"per_clip"`'s (a recording's colour removed, and with it a steady vowel's or
            tone's own spectrum). Which one tells the classes apart is left to training; the patch embedding has
            `spectrogram_channels` (2) input channels, so its weights are not those of a one-channel model.
        clip_mean_range_db (`float`, defaults to 0.0): with a per-clip normalisation, take the clip's mean over
            the real frames whose level (the log of the frame's summed mel energy) is within this many dB of the
            clip's loudest frame, so that the length of the silence around a word does not move the mean; 0 takes
            every real frame.
        trim_silence_db (`float`, defaults to 0.0): before the spectrogram, cut each clip to the span from its
            first to its last frame whose level (the variance of its `win_length` samples, in dB) is within this
            many dB of its loudest frame, `trim_silence_margin` seconds kept on each side (`trim_silence` in
            `frontend_meamtm.py`): the quiet before and after a sound, which differs from recording to recording,
            does not reach the model (in training too unless `trim_silence_in_training=False`). 0 (AST) keeps every
            sample.
        trim_silence_margin (`float`, defaults to 0.05): seconds kept before the first and after the last frame
            that `trim_silence_db` keeps.
        trim_silence_in_training (`bool`, defaults to `True`): trim in training too; `False` trims in evaluation
            only, so that training sees each clip with the quiet around it, as it was recorded (the `fsdd` recipe's
            choice: trimming in training too cost an unseen voice more than it gained).
        envelope_coefficients (`int`, defaults to 8): with `normalization="per_clip_envelope"`, how many DCT-II
            coefficients of the clip's mean log-mel count as its envelope (1: the level only; `num_mel_bins`: the
            whole mean, as `"per_clip"`).
        cepstral_coefficients (`int`, defaults to 0): keep only the first this many coefficients
            of each frame's log-mel DCT-II (its cepstrum), and make the log-mel again from them: a smooth spectral
            envelope, the formants of speech without the harmonics of the speaker's pitch (an MFCC's liftering,
            kept on the mel axis so the patches still read a spectrogram). A fixed `(num_mel_bins, num_mel_bins)`
            projection after the log; it keeps each frame's mean, so padding and normalisation are unchanged.
            0 (AST) or `num_mel_bins` keeps every coefficient.
        trainable_stft (`bool`, defaults to `False`): make the (folded) STFT kernels parameters.
        trainable_mel (`bool`, defaults to `False`): make the mel filter bank a parameter.
        stft_backend (`str`, defaults to `"auto"`): `"conv"` runs nnAudio's STFT convolution; `"fft"` computes
            the same linear map with `torch.fft.rfft` (faster on CPU, frozen kernels only); `"auto"` uses
            `"fft"` on CPU when the STFT is frozen and `"conv"` otherwise.
        stft_precision (`str`, defaults to `"float64"`): dtype of the frame-to-power-spectrum stage. Float32
            cannot resolve bands some 70 dB below a frame's energy (the empty top octave of resampled 8 kHz
            audio, the lowest bins after pre-emphasis) to AST's numpy features: it deviates by up to ~1.5e-4
            there, float64 by ~1e-6. `"float32"` halves that stage's cost on the convolution back end.
            The mel, log and everything after run in float32 either way.

    Patching (log-mel -> patch tokens):
        num_mel_bins (`int`, defaults to 128): mel bands, the spectrogram's frequency size.
        max_length (`int`, defaults to 1024): frames the spectrogram is padded or cut to.
        patch_size (`int`, defaults to 16), frequency_stride (`int`, defaults to 10), time_stride (`int`, defaults to 10).
        padding_mode (`str`, defaults to `"max_length"`): `"max_length"` is AST's graph: every spectrogram is padded
            to `max_length` frames and every patch attends to every other, padding included. `"longest"` cuts the
            batch's spectrogram to its longest clip, rounded up to whole patch columns (`num_patch_columns_of`),
            takes the first time columns of the positional embeddings, and keeps the patches of shorter clips
            that lie wholly past their audio out of attention and out of mean pooling: a clip costs its own
            length. A converted AST checkpoint learned with padding, so its logits change on clips shorter than
            the window (docs/variable-length.md).

    Transformer (AST / ViT):
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act, qkv_bias,
        layer_norm_eps, initializer_range: as in `ASTConfig`.
        pooling (`str`, defaults to `"cls"`): what the classifier reads. `"cls"` is AST's mean of the cls and
            distillation tokens; `"mean"` is the mean of the patch tokens (as AudioMAE and BEATs pool), which
            gives every patch a direct gradient and trains a small model from scratch faster.
        recompute_mlp_activation (`bool`, defaults to `True`): in training, each MLP stores its pre-activation
            only and recomputes the activation in backward. Outputs and gradients are unchanged; it saves one
            `(batch, tokens, intermediate_size)` tensor per layer (the largest one a layer stores) for one extra
            elementwise pass. `False` gives autograd's default.

    Regularisation and augmentation (training only: an evaluating model runs the plain AST graph, and modules
    whose settings are off are not built):
        hidden_dropout_prob (`float`, defaults to 0.0), attention_probs_dropout_prob (`float`, defaults to 0.0).
        drop_path_rate (`float`, defaults to 0.0): stochastic depth (Huang et al. 2016, as DeiT and PaSST train): in
            training, each example skips a layer's attention and MLP branches with a probability rising linearly from
            0 at the first layer to `drop_path_rate` at the last; kept branches are scaled by `1 / (1 - p)`. 0 disables it.
        patchout_time (`float`, defaults to 0.0) / patchout_frequency (`float`, defaults to 0.0): structured
            patchout (PaSST): the fraction of the patch grid's time columns / frequency rows each example drops,
            rounded to whole columns and rows. PaSST drops 40 of 99 columns and 4 of 12 rows (0.4, 0.33).
        patchout_unstructured (`float`, defaults to 0.0): fraction of the remaining patches each example drops at
            random, rounded. Patchout runs after the positional embeddings are added and keeps the cls and
            distillation tokens; `num_training_patches` is the number of patch tokens left.
        freq_mask_param (`int`, defaults to 0) / time_mask_param (`int`, defaults to 0): SpecAugment, as
            torchaudio's `FrequencyMasking` / `TimeMasking` and AST's `freqm` / `timem` (AudioSet: 48 / 192):
            each example gets one band of up to this many mel bins / frames set to the log-mel of silence.
        mixup_alpha (`float`, defaults to 0.0): mixup with weights `max(l, 1 - l)`, `l ~ Beta(alpha, alpha)`
            (PaSST: 0.3, AST: 10); 0 disables it. Mixup mixes targets too, so it runs only in
            `MeamtmForAudioClassification.forward` when `labels` are given, and its loss uses the mixed targets
            (soft class probabilities for cross-entropy, mixed multi-hot for BCE). A training forward without
            labels (a loss computed outside the model) is not mixed, and a warning says so.
        mixup_probability (`float`, defaults to 1.0): fraction of examples that are mixed (AST: 0.5).
        mixup_level (`str`, defaults to `"spectrogram"`): mix the normalised log-mels (PaSST) or the waveforms
            before the frontend (`"waveform"`, AST).
        vtlp_max_warp (`float`, defaults to 0.0): vocal-tract-length perturbation (Jaitly & Hinton 2013) by the mel
            filter bank: each example's frequency axis is warped by a factor uniform in
            `[1 - vtlp_max_warp, 1 + vtlp_max_warp]` (0.1: 0.9-1.1), linearly up to 0.6 of the Nyquist frequency
            and onto what is left above it. 0 disables it.
        mel_tilt_db (`float`, defaults to 0.0): each example's filters get a gain rising linearly from the lowest to
            the highest filter by `t` dB, `t` uniform in `[-mel_tilt_db, mel_tilt_db]` (a microphone's tilt). 0 disables it.
        mel_band_stop_width (`int`, defaults to 0) / mel_band_stop_db (`float`, defaults to 20.0): each example has one
            band of up to `mel_band_stop_width` adjacent filters attenuated by a depth uniform in
            `[0, mel_band_stop_db]` dB (a notch in a microphone's response). Width 0 disables it.
        mel_low_pass_probability (`float`, defaults to 0.0) / mel_low_pass_min_cutoff (`float`, defaults to 0.75) /
            mel_low_pass_db (`float`, defaults to 60.0): with this probability an example's power above a cutoff
            uniform in `[mel_low_pass_min_cutoff, 1]` of the Nyquist frequency is attenuated by `mel_low_pass_db`
            dB (a recording whose microphone, codec or resampler stops short of the Nyquist frequency). 0 disables it.
            VTLP, tilt, band-stop and low-pass change the filter bank per example (`(batch, freq, num_mel_bins)`),
            in training only; the frontend then takes the dense mel product.
        pitch_shift_semitones (`float`, defaults to 0.0): a new voice's pitch with the same vocal tract, per example,
            by the power spectrum, in training only: each example's harmonics move by `s` semitones, `s` uniform in
            `[-pitch_shift_semitones, pitch_shift_semitones]`, while its spectral envelope (formants) and timing stay.
            Each frame's log power spectrum is split into its envelope (the first `pitch_envelope_coefficients` of its
            DCT, quefrencies under 2.5 ms) and the rest, the harmonics, which alone are stretched along frequency by
            `2 ** (s / 12)`; the frontend then takes the dense mel product. Speed perturbation moves pitch, formants
            and tempo together, VTLP formants alone; this moves pitch alone. 0 disables it.
        tempo_perturbation (`float`, defaults to 0.0): a speaker's pace, per example, in training only: each
            example's log-mel is stretched along time to a tempo `t` uniform in `[1 - tempo_perturbation,
            1 + tempo_perturbation]` (1.2: spoken a fifth faster) as the test-time tempo views stretch it (frame `j`
            is the clip's frame `j * t`, interpolated linearly; `round(n / t)` real frames kept, at most the
            window), its patch mask following. Each frame's spectrum, so pitch and formants, stays: the on-device
            counterpart of the waveform's WSOLA tempo change (`--tempo`). 0 disables it.
        freq_mixstyle_probability (`float`, defaults to 0.0) / freq_mixstyle_alpha (`float`, defaults to 0.3):
            Freq-MixStyle (CP-JKU, DCASE 2022; MixStyle, Zhou et al. 2021): each example, with this probability,
            gets each mel band's mean and standard deviation over its real frames replaced by a mix of its own and
            another clip's of the batch, weight `l ~ Beta(alpha, alpha)` on its own (CP-JKU: 0.4 and 0.3). A
            recording's colour and level become noise the model learns to read past, as per-clip normalisation
            removes them, but the features at evaluation keep them. 0 disables it.
        channel_dropout (`float`, defaults to 0.0): with two spectrogram channels (`normalization="global+per_clip"`),
            each training example loses one of them with this probability, the global or the per-clip one at even
            odds: every frame of that channel takes its value of silence, as SpecAugment's masks do, so the model
            learns to read each channel alone as well as both. 0 disables it.

    Test-time augmentation (evaluation only; `MeamtmForAudioClassification`):
        test_time_max_warp (`float`, defaults to 0.0): an evaluating classifier runs each clip through
            `test_time_warps` filter banks warped as VTLP warps them, by factors evenly spaced over
            `[1 - test_time_max_warp, 1 + test_time_max_warp]`, and averages the predictions (class probabilities;
            per-label probabilities for multi-label; values for regression). A voice whose vocal tract is longer or
            shorter than the training voices' is then also heard at the warp that suits it. For classes that such a
            warp leaves alone (words), not for classes told apart by pitch (a warp of 10 % moves a note by more than
            a semitone). It costs `test_time_warps` forward passes; training is unchanged, and so is `MeamtmModel` on
            its own. 0 disables it.
        test_time_warps (`int`, defaults to 3): how many warps, an odd number of at least 3 so that the plain
            filter bank is the middle one; hidden states and attentions are returned for that one. With
            `test_time_max_warp=0.1`: 0.9, 1.0 and 1.1, Jaitly & Hinton's VTLP range.
        test_time_max_shift (`int`, defaults to 0): an evaluating classifier also hears each clip shifted later by
            `test_time_shifts` whole frames evenly spaced over `[0, test_time_max_shift]`: that many frames of
            digital silence before its log-mel (what a delay of the waveform by that many hops makes of a clip that
            starts in silence, as the training delay augmentation `--shift_s` puts it), and averages the predictions
            over every shift (and every warp, with `test_time_max_warp`). The patch grid then meets the sound at
            several phases, since a shift of a fraction of `time_stride` moves every patch column's edges within
            the clip. At most `patch_size - time_stride` frames (6 at AST's 16 / 10): a shifted clip then stays
            within the patch columns of the clip as it is, so a clip gives the same output alone and in a batch,
            and every shift has the width of the plain view (exportable). A shifted clip that fills `max_length`
            (or the patch grid) loses its last frames. It costs `test_time_shifts` forward passes (times
            `test_time_warps`); 0 disables it.
        test_time_shifts (`int`, defaults to 3): how many shifts, at least 2 and at most `test_time_max_shift + 1`;
            the first is 0 (the clip as it is), whose hidden states and attentions are returned.
            `test_time_max_shift=6`: 0, 3 and 6 frames (0, 30 and 60 ms at a 10 ms hop).
        test_time_max_tempo (`float`, defaults to 0.0): an evaluating classifier also hears each clip at
            `test_time_tempos` tempi evenly spaced over `[1 - test_time_max_tempo, 1 + test_time_max_tempo]` (1.2:
            spoken a fifth faster) and averages the predictions over every tempo (and every warp and shift). The
            log-mel is stretched along time, on the device: frame `j` of a clip at tempo `t` is its frame `j * t`,
            interpolated linearly between the two nearest frames, and a clip of `n` real frames keeps `round(n / t)`
            of them (at most `max_length`), its patch columns and padding following; each frame's spectrum, so the
            voice's pitch and formants, stays. A speaker slower or faster than the training speakers is then also
            heard at a pace near theirs. Applied before the frame shifts. It costs `test_time_tempos` forward passes
            (times the warps and shifts); 0 disables it. Not exportable (the width of a stretched batch depends on
            its length): turn it off before `torch.export` or ONNX export.
        test_time_tempos (`int`, defaults to 3): how many tempi, an odd number of at least 3 so that the clip as
            it is is the middle one; hidden states and attentions are returned for it. With
            `test_time_max_tempo=0.2`: 0.8, 1.0 and 1.2.

    Derived values (`num_samples`, `num_frames_of`, `patch_grid`, `num_patch_columns_of`, `num_frames_of_columns`,
    `num_mel_bins_read`, `patchout_dropped`, `patchout_dropped_for`, `num_training_patches`) are properties or
    methods, never stored.
    """

    model_type = "meamtm"

    # Frontend
    sampling_rate: int = 16000
    win_length: int = 400
    hop_length: int = 160
    n_fft: int = 512
    window: str = "hann"
    fmin: float | int = 20.0
    fmax: float | int | None = None
    mel_scale: str = "kaldi"
    preemphasis: float | int = 0.97
    remove_dc_offset: bool = True
    mel_floor: float | int = 1.1920929e-07
    do_normalize: bool = True
    normalization: str = "global"
    cepstral_coefficients: int = 0
    envelope_coefficients: int = 8
    clip_mean_range_db: float | int = 0.0
    trim_silence_db: float | int = 0.0
    trim_silence_margin: float | int = 0.05
    trim_silence_in_training: bool = True
    spectrogram_mean: float | int = -4.2677393
    spectrogram_std: float | int = 4.5689974
    trainable_stft: bool = False
    trainable_mel: bool = False
    stft_backend: str = "auto"
    stft_precision: str = "float64"

    # Patching
    num_mel_bins: int = 128
    max_length: int = 1024
    patch_size: int = 16
    frequency_stride: int = 10
    time_stride: int = 10
    padding_mode: str = "max_length"

    # Transformer
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    qkv_bias: bool = True
    layer_norm_eps: float | int = 1e-12
    initializer_range: float | int = 0.02
    pooling: str = "cls"
    recompute_mlp_activation: bool = True

    # Regularisation and augmentation
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    drop_path_rate: float | int = 0.0
    patchout_time: float | int = 0.0
    patchout_frequency: float | int = 0.0
    patchout_unstructured: float | int = 0.0
    freq_mask_param: int = 0
    time_mask_param: int = 0
    mixup_alpha: float | int = 0.0
    mixup_probability: float | int = 1.0
    mixup_level: str = "spectrogram"
    vtlp_max_warp: float | int = 0.0
    mel_tilt_db: float | int = 0.0
    mel_band_stop_width: int = 0
    mel_band_stop_db: float | int = 20.0
    mel_low_pass_probability: float | int = 0.0
    mel_low_pass_min_cutoff: float | int = 0.75
    mel_low_pass_db: float | int = 60.0
    pitch_shift_semitones: float | int = 0.0
    tempo_perturbation: float | int = 0.0
    freq_mixstyle_probability: float | int = 0.0
    freq_mixstyle_alpha: float | int = 0.3
    channel_dropout: float | int = 0.0

    # Test-time augmentation
    test_time_max_warp: float | int = 0.0
    test_time_warps: int = 3
    test_time_max_shift: int = 0
    test_time_shifts: int = 3
    test_time_max_tempo: float | int = 0.0
    test_time_tempos: int = 3

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Cross-field checks live here rather than in `validate_*` methods: strict wraps those in its own
        # exception type, and callers expect a plain `ValueError` naming the values.
        self._check_consistency()

    @property
    def nyquist(self) -> float:
        return self.sampling_rate / 2

    @property
    def mel_fmax(self) -> float:
        """Upper edge of the mel filters in Hz (`fmax`, or the Nyquist frequency when unset)."""
        return float(self.fmax) if self.fmax is not None else self.nyquist

    @property
    def num_samples(self) -> int:
        """Waveform length in samples that fills exactly `max_length` frames (164080 at the defaults)."""
        return (self.max_length - 1) * self.hop_length + self.win_length

    def num_frames_of(self, num_samples: int) -> int:
        """Frames a clip of `num_samples` samples yields (Kaldi `snip_edges`: whole windows only), before padding."""
        if num_samples < self.win_length:
            return 0
        return 1 + (num_samples - self.win_length) // self.hop_length

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(frequency, time) size of the patch grid."""
        frequency = (self.num_mel_bins - self.patch_size) // self.frequency_stride + 1
        time = (self.max_length - self.patch_size) // self.time_stride + 1
        return frequency, time

    def num_patch_columns_of(self, num_frames: int) -> int:
        """Patch-grid time columns that hold `num_frames` frames: at least one, at most the grid's.

        Column `j` covers frames `[j * time_stride, j * time_stride + patch_size)`; the columns returned are the
        ones whose first frame is a real frame (column 0 always counts). `num_frames` may be a `torch.SymInt`.
        """
        columns = (torch.sym_max(num_frames, 1) - 1) // self.time_stride + 1
        return torch.sym_min(columns, self.patch_grid[1])

    @property
    def longest_num_samples(self) -> int:
        """Widest batch a compiled or exported `padding_mode="longest"` model reads: the samples whose frames each
        start within the grid's columns, `(time_stride * time - 1) * hop_length + win_length` (161840 at the
        defaults, 10.115 s; eager mode reads up to `num_samples`)."""
        return (self.time_stride * self.patch_grid[1] - 1) * self.hop_length + self.win_length

    def num_frames_of_columns(self, num_columns: int) -> int:
        """Frames a spectrogram of `num_columns` patch columns spans: `patch_size + (num_columns - 1) * time_stride`."""
        return self.patch_size + (num_columns - 1) * self.time_stride

    @property
    def num_mel_bins_read(self) -> int:
        """Mel bands the patch grid reads, `patch_size + (rows - 1) * frequency_stride`: the bands above them never
        reach the encoder (AST's 128 bands at stride 10 leave its top 2; 64 bands at stride 10 leave 8)."""
        return self.patch_size + (self.patch_grid[0] - 1) * self.frequency_stride

    @property
    def num_patches(self) -> int:
        frequency, time = self.patch_grid
        return frequency * time

    @property
    def patchout_dropped(self) -> tuple[int, int, int]:
        """(frequency rows, time columns, single patches) that patchout drops from each training example."""
        frequency, time = self.patch_grid
        rows, columns = round(self.patchout_frequency * frequency), round(self.patchout_time * time)
        return rows, columns, round(self.patchout_unstructured * (frequency - rows) * (time - columns))

    def patchout_dropped_for(self, grid: tuple[int, int]) -> tuple[int, int, int]:
        """`patchout_dropped` on the `(frequency, time)` grid a batch has (`padding_mode="longest"` cuts time
        columns); at least one column is kept, however few there are."""
        frequency, time = grid
        rows, columns = round(self.patchout_frequency * frequency), min(round(self.patchout_time * time), time - 1)
        return rows, columns, round(self.patchout_unstructured * (frequency - rows) * (time - columns))

    @property
    def uses_patchout(self) -> bool:
        return any(self.patchout_dropped)

    @property
    def uses_clip_envelope(self) -> bool:
        return self.normalization == "per_clip_envelope"

    @property
    def spectrogram_channels(self) -> int:
        """Channels of the frontend's output and of the patch embedding's input: 2 for `"global+per_clip"`."""
        return 2 if self.normalization == "global+per_clip" else 1

    @property
    def silence_value(self) -> float:
        """A log-mel of 0 after AST's global normalisation: what AST pads and masks with, in the global channel."""
        return -self.spectrogram_mean / (2 * self.spectrogram_std) if self.do_normalize else 0.0

    @property
    def per_clip_means(self) -> bool:
        """Whether the frontend removes clip means (in the only channel, or in the second)."""
        return self.do_normalize and self.normalization != "global"

    @property
    def uses_cepstral_smoothing(self) -> bool:
        return 0 < self.cepstral_coefficients < self.num_mel_bins

    @property
    def uses_filter_bank_augment(self) -> bool:
        return (
            self.vtlp_max_warp > 0
            or self.mel_tilt_db > 0
            or self.mel_band_stop_width > 0
            or self.mel_low_pass_probability > 0
        )

    @property
    def uses_pitch_shift(self) -> bool:
        return self.pitch_shift_semitones > 0

    @property
    def pitch_envelope_coefficients(self) -> int:
        """DCT coefficients of a frame's log power spectrum that `pitch_shift_semitones` keeps as its envelope: those
        of quefrencies under 2.5 ms (coefficient `k` of the `n_fft // 2 + 1` bins repeats about every
        `sampling_rate / k` Hz, so harmonics 400 Hz apart or closer, every voice's, are left out of it)."""
        return max(1, min(self.n_fft // 2 + 1, round(PITCH_ENVELOPE_QUEFRENCY_S * self.sampling_rate)))

    @property
    def test_time_warp_factors(self) -> list[float]:
        """The warp factors an evaluating classifier averages over (`test_time_max_warp`); `[]` when it is off."""
        return evenly_around_one(self.test_time_max_warp, self.test_time_warps)

    @property
    def test_time_frame_shifts(self) -> list[int]:
        """The frame shifts an evaluating classifier averages over (`test_time_max_shift`), the first 0; `[]` when it
        is off."""
        if self.test_time_max_shift <= 0:
            return []
        count, shift = self.test_time_shifts, self.test_time_max_shift
        return [round(shift * index / (count - 1)) for index in range(count)]

    @property
    def test_time_tempo_factors(self) -> list[float]:
        """The tempi an evaluating classifier averages over (`test_time_max_tempo`), the middle one 1; `[]` when it
        is off."""
        return evenly_around_one(self.test_time_max_tempo, self.test_time_tempos)

    @property
    def uses_freq_mixstyle(self) -> bool:
        return self.freq_mixstyle_probability > 0

    @property
    def num_training_patches(self) -> int:
        """Patch tokens per example in training, after patchout (`num_patches` without it)."""
        frequency, time = self.patch_grid
        rows, columns, patches = self.patchout_dropped
        return (frequency - rows) * (time - columns) - patches

    def _check_consistency(self):
        def positive(**values):
            for name, value in values.items():
                if value <= 0:
                    raise ValueError(f"{name} must be positive, got {name}={value}.")

        positive(
            sampling_rate=self.sampling_rate,
            win_length=self.win_length,
            hop_length=self.hop_length,
            n_fft=self.n_fft,
            num_mel_bins=self.num_mel_bins,
            max_length=self.max_length,
            patch_size=self.patch_size,
            frequency_stride=self.frequency_stride,
            time_stride=self.time_stride,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            spectrogram_std=self.spectrogram_std,
            mel_floor=self.mel_floor,
        )
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}: "
                "choose a number of heads that divides the hidden size."
            )
        if self.win_length > self.n_fft:
            raise ValueError(
                f"win_length={self.win_length} is longer than n_fft={self.n_fft}: raise n_fft to at least "
                f"{self.win_length} (the next power of two is {1 << (self.win_length - 1).bit_length()})."
            )
        if not 0 <= self.fmin < self.mel_fmax:
            raise ValueError(f"Need 0 <= fmin < fmax, got fmin={self.fmin}, fmax={self.mel_fmax}.")
        if self.mel_fmax > self.nyquist:
            raise ValueError(
                f"fmax={self.fmax} Hz is above the Nyquist frequency {self.nyquist} Hz of sampling_rate="
                f"{self.sampling_rate}: set fmax <= {self.nyquist} or leave it None."
            )
        if self.num_mel_bins > self.n_fft // 2 + 1:
            raise ValueError(
                f"num_mel_bins={self.num_mel_bins} exceeds the {self.n_fft // 2 + 1} frequency bins of n_fft="
                f"{self.n_fft}: use fewer mel bins or a larger n_fft."
            )
        if self.mel_scale not in ("kaldi", "htk", "slaney"):
            raise ValueError(f"mel_scale={self.mel_scale!r} is not one of 'kaldi', 'htk', 'slaney'.")
        if self.stft_backend not in ("auto", "conv", "fft"):
            raise ValueError(f"stft_backend={self.stft_backend!r} is not one of 'auto', 'conv', 'fft'.")
        if self.normalization not in ("global", "per_clip", "per_clip_envelope", "global+per_clip"):
            raise ValueError(
                f"normalization={self.normalization!r} is not one of 'global' (AST's mean), 'per_clip' (each "
                "band's mean over the clip), 'per_clip_envelope' (the smooth envelope of that mean) or "
                "'global+per_clip' (both, as two channels)."
            )
        if self.normalization != "global" and not self.do_normalize:
            raise ValueError(
                f"normalization={self.normalization!r} with do_normalize=False normalises nothing: set "
                "do_normalize=True, or leave normalization='global'."
            )
        if self.clip_mean_range_db < 0 or (self.clip_mean_range_db > 0 and self.normalization == "global"):
            raise ValueError(
                f"clip_mean_range_db={self.clip_mean_range_db} needs a per-clip normalization ('per_clip', "
                "'per_clip_envelope' or 'global+per_clip') "
                "and a value >= 0 (about 30 dB keeps a word's frames and drops the silence around it; 0: every frame)."
            )
        if not (math.isfinite(self.trim_silence_db) and self.trim_silence_db >= 0):
            raise ValueError(
                f"trim_silence_db={self.trim_silence_db} must be a finite number of dB >= 0: about 30 keeps a word "
                "and drops the quiet around it; 0 keeps every sample."
            )
        if not (math.isfinite(self.trim_silence_margin) and self.trim_silence_margin >= 0):
            raise ValueError(
                f"trim_silence_margin={self.trim_silence_margin} must be a finite number of seconds >= 0 (0.05 keeps "
                "50 ms of quiet on each side of what trim_silence_db keeps)."
            )
        if self.uses_clip_envelope and not 1 <= self.envelope_coefficients <= self.num_mel_bins:
            raise ValueError(
                f"envelope_coefficients={self.envelope_coefficients} must be in [1, num_mel_bins={self.num_mel_bins}] "
                "with normalization='per_clip_envelope' (1 removes the level only; about 8 a microphone's colour)."
            )
        if not 0 <= self.cepstral_coefficients <= self.num_mel_bins:
            raise ValueError(
                f"cepstral_coefficients={self.cepstral_coefficients} must be in [1, num_mel_bins={self.num_mel_bins}] "
                "(about 12-30 smooths away pitch harmonics), or 0 to keep the log-mel as it is."
            )
        if self.stft_precision not in ("float32", "float64"):
            raise ValueError(f"stft_precision={self.stft_precision!r} is not one of 'float32', 'float64'.")
        if self.stft_backend == "fft" and self.trainable_stft:
            raise ValueError(
                "stft_backend='fft' cannot train STFT kernels (trainable_stft=True): use stft_backend='conv' or 'auto'."
            )
        if not 0 <= self.preemphasis < 1:
            raise ValueError(f"preemphasis={self.preemphasis} must be in [0, 1).")
        for name, size in (("num_mel_bins", self.num_mel_bins), ("max_length", self.max_length)):
            if self.patch_size > size:
                raise ValueError(
                    f"patch_size={self.patch_size} is larger than the spectrogram's {name}={size}: "
                    f"use a patch_size <= {size} or a larger {name}."
                )
        for name, value in (
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            ("attention_probs_dropout_prob", self.attention_probs_dropout_prob),
            ("drop_path_rate", self.drop_path_rate),
        ):
            if not 0 <= value < 1:
                raise ValueError(f"{name}={value} must be in [0, 1).")
        self._check_augmentation()
        self._check_pooling()
        try:
            from transformers.audio_utils import window_function

            window_function(8, self.window)
        except ValueError as error:
            raise ValueError(f"window={self.window!r} is not a window transformers knows: {error}") from None

    def _check_pooling(self):
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"pooling={self.pooling!r} is not one of 'cls' (AST's) or 'mean' (of the patch tokens).")
        if self.padding_mode not in ("max_length", "longest"):
            raise ValueError(
                f"padding_mode={self.padding_mode!r} is not one of 'max_length' (AST's: every clip padded to "
                "max_length frames) or 'longest' (the batch's longest clip, padded patches masked)."
            )

    def _check_augmentation(self):
        for name in ("patchout_time", "patchout_frequency", "patchout_unstructured"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be a fraction in [0, 1).")
        if self.mixup_alpha < 0:
            raise ValueError(f"mixup_alpha={self.mixup_alpha} must be >= 0 (0 turns mixup off).")
        if self.num_training_patches < 1:
            raise ValueError(
                f"Patchout (patchout_frequency={self.patchout_frequency}, patchout_time={self.patchout_time}, "
                f"patchout_unstructured={self.patchout_unstructured}) drops every patch of the {self.patch_grid} "
                "grid: lower them."
            )
        if not 0 < self.mixup_probability <= 1:
            raise ValueError(f"mixup_probability={self.mixup_probability} must be in (0, 1].")
        if self.mixup_level not in ("waveform", "spectrogram"):
            raise ValueError(f"mixup_level={self.mixup_level!r} is not one of 'waveform', 'spectrogram'.")
        if not 0 <= self.vtlp_max_warp < 1:
            raise ValueError(
                f"vtlp_max_warp={self.vtlp_max_warp} must be in [0, 1): warp factors are drawn in [1 - v, 1 + v] "
                "and must stay positive (Jaitly & Hinton use about 0.1; 0 turns VTLP off)."
            )
        if self.mel_tilt_db < 0:
            raise ValueError(f"mel_tilt_db={self.mel_tilt_db} must be >= 0 (0 turns the tilt off).")
        if not 0 <= self.mel_band_stop_width <= self.num_mel_bins:
            raise ValueError(
                f"mel_band_stop_width={self.mel_band_stop_width} must be between 0 (off) and num_mel_bins="
                f"{self.num_mel_bins}."
            )
        if self.mel_band_stop_width > 0 and self.mel_band_stop_db <= 0:
            raise ValueError(
                f"mel_band_stop_width={self.mel_band_stop_width} with mel_band_stop_db={self.mel_band_stop_db} "
                "attenuates nothing: give a positive depth in dB, or set mel_band_stop_width=0."
            )
        if not 0 <= self.mel_low_pass_probability <= 1:
            raise ValueError(
                f"mel_low_pass_probability={self.mel_low_pass_probability} must be in [0, 1] "
                "(0 turns the low-pass off)."
            )
        if not 0 < self.mel_low_pass_min_cutoff <= 1:
            raise ValueError(
                f"mel_low_pass_min_cutoff={self.mel_low_pass_min_cutoff} must be in (0, 1]: it is the lowest cutoff "
                "drawn, as a fraction of the Nyquist frequency (0.75 is 3 kHz at 8 kHz, 6 kHz at 16 kHz)."
            )
        if self.mel_low_pass_probability > 0 and self.mel_low_pass_db <= 0:
            raise ValueError(
                f"mel_low_pass_probability={self.mel_low_pass_probability} with mel_low_pass_db={self.mel_low_pass_db} "
                "attenuates nothing: give a positive depth in dB, or set mel_low_pass_probability=0."
            )
        if not 0 <= self.pitch_shift_semitones <= 12:
            raise ValueError(
                f"pitch_shift_semitones={self.pitch_shift_semitones} must be in [0, 12]: shifts are drawn in [-s, s] "
                "semitones (about 2-4 covers the pitch of most adult voices around a speaker's own; 0 turns it off)."
            )
        if not 0 <= self.tempo_perturbation < 1:
            raise ValueError(
                f"tempo_perturbation={self.tempo_perturbation} must be in [0, 1): tempi are drawn in [1 - p, 1 + p] "
                "and must stay positive (0.25 gives 0.75-1.25; 0 turns it off)."
            )
        if not 0 <= self.freq_mixstyle_probability <= 1:
            raise ValueError(
                f"freq_mixstyle_probability={self.freq_mixstyle_probability} must be in [0, 1] (0 turns Freq-MixStyle off)."
            )
        if self.freq_mixstyle_alpha <= 0:
            raise ValueError(
                f"freq_mixstyle_alpha={self.freq_mixstyle_alpha} must be positive: it is the Beta distribution's "
                "concentration (CP-JKU use 0.3)."
            )
        if not 0 <= self.channel_dropout <= 1:
            raise ValueError(f"channel_dropout={self.channel_dropout} must be in [0, 1] (0 turns it off).")
        if self.channel_dropout > 0 and self.spectrogram_channels != 2:
            raise ValueError(
                f"channel_dropout={self.channel_dropout} drops one of two spectrogram channels, and "
                f"normalization={self.normalization!r} makes one: set normalization='global+per_clip' or channel_dropout=0."
            )
        self._check_views_around_one(
            "test_time_max_warp", "test_time_warps",
            "the warp factors span [1 - w, 1 + w] and must stay positive (0 turns test-time warping off).",
            "the plain filter bank is the middle warp (3 gives 0.9, 1.0 and 1.1 with test_time_max_warp=0.1).",
        )
        most = max(self.patch_size - self.time_stride, 0)
        if not 0 <= self.test_time_max_shift <= most:
            raise ValueError(
                f"test_time_max_shift={self.test_time_max_shift} must be between 0 (off) and patch_size - time_stride "
                f"= {most} frames: a larger shift moves a clip's last frames into a patch column the clip as it is does "
                "not have, so its output would depend on the batch."
            )
        distinct = self.test_time_max_shift == 0 or self.test_time_shifts <= self.test_time_max_shift + 1
        if self.test_time_shifts < 2 or not distinct:
            raise ValueError(
                f"test_time_shifts={self.test_time_shifts} must be at least 2 (the clip as it is and a shifted copy) and "
                f"at most test_time_max_shift + 1 = {self.test_time_max_shift + 1}, so that no two shifts are the same."
            )
        self._check_views_around_one(
            "test_time_max_tempo", "test_time_tempos",
            "the tempi span [1 - m, 1 + m] and must stay positive (0.2 gives 0.8, 1.0 and 1.2; 0 turns test-time tempi "
            "off).",
            "the clip as it is is the middle tempo (3 gives 0.8, 1.0 and 1.2 with test_time_max_tempo=0.2).",
        )
        for name, size_name in (("freq_mask_param", "num_mel_bins"), ("time_mask_param", "max_length")):
            value, size = getattr(self, name), getattr(self, size_name)
            if not 0 <= value <= size:
                raise ValueError(
                    f"{name}={value} must be between 0 (off) and {size_name}={size}, the spectrogram's size along "
                    "the masked axis."
                )


    def _check_views_around_one(self, spread_name: str, count_name: str, span: str, middle: str):
        """A test-time spread in [0, 1) and an odd count of at least 3 views (`evenly_around_one`), else a
        `ValueError` naming the value: `span` says what the spread spans, `middle` which view is the plain one."""
        spread, count = getattr(self, spread_name), getattr(self, count_name)
        if not 0 <= spread < 1:
            raise ValueError(f"{spread_name}={spread} must be in [0, 1): {span}")
        if count < 3 or count % 2 == 0:
            raise ValueError(f"{count_name}={count} must be an odd number of at least 3, so that {middle}")

__all__ = ["MeamtmConfig"]
