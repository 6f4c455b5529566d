"""Write the README's results section from the result files in results/.

    python scripts/render_results.py            # rewrite README.md between its results markers
    python scripts/render_results.py --check    # exit 1 if README.md is not what the result files say

A result file is a JSON file that a script wrote; the ones that belong in the README carry a `readme` entry:

    {"readme": {"order": 10, "title": "...", "script": "scripts/benchmark.py", "command": "...",
                "machine": "...", "date": "YYYY-MM-DD", "columns": ["...", ...], "rows": [["...", ...], ...],
                "notes": ["...", ...]}}

Each becomes one table, in `order`, with the machine, date and the command that produced it.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser


REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"
REQUIRED = ("title", "script", "machine", "date", "columns", "rows")


@dataclass
class RenderArguments:
    results_dir: str = field(default=str(REPO / "results"), metadata={"help": "Folder of result JSON files."})
    readme: str = field(default=str(REPO / "README.md"))
    check: bool = field(default=False, metadata={"help": "Only compare; exit 1 when the README is out of date."})


def readme_entries(results_dir: Path) -> list[tuple[Path, dict]]:
    """(file, readme entry) of every result file that has one, in display order."""
    entries = []
    for path in sorted(results_dir.glob("*.json")):
        entry = json.loads(path.read_text()).get("readme")
        if entry is None:
            continue
        missing = [name for name in REQUIRED if name not in entry]
        if missing:
            raise ValueError(f"{path}: its readme entry lacks {missing}; the script that wrote it must fill them.")
        for row in entry["rows"]:
            if len(row) != len(entry["columns"]):
                raise ValueError(f"{path}: row {row} has {len(row)} cells for {len(entry['columns'])} columns.")
        entries.append((path, entry))
    return sorted(entries, key=lambda item: (item[1].get("order", 100), item[0].name))


def table_of(path: Path, entry: dict, repo: Path) -> str:
    columns, rows = entry["columns"], entry["rows"]
    lines = [f"### {entry['title']}", ""]
    lines.append(f"{entry['machine']}, {entry['date']}; `{entry.get('command', entry['script'])}` "
                 f"-> [{path.relative_to(repo).as_posix()}]({path.relative_to(repo).as_posix()})")
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    for note in entry.get("notes", ()):
        lines += ["", note]
    return "\n".join(lines)


def render(results_dir: Path, repo: Path = REPO) -> str:
    tables = [table_of(path, entry, repo) for path, entry in readme_entries(results_dir)]
    if not tables:
        return "No result files yet: run the scripts named in docs/benchmarks.md."
    return "\n\n".join(tables)


def replace_section(readme: str, section: str) -> str:
    if readme.count(START) != 1 or readme.count(END) != 1:
        raise ValueError(f"README.md must hold exactly one {START} and one {END} marker.")
    head, rest = readme.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{section}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    (args,) = HfArgumentParser(RenderArguments).parse_args_into_dataclasses(args=argv)
    readme_path = Path(args.readme)
    readme = readme_path.read_text()
    updated = replace_section(readme, render(Path(args.results_dir), readme_path.resolve().parent))
    if args.check:
        if updated != readme:
            print(f"{readme_path} is out of date with {args.results_dir}: run python scripts/render_results.py")
            return 1
        return 0
    readme_path.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
