"""Training data for MEAMTM: audio data sets in, fixed-length raw waveforms out, decoded on the fly.

Nothing is preprocessed to disk: the audio column is cast to `datasets.Audio(sampling_rate=<model rate>,
decode=False)`, and `AudioTransform` (installed with `set_transform`, or `map` on a streamed data set) decodes
each clip with `datasets`' own decoder (torchcodec, resampling included) when the data loader asks for it,
crops or pads it to the model's window and applies waveform augmentation in training.

Faults in the data (a file that cannot be decoded, decodes to nothing, or holds NaN/Inf samples) raise a
`ValueError` naming the file, or with `skip_unreadable=True` are logged, dropped from the batch by
`AudioCollator`, and recorded one path per line in a file so that the count at the end covers every data
loader worker and every process.
"""

import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import (
    Audio,
    ClassLabel,
    Dataset,
    DatasetDict,
    Features,
    IterableDataset,
    List,
    Sequence,
    Value,
    load_dataset,
)
from transformers import TrainerCallback
from transformers.utils import logging

from ..feature_extraction_meamtm import to_mono_float32


logger = logging.get_logger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# Loading


def load_splits(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_split_name: str = "train",
    eval_split_name: str = "test",
    train_dir: str | None = None,
    eval_dir: str | None = None,
    train_file: str | None = None,
    eval_file: str | None = None,
    audio_column: str = "audio",
    streaming: bool = False,
    cache_dir: str | None = None,
) -> dict:
    """The train and eval splits (`{"train": ..., "eval": ...}`, eval may be missing) from one source.

    Sources: a Hub data set (`dataset_name`), `audiofolder` folders (`train_dir`/`eval_dir`: `label/clip.wav`, or
    a `metadata.csv`), or CSV/JSON metadata files (`train_file`/`eval_file`) whose `audio_column` holds paths,
    relative paths being read from the metadata file's folder.
    """
    given = (("dataset_name", dataset_name), ("train_dir", train_dir), ("train_file", train_file))
    sources = [name for name, value in given if value]
    if len(sources) != 1:
        raise ValueError(
            f"Give exactly one data source (--dataset_name, --train_dir or --train_file), got {sources or 'none'}."
        )
    splits = {}
    if dataset_name:
        loaded = load_dataset(dataset_name, dataset_config_name, streaming=streaming, cache_dir=cache_dir)
        for role, split in (("train", train_split_name), ("eval", eval_split_name)):
            if split and split in loaded:
                splits[role] = loaded[split]
            elif role == "train":
                raise ValueError(
                    f"Split {split!r} is not in {dataset_name}; its splits are {list(loaded)}: set --train_split_name."
                )
        return splits
    if train_dir:
        for role, folder in (("train", train_dir), ("eval", eval_dir)):
            if folder:
                if not Path(folder).is_dir():
                    raise ValueError(f"--{role}_dir {folder!r} is not a folder.")
                splits[role] = load_dataset(
                    "audiofolder", data_dir=folder, split="train", streaming=streaming, cache_dir=cache_dir
                )
        return splits
    for role, file in (("train", train_file), ("eval", eval_file)):
        if file:
            splits[role] = load_metadata_file(file, audio_column, streaming=streaming, cache_dir=cache_dir)
    return splits


def load_metadata_file(path: str, audio_column: str, streaming: bool = False, cache_dir: str | None = None):
    """A CSV or JSON (lines) metadata file as a data set; relative paths in `audio_column` are made absolute."""
    suffix = Path(path).suffix.lower()
    builder = {".csv": "csv", ".json": "json", ".jsonl": "json"}.get(suffix)
    if builder is None:
        raise ValueError(f"Metadata file {path!r} must be .csv, .json or .jsonl, got {suffix!r}.")
    if not Path(path).is_file():
        raise ValueError(f"Metadata file {path!r} does not exist.")
    dataset = load_dataset(builder, data_files=str(path), split="train", streaming=streaming, cache_dir=cache_dir)
    check_columns(dataset, audio_column, None, where=path)
    folder = str(Path(path).resolve().parent)

    def absolute(batch):
        batch[audio_column] = [p if os.path.isabs(p) else os.path.join(folder, p) for p in batch[audio_column]]
        return batch

    dataset = dataset.map(absolute, batched=True)
    if isinstance(dataset, IterableDataset):
        return dataset  # features unknown until read: AudioTransform decodes the paths as they come
    # CSV/JSON strings load as large_string, which `Audio` cannot cast from: make them plain strings first.
    return dataset.cast_column(audio_column, Value("string"))


