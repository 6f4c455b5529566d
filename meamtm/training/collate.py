"""From encoded clips to model batches: decode, crop or pad, augment, and stack, on the fly.

Nothing is preprocessed to disk: `prepare_dataset` casts the audio column to `datasets.Audio(decode=False)` and
installs `AudioTransform` (with `set_transform`, or `map` on a streamed data set), which decodes each clip when
the data loader asks for it, crops or pads it to the model's window and applies waveform augmentation in
training; `AudioCollator` stacks the clips into tensors.

Faults in the data (a file that cannot be decoded, decodes to nothing, or holds NaN/Inf samples) raise a
`ValueError` naming the file, or with `skip_unreadable=True` are logged, dropped from the batch by
`AudioCollator`, and recorded one path per line in a file so that the count at the end covers every data
loader worker and every process (`unreadable_files`).
"""

import math
import os
import zlib

import numpy as np
import torch
from datasets import Audio, IterableDataset
from transformers import TrainerCallback
from transformers.utils import logging

from ..audio_io import load_audio
from .augmentation import WaveformAugmentation
from .data import LabelSpace, class_names_of


logger = logging.get_logger(__name__)


class UnreadableAudioError(ValueError):
    """An audio file that cannot be decoded into a finite, non-empty waveform."""

    @classmethod
    def of(cls, name: str, error: Exception) -> "UnreadableAudioError":
        """The error for file `name`, which failed with `error`, saying how to go on."""
        message = str(error).replace("Clip 0 ", "The clip ")
        return cls(
            f"Cannot read audio file {name}: {message}. Fix or remove the file, or pass --skip_unreadable_files to "
            "skip such files and count them."
        )


def _clip_key(value: dict) -> int:
    """A stable 32-bit identity of a clip (its path, or its bytes), to seed its augmentation."""
    if value.get("path"):
        return zlib.crc32(str(value["path"]).encode())
    return zlib.crc32(value.get("bytes") or b"")


