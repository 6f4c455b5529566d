#!/usr/bin/env python
"""Leave-one-speaker-out folds of the Free Spoken Digit Dataset, as CSV metadata for scripts/train.py.

    python scripts/fsdd_folds.py --fsdd_dir ../shared/data/fsdd --output_dir fsdd-folds
    python scripts/train.py --train_file fsdd-folds/theo/train.csv --eval_file fsdd-folds/theo/test.csv ...

Each fold trains on every clip (train and test splits together) of four speakers and tests on all 500 clips of the
fifth, so the model never hears the test speaker. The CSVs hold absolute paths: FSDD is read in place.
"""

import csv
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser


@dataclass
class FoldArguments:
    fsdd_dir: str = field(default="../shared/data/fsdd", metadata={"help": "FSDD folder (split/digit/x.wav)."})
    output_dir: str = field(default="fsdd-folds", metadata={"help": "Where <speaker>/train.csv and test.csv go."})


def clips_by_speaker(fsdd_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """{speaker: [(absolute path, digit), ...]} over both splits; file names are <speaker>_<take>.wav."""
    speakers: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(fsdd_dir.glob("*/*/*.wav")):
        speakers.setdefault(path.stem.rsplit("_", 1)[0], []).append((str(path.resolve()), path.parent.name))
    if not speakers:
        raise ValueError(f"No FSDD clips (split/digit/speaker_take.wav) under {fsdd_dir}.")
    return speakers


def write_fold(folder: Path, train: list, test: list) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        with open(folder / f"{name}.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["audio", "label"])
            writer.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    (args,) = HfArgumentParser(FoldArguments).parse_args_into_dataclasses(args=argv)
    speakers = clips_by_speaker(Path(args.fsdd_dir))
    for held_out, test in speakers.items():
        train = [row for speaker, rows in speakers.items() if speaker != held_out for row in rows]
        write_fold(Path(args.output_dir) / held_out, train, test)
        print(f"{held_out}: {len(train)} training clips, {len(test)} test clips")


if __name__ == "__main__":
    main()
