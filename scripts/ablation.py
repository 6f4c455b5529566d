#!/usr/bin/env python
"""Leave-one-speaker-out ablation: the FSDD recipe per fold and variant, through `scripts/train.py`.

    python scripts/fsdd_folds.py --output_dir fsdd-folds
    python scripts/ablation.py --folds george jackson --variants baseline vtlp per_clip vtlp+per_clip \
        --num_train_epochs 20 --parallel 2

Every run is `scripts/train.py --recipe fsdd` (`meamtm/training/recipes/fsdd.json`) on one fold's CSVs
(`scripts/fsdd_folds.py`: train on four speakers, test on all clips of the fifth), plus the variant's config
overrides and flags, which come last and win. Runs are separate processes (`--threads` torch threads each, at
most `--parallel` at once); a run whose folder already holds `eval_results.json` is read, not trained again,
so an interrupted ablation resumes. Every run, and each variant's per-fold and mean accuracy, go to
`<results>.json` and `<results>.md`, with the epochs and seeds they used; `--title` heads the table with the date
and the command that reruns it, `--note` follows it, and `--train_missing false --date D` rewrites both files later
from the finished runs.
"""

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train  # noqa: E402  (scripts/train.py)
from meamtm.training.recipes import load_recipe  # noqa: E402
from meamtm.training.results import current_date, machine_description, readme_table, write_result_file  # noqa: E402


DEFAULT_RECIPE = "fsdd"
# `--recipe none`: every run gets data arguments only, as a user's first run would (`defaults_from_data`).
NO_RECIPE = "none"


# name -> (config overrides added to the recipe's, extra train.py flags), from `ablation_variants.json` beside
# this script: `{"name": {"config_overrides": "key=value,...", "flags": ["--flag", "value"]}}`, either key optional.
VARIANTS_FILE = Path(__file__).resolve().parent / "ablation_variants.json"


def load_variants(path: Path = VARIANTS_FILE) -> dict[str, tuple[str, list[str]]]:
    """The variants file as `{name: (config overrides, flags)}`; unknown keys raise `ValueError` naming them."""
    variants = {}
    for name, entry in json.loads(path.read_text()).items():
        unknown = set(entry) - {"config_overrides", "flags"}
        if unknown:
            raise ValueError(f"Variant {name!r} in {path} has unknown keys {sorted(unknown)}: use config_overrides and flags.")
        variants[name] = (entry.get("config_overrides", ""), list(entry.get("flags", [])))
    return variants


VARIANTS = load_variants()


@dataclass
class AblationArguments:
    folds: list[str] = field(default_factory=lambda: ["george", "jackson"], metadata={"help": "Held-out speakers."})
    variants: list[str] = field(
        default_factory=lambda: ["baseline", "vtlp", "per_clip", "vtlp+per_clip"],
        metadata={"help": f"Variants to run, of: {', '.join(VARIANTS)}."},
    )
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "Training seeds of every run."})
    recipe: str = field(
        default=DEFAULT_RECIPE,
        metadata={"help": "The recipe every variant starts from (a shipped name or a file), or 'none': data arguments "
                          "only, so each run takes the defaults a fresh model derives from its data."},
    )
    num_train_epochs: float | None = field(
        default=None, metadata={"help": "Epochs of every run (default: the recipe's)."}
    )
    folds_dir: str = field(default="fsdd-folds", metadata={"help": "Output of scripts/fsdd_folds.py."})
    output_dir: str = field(default="ablation-runs", metadata={"help": "Each run's train.py output folder goes here."})
    results: str = field(default="results/ablation_loso", metadata={"help": "Writes <results>.json and .md."})
    parallel: int = field(default=1, metadata={"help": "Runs at once."})
    threads: int = field(default=1, metadata={"help": "OMP_NUM_THREADS of each run."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training clips."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N test clips."})
    readme: bool = field(
        default=True, metadata={"help": "Give the result file a README table (False for a search kept out of it)."}
    )
    readme_note: str | None = field(default=None, metadata={"help": "A sentence added to the README table's notes."})
    train_missing: bool = field(
        default=True, metadata={"help": "False: train nothing, table only the runs that have finished."}
    )
    title: str | None = field(
        default=None, metadata={"help": "What the search is, heading <results>.md with the date, the parallelism "
                                        "and the command that reruns it."}
    )
    note: str | None = field(
        default=None, metadata={"help": "What the runs show, kept in <results>.json and below the table in .md."}
    )
    date: str | None = field(
        default=None, metadata={"help": "When the runs were trained, YYYY-MM-DD (default: the current date)."}
    )

    def __post_init__(self):
        if self.num_train_epochs is None:
            self.num_train_epochs = recipe_arguments(self.recipe)["num_train_epochs"]
        unknown = [name for name in self.variants if name not in VARIANTS]
        if unknown:
            raise ValueError(f"Unknown --variants {unknown}: choose from {', '.join(VARIANTS)}.")
        missing = [fold for fold in self.folds if not (Path(self.folds_dir) / fold / "train.csv").is_file()]
        if missing:
            raise ValueError(
                f"No fold CSVs for {missing} in --folds_dir {self.folds_dir}: run "
                f"`python scripts/fsdd_folds.py --output_dir {self.folds_dir}` first."
            )
        if self.parallel < 1 or self.threads < 1:
            raise ValueError(f"--parallel {self.parallel} and --threads {self.threads} must be >= 1.")

    @property
    def data_only(self) -> bool:
        """`--recipe none`: every run on data arguments only."""
        return self.recipe == NO_RECIPE

    @property
    def plain_run(self) -> str:
        """What the `baseline` variant (no overrides, no flags) is."""
        return "data arguments only" if self.data_only else "the recipe"


