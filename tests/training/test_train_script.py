"""scripts/train.py end to end: real (tiny) training runs on FSDD clips and on data sets built here.

Every run uses the `tiny` preset at 8 kHz over a 2 s window and a few dozen optimizer steps.
"""

import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file

from meamtm.training.averaging import AVERAGE_FILE

from ..conftest import REPO


spec = importlib.util.spec_from_file_location("train_script", REPO / "scripts" / "train.py")
train_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_script)

TINY_8K = ["--config_name", "tiny", "--config_overrides", "sampling_rate=8000,max_length=100"]
QUIET = ["--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0", "--seed", "0"]
SPEAKERS = ["george", "jackson", "lucas", "theo", "yweweler"]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> str:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["audio", "label"])
        writer.writerows(rows)
    return str(path)


def fsdd_rows(fsdd_dir: Path, split: str, per_digit: int, digits=range(10)) -> list[tuple[str, str]]:
    """`per_digit` clips of each digit, speakers in turn."""
    rows = []
    for digit in digits:
        for index in range(per_digit):
            speaker = SPEAKERS[index % 5]
            take = index // 5 + (5 if split == "train" else 0)
            rows.append((str(fsdd_dir / split / str(digit) / f"{speaker}_{take}.wav"), str(digit)))
    return rows


@pytest.fixture(scope="module")
def fsdd_small(fsdd_dir, tmp_path_factory) -> dict[str, str]:
    """CSV metadata for 20 training clips per digit and 10 test clips per digit (FSDD read in place)."""
    folder = tmp_path_factory.mktemp("fsdd_small")
    return {
        "train": write_csv(folder / "train.csv", fsdd_rows(fsdd_dir, "train", 20)),
        "eval": write_csv(folder / "eval.csv", fsdd_rows(fsdd_dir, "test", 5)),
    }


def run_args(data: dict, output_dir: Path, *extra: str) -> list[str]:
    args = ["--train_file", data["train"], "--output_dir", str(output_dir), *TINY_8K, *QUIET]
    if "eval" in data:
        args += ["--eval_file", data["eval"]]
    return args + list(extra)


# Shared by the resume, kill and data-parallel tests: 12 steps of 4 clips, checkpoints every 4 steps, with
# augmentation on, so that an exact match also shows that augmentation is reproducible.
# Random order, not the data-only default of grouping by length: the Trainer's `LengthGroupedSampler` forms its
# groups per process batch size, so one process and two draw different batches.
RESUME_RUN = [
    "--max_steps", "12", "--save_strategy", "steps", "--save_steps", "4", "--eval_strategy", "no",
    "--learning_rate", "1e-3", "--gain_db", "6", "--shift_s", "0.1", "--noise_snr_db", "20",
    "--train_sampling_strategy", "random", "--save_total_limit", "0",  # every checkpoint kept, for the copies below
    # The data defaults' schedule, given: a resumed run that averages checkpoints instead of steps keeps it.
    "--lr_scheduler_type", "constant_with_warmup",
]


