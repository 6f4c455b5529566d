"""Balanced sampling (PSLA, Gong 2021): draw training clips in inverse proportion to their labels' frequency;
clip lengths for the Trainer's `group_by_length` sampler.
"""

import numpy as np
import torch
from datasets import Audio, IterableDataset

from ..audio_io import audio_info, load_audio
from .data import LabelSpace, class_names_of


def balanced_sampling_weights(dataset, label_column: str, labels: LabelSpace) -> np.ndarray:
    """Per-clip sampling weights `(num_clips,)`: the sum over its labels of 1 / label frequency (PSLA, Gong 2021).

    Drawing clips with these weights shows every class about equally often; it reads only the label column.
    """
    if isinstance(dataset, IterableDataset):
        raise ValueError(
            "Balanced sampling needs the label counts of a map-style data set; it cannot stream (drop --streaming)."
        )
    names = class_names_of(dataset, label_column)
    column = dataset.with_format(None)[label_column] if hasattr(dataset, "with_format") else dataset[label_column]
    rows = [labels.encode(value, names, where=f"Row {index}") for index, value in enumerate(column)]
    targets = np.zeros((len(rows), len(labels.names)), dtype=np.float64)
    for index, row in enumerate(rows):
        if labels.multi_label:
            targets[index] = row
        else:
            targets[index, row] = 1.0
    frequency = targets.sum(axis=0)
    return targets @ np.where(frequency > 0, 1.0 / np.maximum(frequency, 1), 0.0)


class BalancedSampler(torch.utils.data.Sampler):
    """Draws `len(weights)` clip indices per epoch with replacement, in proportion to `weights`.

    Seeded by (seed, epoch) through `set_epoch`, which the Trainer and accelerate call, so a resumed run and
    every data-parallel process draw the same sequence.
    """

    def __init__(self, weights: np.ndarray, seed: int = 0):
        weights = np.asarray(weights, dtype=np.float64)
        if len(weights) == 0 or not np.all(np.isfinite(weights)) or np.any(weights < 0) or np.sum(weights) <= 0:
            raise ValueError("Balanced sampling needs finite, non-negative clip weights with a positive sum.")
        self.weights = torch.as_tensor(np.asarray(weights), dtype=torch.float64)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.multinomial(self.weights, len(self.weights), replacement=True, generator=generator).tolist()


def add_length_column(dataset, audio_column: str, sampling_rate: int, column: str = "length", skip_unreadable: bool = False):
    """A map-style data set with `column`: each clip's length in samples at `sampling_rate`, read from the file
    header (`meamtm.audio_io.audio_info`) without decoding, so that the Trainer's `group_by_length` sampler
    (`train_sampling_strategy="group_by_length"`, `length_column_name`) can batch clips of similar length.

    A clip whose header holds no duration is decoded to count its samples. A clip that cannot be read raises the
    decoder's `ValueError`, or with `skip_unreadable` gets length 0 (the training transform then skips and logs
    it). Call it before `prepare_dataset`.
    """
    if isinstance(dataset, IterableDataset):
        raise ValueError("Grouping by length needs a map-style data set; it cannot stream (drop --streaming).")

    def length_of(value) -> int:
        try:
            return readable_length_of(value)
        except ValueError:
            if not skip_unreadable:
                raise
            return 0

    def readable_length_of(value) -> int:
        if isinstance(value, dict) and "array" in value:
            return round(len(value["array"]) * sampling_rate / value["sampling_rate"])
        source = value if isinstance(value, str) else (value.get("bytes") or value.get("path"))
        duration = audio_info(source).duration_s
        if duration is None:
            return len(load_audio(value, sampling_rate))
        return round(duration * sampling_rate)

    undecoded = dataset.cast_column(audio_column, Audio(decode=False)) if dataset.features is not None else dataset
    lengths = [length_of(value) for value in undecoded.with_format(None)[audio_column]]
    return dataset.add_column(column, lengths)


__all__ = ["BalancedSampler", "add_length_column", "balanced_sampling_weights"]