@dataclass
class Run:
    variant: str
    fold: str
    seed: int

    def folder(self, args: AblationArguments) -> Path:
        return Path(args.output_dir) / self.variant / self.fold / f"seed{self.seed}"


def recipe_arguments(recipe: str) -> dict:
    """The recipe's `scripts/train.py` arguments; with `--recipe none`, the schedule a data-only run takes from
    the default recipe (`defaults_from_data`)."""
    return load_recipe(DEFAULT_RECIPE if recipe == NO_RECIPE else recipe).arguments


def train_arguments(args: AblationArguments, run: Run) -> list[str]:
    """The `scripts/train.py` command line of one run (the variant's settings come last and win)."""
    overrides, flags = VARIANTS[run.variant]
    fold = Path(args.folds_dir) / run.fold
    recipe_overrides = None if args.data_only else load_recipe(args.recipe).arguments.get("config_overrides")
    config_overrides = ",".join(filter(None, [recipe_overrides, overrides]))
    data = ["--train_file", str(fold / "train.csv"), "--eval_file", str(fold / "test.csv")]
    return [
        *train.experiment_command(
            data, run.folder(args), args.num_train_epochs, run.seed, recipe=None if args.data_only else args.recipe,
            config_overrides=config_overrides, max_train_samples=args.max_train_samples,
            max_eval_samples=args.max_eval_samples,
        ),
        "--eval_strategy", "no",
        "--disable_tqdm", "true",
        *flags,
    ]


def run_one(args: AblationArguments, run: Run) -> dict | None:
    """Train one (variant, fold, seed) in its own process, or read its finished result (None: not run)."""
    folder = run.folder(args)
    result_file = folder / "eval_results.json"
    if not result_file.is_file() and not args.train_missing:
        return None
    if not result_file.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
        start = time.monotonic()
        with open(folder / "train.log", "w") as log:
            subprocess.run(
                [sys.executable, str(Path(train.__file__)), *train_arguments(args, run)],
                env=env, stdout=log, stderr=subprocess.STDOUT, check=True,
            )
        (folder / "wall_seconds.txt").write_text(f"{time.monotonic() - start:.0f}\n")
    metrics = json.loads(result_file.read_text())
    training = folder / "train_results.json"
    wall = folder / "wall_seconds.txt"
    return dict(
        asdict(run),
        config_overrides=VARIANTS[run.variant][0],
        flags=" ".join(VARIANTS[run.variant][1]),
        accuracy=metrics["eval_accuracy"],
        train_seconds=json.loads(training.read_text()).get("train_runtime") if training.is_file() else None,
        wall_seconds=float(wall.read_text()) if wall.is_file() else None,
    )


def summary_of(args: AblationArguments, results: list[dict]) -> dict:
    """{variant: {fold: mean accuracy over seeds, "mean": mean over the folds it has}}."""
    summary = {}
    for variant in args.variants:
        folds = {}
        for fold in args.folds:
            scores = [r["accuracy"] for r in results if r["variant"] == variant and r["fold"] == fold]
            if scores:
                folds[fold] = sum(scores) / len(scores)
        if folds:
            summary[variant] = dict(folds, mean=sum(folds.values()) / len(folds))
    return summary


def cell_of(results: list[dict], variant: str, fold: str, mean: float) -> str:
    """A table cell: the mean over seeds, with the lowest and highest seed when there are several."""
    scores = [r["accuracy"] for r in results if r["variant"] == variant and r["fold"] == fold]
    if len(scores) < 2:
        return f"{100 * mean:.1f}%"
    return f"{100 * mean:.1f}% ({100 * min(scores):.1f}-{100 * max(scores):.1f}, {len(scores)} seeds)"


def rerun_command(args: AblationArguments) -> str:
    """The command line that trains (or resumes) these runs and writes these result files."""
    defaults = AblationArguments.__dataclass_fields__
    words = ["python scripts/ablation.py", "--recipe", args.recipe, "--folds", *args.folds,
             "--variants", *args.variants, "--seeds", *map(str, args.seeds)]
    if args.num_train_epochs != recipe_arguments(args.recipe)["num_train_epochs"]:
        words += ["--num_train_epochs", f"{args.num_train_epochs:g}"]
    for name in ("folds_dir", "output_dir", "max_train_samples", "max_eval_samples", "readme"):
        value = getattr(args, name)
        if value != defaults[name].default:
            words += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    words += ["--results", args.results, "--parallel", str(args.parallel), "--threads", str(args.threads)]
    return " ".join(words)


