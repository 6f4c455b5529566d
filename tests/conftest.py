"""Shared fixtures: tiny configs and real FSDD clips (from ../shared/data/fsdd, never copied here)."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from meamtm import MeamtmConfig


REPO = Path(__file__).resolve().parents[1]

# Put in front of a script run in a fresh process (`python -c`): that process cannot import meamtm, as where it
# is not installed (it is installed in the test environment), so a checkpoint must load as remote code.
WITHOUT_MEAMTM = """import importlib.abc, sys
class NoMeamtm(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "meamtm" or name.startswith("meamtm."):
            raise ImportError("meamtm is not installed here")
sys.meta_path.insert(0, NoMeamtm())
"""
FSDD = Path(os.environ.get("MEAMTM_FSDD", REPO.parent / "shared" / "data" / "fsdd"))

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    num_mel_bins=32,
    max_length=64,
    patch_size=8,
    frequency_stride=6,
    time_stride=6,
)


def tiny_config(**overrides) -> MeamtmConfig:
    """A 2-layer, 32-wide MEAMTM over 64 frames x 32 mels (0.65 s of 16 kHz audio)."""
    return MeamtmConfig(**{**TINY, **overrides})


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    if not (FSDD / "train").is_dir():
        message = f"FSDD not found at {FSDD} (set MEAMTM_FSDD to its folder)"
        if os.environ.get("CI"):
            raise FileNotFoundError(message)
        pytest.skip(message)
    return FSDD


@pytest.fixture(scope="session")
def fsdd_test_files(fsdd_dir) -> list[Path]:
    """One test-split WAV of each digit, each speaker in turn (8 kHz, 16-bit mono)."""
    speakers = ["george", "jackson", "lucas", "theo", "yweweler"]
    return [fsdd_dir / "test" / str(digit) / f"{speakers[digit % 5]}_{digit % 5}.wav" for digit in range(10)]


@pytest.fixture(scope="session")
def fsdd_clips_16k(fsdd_test_files) -> list[np.ndarray]:
    """The same clips decoded and resampled to 16 kHz by `datasets` (torchcodec), as a user would load them."""
    from datasets import Audio, Dataset

    dataset = Dataset.from_dict({"audio": [str(path) for path in fsdd_test_files]})
    dataset = dataset.cast_column("audio", Audio(sampling_rate=16000))
    clips = []
    for row in dataset:
        assert row["audio"]["sampling_rate"] == 16000
        clips.append(np.asarray(row["audio"]["array"], dtype=np.float32))
    return clips
