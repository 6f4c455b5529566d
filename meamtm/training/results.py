"""Result files: what a benchmark or accuracy script measured, as JSON (and Markdown), with the machine it ran on.

A result file's optional `readme` entry is the table that `scripts/render_results.py` puts in the README.
"""

import datetime
import json
import os
import platform
from pathlib import Path


def machine_description() -> str:
    """One line naming the machine: processor, cores, memory, torch and transformers versions."""
    import torch
    import transformers

    processor = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        processor = names[0] if names else processor
    except OSError:
        pass
    memory = ""
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{processor}, {os.cpu_count()} cores{memory}{gpu}; torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )


def current_date() -> str:
    return datetime.datetime.now().date().isoformat()


def write_result_file(path: str | os.PathLike, payload: dict, markdown: str | None = None) -> Path:
    """Write `payload` as JSON to `path` and, when given, `markdown` next to it (`.md`); returns the JSON path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    if markdown is not None:
        path.with_suffix(".md").write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    return path


def readme_table(title: str, script: str, command: str, columns: list[str], rows: list[list], order: int = 100,
                 notes: list[str] | None = None, machine: str | None = None, date: str | None = None) -> dict:
    """The `readme` entry of a result file (see `scripts/render_results.py`)."""
    return dict(order=order, title=title, script=script, command=command, machine=machine or machine_description(),
                date=date or current_date(), columns=columns, rows=[list(row) for row in rows], notes=list(notes or ()))


def markdown_table(entry: dict) -> str:
    """A `readme` entry as a standalone Markdown page."""
    lines = [f"# {entry['title']}", "", f"{entry['machine']}, {entry['date']}; `{entry['command']}`", ""]
    lines += ["| " + " | ".join(entry["columns"]) + " |", "|" + "---|" * len(entry["columns"])]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in entry["rows"]]
    for note in entry.get("notes", ()):
        lines += ["", note]
    return "\n".join(lines) + "\n"