def check_columns(dataset, audio_column: str, label_column: str | None, where: str = "the data set") -> None:
    """Raise a `ValueError` listing the columns that exist if the audio or label column is missing."""
    columns = list(dataset.column_names or (dataset.features or {}).keys())
    if not columns and isinstance(dataset, IterableDataset):  # a stream whose features are known only once read
        columns = list(next(iter(dataset.take(1)), {}).keys())
    for flag, name in (("--audio_column", audio_column), ("--label_column", label_column)):
        if name is not None and name not in columns:
            raise ValueError(f"{flag} {name!r} is not a column of {where}; its columns are {columns}.")


# ---------------------------------------------------------------------------------------------------------------
# Labels


@dataclass
class LabelSpace:
    """The classes of a data set and whether a clip carries one label (ClassLabel) or a list of them."""

    names: list[str]
    multi_label: bool

    @property
    def label2id(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.names)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def problem_type(self) -> str:
        return "multi_label_classification" if self.multi_label else "single_label_classification"


def _inner_feature(feature):
    if isinstance(feature, (List, Sequence)):
        return feature.feature, True
    if isinstance(feature, list) and len(feature) == 1:
        return feature[0], True
    return feature, False


def label_space_of(dataset, label_column: str, label_names: list[str] | None = None) -> LabelSpace:
    """Class names and single/multi-label from the label column's feature (or its values, or `label_names`)."""
    inner, multi_label = _inner_feature((dataset.features or {}).get(label_column))
    if label_names:
        return LabelSpace(list(label_names), multi_label)
    if isinstance(inner, ClassLabel):
        return LabelSpace(list(inner.names), multi_label)
    if isinstance(dataset, IterableDataset):
        raise ValueError(
            f"The label column {label_column!r} of a streamed data set has no ClassLabel feature, so its classes "
            "cannot be known without reading all of it: pass --class_names with the class names."
        )
    if multi_label:  # Arrow has no `unique` for list columns
        values = {value for row in dataset.select_columns(label_column)[label_column] for value in row}
    else:
        values = dataset.unique(label_column)
    return LabelSpace(sorted({str(value) for value in values}), multi_label)


def class_names_of(dataset, label_column: str) -> list[str] | None:
    """The `ClassLabel` names of a label column (or of its list items), which its integers index; else `None`."""
    inner, _ = _inner_feature((dataset.features or {}).get(label_column))
    return list(inner.names) if isinstance(inner, ClassLabel) else None


def check_labels(dataset, label_column: str, labels: LabelSpace, where: str) -> None:
    """Raise a `ValueError` naming labels of `dataset` that are not among the training classes."""
    if isinstance(dataset, IterableDataset):
        return  # checked clip by clip in AudioTransform
    inner, multi_label = _inner_feature(dataset.features.get(label_column))
    if multi_label != labels.multi_label:
        kind = "a list of labels" if multi_label else "one label"
        raise ValueError(
            f"The label column {label_column!r} of {where} holds {kind} per clip, unlike the training data."
        )
    if isinstance(inner, ClassLabel):
        values = set(inner.names)
    elif multi_label:
        values = {str(v) for row in dataset.select_columns(label_column)[label_column] for v in row}
    else:
        values = {str(v) for v in dataset.unique(label_column)}
    unknown = sorted(values - set(labels.names))
    if unknown:
        raise ValueError(
            f"{where} has labels {unknown} that the training data does not have (its classes are {labels.names}): "
            "remove those clips, or pass --class_names with every class."
        )


# ---------------------------------------------------------------------------------------------------------------
# Decoding, cropping and augmentation


