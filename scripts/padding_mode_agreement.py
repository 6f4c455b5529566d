"""How much `padding_mode="longest"` changes a converted AST checkpoint: top-1 agreement and logit differences
against `"max_length"` (AST's own graph) on real FSDD speech of several lengths.

    python scripts/padding_mode_agreement.py                          # random AST-base, converted offline
    python scripts/padding_mode_agreement.py --ast_model PATH         # a transformers AST checkpoint on disk
    python scripts/padding_mode_agreement.py --geometry tiny --clips_per_group 4   # quick check of the script

AST learned with every clip padded to its window and the padding attended to; `"longest"` drops the padding,
so on clips shorter than the window the converted model sees a context it never trained on. Without
`--ast_model` the AST is randomly initialised (no trained AST can be downloaded here), converted with
`meamtm.convert` and saved, then loaded twice with `from_pretrained(..., padding_mode=...)`, the way a user
opts in. A random model's logits say how far the two graphs drift apart, not how a trained model's
decisions move: see docs/variable-length.md. Writes `padding_mode_agreement.json` and `.md` to `--output_dir`.
"""

import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, HfArgumentParser


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing meamtm

from meamtm import MeamtmFeatureExtractor, MeamtmForAudioClassification  # noqa: E402
from meamtm.convert.checkpoints import ast_to_meamtm_state_dict, config_from_ast, load_converted_state_dict  # noqa: E402
from meamtm.audio_io import load_audio  # noqa: E402
from meamtm.training.results import current_date, machine_description, readme_table, write_result_file  # noqa: E402


logger = logging.getLogger("padding_mode_agreement")

REPO = Path(__file__).resolve().parents[1]
GEOMETRIES = {
    "base": {},  # ASTConfig's defaults: AST-base over 1024 frames x 128 mels
    "tiny": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, num_mel_bins=32,
        max_length=64, patch_size=8, frequency_stride=6, time_stride=6,
    ),
}


@dataclass
class AgreementArguments:
    ast_model: str | None = field(default=None, metadata={"help": "A transformers AST checkpoint folder; else random."})
    geometry: str = field(default="base", metadata={"help": "Random AST: base (AST-base, 10.24 s) or tiny."})
    num_labels: int = field(default=527, metadata={"help": "Random AST: classes (AudioSet's 527)."})
    fsdd_dir: str = field(default=str(REPO.parent / "shared" / "data" / "fsdd"), metadata={"help": "FSDD folder."})
    group_seconds: list[float] = field(
        default_factory=lambda: [0.0, 2.5, 5.0, 10.0],
        metadata={"help": "Clip lengths: 0 is one FSDD recording as it is (0.3-0.9 s); others join consecutive "
                  "recordings (spoken digit strings) and cut them to that many seconds."},
    )
    clips_per_group: int = 8
    seed: int = 0
    output_dir: str = field(default=str(REPO / "results"))
    readme: bool = field(default=False, metadata={"help": "Give the result file a README table."})

    def __post_init__(self):
        if self.geometry not in GEOMETRIES:
            raise ValueError(f"--geometry {self.geometry!r} is not one of {', '.join(GEOMETRIES)}.")


def converted_checkpoint(args: AgreementArguments, folder: Path) -> Path:
    """A MEAMTM checkpoint converted from `--ast_model`, or from a random AST at `--geometry`, saved in `folder`."""
    if args.ast_model:
        ast = ASTForAudioClassification.from_pretrained(args.ast_model).eval()
        extractor = ASTFeatureExtractor.from_pretrained(args.ast_model)
    else:
        torch.manual_seed(args.seed)
        ast = ASTForAudioClassification(ASTConfig(**GEOMETRIES[args.geometry], num_labels=args.num_labels)).eval()
        extractor = ASTFeatureExtractor(num_mel_bins=ast.config.num_mel_bins, max_length=ast.config.max_length)
    model = MeamtmForAudioClassification(config_from_ast(ast.config, extractor))
    load_converted_state_dict(model, ast_to_meamtm_state_dict(ast.state_dict()))
    model.save_pretrained(folder)
    MeamtmFeatureExtractor.from_model_config(model.config).save_pretrained(folder)
    return folder


def fsdd_groups(args: AgreementArguments, sampling_rate: int) -> dict[str, list[np.ndarray]]:
    """Clips of each length in `group_seconds`, from the FSDD test split, decoded and resampled (8 -> 16 kHz)."""
    files = sorted((Path(args.fsdd_dir) / "test").glob("*/*.wav"))
    if not files:
        raise FileNotFoundError(f"No FSDD test clips under {args.fsdd_dir}: pass --fsdd_dir.")
    order = np.random.default_rng(args.seed).permutation(len(files))
    recordings = (load_audio(str(files[index]), sampling_rate) for index in np.resize(order, 10 * len(order)))
    groups = {}
    for seconds in args.group_seconds:
        clips = []
        for _ in range(args.clips_per_group):
            clip = next(recordings)
            while len(clip) < seconds * sampling_rate:
                clip = np.concatenate((clip, next(recordings)))
            clips.append(clip[: round(seconds * sampling_rate)] if seconds else clip)
        groups["FSDD recording" if not seconds else f"{seconds:g} s"] = clips
    return groups