@pytest.fixture(scope="module")
def straight_run(fsdd_small, tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("straight")
    train_script.main(run_args({"train": fsdd_small["train"]}, output_dir, *RESUME_RUN, "--per_device_train_batch_size", "4"))
    return output_dir


def assert_same_weights(folder_a: Path, folder_b: Path, atol: float) -> None:
    a, b = load_file(str(folder_a / "model.safetensors")), load_file(str(folder_b / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=lambda m: f"{key}: {m}")


@pytest.mark.slow
def test_short_fsdd_run_beats_chance(fsdd_dir, tmp_path):
    # Three digits (zero, one, seven), 20 training clips each, 200 steps of 16 clips from scratch; 60 test clips.
    # Chance is 1/3 (20 of 60 right, binomial sd 3.7 clips); the bound 70 % (42 right) is 6 sd above it.
    # A from-scratch transformer needs a few hundred steps before it generalises, hence three classes rather than
    # ten in a CI budget.
    data = {
        "train": write_csv(tmp_path / "train.csv", fsdd_rows(fsdd_dir, "train", 20, digits=(0, 1, 7))),
        "eval": write_csv(tmp_path / "eval.csv", fsdd_rows(fsdd_dir, "test", 20, digits=(0, 1, 7))),
    }
    output_dir = tmp_path / "out"
    metrics = train_script.main(
        run_args(data, output_dir, "--max_steps", "200", "--per_device_train_batch_size", "16", "--learning_rate", "1e-3",
                 "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "20")
    )
    assert metrics["eval_accuracy"] >= 0.70, metrics
    # What a user finds in the output folder.
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "modeling_meamtm.py", "README.md",
                 "eval_results.json", "train_results.json", "learning_curve.png", "confusion_matrix.png"):
        assert (output_dir / name).is_file(), name
    card = (output_dir / "README.md").read_text()
    assert f"{metrics['eval_accuracy']:.4f}" in card and "model-index" in card
    assert json.loads((output_dir / "eval_results.json").read_text())["eval_accuracy"] == metrics["eval_accuracy"]
    # The saved folder classifies through the pipeline.
    from transformers import pipeline

    classifier = pipeline("audio-classification", model=str(output_dir))
    top = classifier(str(fsdd_dir / "test" / "7" / "theo_0.wav"), top_k=3)
    assert {guess["label"] for guess in top} == {"0", "1", "7"}


def write_chords(folder: Path, count: int, seed: int) -> str:
    """A multi-label set: each clip mixes a random subset of three tones (low, mid, high); JSON lines metadata."""
    rng = np.random.default_rng(seed)
    names, frequencies = ["low", "mid", "high"], [300.0, 900.0, 2500.0]
    t = np.arange(6000) / 8000
    lines = []
    for index in range(count):
        present = [name for name in names if rng.random() < 0.5] or [names[index % 3]]
        wave = sum(np.sin(2 * np.pi * frequencies[names.index(n)] * rng.uniform(0.97, 1.03) * t) for n in present)
        wave = 0.3 * wave / len(present) + rng.standard_normal(len(t)) * 0.01
        path = folder / f"clip{index}.wav"
        soundfile.write(path, wave.astype(np.float32), 8000)
        lines.append(json.dumps({"audio": path.name, "labels": present}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return str(folder / "metadata.jsonl")


def test_multi_label_training(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "eval").mkdir()
    data = {"train": write_chords(tmp_path / "train", 96, 0), "eval": write_chords(tmp_path / "eval", 32, 1)}
    metrics = train_script.main(
        run_args(data, tmp_path / "out", "--label_column", "labels", "--max_steps", "60", "--learning_rate", "3e-3",
                 "--per_device_train_batch_size", "16", "--balanced_sampling", "true", "--eval_strategy", "no")
    )
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert sorted(config["id2label"].values()) == ["high", "low", "mid"]
    # Chance mAP is the positive rate (~0.6); the three tones are far apart, so a working BCE run separates them.
    assert metrics["eval_mAP"] > 0.85 and metrics["eval_mAUC"] > 0.85, metrics
    assert not (tmp_path / "out" / "confusion_matrix.png").exists()  # single-label only
    assert (tmp_path / "out" / "learning_curve.png").is_file()


def test_resume_from_checkpoint_equals_straight_run(straight_run, fsdd_small, tmp_path):
    # Interrupted after step 4: only checkpoint-4 survives; a rerun of the same command resumes from it.
    import shutil

    shutil.copytree(straight_run / "checkpoint-4", tmp_path / "checkpoint-4")
    train_script.main(run_args({"train": fsdd_small["train"]}, tmp_path, *RESUME_RUN, "--per_device_train_batch_size", "4"))
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["global_step"] == 12
    assert_same_weights(straight_run, tmp_path, atol=1e-6)


@pytest.mark.slow
def test_killed_run_resumes_and_finishes(straight_run, fsdd_small, tmp_path):
    command = [sys.executable, str(REPO / "scripts" / "train.py"),
               *run_args({"train": fsdd_small["train"]}, tmp_path, *RESUME_RUN, "--per_device_train_batch_size", "4")]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / "checkpoint-4" / "trainer_state.json").exists():
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "model.safetensors").exists()  # killed before the end
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "Resuming from" in finished.stderr
    assert json.loads((tmp_path / "trainer_state.json").read_text())["global_step"] == 12
    # Resumed from the last complete checkpoint, whichever it was when the kill landed: same weights as a straight
    # run (separate processes, so the same threads; 1e-5 leaves room for nothing but summation order).
    assert_same_weights(straight_run, tmp_path, atol=1e-5)


def test_two_process_data_parallel_matches_one_process(straight_run, fsdd_small, tmp_path):
    # 2 processes x 2 clips per step see the same 4 clips per step as 1 process x 4 (accelerate shards the batches
    # of one seeded sampler; augmentation is seeded per clip), and DDP averages their gradients: the weights agree
    # up to the order of floating-point sums. Tolerance 1e-4 after 12 Adam steps at lr 1e-3.
    # (`accelerate launch --cpu` starts one process whatever --num_processes says; torchrun + gloo starts two.)
    # Each process runs train.py, then checks that it left the process group: one torn down at interpreter exit
    # aborts about half the processes (SIGABRT after the work is done), which this run alone would catch by chance.
    runner = tmp_path / "run_train.py"
    runner.write_text(
        "import runpy, sys\nimport torch.distributed as dist\n"
        f"sys.argv[0] = {str(REPO / 'scripts' / 'train.py')!r}\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "assert not dist.is_initialized(), 'train.py left its process group to the interpreter exit'\n"
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", str(runner),
               *run_args({"train": fsdd_small["train"]}, tmp_path, *RESUME_RUN, "--per_device_train_batch_size", "2")]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=400)
    assert finished.returncode == 0, finished.stderr[-3000:]
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["global_step"] == 12
    assert_same_weights(straight_run, tmp_path, atol=1e-4)


class HubStandIn:
    """Takes the place of the Hub's HTTP API: `create_repo` and `upload_folder` write to a local folder."""

    def __init__(self, root: Path):
        self.root = root
        self.commits = []

    def create_repo(self, repo_id, **kwargs):
        from huggingface_hub import RepoUrl

        (self.root / repo_id).mkdir(parents=True, exist_ok=True)
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, repo_id, folder_path, path_in_repo=None, commit_message=None, ignore_patterns=None,
                      run_as_future=False, **kwargs):
        from huggingface_hub.utils import filter_repo_objects

        files = [p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()]
        kept = list(filter_repo_objects(files, ignore_patterns=ignore_patterns))
        target = self.root / repo_id / (path_in_repo or "")
        for name in kept:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes((Path(folder_path) / name).read_bytes())
        self.commits.append((commit_message, sorted(kept)))
        if run_as_future:
            future = Future()
            future.set_result(None)
            return future
        return None


