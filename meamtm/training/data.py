"""Training data for MEAMTM: where the clips come from, which columns hold what, and what the labels are.

* `load_splits`: the train and eval splits from a Hub data set, `audiofolder` folders or CSV/JSON metadata.
* `check_columns`, `check_labels`: errors up front that name the columns and labels that exist.
* `LabelSpace`, `label_space_of`, `class_names_of`: the classes, single- or multi-label, and label encoding.
* `default_splits`: the data of a run given none (FSDD when found, else `synthetic_sounds`, made in code).
* `take_first`: the first N clips of a data set or stream.

Clips are turned into model inputs by `meamtm.training.collate`, augmented by `meamtm.training.augmentation`
and drawn by `meamtm.training.sampling`.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
from transformers.utils import logging


logger = logging.get_logger(__name__)


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


def default_splits(fsdd_dir: str | os.PathLike) -> tuple[dict, str]:
    """The data of a run given no data source, and its name: FSDD's train/test folders in `fsdd_dir` when they
    exist, else `synthetic_sounds()` (made in code, so the run works on any machine)."""
    folder = Path(fsdd_dir)
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        logger.info(f"No data source given: training on the Free Spoken Digit Dataset in {folder}.")
        splits = load_splits(train_dir=str(folder / "train"), eval_dir=str(folder / "test"))
        return splits, "free-spoken-digit-dataset"
    logger.info(f"No data source given and no FSDD in {folder}: training on the synthetic sound classes.")
    sounds = synthetic_sounds()
    return {"train": sounds["train"], "eval": sounds["test"]}, "meamtm-synthetic-sounds"


def take_first(dataset, limit: int | None):
    """The first `limit` clips of a data set or stream (all of them when `limit` is `None`)."""
    if limit is None:
        return dataset
    if isinstance(dataset, IterableDataset):
        return dataset.take(limit)
    return dataset.select(range(min(limit, len(dataset))))


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
        return dataset  # features unknown until read: the collate transform decodes the paths as they come
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

    def encode(self, value, column_class_names: list[str] | None = None, where: str = "a clip"):
        """A clip's label(s) -> a class index, or a multi-hot `(num_labels,)` float32 vector when multi-label.

        `column_class_names`: the split's own `ClassLabel` names (`class_names_of`), which its integer labels
        index; they are mapped by name, since two folders can hold different classes in a different order.
        Without them, labels are names (an integer label 3 is the class named "3").
        """
        try:
            if self.multi_label:
                target = np.zeros(len(self.names), dtype=np.float32)
                for item in value:
                    target[self._index(item, column_class_names)] = 1.0
                return target
            return self._index(value, column_class_names)
        except KeyError as error:
            raise ValueError(
                f"{where} has label {error.args[0]!r}, which is not one of the training classes "
                f"{self.names}: remove the clip or pass --class_names with every class."
            ) from None

    def _index(self, item, column_class_names: list[str] | None) -> int:
        if column_class_names is not None and isinstance(item, (int, np.integer)):
            if not 0 <= item < len(column_class_names):
                raise KeyError(item)
            item = column_class_names[item]
        return self.label2id[str(item)]


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
        return  # checked clip by clip as the labels are encoded
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
    "LabelSpace",
    "check_columns",
    "check_labels",
    "class_names_of",
    "default_splits",
    "label_space_of",
    "load_metadata_file",
    "load_splits",
    "synthetic_sounds",
    "take_first",
]
