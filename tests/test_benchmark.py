"""scripts/benchmark.py in --quick mode: a complete, well-formed report (speed is never asserted)."""

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO


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
    tables = [block.splitlines() for block in markdown.split("\n\n") if block.startswith("|")]
    assert len(tables) == 5
    for table in tables:  # every row has the header's number of cells, and there are data rows
        assert len(table) > 2 and {line.count("|") for line in table} == {table[0].count("|")}
    assert "nan" not in markdown.lower()


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
        assert set(case["runs"]) == {"meamtm_longest", "ast"} and case["same_top1_as_ast"] == 1.0
        assert all(row["clips_per_second"] > 0 and row["peak_bytes"] > 0 for row in case["runs"].values())
    training = report["varlen_training"]["cases"]
    assert set(training) == {"short", "long"}
    for case in training.values():
        assert 0 < case["real_over_padded_audio"] <= case["longest_over_window"] <= 1
        assert case["time_ratio"] > 0 and case["memory_ratio"] > 0
    markdown = (tmp_path / "benchmark.md").read_text()
    assert "## Variable length, inference" in markdown and "## Variable length, training step" in markdown
    assert "nan" not in markdown.lower()
