"""meamtm/training/augmentation.py: waveform augmentation drawn per clip."""

import numpy as np
import pytest

from meamtm.training.augmentation import (
    WaveformAugmentation,
    change_speed,
    change_tempo,
    room_impulse_response,
    trim_quiet_edges,
)


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


def test_speed_up_filters_what_would_pass_nyquist_instead_of_aliasing():
    rate = 8000
    tone = np.sin(2 * np.pi * 3950 * np.arange(rate) / rate).astype(np.float32)  # near Nyquist
    faster = change_speed(tone, 1.1)  # would be 4.35 kHz, above Nyquist: filtered out, not folded back to 3.65 kHz
    assert len(faster) == pytest.approx(rate / 1.1, abs=2) and faster.dtype == np.float32
    # Linear interpolation would fold most of the tone back as an alias; the polyphase filter removes most of it.
    assert np.sqrt(np.mean(faster[200:-200] ** 2)) < 0.25 * np.sqrt(np.mean(tone**2))
    low = np.sin(2 * np.pi * 500 * np.arange(rate) / rate).astype(np.float32)
    slower = change_speed(low, 0.9)  # 500 Hz -> 450 Hz, kept
    spectrum = np.abs(np.fft.rfft(slower[200:-200]))
    peak = np.fft.rfftfreq(len(slower) - 400, 1 / rate)[np.argmax(spectrum)]
    assert peak == pytest.approx(450, abs=3)
    assert change_speed(low, 1.0) is low


def voiced_bursts(rate: int) -> np.ndarray:
    """Two bursts of a 150 Hz harmonic voice (fundamental and three harmonics), at 0.2-0.4 s and 0.6-0.7 s of 1 s."""
    time_s = np.arange(rate) / rate
    voice = sum(np.sin(2 * np.pi * 150 * k * time_s) / k for k in range(1, 5))
    envelope = ((time_s >= 0.2) & (time_s < 0.4)) | ((time_s >= 0.6) & (time_s < 0.7))
    return (0.3 * voice * envelope).astype(np.float32)


