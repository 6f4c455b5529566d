"""Waveform augmentation for training: random gain, delay, noise, speed, tempo, spectral tilt and reverberation,
drawn per clip.

It runs in the data loader on each decoded clip, before cropping (`meamtm.training.collate`), with a generator
seeded per (seed, epoch, clip), so runs are reproducible. Augmentation of the log-mel (SpecAugment, patchout,
mixup) lives in the model (`meamtm/augmentation_meamtm.py`), on the device.
"""

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import fftconvolve, lfilter, resample_poly

# Speed factors are rounded to fractions with at most this denominator (steps of under 1/64 near 1), which keeps
# the polyphase filter short (its length grows with the larger of the two factors).
MAX_SPEED_DENOMINATOR = 64


def change_speed(wave: np.ndarray, factor: float) -> np.ndarray:
    """`(num_samples,)` -> `(about num_samples / factor,)`: played `factor` times as fast, pitch included.

    A polyphase resampler (`scipy.signal.resample_poly`, Kaiser-windowed sinc) takes the clip from `factor`
    times the rate to the rate, so a speed-up low-passes what would pass the Nyquist frequency instead of
    folding it back (linear interpolation aliases). `factor` is rounded to a fraction `p / q` with
    `q <= MAX_SPEED_DENOMINATOR`.
    """
    ratio = Fraction(factor).limit_denominator(MAX_SPEED_DENOMINATOR)
    if ratio == 1 or len(wave) < 2:
        return wave
    return resample_poly(wave, ratio.denominator, ratio.numerator).astype(np.float32)


def change_tempo(
    wave: np.ndarray, factor: float, sampling_rate: int, frame_s: float = 0.02, tolerance_s: float = 0.005
) -> np.ndarray:
    """`(num_samples,)` -> `(about num_samples / factor,)`: spoken `factor` times as fast, pitch and formants kept.

    WSOLA (waveform-similarity overlap-add, Verhelst & Roelands 1993): Hann frames of `frame_s` seconds are laid
    down every half frame of the output, each read from about `factor` times its output position in the input,
    moved by up to `tolerance_s` seconds to where it best continues the frame before it (the largest
    cross-correlation with what followed that frame in the input), so that the periods of a voiced sound line up
    and no pitch change or phasing is heard. The overlap-added frames are divided by the sum of their windows,
    which keeps the level. A factor of 1 returns `wave` itself.
    """
    if factor == 1 or len(wave) < 2:
        return wave
    frame = max(2, 2 * round(frame_s * sampling_rate / 2))
    hop = frame // 2
    tolerance = max(1, round(tolerance_s * sampling_rate))
    length = max(1, round(len(wave) / factor))
    count = length // hop + 2
    # Zeros around the clip: a frame may be read up to `tolerance` before its start and a frame past its end.
    offset = tolerance + frame
    tail = np.zeros(int(count * hop * factor) + 2 * offset)
    padded = np.concatenate((np.zeros(offset), wave.astype(np.float64), tail))
    frames = sliding_window_view(padded, frame)  # frames[i]: the frame read from sample i - offset of `wave`
    # Each frame's candidates start at `low`, `tolerance` before its nominal place; a plain loop over Python ints
    # (the search is sequential: each frame continues the one before).
    lows = (offset - tolerance + np.round(np.arange(count) * hop * factor)).astype(np.int64).tolist()
    span = 2 * tolerance + 1
    starts = [offset]
    for low in lows[1:]:
        starts.append(low + int(np.argmax(np.dot(frames[low : low + span], frames[starts[-1] + hop]))))
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / frame)
    # Overlap-add at half-frame hops: each output hop holds the first half of its frame and the second half of
    # the frame before.
    laid = frames[starts] * window
    output = np.zeros((count + 1) * hop)
    output[: count * hop] += laid[:, :hop].ravel()
    output[hop:] += laid[:, hop:].ravel()
    weight = np.zeros_like(output)
    weight[: count * hop] += np.tile(window[:hop], count)
    weight[hop:] += np.tile(window[hop:], count)
    return (output / np.maximum(weight, 1e-3))[:length].astype(np.float32)


