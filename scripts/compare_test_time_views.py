#!/usr/bin/env python
"""Which test-time views suit trained classifiers: each model's accuracy under several sets of views, from one
pass per distinct view.

    python scripts/compare_test_time_views.py --runs_dir ablation-runs/tempo0.25 --folds_dir fsdd-folds \
        --view_sets "test_time_max_warp=0.1,test_time_max_shift=6" \
                    "test_time_max_warp=0.1,test_time_max_shift=6,test_time_max_tempo=0.2" \
        --results results/test_time_views_loso
    python scripts/compare_test_time_views.py --models run-a run-b --eval_dir ../shared/data/fsdd/test \
        --view_sets "" "test_time_max_tempo=0.2" --results results/test_time_views_split

The models are an ablation's runs of one variant (`--runs_dir`, laid out `<fold>/seed<N>`), each evaluated on
its fold's `--folds_dir/<fold>/test.csv`, or `--models` evaluated on one `--eval_dir` / `--eval_file`. A view set
is a comma-separated list of the config's test-time fields (`test_time_max_warp`, `test_time_warps`,
`test_time_max_shift`, `test_time_shifts`, `test_time_max_tempo`, `test_time_tempos`; "" is the plain model),
checked as the config checks them, and may trim silence (`trim_silence_db`, `trim_silence_margin`: off unless the set
says). Every distinct (trim, shift, warp, tempo) view of a model runs once over the clips; a
set's prediction is the mean of its views' class probabilities, as the model averages them with those settings.
Single-label classifiers. Writes each run's accuracy per set (JSON) and a table (Markdown): per fold (or eval set)
the mean over the runs with the lowest and highest, the mean over folds, and how many runs each set makes better
or worse than the first set.
"""

import logging
import re
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_model import labels_of_model  # noqa: E402  (scripts/evaluate_model.py)
from meamtm.training.collate import AudioCollator, AudioTransform, prepare_dataset  # noqa: E402
from meamtm.training.data import check_columns, check_labels, class_names_of, load_splits  # noqa: E402
from meamtm.training.results import current_date, machine_description, write_result_file  # noqa: E402
from meamtm.training.trainer import checked_test_time_settings, load_model, test_time_text  # noqa: E402


logger = logging.getLogger("compare_test_time_views")
FIELDS = ("test_time_max_warp", "test_time_warps", "test_time_max_shift", "test_time_shifts", "test_time_max_tempo",
          "test_time_tempos")
# What a set may also say about the clips each view hears: silence trimmed in evaluation (`trim_silence_db`).
TRIM_FIELDS = ("trim_silence_db", "trim_silence_margin")


@dataclass
class ViewArguments:
    view_sets: list[str] = field(metadata={"help": 'Sets of test-time fields, e.g. "test_time_max_warp=0.1,'
                                                   'test_time_max_shift=6"; "" is the plain model.'})
    results: str = field(metadata={"help": "Result file stem: writes STEM.json and STEM.md."})
    runs_dir: str | None = field(default=None, metadata={"help": "An ablation variant's runs: <fold>/seed<N>."})
    folds_dir: str | None = field(default=None, metadata={"help": "scripts/fsdd_folds.py's folder: <fold>/test.csv."})
    models: list[str] = field(default_factory=list, metadata={"help": "Model folders, evaluated on one eval set."})
    eval_dir: str | None = field(default=None, metadata={"help": "audiofolder of labelled clips, with --models."})
    eval_file: str | None = field(
        default=None, metadata={"help": "CSV/JSON metadata of labelled clips, with --models."}
    )
    batch_size: int = field(default=64, metadata={"help": "Clips per forward pass."})
    threads: int | None = field(default=None, metadata={"help": "torch threads (torch's default otherwise)."})


