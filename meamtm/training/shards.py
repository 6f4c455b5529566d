"""WebDataset shards of encoded audio: writing them, and streaming them into training.

Writing (`write_shards`, used by `scripts/make_shards.py`): every clip of a data set becomes two members of a
`.tar` file, `KEY.flac` (the audio, encoded; never a spectrogram) and `KEY.json` (`{"label": name}` or
`{"label": [names]}`), `shard_size` clips per file, and `manifest.json` beside the files records the clip
count, label counts (which balanced sampling weighs clips by), total duration and, per shard, the same counts.
A FLAC source is copied byte for byte; other clips are decoded by `meamtm.audio_io.load_audio` (mono, resampled
when `sampling_rate` is given) and written as 16-bit FLAC with soundfile.

Reading (`load_shard_splits`, used by `scripts/train.py --train_shards`): `datasets.load_dataset("webdataset",
data_files=..., streaming=True)` reads local paths, globs and `hf://` URLs alike. The training stream is
`passes` passes over the shards concatenated, each pass shuffled with its own seed (shard order and a buffer
of `shuffle_buffer_size` clips), so that:

* the Trainer sees one finite stream, and a resumed run (which replays the seeded stream and skips the
  batches already trained on, the Trainer's own resumption) neither repeats nor skips a clip at any step;
* with N data-parallel processes there are a multiple of N passes, and accelerate, given
  `dispatch_batches=False`, gives each process a contiguous block of the (pass, tar file) units through
  `IterableDataset.shard` (the shard strategy of `datasets.distributed.split_dataset_by_node`), which is whole
  passes: each process reads its own part of the stream and nothing else, every pass of a process is a
  permutation of all clips, and every process has the same number of clips, so none runs out before another;
* a clip's path names its pass (`pass-3/KEY.flac`), so waveform augmentation, seeded by the path, differs
  from pass to pass.
"""

import io
import json
import math
import os
import posixpath
import tarfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile
from datasets import Audio, ClassLabel, Features, IterableDataset, List, concatenate_datasets, load_dataset
from datasets.data_files import resolve_pattern
from datasets.utils.file_utils import xopen
from transformers.utils import logging

from ..audio_io import audio_info, load_audio
from .data import LabelSpace, class_names_of


logger = logging.get_logger(__name__)

MANIFEST = "manifest.json"
AUDIO_EXTENSION = "flac"
LABEL_EXTENSION = "json"


# ---------------------------------------------------------------------------------------------------------------
# Writing


def encode_clip(value: dict, sampling_rate: int | None = None) -> tuple[bytes, float]:
    """One clip (`{"path", "bytes"}` as `Audio(decode=False)` gives it) -> FLAC bytes and its duration in seconds.

    FLAC bytes are kept as they are unless `sampling_rate` asks for resampling; anything else is decoded by
    `load_audio` (mono, at `sampling_rate` or the clip's own rate) and encoded as 16-bit FLAC.
    """
    data = value.get("bytes")
    if data is None:
        with xopen(value["path"], "rb") as file:
            data = file.read()
    if sampling_rate is None and data[:4] == b"fLaC":
        info = soundfile.info(io.BytesIO(data))
        return data, info.frames / info.samplerate
    rate = sampling_rate or audio_info(data).sampling_rate
    wave = load_audio({"path": value.get("path"), "bytes": data}, rate)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(wave, -1.0, 1.0), rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue(), len(wave) / rate


def label_names_of(value, labels: LabelSpace, column_class_names: list[str] | None):
    """A clip's label(s) as class names: one name, or a list of names for multi-label data."""
    target = labels.encode(value, column_class_names)
    if labels.multi_label:
        return [labels.names[index] for index in np.flatnonzero(target)]
    return labels.names[target]


