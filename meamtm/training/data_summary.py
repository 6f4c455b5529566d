"""What a training set holds, read before training: sampling rates, clip durations and label counts.

`summarise_data` reads each clip's header (`meamtm.audio_io.audio_info`), not its samples, so it takes
seconds on thousands of files; `window_frames` turns the durations into a model window on the patch grid.
"""

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
from datasets import Audio, IterableDataset

from ..audio_io import audio_info
from ..configuration_meamtm import MeamtmConfig
from .collate import UnreadableAudioError
from .data import LabelSpace, class_names_of


@dataclass
class DataSummary:
    """Clips read, their sampling rates (Hz -> clips), durations `(num_read,)` in seconds, clips per label, and
    the training set's size (`None` for a stream, whose length is not known ahead)."""

    num_clips: int  # clips whose header was read
    sampling_rates: Counter
    durations_s: np.ndarray
    label_counts: dict[str, int]
    total_clips: int | None = None

    @property
    def common_sampling_rate(self) -> int:
        return self.sampling_rates.most_common(1)[0][0]

    def duration_quantile(self, quantile: float) -> float:
        return float(np.quantile(self.durations_s, quantile))

    def describe(self) -> str:
        """A few lines for the log: counts, rates, duration spread, the rarest and commonest labels."""
        rates = ", ".join(f"{rate} Hz x {count}" for rate, count in self.sampling_rates.most_common())
        counts = [f"{name} {count}" for name, count in sorted(self.label_counts.items(), key=lambda item: item[1])]
        shown = counts if len(counts) <= 8 else counts[:4] + ["..."] + counts[-4:]
        size = "" if self.total_clips is None else f" of {self.total_clips}"
        return "\n".join([
            f"{self.num_clips}{size} clips read; sampling rates: {rates}",
            f"durations (s): min {self.durations_s.min():.2f}, median {np.median(self.durations_s):.2f}, "
            f"95th percentile {self.duration_quantile(0.95):.2f}, max {self.durations_s.max():.2f}",
            f"{len(self.label_counts)} labels, clips per label (fewest first): " + ", ".join(shown),
        ])


def summarise_data(
    dataset,
    audio_column: str,
    label_column: str,
    labels: LabelSpace,
    max_clips: int = 2000,
    skip_unreadable: bool = False,
) -> DataSummary:
    """Rates and durations of up to `max_clips` clips (evenly spaced; the first ones of a stream) and the label
    counts of every clip (of the clips read, for a stream).

    A file whose header cannot be read raises `UnreadableAudioError` naming it, or with `skip_unreadable` is
    left out (training skips and counts it).
    """
    if dataset.features is not None and audio_column in dataset.features:
        dataset = dataset.cast_column(audio_column, Audio(decode=False))
    names = class_names_of(dataset, label_column)
    if isinstance(dataset, IterableDataset):
        rows = list(dataset.take(max_clips))
        values, label_values = [row[audio_column] for row in rows], [row[label_column] for row in rows]
    else:
        step = max(1, math.ceil(len(dataset) / max_clips))
        values = dataset.select(range(0, len(dataset), step))[audio_column]
        label_values = dataset.with_format(None)[label_column]
    rates, durations = Counter(), []
    for value in values:
        source = value if isinstance(value, str) else value.get("bytes") or value.get("path")
        try:
            info = audio_info(source)
        except ValueError as error:
            if skip_unreadable:
                continue
            name = source if isinstance(source, str) else "<audio bytes>"
            raise UnreadableAudioError.of(name, error) from error
        rates[info.sampling_rate] += 1
        if info.duration_s is not None:
            durations.append(info.duration_s)
    counts = Counter()
    for index, value in enumerate(label_values):
        target = labels.encode(value, names, where=f"Row {index}")
        for label in np.flatnonzero(target) if labels.multi_label else [target]:
            counts[labels.names[label]] += 1
    if not durations:
        raise ValueError("No clip of the training data reports its duration: pass --config_overrides max_length=N.")
    total = None if isinstance(dataset, IterableDataset) else len(dataset)
    return DataSummary(
        sum(rates.values()), rates, np.asarray(durations), {name: counts[name] for name in labels.names}, total
    )


def window_frames(duration_s: float, config: MeamtmConfig) -> int:
    """The smallest `max_length` (frames) whose window holds `duration_s` seconds and fills the patch grid.

    The frames are rounded up so that `(max_length - patch_size)` is a multiple of `time_stride`: every frame
    falls in a patch, none is cut off at the end.
    """
    samples = math.ceil(duration_s * config.sampling_rate)
    frames = 1 + max(0, math.ceil((samples - config.win_length) / config.hop_length))
    steps = max(0, math.ceil((frames - config.patch_size) / config.time_stride))
    return config.patch_size + steps * config.time_stride


__all__ = ["DataSummary", "summarise_data", "window_frames"]
