"""Training-time regularisation inside the model, on its device: patchout, SpecAugment masking, mixup,
per-example filter-bank augmentation (vocal-tract-length perturbation, microphone tilt and band-stop), pitch shifts
that keep the formants, and Freq-MixStyle (each band's statistics mixed between clips).

Each piece exists only when the config turns it on (`MeamtmModel` builds `nn.Identity` otherwise) and does
nothing outside training, so an evaluating model runs AST's exact graph and gives bit-identical outputs.
Random draws are made on the input's device, one per example, so they cost no host-device traffic and a
batch never shares one mask.

torchaudio's `FrequencyMasking` / `TimeMasking` would do the masking, but torchaudio has no release for
torch 2.13; the few lines below draw exactly as they do with `iid_masks=True`.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers.loss.loss_utils import fixed_cross_entropy

from .configuration_meamtm import MeamtmConfig


NUM_SPECIAL_TOKENS = 2  # cls and distillation, in front of the patch tokens


def random_subsets(batch_size: int, size: int, count: int, device: torch.device) -> torch.Tensor:
    """`(batch_size, count)` ascending indices of `count` distinct positions out of `size`, a new draw per row."""
    return torch.rand(batch_size, size, device=device).argsort(dim=1)[:, :count].sort(dim=1).values


class MeamtmPatchout(nn.Module):
    """PaSST's patchout (Koutini et al. 2022): drop patch tokens in training, after positional embeddings.

    `(batch, 2 + num_patches, hidden_size)` -> `(batch, 2 + config.num_training_patches, hidden_size)`. Structured
    patchout drops whole time columns and frequency rows of the patch grid (`patchout_time`,
    `patchout_frequency`), unstructured patchout then drops single patches (`patchout_unstructured`); every
    example gets its own draw. The cls and distillation tokens are always kept. In evaluation the tokens
    pass unchanged.

    A batch with fewer time columns than the grid (`padding_mode="longest"`) drops the same fractions of the
    columns it has (`config.patchout_dropped_for`), and the mask of its real patches follows the kept ones.
    """

    def __init__(self, config: MeamtmConfig):
        super().__init__()
        self.config = config
        self.grid = config.patch_grid
        self.dropped = config.patchout_dropped

    def keep_indices(self, batch_size: int, device: torch.device, num_columns: int | None = None) -> torch.Tensor:
        """`(batch_size, patches kept)` indices of the patches each example keeps, ascending, on a grid of
        `num_columns` time columns (the full grid's by default: `num_training_patches` kept)."""
        frequency, time = self.grid
        drop_frequency, drop_time, drop_patches = self.dropped
        if num_columns is not None and num_columns != time:
            time = num_columns
            drop_frequency, drop_time, drop_patches = self.config.patchout_dropped_for((frequency, time))
        # Patch p sits at grid row p // time, column p % time (the projection's output, flattened).
        rows = random_subsets(batch_size, frequency, frequency - drop_frequency, device)
        columns = random_subsets(batch_size, time, time - drop_time, device)
        kept = (rows[:, :, None] * time + columns[:, None, :]).flatten(1)
        if drop_patches:
            kept = kept.gather(1, random_subsets(batch_size, kept.shape[1], kept.shape[1] - drop_patches, device))
        return kept

    def forward(
        self, tokens: torch.Tensor, patch_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens `(batch, 2 + patches, hidden_size)` and their patches' mask `(batch, patches)` (or None) ->
        the kept tokens and the kept patches' mask."""
        if not self.training:
            return tokens, patch_mask
        num_columns = (tokens.shape[1] - NUM_SPECIAL_TOKENS) // self.grid[0]
        kept = self.keep_indices(tokens.shape[0], tokens.device, num_columns)
        patches = tokens[:, NUM_SPECIAL_TOKENS:].gather(1, kept[..., None].expand(-1, -1, tokens.shape[-1]))
        if patch_mask is not None:
            patch_mask = patch_mask.gather(1, kept)
        return torch.cat((tokens[:, :NUM_SPECIAL_TOKENS], patches), dim=1), patch_mask


def band_masks(batch_size: int, size: int, max_width: int, device: torch.device) -> torch.Tensor:
    """`(batch_size, size)` boolean masks of one band each, width uniform in [0, max_width), as torchaudio draws."""
    width = torch.rand(batch_size, 1, device=device) * max_width
    start = torch.rand(batch_size, 1, device=device) * (size - width)
    position = torch.arange(size, device=device)
    return (position >= start.long()) & (position < start.long() + width.long())


def silence_values(config: MeamtmConfig) -> list[float]:
    """The value of silence in each spectrogram channel: AST's padding value after the global normalisation, 0 (the
    clip's mean) after a per-clip one; two channels (`"global+per_clip"`) take one each."""
    silence = config.silence_value
    return {"global": [silence], "global+per_clip": [silence, 0.0]}.get(config.normalization, [0.0])


class MeamtmSpecAugment(nn.Module):
    """SpecAugment frequency and time masking (Park et al. 2019) as AST trains with it (`freqm`, `timem`).

    `(batch, max_length, num_mel_bins[, channels])` -> the same shape: per example, one band of up to `freq_mask_param`
    mel bins and one span of up to `time_mask_param` frames take the value of silence. AST masks its
    log-mel with zeros before normalising, which is also the value of its padding frames; here the
    spectrogram is already normalised, so the mask takes the normalised zero (0 under per-clip normalisation,
    whose padding is 0). Identity in evaluation.
    """

    def __init__(self, config: MeamtmConfig):
        super().__init__()
        self.freq_mask_param = config.freq_mask_param
        self.time_mask_param = config.time_mask_param
        self.fill_values = silence_values(config)

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return spectrogram
        batch_size, num_frames, num_bins = spectrogram.shape[:3]
        device = spectrogram.device
        time = band_masks(batch_size, num_frames, self.time_mask_param, device)
        frequency = band_masks(batch_size, num_bins, self.freq_mask_param, device)
        masked = time[:, :, None] | frequency[:, None, :]
        if spectrogram.dim() == 3:
            return spectrogram.masked_fill(masked, self.fill_values[0])
        fill = torch.tensor(self.fill_values, dtype=spectrogram.dtype, device=device)
        return torch.where(masked[..., None], fill, spectrogram)


class MeamtmChannelDropout(nn.Module):
    """Channel dropout for two spectrogram channels (`normalization="global+per_clip"`, `config.channel_dropout`).

    `(batch, max_length, num_mel_bins, 2)` -> the same shape: each example, with probability `channel_dropout`, has
    one channel, the global or the per-clip one at even odds, set to that channel's value of silence in every frame
    (AST's padding value, 0), as `MeamtmSpecAugment` masks. The model learns to classify from either channel alone,
    a recording's colour (kept by the global channel) no longer being a cue it can always rely on. Identity in
    evaluation.
    """

    def __init__(self, config: MeamtmConfig):
        super().__init__()
        self.probability = config.channel_dropout
        self.fill_values = silence_values(config)

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return spectrogram
        batch_size, device = spectrogram.shape[0], spectrogram.device
        dropped = torch.rand(batch_size, device=device) < self.probability
        which = torch.randint(0, 2, (batch_size,), device=device)
        masked = dropped[:, None] & (torch.arange(2, device=device)[None, :] == which[:, None])  # (batch, 2)
        fill = torch.tensor(self.fill_values, dtype=spectrogram.dtype, device=device)
        return torch.where(masked[:, None, None, :], fill, spectrogram)


# Jaitly & Hinton's VTLP warps linearly up to a boundary frequency (4800 Hz of 8000 at 16 kHz) and maps the
# rest linearly onto what is left, so the Nyquist frequency stays in place and no band falls off the top.
VTLP_BOUNDARY = 0.6  # of the Nyquist frequency


def vtlp_positions(factors: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Where each FFT bin moves under VTLP, in (fractional) bins: `(batch,)` warp factors -> `(batch, num_bins)`.

    Bin `k` goes to `k * factor` below the boundary `b = VTLP_BOUNDARY * nyquist * min(factor, 1) / factor`, and
    above it along the line through `(b, b * factor)` and `(nyquist, nyquist)` (Jaitly & Hinton 2013, eq. 1).
    A factor of 1 gives `k` exactly: the upper line is written `k + (nyquist - k) * (1 - slope)` with a slope
    of exactly 1.
    """
    nyquist = num_bins - 1
    factors = factors[:, None].float()
    bins = torch.arange(num_bins, device=factors.device, dtype=torch.float32)[None, :]
    image = VTLP_BOUNDARY * nyquist * factors.clamp(max=1.0)  # where the boundary lands
    boundary = image / factors
    slope = (nyquist - image) / (nyquist - boundary)
    upper = bins + (nyquist - bins) * (1 - slope)
    return torch.where(bins <= boundary, bins * factors, upper)


def warp_filter_bank(filters: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """VTLP by the filter bank: `(freq, num_mel_bins)` or `(batch, freq, num_mel_bins)` filters and `(batch,)`
    factors -> `(batch, freq, num_mel_bins)`, row `k` of example `i` being the filters' response at the
    frequency bin `k` moves to (`vtlp_positions`), interpolated linearly between neighbouring bins.

    The mel product `power @ filters` then adds bin `k`'s energy where a speaker with a vocal tract
    `factor` times shorter would have had it, without resampling the audio. Gradients reach the filters.
    """
    if filters.dim() == 2:
        filters = filters.expand(factors.shape[0], -1, -1)
    return interpolate_bins(filters, vtlp_positions(factors, filters.shape[1]), dim=1)


def interpolate_bins(values: torch.Tensor, positions: torch.Tensor, dim: int) -> torch.Tensor:
    """`(batch, n, m)` values whose frequency bins run along `dim` (1 or 2) and `(batch, bins)` fractional positions in
    `[0, bins - 1]` -> the values at those positions, linear between neighbouring bins, the same shape.

    The bin below each position is at most the last but one, so that a position on the last bin takes weight 1
    from it through the upper neighbour; a whole-number position gives that bin's values exactly.
    """
    num_bins = values.shape[dim]
    below = positions.floor().long().clamp_(0, num_bins - 2)
    fraction = (positions - below).to(values.dtype).unsqueeze(3 - dim)
    index = below.unsqueeze(3 - dim).expand_as(values)
    return (1 - fraction) * values.gather(dim, index) + fraction * values.gather(dim, index + 1)


class MeamtmFilterBankAugment(nn.Module):
    """A new speaker and a new microphone per example, by changing the mel filter bank (PaSST-style, on the device).

    `(batch, freq, num_mel_bins)` filter bank (the model's, expanded) -> the same shape, a different bank per
    example, in training only; in evaluation the bank passes unchanged. Each step runs when its setting is on:

    - VTLP (`vtlp_max_warp`): a warp factor uniform in `[1 - vtlp_max_warp, 1 + vtlp_max_warp]` moves the
      frequency axis (`warp_filter_bank`), as a longer or shorter vocal tract moves formants.
    - tilt (`mel_tilt_db`): a gain rising linearly across the filters, `t` dB from the lowest to the highest
      with `t` uniform in `[-mel_tilt_db, mel_tilt_db]` (a brighter or duller microphone).
    - band-stop (`mel_band_stop_width`, `mel_band_stop_db`): one band of up to `mel_band_stop_width` filters is
      attenuated by a depth uniform in `[0, mel_band_stop_db]` dB (a notch in the microphone's response).
    - low-pass (`mel_low_pass_probability`, `mel_low_pass_min_cutoff`, `mel_low_pass_db`): with that probability
      the FFT bins above a cutoff uniform in `[mel_low_pass_min_cutoff, 1]` of the Nyquist frequency lose
      `mel_low_pass_db` dB (a microphone, codec or resampler that stops short of the Nyquist frequency); the filter
      that spans the cutoff keeps the part of its response below it.

    Tilt and band-stop gains multiply the filters' columns, so they act on the power before the log: they are
    offsets of the log-mel that the mel floor still bounds, unlike an offset added after the log. The low-pass
    multiplies the rows of the FFT bins above each cutoff, which take the bands there down to the mel floor.
    """

    def __init__(self, config: MeamtmConfig):
        super().__init__()
        self.max_warp = float(config.vtlp_max_warp)
        self.tilt_db = float(config.mel_tilt_db)
        self.band_stop_width = config.mel_band_stop_width
        self.band_stop_db = float(config.mel_band_stop_db)
        self.low_pass_probability = float(config.mel_low_pass_probability)
        self.low_pass_min_cutoff = float(config.mel_low_pass_min_cutoff)
        self.low_pass_db = float(config.mel_low_pass_db)

    def gains_db(self, batch_size: int, num_filters: int, device: torch.device) -> torch.Tensor:
        """`(batch_size, num_filters)` power gains in dB of each example's filters (tilt and band-stop)."""
        gains = torch.zeros(batch_size, num_filters, device=device)
        if self.tilt_db > 0:
            tilt = (2 * torch.rand(batch_size, 1, device=device) - 1) * self.tilt_db
            gains = gains + tilt * torch.linspace(-0.5, 0.5, num_filters, device=device)
        if self.band_stop_width > 0:
            band = band_masks(batch_size, num_filters, self.band_stop_width + 1, device)
            gains = gains - band * torch.rand(batch_size, 1, device=device) * self.band_stop_db
        return gains

    def low_pass_gains(self, batch_size: int, num_bins: int, device: torch.device) -> torch.Tensor:
        """`(batch_size, num_bins)` power gains of each example's FFT bins: 1 up to its cutoff, and
        `10 ** (-mel_low_pass_db / 10)` above it for the examples drawn to be low-passed (1 everywhere for the rest)."""
        cutoffs = self.low_pass_min_cutoff + (1 - self.low_pass_min_cutoff) * torch.rand(batch_size, 1, device=device)
        drawn = torch.rand(batch_size, 1, device=device) < self.low_pass_probability
        positions = torch.arange(num_bins, device=device, dtype=torch.float32)[None, :] / (num_bins - 1)
        above = (positions > cutoffs) & drawn
        return torch.where(above, 10.0 ** (-self.low_pass_db / 10), 1.0)

    def forward(self, filters: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return filters
        batch_size, _, num_filters = filters.shape
        device = filters.device
        if self.max_warp > 0:
            factors = 1 + (2 * torch.rand(batch_size, device=device) - 1) * self.max_warp
            filters = warp_filter_bank(filters, factors)
        if self.tilt_db > 0 or self.band_stop_width > 0:
            gains = torch.pow(10.0, self.gains_db(batch_size, num_filters, device) / 10)
            filters = filters * gains[:, None, :].to(filters.dtype)
        if self.low_pass_probability > 0:
            gains = self.low_pass_gains(batch_size, filters.shape[1], device)
            filters = filters * gains[:, :, None].to(filters.dtype)
        return filters


def shift_pitch(power: torch.Tensor, factors: torch.Tensor, envelope: torch.Tensor, floor: float) -> torch.Tensor:
    """Pitch without formants: power spectra `(batch, frames, freq)`, `(batch,)` factors and the `(freq, freq)`
    projection onto a frame's smooth envelope (`dct_projection`) -> float32 power spectra, the same shape.

    Each frame's log power (floored at `floor`) is split into its envelope, `log_power @ envelope`, and the rest,
    the harmonics of the voice's pitch; the rest alone is stretched along frequency, bin `k` taking the value at
    bin `k / factor` (interpolated linearly, the top bin's value past it), so harmonic `h` of a pitch `f0` moves to
    `h * factor * f0` under the same envelope. A factor of 1 gives the power back, up to rounding and the floor.
    """
    log_power = power.float().clamp_min(floor).log()
    smooth = torch.matmul(log_power, envelope)
    harmonics = log_power - smooth
    num_bins = power.shape[-1]
    bins = torch.arange(num_bins, device=power.device, dtype=torch.float32)
    positions = (bins[None, :] / factors[:, None].float()).clamp(max=num_bins - 1)
    return (smooth + interpolate_bins(harmonics, positions, dim=2)).exp()


class MeamtmPitchShift(nn.Module):
    """A new pitch per example, the same vocal tract (`config.pitch_shift_semitones`), in training only.

    `draw` gives each example of a batch a factor `2 ** (s / 12)`, `s` uniform in `[-pitch_shift_semitones,
    pitch_shift_semitones]` semitones, on the batch's device, or None outside training; the frontend passes the
    factors with each power spectrum to `shift_pitch` before the mel product. Speed perturbation moves pitch,
    formants and tempo together and VTLP (`MeamtmFilterBankAugment`) the formants alone; this moves the pitch alone.
    """

    def __init__(self, config: MeamtmConfig):
        super().__init__()
        self.semitones = float(config.pitch_shift_semitones)
        # Far below the mel floor: a frame of digital silence still gives the mel floor after the shift.
        self.floor = config.mel_floor * 1e-4

    def draw(self, batch_size: int, device: torch.device) -> torch.Tensor | None:
        if not self.training:
            return None
        semitones = (2 * torch.rand(batch_size, device=device) - 1) * self.semitones
        return torch.pow(2.0, semitones / 12)

    def forward(self, power: torch.Tensor, factors: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        return shift_pitch(power, factors, envelope, self.floor)


class MeamtmFreqMixStyle(nn.Module):
    """Freq-MixStyle (Schmid et al., CP-JKU, DCASE 2022; after MixStyle, Zhou et al. 2021): a recording's colour
    from another clip of the batch, per example, on the normalised log-mel, in training only.

    `(batch, num_frames, num_mel_bins)` features and `(batch,)` numbers of real frames -> the same shape. Each
    example, with probability `freq_mixstyle_probability`, has each band standardised by its own mean and
    standard deviation over its real frames and rescaled by a mix of its own and a partner's statistics,
    `l * own + (1 - l) * partner's` with `l ~ Beta(freq_mixstyle_alpha, freq_mixstyle_alpha)` per example and
    the partner a random permutation of the batch. A microphone, a room or a voice's timbre set each band's
    mean and spread over a clip; mixing them teaches the model to read past them while it still sees them
    (per-clip normalisation removes them at test time as well). Padding frames are left as they are and do not
    count in the statistics, so a clip's draw does not depend on how far the batch is padded. The statistics
    carry no gradient (as MixStyle's); in evaluation the features pass unchanged.
    """

    eps = 1e-6

    def __init__(self, config: MeamtmConfig):
        super().__init__()
        self.probability = float(config.freq_mixstyle_probability)
        self.alpha = float(config.freq_mixstyle_alpha)

    def forward(self, features: torch.Tensor, real_frames: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return features
        batch_size, num_frames, _ = features.shape
        device = features.device
        is_real = (torch.arange(num_frames, device=device)[None, :] < real_frames[:, None])[..., None]
        count = is_real.sum(dim=1, keepdim=True).clamp(min=1).to(features.dtype)
        detached = features.detach()
        means = torch.where(is_real, detached, 0.0).sum(dim=1, keepdim=True) / count
        variances = torch.where(is_real, (detached - means) ** 2, 0.0).sum(dim=1, keepdim=True) / count
        deviations = (variances + self.eps).sqrt()
        concentration = torch.full((batch_size,), self.alpha, device=device)
        # validate_args=False: validation reads the parameters back to the host, a device sync per step.
        weights = torch.distributions.Beta(concentration, concentration, validate_args=False).sample()
        weights = weights.to(features.dtype).view(-1, 1, 1)
        partners = torch.randperm(batch_size, device=device)
        mixed_means = weights * means + (1 - weights) * means[partners]
        mixed_deviations = weights * deviations + (1 - weights) * deviations[partners]
        mixed = (features - means) / deviations * mixed_deviations + mixed_means
        chosen = (torch.rand(batch_size, device=device) < self.probability).view(-1, 1, 1)
        return torch.where(chosen & is_real, mixed, features)


@dataclass
class MeamtmMixing:
    """One mixup draw for a batch: example i becomes `weights[i] * x[i] + (1 - weights[i]) * x[partners[i]]`.

    weights (`(batch,)` float32), partners (`(batch,)` long), both on the batch's device; `level` is
    `"waveform"` or `"spectrogram"`, where `MeamtmModel` mixes.
    """

    weights: torch.Tensor
    partners: torch.Tensor
    level: str

    def mix(self, tensor: torch.Tensor) -> torch.Tensor:
        """Mix a `(batch, ...)` tensor along its first dimension, in the tensor's dtype."""
        weights = self.weights.to(tensor.dtype).view(-1, *([1] * (tensor.dim() - 1)))
        return weights * tensor + (1 - weights) * tensor[self.partners]

    def mix_waveforms(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(batch, num_samples)` waveforms and `(batch,)` lengths, mixed when mixing at the waveform level."""
        if self.level != "waveform":
            return waveforms, lengths
        if lengths is not None:
            lengths = torch.maximum(lengths, lengths[self.partners])
        return self.mix(waveforms), lengths

    def mix_spectrograms(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """`(batch, num_frames, num_mel_bins)`, mixed when mixing at the spectrogram level (PaSST)."""
        return self.mix(spectrogram) if self.level == "spectrogram" else spectrogram

    def spectrogram_lengths(self, lengths: torch.Tensor | None) -> torch.Tensor | None:
        """`(batch,)` lengths that cover both mixed clips when mixing at the spectrogram level (a mixed
        spectrogram holds audio as far as the longer of its two clips); unchanged otherwise."""
        if self.level != "spectrogram" or lengths is None:
            return lengths
        return torch.maximum(lengths, lengths[self.partners])


class MeamtmMixup:
    """Mixup (Zhang et al. 2018) drawn per micro-batch inside `MeamtmForAudioClassification.forward`.

    Mixing inside the model's forward keeps inputs and targets together: under `accelerate`, several
    devices or gradient accumulation, each micro-batch mixes within itself and its loss is computed with
    its own mixed targets. Weights are `max(l, 1 - l)` with `l ~ Beta(mixup_alpha, mixup_alpha)` (PaSST),
    so each example stays the larger part of its mix; a fraction `1 - mixup_probability` of the examples
    is left unmixed (weight 1), as in AST's recipe.
    """

    def __init__(self, config: MeamtmConfig):
        self.alpha = float(config.mixup_alpha)
        self.probability = float(config.mixup_probability)
        self.level = config.mixup_level

    def draw(self, batch_size: int, device: torch.device) -> MeamtmMixing:
        concentration = torch.full((batch_size,), self.alpha, device=device)
        # validate_args=False: validation reads the parameters back to the host, a device sync per step.
        weights = torch.distributions.Beta(concentration, concentration, validate_args=False).sample()
        weights = torch.maximum(weights, 1 - weights)
        weights = torch.where(torch.rand(batch_size, device=device) < self.probability, weights, 1.0)
        partners = torch.randperm(batch_size, device=device)
        return MeamtmMixing(weights=weights, partners=partners, level=self.level)

    @staticmethod
    def mix_targets(labels: torch.Tensor, mixing: MeamtmMixing, problem_type: str, num_labels: int) -> torch.Tensor:
        """Float targets of the mixed batch: soft class probabilities (rows sum to one) for single-label
        classification, mixed multi-hot vectors for multi-label, mixed values for regression."""
        if problem_type == "single_label_classification":
            if labels.dim() != 1 or labels.min() < 0 or labels.max() >= num_labels:
                raise ValueError(
                    f"Mixup needs one class index in [0, {num_labels}) per example, got labels of shape "
                    f"{tuple(labels.shape)} with values {labels.min().item()}..{labels.max().item()}; ignored "
                    "examples (-100) cannot be mixed: drop them or set mixup_alpha=0."
                )
            labels = nn.functional.one_hot(labels, num_labels)
        return mixing.mix(labels.float())

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, mixing: MeamtmMixing, config, **kwargs) -> torch.Tensor:
        """The loss `config.problem_type` picks (as `ForSequenceClassificationLoss`), against the mixed targets.

        Cross-entropy takes the soft targets, which equals `w * CE(y) + (1 - w) * CE(y[partner])`; it honours
        `num_items_in_batch` as transformers' loss does, so gradient accumulation averages correctly.
        """
        problem_type = problem_type_of(config, labels)
        targets = self.mix_targets(labels.to(logits.device), mixing, problem_type, config.num_labels)
        if problem_type == "single_label_classification":
            return fixed_cross_entropy(logits.view(-1, config.num_labels), targets.to(logits.dtype), **kwargs)
        if problem_type == "multi_label_classification":
            return nn.functional.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
        if config.num_labels == 1:
            return nn.functional.mse_loss(logits.squeeze(), targets.to(logits.dtype).squeeze())
        return nn.functional.mse_loss(logits, targets.to(logits.dtype))


def problem_type_of(config, labels: torch.Tensor) -> str:
    """`config.problem_type`, or what transformers' sequence-classification loss infers from the labels."""
    if config.problem_type is not None:
        return config.problem_type
    if config.num_labels == 1:
        return "regression"
    if labels.dtype in (torch.long, torch.int):
        return "single_label_classification"
    return "multi_label_classification"


def average_test_time_predictions(logits: torch.Tensor, config: MeamtmConfig) -> torch.Tensor:
    """Test-time augmentation: `(views, batch, num_labels)` logits, one row per view (a filter-bank warp, a frame
    shift, or a pair of them) -> `(batch, num_labels)` logits whose prediction is the views' mean one.

    Single-label: the log of the mean class probabilities (their softmax is that mean, and cross-entropy on them
    is that mean's). Multi-label: the logit of each label's mean probability, from log-sigmoids so that confident
    labels stay finite. Regression (`num_labels == 1` without a problem type, as transformers' loss reads it):
    the mean value.
    """
    count = logits.shape[0]
    problem = config.problem_type
    if problem == "regression" or (problem is None and config.num_labels == 1):
        return logits.mean(0)
    wide = logits.float()
    if problem == "multi_label_classification":
        present = torch.logsumexp(nn.functional.logsigmoid(wide), dim=0)
        absent = torch.logsumexp(nn.functional.logsigmoid(-wide), dim=0)
        return (present - absent).to(logits.dtype)
    return (torch.logsumexp(wide.log_softmax(-1), dim=0) - math.log(count)).to(logits.dtype)


__all__ = [
    "MeamtmFilterBankAugment",
    "MeamtmFreqMixStyle",
    "MeamtmMixing",
    "MeamtmMixup",
    "MeamtmPatchout",
    "MeamtmPitchShift",
    "MeamtmSpecAugment",
    "average_test_time_predictions",
]