@dataclass
class WaveformAugmentation:
    """Random waveform changes applied in training, each off at 0.

    gain_db: uniform gain in [-gain_db, +gain_db] dB.
    shift_s: the clip starts after a random delay of up to `shift_s` seconds (while it fits the window), and a
        longer clip is cropped at a random offset regardless.
    noise_snr_db: white noise at a random SNR in [noise_snr_db, noise_snr_db + 20] dB, with probability 1/2
        (0 = off).
    speed: resample by a random factor in [1 - speed, 1 + speed] (tempo and pitch change together).
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
            factor = rng.uniform(1 - self.speed, 1 + self.speed)
            positions = np.arange(0, len(wave) - 1, factor)
            wave = np.interp(positions, np.arange(len(wave)), wave).astype(np.float32) if len(positions) > 1 else wave
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


class UnreadableAudioError(ValueError):
    """An audio file that cannot be decoded into a finite, non-empty waveform."""


def _clip_key(value: dict) -> int:
    """A stable 32-bit identity of a clip (its path, or its bytes), to seed its augmentation."""
    if value.get("path"):
        return zlib.crc32(str(value["path"]).encode())
    return zlib.crc32(value.get("bytes") or b"")


class AudioTransform:
    """Batch transform: encoded audio + labels -> `input_values`, `attention_mask` `(num_samples,)` and `labels`.

    Each clip is decoded at `sampling_rate`, made mono float32, then cropped or zero-padded to `num_samples`; the
    mask marks its real samples. In training (`train=True`) a longer clip is cropped at a random offset and
    `augmentation` is applied; in evaluation the first `num_samples` samples are kept, as the feature
    extractor and pipeline do at inference. Randomness comes from a generator seeded by (seed, epoch, clip), so
    a run resumed from a checkpoint, or split over processes, sees the same augmented clips as one straight run;
    `epoch` is advanced by `EpochCallback`.

    A clip that cannot be read raises `UnreadableAudioError` naming its file, or, with `skip_unreadable`, yields
    `input_values=None` (dropped by `AudioCollator`) and its path is appended to `fault_log`.

    `column_class_names`: the split's own `ClassLabel` names (`class_names_of`), which its integer labels index;
    they are mapped by name, since two folders can hold different classes in a different order. Without them,
    labels are names (an integer label 3 is the class named "3").
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
    ):
        self.column_class_names = column_class_names
        self.audio_column = audio_column
        self.label_column = label_column
        self.labels = labels
        self.label2id = labels.label2id
        self.sampling_rate = sampling_rate
        self.num_samples = num_samples
        self.train = train
        self.augmentation = augmentation if train else None
        self.seed = seed
        self.skip_unreadable = skip_unreadable
        self.fault_log = fault_log
        self.epoch = 0
        self.decoder = Audio(sampling_rate=sampling_rate)

    def decode(self, value) -> np.ndarray:
        """One encoded clip (`{"path", "bytes"}`, a path, or a decoded `{"array", "sampling_rate"}`) -> mono float32."""
        if isinstance(value, str):
            value = {"path": value, "bytes": None}
        name = value.get("path") or "<audio bytes>"
        try:
            if "array" in value:
                if value.get("sampling_rate") != self.sampling_rate:
                    raise ValueError(f"it is at {value.get('sampling_rate')} Hz, not {self.sampling_rate} Hz")
                samples = value["array"]
            else:
                samples = self.decoder.decode_example(value).get_all_samples().data.mean(dim=0).numpy()
            return to_mono_float32(samples)
        except Exception as error:  # decoders raise many types (RuntimeError, OSError, ValueError...)
            message = str(error).replace("Clip 0 ", "The clip ")
            raise UnreadableAudioError(
                f"Cannot read audio file {name}: {message}. Fix or remove the file, or pass --skip_unreadable_files "
                "to skip such files and count them."
            ) from error

    def label_of(self, value, path: str):
        try:
            if self.labels.multi_label:
                target = np.zeros(len(self.labels.names), dtype=np.float32)
                for item in value:
                    target[self._index(item)] = 1.0
                return target
            return self._index(value)
        except KeyError as error:
            raise ValueError(
                f"Clip {path} has label {error.args[0]!r}, which is not one of the training classes "
                f"{self.labels.names}: remove the clip or pass --class_names with every class."
            ) from None

    def _index(self, item) -> int:
        if self.column_class_names is not None and isinstance(item, (int, np.integer)):
            if not 0 <= item < len(self.column_class_names):
                raise KeyError(item)
            item = self.column_class_names[item]
        return self.label2id[str(item)]

    def crop(self, wave: np.ndarray, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        """Crop or pad to `num_samples`; return the window `(num_samples,)` and its mask of real samples."""
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
        return window, mask

    def __call__(self, batch: dict) -> dict:
        values, targets, masks = [], [], []
        for value, label in zip(batch[self.audio_column], batch[self.label_column]):
            path = (value.get("path") if isinstance(value, dict) else value) or "<audio bytes>"
            target = self.label_of(label, path)
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
                    wave = self.augmentation.apply(wave, rng)
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
    `(batch,)` int64 or `(batch, num_labels)` float32.
    """

    def __call__(self, features: list[dict]) -> dict:
        kept = [feature for feature in features if feature["input_values"] is not None]
        if not kept:
            raise UnreadableAudioError(
                f"All {len(features)} clips of a batch were unreadable (see the warnings above for their files)."
            )
        labels = [feature["labels"] for feature in kept]
        return {
            "input_values": torch.from_numpy(np.stack([np.asarray(f["input_values"], np.float32) for f in kept])),
            "attention_mask": torch.from_numpy(np.stack([np.asarray(f["attention_mask"], np.int32) for f in kept])),
            "labels": torch.tensor(np.asarray(labels), dtype=torch.float32 if np.ndim(labels[0]) else torch.long),
        }


class EpochCallback(TrainerCallback):
    """Tells the training transform which epoch starts, so each epoch draws new augmentations."""

    def __init__(self, transform: AudioTransform):
        self.transform = transform

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is the epoch that starts (a fraction past it when resuming mid-epoch).
        self.transform.epoch = int(math.floor((state.epoch or 0.0) + 1e-6))


# ---------------------------------------------------------------------------------------------------------------
# Balanced sampling (PSLA)


def balanced_sampling_weights(dataset, label_column: str, labels: LabelSpace) -> np.ndarray:
    """Per-clip sampling weights `(num_clips,)`: the sum over its labels of 1 / label frequency (PSLA, Gong 2021).

    Drawing clips with these weights shows every class about equally often; it reads only the label column.
    """
    if isinstance(dataset, IterableDataset):
        raise ValueError(
            "Balanced sampling needs the label counts of a map-style data set; it cannot stream (drop --streaming)."
        )
    transform = AudioTransform(
        "unused", label_column, labels, 1, 1, train=False, column_class_names=class_names_of(dataset, label_column)
    )
    column = dataset.with_format(None)[label_column] if hasattr(dataset, "with_format") else dataset[label_column]
    rows = [transform.label_of(value, f"row {index}") for index, value in enumerate(column)]
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


# ---------------------------------------------------------------------------------------------------------------
# The built-in data set


def synthetic_sounds(num_per_class: int = 60, sampling_rate: int = 8000, seed: int = 0) -> DatasetDict:
    """A small labelled data set made in code, the same on every machine: 0.5-1 s clips of six sound classes.

    Classes: `tone` (steady sine, 200-1500 Hz), `chirp_up` / `chirp_down` (log sweeps over 1-3 octaves),
    `pulses` (4-10 short tone bursts a second), `noise` (band-limited noise burst) and `two_tones` (two sines a
    fifth or an octave apart). Each clip has a random level, a random onset and low background noise, so the
    classes differ in spectro-temporal shape, not in loudness. 20 % of each class is held out as `test`.
    """
    rng = np.random.default_rng(seed)
    names = ["tone", "chirp_up", "chirp_down", "pulses", "noise", "two_tones"]
    clips, labels = [], []
    for label, name in enumerate(names):
        for _ in range(num_per_class):
            duration = rng.uniform(0.5, 0.95)
            t = np.arange(int(duration * sampling_rate)) / sampling_rate
            f0 = rng.uniform(200, 1500)
            if name == "tone":
                wave = np.sin(2 * np.pi * f0 * t)
            elif name in ("chirp_up", "chirp_down"):
                octaves = rng.uniform(1, 3)
                low = rng.uniform(150, 3500 / 2**octaves)  # the sweep stays below 3.5 kHz
                start, k = (low, octaves / duration) if name == "chirp_up" else (low * 2**octaves, -octaves / duration)
                wave = np.sin(2 * np.pi * start * (2 ** (k * t) - 1) / (k * np.log(2)))
            elif name == "pulses":
                rate = rng.uniform(4, 10)
                wave = np.sin(2 * np.pi * f0 * t) * ((t * rate) % 1 < 0.35)
            elif name == "noise":
                noise = rng.standard_normal(len(t))
                spectrum = np.fft.rfft(noise)
                freqs = np.fft.rfftfreq(len(t), 1 / sampling_rate)
                spectrum[(freqs < f0) | (freqs > f0 * 2)] = 0
                wave = np.fft.irfft(spectrum, len(t))
                wave /= np.abs(wave).max() + 1e-9
            else:
                wave = np.sin(2 * np.pi * f0 * t) + np.sin(2 * np.pi * f0 * rng.choice([1.5, 2.0]) * t)
                wave /= 2
            envelope = np.minimum(1, np.minimum(t, t[-1] - t) / 0.02)
            wave = wave * envelope * rng.uniform(0.1, 0.9)
            wave = np.concatenate([np.zeros(int(rng.uniform(0, 0.1) * sampling_rate)), wave])
            wave = wave + rng.standard_normal(len(wave)) * 0.003
            clips.append(np.clip(wave, -1, 1).astype(np.float32))
            labels.append(label)
    order = rng.permutation(len(clips))
    held_out = set(order[: len(clips) // 5].tolist())

    def split(indices):
        data = {
            "audio": [{"array": clips[i], "sampling_rate": sampling_rate} for i in indices],
            "label": [labels[i] for i in indices],
        }
        features = Features(audio=Audio(sampling_rate=sampling_rate), label=ClassLabel(names=names))
        return Dataset.from_dict(data, features=features)

    return DatasetDict(
        train=split([i for i in order if i not in held_out]), test=split([i for i in order if i in held_out])
    )


__all__ = [
    "AudioCollator",
    "AudioTransform",
    "BalancedSampler",
    "EpochCallback",
    "LabelSpace",
    "UnreadableAudioError",
    "WaveformAugmentation",
    "balanced_sampling_weights",
    "check_columns",
    "check_labels",
    "class_names_of",
    "label_space_of",
    "load_splits",
    "prepare_dataset",
    "synthetic_sounds",
    "unreadable_files",
]