def markdown_of(args: AblationArguments, summary: dict, results: list[dict]) -> str:
    how = "with data arguments only" if args.data_only else f"--recipe {args.recipe}"
    preface = []
    if args.title:
        at_once = f"{args.parallel} runs at a time" if args.parallel > 1 else "one run at a time"
        threads = f"{args.threads} thread" + ("s" if args.threads > 1 else "")
        preface = [f"{args.title.rstrip('.')}, {args.date or current_date()}, {at_once} at {threads} each. "
                   f"To rerun: `{rerun_command(args)}`.", ""]
    lines = preface + [
        f"FSDD leave-one-speaker-out, `scripts/train.py {how}` at {args.num_train_epochs:g} epochs "
        f"(the recipe trains {recipe_arguments(args.recipe)['num_train_epochs']}), seeds {args.seeds}, folds {args.folds} "
        f"(test speaker held out), {args.threads} torch thread(s) per run. A cell is the mean over the seeds run "
        "(with the lowest and highest seed when there are several); a missing cell was not run; a mean over fewer "
        "folds than the table's says so.",
        "",
        "| variant | config overrides / flags | " + " | ".join(args.folds) + " | mean |",
        "|---|---|" + "---:|" * (len(args.folds) + 1),
    ]
    for variant, scores in summary.items():
        overrides, flags = VARIANTS[variant]
        settings = " ".join(filter(None, [f"`{overrides}`" if overrides else "", f"`{' '.join(flags)}`" if flags else ""]))
        cells = [cell_of(results, variant, fold, scores[fold]) if fold in scores else "-" for fold in args.folds]
        folds = len(scores) - 1
        mean = f"{100 * scores['mean']:.1f}%" + (f" ({folds} of {len(args.folds)} folds)" if folds < len(args.folds) else "")
        lines.append(f"| {variant} | {settings or args.plain_run.removeprefix('the ')} | " + " | ".join(cells) + f" | {mean} |")
    if args.note:
        lines += ["", args.note]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(AblationArguments).parse_args_into_dataclasses(args=argv)
    # Fold by fold, so the first folds finish for every variant before the next one starts.
    runs = [Run(variant, fold, seed) for fold in args.folds for seed in args.seeds for variant in args.variants]
    with ThreadPoolExecutor(args.parallel) as pool:
        results = [result for result in pool.map(lambda run: run_one(args, run), runs) if result is not None]
    summary = summary_of(args, results)
    settings = {name: value for name, value in asdict(args).items() if name not in ("title", "note", "date")}
    report = dict(settings=settings, recipe=recipe_arguments(args.recipe), runs=results, summary=summary,
                  machine=machine_description(), date=args.date or current_date())
    report.update({name: getattr(args, name) for name in ("title", "note") if getattr(args, name)})
    if args.readme:
        report["readme"] = readme_of(args, summary, report)
    markdown = markdown_of(args, summary, results)
    write_result_file(Path(args.results).with_suffix(".json"), report, markdown)
    print(markdown)
    return report


def readme_of(args: AblationArguments, summary: dict, report: dict) -> dict:
    """The README table: accuracy on each held-out speaker, per variant, and the mean over the folds run."""
    rows = []
    for variant, scores in summary.items():
        folds = len(scores) - 1
        mean = f"{100 * scores['mean']:.1f} %" + ("" if folds == len(args.folds) else f" ({folds} folds)")
        rows.append([variant] + [f"{100 * scores[fold]:.1f} %" if fold in scores else "—" for fold in args.folds] + [mean])
    epochs = recipe_arguments(args.recipe)["num_train_epochs"]
    runs = (f"Data arguments only (the defaults a fresh model takes from its data) at {args.num_train_epochs:g} epochs"
            if args.data_only else f"The `{args.recipe}` recipe at {args.num_train_epochs:g} of its {epochs} epochs")
    return readme_table(
        "Voices never heard in training: FSDD leave-one-speaker-out accuracy"
        + (", data arguments only" if args.data_only else ""),
        "scripts/ablation.py",
        f"python scripts/ablation.py --recipe {args.recipe} --folds {' '.join(args.folds)} "
        f"--variants {' '.join(args.variants)} --num_train_epochs {args.num_train_epochs:g} --seeds "
        + " ".join(str(seed) for seed in args.seeds),
        ["variant", *(f"{fold} held out" for fold in args.folds), "mean"], rows, order=51 if args.data_only else 50,
        machine=report["machine"], date=report["date"],
        notes=[f"{runs}, seeds {args.seeds}, "
               "one thread per run; a cell marked — was not run. Variants: "
               + "; ".join(f"{name} = {' '.join(filter(None, [VARIANTS[name][0], *VARIANTS[name][1]])) or args.plain_run}" for name in summary)
               + f". Details: [{args.results}.md]({args.results}.md), [docs/generalisation.md](docs/generalisation.md)."]
        + ([args.readme_note] if args.readme_note else []),
    )


if __name__ == "__main__":
    main()
