"""The log-mel frontend: raw waveforms in, AST's normalised Kaldi filter bank out, inside the model.

The STFT is nnAudio's layer (`nnAudio.features.STFT`: strided 1D convolutions with cosine and sine
kernels, buffers or parameters when trainable). Kaldi's per-frame steps before the FFT (DC offset
removal, pre-emphasis, window) are linear maps of the frame, so they are folded into those kernels once,
at construction; the power spectrum is then `real**2 + imag**2` of one batched convolution (no
sqrt-then-square, so digital silence gives finite gradients), followed by the mel filters and the log.

On CPU with frozen kernels the same linear map is computed with `torch.fft.rfft`, O(n log n) instead of
a 400-tap convolution, and fixed mel filters are applied as a sparse matrix (each bin feeds at most two
filters); `tests/test_frontend_meamtm.py` holds both back ends to 1e-5 of each other and to 1e-4 of
`ASTFeatureExtractor`.
"""

import math
import warnings

import numpy as np
import torch
from nnAudio.features import STFT
from torch import nn
from transformers.audio_utils import mel_filter_bank, window_function

from .augmentation_meamtm import MeamtmFilterBankAugment, MeamtmFreqMixStyle, MeamtmPitchShift, warp_filter_bank
from .configuration_meamtm import MeamtmConfig


# The FFT back end works through the batch in pieces of whole frames (several clips, or part of one clip)
# whose frame buffer stays about this size, so the half-dozen passes over it stay in cache instead of
# going through main memory.
FFT_PIECE_BYTES = 2 * 2**20


def kaldi_frame_operator(config: MeamtmConfig) -> np.ndarray:
    """The per-frame linear map `window * preemphasis(frame - mean(frame))`, `(win_length, win_length)`, float64."""
    size = config.win_length
    operator = np.eye(size)
    if config.remove_dc_offset:
        operator = operator - np.full((size, size), 1.0 / size)
    if config.preemphasis:
        # Kaldi: y[0] = (1 - p) x[0], y[n] = x[n] - p x[n - 1]
        emphasis = np.eye(size) - config.preemphasis * np.eye(size, k=-1)
        emphasis[0, 0] = 1.0 - config.preemphasis
        operator = emphasis @ operator
    return window_function(size, config.window, periodic=False)[:, None] * operator


def mel_filters_of(config: MeamtmConfig) -> np.ndarray:
    """Mel filter bank `(n_fft // 2 + 1, num_mel_bins)`, the one `ASTFeatureExtractor` uses at the defaults."""
    with warnings.catch_warnings():
        # AST's own geometry (128 Kaldi mels over 257 bins) leaves the lowest filter empty. That is AST's
        # behaviour, which we reproduce, not a mistake worth a warning at every model construction.
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        return mel_filter_bank(
            num_frequency_bins=config.n_fft // 2 + 1,
            num_mel_filters=config.num_mel_bins,
            min_frequency=float(config.fmin),
            max_frequency=config.mel_fmax,
            sampling_rate=config.sampling_rate,
            norm="slaney" if config.mel_scale == "slaney" else None,
            mel_scale=config.mel_scale,
            triangularize_in_mel_space=config.mel_scale == "kaldi",
        )


def dct_projection(bins: int, coefficients: int) -> np.ndarray:
    """`(bins, bins)` float64 projection of a log-mel frame (a row) onto its first `coefficients` orthonormal
    DCT-II coefficients, and back: `frame @ P` is the frame's smooth envelope. `P` is symmetric and keeps
    constants (coefficient 0 is a constant)."""
    k = np.arange(bins)[:, None]
    dct = np.sqrt(2 / bins) * np.cos(np.pi * k * (2 * np.arange(bins)[None, :] + 1) / (2 * bins))
    dct[0] /= np.sqrt(2)
    kept = dct[:coefficients]
    return kept.T @ kept


def cepstral_smoothing_of(config: MeamtmConfig) -> np.ndarray:
    """`dct_projection` onto `config.cepstral_coefficients` coefficients: it keeps constants, so padding stays
    padding."""
    return dct_projection(config.num_mel_bins, config.cepstral_coefficients or config.num_mel_bins)


def clip_envelope_of(config: MeamtmConfig) -> np.ndarray:
    """`dct_projection` onto `config.envelope_coefficients` coefficients: what `"per_clip_envelope"`
    normalisation keeps of a clip's mean log-mel, and removes."""
    return dct_projection(config.num_mel_bins, config.envelope_coefficients)


def power_of(squares: torch.Tensor) -> torch.Tensor:
    """`(..., freq, 2)` squared real and imaginary parts -> power `(..., freq)`."""
    return squares[..., 0] + squares[..., 1]