def _add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def write_shards(
    dataset,
    output_dir: str,
    audio_column: str,
    label_column: str,
    labels: LabelSpace,
    shard_size: int = 1000,
    sampling_rate: int | None = None,
    prefix: str = "shard",
) -> dict:
    """Write `dataset` as WebDataset shards `output_dir/{prefix}-00000.tar`, ... and `output_dir/manifest.json`.

    Clips are written in the data set's order (shuffle a sorted folder first, so that shards mix classes).
    Returns the manifest.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1 clip per shard, got {shard_size}.")
    os.makedirs(output_dir, exist_ok=True)
    if dataset.features is not None:
        dataset = dataset.cast_column(audio_column, Audio(decode=False))
    column_class_names = class_names_of(dataset, label_column)
    shards, archive, current = [], None, None
    for index, row in enumerate(dataset):
        if index % shard_size == 0:
            if archive is not None:
                archive.close()
            name = f"{prefix}-{len(shards):05d}.tar"
            archive = tarfile.open(os.path.join(output_dir, name), "w")
            current = {"file": name, "num_clips": 0, "duration_s": 0.0, "label_counts": Counter()}
            shards.append(current)
        value = row[audio_column]
        if isinstance(value, str):
            value = {"path": value, "bytes": None}
        audio, duration = encode_clip(value, sampling_rate)
        label = label_names_of(row[label_column], labels, column_class_names)
        key = f"{index:09d}"
        _add_member(archive, f"{key}.{AUDIO_EXTENSION}", audio)
        _add_member(archive, f"{key}.{LABEL_EXTENSION}", json.dumps({"label": label}).encode())
        current["num_clips"] += 1
        current["duration_s"] += duration
        current["label_counts"].update(label if labels.multi_label else [label])
    if archive is not None:
        archive.close()
    if not shards:
        raise ValueError(f"The data set for {output_dir} has no clips: nothing to shard.")
    totals, total_duration = Counter(), sum(shard["duration_s"] for shard in shards)
    for shard in shards:
        totals.update(shard["label_counts"])
        shard["label_counts"] = {name: shard["label_counts"][name] for name in labels.names}
        shard["duration_s"] = round(shard["duration_s"], 3)
    manifest = {
        "format": "webdataset",
        "audio_extension": AUDIO_EXTENSION,
        "class_names": labels.names,
        "multi_label": labels.multi_label,
        "sampling_rate": sampling_rate,
        "num_clips": sum(shard["num_clips"] for shard in shards),
        "total_duration_s": round(total_duration, 3),
        "label_counts": {name: totals[name] for name in labels.names},
        "shards": shards,
    }
    Path(output_dir, MANIFEST).write_text(json.dumps(manifest, indent=1))
    logger.info(f"Wrote {manifest['num_clips']} clips in {len(shards)} shards to {output_dir}.")
    return manifest


# ---------------------------------------------------------------------------------------------------------------
# Reading


def shard_files(pattern: str) -> list[str]:
    """The `.tar` files of a glob, a folder or a URL pattern (`hf://datasets/ORG/NAME/train/*.tar`), sorted."""
    if not any(char in pattern for char in "*?[") and not pattern.endswith(".tar"):
        pattern = posixpath.join(pattern, "*.tar")
    try:
        files = resolve_pattern(pattern, base_path=os.getcwd())
    except FileNotFoundError:
        files = []
    files = sorted(file for file in files if file.endswith(".tar"))
    if not files:
        raise ValueError(f"No .tar shards match {pattern!r}: give a folder, a glob such as 'shards/train/*.tar', or a URL.")
    return files


def read_manifest(files: list[str]) -> dict:
    """The `manifest.json` beside the shards, restricted to the shards in `files` (clip and label counts summed)."""
    folder = posixpath.dirname(files[0])
    location = posixpath.join(folder, MANIFEST)
    try:
        with xopen(location, "r") as file:
            manifest = json.load(file)
    except FileNotFoundError:
        raise ValueError(
            f"No {MANIFEST} beside the shards at {folder}: write shards with scripts/make_shards.py, which writes it."
        ) from None
    by_name = {shard["file"]: shard for shard in manifest["shards"]}
    missing = [posixpath.basename(file) for file in files if posixpath.basename(file) not in by_name]
    if missing:
        raise ValueError(f"Shards {missing} are not in {location}: write the shards and their manifest together.")
    shards = [by_name[posixpath.basename(file)] for file in files]
    counts = Counter()
    for shard in shards:
        counts.update(shard["label_counts"])
    return {
        **manifest,
        "shards": shards,
        "num_clips": sum(shard["num_clips"] for shard in shards),
        "label_counts": {name: counts[name] for name in manifest["class_names"]},
    }


def clip_features(manifest: dict, audio_column: str, label_column: str) -> Features:
    label = ClassLabel(names=manifest["class_names"])
    return Features({audio_column: Audio(decode=False), label_column: List(label) if manifest["multi_label"] else label})


def expected_draws(manifest: dict, label) -> float:
    """How many times balanced sampling draws a clip with `label` (a name or list of names) in one pass, on average.

    PSLA's map-style sampler (`BalancedSampler`) draws `num_clips` clips with replacement, clip i with probability
    `w_i / sum(w)`, where `w_i` is the sum over its labels of 1 / label count; `sum(w)` is the number of classes
    that occur. The expectation is `num_clips * w_i / sum(w)`; the label counts come from the manifest.
    """
    counts = manifest["label_counts"]
    names = label if isinstance(label, list) else [label]
    weight = sum(1.0 / counts[name] for name in names if counts.get(name))
    present = sum(1 for count in counts.values() if count > 0)
    return manifest["num_clips"] * weight / present


def stream_shards(
    files: list[str],
    manifest: dict,
    audio_column: str,
    label_column: str,
    pass_index: int | None = None,
    balanced_seed: int | None = None,
):
    """The shards as a streamed data set with `audio_column` (`{"path", "bytes"}`) and a `ClassLabel` `label_column`.

    `pass_index` prefixes each clip's path with `pass-N/`, the key that seeds its augmentation.
    `balanced_seed`: balanced (PSLA) sampling in a stream. Each clip is emitted a Poisson-distributed number of
    times with mean `expected_draws` (drawn from a generator seeded by `balanced_seed` and the clip's path, so a
    replayed stream repeats the same draws): the expected draws of every clip, hence the expected label
    frequencies, are those of the map-style `BalancedSampler`; what differs is documented in docs/scaling.md.
    """
    stream = load_dataset("webdataset", data_files={"train": files}, split="train", streaming=True)
    stream = stream.cast_column(AUDIO_EXTENSION, Audio(decode=False))  # decoded later, at the model's rate
    prefix = "" if pass_index is None else f"pass-{pass_index}/"

    def to_clips(batch):
        audio = [{"path": prefix + value["path"], "bytes": value["bytes"]} for value in batch[AUDIO_EXTENSION]]
        labels = [item["label"] for item in batch[LABEL_EXTENSION]]
        if balanced_seed is None:
            return {audio_column: audio, label_column: labels}
        repeats = [
            np.random.default_rng([balanced_seed, zlib.crc32(value["path"].encode())]).poisson(
                expected_draws(manifest, label)
            )
            for value, label in zip(audio, labels)
        ]
        return {
            audio_column: [value for value, count in zip(audio, repeats) for _ in range(count)],
            label_column: [label for label, count in zip(labels, repeats) for _ in range(count)],
        }

    return stream.map(
        to_clips, batched=True, remove_columns=stream.column_names,
        features=clip_features(manifest, audio_column, label_column),
    )


def passes_for(num_clips: int, clips_per_process: int, world_size: int) -> int:
    """Passes over the data so that each of `world_size` processes reads `clips_per_process` clips in whole passes."""
    return world_size * max(1, math.ceil(clips_per_process / num_clips))


def training_stream(
    files: list[str],
    manifest: dict,
    audio_column: str,
    label_column: str,
    clips_per_process: int,
    world_size: int,
    seed: int,
    shuffle_buffer_size: int,
    balanced: bool = False,
) -> IterableDataset:
    """`passes_for(...)` passes over the shards, each shuffled with seed `seed + pass`, concatenated (module doc).

    `balanced`: PSLA balanced sampling (`stream_shards`), repeats drawn before the shuffle buffer so that it
    spreads them; a balanced pass has a random length, so each process gets one pass more than it needs.
    """
    passes = passes_for(manifest["num_clips"], clips_per_process, world_size) + (world_size if balanced else 0)
    return concatenate_datasets([
        stream_shards(files, manifest, audio_column, label_column, pass_index=index,
                      balanced_seed=seed + index if balanced else None)
        .shuffle(seed=seed + index, buffer_size=shuffle_buffer_size)
        for index in range(passes)
    ])


def load_shard_splits(
    train_shards: str,
    eval_shards: str | None,
    audio_column: str,
    label_column: str,
    training_args,
    shuffle_buffer_size: int = 1000,
    balanced: bool = False,
) -> dict:
    """The streamed `{"train", "eval"}` splits of `scripts/train.py --train_shards` (class names from the manifest).

    Sets `training_args.accelerator_config.dispatch_batches = False`, so that each process reads its own shards
    (accelerate's default for a stream is to read every batch on the first process and send it to the others).
    """
    if training_args.max_steps <= 0:
        raise ValueError("Training from shards streams the data: set --max_steps (the stream has no length).")
    files = shard_files(train_shards)
    manifest = read_manifest(files)
    world_size = training_args.world_size
    clips_per_process = (
        training_args.max_steps * training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    )
    splits = {"train": training_stream(
        files, manifest, audio_column, label_column, clips_per_process, world_size, training_args.seed,
        shuffle_buffer_size, balanced,
    )}
    if eval_shards:
        eval_files = shard_files(eval_shards)
        eval_manifest = read_manifest(eval_files)
        if eval_manifest["class_names"] != manifest["class_names"]:
            raise ValueError(
                f"The evaluation shards' classes {eval_manifest['class_names']} are not the training shards' "
                f"{manifest['class_names']}: write both with one scripts/make_shards.py command."
            )
        splits["eval"] = stream_shards(eval_files, eval_manifest, audio_column, label_column)
    training_args.accelerator_config.dispatch_batches = False
    return splits


__all__ = [
    "MANIFEST",
    "encode_clip",
    "expected_draws",
    "load_shard_splits",
    "passes_for",
    "read_manifest",
    "shard_files",
    "stream_shards",
    "training_stream",
    "write_shards",
]
