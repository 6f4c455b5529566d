"""Waveform augmentation for training: random gain, delay, noise, speed and spectral tilt, drawn per clip.

It runs in the data loader on each decoded clip, before cropping (`meamtm.training.collate`), with a generator
seeded per (seed, epoch, clip), so runs are reproducible. Augmentation of the log-mel (SpecAugment, patchout,
mixup) lives in the model (`meamtm/augmentation_meamtm.py`), on the device.
"""

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

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


@dataclass
class WaveformAugmentation:
    """Random waveform changes applied in training, each off at 0.

    gain_db: uniform gain in [-gain_db, +gain_db] dB.
    shift_s: the clip starts after a random delay of up to `shift_s` seconds (while it fits the window), and a
        longer clip is cropped at a random offset regardless.
    noise_snr_db: white noise at a random SNR in [noise_snr_db, noise_snr_db + 20] dB, with probability 1/2
        (0 = off).
    speed: play faster or slower by a random factor in [1 - speed, 1 + speed] (tempo and pitch change together;
        `change_speed`).
    tilt: random spectral tilt, the first-order filter `y[n] = x[n] - a x[n - 1]` with `a` uniform in
        [-tilt, tilt]: gain `1 - a` at 0 Hz and `1 + a` at the Nyquist frequency (0.5: up to +-9.5 dB between
        them), as different microphones and rooms tilt a voice's spectrum.
    """

    gain_db: float = 0.0
    shift_s: float = 0.0
    noise_snr_db: float = 0.0
    speed: float = 0.0
    tilt: float = 0.0

    def apply(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.speed > 0:
            wave = change_speed(wave, rng.uniform(1 - self.speed, 1 + self.speed))
        if self.tilt > 0 and len(wave) > 1:
            coefficient = np.float32(rng.uniform(-self.tilt, self.tilt))
            wave = np.concatenate((wave[:1], wave[1:] - coefficient * wave[:-1]))
        if self.gain_db > 0:
            wave = wave * np.float32(10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20))
        if self.noise_snr_db > 0 and rng.random() < 0.5:
            power = float(np.mean(wave.astype(np.float64) ** 2)) + 1e-10
            snr = rng.uniform(self.noise_snr_db, self.noise_snr_db + 20)
            scale = np.float32(math.sqrt(power / 10 ** (snr / 10)))
            wave = wave + rng.standard_normal(len(wave)).astype(np.float32) * scale
        return np.clip(wave, -1.0, 1.0).astype(np.float32)


__all__ = ["WaveformAugmentation", "change_speed"]
