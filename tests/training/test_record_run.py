"""scripts/record_run.py: a finished training folder becomes a result file with a README table."""

import importlib.util
import json

import pytest

from meamtm import MeamtmForAudioClassification

from ..conftest import REPO, tiny_config


spec = importlib.util.spec_from_file_location("record_run", REPO / "scripts" / "record_run.py")
record_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(record_run)


@pytest.fixture
def finished_run(tmp_path):
    folder = tmp_path / "run-a"
    model = MeamtmForAudioClassification(tiny_config(num_labels=3))
    model.save_pretrained(folder)
    (folder / "all_results.json").write_text(json.dumps({"eval_accuracy": 0.925, "eval_macro_f1": 0.9, "train_runtime": 61.2}))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 40, "epoch": 4.0}))
    return folder, model.num_parameters()


def test_runs_are_appended_with_their_numbers_and_a_readme_table(tmp_path, finished_run):
    folder, parameters = finished_run
    results = tmp_path / "results" / "fsdd.json"
    common = ["--results_file", str(results), "--title", "FSDD", "--command", "make run"]
    first = record_run.main(["--output_dir", str(folder), *common])
    record_run.main(["--output_dir", str(folder), "--label", "again", *common])
    assert first["eval_accuracy"] == 0.925 and first["parameters"] == parameters and first["global_step"] == 40
    payload = json.loads(results.read_text())
    assert [run["label"] for run in payload["runs"]] == ["run-a", "again"]
    table = payload["readme"]
    assert table["rows"][0][2] == "92.5 %" and table["rows"][0][3] == "90.0 %" and table["rows"][0][4] == "61 s" and len(table["rows"]) == 2
    assert table["command"] == "make run" and "cores" in table["machine"]
    assert results.with_suffix(".md").read_text().startswith("# FSDD")


def test_a_run_can_be_kept_out_of_the_readme(tmp_path, finished_run):
    folder, _ = finished_run
    results = tmp_path / "fsdd_option.json"
    common = ["--output_dir", str(folder), "--results_file", str(results), "--title", "FSDD", "--command", "c"]
    record_run.main([*common, "--readme", "false", "--notes", "Not the recipe.", "Seed 0."])
    payload = json.loads(results.read_text())
    assert "readme" not in payload and payload["table"]["rows"][0][2] == "92.5 %"
    assert payload["table"]["notes"] == ["Not the recipe.", "Seed 0."]
    assert results.with_suffix(".md").read_text().startswith("# FSDD")
    record_run.main(common)  # back into the README, both runs listed, the notes kept
    payload = json.loads(results.read_text())
    assert "table" not in payload and len(payload["readme"]["rows"]) == 2
    assert payload["readme"]["notes"] == ["Not the recipe.", "Seed 0."]


def test_a_folder_without_results_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="finished scripts/train.py run"):
        record_run.main(["--output_dir", str(tmp_path), "--results_file", str(tmp_path / "r.json"),
                         "--title", "t", "--command", "c"])
