"""meamtm/training/sampling.py: balanced (PSLA) sampling weights and the seeded sampler."""

import numpy as np
import pytest
from datasets import Dataset

from meamtm.training.data import LabelSpace
from meamtm.training.sampling import BalancedSampler, balanced_sampling_weights


def test_balanced_weights_are_inverse_label_frequency():
    dataset = Dataset.from_dict({"label": ["a"] * 6 + ["b"] * 2})
    weights = balanced_sampling_weights(dataset, "label", LabelSpace(["a", "b"], False))
    np.testing.assert_allclose(weights, [1 / 6] * 6 + [1 / 2] * 2)
    multi = Dataset.from_dict({"label": [["a"], ["a", "b"], ["a"]]})
    np.testing.assert_allclose(
        balanced_sampling_weights(multi, "label", LabelSpace(["a", "b"], True)), [1 / 3, 1 / 3 + 1, 1 / 3]
    )


def test_balanced_sampler_evens_out_classes_and_follows_the_epoch():
    weights = np.array([1 / 90] * 90 + [1 / 10] * 10)
    sampler = BalancedSampler(weights, seed=3)
    drawn = np.array([index for _ in range(20) for index in sampler])
    assert len(list(sampler)) == 100
    assert 0.4 < np.mean(drawn >= 90) < 0.6  # the rare class is drawn half of the time, not 10 %
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    with pytest.raises(ValueError, match="non-negative clip weights"):
        BalancedSampler(np.array([0.0, 0.0]))


def test_add_length_column_reads_lengths_at_the_model_rate_without_the_transform(tmp_path, clip_file):
    import soundfile

    from meamtm.training.collate import AudioTransform, prepare_dataset
    from meamtm.training.sampling import add_length_column

    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(1000, np.float32), 8000, subtype="PCM_16")
    dataset = Dataset.from_dict({"audio": [clip_file, str(short)], "label": [1, 2]})
    with_lengths = add_length_column(dataset, "audio", 16000)
    assert with_lengths["length"] == [8000, 2000]
    labels = LabelSpace([str(d) for d in range(10)], multi_label=False)
    prepared = prepare_dataset(with_lengths, AudioTransform("audio", "label", labels, 8000, 8000, train=False))
    assert prepared.with_format(None)["length"] == [8000, 2000]
    assert prepared[0]["input_values"].shape == (8000,)  # the transform still decodes the audio


def test_add_length_column_raises_on_an_unreadable_clip_or_gives_it_length_zero_when_skipping(tmp_path, clip_file):
    from meamtm.training.sampling import add_length_column

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    dataset = Dataset.from_dict({"audio": [clip_file, str(broken)], "label": [1, 2]})
    with pytest.raises(ValueError, match="broken.wav"):
        add_length_column(dataset, "audio", 16000)
    assert add_length_column(dataset, "audio", 16000, skip_unreadable=True)["length"] == [8000, 0]
