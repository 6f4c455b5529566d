#!/usr/bin/env python
"""What one AudioSet epoch costs: measured training steps here, GPU-hours estimated from FLOPs, beside AST's cost.

    python scripts/cost_model.py                       # AST-base geometry, batch 2: writes results/cost_model.{json,md}
    python scripts/cost_model.py --quick               # tiny model, to check the script

For each configuration (patchout off/on x float32/bf16 autocast) it measures, on this machine, the seconds of
one training step (forward, backward, AdamW; `scripts/benchmark.py`'s `training_step`, timed in alternating
rounds) and its peak memory (a fresh process per configuration), and counts the step's FLOPs from the
geometry. GPU rows are not measured: they divide the epoch's FLOPs by a GPU's dense peak times an assumed
utilisation (`--utilisation`). Every assumption is written into the result files.
"""

import json
import logging
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import SIZES, BenchmarkArguments, alternate, machine_of, median, peak_memory_of, training_step  # noqa: E402
from transformers import HfArgumentParser  # noqa: E402

from meamtm import MeamtmConfig  # noqa: E402
from meamtm.training.results import current_date, machine_description, readme_table, write_result_file  # noqa: E402


logger = logging.getLogger("cost_model")

CONFIGURATIONS = {  # name: (benchmark run, autocast dtype)
    "fp32": ("meamtm", "float32"),
    "fp32_patchout": ("meamtm_patchout", "float32"),
    "bf16": ("meamtm", "bfloat16"),
    "bf16_patchout": ("meamtm_patchout", "bfloat16"),
}
# Dense peak FLOP/s from the vendors' data sheets (no sparsity). float32 is plain FP32: PyTorch does not use TF32
# for float32 matrix products unless told to (torch.backends.cuda.matmul.allow_tf32).
GPUS = {
    "A100 SXM (80 GB)": {"float32": 19.5e12, "bfloat16": 312e12},
    "H100 SXM": {"float32": 67e12, "bfloat16": 989e12},
}
# AST (Gong et al. 2021; github.com/YuanGongND/ast): full AudioSet, 5 epochs, about a week on 4 GPUs.
AST_PUBLISHED = {"gpus": 4, "days": 7, "epochs": 5}


@dataclass
class CostModelArguments:
    size: str = field(default="base", metadata={"help": "Transformer size (scripts/benchmark.py): tiny, small, base."})
    batch_size: int = field(default=2, metadata={"help": "Clips per measured training step."})
    warmup: int = field(default=1, metadata={"help": "Untimed steps of each configuration."})
    repeats: int = field(default=2, metadata={"help": "Timed steps of each configuration (median reported)."})
    clips_per_epoch: int = field(default=2_000_000, metadata={"help": "AudioSet's full training set, about 2M clips."})
    utilisation: float = field(
        default=0.4, metadata={"help": "Assumed share of a GPU's dense peak FLOP/s a training step reaches."}
    )
    patchout_time: float = field(default=0.4, metadata={"help": "Structured patchout of time columns (PaSST)."})
    patchout_frequency: float = field(default=1 / 3, metadata={"help": "... of frequency rows (PaSST)."})
    quick: bool = field(default=False, metadata={"help": "Tiny model, batch 2, one timed step: checks the script."})
    tables_only: bool = field(
        default=False,
        metadata={"help": "Measure nothing: rewrite the Markdown (and README table) of the existing cost_model.json."},
    )
    output_dir: str = field(default="results", metadata={"help": "Where cost_model.json and cost_model.md go."})
    readme: bool = field(default=False, metadata={"help": "Give the result file a README table."})

    def __post_init__(self):
        if self.quick:
            self.size, self.batch_size, self.warmup, self.repeats = "tiny", 2, 1, 1
        if self.size not in SIZES:
            raise ValueError(f"--size {self.size!r} is not one of {', '.join(SIZES)}.")
        if not 0 < self.utilisation <= 1:
            raise ValueError(f"--utilisation {self.utilisation} must be in (0, 1]: a share of the GPU's peak.")


