"""WebDataset shards: writing (scripts/make_shards.py, meamtm.training.shards), reading back, and streamed training."""

import hashlib
import importlib.util
import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile
from datasets import Audio, ClassLabel, Dataset, Features, List, concatenate_datasets

from meamtm.training import shards
from meamtm.training.data import LabelSpace, label_space_of, synthetic_sounds
from meamtm.training.sampling import balanced_sampling_weights

from ..conftest import REPO


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_script = load_script("train")
make_shards = load_script("make_shards")

TINY_8K = ["--config_name", "tiny", "--config_overrides", "sampling_rate=8000,max_length=100"]
QUIET = ["--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0", "--seed", "0"]


@pytest.fixture(scope="module")
def sounds():
    """36 synthetic clips (6 classes x 6) at 8 kHz, as arrays (re-encoded to FLAC when sharded)."""
    return concatenate_datasets(list(synthetic_sounds(num_per_class=6).values()))


@pytest.fixture(scope="module")
def sound_shards(sounds, tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("shards") / "train"
    labels = label_space_of(sounds, "label")
    return folder, shards.write_shards(sounds, str(folder), "audio", "label", labels, shard_size=8, prefix="train")


def members(tar_path: Path) -> dict[str, bytes]:
    with tarfile.open(tar_path) as archive:
        return {member.name: archive.extractfile(member).read() for member in archive.getmembers()}


def test_shards_hold_flac_and_json_labels_with_a_manifest_of_counts(sounds, sound_shards):
    folder, manifest = sound_shards
    names = sounds.features["label"].names
    assert sorted(p.name for p in folder.glob("*.tar")) == [f"train-0000{i}.tar" for i in range(5)]
    assert [shard["num_clips"] for shard in manifest["shards"]] == [8, 8, 8, 8, 4]
    assert manifest["num_clips"] == len(sounds) == 36
    assert manifest["label_counts"] == {names[k]: v for k, v in Counter(sounds["label"]).items()}
    durations = [len(row["audio"]["array"]) / 8000 for row in sounds]
    assert manifest["total_duration_s"] == pytest.approx(sum(durations), abs=1e-3)
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    first = members(folder / "train-00000.tar")
    assert sorted(first)[:2] == ["000000000.flac", "000000000.json"] and len(first) == 16
    for index in range(8):
        key = f"{index:09d}"
        assert first[f"{key}.flac"][:4] == b"fLaC"
        assert json.loads(first[f"{key}.json"]) == {"label": names[sounds[index]["label"]]}
        assert manifest["shards"][0]["label_counts"][names[sounds[index]["label"]]] >= 1
        wave, rate = soundfile.read(io.BytesIO(first[f"{key}.flac"]), dtype="float32")
        assert rate == 8000
        # 16-bit FLAC: the samples come back within half a quantisation step.
        np.testing.assert_allclose(wave, sounds[index]["audio"]["array"], atol=1 / 32768 + 1e-7)


def test_streamed_shards_read_back_every_clip_with_its_label(sounds, sound_shards):
    folder, manifest = sound_shards
    files = shards.shard_files(str(folder))
    stream = shards.stream_shards(files, shards.read_manifest(files), "audio", "label")
    assert isinstance(stream.features["label"], ClassLabel)
    assert label_space_of(stream, "label") == LabelSpace(sounds.features["label"].names, False)
    rows = list(stream)
    assert [row["audio"]["path"] for row in rows] == [f"{index:09d}.flac" for index in range(36)]
    names = sounds.features["label"].names
    assert [names[row["label"]] if isinstance(row["label"], int) else row["label"] for row in rows] == [
        names[label] for label in sounds["label"]
    ]
    # A glob selects shards, and the manifest counts only those.
    some = shards.shard_files(str(folder / "train-0000[01].tar"))
    assert shards.read_manifest(some)["num_clips"] == 16


def test_flac_sources_are_copied_and_multi_label_is_kept(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        soundfile.write(tmp_path / f"{name}.flac", rng.uniform(-0.5, 0.5, 4000), 16000, subtype="PCM_16")
    labels = Features(audio=Audio(), label=List(ClassLabel(names=["dog", "cat", "car"])))
    dataset = Dataset.from_dict(
        {"audio": [str(tmp_path / f"{n}.flac") for n in "abc"], "label": [[0], [0, 1], []]}, features=labels
    )
    manifest = shards.write_shards(dataset, str(tmp_path / "out"), "audio", "label", label_space_of(dataset, "label"))
    stored = members(tmp_path / "out" / "shard-00000.tar")
    assert stored["000000001.flac"] == (tmp_path / "b.flac").read_bytes()
    assert json.loads(stored["000000001.json"]) == {"label": ["dog", "cat"]}
    assert manifest["multi_label"] and manifest["label_counts"] == {"dog": 2, "cat": 1, "car": 0}
    assert manifest["total_duration_s"] == pytest.approx(0.75)
    # Resampling decodes and re-encodes.
    resampled = shards.write_shards(dataset, str(tmp_path / "8k"), "audio", "label", label_space_of(dataset, "label"),
                                    sampling_rate=8000)
    assert soundfile.info(io.BytesIO(members(tmp_path / "8k" / "shard-00000.tar")["000000000.flac"])).samplerate == 8000
    assert resampled["total_duration_s"] == pytest.approx(0.75)


def test_shard_files_and_manifest_errors_name_the_fix(tmp_path, sound_shards):
    with pytest.raises(ValueError, match=r"No \.tar shards match .*give a folder, a glob"):
        shards.shard_files(str(tmp_path / "nothing"))
    (tmp_path / "x.tar").write_bytes(b"")
    with pytest.raises(ValueError, match="No manifest.json beside the shards .*make_shards.py"):
        shards.read_manifest([str(tmp_path / "x.tar")])
    with pytest.raises(ValueError, match="shard_size must be at least 1"):
        shards.write_shards(Dataset.from_dict({"audio": [], "label": []}), str(tmp_path), "audio", "label",
                            LabelSpace(["a"], False), shard_size=0)


def pass_of(path: str) -> int:
    return int(path.split("/", 1)[0].removeprefix("pass-"))


def test_each_process_streams_whole_passes_of_its_own_shards(sound_shards):
    folder, _ = sound_shards
    files = shards.shard_files(str(folder))
    manifest = shards.read_manifest(files)
    # 2 processes need 50 clips each: 2 passes each (36 clips a pass), 4 passes in all.
    assert shards.passes_for(36, 50, 2) == 4
    stream = shards.training_stream(files, manifest, "audio", "label", 50, 2, seed=1, shuffle_buffer_size=10)
    seen = {}
    for rank in range(2):
        # What accelerate does with dispatch_batches=False: IterableDataset.shard(num_processes, process_index).
        paths = [row["audio"]["path"] for row in stream.shard(num_shards=2, index=rank)]
        assert len(paths) == 72
        passes = [pass_of(path) for path in paths]
        assert passes == sorted(passes) and set(passes) == {2 * rank, 2 * rank + 1}
        for index in set(passes):
            clips = [path.split("/", 1)[1] for path in paths if pass_of(path) == index]
            assert sorted(clips) == [f"{i:09d}.flac" for i in range(36)]  # a permutation: nothing repeated or lost
        seen[rank] = paths
    order = [path.split("/", 1)[1] for path in seen[0][:36]]
    assert order != sorted(order)  # shuffled
    again = shards.training_stream(files, manifest, "audio", "label", 50, 2, seed=1, shuffle_buffer_size=10)
    assert [row["audio"]["path"] for row in again.shard(num_shards=2, index=0)] == seen[0]  # seeded


def test_make_shards_script_writes_both_splits(tmp_path):
    arrays = synthetic_sounds(num_per_class=2)
    for split in ("train", "test"):  # an audiofolder of WAV files
        for index, row in enumerate(arrays[split]):
            label = arrays[split].features["label"].names[row["label"]]
            (tmp_path / "data" / split / label).mkdir(parents=True, exist_ok=True)
            soundfile.write(tmp_path / "data" / split / label / f"{index}.wav", row["audio"]["array"], 8000)
    manifests = make_shards.main(["--train_dir", str(tmp_path / "data" / "train"), "--eval_dir",
                                  str(tmp_path / "data" / "test"), "--output_dir", str(tmp_path / "shards"),
                                  "--shard_size", "4"])
    assert manifests["train"]["num_clips"] == len(arrays["train"]) and manifests["eval"]["num_clips"] == len(arrays["test"])
    assert len(list((tmp_path / "shards" / "train").glob("train-*.tar"))) == -(-len(arrays["train"]) // 4)
    first = members(tmp_path / "shards" / "train" / "train-00000.tar")
    labels = [json.loads(first[f"{i:09d}.json"])["label"] for i in range(4)]
    assert len(set(labels)) > 1  # written in a shuffled order, not class by class


class Killed(Exception):
    """Stands for the process being killed in the middle of a run."""


TRAINING_STEP = train_script.MeamtmTrainer.training_step


class Recorder:
    """Records a digest of every clip of every optimizer step, in order (replaces MeamtmTrainer.training_step)."""

    def __init__(self, monkeypatch, stop_after: int | None = None):
        self.clips, self.steps, self.stop_after = [], 0, stop_after
        recorder = self

        def training_step(trainer, model, inputs, *args, **kwargs):
            if recorder.stop_after is not None and recorder.steps == recorder.stop_after:
                raise Killed(f"after step {recorder.steps}")
            recorder.steps += 1
            recorder.clips += [hashlib.sha1(row.numpy().tobytes()).hexdigest() for row in inputs["input_values"]]
            return TRAINING_STEP(trainer, model, inputs, *args, **kwargs)

        monkeypatch.setattr(train_script.MeamtmTrainer, "training_step", training_step)


@pytest.mark.slow
def test_streamed_run_killed_and_resumed_neither_repeats_nor_skips_clips(sound_shards, tmp_path, monkeypatch):
    from .test_train_script import assert_same_weights

    folder, _ = sound_shards
    run = ["--train_shards", str(folder), *TINY_8K, *QUIET, "--max_steps", "12", "--per_device_train_batch_size", "4",
           "--save_strategy", "steps", "--save_steps", "4", "--eval_strategy", "no", "--learning_rate", "1e-3",
           "--shuffle_buffer_size", "16"]
    straight = Recorder(monkeypatch)
    train_script.main(run + ["--output_dir", str(tmp_path / "straight")])
    # 48 clips: the first pass (36 clips) is a permutation of the data set, then 12 of the second.
    assert straight.steps == 12 and len(set(straight.clips[:36])) == 36
    kept = sorted(path.name for path in (tmp_path / "straight").glob("checkpoint-*"))
    assert kept == ["checkpoint-12", "checkpoint-8"]  # the default save_total_limit keeps the newest two

    killed = Recorder(monkeypatch, stop_after=9)  # dies in step 10, after checkpoint-8
    with pytest.raises(Killed):
        train_script.main(run + ["--output_dir", str(tmp_path / "resumed")])
    assert (tmp_path / "resumed" / "checkpoint-8").is_dir() and not (tmp_path / "resumed" / "checkpoint-12").exists()
    resumed = Recorder(monkeypatch)
    train_script.main(run + ["--output_dir", str(tmp_path / "resumed")])
    assert resumed.steps == 4  # steps 9-12
    assert killed.clips[:32] + resumed.clips == straight.clips
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed", atol=1e-5)


@pytest.mark.slow
def test_training_from_shards_balanced_with_evaluation(sound_shards, tmp_path):
    folder, _ = sound_shards
    metrics = train_script.main(
        ["--train_shards", str(folder / "*.tar"), "--eval_shards", str(folder / "train-0000[0-1].tar"), *TINY_8K,
         *QUIET, "--max_steps", "3", "--per_device_train_batch_size", "8", "--eval_strategy", "no",
         "--balanced_sampling", "true", "--output_dir", str(tmp_path)]
    )
    assert json.loads((tmp_path / "trainer_state.json").read_text())["global_step"] == 3
    assert 0 <= metrics["eval_accuracy"] <= 1
    with pytest.raises(ValueError, match="set --max_steps"):
        train_script.main(["--train_shards", str(folder), *TINY_8K, *QUIET, "--output_dir", str(tmp_path / "x")])


@pytest.fixture(scope="module")
def imbalanced_shards(tmp_path_factory) -> tuple[Path, dict]:
    """300 short clips, 200 / 80 / 20 of three classes, in shards of 50."""
    rng = np.random.default_rng(0)
    labels = ["common"] * 200 + ["middle"] * 80 + ["rare"] * 20
    order = rng.permutation(300)
    features = Features(audio=Audio(sampling_rate=8000), label=ClassLabel(names=["common", "middle", "rare"]))
    dataset = Dataset.from_dict(
        {"audio": [{"array": rng.uniform(-0.1, 0.1, 80).astype(np.float32), "sampling_rate": 8000} for _ in order],
         "label": [labels[i] for i in order]},
        features=features,
    )
    folder = tmp_path_factory.mktemp("imbalanced")
    return folder, shards.write_shards(dataset, str(folder), "audio", "label", label_space_of(dataset, "label"),
                                       shard_size=50)


def test_expected_draws_are_those_of_the_map_style_sampler():
    manifest = {"num_clips": 4, "label_counts": {"a": 3, "b": 2, "c": 0}}
    rows = [["a"], ["a", "b"], ["a"], ["b"]]
    dataset = Dataset.from_dict({"label": rows})
    weights = balanced_sampling_weights(dataset, "label", LabelSpace(["a", "b", "c"], True))
    draws = [shards.expected_draws(manifest, row) for row in rows]
    # BalancedSampler draws len(weights) clips, clip i with probability w_i / sum(w).
    np.testing.assert_allclose(draws, len(weights) * weights / weights.sum())
    assert shards.expected_draws(manifest, "c") == 0 and shards.expected_draws(manifest, []) == 0


def test_balanced_stream_evens_out_label_frequencies_within_sampling_error(imbalanced_shards):
    folder, manifest = imbalanced_shards
    files = shards.shard_files(str(folder))
    manifest = shards.read_manifest(files)
    # 1 process needing 20 passes of clips: 20 passes of 300 clips plus one spare pass, each with its own draws.
    stream = shards.training_stream(files, manifest, "audio", "label", 6000, 1, seed=0, shuffle_buffer_size=100,
                                    balanced=True)
    rows = [(row["audio"]["path"], row["label"]) for row in stream.select_columns(["audio", "label"])]
    names = ["common", "middle", "rare"]
    by_pass = Counter(pass_of(path) for path, _ in rows)
    rows = [(path, names[label] if isinstance(label, int) else label) for path, label in rows]
    counts = Counter(label for path, label in rows if pass_of(path) < 20)
    # Every class is drawn 100 times a pass on average (Poisson): over 20 passes 2000 +- 45 (1 sigma).
    for name in names:
        assert abs(counts[name] - 2000) < 4 * np.sqrt(2000), counts
    # Unbalanced, the rare class would be 20 x 20 = 400 draws, the common one 4000.
    assert set(by_pass) == set(range(21))
    rare_paths = Counter(path.split("/", 1)[1] for path, label in rows if pass_of(path) < 20 and label == "rare")
    assert len(rare_paths) == 20 and max(rare_paths.values()) > 20  # rare clips are drawn again and again
    again = shards.training_stream(files, manifest, "audio", "label", 6000, 1, seed=0, shuffle_buffer_size=100,
                                   balanced=True)
    assert [row["audio"]["path"] for row in again.select_columns(["audio"]).take(500)] == [p for p, _ in rows[:500]]
