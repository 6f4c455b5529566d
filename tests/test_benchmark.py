"""scripts/benchmark.py in --quick mode: a complete, well-formed report (speed is never asserted)."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from .conftest import REPO


spec = importlib.util.spec_from_file_location("benchmark_script", REPO / "scripts" / "benchmark.py")
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)


@pytest.mark.slow
def test_quick_benchmark_writes_a_complete_report(tmp_path, fsdd_dir):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [
        sys.executable, str(REPO / "scripts" / "benchmark.py"), "--quick", "--output_dir", str(tmp_path),
        "--fsdd_dir", str(fsdd_dir), "--storage_clips", "8",
    ]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]

    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert report["settings"]["device"] == "cpu" and report["settings"]["size"] == "tiny"
    frontend = report["frontend"]["runs"]
    assert set(frontend) >= {"meamtm_frontend", "ast_numpy"}
    assert report["frontend"]["max_abs_difference_to_ast"] < 1e-4  # both sides computed the same features
    training = report["training"]["runs"]
    assert set(training) == {"meamtm", "meamtm_patchout", "ast"}
    assert training["meamtm_patchout"]["patch_tokens"] < training["meamtm"]["patch_tokens"]
    for row in training.values():
        assert row["ms_per_step"] > 0 and row["peak_bytes"] > 0 and row["attn_implementation"] == "sdpa"
        assert row["peak_bytes_min"] <= row["peak_bytes"] <= row["peak_bytes_max"]  # a median of fresh processes
        assert "mmap threshold fixed" in row["measure"]  # glibc here: peak RSS follows live memory
    storage = report["storage"]
    assert storage["clips"] == 8 and all(row["bytes"] > 0 for row in storage["runs"].values())
    inference = report["inference"]
    assert set(inference["runs"]) == {"meamtm", "ast"}
    assert inference["same_top1_as_ast"] == 1.0  # same weights, same features: same predictions
    assert {goal["goal"].split(" vs")[0].split(":")[0] for goal in report["goals"]} >= {
        "frontend", "training throughput with patchout", "peak memory with patchout", "storage", "pipeline inference",
    }

    markdown = (tmp_path / "benchmark.md").read_text()
    assert finished.stdout.strip() == markdown.strip()
    for heading in ("## Frontend", "## Training step", "## Storage", "## Inference", "## Goals"):
        assert heading in markdown
    assert len(well_formed_tables(markdown)) == 5
    assert "nan" not in markdown.lower()


def well_formed_tables(markdown: str) -> list[list[str]]:
    """The Markdown tables of a report, each checked to have data rows with the header's number of cells."""
    tables = [block.splitlines() for block in markdown.split("\n\n") if block.startswith("|")]
    for table in tables:
        assert len(table) > 2 and {line.count("|") for line in table} == {table[0].count("|")}
    return tables


@pytest.mark.slow
def test_quick_variable_length_sections_write_their_rows(tmp_path):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [
        sys.executable, str(REPO / "scripts" / "benchmark.py"), "--quick", "--output_dir", str(tmp_path),
        "--sections", "varlen_inference", "varlen_training",
    ]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert "frontend" not in report and "training" not in report  # only the sections asked for
    cases = report["varlen_inference"]["cases"]
    assert set(cases) == {"1s", "5s", "10s"}
    for case in cases.values():
        assert set(case["runs"]) == {"meamtm_longest", "meamtm_max_length", "ast"} and case["same_top1_as_ast"] == 1.0
        assert 0 <= case["longest_same_top1_as_max_length"] <= 1
        for row in case["runs"].values():
            assert row["clips_per_second"] > 0 and row["peak_bytes"] > 0 and row["spread"] >= 0
            assert len(row["seconds_per_batch_rounds"]) == report["settings"]["repeats"]
        assert case["runs"]["meamtm_max_length"]["speedup_vs_max_length"] == 1.0
        assert case["runs"]["ast"]["speedup_vs_ast"] == 1.0
    training = report["varlen_training"]["cases"]
    assert set(training) == {"short", "long"}
    for case in training.values():
        assert 0 < case["real_over_padded_audio"] <= case["longest_over_window"] <= 1
        assert case["time_ratio"] > 0 and case["memory_ratio"] > 0
    epochs = report["varlen_training"]["epochs"]
    assert set(epochs) == {"short", "long"}
    for epoch in epochs.values():
        timed = report["settings"]["varlen_epoch_batches"]
        assert len(epoch["batches_timed"]) == timed and epoch["batches_in_epoch"] > timed
        assert 0 < epoch["real_over_padded_audio"] <= epoch["padded_to_longest_over_window"] <= 1
        assert 0 < epoch["epoch_real_over_padded_audio"] <= 1
        assert set(epoch["seconds"]) == set(epoch["mean_peak_bytes"]) == {"max_length", "longest"}
        assert all(len(peaks) == timed for peaks in epoch["peak_bytes_per_step"].values())
        assert epoch["time_ratio"] > 0 and epoch["memory_ratio"] > 0 and epoch["largest_memory_ratio"] > 0
    goals = [goal["goal"] for goal in report["goals"]]
    for expected in (
        "pipeline, longest vs AST, 1 s clips", "pipeline, longest vs AST, 5 s clips",
        "pipeline, longest vs max_length, 10 s clips",
        "training step time, longest / max_length, random batches of short",
        "training time, longest / max_length, one epoch of short clips grouped by length",
        "training mean peak memory per step, longest / max_length, one epoch of long clips grouped by length",
    ):
        assert sum(goal.startswith(expected) for goal in goals) == 1, expected
    markdown = (tmp_path / "benchmark.md").read_text()
    for heading in (
        "## Variable length, inference", "## Variable length, training step on one random batch",
        "## Variable length, training over one epoch grouped by length", "## Goals",
    ):
        assert heading in markdown
    assert len(well_formed_tables(markdown)) == 4
    assert "nan" not in markdown.lower()
    assert report["readme"]["notes"][0].startswith("10 s clips: the timed rounds spread by")


