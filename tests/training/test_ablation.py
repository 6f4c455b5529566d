"""scripts/ablation.py: each run is train.py with the recipe, the fold's CSVs and the variant last; finished runs
are read back, not trained again; the tables give every fold and the mean per variant."""

import json
import sys

import pytest

from ..conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import ablation  # noqa: E402
import train  # noqa: E402
from meamtm.training.recipes import load_recipe  # noqa: E402


@pytest.fixture
def folds(tmp_path):
    for fold in ("george", "jackson"):
        (tmp_path / "folds" / fold).mkdir(parents=True)
        for split in ("train", "test"):
            (tmp_path / "folds" / fold / f"{split}.csv").write_text("audio,label\n")
    return tmp_path / "folds"


def arguments(tmp_path, folds, *extra):
    return [
        "--folds_dir", str(folds), "--output_dir", str(tmp_path / "runs"), "--results", str(tmp_path / "out" / "loso"),
        "--num_train_epochs", "3", *extra,
    ]


def test_a_run_is_the_recipe_with_the_fold_and_the_variant_last(tmp_path, folds):
    (args,) = ablation.HfArgumentParser(ablation.AblationArguments).parse_args_into_dataclasses(
        args=arguments(tmp_path, folds)
    )
    command = ablation.train_arguments(args, ablation.Run("vtlp+per_clip", "george", 2))
    assert command[:2] == ["--recipe", "fsdd"]
    parsed = train.parse_arguments(command)
    data_args, model_args, training_args = parsed.data, parsed.model, parsed.training
    assert data_args.train_file == str(folds / "george" / "train.csv")
    assert data_args.eval_file == str(folds / "george" / "test.csv")
    recipe = load_recipe("fsdd").arguments
    assert model_args.config_overrides == recipe["config_overrides"] + ",vtlp_max_warp=0.1,normalization=per_clip"
    assert training_args.learning_rate == recipe["learning_rate"] and data_args.tilt == recipe["tilt"]
    assert training_args.num_train_epochs == 3 and training_args.seed == 2
    reverb = train.parse_arguments(ablation.train_arguments(args, ablation.Run("reverb", "george", 0)))
    assert reverb.data.reverb_s == 0.4 and reverb.data.gain_db == recipe["gain_db"]  # the recipe's augmentation stays


def test_finished_runs_are_read_and_tabled_per_fold_and_variant(tmp_path, folds):
    accuracies = {("baseline", "george"): [0.5, 0.7], ("baseline", "jackson"): [0.8, 0.8],
                  ("vtlp", "george"): [0.9, 0.7], ("vtlp", "jackson"): [0.85, 0.95]}
    for (variant, fold), scores in accuracies.items():
        for seed, accuracy in enumerate(scores):
            folder = tmp_path / "runs" / variant / fold / f"seed{seed}"
            folder.mkdir(parents=True)
            (folder / "eval_results.json").write_text(json.dumps({"eval_accuracy": accuracy}))
    report = ablation.main(arguments(tmp_path, folds, "--variants", "baseline", "vtlp", "--seeds", "0", "1"))
    assert len(report["runs"]) == 8
    assert report["summary"]["baseline"] == pytest.approx({"george": 0.6, "jackson": 0.8, "mean": 0.7})
    assert report["summary"]["vtlp"] == pytest.approx({"george": 0.8, "jackson": 0.9, "mean": 0.85})
    assert json.loads((tmp_path / "out" / "loso.json").read_text())["summary"] == report["summary"]
    table = (tmp_path / "out" / "loso.md").read_text()
    assert "| vtlp | `vtlp_max_warp=0.1` | 80.0% (70.0-90.0, 2 seeds) | 90.0% (85.0-95.0, 2 seeds) | 85.0% |" in table
    assert "3 epochs" in table and "seeds [0, 1]" in table


def test_unknown_variants_and_missing_folds_are_refused(tmp_path, folds):
    with pytest.raises(ValueError, match=r"Unknown --variants \['louder'\]"):
        ablation.main(arguments(tmp_path, folds, "--variants", "louder"))
    with pytest.raises(ValueError, match=r"No fold CSVs for \['theo'\].*fsdd_folds.py"):
        ablation.main(arguments(tmp_path, folds, "--folds", "theo"))


def test_without_training_only_finished_runs_are_tabled(tmp_path, folds):
    folder = tmp_path / "runs" / "baseline" / "george" / "seed0"
    folder.mkdir(parents=True)
    (folder / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.5}))
    report = ablation.main(arguments(tmp_path, folds, "--variants", "baseline", "vtlp", "--train_missing", "false"))
    assert [(r["variant"], r["fold"]) for r in report["runs"]] == [("baseline", "george")]
    assert report["summary"] == {"baseline": {"george": 0.5, "mean": 0.5}}
    assert "| baseline | recipe | 50.0% | - | 50.0% (1 of 2 folds) |" in (tmp_path / "out" / "loso.md").read_text()


def test_another_recipe_gives_every_run_its_settings_and_epochs(tmp_path, folds):
    (args,) = ablation.HfArgumentParser(ablation.AblationArguments).parse_args_into_dataclasses(
        args=["--folds_dir", str(folds), "--output_dir", str(tmp_path / "runs"), "--recipe", "fsdd_v1"]
    )
    v1 = load_recipe("fsdd_v1").arguments
    assert args.num_train_epochs == v1["num_train_epochs"]
    parsed = train.parse_arguments(ablation.train_arguments(args, ablation.Run("per_clip", "jackson", 0)))
    assert parsed.model.config_overrides == v1["config_overrides"] + ",normalization=per_clip"
    assert parsed.training.num_train_epochs == v1["num_train_epochs"]