def test_push_to_hub_publishes_the_output_folder(fsdd_small, tmp_path, monkeypatch):
    import huggingface_hub

    hub = HubStandIn(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: hub.create_repo(repo_id, **kw))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, **kw: hub.upload_folder(**kw))
    train_script.main(
        run_args(fsdd_small, tmp_path / "out", "--max_steps", "4", "--per_device_train_batch_size", "8",
                 "--eval_strategy", "no", "--push_to_hub", "true", "--hub_model_id", "someone/meamtm-digits",
                 "--hub_token", "not-a-token")
    )
    remote = tmp_path / "hub" / "someone" / "meamtm-digits"
    assert hub.commits[-1][0] == "End of training"
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "configuration_meamtm.py",
                 "modeling_meamtm.py", "README.md", "eval_results.json", "confusion_matrix.png", "learning_curve.png"):
        assert (remote / name).read_bytes() == (tmp_path / "out" / name).read_bytes(), name
    assert not any(path.name.startswith("checkpoint-") for path in remote.iterdir())
    assert "meamtm-digits" in (remote / "README.md").read_text()


def test_missing_column_error_lists_columns(fsdd_small, tmp_path):
    with pytest.raises(ValueError, match=r"--label_column 'digit' is not a column .*\['audio', 'label'\]"):
        train_script.main(run_args(fsdd_small, tmp_path, "--label_column", "digit", "--max_steps", "1"))


def test_unknown_eval_label_is_named(fsdd_dir, fsdd_small, tmp_path):
    rows = fsdd_rows(fsdd_dir, "test", 1) + [(str(fsdd_dir / "test" / "3" / "theo_0.wav"), "three")]
    data = {"train": fsdd_small["train"], "eval": write_csv(tmp_path / "eval.csv", rows)}
    with pytest.raises(ValueError, match=r"labels \['three'\] that the training data does not have"):
        train_script.main(run_args(data, tmp_path / "out", "--max_steps", "1"))


@pytest.fixture
def with_corrupt_files(fsdd_dir, tmp_path) -> dict[str, str]:
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 10)
    (tmp_path / "empty.wav").write_bytes(b"")
    train = fsdd_rows(fsdd_dir, "train", 2) + [(str(tmp_path / "broken.wav"), "4")]
    evaluation = fsdd_rows(fsdd_dir, "test", 1) + [(str(tmp_path / "empty.wav"), "7")]
    return {"train": write_csv(tmp_path / "train.csv", train), "eval": write_csv(tmp_path / "eval.csv", evaluation)}


def test_unreadable_file_is_named(with_corrupt_files, tmp_path):
    with pytest.raises(ValueError, match=r"Cannot read audio file .*broken\.wav.*--skip_unreadable_files"):
        train_script.main(run_args(with_corrupt_files, tmp_path / "out", "--num_train_epochs", "1",
                                   "--per_device_train_batch_size", "4"))


def test_unreadable_files_skipped_and_counted(with_corrupt_files, tmp_path, caplog):
    metrics = train_script.main(
        run_args(with_corrupt_files, tmp_path / "out", "--num_train_epochs", "2", "--per_device_train_batch_size", "4",
                 "--skip_unreadable_files", "true")
    )
    # Two epochs read broken.wav twice and evaluation reads empty.wav: two distinct files.
    assert metrics["unreadable_files_skipped"] == 2
    assert "Skipped 2 unreadable files" in caplog.text
    listed = (tmp_path / "out" / "unreadable_files.txt").read_text().split()
    assert {Path(p).name for p in listed} == {"broken.wav", "empty.wav"}
    assert metrics["eval_samples_per_second"] > 0 and 0 <= metrics["eval_accuracy"] <= 1


def test_streaming_run(fsdd_small, tmp_path):
    metrics = train_script.main(
        run_args(fsdd_small, tmp_path, "--streaming", "true", "--max_steps", "3", "--per_device_train_batch_size", "8",
                 "--eval_strategy", "no", "--class_names", *[str(d) for d in range(10)])
    )
    assert json.loads((tmp_path / "trainer_state.json").read_text())["global_step"] == 3
    assert 0 <= metrics["eval_accuracy"] <= 1


def test_arguments_from_json_file(fsdd_small, tmp_path):
    arguments = {"train_file": fsdd_small["train"], "output_dir": str(tmp_path / "out"), "config_name": "tiny",
                 "config_overrides": "sampling_rate=8000,max_length=100", "max_steps": 2, "eval_strategy": "no",
                 "report_to": "none", "per_device_train_batch_size": 4}
    (tmp_path / "args.json").write_text(json.dumps(arguments))
    train_script.main([str(tmp_path / "args.json")])
    assert json.loads((tmp_path / "out" / "trainer_state.json").read_text())["global_step"] == 2


