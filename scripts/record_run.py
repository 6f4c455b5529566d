"""Record a finished `scripts/train.py` run as a result file (accuracy, time, model size) for the README.

    python scripts/record_run.py --output_dir meamtm-builtin --results_file results/fsdd_builtin.json \
        --title "FSDD, built-in recipe (make run)" --command "make run"

Reads what the Trainer wrote in the run's folder (`all_results.json`, `trainer_state.json`, `config.json`,
`model.safetensors`); appends the run to the file's list of runs, and the README table lists them all.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open
from transformers import HfArgumentParser

from meamtm.training.results import current_date, machine_description, markdown_table, readme_table, write_result_file


@dataclass
class RecordArguments:
    output_dir: str = field(metadata={"help": "The folder scripts/train.py wrote."})
    results_file: str = field(metadata={"help": "Result JSON to create or append to (results/NAME.json)."})
    title: str = field(metadata={"help": "Table title in the README."})
    command: str = field(metadata={"help": "The command that produced the run, as a user would type it."})
    label: str = field(default="", metadata={"help": "This run's row name (default: the output folder's name)."})
    order: int = field(default=50, metadata={"help": "Position of the table in the README (smaller first)."})
    replace: bool = field(default=False, metadata={"help": "Start the file anew instead of appending."})
    notes: list[str] = field(
        default_factory=list, metadata={"help": "Sentences below the table (default: the file's, when appending)."}
    )
    readme: bool = field(
        default=True, metadata={"help": "False: keep the table out of the README (under `table`, not `readme`)."}
    )


def run_summary(output_dir: Path) -> dict:
    """Accuracy, F1, training time, steps, epochs and parameter count of a finished run."""
    missing = [name for name in ("all_results.json", "config.json") if not (output_dir / name).is_file()]
    if missing:
        raise ValueError(f"{output_dir} lacks {missing}: pass the --output_dir of a finished scripts/train.py run.")
    results = json.loads((output_dir / "all_results.json").read_text())
    state_file = output_dir / "trainer_state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    with safe_open(output_dir / "model.safetensors", framework="pt") as weights:
        parameters = sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    return dict(
        eval_accuracy=results.get("eval_accuracy"),
        eval_f1=results.get("eval_macro_f1"),
        eval_map=results.get("eval_mAP"),
        train_runtime_s=results.get("train_runtime"),
        global_step=state.get("global_step"),
        epochs=state.get("epoch"),
        parameters=parameters,
    )


def percent(value) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(RecordArguments).parse_args_into_dataclasses(args=argv)
    output_dir = Path(args.output_dir)
    path = Path(args.results_file)
    payload = json.loads(path.read_text()) if path.is_file() and not args.replace else {"runs": []}
    run = dict(label=args.label or output_dir.name, date=current_date(), machine=machine_description(),
               command=args.command, **run_summary(output_dir))
    payload["runs"].append(run)
    rows = [
        [entry["label"], entry["date"], percent(entry["eval_accuracy"]), percent(entry["eval_f1"]),
         f"{entry['train_runtime_s']:.0f} s" if entry["train_runtime_s"] else "—",
         f"{entry['epochs']:.0f}" if entry["epochs"] else "—", f"{entry['parameters'] / 1e6:.2f} M"]
        for entry in payload["runs"]
    ]
    earlier = payload.get("readme") or payload.get("table") or {}
    table = readme_table(
        args.title, "scripts/record_run.py", args.command,
        ["run", "date", "accuracy", "macro F1", "training time", "epochs", "parameters"], rows, order=args.order,
        machine=run["machine"], date=run["date"], notes=args.notes or earlier.get("notes"),
    )
    payload.pop("table" if args.readme else "readme", None)
    payload["readme" if args.readme else "table"] = table
    write_result_file(path, payload, markdown_table(table))
    return run


if __name__ == "__main__":
    main()
