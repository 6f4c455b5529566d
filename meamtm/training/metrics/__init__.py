"""`evaluate` metric modules shipped with the package, loaded by path so that nothing is fetched from the network."""

from pathlib import Path


METRICS_DIR = Path(__file__).resolve().parent


def path_of(name: str) -> str:
    """Folder of the metric module `name` (`"accuracy_f1"` or `"audioset"`), for `evaluate.load(path)`."""
    folder = METRICS_DIR / name
    if not (folder / f"{name}.py").is_file():
        known = sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())
        raise ValueError(f"No metric module {name!r} in {METRICS_DIR}; the package ships {known}.")
    return str(folder)


def load(name: str):
    """`evaluate.load` of a shipped metric module, offline."""
    import evaluate

    return evaluate.load(path_of(name))