def test_the_checkpoints_kept_cover_those_averaged():
    plain = ["--train_dir", "clips", "--max_steps", "3"]  # data given: no recipe sets the limit
    args = train_script.parse_arguments(plain)
    train_script.keep_checkpoints_to_average(plain, args)
    assert args.recipe.recipe is None and args.training.save_total_limit == 2  # not one per epoch of a long run
    command = [*plain, "--average_last_checkpoints", "5"]
    args = train_script.parse_arguments(command)
    train_script.keep_checkpoints_to_average(command, args)
    assert args.training.save_total_limit == 5
    for limit, kept in (("0", 0), ("6", 6)):
        args = train_script.parse_arguments(command + ["--save_total_limit", limit])
        train_script.keep_checkpoints_to_average(command + ["--save_total_limit", limit], args)
        assert args.training.save_total_limit == kept
    with pytest.raises(ValueError, match="--save_total_limit 3 keeps 3: give --save_total_limit 5 or more"):
        train_script.keep_checkpoints_to_average(command + ["--save_total_limit", "3"],
                                                 train_script.parse_arguments(command + ["--save_total_limit", "3"]))


def test_weight_averaging_of_last_checkpoints(straight_run, fsdd_small, tmp_path):
    import shutil

    for step in (4, 8):  # killed after step 8: resumes, trains to 12, then averages checkpoints 8 and 12
        shutil.copytree(straight_run / f"checkpoint-{step}", tmp_path / f"checkpoint-{step}")
    train_script.main(run_args({"train": fsdd_small["train"]}, tmp_path, *RESUME_RUN, "--per_device_train_batch_size", "4",
                               "--average_last_checkpoints", "2"))
    assert not (tmp_path / "checkpoint-13").exists()
    averaged = load_file(str(tmp_path / "model.safetensors"))
    a = load_file(str(straight_run / "checkpoint-8" / "model.safetensors"))
    b = load_file(str(straight_run / "checkpoint-12" / "model.safetensors"))
    for key in averaged:
        torch.testing.assert_close(averaged[key], (a[key] + b[key]) / 2, atol=1e-6, rtol=0)


def test_weight_averaging_over_the_last_steps(straight_run, fsdd_small, tmp_path):
    import shutil

    # Every step saved: the saved model is the mean of steps 7-12's weights (the second half of 12), and training
    # itself is the straight run's (the mean draws no random numbers and changes no weight it reads).
    averaging = ["--per_device_train_batch_size", "4", "--weight_averaging_start", "0.5"]
    every_step = tmp_path / "every_step"
    train_script.main(
        run_args({"train": fsdd_small["train"]}, every_step, *RESUME_RUN, *averaging, "--save_steps", "1")
    )
    steps = [load_file(str(every_step / f"checkpoint-{step}" / "model.safetensors")) for step in range(7, 13)]
    averaged = load_file(str(every_step / "model.safetensors"))
    assert not (every_step / "checkpoint-6" / AVERAGE_FILE).exists()
    assert (every_step / "checkpoint-7" / AVERAGE_FILE).exists()
    for key, value in averaged.items():
        if not value.is_floating_point():
            assert torch.equal(value, steps[-1][key])
            continue
        expected = sum(step[key].double() for step in steps) / len(steps)
        torch.testing.assert_close(value, expected.to(value.dtype), atol=1e-6, rtol=0, msg=lambda m: f"{key}: {m}")
    assert_same_weights(straight_run / "checkpoint-12", every_step / "checkpoint-12", atol=1e-6)
    assert not torch.equal(averaged["classifier.dense.weight"], steps[-1]["classifier.dense.weight"])

    # Killed after step 8 and run again: it resumes with checkpoint-8's mean and ends on the same average.
    resumed = tmp_path / "resumed"
    shutil.copytree(every_step / "checkpoint-8", resumed / "checkpoint-8")
    train_script.main(run_args({"train": fsdd_small["train"]}, resumed, *RESUME_RUN, *averaging))
    assert_same_weights(every_step, resumed, atol=1e-6)


def test_weight_averaging_is_refused_beside_checkpoint_averaging(fsdd_small, tmp_path):
    refusal = "--weight_averaging_start 0.5 and --average_last_checkpoints 2 both choose the final weights"
    with pytest.raises(ValueError, match=refusal):
        train_script.main(run_args(fsdd_small, tmp_path, "--max_steps", "2", "--weight_averaging_start", "0.5",
                                   "--average_last_checkpoints", "2"))
    with pytest.raises(ValueError, match="--weight_averaging_start 1.5 is not a fraction of training"):
        train_script.main(run_args(fsdd_small, tmp_path, "--max_steps", "2", "--weight_averaging_start", "1.5"))
    assert not (tmp_path / "checkpoint-1").exists()  # refused before training