def test_an_epoch_is_sampled_in_length_grouped_batches():
    args = benchmark.BenchmarkArguments(train_batch_size=8, varlen_epoch_clips=400, varlen_epoch_batches=6)
    window = 16240
    batches, description = benchmark.epoch_batches("short", args, window)
    assert len(batches) == 6 and all(len(batch) == 8 for batch in batches)
    assert description["batches_in_epoch"] == 50 and description["batches_timed"][0] == 0
    assert description["batches_timed"][-1] == 49
    # LengthGroupedSampler's order: each batch sorted longest first, and the epoch's longest clip in batch 0.
    assert all((np.diff(batch) <= 0).all() for batch in batches)
    assert batches[0][0] == max(batch.max() for batch in batches)
    real = sum(batch.sum() for batch in batches) / (window * 6 * 8)
    assert description["real_over_padded_audio"] == pytest.approx(real)
    # Grouping pads each batch only a little past its own clips: far less than random batches of these clips.
    grouped = description["padded_to_longest_over_window"]
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(np.concatenate(batches)).reshape(6, 8)
    assert real <= grouped < shuffled.max(axis=1).mean() / window


def varlen_results(longest_per_second: float) -> dict:
    """The fields of a variable-length report that `goals_of` reads."""
    rows = {"meamtm_longest": longest_per_second, "meamtm_max_length": 1.0, "ast": 0.9}
    runs = {name: dict(speedup_vs_ast=value / 0.9, speedup_vs_max_length=value) for name, value in rows.items()}
    epoch = dict(real_over_padded_audio=0.5, batches_timed=[0, 5], batches_in_epoch=10, time_ratio=0.52,
                 memory_ratio=0.8)
    random_batch = dict(real_over_padded_audio=0.5, time_ratio=0.9, memory_ratio=1.0)
    return {
        "varlen_inference": {"cases": {"10s": dict(clip_seconds=10.0, runs=runs)}},
        "varlen_training": {"cases": {"short": random_batch}, "epochs": {"short": epoch}},
    }


@pytest.mark.parametrize("longest_per_second, met", [(1.0, True), (1.01, True), (0.99, False)])
def test_full_window_goal_holds_longest_to_max_length(longest_per_second, met):
    goals = benchmark.goals_of(benchmark.BenchmarkArguments(), varlen_results(longest_per_second))
    (full,) = [goal for goal in goals if goal["goal"].startswith("pipeline, longest vs max_length, 10 s clips")]
    assert full["target"] == ">= 1x" and full["met"] is met and full["measured"] == round(longest_per_second, 3)
    epoch = {goal["goal"].split(",")[0]: goal for goal in goals if "one epoch of short clips" in goal["goal"]}
    assert epoch["training time"]["met"] and not epoch["training mean peak memory per step"]["met"]  # 0.52, 0.8 vs 0.5
    assert "0.50 (real / padded audio" in epoch["training time"]["target"]


def test_the_readme_entry_reports_the_full_window_rounds_spread():
    args = benchmark.BenchmarkArguments(sections=["varlen_inference", "varlen_training"], name="benchmark_variable_length")
    report = varlen_results(1.0)
    for name, spread in (("meamtm_longest", 0.031), ("meamtm_max_length", 0.052), ("ast", 0.01)):
        report["varlen_inference"]["cases"]["10s"]["runs"][name]["spread"] = spread
    report["goals"] = benchmark.goals_of(args, report)
    entry = benchmark.readme_of(args, report)
    assert entry["notes"][0].startswith("10 s clips: the timed rounds spread by 3% (longest) and 5% (max_length)")
    assert [row[0] for row in entry["rows"]] == [goal["goal"] for goal in report["goals"]]


def test_the_readme_entry_of_a_gpu_run_names_its_device_and_dtype():
    args = benchmark.BenchmarkArguments(dtype="bfloat16", size="base", name="benchmark_cuda",
                                        sections=["frontend", "training", "inference"])
    args.device = "cuda"  # set after the checks, which want a CUDA device for it
    runs = {"meamtm_frontend": dict(ms_per_batch=2.5, speedup_vs_ast_numpy=218.7, max_abs_difference_to_ast=2.4e-7),
            "ast_kaldi_on_device": dict(ms_per_batch=22.5)}
    entry = benchmark.readme_of(args, {"goals": [], "frontend": dict(batch_size=32, clip_seconds=10.255, runs=runs)})
    assert entry["notes"][0] == (
        "Frontend, 32 clips of 10.26 s: MEAMTM 2.5 ms on cuda (219x ASTFeatureExtractor's numpy path on the CPU, "
        "9.0x torchaudio's Kaldi filter bank run clip by clip on the same cuda device, 22.5 ms); max abs difference "
        "to AST's features 2.4e-07."
    )
    assert entry["command"] == ("python scripts/benchmark.py --sections frontend training inference --device cuda "
                                "--dtype bfloat16 --size base --name benchmark_cuda")
    assert entry["title"].endswith("on a GPU (cuda, bfloat16, AST-base geometry)") and entry["order"] == 25