def runs_of(args: ViewArguments) -> list[tuple[str, str, dict]]:
    """(group, model folder, load_splits arguments) per run: a fold and its test clips, or the one eval set."""
    if bool(args.runs_dir) == bool(args.models):
        raise ValueError(f"Give --runs_dir (with --folds_dir) or --models, not both or neither: got "
                         f"--runs_dir={args.runs_dir!r}, --models={args.models!r}.")
    if args.models:
        if bool(args.eval_dir) == bool(args.eval_file):
            raise ValueError(f"--models needs exactly one of --eval_dir and --eval_file, got {args.eval_dir!r} and "
                             f"{args.eval_file!r}.")
        source = dict(train_dir=args.eval_dir) if args.eval_dir else dict(train_file=args.eval_file)
        return [(Path(args.eval_dir or args.eval_file).name, model, source) for model in args.models]
    if not args.folds_dir:
        raise ValueError("--runs_dir needs --folds_dir, the folder of <fold>/test.csv (scripts/fsdd_folds.py).")
    runs = sorted(path.parent for path in Path(args.runs_dir).glob("*/seed*/config.json"))
    if not runs:
        raise ValueError(f"No runs in {args.runs_dir}: expected <fold>/seed<N>/config.json (scripts/ablation.py).")
    return [(run.parent.name, str(run), dict(train_file=str(Path(args.folds_dir, run.parent.name, "test.csv"))))
            for run in runs]


def config_with(config, text: str):
    """A copy of `config` with a view set's test-time fields and silence trimming (the others off, the margin the
    model's), checked as the config checks them."""
    values, trim = {}, dict(trim_silence_db=0.0, trim_silence_margin=config.trim_silence_margin)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in FIELDS + TRIM_FIELDS or not re.fullmatch(r"-?[0-9.]+", value):
            raise ValueError(f"View set {text!r}: {item!r} is not one of {', '.join(FIELDS + TRIM_FIELDS)} set to a "
                             "number.")
        if name in TRIM_FIELDS:
            trim[name] = float(value)
        else:
            values[name] = int(value) if name.endswith("s") or name == "test_time_max_shift" else float(value)
    off = dict(test_time_max_warp=0.0, test_time_max_shift=0, test_time_max_tempo=0.0)
    return type(config)(**{**config.to_dict(), **off, **trim, **checked_test_time_settings(config, **values)})


def views_of(config) -> list[tuple[float, float, int, float, float]]:
    """The (trim dB, trim margin, shift, warp, tempo) views an evaluating classifier with `config` averages over,
    every combination of the last three."""
    trim = (float(config.trim_silence_db), float(config.trim_silence_margin) if config.trim_silence_db else 0.0)
    return [(*trim, shift, warp, tempo) for shift in config.test_time_frame_shifts or [0]
            for warp in config.test_time_warp_factors or [1.0] for tempo in config.test_time_tempo_factors or [1.0]]


def view_probabilities(model, batches: list[dict], views: set) -> tuple[dict, torch.Tensor]:
    """{view: (clips, labels) class probabilities} over the batches, one pass per view; the clips' labels."""
    probabilities = {view: [] for view in views}
    labels = []
    with torch.no_grad():
        for batch in batches:
            labels.append(batch["labels"])
            for trim_db, margin, shift, warp, tempo in views:
                # The model trims by its config, in evaluation whatever `trim_silence_in_training` says.
                model.config.trim_silence_db = trim_db
                if trim_db:
                    model.config.trim_silence_margin = margin
                output = model.meamtm(batch["input_values"], attention_mask=batch["attention_mask"],
                                      filter_bank_warp=warp, frame_shift=shift, tempo=tempo)
                probabilities[trim_db, margin, shift, warp, tempo].append(
                    model.classifier(output.pooler_output).softmax(-1))
    return {view: torch.cat(parts) for view, parts in probabilities.items()}, torch.cat(labels)