def training_flops_per_clip(config: MeamtmConfig, tokens: int) -> float:
    """FLOPs of one clip's training step: 3x the forward (backward costs twice the forward), 2x for the patch embedding.

    Forward, per layer: the q, k, v and output projections (4 t d^2 multiply-adds), the MLP (2 t d i), attention
    scores and their weighted sum (2 t^2 d); plus the patch embedding (P p^2 d over all P patches) and the head; a multiply-add is
    2 FLOPs. `tokens` counts the patch tokens that remain after patchout plus the two special tokens. The
    frontend (an FFT and a mel product, well under 1 % of these FLOPs) is left out. The count agrees with
    `torch.utils.flop_counter.FlopCounterMode` over eager attention (which cannot see CPU SDPA kernels).
    """
    d, i, p = config.hidden_size, config.intermediate_size, config.patch_size
    per_layer = 4 * tokens * d * d + 2 * tokens * d * i + 2 * tokens * tokens * d
    transformer = 2 * (config.num_hidden_layers * per_layer + d * config.num_labels)
    # The patch embedding sees every patch (patchout drops tokens after it), and its input needs no gradient.
    embedding = 2 * config.num_patches * p * p * d
    return 3.0 * transformer + 2.0 * embedding


def measure(args: CostModelArguments) -> dict:
    device = torch.device("cpu")
    rows = {}
    for name, (run, dtype) in CONFIGURATIONS.items():
        settings = asdict(BenchmarkArguments(
            size=args.size, train_batch_size=args.batch_size, dtype=dtype, warmup=args.warmup, repeats=args.repeats,
            patchout_time=args.patchout_time, patchout_frequency=args.patchout_frequency,
        ))
        step, description = training_step(run, settings, device)
        seconds = alternate({name: step}, device, args.warmup, args.repeats)[name]
        del step
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            memory = pool.submit(peak_memory_of, run, settings).result()
        config = MeamtmConfig(**SIZES[args.size], num_labels=10)
        tokens = description["patch_tokens"] + 2
        step_seconds = median(seconds)
        rows[name] = dict(
            dtype=dtype, patchout=run == "meamtm_patchout", patch_tokens=description["patch_tokens"],
            parameters=description["parameters"], cpu_seconds_per_step=step_seconds, cpu_step_seconds_all=seconds,
            cpu_clips_per_second=args.batch_size / step_seconds, cpu_peak_bytes=memory["peak_bytes"],
            memory_measure=memory["measure"], training_flops_per_clip=training_flops_per_clip(config, tokens),
        )
        logger.info(f"{name}: {step_seconds:.2f} s per step of {args.batch_size}, {memory['peak_bytes'] / 2**20:.0f} MiB")
    return rows


def estimate(rows: dict, args: CostModelArguments) -> dict:
    """Adds to each row: the measured CPU FLOP/s, CPU core-hours per epoch, and GPU-hours per epoch from FLOPs."""
    threads = torch.get_num_threads()
    for row in rows.values():
        row["cpu_achieved_flops_per_second"] = row["training_flops_per_clip"] * row["cpu_clips_per_second"]
        row["cpu_core_hours_per_epoch"] = args.clips_per_epoch / row["cpu_clips_per_second"] / 3600 * threads
        epoch_flops = row["training_flops_per_clip"] * args.clips_per_epoch
        row["epoch_flops"] = epoch_flops
        row["gpu_hours_per_epoch"] = {
            gpu: epoch_flops / (peaks[row["dtype"]] * args.utilisation) / 3600 for gpu, peaks in GPUS.items()
        }
    ast = AST_PUBLISHED
    return dict(
        ast_published=dict(ast, gpu_hours_total=ast["gpus"] * ast["days"] * 24,
                           gpu_hours_per_epoch=ast["gpus"] * ast["days"] * 24 / ast["epochs"]),
        assumptions=[
            f"Per-step time and memory are measured on this CPU ({threads} threads), batch {args.batch_size}; "
            "nothing here ran on a GPU.",
            f"GPU-hours = epoch FLOPs / (dense peak FLOP/s x {args.utilisation:.0%} utilisation); the peaks are "
            "data-sheet numbers, the utilisation an assumption (transformer training commonly reaches 30-50 % of "
            "peak at batch sizes that fill the GPU).",
            "FLOPs count the transformer's matrix products (training_flops_per_clip); the frontend, the data "
            "loader and decoding FLAC are left out and assumed to overlap with the GPU's work.",
            f"An epoch is {args.clips_per_epoch:,} clips of 10.24 s; balanced sampling draws as many per pass.",
            "AST's published cost is wall-clock on its own (older) GPUs with its own data pipeline (stored features); "
            "it is shown for scale, not as a measured comparison.",
        ],
        configurations=rows,
    )