@torch.no_grad()
def compare(checkpoint: Path, groups: dict[str, list[np.ndarray]]) -> dict:
    """Per group: top-1 agreement and logit differences, `"longest"` against `"max_length"`."""
    models = {
        mode: MeamtmForAudioClassification.from_pretrained(checkpoint, padding_mode=mode).eval()
        for mode in ("max_length", "longest")
    }
    extractor = MeamtmFeatureExtractor.from_pretrained(checkpoint)
    window = models["max_length"].config.num_samples / extractor.sampling_rate
    rows = {}
    for name, clips in groups.items():
        batch = extractor(clips, sampling_rate=extractor.sampling_rate, return_tensors="pt")
        logits, seconds = {}, {}
        for mode, model in models.items():
            start = time.perf_counter()
            logits[mode] = model(**batch).logits
            seconds[mode] = time.perf_counter() - start
        difference = (logits["longest"] - logits["max_length"]).abs()
        top1 = logits["longest"].argmax(-1) == logits["max_length"].argmax(-1)
        durations = [min(len(clip) / extractor.sampling_rate, window) for clip in clips]
        rows[name] = dict(
            clips=len(clips),
            seconds=[round(value, 2) for value in durations],
            share_of_window=float(np.mean(durations) / window),
            top1_agreement=float(top1.float().mean()),
            max_abs_logit_difference=float(difference.max()),
            mean_abs_logit_difference=float(difference.mean()),
            logit_std_max_length=float(logits["max_length"].std()),
            probability_change=float((logits["longest"].softmax(-1) - logits["max_length"].softmax(-1)).abs().max()),
            forward_seconds=seconds,
        )
    return dict(window_seconds=window, groups=rows)


def markdown_of(report: dict) -> str:
    settings, result = report["settings"], report["result"]
    model = settings["ast_model"] or f"a randomly initialised AST ({settings['geometry']} geometry, {settings['num_labels']} classes)"
    lines = [
        "# padding_mode=\"longest\" against \"max_length\" on a converted AST checkpoint",
        "",
        f"Model: {model}, converted with `meamtm.convert`, window {result['window_seconds']:.2f} s. Clips: FSDD test "
        f"split (real speech, 8 kHz resampled to 16 kHz), {settings['clips_per_group']} per group, one batch per "
        f"group padded to its longest clip. Machine: {report['machine']}.",
        "",
        "| clips | mean share of the window | top-1 agreement | max abs logit difference | mean abs logit difference | "
        "logit std (max_length) | max probability change | forward s, max_length / longest |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in result["groups"].items():
        lines.append(
            f"| {name} | {row['share_of_window']:.2f} | {100 * row['top1_agreement']:.0f}% | "
            f"{row['max_abs_logit_difference']:.3g} | {row['mean_abs_logit_difference']:.3g} | "
            f"{row['logit_std_max_length']:.3g} | {row['probability_change']:.3g} | "
            f"{row['forward_seconds']['max_length']:.2f} / {row['forward_seconds']['longest']:.2f} |"
        )
    if not settings["ast_model"]:
        lines += [
            "",
            "A random AST is not a trained one: its logits are nearly flat (see their spread), so top-1 agreement "
            "here measures how far the two graphs move the outputs relative to that spread, not how often a "
            "trained model's decision would change. Run with `--ast_model` on a trained checkpoint for that.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    (args,) = HfArgumentParser(AgreementArguments).parse_args_into_dataclasses(args=argv)
    with tempfile.TemporaryDirectory(prefix="meamtm-agreement-") as folder:
        checkpoint = converted_checkpoint(args, Path(folder))
        sampling_rate = MeamtmFeatureExtractor.from_pretrained(checkpoint).sampling_rate
        groups = fsdd_groups(args, sampling_rate)
        logger.info("comparing on %s", {name: len(clips) for name, clips in groups.items()})
        result = compare(checkpoint, groups)
    report = dict(
        settings=asdict(args),
        machine=f"{machine_description()}, {torch.get_num_threads()} torch threads",
        date=current_date(),
        result=result,
    )
    rows = [
        [name, f"{group['share_of_window']:.2f}", f"{100 * group['top1_agreement']:.0f} %",
         f"{group['max_abs_logit_difference']:.3g}", f"{group['logit_std_max_length']:.3g}"]
        for name, group in result["groups"].items()
    ]
    source = args.ast_model or f"a randomly initialised AST ({args.geometry} geometry), converted offline"
    readme = readme_table(
        "A converted AST checkpoint in `padding_mode=\"longest\"` against `\"max_length\"`",
        "scripts/padding_mode_agreement.py",
        "python scripts/padding_mode_agreement.py" + (f" --ast_model {args.ast_model}" if args.ast_model else ""),
        ["clips", "share of the window", "top-1 agreement", "max abs logit difference", "logit spread (std)"],
        rows, order=40, machine=report["machine"], date=report["date"],
        notes=[f"Model: {source}; clips from the FSDD test split. A random AST's logits are nearly flat, so "
               "agreement here shows how far the outputs move against their spread, not how often a trained "
               "model's decision changes: run with --ast_model on a trained checkpoint for that."],
    )
    if args.readme:
        report["readme"] = readme
    markdown = markdown_of(report)
    write_result_file(Path(args.output_dir) / "padding_mode_agreement.json", report, markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