def test_a_recipes_weight_averaging_yields_to_checkpoint_averaging_and_sharded_weights(caplog):
    from meamtm.training.averaging import WeightAveraging

    command = ["--recipe", "fsdd", "--average_last_checkpoints", "2"]
    args = train_script.parse_arguments(command)
    assert args.model.weight_averaging_start == 0.5 and args.training.lr_scheduler_type == "constant_with_warmup"
    assert train_script.weight_averaging(command, args, None) is None
    # Off, and the constant learning rate chosen for the average with it; both logged.
    assert args.model.weight_averaging_start == 0 and args.training.lr_scheduler_type == "linear"
    assert ("weight_averaging_start=0: --average_last_checkpoints 2 averages checkpoints instead; "
            "lr_scheduler_type=linear") in caplog.text
    # A schedule the command gives stays.
    command = [*command, "--lr_scheduler_type", "constant_with_warmup"]
    args = train_script.parse_arguments(command)
    assert train_script.weight_averaging(command, args, None) is None
    assert args.training.lr_scheduler_type == "constant_with_warmup"
    # The best checkpoint, asked for, wins over the recipe's average too.
    command = ["--recipe", "fsdd", "--load_best_model_at_end", "true", "--save_strategy", "epoch",
               "--eval_strategy", "epoch"]
    args = train_script.parse_arguments(command)
    assert train_script.weight_averaging(command, args, None) is None and args.model.weight_averaging_start == 0
    assert "weight_averaging_start=0: --load_best_model_at_end keeps the best checkpoint instead" in caplog.text
    with pytest.raises(ValueError, match="--weight_averaging_start 0.5 and --load_best_model_at_end both choose"):
        train_script.weight_averaging([*command, "--weight_averaging_start", "0.5"],
                                      train_script.parse_arguments([*command, "--weight_averaging_start", "0.5"]), None)

    def trainer(sharded: bool, removed: list):
        return SimpleNamespace(is_fsdp_enabled=sharded, is_deepspeed_enabled=False, remove_callback=removed.append)

    command = ["--recipe", "fsdd"]
    args = train_script.parse_arguments(command)
    averaging = train_script.weight_averaging(command, args, None)
    assert isinstance(averaging, WeightAveraging)
    removed = []
    assert train_script.averaging_for_trainer(command, args, trainer(False, removed), averaging) is averaging
    assert not removed and args.model.weight_averaging_start == 0.5
    assert train_script.averaging_for_trainer(command, args, trainer(True, removed), averaging) is None
    assert removed == [averaging] and args.training.lr_scheduler_type == "linear"
    assert "weight_averaging_start=0: each process holds a shard of the weights" in caplog.text
    # Asked for on the command line: refused, as without a recipe.
    command = ["--recipe", "fsdd", "--weight_averaging_start", "0.5"]
    args = train_script.parse_arguments(command)
    averaging = train_script.weight_averaging(command, args, None)
    with pytest.raises(ValueError, match="not supported under FSDP or DeepSpeed"):
        train_script.averaging_for_trainer(command, args, trainer(True, []), averaging)


def test_test_time_augmentation_applies_to_the_saved_model_and_the_final_evaluation_only(fsdd_small, tmp_path):
    from meamtm import MeamtmForAudioClassification

    metrics = train_script.main(run_args(fsdd_small, tmp_path, "--max_steps", "6", "--eval_strategy", "steps",
                                         "--eval_steps", "6", "--per_device_train_batch_size", "8",
                                         "--test_time_max_warp", "0.1", "--test_time_max_shift", "4"))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["test_time_max_warp"] == 0.1 and config["test_time_warps"] == 3
    assert config["test_time_max_shift"] == 4 and config["test_time_shifts"] == 3
    # The evaluation during training (step 6) ran on the plain bank; the final one, on the same weights, averages.
    during = [entry for entry in json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
              if "eval_loss" in entry][-1]
    assert during["step"] == 6 and during["eval_loss"] != metrics["eval_loss"]
    model = MeamtmForAudioClassification.from_pretrained(tmp_path).eval()
    assert model.config.test_time_warp_factors[0] == 0.9
    assert "test-time augmentation: warps 0.9, 1, 1.1; shifts 0, 2, 4 frames" in (tmp_path / "README.md").read_text()


def test_evaluate_model_repeats_the_final_evaluation_and_applies_test_time_augmentation(fsdd_small, tmp_path):
    spec = importlib.util.spec_from_file_location("evaluate_model", REPO / "scripts" / "evaluate_model.py")
    evaluate_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate_model)
    trained = train_script.main(run_args(fsdd_small, tmp_path / "run", "--max_steps", "4", "--eval_strategy", "no"))
    command = ["--model", str(tmp_path / "run"), "--eval_file", fsdd_small["eval"], "--output_dir"]
    plain = evaluate_model.main([*command, str(tmp_path / "plain")])
    assert plain["eval_loss"] == pytest.approx(trained["eval_loss"], abs=1e-6)
    assert plain["eval_accuracy"] == trained["eval_accuracy"] and plain["test_time_warps"] == []
    warped = evaluate_model.main([*command, str(tmp_path / "warped"), "--test_time_max_warp", "0.1"])
    assert warped["test_time_warps"] == [0.9, 1.0, 1.1] and warped["eval_loss"] != plain["eval_loss"]
    assert json.loads((tmp_path / "warped" / "eval_results.json").read_text())["eval_loss"] == warped["eval_loss"]
    shifted = evaluate_model.main([*command, str(tmp_path / "shifted"), "--test_time_max_shift", "4"])
    assert shifted["test_time_shifts"] == [0, 2, 4] and shifted["test_time_warps"] == []
    assert shifted["eval_loss"] not in (plain["eval_loss"], warped["eval_loss"])
    slowed = evaluate_model.main([*command, str(tmp_path / "tempi"), "--test_time_max_tempo", "0.2"])
    assert slowed["test_time_tempi"] == [0.8, 1.0, 1.2] and slowed["test_time_shifts"] == plain["test_time_shifts"]
    assert slowed["eval_loss"] not in (plain["eval_loss"], warped["eval_loss"], shifted["eval_loss"])
    with pytest.raises(ValueError, match="test_time_max_warp=2.0 must be in"):
        evaluate_model.main([*command, str(tmp_path / "bad"), "--test_time_max_warp", "2"])
    with pytest.raises(ValueError, match="exactly one of --eval_dir and --eval_file"):
        evaluate_model.main(["--model", str(tmp_path / "run"), "--output_dir", str(tmp_path / "none")])