def loud_frames(wave: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(start seconds of each 5 ms frame, whether its level is above half the peak level)."""
    frame = rate // 200
    level = np.sqrt(np.square(wave[: len(wave) // frame * frame]).reshape(-1, frame).mean(axis=1))
    return np.arange(len(level)) * frame / rate, level > level.max() / 2


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_tempo_moves_the_timing_and_keeps_the_pitch_and_level(rate, factor):
    wave = voiced_bursts(rate)
    slower_or_faster = change_tempo(wave, factor, rate)
    assert len(slower_or_faster) == round(rate / factor) and slower_or_faster.dtype == np.float32
    # The bursts start and end at 1 / factor times their times: every 5 ms frame is loud where the moved bursts are,
    # and quiet elsewhere, except within 15 ms of a moved edge (a frame of the 20 ms WSOLA grid).
    time_s, loud = loud_frames(slower_or_faster, rate)
    edges = np.array([0.2, 0.4, 0.6, 0.7]) / factor
    expected = ((time_s >= edges[0]) & (time_s < edges[1])) | ((time_s >= edges[2]) & (time_s < edges[3]))
    near_an_edge = np.abs(time_s[:, None] - edges[None, :]).min(axis=1) < 0.015
    assert np.array_equal(loud[~near_an_edge], expected[~near_an_edge]) and loud.sum() > 0.9 * expected.sum()
    # Inside the first burst the harmonics stay where they were: 150 Hz apart, the fundamental the loudest.
    start, end = round(0.23 * rate / factor), round(0.37 * rate / factor)
    inside = slower_or_faster[start:end]
    spectrum = np.abs(np.fft.rfft(inside * np.hanning(len(inside))))
    assert np.fft.rfftfreq(len(inside), 1 / rate)[np.argmax(spectrum)] == pytest.approx(150, abs=8)
    original = wave[round(0.23 * rate) : round(0.37 * rate)]
    assert np.sqrt(np.mean(inside**2)) == pytest.approx(np.sqrt(np.mean(original**2)), rel=0.05)
    # Speed, by contrast, moves the fundamental with the timing.
    sped = change_speed(wave, factor)[round(0.23 * rate / factor) : round(0.37 * rate / factor)]
    sped_spectrum = np.abs(np.fft.rfft(sped * np.hanning(len(sped))))
    assert np.fft.rfftfreq(len(sped), 1 / rate)[np.argmax(sped_spectrum)] == pytest.approx(150 * factor, abs=8)


def test_tempo_draws_a_factor_per_clip_and_checks_its_range():
    rate = 8000
    wave = voiced_bursts(rate)
    assert change_tempo(wave, 1.0, rate) is wave
    assert len(change_tempo(wave[:1], 0.8, rate)) == 1  # a clip shorter than a frame still comes back
    lengths = {len(WaveformAugmentation(tempo=0.2).apply(wave, np.random.default_rng(s), rate)) for s in range(10)}
    assert min(lengths) >= rate / 1.2 - 1 and max(lengths) <= rate / 0.8 + 1 and len(lengths) > 5
    with pytest.raises(ValueError, match="tempo=1.0 must be in \\[0, 1\\)"):
        WaveformAugmentation(tempo=1.0)
    with pytest.raises(ValueError, match="tempo=0.2 needs the waves' sampling_rate"):
        WaveformAugmentation(tempo=0.2).apply(wave, np.random.default_rng(0))


def test_reverb_keeps_length_and_level_and_adds_a_decaying_tail():
    rate = 8000
    impulse = np.zeros(4000, dtype=np.float32)
    impulse[100] = 0.5
    reverberated = [WaveformAugmentation(reverb_s=0.4).apply(impulse, np.random.default_rng(s), rate) for s in range(20)]
    changed = [wave for wave in reverberated if not np.array_equal(wave, impulse)]
    assert 3 <= len(changed) <= 17  # about half of the clips
    for wave in changed:
        assert wave.shape == impulse.shape and wave.dtype == np.float32 and np.isfinite(wave).all()
        assert np.sqrt(np.mean(wave**2)) == pytest.approx(np.sqrt(np.mean(impulse**2)), rel=1e-3)
        assert np.abs(wave[:100]).max() < 1e-6  # causal: nothing before the sound (FFT round-off only)
        tail = wave[101:]
        early, late = np.abs(tail[:200]).mean(), np.abs(tail[-500:]).mean()
        assert early > 0 and late < early  # the room's tail decays
    response = room_impulse_response(np.random.default_rng(0), 0.3, rate)
    assert response.shape == (2400,) and response[0] == 1
    envelope = np.abs(response[1:2396]).reshape(5, 479).mean(1)  # 5 stretches of 60 ms
    assert np.all(np.diff(envelope) < 0)


def test_reverb_needs_the_sampling_rate():
    with pytest.raises(ValueError, match="reverb_s=0.4 needs the waves' sampling_rate"):
        for seed in range(10):  # reverberated with probability 1/2
            WaveformAugmentation(reverb_s=0.4).apply(np.ones(1000, dtype=np.float32), np.random.default_rng(seed))


def noise_of(augmentation: WaveformAugmentation, seed: int, length: int = 8000) -> np.ndarray:
    """The noise one draw adds to a steady tone (gain off, so the clip minus the tone is the noise)."""
    tone = (0.1 * np.sin(np.arange(length) / 7)).astype(np.float32)
    return augmentation.apply(tone, np.random.default_rng(seed)).astype(np.float64) - tone


def test_noise_is_at_its_snr_about_half_of_the_time_and_white_when_uncoloured():
    augmentation = WaveformAugmentation(noise_snr_db=10)
    noises = [noise_of(augmentation, seed) for seed in range(40)]
    noisy = [noise for noise in noises if np.any(noise != 0)]
    assert 10 <= len(noisy) <= 30
    tone_power = 0.1**2 / 2
    for noise in noisy:
        snr = 10 * np.log10(tone_power / np.mean(noise**2))
        assert 10 - 0.2 <= snr <= 30 + 0.2
        spectrum = np.abs(np.fft.rfft(noise)) ** 2
        assert 0.5 < spectrum[-2000:].mean() / spectrum[100:2100].mean() < 2  # flat


def test_coloured_noise_ranges_from_rumble_to_hiss_at_the_same_snr():
    augmentation = WaveformAugmentation(noise_snr_db=10, noise_color=0.9)
    tilts, tone_power = [], 0.1**2 / 2
    for seed in range(60):
        noise = noise_of(augmentation, seed)
        if np.any(noise != 0):
            assert 10 - 0.2 <= 10 * np.log10(tone_power / np.mean(noise**2)) <= 30 + 0.2
            spectrum = np.abs(np.fft.rfft(noise)) ** 2
            tilts.append(np.log10(spectrum[-1000:].mean() / spectrum[200:1200].mean()))
    assert min(tilts) < -0.5 and max(tilts) > 0.5  # some draws 5 dB darker, some 5 dB brighter than white


@pytest.mark.parametrize("color", [-0.1, 1.0])
def test_invalid_noise_colour_is_refused(color):
    with pytest.raises(ValueError, match=rf"noise_color={color} must be in \[0, 1\)"):
        WaveformAugmentation(noise_snr_db=10, noise_color=color)


def test_trim_cuts_each_end_apart_within_its_bounds_about_half_of_the_time():
    rate = 8000
    wave = np.arange(4000, dtype=np.float32) / 4000  # a ramp: where a cut clip starts tells the cut
    augmentation = WaveformAugmentation(trim_s=0.1)
    starts, ends, untouched = set(), set(), 0
    for seed in range(60):
        trimmed = augmentation.apply(wave, np.random.default_rng(seed), rate)
        if len(trimmed) == len(wave):
            np.testing.assert_array_equal(trimmed, wave)
            untouched += 1
            continue
        start = int(round(trimmed[0] * 4000))
        end = len(wave) - start - len(trimmed)
        np.testing.assert_array_equal(trimmed, wave[start : len(wave) - end])
        assert 0 <= start <= 800 and 0 <= end <= 800  # 0.1 s at 8 kHz
        starts.add(start)
        ends.add(end)
    assert 15 <= untouched <= 45 and len(starts) > 10 and len(ends) > 10
    short = augmentation.apply(wave[:400], np.random.default_rng(1), rate)
    assert len(short) >= 200  # at most a quarter of a short clip at each end


def test_trim_needs_the_sampling_rate():
    with pytest.raises(ValueError, match="trim_s=0.1 needs the waves' sampling_rate"):
        for seed in range(10):
            WaveformAugmentation(trim_s=0.1).apply(np.ones(1000, dtype=np.float32), np.random.default_rng(seed))


def test_trim_db_cuts_quiet_edges_at_a_drawn_threshold_and_keeps_the_loud_part():
    rate = 8000
    # 0.2 s at -40 dB, a 0.1 s consonant at -18 dB, a 0.3 s vowel at 0 dB, 0.2 s at -40 dB (10 ms frames: 80 samples)
    levels = np.repeat([-40.0, -18.0, 0.0, -40.0], [20, 10, 30, 20])
    wave = np.repeat(10 ** (levels / 20), 80).astype(np.float32) * np.tile([1, -1], 80 * 80 // 2).astype(np.float32)
    augmentation = WaveformAugmentation(trim_db=30)
    starts, ends = [], []
    for seed in range(200):
        trimmed = augmentation.apply(wave, np.random.default_rng(seed), rate)
        start = next(index for index in range(0, len(wave) - len(trimmed) + 1, 80)
                     if np.array_equal(wave[index : index + len(trimmed)], trimmed))
        starts.append(start // 80)
        ends.append((len(wave) - start - len(trimmed)) // 80)
        assert np.array_equal(trimmed[(30 - start // 80) * 80 : (60 - start // 80) * 80], wave[2400:4800])  # vowel kept
    # A threshold of 15-30 dB keeps the consonant (at 18 dB) when above 18 dB and cuts it below: three starts occur.
    assert set(starts) == {0, 20, 30} and set(ends) == {0, 20}
    assert 70 <= starts.count(0) <= 130 and 70 <= ends.count(0) <= 130  # each end half of the time
    assert 0 < starts.count(30) < starts.count(20)  # t in [15, 18) cuts the consonant: 3 of the 15 dB drawn
    np.testing.assert_array_equal(augmentation.apply(wave, np.random.default_rng(7), rate), augmentation.apply(wave, np.random.default_rng(7), rate))
    np.testing.assert_array_equal(trim_quiet_edges(wave[:50], np.random.default_rng(0), 30, rate), wave[:50])
    with pytest.raises(ValueError, match="trim_db=30 needs the waves' sampling_rate"):
        for seed in range(10):
            augmentation.apply(wave, np.random.default_rng(seed))
