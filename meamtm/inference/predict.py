"""Classify audio files of any length from the command line.

    python -m meamtm.predict --model PATH_OR_HUB_ID FILE... [--top_k 5] [--segments] [--chunk_length_s 10]
        [--chunk_overlap 0.5] [--aggregation mean|max] [--batch_size 8] [--device cpu|cuda]

Prints the top-k labels of each file (sliding windows aggregated per file, see `MeamtmAudioClassificationPipeline`)
and, with `--segments`, of each window with its time span. A file that cannot be decoded is reported on stderr
with its path; the others are still classified, and the exit status is 1.
"""

import sys
from dataclasses import dataclass, field

from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, HfArgumentParser, pipeline

from ..feature_extraction_meamtm import MeamtmFeatureExtractor
from .pipeline import AGGREGATIONS, MeamtmAudioClassificationPipeline


@dataclass
class PredictArguments:
    model: str = field(metadata={"help": "Directory or Hub id of a MEAMTM audio classifier (safetensors weights)."})
    top_k: int = field(default=5, metadata={"help": "Labels printed per file (and per segment)."})
    segments: bool = field(default=False, metadata={"help": "Also print the labels of every window with its span."})
    chunk_length_s: float | None = field(
        default=None, metadata={"help": "Window length in seconds (default: the model's window)."}
    )
    chunk_overlap: float = field(default=0.5, metadata={"help": "Fraction of a window its successor overlaps."})
    aggregation: str = field(default="mean", metadata={"help": "Window logits to file logits: mean or max."})
    batch_size: int = field(default=8, metadata={"help": "Windows per forward pass (memory grows with it only)."})
    device: str | None = field(default=None, metadata={"help": "torch device, e.g. cpu or cuda (default: cpu)."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run the checkpoint's own model code (only where meamtm is not installed)."}
    )


def parse_arguments(argv=None) -> tuple[PredictArguments, list[str]]:
    parser = HfArgumentParser(PredictArguments, prog="python -m meamtm.predict")
    parser.add_argument("files", nargs="+", metavar="FILE", help="Audio files (any format and rate FFmpeg reads).")
    arguments, rest = parser.parse_args_into_dataclasses(args=argv)
    if arguments.aggregation not in AGGREGATIONS:
        parser.error(f"--aggregation {arguments.aggregation!r} is not one of {AGGREGATIONS}")
    return arguments, rest.files


def load_classifier(arguments: PredictArguments) -> MeamtmAudioClassificationPipeline:
    model = AutoModelForAudioClassification.from_pretrained(
        arguments.model, trust_remote_code=arguments.trust_remote_code
    )
    try:
        feature_extractor = AutoFeatureExtractor.from_pretrained(
            arguments.model, trust_remote_code=arguments.trust_remote_code
        )
    except OSError:  # a checkpoint saved without preprocessor_config.json: the config says all it needs
        feature_extractor = MeamtmFeatureExtractor.from_model_config(model.config)
    return pipeline(
        "audio-classification",
        model=model,
        feature_extractor=feature_extractor,
        pipeline_class=MeamtmAudioClassificationPipeline,
        device=arguments.device,
    )


def format_labels(labels: list[dict]) -> str:
    return ", ".join(f"{item['label']} {item['score']:.3f}" for item in labels)


def main(argv=None) -> int:
    arguments, files = parse_arguments(argv)
    classifier = load_classifier(arguments)
    options = dict(
        top_k=arguments.top_k,
        chunk_length_s=arguments.chunk_length_s,
        chunk_overlap=arguments.chunk_overlap,
        aggregation=arguments.aggregation,
        batch_size=arguments.batch_size,
        return_segments=True,
    )
    failed = 0
    for path in files:
        try:
            result = classifier(path, **options)
        except (ValueError, OSError) as error:
            print(f"{path}: error: {error}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}: {format_labels(result['labels'])}")
        if arguments.segments:
            for segment in result["segments"]:
                print(f"  {segment['start']:9.2f}-{segment['end']:9.2f} s: {format_labels(segment['labels'])}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
