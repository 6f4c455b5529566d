"""Fixtures shared by the training tests."""

import numpy as np
import pytest
import soundfile


@pytest.fixture
def clip_file(tmp_path):
    """A 0.5 s 440 Hz tone at 8 kHz, 16-bit WAV."""
    path = tmp_path / "tone.wav"
    t = np.arange(4000) / 8000
    soundfile.write(path, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000, subtype="PCM_16")
    return str(path)