class AudioTransform:
    """Batch transform: encoded audio + labels -> `input_values`, `attention_mask` `(num_samples,)` and `labels`.

    Each clip is decoded at `sampling_rate`, made mono float32, then cropped or zero-padded to `num_samples`; the
    mask marks its real samples. With `pad_to_window=False` (for `padding_mode="longest"`) a clip is cropped
    but not padded: `AudioCollator` pads each batch to its longest clip. In training (`train=True`) a longer clip is cropped at a random offset and
    `augmentation` is applied; in evaluation the first `num_samples` samples are kept, as the feature
    extractor and pipeline do at inference. Randomness comes from a generator seeded by (seed, epoch, clip), so
    a run resumed from a checkpoint, or split over processes, sees the same augmented clips as one straight run;
    `epoch` is advanced by `EpochCallback`.

    A clip that cannot be read raises `UnreadableAudioError` naming its file, or, with `skip_unreadable`, yields
    `input_values=None` (dropped by `AudioCollator`) and its path is appended to `fault_log`.

    `column_class_names`: the split's own `ClassLabel` names (`class_names_of`), which its integer labels index
    (see `LabelSpace.encode`).
    """

    def __init__(
        self,
        audio_column: str,
        label_column: str,
        labels: LabelSpace,
        sampling_rate: int,
        num_samples: int,
        train: bool,
        augmentation: WaveformAugmentation | None = None,
        seed: int = 0,
        skip_unreadable: bool = False,
        fault_log: str | None = None,
        column_class_names: list[str] | None = None,
        pad_to_window: bool = True,
    ):
        self.column_class_names = column_class_names
        self.pad_to_window = pad_to_window
        self.audio_column = audio_column
        self.label_column = label_column
        self.labels = labels
        self.sampling_rate = sampling_rate
        self.num_samples = num_samples
        self.train = train
        self.augmentation = augmentation if train else None
        self.seed = seed
        self.skip_unreadable = skip_unreadable
        self.fault_log = fault_log
        self.epoch = 0

    def decode(self, value) -> np.ndarray:
        """One clip (`{"path", "bytes"}`, a path, or a decoded `{"array", "sampling_rate"}`) -> mono float32 at
        `sampling_rate`, through `meamtm.audio_io.load_audio` (the decoder and resampler inference uses)."""
        name = (value.get("path") if isinstance(value, dict) else value) or "<audio bytes>"
        try:
            return load_audio(value, self.sampling_rate)
        except Exception as error:  # decoders raise many types (RuntimeError, OSError, ValueError...)
            raise UnreadableAudioError.of(name, error) from error

    def crop(self, wave: np.ndarray, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        """Crop or pad to `num_samples`; return the window `(num_samples,)` and its mask of real samples
        (without `pad_to_window`, the window ends with the clip: `(min(delay + len(wave), num_samples),)`)."""
        window = np.zeros(self.num_samples, dtype=np.float32)
        mask = np.zeros(self.num_samples, dtype=np.int32)
        if len(wave) > self.num_samples:
            start = int(rng.integers(0, len(wave) - self.num_samples + 1)) if rng is not None else 0
            window[:] = wave[start : start + self.num_samples]
            mask[:] = 1
            return window, mask
        delay = 0
        if rng is not None and self.augmentation is not None and self.augmentation.shift_s > 0:
            room = min(self.num_samples - len(wave), int(self.augmentation.shift_s * self.sampling_rate))
            delay = int(rng.integers(0, room + 1))
        # The delay is real (silent) signal, so the mask covers it; padding after the clip is AST padding.
        window[delay : delay + len(wave)] = wave
        mask[: delay + len(wave)] = 1
        if not self.pad_to_window:
            return window[: delay + len(wave)], mask[: delay + len(wave)]
        return window, mask

    def __call__(self, batch: dict) -> dict:
        values, targets, masks = [], [], []
        for value, label in zip(batch[self.audio_column], batch[self.label_column]):
            path = (value.get("path") if isinstance(value, dict) else value) or "<audio bytes>"
            target = self.labels.encode(label, self.column_class_names, where=f"Clip {path}")
            try:
                wave = self.decode(value)
            except UnreadableAudioError as error:
                if not self.skip_unreadable:
                    raise
                logger.warning(f"Skipping an unreadable clip: {error}")
                self._log_fault(path)
                values.append(None)
                masks.append(None)
                targets.append(target)
                continue
            rng = None
            if self.train:
                key = _clip_key(value if isinstance(value, dict) else {"path": value})
                rng = np.random.default_rng([self.seed, self.epoch, key])
                if self.augmentation is not None:
                    wave = self.augmentation.apply(wave, rng, self.sampling_rate)
            window, mask = self.crop(wave, rng)
            values.append(window)
            masks.append(mask)
            targets.append(target)
        return {"input_values": values, "attention_mask": masks, "labels": targets}

    def _log_fault(self, path: str) -> None:
        if self.fault_log:
            # One short line per append: concurrent writers (workers, processes) do not interleave.
            with open(self.fault_log, "a", encoding="utf-8") as log:
                log.write(f"{path}\n")


def unreadable_files(fault_log: str | None) -> list[str]:
    """The distinct paths recorded in `fault_log` by `AudioTransform(skip_unreadable=True)`, in first-seen order."""
    if not fault_log or not os.path.isfile(fault_log):
        return []
    with open(fault_log, encoding="utf-8") as log:
        return list(dict.fromkeys(line.rstrip("\n") for line in log if line.strip()))


def prepare_dataset(dataset, transform: AudioTransform):
    """Cast the audio column to undecoded `Audio` at the model's rate and attach `transform` (lazy, no cache).

    A transform without `column_class_names` gets the data set's own (`class_names_of`).
    """
    if transform.column_class_names is None:
        transform.column_class_names = class_names_of(dataset, transform.label_column)
    if dataset.features is not None:  # a stream of unknown features carries paths, which the transform decodes
        encoded = Audio(sampling_rate=transform.sampling_rate, decode=False)
        dataset = dataset.cast_column(transform.audio_column, encoded)
    if isinstance(dataset, IterableDataset):
        return dataset.map(transform, batched=True, batch_size=16, remove_columns=list(dataset.column_names or []))
    dataset.set_transform(transform)
    return dataset


class AudioCollator:
    """Stacks transformed clips into tensors, dropping the ones `AudioTransform` marked unreadable.

    `input_values` `(batch, num_samples)` float32, `attention_mask` `(batch, num_samples)` int32, `labels`
    `(batch,)` int64 or `(batch, num_labels)` float32. Clips of different lengths (`AudioTransform` with
    `pad_to_window=False`) are zero-padded to the batch's longest, and their masks with zeros.
    """

    @staticmethod
    def _padded(rows: list, dtype) -> torch.Tensor:
        """1-D arrays -> `(len(rows), longest)` zero-padded on the right."""
        rows = [np.asarray(row, dtype) for row in rows]
        output = np.zeros((len(rows), max(len(row) for row in rows)), dtype=dtype)
        for index, row in enumerate(rows):
            output[index, : len(row)] = row
        return torch.from_numpy(output)

    def __call__(self, features: list[dict]) -> dict:
        kept = [feature for feature in features if feature["input_values"] is not None]
        if not kept:
            raise UnreadableAudioError(
                f"All {len(features)} clips of a batch were unreadable (see the warnings above for their files)."
            )
        labels = [feature["labels"] for feature in kept]
        return {
            "input_values": self._padded([f["input_values"] for f in kept], np.float32),
            "attention_mask": self._padded([f["attention_mask"] for f in kept], np.int32),
            "labels": torch.tensor(np.asarray(labels), dtype=torch.float32 if np.ndim(labels[0]) else torch.long),
        }


class EpochCallback(TrainerCallback):
    """Tells the training transform which epoch starts, so each epoch draws new augmentations."""

    def __init__(self, transform: AudioTransform):
        self.transform = transform

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is the epoch that starts (a fraction past it when resuming mid-epoch).
        self.transform.epoch = int(math.floor((state.epoch or 0.0) + 1e-6))


__all__ = [
    "AudioCollator",
    "AudioTransform",
    "EpochCallback",
    "UnreadableAudioError",
    "prepare_dataset",
    "unreadable_files",
]