def evaluate_run(model_dir: str, source: dict, view_sets: list[str], batch_size: int) -> dict[str, float]:
    """{view set: accuracy} of one model on its clips."""
    labels = labels_of_model(model_dir)
    model, extractor = load_model(model_dir, labels)
    model.eval()
    if model.config.problem_type not in (None, "single_label_classification"):
        raise ValueError(f"{model_dir} is a {model.config.problem_type} model; this script compares single-label "
                         "classifiers' accuracy.")
    clips = load_splits(**source)["train"]
    check_columns(clips, "audio", "label", where=f"the clips of {model_dir}")
    check_labels(clips, "label", labels, where=f"the clips of {model_dir}")
    transform = AudioTransform("audio", "label", labels, extractor.sampling_rate, extractor.num_samples, train=False,
                               column_class_names=class_names_of(clips, "label"),
                               pad_to_window=model.config.padding_mode == "max_length")
    dataset, collate = prepare_dataset(clips, transform), AudioCollator()
    batches = [collate([dataset[index] for index in range(start, min(start + batch_size, len(dataset)))])
               for start in range(0, len(dataset), batch_size)]
    sets = {text: views_of(config_with(model.config, text)) for text in view_sets}
    probabilities, targets = view_probabilities(model, batches, {view for views in sets.values() for view in views})
    return {text: float((torch.stack([probabilities[view] for view in views]).mean(0).argmax(-1) == targets)
                        .float().mean()) for text, views in sets.items()}


def table_of(args: ViewArguments, runs: list[dict], sizes: dict[str, int]) -> tuple[dict, str]:
    """Per set: each group's mean over its runs and the mean over groups; runs better / worse than the first set."""
    groups = list(dict.fromkeys(run["group"] for run in runs))
    first = args.view_sets[0]
    summary, lines = {}, []
    header = ["view set", "views", *groups, "mean", f"runs better / worse than `{first or 'plain'}`"]
    lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for text in args.view_sets:
        cells, means = [], {}
        for group in groups:
            scores = [run["accuracy"][text] * 100 for run in runs if run["group"] == group]
            means[group] = sum(scores) / len(scores)
            spread = f" ({min(scores):.1f}-{max(scores):.1f})" if len(scores) > 1 else ""
            cells.append(f"{means[group]:.1f}%{spread}")
        mean = sum(means.values()) / len(means)
        better = sum(run["accuracy"][text] > run["accuracy"][first] for run in runs)
        worse = sum(run["accuracy"][text] < run["accuracy"][first] for run in runs)
        summary[text] = {**means, "mean": mean, "better": better, "worse": worse, "views": sizes[text]}
        row = [f"`{text or 'plain'}`", str(sizes[text]), *cells, f"{mean:.2f}%", f"{better} / {worse}"]
        lines.append("| " + " | ".join(row) + " |")
    return summary, "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(ViewArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not args.view_sets:
        raise ValueError('Give at least one --view_sets entry ("" is the plain model).')
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = []
    for group, model_dir, source in runs_of(args):
        accuracy = evaluate_run(model_dir, source, args.view_sets, args.batch_size)
        runs.append(dict(group=group, model=model_dir, accuracy=accuracy))
        logger.info(f"{model_dir}: " + "; ".join(f"{text or 'plain'} {value:.3f}" for text, value in accuracy.items()))
    config = load_model(runs[0]["model"], labels_of_model(runs[0]["model"]))[0].config
    sets = {text: config_with(config, text) for text in args.view_sets}
    summary, table = table_of(args, runs, {text: len(views_of(checked)) for text, checked in sets.items()})
    descriptions = {text: test_time_text(checked, off="plain") + (
        f"; silence trimmed at {checked.trim_silence_db:g} dB ({checked.trim_silence_margin:g} s kept each side)"
        if checked.trim_silence_db else "") for text, checked in sets.items()}
    command = shlex.join(["python", "scripts/compare_test_time_views.py", *(sys.argv[1:] if argv is None else argv)])
    markdown = (f"# Test-time views compared on {len(runs)} trained model(s)\n\n"
                f"{machine_description()}, {current_date()}; `{command}`\n\n{table}\n")
    payload = dict(settings=asdict(args), machine=machine_description(), date=current_date(), summary=summary,
                   descriptions=descriptions, runs=runs)
    write_result_file(Path(args.results).with_suffix(".json"), payload, markdown)
    print(table)
    return payload


if __name__ == "__main__":
    main()