def test_compare_test_time_views_scores_each_set_as_the_model_with_those_settings_does(fsdd_small, tmp_path):
    scripts = {}
    for name in ("evaluate_model", "compare_test_time_views"):
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
        scripts[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(scripts[name])
    run = tmp_path / "runs" / "george" / "seed0"
    train_script.main(run_args(fsdd_small, run, "--max_steps", "4", "--eval_strategy", "no", "--seed", "1"))
    (tmp_path / "folds" / "george").mkdir(parents=True)
    shutil.copy(fsdd_small["eval"], tmp_path / "folds" / "george" / "test.csv")
    sets = ["", "test_time_max_tempo=0.2", "test_time_max_warp=0.1,test_time_max_shift=4,test_time_max_tempo=0.1",
            "trim_silence_db=20,test_time_max_shift=4"]
    compared = scripts["compare_test_time_views"].main([
        "--runs_dir", str(tmp_path / "runs"), "--folds_dir", str(tmp_path / "folds"), "--view_sets", *sets,
        "--results", str(tmp_path / "views"), "--batch_size", "7",
    ])
    assert [compared["summary"][text]["views"] for text in sets] == [1, 3, 27, 3]
    assert compared["descriptions"][sets[2]] == "warps 0.9, 1, 1.1; shifts 0, 2, 4 frames; tempi 0.9, 1, 1.1"
    trimmed = "shifts 0, 2, 4 frames; silence trimmed at 20 dB (0.05 s kept each side)"
    assert compared["descriptions"][sets[3]] == trimmed
    off = ["--test_time_max_warp", "0", "--test_time_max_shift", "0"]  # the model's own (shifts) are not in a set
    flags = [[*off], [*off, "--test_time_max_tempo", "0.2"],
             ["--test_time_max_warp", "0.1", "--test_time_max_shift", "4", "--test_time_max_tempo", "0.1"],
             ["--test_time_max_warp", "0", "--test_time_max_shift", "4", "--trim_silence_db", "20"]]
    for text, extra in zip(sets, flags):
        evaluated = scripts["evaluate_model"].main(["--model", str(run), "--eval_file", fsdd_small["eval"],
                                                    "--output_dir", str(tmp_path / "eval"), *extra])
        assert compared["runs"][0]["accuracy"][text] == pytest.approx(evaluated["eval_accuracy"], abs=1e-6)
    written = json.loads((tmp_path / "views.json").read_text())
    assert written["summary"] == compared["summary"] and "| `plain` | 1 |" in (tmp_path / "views.md").read_text()
    with pytest.raises(ValueError, match="'test_time_max_tempos=0.2' is not one of test_time_max_warp"):
        scripts["compare_test_time_views"].main(["--models", str(run), "--eval_file", fsdd_small["eval"],
                                                 "--view_sets", "test_time_max_tempos=0.2", "--results", "x"])
    with pytest.raises(ValueError, match=r"test_time_max_tempo=1.5 must be in \[0, 1\)"):
        scripts["compare_test_time_views"].main(["--models", str(run), "--eval_file", fsdd_small["eval"],
                                                 "--view_sets", "test_time_max_tempo=1.5", "--results", "x"])


def test_a_bad_test_time_setting_fails_before_training(fsdd_small, tmp_path):
    with pytest.raises(ValueError, match=r"test_time_max_warp=1.5 must be in \[0, 1\)"):
        train_script.main(run_args(fsdd_small, tmp_path, "--max_steps", "2", "--test_time_max_warp", "1.5"))
    with pytest.raises(ValueError, match=r"test_time_max_shift=7 must be between 0 \(off\) and patch_size - time_stride"):
        train_script.main(run_args(fsdd_small, tmp_path, "--max_steps", "2", "--test_time_max_shift", "7"))
    assert not list(tmp_path.glob("checkpoint-*"))


def test_rerun_of_a_finished_run_does_not_train_again(straight_run, fsdd_small, tmp_path):
    import shutil

    shutil.copytree(straight_run / "checkpoint-12", tmp_path / "checkpoint-12")
    train_script.main(run_args({"train": fsdd_small["train"]}, tmp_path, *RESUME_RUN, "--per_device_train_batch_size", "4"))
    assert not (tmp_path / "checkpoint-13").exists()
    assert_same_weights(straight_run, tmp_path, atol=0)


def test_builtin_recipe_without_fsdd_trains_on_synthetic_sounds_and_classifies_a_clip(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_script, "FSDD", tmp_path / "no-fsdd")
    args = train_script.parse_arguments(["--max_steps", "3"])
    assert not args.data.has_source and args.model.config_name == "small" and args.training.max_steps == 3
    assert args.recipe.recipe == "demo" and args.training.num_train_epochs == 12
    assert args.training.learning_rate == 3e-4 and args.data.tilt == 0.5  # from the recipe; the command line wins
    metrics = train_script.main(["--config_name", "tiny", "--max_steps", "3", "--eval_strategy", "no",
                                 "--output_dir", str(tmp_path / "out"), *QUIET])
    assert 0 <= metrics["eval_accuracy"] <= 1
    printed = capsys.readouterr().out
    assert "Held-out clip a held-out synthetic clip (true label:" in printed
    names = {"tone", "chirp_up", "chirp_down", "pulses", "noise", "two_tones"}
    assert sum(line.split()[0] in names for line in printed.splitlines()[-3:]) == 3


def test_fine_tuning_a_checkpoint_replaces_its_head(fsdd_small, tmp_path):
    # A checkpoint with 3 classes and no feature extractor saved (as a converted AST checkpoint may be), at 16 kHz:
    # the 10-digit head replaces its head, the extractor is derived from its config, FSDD is resampled to 16 kHz.
    from meamtm import MeamtmForAudioClassification

    from ..conftest import tiny_config

    pretrained = MeamtmForAudioClassification(tiny_config(num_labels=3))
    pretrained.save_pretrained(tmp_path / "pretrained")
    train_script.main(
        ["--train_file", fsdd_small["train"], "--model_name_or_path", str(tmp_path / "pretrained"),
         "--output_dir", str(tmp_path / "out"), "--max_steps", "2", "--per_device_train_batch_size", "4",
         "--eval_strategy", "no", *QUIET]
    )
    tuned = MeamtmForAudioClassification.from_pretrained(tmp_path / "out")
    assert tuned.config.num_labels == 10 and tuned.config.sampling_rate == 16000
    body = "meamtm.layers.0.mlp.fc1.weight"
    # Two Adam steps at the default 5e-5 move each weight by about 1e-4: trained, and started from the checkpoint
    # (a fresh initialisation would differ by ~0.02).
    difference = (tuned.state_dict()[body] - pretrained.state_dict()[body]).abs().max()
    assert 0 < difference < 1e-3
    assert json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())["num_samples"] == 10480