def room_impulse_response(rng: np.random.Generator, rt60_s: float, sampling_rate: int) -> np.ndarray:
    """A synthetic room impulse response `(rt60_s * sampling_rate,)` float32: a unit direct path, then Gaussian
    noise whose envelope decays by 60 dB over `rt60_s` seconds (the exponential tail of a diffuse room)."""
    length = max(2, int(rt60_s * sampling_rate))
    time_s = np.arange(length) / sampling_rate
    response = rng.standard_normal(length) * 10 ** (-3 * time_s / rt60_s) * 0.1
    response[0] = 1.0
    return response.astype(np.float32)


def reverberate(wave: np.ndarray, response: np.ndarray) -> np.ndarray:
    """`(num_samples,)` wave convolved with a room impulse response (by FFT), cut to its length, RMS kept."""
    wet = fftconvolve(wave, response)[: len(wave)]
    scale = np.sqrt(np.mean(np.square(wave, dtype=np.float64)) / (np.mean(np.square(wet, dtype=np.float64)) + 1e-20))
    return (wet * scale).astype(np.float32)


def trim_quiet_edges(wave: np.ndarray, rng: np.random.Generator, most_db: float, sampling_rate: int) -> np.ndarray:
    """`wave` with, independently at each end and with probability 1/2, the 10 ms frames quieter than `t` dB below
    its loudest frame cut off up to the first (last) louder one, `t` uniform in `[most_db / 2, most_db]`. The
    loudest frame always stays, so the clip never empties."""
    frame = max(1, sampling_rate // 100)
    count = len(wave) // frame
    if count < 2:
        return wave
    energy = np.square(wave[: count * frame].astype(np.float64)).reshape(count, frame).mean(axis=1)
    level = 10 * np.log10(energy + 1e-20)
    start, end = 0, len(wave)
    if rng.random() < 0.5:
        start = int(np.argmax(level >= level.max() - rng.uniform(most_db / 2, most_db))) * frame
    if rng.random() < 0.5:
        end = (count - int(np.argmax(level[::-1] >= level.max() - rng.uniform(most_db / 2, most_db)))) * frame
    return wave[start:end]


@dataclass
class WaveformAugmentation:
    """Random waveform changes applied in training, each off at 0.

    gain_db: uniform gain in [-gain_db, +gain_db] dB.
    shift_s: the clip starts after a random delay of up to `shift_s` seconds (while it fits the window), and a
        longer clip is cropped at a random offset regardless.
    noise_snr_db: noise at a random SNR in [noise_snr_db, noise_snr_db + 20] dB, with probability 1/2
        (0 = off).
    trim_s: with probability 1/2, up to `trim_s` seconds are cut off the clip's start and, drawn apart, off its
        end (at most a quarter of the clip at each end), as a recording trimmed at another threshold loses the
        quiet edges of its first and last sounds. Needs `sampling_rate`.
    trim_db: each end, with probability 1/2, is cut to the first (last) 10 ms frame whose energy is within `t` dB
        of the clip's loudest frame, `t` uniform in [trim_db / 2, trim_db] (`trim_quiet_edges`): a clip cut by a
        voice-activity detector at another threshold, that loses a weak first consonant (the /s/ of "six", the
        /t/ of "two") or its silence. Needs `sampling_rate`.
    noise_color: the noise is white at 0; otherwise each draw is coloured by the first-order filter
        `n[t] = w[t] + b n[t - 1]`, `b` uniform in [-noise_color, noise_color] (at most 0.99), before it is scaled to
        the SNR: from low rumble (`b > 0`) to high hiss (`b < 0`), as microphones and rooms differ in their noise.
    speed: play faster or slower by a random factor in [1 - speed, 1 + speed] (tempo and pitch change together;
        `change_speed`).
    tempo: speak faster or slower by a random factor in [1 - tempo, 1 + tempo], pitch and formants kept
        (`change_tempo`): another speaker's pace. Needs `sampling_rate`.
    tilt: random spectral tilt, the first-order filter `y[n] = x[n] - a x[n - 1]` with `a` uniform in
        [-tilt, tilt]: gain `1 - a` at 0 Hz and `1 + a` at the Nyquist frequency (0.5: up to +-9.5 dB between
        them), as different microphones and rooms tilt a voice's spectrum.
    reverb_s: with probability 1/2, reverberation: the clip is convolved with a synthetic room impulse response
        (the direct path, then Gaussian noise decaying by 60 dB over a reverberation time RT60 uniform in
        [reverb_s / 4, reverb_s] seconds), kept at the clip's length and RMS. Needs `sampling_rate`.
    """

    gain_db: float = 0.0
    shift_s: float = 0.0
    noise_snr_db: float = 0.0
    speed: float = 0.0
    tilt: float = 0.0
    reverb_s: float = 0.0
    noise_color: float = 0.0
    trim_s: float = 0.0
    trim_db: float = 0.0
    tempo: float = 0.0

    def __post_init__(self):
        if not 0 <= self.noise_color < 1:
            raise ValueError(
                f"noise_color={self.noise_color} must be in [0, 1): the noise filter's pole |b| must stay below 1 "
                "(0 = white noise, 0.9 = strongly coloured)."
            )
        if not 0 <= self.tempo < 1:
            raise ValueError(
                f"tempo={self.tempo} must be in [0, 1): the tempo factor is drawn from [1 - tempo, 1 + tempo] and must "
                "stay positive (0.2: 0.8 to 1.2 times as fast)."
            )

    def apply(self, wave: np.ndarray, rng: np.random.Generator, sampling_rate: int | None = None) -> np.ndarray:
        """`(num_samples,)` float32 wave -> the augmented wave, float32 in [-1, 1] (its length changes with `speed`
        and `tempo`)."""
        if sampling_rate is None:
            for name in ("trim_s", "trim_db", "reverb_s", "tempo"):  # the changes sized in seconds
                if getattr(self, name) > 0:
                    raise ValueError(f"{name}={getattr(self, name)} needs the waves' sampling_rate: pass it to apply().")
        if self.trim_s > 0 and rng.random() < 0.5:
            most = min(int(self.trim_s * sampling_rate), len(wave) // 4)
            start, end = rng.integers(0, most + 1, size=2)
            wave = wave[start : len(wave) - end]
        if self.trim_db > 0:
            wave = trim_quiet_edges(wave, rng, self.trim_db, sampling_rate)
        if self.speed > 0:
            wave = change_speed(wave, rng.uniform(1 - self.speed, 1 + self.speed))
        if self.tempo > 0:
            wave = change_tempo(wave, rng.uniform(1 - self.tempo, 1 + self.tempo), sampling_rate)
        if self.tilt > 0 and len(wave) > 1:
            coefficient = np.float32(rng.uniform(-self.tilt, self.tilt))
            wave = np.concatenate((wave[:1], wave[1:] - coefficient * wave[:-1]))
        if self.reverb_s > 0 and rng.random() < 0.5:
            wave = reverberate(wave, room_impulse_response(rng, rng.uniform(self.reverb_s / 4, self.reverb_s), sampling_rate))
        if self.gain_db > 0:
            wave = wave * np.float32(10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20))
        if self.noise_snr_db > 0 and rng.random() < 0.5:
            power = float(np.mean(wave.astype(np.float64) ** 2)) + 1e-10
            snr = rng.uniform(self.noise_snr_db, self.noise_snr_db + 20)
            noise = rng.standard_normal(len(wave))
            if self.noise_color > 0:
                noise = lfilter([1.0], [1.0, -rng.uniform(-self.noise_color, self.noise_color)], noise)
                noise /= math.sqrt(float(np.mean(noise**2)) + 1e-20)
            scale = math.sqrt(power / 10 ** (snr / 10))
            wave = wave + (noise * scale).astype(np.float32)
        return np.clip(wave, -1.0, 1.0).astype(np.float32)


__all__ = [
    "WaveformAugmentation",
    "change_speed",
    "change_tempo",
    "reverberate",
    "room_impulse_response",
    "trim_quiet_edges",
]
