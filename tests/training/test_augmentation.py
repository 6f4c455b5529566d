"""meamtm/training/augmentation.py: waveform augmentation drawn per clip."""

import numpy as np

from meamtm.training.augmentation import WaveformAugmentation


def test_speed_changes_the_length():
    wave = np.sin(np.arange(8000) / 10).astype(np.float32)
    lengths = {len(WaveformAugmentation(speed=0.2).apply(wave, np.random.default_rng(s))) for s in range(10)}
    assert min(lengths) >= 8000 / 1.2 - 2 and max(lengths) <= 8000 / 0.8 + 2 and len(lengths) > 5


def test_tilt_is_a_first_order_filter_within_its_bound():
    wave = (np.random.default_rng(0).standard_normal(4000) * 0.1).astype(np.float32)
    coefficients = set()
    for seed in range(20):
        tilted = WaveformAugmentation(tilt=0.5).apply(wave, np.random.default_rng(seed))
        coefficient = np.random.default_rng(seed).uniform(-0.5, 0.5)
        np.testing.assert_allclose(tilted[1:], wave[1:] - np.float32(coefficient) * wave[:-1], atol=1e-6)
        assert tilted[0] == wave[0] and tilted.dtype == np.float32
        spectrum = np.abs(np.fft.rfft(tilted)) ** 2
        # a > 0 lifts the top of the spectrum against the bottom, a < 0 the other way round
        assert np.sign(spectrum[-500:].mean() - spectrum[:500].mean()) == np.sign(coefficient)
        coefficients.add(round(coefficient, 3))
    assert len(coefficients) == 20
