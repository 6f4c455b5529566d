#!/usr/bin/env python
"""Write a labelled audio data set as WebDataset shards of encoded audio, for `scripts/train.py --train_shards`.

    python scripts/make_shards.py --train_dir data/train --eval_dir data/test --output_dir shards
    python scripts/make_shards.py --dataset_name ORG/NAME --output_dir shards --sampling_rate 16000
    python scripts/train.py --train_shards shards/train --eval_shards shards/eval --max_steps 1000 ...

The data arguments are those of `scripts/train.py` (`--train_dir`, `--train_file`, `--dataset_name`, columns,
`--class_names`, `--max_train_samples`, ...; with none, the built-in data set). Each split goes to its own
folder (`OUTPUT_DIR/train`, `OUTPUT_DIR/eval`) of `.tar` files of `--shard_size` clips plus `manifest.json`
(`meamtm/training/shards.py` says what they hold).
"""

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from transformers import HfArgumentParser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))
from meamtm.training.data import label_space_of, take_first  # noqa: E402
from meamtm.training.shards import write_shards  # noqa: E402
from meamtm.training.trainer import MeamtmTrainingArguments  # noqa: E402
from train import Arguments, DataTrainingArguments, ModelArguments, RecipeArguments, load_data  # noqa: E402


logger = logging.getLogger("make_shards")


@dataclass
class ShardArguments:
    """Where the shards go and how they are cut."""

    output_dir: str = field(metadata={"help": "Folder for the shards: one subfolder per split (train, eval)."})
    shard_size: int = field(default=1000, metadata={"help": "Clips per shard (AudioSet: ~1000 clips, ~0.3-1 GB)."})
    sampling_rate: int | None = field(
        default=None, metadata={"help": "Resample to this rate before encoding (default: keep each clip's rate)."}
    )
    shuffle: bool = field(
        default=True, metadata={"help": "Write map-style data in a seeded random order, so each shard mixes classes."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of that order."})


def parse_arguments(argv: list[str]) -> tuple[DataTrainingArguments, ShardArguments]:
    parser = HfArgumentParser((DataTrainingArguments, ShardArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=argv[0])
    return parser.parse_args_into_dataclasses(args=argv)


def main(argv: list[str] | None = None) -> dict:
    data_args, shard_args = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if data_args.train_shards:
        raise ValueError("--train_shards reads shards; give the data to shard (--train_dir, --train_file, ...).")
    training = MeamtmTrainingArguments(output_dir=shard_args.output_dir, report_to="none")
    splits, _ = load_data(Arguments(data_args, ModelArguments(), RecipeArguments(), training))
    labels = label_space_of(splits["train"], data_args.label_column, data_args.class_names)
    limits = {"train": data_args.max_train_samples, "eval": data_args.max_eval_samples}
    manifests = {}
    for role, dataset in splits.items():
        dataset = take_first(dataset, limits[role])
        if shard_args.shuffle and isinstance(dataset, Dataset):  # map-style: a seeded permutation
            dataset = dataset.shuffle(seed=shard_args.seed)
        manifests[role] = write_shards(
            dataset, str(Path(shard_args.output_dir) / role), data_args.audio_column, data_args.label_column, labels,
            shard_size=shard_args.shard_size, sampling_rate=shard_args.sampling_rate, prefix=role,
        )
        manifest = manifests[role]
        logger.info(f"{role}: {manifest['num_clips']} clips, {manifest['total_duration_s'] / 3600:.2f} h, "
                    f"{len(manifest['shards'])} shards in {Path(shard_args.output_dir) / role}")
    return manifests


if __name__ == "__main__":
    main()