def write_synthetic(folder: Path, sampling_rate: int) -> dict[str, str]:
    """`synthetic_sounds` (4 clips per class) as WAV files and CSV metadata: a data set a user might bring."""
    from meamtm.training.data import synthetic_sounds

    sounds = synthetic_sounds(num_per_class=4, sampling_rate=sampling_rate)
    names = sounds["train"].features["label"].names
    data = {}
    for split, role in (("train", "train"), ("test", "eval")):
        rows = []
        for index, row in enumerate(sounds[split]):
            path = folder / f"{split}-{index}.wav"
            soundfile.write(path, row["audio"]["array"], sampling_rate, subtype="PCM_16")
            rows.append((str(path), names[row["label"]]))
        data[role] = write_csv(folder / f"{split}.csv", rows)
    return data


def test_only_data_arguments_size_the_model_from_the_clips_and_use_the_fsdd_recipe(tmp_path, caplog):
    import logging

    from meamtm.training.recipes import load_recipe

    data = write_synthetic(tmp_path, 16000)
    with caplog.at_level(logging.INFO, logger="train"):
        train_script.main(["--train_file", data["train"], "--eval_file", data["eval"], "--output_dir",
                           str(tmp_path / "out"), "--config_name", "tiny", "--max_steps", "2", *QUIET])
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    # Clips of 0.5-1.05 s at 16 kHz: the window holds the 95th percentile, on the tiny preset's patch grid.
    assert config["sampling_rate"] == 16000
    assert (config["max_length"] - 16) % 10 == 0 and 90 <= config["max_length"] <= 116
    assert config["normalization"] == "global+per_clip"  # both channels: a new voice's colour out, steady sounds kept
    assert config["test_time_max_warp"] == 0  # the recipe's test-time warps would break classes told apart by pitch
    assert config["test_time_max_shift"] == load_recipe("fsdd").groups["model"]["test_time_max_shift"]  # shifts suit any
    assert "sampling rates: 16000 Hz x 20" in caplog.text and "95th percentile" in caplog.text
    assert "6 labels, clips per label (fewest first):" in caplog.text
    recipe = load_recipe("fsdd")
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert state["train_batch_size"] == recipe.arguments["per_device_train_batch_size"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"learning rate: {recipe.arguments['learning_rate']}" in card and "tilt=0.5" in card
    assert "learning rate schedule: constant_with_warmup, warm-up 5% of the steps" in card
    assert f"weights averaged over the steps after: {recipe.arguments['weight_averaging_start']:g} of training" in card
    for key in ("learning_rate", "tilt", "normalization", "sampling_rate", "max_length", "weight_averaging_start"):
        assert f"  {key}=" in caplog.text  # every choice is logged
    # The recipe's schedule too (here --max_steps, given, wins over it in the Trainer).
    assert f"  num_train_epochs={recipe.arguments['num_train_epochs']} (the fsdd recipe's)" in caplog.text


def test_the_data_summary_counts_only_the_clips_max_train_samples_keeps(tmp_path, caplog):
    import logging

    data = write_synthetic(tmp_path, 8000)
    with caplog.at_level(logging.INFO, logger="train"):
        train_script.main(["--train_file", data["train"], "--output_dir", str(tmp_path / "out"), "--config_name",
                           "tiny", "--max_train_samples", "12", "--max_steps", "1", *QUIET])
    # what sizes the window and the number of epochs is the data the run trains on
    assert "12 of 12 clips read; sampling rates: 8000 Hz x 12" in caplog.text


def test_flags_override_the_choices_made_from_the_data(tmp_path, caplog):
    import logging

    data = write_synthetic(tmp_path, 8000)
    with caplog.at_level(logging.INFO, logger="train"):
        train_script.main(["--train_file", data["train"], "--output_dir", str(tmp_path / "out"), "--config_name",
                           "tiny", "--config_overrides", "max_length=64", "--learning_rate", "1e-3", "--tilt", "0",
                           "--max_steps", "1", *QUIET])
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["sampling_rate"] == 8000 and config["max_length"] == 64  # the rate from the data, the window given
    card = (tmp_path / "out" / "README.md").read_text()
    assert "learning rate: 0.001" in card and "tilt=0" in card and "speed=0.1" in card
    assert "learning_rate: given on the command line" in caplog.text


@pytest.mark.parametrize("recipe", ["fsdd", "demo", "fsdd_per_clip", "fsdd_v1"])  # audioset: test_recipe_audioset.py
def test_each_shipped_recipe_parses_and_trains_a_few_steps(recipe, fsdd_small, tmp_path):
    from meamtm.training.recipes import available_recipes, load_recipe

    assert recipe in available_recipes()
    arguments = load_recipe(recipe).arguments
    args = train_script.parse_arguments(["--recipe", recipe])
    assert args.model.config_overrides == arguments["config_overrides"] and args.data.speed == arguments["speed"]
    assert args.training.num_train_epochs == arguments["num_train_epochs"]
    # The recipe as written, on a little of FSDD, for two steps of a tiny model (flags win over the recipe).
    metrics = train_script.main(["--recipe", recipe, "--train_file", fsdd_small["train"], "--eval_file",
                                 fsdd_small["eval"], "--output_dir", str(tmp_path), "--config_name", "tiny",
                                 "--max_steps", "2", "--per_device_train_batch_size", "8", "--eval_strategy", "no",
                                 *QUIET])
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["num_hidden_layers"] == 2 and config["sampling_rate"] == 8000
    recipe_overrides = dict(item.split("=") for item in arguments["config_overrides"].split(","))
    for key in ("max_length", "hidden_size", "normalization", "padding_mode"):
        if key in recipe_overrides:
            assert str(config[key]) == recipe_overrides[key]
    assert 0 <= metrics["eval_accuracy"] <= 1
    assert f"recipe: {recipe}" in (tmp_path / "README.md").read_text()


def test_recipe_errors_name_the_recipe(tmp_path):
    with pytest.raises(ValueError, match=r"--recipe 'nope' is neither a shipped recipe \(\['audioset', 'demo', 'fsdd', 'fsdd_per_clip', 'fsdd_v1'\]\)"):
        train_script.parse_arguments(["--recipe", "nope"])
    (tmp_path / "bad.json").write_text(json.dumps({"optimiser": {"learning_rat": 1e-3}}))
    with pytest.raises(ValueError, match=r"sets \['learning_rat'\], which are not scripts/train.py arguments"):
        train_script.parse_arguments(["--recipe", str(tmp_path / "bad.json")])
    (tmp_path / "odd.json").write_text(json.dumps({"optimizer": {}}))
    with pytest.raises(ValueError, match=r"unknown keys \['optimizer'\]"):
        train_script.parse_arguments(["--recipe", str(tmp_path / "odd.json")])


def test_longest_padding_mode_run_groups_clips_by_length(fsdd_small, tmp_path):
    args = run_args(fsdd_small, tmp_path, "--max_steps", "3", "--per_device_train_batch_size", "8",
                    "--eval_strategy", "no", "--train_sampling_strategy", "group_by_length")
    args[args.index("--config_overrides") + 1] += ",padding_mode=longest"
    metrics = train_script.main(args)
    assert json.loads((tmp_path / "config.json").read_text())["padding_mode"] == "longest"
    assert json.loads((tmp_path / "trainer_state.json").read_text())["global_step"] == 3
    assert 0 <= metrics["eval_accuracy"] <= 1
    assert "Padding mode: `longest`" in (tmp_path / "README.md").read_text()