def markdown_of(report: dict) -> str:
    gpus = list(GPUS)
    lines = [
        f"# Cost of one AudioSet epoch ({report['clips_per_epoch']:,} clips), `{report['size']}` transformer",
        "",
        f"Measured on {report['machine']}, {report['machine_settings']['torch_threads']} threads, {report['date']}; "
        f"batch {report['batch_size']}; GPU columns are estimates from FLOPs (`python scripts/cost_model.py`).",
        "",
        "| configuration | patch tokens | TFLOP / clip (train) | CPU s / step | CPU peak MiB | CPU GFLOP/s | "
        + " | ".join(f"{gpu} GPU-h / epoch (est.)" for gpu in gpus) + " |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(gpus),
    ]
    for name, row in report["configurations"].items():
        lines.append(
            f"| {name} | {row['patch_tokens']} | {row['training_flops_per_clip'] / 1e12:.3f} | "
            f"{row['cpu_seconds_per_step']:.2f} | {row['cpu_peak_bytes'] / 2**20:,.0f} | "
            f"{row['cpu_achieved_flops_per_second'] / 1e9:.0f} | "
            + " | ".join(f"{row['gpu_hours_per_epoch'][gpu]:,.1f}" for gpu in gpus) + " |"
        )
    ast = report["ast_published"]
    lines += [
        "",
        f"AST, published: about {ast['days']} days on {ast['gpus']} GPUs for {ast['epochs']} epochs = "
        f"{ast['gpu_hours_total']} GPU-hours, {ast['gpu_hours_per_epoch']:.0f} GPU-hours per epoch.",
        "",
        "Assumptions:",
        "",
        *[f"- {line}" for line in report["assumptions"]],
        "",
    ]
    return "\n".join(lines)


def readme_of(report: dict) -> dict:
    """The README table: per configuration, the measured CPU step and the estimated GPU-hours per epoch."""
    gpus = list(GPUS)
    rows = [
        [name, row["patch_tokens"], f"{row['cpu_seconds_per_step']:.1f}", f"{row['cpu_peak_bytes'] / 2**20:,.0f}"]
        + [f"{row['gpu_hours_per_epoch'][gpu]:,.1f}" for gpu in gpus]
        for name, row in report["configurations"].items()
    ]
    ast = report["ast_published"]
    return readme_table(
        f"Cost of one AudioSet epoch ({report['clips_per_epoch']:,} clips), AST-base geometry",
        "scripts/cost_model.py", "python scripts/cost_model.py",
        ["configuration", "patch tokens", f"CPU s / step (batch {report['batch_size']})", "CPU peak MiB"]
        + [f"{gpu} GPU-h (estimate)" for gpu in gpus],
        rows, order=60, machine=report["machine"], date=report["date"],
        notes=[f"GPU-hours are estimates from FLOPs at {report['utilisation']:.0%} of data-sheet peak, not "
               f"measurements (one GPU step, at batch 8, is in results/benchmark_cuda.md). AST as published: about {ast['gpu_hours_per_epoch']:.0f} "
               "GPU-hours per epoch. Assumptions: [results/cost_model.md](results/cost_model.md)."],
    )


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(CostModelArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if args.tables_only:
        report = json.loads((Path(args.output_dir) / "cost_model.json").read_text())
    else:
        report = estimate(measure(args), args)
        report.update(size=args.size, batch_size=args.batch_size, utilisation=args.utilisation,
                      clips_per_epoch=args.clips_per_epoch, date=current_date(), machine=machine_description(),
                      machine_settings=machine_of(torch.device("cpu")))
    report.pop("readme", None)
    if args.readme:
        report["readme"] = readme_of(report)
    write_result_file(Path(args.output_dir) / "cost_model.json", report, markdown_of(report))
    print(markdown_of(report))
    return report


if __name__ == "__main__":
    main()