def test_recipe_none_runs_on_data_arguments_only(tmp_path, folds):
    (args,) = ablation.HfArgumentParser(ablation.AblationArguments).parse_args_into_dataclasses(
        args=["--folds_dir", str(folds), "--output_dir", str(tmp_path / "runs"), "--recipe", "none"]
    )
    assert args.num_train_epochs == load_recipe("fsdd").arguments["num_train_epochs"]  # what a data-only run takes
    baseline = ablation.train_arguments(args, ablation.Run("baseline", "george", 0))
    assert "--recipe" not in baseline and "--config_overrides" not in baseline
    parsed = train.parse_arguments(baseline)
    assert not parsed.recipe.recipe and train.uses_data_defaults(parsed)
    envelope = train.parse_arguments(ablation.train_arguments(args, ablation.Run("envelope8", "george", 0)))
    assert envelope.model.config_overrides == "normalization=per_clip_envelope,envelope_coefficients=8"
    assert "with data arguments only" in ablation.markdown_of(args, {}, [])
    summary = {"baseline": {"george": 0.6, "jackson": 0.8, "mean": 0.7}}
    results = [dict(variant="baseline", fold=fold, seed=0, accuracy=summary["baseline"][fold]) for fold in args.folds]
    assert "| baseline | data arguments only |" in ablation.markdown_of(args, summary, results)
    entry = ablation.readme_of(args, summary, dict(machine="m", date="d"))
    assert entry["title"].endswith(", data arguments only") and entry["order"] == 51
    assert "baseline = data arguments only" in entry["notes"][0] and "Data arguments only" in entry["notes"][0]


def test_a_search_can_be_kept_out_of_the_readme(tmp_path, folds):
    folder = tmp_path / "runs" / "baseline" / "george" / "seed0"
    folder.mkdir(parents=True)
    (folder / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.5}))
    common = ("--variants", "baseline", "--folds", "george", "--train_missing", "false")
    assert "readme" in ablation.main(arguments(tmp_path, folds, *common))
    report = ablation.main(arguments(tmp_path, folds, *common, "--readme", "false"))
    assert "readme" not in report and "readme" not in json.loads((tmp_path / "out" / "loso.json").read_text())


def test_a_readme_note_is_added_to_the_table_notes(tmp_path, folds):
    folder = tmp_path / "runs" / "baseline" / "george" / "seed0"
    folder.mkdir(parents=True)
    (folder / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.5}))
    report = ablation.main(arguments(tmp_path, folds, "--variants", "baseline", "--folds", "george",
                                     "--train_missing", "false", "--readme_note", "Compare with 0.1."))
    assert report["readme"]["notes"][-1] == "Compare with 0.1."


@pytest.mark.parametrize("name", sorted(ablation.VARIANTS))
def test_every_shipped_variant_is_a_valid_config_on_the_recipe_and_valid_train_flags(name, tmp_path):
    from meamtm.training.trainer import build_config

    overrides, flags = ablation.VARIANTS[name]
    recipe = load_recipe("fsdd").arguments
    build_config(recipe["config_name"], ",".join(filter(None, [recipe["config_overrides"], overrides])))
    known = {f"--{action.dest}" for action in train.HfArgumentParser(train.ARGUMENT_CLASSES)._actions}
    assert {flag for flag in flags if flag.startswith("--")} <= known


def test_a_variants_file_with_unknown_keys_is_refused(tmp_path):
    path = tmp_path / "variants.json"
    path.write_text(json.dumps({"wide": {"config_overrides": "hidden_size=384", "flag": ["--seed", "1"]}}))
    with pytest.raises(ValueError, match=r"Variant 'wide' .* unknown keys \['flag'\]"):
        ablation.load_variants(path)
    path.write_text(json.dumps({"wide": {"config_overrides": "hidden_size=384", "flags": ["--seed", "1"]}}))
    assert ablation.load_variants(path) == {"wide": ("hidden_size=384", ["--seed", "1"])}


def test_a_title_and_a_note_make_the_result_files_self_contained(tmp_path, folds):
    folder = tmp_path / "runs" / "baseline" / "george" / "seed0"
    folder.mkdir(parents=True)
    (folder / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.5}))
    report = ablation.main(arguments(
        tmp_path, folds, "--variants", "baseline", "--folds", "george", "--train_missing", "false", "--readme", "false",
        "--parallel", "2", "--title", "The plain recipe.", "--note", "Half right.", "--date", "1999-12-31",
    ))
    assert report["title"] == "The plain recipe." and report["note"] == "Half right." and report["date"] == "1999-12-31"
    assert "title" not in report["settings"] and "train_missing" in report["settings"]
    text = (tmp_path / "out" / "loso.md").read_text()
    first, table_and_note = text.split("\n\n", 1)
    command = first.split("To rerun: `")[1].removesuffix("`.")
    assert first.startswith("The plain recipe, 1999-12-31, 2 runs at a time at 1 thread each.")
    assert table_and_note.rstrip().endswith("| 50.0% |\n\nHalf right.")
    words = command.split()
    assert words[:2] == ["python", "scripts/ablation.py"] and "--train_missing" not in words and "--title" not in words
    (args,) = ablation.HfArgumentParser(ablation.AblationArguments).parse_args_into_dataclasses(args=words[2:])
    assert (args.folds, args.variants, args.num_train_epochs, args.readme, args.parallel) == (
        ["george"], ["baseline"], 3, False, 2)
    paths = (args.folds_dir, args.output_dir, args.results)
    assert paths == (str(folds), str(tmp_path / "runs"), str(tmp_path / "out" / "loso"))
