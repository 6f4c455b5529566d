"""Balanced sampling (PSLA, Gong 2021): draw training clips in inverse proportion to their labels' frequency."""

import numpy as np
import torch
from datasets import IterableDataset

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


__all__ = ["BalancedSampler", "balanced_sampling_weights"]