def tempo_frames(frames: torch.Tensor, tempo: float | torch.Tensor) -> torch.Tensor:
    """The frames a clip of `frames` real frames keeps at `tempo` (`round(frames / tempo)`, halves up; 0 stays 0),
    as a tensor of `frames`' dtype: one float32 rule for a clip alone and in a batch. `tempo`: one for every clip, or
    `(batch,)`."""
    return torch.floor(frames.to(torch.float32) / tempo + 0.5).to(frames.dtype)


def stretched_lengths(config: MeamtmConfig, lengths: torch.Tensor, tempo: float | torch.Tensor) -> torch.Tensor:
    """`(batch,)` lengths in samples -> the lengths whose frames (`config.num_frames_of`) are the real frames each
    clip keeps at `tempo` (its frames, at most `max_length`, through `tempo_frames`); a clip shorter than one window
    keeps its length. What the patch mask of a stretched batch reads (`real_patches`)."""
    frames = torch.div(lengths - config.win_length, config.hop_length, rounding_mode="floor") + 1
    kept = tempo_frames(frames.clamp(0, config.max_length), tempo).clamp(max=config.max_length)
    return torch.where(kept > 0, (kept - 1) * config.hop_length + config.win_length, lengths)


def trim_silence(
    config: MeamtmConfig, waveforms: torch.Tensor, lengths: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(batch, num_samples)` waveforms and `(batch,)` lengths (None: all of each row) -> each clip cut to the span
    of its frames within `config.trim_silence_db` of its loudest, `config.trim_silence_margin` seconds kept each side,
    moved to the start of its row with zeros after it, and the new lengths.

    A frame is `win_length` samples every `hop_length`, as the spectrogram's; its level is the mean square of its
    samples less their mean (a DC offset is not sound), in dB. Only frames wholly inside the clip count; a clip
    shorter than one frame, or with no frame above the floor, is kept whole. The cut never reaches past the clip's
    own samples, so a clip gives the same output alone and in a batch. Tensor operations only, on the input's device.
    """
    batch_size, width = waveforms.shape
    if lengths is None:
        lengths = torch.full((batch_size,), width, device=waveforms.device, dtype=torch.long)
    win, hop = config.win_length, config.hop_length
    if width < win:
        return waveforms, lengths
    # Each frame's mean and mean square by average pooling (one graph for any width when exported); the
    # variance's rounding error is far below any level the threshold reads.
    samples = waveforms.to(torch.float32)[:, None, :]
    mean = nn.functional.avg_pool1d(samples, win, hop)[:, 0]  # (batch, num_frames)
    power = (nn.functional.avg_pool1d(samples.square(), win, hop)[:, 0] - mean.square()).clamp_min(0)
    level = 10 * torch.log10(power + 1e-10)  # digital silence at -100 dB
    num_frames = power.shape[1]
    real = torch.div(lengths - win, hop, rounding_mode="floor") + 1
    index = torch.arange(num_frames, device=waveforms.device)
    is_real = index[None, :] < real[:, None]
    level = level.masked_fill(~is_real, float("-inf"))
    loudest = level.amax(dim=-1, keepdim=True)
    active = is_real & (level >= loudest - config.trim_silence_db)
    first = active.to(torch.int32).argmax(dim=-1)
    last = num_frames - 1 - active.flip(-1).to(torch.int32).argmax(dim=-1)
    margin = round(config.trim_silence_margin * config.sampling_rate)
    start = (first * hop - margin).clamp_min(0)
    end = torch.minimum(last * hop + win + margin, lengths)
    keep = active.any(dim=-1)  # False: shorter than a frame
    start = torch.where(keep, start, torch.zeros_like(start))
    end = torch.where(keep, end, lengths)
    positions = start[:, None] + torch.arange(width, device=waveforms.device)[None, :]
    trimmed = waveforms.gather(1, positions.clamp(max=width - 1))
    new_lengths = (end - start).to(lengths.dtype)
    is_padding = torch.arange(width, device=waveforms.device)[None, :] >= new_lengths[:, None]
    return trimmed.masked_fill(is_padding, 0.0), new_lengths


class MeamtmFrontend(nn.Module):
    """Waveforms `(batch, num_samples)` -> normalised log-mel `(batch, num_frames, num_mel_bins)`, or
    `(batch, num_frames, num_mel_bins, 2)` with `config.normalization == "global+per_clip"` (the global and the
    per-clip normalisation of the same log-mel).

    `lengths` `(batch,)` gives each clip's true number of samples in a zero-padded batch: frames that reach
    past it become padding frames, exactly as `ASTFeatureExtractor` pads a short clip, so a clip gives the
    same features alone or in a batch. With `config.normalization == "per_clip"` each band's mean over those
    real frames is removed and padding frames are 0; with `"per_clip_envelope"` only the smooth envelope of
    those means (`clip_envelope_of`) is removed; with `"global+per_clip"` both the global and the `"per_clip"`
    features are returned, stacked last.

    In training with filter-bank augmentation (`config.uses_filter_bank_augment`), each example gets its own
    mel filter bank (`MeamtmFilterBankAugment`, `(batch, freq, num_mel_bins)`) and the mel product is a batched
    dense one; otherwise `filter_bank_augment` is `nn.Identity` and every path is the plain one. In training with
    `config.uses_pitch_shift`, each example's power spectrum has its pitch moved under the same envelope
    (`MeamtmPitchShift`) before a dense mel product. In training with
    `config.uses_freq_mixstyle`, the normalised features of the real frames then get another clip's band statistics
    (`MeamtmFreqMixStyle`, before any per-clip normalisation).

    `num_frames` is `max_length` with `config.padding_mode="max_length"` (AST). With `"longest"` it is the
    frames of the whole patch columns that hold the batch's longest clip (`output_frames`), the longest clip
    being the widest of `lengths` (the batch's width under torch.compile / export, where reading `lengths`
    would fix or break the graph).

    Precision does not follow the model: the STFT runs in `config.stft_precision`, the mel and log in
    float32, whatever autocast or `model.half()` / `.to(torch.bfloat16)` say (see `_apply`).
    """

    def __init__(self, config: MeamtmConfig):
        super().__init__()
        self.config = config
        self.stft = STFT(
            n_fft=config.n_fft,
            win_length=config.win_length,
            hop_length=config.hop_length,
            window="boxcar",  # the window is folded into the kernels, with pre-emphasis and DC removal
            freq_scale="no",
            center=False,
            trainable=config.trainable_stft,
            output_format="Complex",
            verbose=False,
        )
        # nnAudio centres the window in the kernel (librosa's `pad_center`); these zeros added left/right
        # make output frame t cover samples [t * hop, t * hop + win_length), Kaldi's framing.
        self.left_pad = (config.n_fft - config.win_length) // 2
        self.right_pad = config.n_fft - config.win_length - self.left_pad
        self.stft.register_buffer("window_mask", self.stft.window_mask, persistent=False)

        # Replace nnAudio's float32 kernels by the folded ones at `stft_precision`: float32 kernels alone
        # put AST parity out of reach on quiet bands (see the config's `stft_precision`).
        stft_dtype = getattr(torch, config.stft_precision)
        shape = (config.n_fft // 2 + 1, 1, config.n_fft)
        for name in ("wsin", "wcos"):
            delattr(self.stft, name)
            kernel = torch.zeros(shape, dtype=stft_dtype)
            if config.trainable_stft:
                self.stft.register_parameter(name, nn.Parameter(kernel))
            else:
                # Derived from the config, so kept out of checkpoints (and re-made by `_init_weights`).
                self.stft.register_buffer(name, kernel, persistent=False)

        mel = torch.zeros(config.n_fft // 2 + 1, config.num_mel_bins, dtype=torch.float32)
        if config.trainable_mel:
            self.mel_filters = nn.Parameter(mel)
        else:
            self.register_buffer("mel_filters", mel, persistent=False)
        self.register_buffer("window", torch.zeros(config.win_length, dtype=stft_dtype), persistent=False)
        if config.uses_cepstral_smoothing:
            bins = config.num_mel_bins
            self.register_buffer("cepstral_smoothing", torch.zeros(bins, bins, dtype=torch.float32), persistent=False)
        if config.uses_clip_envelope:
            bins = config.num_mel_bins
            self.register_buffer("clip_envelope", torch.zeros(bins, bins, dtype=torch.float32), persistent=False)
        self.filter_bank_augment = (
            MeamtmFilterBankAugment(config) if config.uses_filter_bank_augment else nn.Identity()
        )
        self.pitch_shift = MeamtmPitchShift(config) if config.uses_pitch_shift else None
        if config.uses_pitch_shift:
            bins = config.n_fft // 2 + 1
            self.register_buffer("pitch_envelope", torch.zeros(bins, bins, dtype=torch.float32), persistent=False)
        self.freq_mixstyle = MeamtmFreqMixStyle(config) if config.uses_freq_mixstyle else None
        self.reset_kernels()

    def kernels(self) -> dict[str, torch.Tensor]:
        """Initial values of the kernel tensors, computed in float64 from the config, by name."""
        config = self.config
        start, stop = self.left_pad, self.left_pad + config.win_length
        frequency = np.arange(config.n_fft // 2 + 1)[:, None]
        # nnAudio's basis, cos/sin(2 pi k n / n_fft), over the frame's support
        phase = 2 * np.pi * frequency * np.arange(start, stop)[None, :] / config.n_fft
        operator = kaldi_frame_operator(config)
        values = {}
        for name, basis in (("wcos", np.cos(phase)), ("wsin", np.sin(phase))):
            kernel = np.zeros((basis.shape[0], 1, config.n_fft))
            kernel[:, 0, start:stop] = basis @ operator
            values[name] = kernel
        values["mel_filters"] = mel_filters_of(config)
        values["window"] = window_function(config.win_length, config.window, periodic=False)
        # nnAudio's boxcar window centred in the kernel, kept as its `window_mask` buffer (used by its inverse).
        window_mask = np.zeros((1, config.n_fft, 1))
        window_mask[0, start:stop, 0] = 1.0
        values["window_mask"] = window_mask
        if config.uses_cepstral_smoothing:
            values["cepstral_smoothing"] = cepstral_smoothing_of(config).astype(np.float32)
        if config.uses_clip_envelope:
            values["clip_envelope"] = clip_envelope_of(config).astype(np.float32)
        if config.uses_pitch_shift:
            bins = config.n_fft // 2 + 1
            values["pitch_envelope"] = dct_projection(bins, config.pitch_envelope_coefficients).astype(np.float32)
        return {name: torch.from_numpy(np.asarray(value)) for name, value in values.items()}

    def kernel_tensors(self) -> dict[str, torch.Tensor]:
        """The module's kernel tensors (buffers or parameters), by the names of `kernels()`."""
        return {
            "wcos": self.stft.wcos,
            "wsin": self.stft.wsin,
            "mel_filters": self.mel_filters,
            "window": self.window,
            "window_mask": self.stft.window_mask,
            **({"cepstral_smoothing": self.cepstral_smoothing} if self.config.uses_cepstral_smoothing else {}),
            **({"clip_envelope": self.clip_envelope} if self.config.uses_clip_envelope else {}),
            **({"pitch_envelope": self.pitch_envelope} if self.config.uses_pitch_shift else {}),
        }

    @torch.no_grad()
    def reset_kernels(self):
        targets = self.kernel_tensors()
        for name, value in self.kernels().items():
            targets[name].copy_(value)

    def _apply(self, fn, recurse=True):
        # `_keep_in_fp32_modules_strict` covers `from_pretrained(dtype=...)`; this covers `model.half()` and
        # `model.to(torch.bfloat16)`: tensors follow device moves, but keep their dtype, unrounded.
        def keep_dtype(tensor):
            moved = fn(tensor)
            if tensor.is_floating_point() and moved.dtype != tensor.dtype:
                return tensor.to(device=moved.device)
            return moved

        return super()._apply(keep_dtype, recurse)

    def backend_for(self, waveforms: torch.Tensor) -> str:
        """`"fft"` or `"conv"`: the back end `forward` uses for these waveforms (see `config.stft_backend`)."""
        if self.config.stft_backend != "auto":
            return self.config.stft_backend
        frozen = not self.config.trainable_stft and not (waveforms.requires_grad and torch.is_grad_enabled())
        return "fft" if frozen and waveforms.device.type == "cpu" else "conv"

    def longest_frames(self, num_samples: int) -> tuple[int, int]:
        """`padding_mode="longest"`: (frames of audio, frames of output) of a batch `num_samples` samples wide.

        The output holds the whole patch columns of the audio frames (`config.num_patch_columns_of`). While
        exporting, the batch is at most `config.longest_num_samples` wide (the model cuts it there) and the same
        values are written without min / max, so that torch.export can bound them from the input's range
        instead of guarding on them.
        """
        config = self.config
        if torch.compiler.is_exporting() or torch.jit.is_tracing():
            frames = (num_samples - config.win_length) // config.hop_length + 1
            return frames, frames + (config.patch_size - 1 - (frames - 1) % config.time_stride)
        output_frames = config.num_frames_of_columns(config.num_patch_columns_of(config.num_frames_of(num_samples)))
        return min(config.num_frames_of(num_samples), output_frames), output_frames

    def forward(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | None = None,
        warp: float | None = None,
        shift: int = 0,
        tempo: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`(batch, num_samples)` float waveforms, `(batch,)` lengths -> float32 `(batch, num_frames, num_mel_bins)`
        (`(..., 2)` with `"global+per_clip"`). `warp`: every clip through the filter bank VTLP warps by this factor
        (`warp_filter_bank`; test-time warping), instead of the model's own. `tempo`: every clip's log-mel stretched
        along time to that tempo, or `(batch,)` each clip's own (test-time tempi, `config.tempo_perturbation` in
        training; `_change_tempo`), before `shift`: every clip's log-mel after
        that many frames of digital silence, real frames of the clip (test-time shifts; `_shift_frames`)."""
        config = self.config
        batch_size = waveforms.shape[0]
        num_frames = min(config.num_frames_of(waveforms.shape[-1]), config.max_length)
        output_frames = config.max_length
        if config.padding_mode == "longest":
            if torch.compiler.is_exporting() or torch.jit.is_tracing():
                waveforms = waveforms[:, : config.longest_num_samples]
            elif lengths is not None and not torch.compiler.is_compiling():
                # A batch padded past its longest clip (to the model's window, say) costs its longest clip only.
                waveforms = waveforms[:, : int(lengths.max())]
            num_frames, output_frames = self.longest_frames(waveforms.shape[-1])
        # AST pads missing frames with zeros, then normalises.
        padding_value = config.silence_value
        per_example_filters = self.training and isinstance(self.filter_bank_augment, MeamtmFilterBankAugment)
        pitch_factors = self.pitch_shift.draw(batch_size, waveforms.device) if self.pitch_shift is not None else None
        warped = warp is not None and warp != 1
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            # Stored mel-major, (batch, num_mel_bins, num_frames), and returned as its transpose: the patch
            # embedding reads it as a (frequency, time) image, and the sparse mel product writes it that way.
            output = waveforms.new_full(
                (batch_size, config.num_mel_bins, output_frames), padding_value, dtype=torch.float32
            ).transpose(1, 2)
            if num_frames > 0:
                # Samples past the last frame that fits in `max_length` never reach the output.
                waveforms = waveforms[:, : (num_frames - 1) * config.hop_length + config.win_length]
                filters = self.mel_filters
                if warped:
                    filters = warp_filter_bank(filters.float(), filters.new_tensor([warp], dtype=torch.float32))[0]
                if per_example_filters:
                    filters = self.filter_bank_augment(filters.float().expand(batch_size, -1, -1))
                if self.backend_for(waveforms) == "conv":
                    output[:, :num_frames] = self._log_mel(self._power_conv(waveforms), filters, pitch_factors)
                elif torch.compiler.is_compiling() or torch.jit.is_tracing():
                    # One piece while tracing: a loop over pieces would fix the batch size in the graph.
                    output[:, :num_frames] = self._log_mel(power_of(self._squares_fft(waveforms)), filters, pitch_factors)
                else:
                    # Filters that learn or differ per example take the dense product (every entry gets a gradient), and
                    # so does a shifted pitch (the power changes before the product).
                    learning = self.mel_filters.requires_grad and torch.is_grad_enabled()
                    dense = learning or per_example_filters or pitch_factors is not None
                    sparse_filters = None if dense else self._sparse_mel_filters(filters)
                    for clips, frames in self._fft_pieces(batch_size, num_frames):
                        samples = slice(frames.start * config.hop_length, (frames.stop - 1) * config.hop_length + config.win_length)
                        squares = self._squares_fft(waveforms[clips, samples])
                        if sparse_filters is None:
                            piece_filters = filters[clips] if per_example_filters else filters
                            piece_factors = None if pitch_factors is None else pitch_factors[clips]
                            output[clips, frames] = self._log_mel(power_of(squares), piece_filters, piece_factors)
                        else:
                            output[clips, frames] = self._log_mel_sparse(squares, sparse_filters)
                if config.uses_cepstral_smoothing:
                    # Every frame, padding too: the projection keeps a constant frame as it is. It is symmetric, so
                    # `P @ mel_major` is `(output @ P)` kept mel-major.
                    output = torch.matmul(self.cepstral_smoothing, output.transpose(1, 2)).transpose(1, 2)
            if lengths is not None:
                frames_per_clip = torch.div(lengths - config.win_length, config.hop_length, rounding_mode="floor") + 1
                is_padding = torch.arange(output_frames, device=output.device)[None, :] >= frames_per_clip[:, None]
                # Out of place, on the mel-major tensor: `masked_fill_` on this transposed view, once slices of it
                # were written from tensors that need a gradient, fails autograd's leaf check.
                output = output.transpose(1, 2).masked_fill(is_padding[:, None, :], padding_value).transpose(1, 2)
            if isinstance(tempo, torch.Tensor) or (tempo is not None and tempo != 1):
                real = frames_per_clip.clamp(0, num_frames) if lengths is not None else None
                output, num_frames, real = self._change_tempo(output, tempo, num_frames, real)
                output_frames = output.shape[1]
                if lengths is not None:
                    frames_per_clip = real
            if shift:
                output = self._shift_frames(output, shift)
                num_frames = min(num_frames + shift, output_frames)
                if lengths is not None:
                    frames_per_clip = frames_per_clip.clamp_min(0) + shift
            mixstyle = self.training and self.freq_mixstyle is not None
            if config.per_clip_means or mixstyle:
                real_frames = torch.full((batch_size,), num_frames, device=output.device)
                if lengths is not None:
                    real_frames = frames_per_clip.clamp(0, num_frames)
            if mixstyle:
                # Before the clip means go: mixing then removing them equals removing them then mixing.
                output = self.freq_mixstyle(output, real_frames)
            if config.spectrogram_channels == 2:
                output = torch.stack((output, self._remove_clip_means(output, real_frames)), dim=-1)
            elif config.per_clip_means:
                output = self._remove_clip_means(output, real_frames)
        return output

    def _change_tempo(
        self, output: torch.Tensor, tempo: float | torch.Tensor, num_frames: int, real_frames: torch.Tensor | None
    ) -> tuple[torch.Tensor, int, torch.Tensor]:
        """`(batch, frames, num_mel_bins)` log-mel with `num_frames` frames of audio (each clip's real frames
        `real_frames`, `(batch,)`, or all of them) -> the log-mel of every clip spoken `tempo` times as fast, its
        frames of audio, and each clip's real frames.

        Frame `j` of a clip is its frame `j * tempo`, interpolated linearly between the two nearest (its last real
        frame held past its end); a clip of `n` real frames keeps `tempo_frames(n)`, at most `max_length`, and the
        rest are padding frames (AST's padding value). The output is `max_length` frames wide, or with
        `padding_mode="longest"` the whole patch columns of the stretched batch (at most the grid's), so a clip
        gives the same output alone and in a batch. A `(batch,)` `tempo` (training) gives each clip its own; the
        batch is then as wide as its widest stretched clip needs.
        """
        config = self.config
        if torch.compiler.is_exporting() or torch.jit.is_tracing():
            raise RuntimeError(
                "A tempo view cannot be exported or traced: the width of a stretched batch depends on its length. "
                "Set model.config.test_time_max_tempo = 0 before exporting."
            )
        batch_size = output.shape[0]
        if real_frames is None:
            real_frames = torch.full((batch_size,), num_frames, device=output.device)
        if isinstance(tempo, torch.Tensor):  # each clip's own: the batch's widest stretched clip sets the width
            tempo = tempo.to(device=output.device, dtype=torch.float32)
            kept = tempo_frames(real_frames, tempo)
            kept_frames = min(int(kept.max()), config.max_length)
            tempo = tempo[:, None]  # (batch, 1), against the frame positions
        else:  # one for all: the batch's width, as its widest clip alone would have
            kept = tempo_frames(real_frames, tempo)
            kept_frames = min(int(tempo_frames(torch.tensor(num_frames), tempo)), config.max_length)
        width = config.max_length
        if config.padding_mode == "longest":
            width = config.num_frames_of_columns(config.num_patch_columns_of(kept_frames))
            kept_frames = min(kept_frames, width)  # the frames past the grid's last column, as `longest_frames`
        kept = kept.clamp(max=kept_frames)
        last = (real_frames - 1).clamp_min(0)[:, None]  # (batch, 1)
        positions = torch.arange(width, device=output.device, dtype=torch.float32)[None, :] * tempo
        positions = torch.minimum(positions, last.to(torch.float32))  # (batch, width)
        below = positions.floor().long()
        above = torch.minimum(below + 1, last)
        weight = (positions - below)[:, None, :]
        mel_major = output.transpose(1, 2)  # (batch, num_mel_bins, frames)
        num_bins = mel_major.shape[1]
        low = mel_major.gather(2, below[:, None, :].expand(-1, num_bins, -1))
        high = mel_major.gather(2, above[:, None, :].expand(-1, num_bins, -1))
        stretched = low + (high - low) * weight
        is_padding = torch.arange(width, device=output.device)[None, :] >= kept[:, None]
        stretched = stretched.masked_fill(is_padding[:, None, :], config.silence_value)
        return stretched.transpose(1, 2), kept_frames, kept

    def _shift_frames(self, output: torch.Tensor, shift: int) -> torch.Tensor:
        """`(batch, num_frames, num_mel_bins)` -> the same frames `shift` later, after `shift` frames of digital
        silence (the normalised log of `mel_floor`, what a frame of zeros gives), the last `shift` frames dropped.

        For a clip that starts with at least one window of silence, this is the log-mel of the clip delayed by
        `shift` hops; for any clip, it puts the patch grid's column edges `shift` frames earlier in the sound.
        """
        mel_major = output.transpose(1, 2)  # (batch, num_mel_bins, num_frames), contiguous
        silence = self._normalize(math.log(self.config.mel_floor))
        leading = mel_major.new_full((*mel_major.shape[:2], shift), silence)
        return torch.cat((leading, mel_major[..., : mel_major.shape[-1] - shift]), dim=-1).transpose(1, 2)

    def _remove_clip_means(self, output: torch.Tensor, real_frames: torch.Tensor) -> torch.Tensor:
        """Per-clip normalisation: `(batch, num_frames, num_mel_bins)` globally normalised log-mel and `(batch,)`
        numbers of real frames -> each band minus its mean over the clip's real frames (`"per_clip"`) or minus
        the smooth envelope of those means (`"per_clip_envelope"`), padding frames 0, in the same (mel-major)
        layout.

        The global normalisation is affine, so removing the mean of its output removes the clip's log-mel mean
        and keeps AST's `1 / (2 * spectrogram_std)` scale.
        """
        mel_major = output.transpose(1, 2)  # (batch, num_mel_bins, num_frames), contiguous
        is_real = (torch.arange(mel_major.shape[-1], device=output.device)[None, :] < real_frames[:, None])[:, None, :]
        counted = is_real
        if self.config.clip_mean_range_db > 0:
            counted = is_real & self._active_frames(mel_major, is_real)
        count = counted.sum(dim=-1, keepdim=True).clamp(min=1).to(output.dtype)
        means = torch.where(counted, mel_major, 0.0).sum(dim=-1, keepdim=True) / count
        if self.config.uses_clip_envelope:
            # `clip_envelope` is symmetric: `P @ means` projects each clip's column of band means.
            means = torch.matmul(self.clip_envelope, means)
        return (mel_major - means).masked_fill(~is_real, 0.0).transpose(1, 2)

    def _active_frames(self, mel_major: torch.Tensor, is_real: torch.Tensor) -> torch.Tensor:
        """`(batch, 1, num_frames)`: the real frames within `config.clip_mean_range_db` of the clip's loudest.

        A frame's level is the log of its summed mel energy, `logsumexp` of its log-mel (undoing the global
        normalisation's scale, whose offset cancels in the difference); the loudest real frame always counts.
        """
        config = self.config
        scale = 2 * config.spectrogram_std
        level = torch.logsumexp(mel_major * scale, dim=1, keepdim=True)  # natural log of energy, plus a constant
        level = torch.where(is_real, level, float("-inf"))
        loudest = level.amax(dim=-1, keepdim=True)
        return level >= loudest - config.clip_mean_range_db * math.log(10) / 10

    def _normalize(self, log_mel):
        if not self.config.do_normalize:
            return log_mel
        return (log_mel - self.config.spectrogram_mean) / (2 * self.config.spectrogram_std)

    def _log_mel(
        self, power: torch.Tensor, filters: torch.Tensor, pitch_factors: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Power `(batch, frames, freq)` and filters `(freq, num_mel_bins)` (one bank) or `(batch, freq,
        num_mel_bins)` (one per example) -> float32 normalised log-mel `(batch, frames, num_mel_bins)`. `pitch_factors`
        `(batch,)`: each example's pitch shifted by its factor first (`MeamtmPitchShift`)."""
        if pitch_factors is not None:
            power = self.pitch_shift(power, pitch_factors, self.pitch_envelope)
        mel = torch.matmul(power.float(), filters.float())
        return self._normalize(mel.clamp_min_(self.config.mel_floor).log_())

    def _sparse_mel_filters(self, filters: torch.Tensor) -> torch.Tensor:
        """`(freq, num_mel_bins)` filters' non-zero entries, `(num_mel_bins, freq)` CSR: 504 of AST's 32,896 (made
        per forward, in some 50 us, so they always follow `mel_filters`, or the warped bank of a test-time warp)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
            return filters.detach().float().t().to_sparse_csr()

    def _log_mel_sparse(self, squares: torch.Tensor, sparse_filters: torch.Tensor) -> torch.Tensor:
        """`_log_mel(power_of(squares))` with fixed filters stored sparse, `(num_mel_bins, freq)` CSR: each bin
        feeds at most two triangular filters, so the product skips 98 % of the dense one's multiply-adds.

        The sparse product wants the power with frames along rows, `(freq, batch * frames)`: the power is
        written in that layout, the log-mel computed in it and returned as a view.
        """
        batch_size, num_frames, num_bins, _ = squares.shape
        by_bin = squares.new_empty(num_bins, batch_size, num_frames)
        torch.add(squares[..., 0], squares[..., 1], out=by_bin.permute(1, 2, 0))
        mel = torch.sparse.mm(sparse_filters, by_bin.view(num_bins, -1))
        log_mel = self._normalize(mel.clamp_min_(self.config.mel_floor).log_())
        return log_mel.view(-1, batch_size, num_frames).permute(1, 2, 0)

    def _power_conv(self, waveforms: torch.Tensor) -> torch.Tensor:
        """nnAudio's STFT convolution with the folded kernels: `(batch, samples)` -> power `(batch, frames, freq)`."""
        padded = nn.functional.pad(waveforms.to(self.stft.wcos.dtype), (self.left_pad, self.right_pad))[:, None]
        # The two convolutions of `STFT.forward` (center=False), called on its kernels directly: that forward
        # also stores `self.num_samples = x.shape[-1]`, a module mutation that torch.export (strict) drops as a
        # side effect and non-strict export would leave holding a symbolic size.
        real = nn.functional.conv1d(padded, self.stft.wcos, stride=self.stft.stride)  # (batch, freq, frames)
        imag = nn.functional.conv1d(padded, self.stft.wsin, stride=self.stft.stride)
        return (real * real + imag * imag).transpose(1, 2)

    def _fft_pieces(self, batch_size: int, num_frames: int) -> list[tuple[slice, slice]]:
        """(clips, frames) slices that tile the batch, each with a frame buffer of about `FFT_PIECE_BYTES`."""
        frames_per_piece = max(1, FFT_PIECE_BYTES // (self.config.n_fft * self.window.element_size()))
        if num_frames > frames_per_piece:  # part of a clip at a time
            return [
                (slice(clip, clip + 1), slice(start, min(start + frames_per_piece, num_frames)))
                for clip in range(batch_size)
                for start in range(0, num_frames, frames_per_piece)
            ]
        clips_per_piece = frames_per_piece // num_frames  # several whole clips at a time
        return [(slice(start, start + clips_per_piece), slice(0, num_frames)) for start in range(0, batch_size, clips_per_piece)]

    def _squares_fft(self, waveforms: torch.Tensor) -> torch.Tensor:
        """The map of `_power_conv` by FFT, before the sum: `(batch, samples)` -> float32 `(batch, frames, freq, 2)`,
        the squared real and imaginary parts (`power_of` adds them).

        `waveforms` start at a frame's first sample (that sample's pre-emphasis needs no earlier one).
        """
        config = self.config
        emphasis, size, hop = config.preemphasis, config.win_length, config.hop_length
        waveforms = waveforms.to(self.window.dtype)
        num_frames = (waveforms.shape[-1] - size) // hop + 1
        buffer = waveforms.new_empty(waveforms.shape[0], num_frames, config.n_fft)
        buffer[..., size:] = 0  # the FFT's zero padding; the rest is written below
        windowed = buffer[..., :size]
        # Pre-emphasis of the whole signal equals Kaldi's per-frame pre-emphasis except at each frame's first
        # sample, which is set below: frame t's samples 1.. are `emphasised[t * hop:][: size - 1]`. The frame's
        # DC offset (mean m) becomes a subtraction of (1 - p) m, first sample included.
        emphasised = torch.sub(waveforms[:, 1:], waveforms[:, :-1], alpha=emphasis)
        frames = emphasised.unfold(-1, size - 1, hop)  # views, no copies
        first = waveforms[:, : (num_frames - 1) * hop + 1 : hop]
        if config.remove_dc_offset:
            means = waveforms.unfold(-1, size, hop).mean(-1)
            if torch.compiler.is_compiling():
                # Dynamo refuses `out=` into a strided view; inductor fuses this copy anyway.
                windowed[..., 1:].copy_(torch.sub(frames, means[..., None], alpha=1 - emphasis))
            else:
                torch.sub(frames, means[..., None], alpha=1 - emphasis, out=windowed[..., 1:])
            first = first - means
        else:
            windowed[..., 1:].copy_(frames)
        windowed[..., 0] = (1 - emphasis) * first
        windowed.mul_(self.window)
        parts = torch.view_as_real(torch.fft.rfft(buffer))  # (batch, frames, freq, 2): real, imaginary
        # Rounded to float32 (where the mel product runs), then squared in place: the rounding is relative to
        # each value (6e-8), unlike the FFT's own error, which is relative to the frame and needs float64. The
        # float64 `real * real + imag * imag` over the complex tensor's strided halves took 4x as long.
        return parts.to(torch.float32).square_()


__all__ = ["MeamtmFrontend", "stretched_lengths", "tempo_frames"]
