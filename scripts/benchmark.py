"""MEAMTM against transformers' AST (`ASTForAudioClassification` fed by `ASTFeatureExtractor`), in one run.

    python scripts/benchmark.py                                   # CPU, small transformer, AST's 10 s geometry
    python scripts/benchmark.py --device cuda --size base --dtype bfloat16   # the real AST-base on a GPU
    python scripts/benchmark.py --quick                           # tiny sizes: checks the script (CI)
    python scripts/benchmark.py --size base --sections varlen_inference varlen_training   # padding_mode="longest"

Four default sections, each timing the two contenders alternately after a warm-up and reporting medians:
frontend throughput (10 s clips, batch 32), training step (time; peak memory measured in a separate
process per configuration), storage of a training-ready FSDD, and `pipeline("audio-classification")`
inference on the same (converted) weights; two more when named in `--sections`: `varlen_inference` (the
pipeline per clip length, MEAMTM `padding_mode="longest"` against the same MEAMTM in "max_length" and AST) and
`varlen_training` ("longest" against "max_length": a step on one random mixed-length batch, and the steps of
batches sampled from one epoch grouped by length, as `group_by_length` trains). Writes `benchmark.json` and
`benchmark.md` to `--output_dir` (results/) and prints the Markdown. Goals are checked and reported as met or not;
nothing is tuned to meet them.
"""

import os


# Interleaving numpy (OpenBLAS) and torch (OpenMP) work in one process on a few cores makes their thread
# pools spin against each other: measured on 2 cores, either side ran 2-10x slower right after the other.
# Single-threaded OpenBLAS (the numpy filter bank does small per-clip products, in a Python loop over
# frames) removes that. It must be set before numpy loads; set it yourself to override. OpenMP keeps its
# defaults, as users run it: `OMP_WAIT_POLICY=PASSIVE`, which this script once set, puts torch's threads to
# sleep after every operation and made MEAMTM's frontend 4x slower (10.3 against 2.65 ms per clip, with the
# numpy path unchanged at 17.9 against 17.4 ms).
THREAD_SETTINGS = {"OPENBLAS_NUM_THREADS": "1"}
REPORTED_ENVIRONMENT = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")
for _name, _value in THREAD_SETTINGS.items():
    os.environ.setdefault(_name, _value)

import copy
import ctypes
import logging
import multiprocessing
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch.utils import benchmark as torch_benchmark
import transformers
from transformers import (
    ASTConfig,
    ASTFeatureExtractor,
    ASTForAudioClassification,
    HfArgumentParser,
    pipeline,
)
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.models.audio_spectrogram_transformer import feature_extraction_audio_spectrogram_transformer

from meamtm.training.results import readme_table, write_result_file  # noqa: E402
from meamtm import MeamtmConfig, MeamtmFeatureExtractor, MeamtmForAudioClassification, MeamtmFrontend
from meamtm.convert.checkpoints import ast_to_meamtm_state_dict, config_from_ast


logger = logging.getLogger("benchmark")

# Transformer sizes; "small" and "base" keep AST's 10.24 s geometry (1024 frames x 128 mels, 1212 patches).
SIZES = {
    "tiny": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        num_mel_bins=32, max_length=64, patch_size=8, frequency_stride=6, time_stride=6,
    ),
    "small": dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=768),
    "base": {},  # ASTConfig's defaults: 768 wide, 12 layers, 12 heads
}
NUM_LABELS = 10
SAMPLING_RATE = 16000
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
SECTIONS = ("frontend", "training", "storage", "inference", "varlen_inference", "varlen_training")
# The variable-length sections (padding_mode="longest") run when named in --sections.
DEFAULT_SECTIONS = ("frontend", "training", "storage", "inference")
# Mixed-length training batches: clip durations (seconds) drawn uniformly in a range, in a model whose window is
# the range's top (FSDD-like keywords in a 1 s model; AudioSet-like clips in AST's 10 s model).
VARLEN_TRAINING_CASES = {"short": (0.3, 1.0, 100), "long": (1.0, 10.0, 1024)}  # (min s, max s, max_length)
TRAINING_RUNS = ("meamtm", "meamtm_patchout", "ast")
DEFAULT_FSDD = os.environ.get("MEAMTM_FSDD", str(Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"))


@dataclass
class BenchmarkArguments:
    device: str = field(default="cpu", metadata={"help": "cpu or cuda."})
    size: str = field(default="small", metadata={"help": "Transformer size: " + ", ".join(SIZES)})
    quick: bool = field(default=False, metadata={"help": "Tiny sizes and few repeats, to check the script."})
    dtype: str = field(default="float32", metadata={"help": "Autocast dtype of both transformers: float32 or bfloat16."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "Attention of both models (sdpa, eager)."})
    frontend_batch_size: int = 32
    train_batch_size: int = 8
    inference_batch_size: int = 8
    inference_clips: int = 16
    warmup: int = 1
    repeats: int = field(default=3, metadata={"help": "Timed rounds per section (medians are reported)."})
    frontend_repeats: int = field(
        default=7,
        metadata={"help": "Timed rounds of the frontend section (under a second each: more rounds keep one slow round "
                  "on a shared machine from moving the median)."},
    )
    fixed_mmap_threshold: bool = field(
        default=True,
        metadata={"help": "CPU peak memory with glibc malloc's mmap threshold fixed, so RSS follows live memory."},
    )
    patchout_time: float = field(default=0.4, metadata={"help": "Structured patchout of the time columns (PaSST: 40 of 99)."})
    patchout_frequency: float = field(default=1 / 3, metadata={"help": "... of the frequency rows (PaSST: 4 of 12)."})
    fsdd_dir: str = field(default=DEFAULT_FSDD, metadata={"help": "Free Spoken Digit Dataset (audiofolder layout)."})
    storage_split: str = "test"
    storage_clips: int | None = field(default=None, metadata={"help": "Use only this many clips of the split."})
    sections: list[str] = field(
        default_factory=lambda: list(DEFAULT_SECTIONS),
        metadata={"help": f"Sections to measure: {', '.join(SECTIONS)} (the last two only when named)."},
    )
    varlen_clip_seconds: list[float] = field(
        default_factory=lambda: [1.0, 5.0, 10.0],
        metadata={"help": "varlen_inference: clip durations, each a batch of --inference_batch_size clips."},
    )
    varlen_training_size: str = field(
        default="small", metadata={"help": "varlen_training: transformer size (the window is set per case)."}
    )
    varlen_epoch_clips: int = field(
        default=1600,
        metadata={"help": "varlen_training: clips in the length-grouped epoch (1600: mega-batches of 50 batches of 8, "
                  "as transformers' LengthGroupedSampler forms them for a data set of that size or more)."},
    )
    varlen_epoch_batches: int = field(
        default=16, metadata={"help": "varlen_training: batches of that epoch timed, sampled evenly through it."}
    )
    output_dir: str = field(default="results", metadata={"help": "Where NAME.json and NAME.md go."})
    name: str = field(
        default="benchmark",
        metadata={"help": "File name of the report: one name per set of sections, so that runs of other sections "
                  "do not overwrite it (e.g. benchmark_variable_length for the variable-length sections)."},
    )

    def __post_init__(self):
        if self.quick:
            self.size, self.repeats, self.frontend_repeats = "tiny", 2, 2
            self.frontend_batch_size, self.train_batch_size = 8, 4
            self.inference_batch_size, self.inference_clips = 4, 8
            self.storage_clips = self.storage_clips or 16
            self.varlen_training_size = "tiny"
            self.varlen_epoch_clips, self.varlen_epoch_batches = 64, 4
        for name, value, allowed in (
            ("size", self.size, SIZES), ("dtype", self.dtype, DTYPES), ("device", self.device, ("cpu", "cuda")),
        ):
            if value not in allowed:
                raise ValueError(f"--{name} {value!r} is not one of {', '.join(allowed)}.")
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise ValueError(f"Unknown --sections {sorted(unknown)}: choose from {', '.join(SECTIONS)}.")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda, but torch sees no CUDA device: run on a GPU machine or use --device cpu.")

    @property
    def geometry(self) -> dict:
        return SIZES[self.size]

    @property
    def autocast_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def fresh_processes(quick: bool):
    """The multiprocessing context of the memory measurements, each in a new process. A full run spawns them: a new
    interpreter, nothing inherited. `--quick`, which checks the script, forks them from a server that has imported
    torch and transformers and run nothing, which starts one in a fraction of the seconds an import takes; its
    peaks read a few MiB higher, so quick numbers compare only with each other."""
    if not quick or "forkserver" not in multiprocessing.get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload(["torch", "transformers", "meamtm"])
    return context


# ---------------------------------------------------------------------------------------------- timing


def alternate(runs: dict[str, Callable[[], object]], device: torch.device, warmup: int, repeats: int) -> dict:
    """Seconds per call of each run: `warmup` untimed rounds, then `repeats` rounds in alternating order.

    Each call is timed by `torch.utils.benchmark.Timer` (which synchronises CUDA around it), with the thread
    count the process runs at rather than the Timer's default of one.
    """
    for _ in range(warmup):
        for run in runs.values():
            run()
    timers = {
        name: torch_benchmark.Timer(stmt="run()", globals={"run": run}, num_threads=torch.get_num_threads())
        for name, run in runs.items()
    }
    seconds = {name: [] for name in runs}
    for round_index in range(repeats):
        # Reverse the order every other round so that drift (heat, other load) does not favour one run.
        for name in list(runs) if round_index % 2 == 0 else list(reversed(runs)):
            seconds[name].append(timers[name].timeit(1).raw_times[0])
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values)


def synthetic_clips(count: int, num_samples: int, seed: int = 0) -> np.ndarray:
    """`(count, num_samples)` float32 noise at -20 dBFS: content does not change the cost of either pipeline."""
    return (0.1 * np.random.default_rng(seed).standard_normal((count, num_samples))).astype(np.float32)


def ast_feature_extractor(geometry: dict) -> ASTFeatureExtractor:
    config = ASTConfig(**geometry)
    return ASTFeatureExtractor(num_mel_bins=config.num_mel_bins, max_length=config.max_length)


def torchaudio_importable() -> bool:
    try:
        import torchaudio.compliance.kaldi  # noqa: F401
    except Exception:  # missing, or built for another torch: either way AST cannot use it
        return False
    return True


@contextmanager
def ast_numpy_path():
    """Make `ASTFeatureExtractor` use its numpy filter bank even where torchaudio is importable."""
    with mock.patch.object(feature_extraction_audio_spectrogram_transformer, "is_speech_available", lambda: False):
        yield


def ast_feature_path() -> str:
    return "torchaudio" if feature_extraction_audio_spectrogram_transformer.is_speech_available() else "numpy"


def autocast(args: BenchmarkArguments):
    if args.autocast_dtype == torch.float32:
        return nullcontext()
    return torch.autocast(args.device, dtype=args.autocast_dtype)


# -------------------------------------------------------------------------------------------- frontend


def measure_frontend(args: BenchmarkArguments, device: torch.device) -> dict:
    """Clips per second of MEAMTM's frontend vs `ASTFeatureExtractor` on `frontend_batch_size` full-length clips."""
    config = MeamtmConfig(**args.geometry)
    clips = synthetic_clips(args.frontend_batch_size, config.num_samples)
    frontend = MeamtmFrontend(config).to(device).eval()
    waveforms = torch.from_numpy(clips).to(device)
    with ast_numpy_path():
        numpy_extractor = ast_feature_extractor(args.geometry)

    def ours():
        with torch.no_grad():
            return frontend(waveforms)

    def ast_numpy():
        with ast_numpy_path():
            return numpy_extractor(list(clips), sampling_rate=SAMPLING_RATE, return_tensors="np")["input_values"]

    runs = {"meamtm_frontend": ours, "ast_numpy": ast_numpy}
    on_device = {"meamtm_frontend"}
    differences = {}
    torchaudio_note = "measured"
    if device.type != "cpu":
        # On an accelerator "auto" picks the convolution back end; the FFT one is timed beside it.
        fft_frontend = MeamtmFrontend(MeamtmConfig(**args.geometry, stft_backend="fft")).to(device).eval()

        def ours_fft():
            with torch.no_grad():
                return fft_frontend(waveforms)

        runs["meamtm_frontend_fft"] = ours_fft
        on_device.add("meamtm_frontend_fft")
    if torchaudio_importable():
        torchaudio_extractor = ast_feature_extractor(args.geometry)
        runs["ast_torchaudio"] = lambda: torchaudio_extractor(list(clips), sampling_rate=SAMPLING_RATE, return_tensors="np")
        if device.type != "cpu":
            runs["ast_kaldi_on_device"] = lambda: kaldi_features_on_device(waveforms, numpy_extractor)
            on_device.add("ast_kaldi_on_device")
    else:
        torchaudio_note = "not measured: torchaudio is not importable here (no release for this torch)"
    reference = ast_numpy()
    for name in sorted(on_device):
        differences[name] = float(np.abs(runs[name]().float().cpu().numpy() - reference).max())
    difference = differences["meamtm_frontend"]
    seconds = alternate(runs, device, args.warmup, args.frontend_repeats)
    rows = {}
    for name, values in seconds.items():
        batch_seconds = median(values)
        rows[name] = dict(
            ms_per_batch=1000 * batch_seconds,
            ms_per_batch_rounds=[round(1000 * value, 1) for value in values],
            ms_per_clip=1000 * batch_seconds / args.frontend_batch_size,
            clips_per_second=args.frontend_batch_size / batch_seconds,
            device=str(device) if name in on_device else "cpu",
        )
        if name in differences:
            rows[name]["max_abs_difference_to_ast"] = differences[name]
    for row in rows.values():
        row["speedup_vs_ast_numpy"] = row["clips_per_second"] / rows["ast_numpy"]["clips_per_second"]
    return dict(
        batch_size=args.frontend_batch_size,
        clip_seconds=config.num_samples / SAMPLING_RATE,
        max_abs_difference_to_ast=difference,
        torchaudio=torchaudio_note,
        stft_backend=frontend.backend_for(waveforms),
        runs=rows,
    )


def kaldi_features_on_device(waveforms: torch.Tensor, extractor: ASTFeatureExtractor) -> torch.Tensor:
    """AST's features computed by torchaudio's Kaldi filter bank on the waveforms' device, one clip at a time.

    What a torch-backend `ASTFeatureExtractor` on a GPU would run: `_extract_fbank_features`'s torchaudio call
    on device tensors, then AST's padding to `max_length` and normalisation.
    """
    import torchaudio.compliance.kaldi as ta_kaldi

    features = []
    for clip in waveforms:
        fbank = ta_kaldi.fbank(
            clip[None], sample_frequency=extractor.sampling_rate, window_type="hanning",
            num_mel_bins=extractor.num_mel_bins,
        )[: extractor.max_length]
        fbank = torch.nn.functional.pad(fbank, (0, 0, 0, extractor.max_length - fbank.shape[0]))
        features.append((fbank - extractor.mean) / (extractor.std * 2))
    return torch.stack(features)


# -------------------------------------------------------------------------------------------- training


def training_step(name: str, settings: dict, device: torch.device) -> tuple[Callable[[], None], dict]:
    """One optimiser step of configuration `name` on a fixed batch of waveforms, and a description of it."""
    args = BenchmarkArguments(**settings)
    geometry = dict(args.geometry, num_labels=NUM_LABELS, attn_implementation=args.attn_implementation)
    torch.manual_seed(0)
    labels = torch.randint(0, NUM_LABELS, (args.train_batch_size,), device=device)
    if name == "ast":
        model = ASTForAudioClassification(ASTConfig(**geometry)).to(device).train()
        extractor = ast_feature_extractor(args.geometry)
        clips = list(synthetic_clips(args.train_batch_size, MeamtmConfig(**args.geometry).num_samples))

        def loss():
            # The AST recipe: features made on the CPU, clip by clip, then moved to the device.
            features = extractor(clips, sampling_rate=SAMPLING_RATE, return_tensors="pt")["input_values"]
            return model(input_values=features.to(device), labels=labels).loss

        description = dict(feature_path=ast_feature_path(), patch_tokens=MeamtmConfig(**args.geometry).num_patches)
    else:
        patchout = dict(patchout_time=args.patchout_time, patchout_frequency=args.patchout_frequency)
        config = MeamtmConfig(**geometry, **(patchout if name == "meamtm_patchout" else {}))
        model = MeamtmForAudioClassification(config).to(device).train()
        waveforms = torch.from_numpy(synthetic_clips(args.train_batch_size, config.num_samples)).to(device)

        def loss():
            return model(input_values=waveforms, labels=labels).loss

        description = dict(patch_tokens=config.num_training_patches)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        with autocast(args):
            value = loss()
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    description.update(
        attn_implementation=model.config._attn_implementation,
        parameters=sum(parameter.numel() for parameter in model.parameters()),
    )
    return step, description


def resident_memory() -> tuple[int, int]:
    """(current, peak) resident set size of this process in bytes, from /proc (Linux)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


# glibc's malloc raises its mmap threshold each time it frees a large mapped block (up to 32 MiB); after that,
# freed tensors stay in the heap, and peak RSS counts the heap's fragmentation too: the same configuration's
# peak moved by 30-60 MiB from one process to the next, in either direction. With the threshold fixed
# (mallopt, which also stops the adjustment) every tensor above it gets its own mapping, returned when freed,
# so peak RSS follows the memory the step needs (as max_memory_allocated does on a GPU), to within 1 MiB.
M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
FIXED_MMAP_THRESHOLD = 128 * 1024  # glibc's initial value


def fix_mmap_threshold() -> bool:
    """Fix glibc malloc's mmap threshold in this process; False where that is not possible (no glibc)."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, FIXED_MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


def peak_memory_of(name: str, settings: dict, make_step: Callable = training_step) -> dict:
    """Runs in a fresh process: peak memory of two training steps of one configuration (`make_step(name, ...)`).

    On CPU: the peak RSS above the RSS after imports, with malloc's mmap threshold fixed (unless
    `--fixed_mmap_threshold false`). Importing torch and transformers has a transient peak larger than a
    tiny model's whole step, so the kernel's high-water mark is reset first (clear_refs 5).
    """
    args = BenchmarkArguments(**settings)
    device = torch.device(args.device)
    measure = "peak RSS above the RSS after imports"
    if device.type == "cpu":
        if args.fixed_mmap_threshold and fix_mmap_threshold():
            measure += f", glibc malloc's mmap threshold fixed at {FIXED_MMAP_THRESHOLD // 1024} KiB"
        else:
            measure += ", default allocator settings"
        Path("/proc/self/clear_refs").write_text("5")
        baseline, _ = resident_memory()
    step, _ = make_step(name, settings, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return dict(peak_bytes=torch.cuda.max_memory_allocated(device), measure="torch.cuda.max_memory_allocated")
    _, peak = resident_memory()
    return dict(peak_bytes=peak - baseline, process_peak_rss_bytes=peak, measure=measure)


def measure_training(args: BenchmarkArguments, device: torch.device) -> dict:
    settings = asdict(args)
    steps, descriptions = {}, {}
    for name in TRAINING_RUNS:
        steps[name], descriptions[name] = training_step(name, settings, device)
    seconds = alternate(steps, device, args.warmup, args.repeats)
    del steps
    # A fresh process per measurement, so no configuration inherits another's peak; each configuration is
    # measured `repeats` times, alternating, and the median is reported with the spread.
    samples = {name: [] for name in TRAINING_RUNS}
    for _ in range(args.repeats):
        for name in TRAINING_RUNS:
            with ProcessPoolExecutor(max_workers=1, mp_context=fresh_processes(args.quick)) as pool:
                samples[name].append(pool.submit(peak_memory_of, name, settings).result())
    memory = {}
    for name, measured in samples.items():
        peaks = sorted(sample["peak_bytes"] for sample in measured)
        memory[name] = dict(measured[0], peak_bytes=median(peaks), peak_bytes_min=peaks[0], peak_bytes_max=peaks[-1])
        if "process_peak_rss_bytes" in measured[0]:
            memory[name]["process_peak_rss_bytes"] = median([sample["process_peak_rss_bytes"] for sample in measured])
    rows = {}
    for name in TRAINING_RUNS:
        step_seconds = median(seconds[name])
        rows[name] = dict(
            descriptions[name],
            ms_per_step=1000 * step_seconds,
            clips_per_second=args.train_batch_size / step_seconds,
            **memory[name],
        )
    for row in rows.values():
        row["throughput_vs_ast"] = row["clips_per_second"] / rows["ast"]["clips_per_second"]
        row["memory_vs_ast"] = row["peak_bytes"] / rows["ast"]["peak_bytes"]
    frontend_seconds = frontend_share(args, device)
    rows["meamtm"]["frontend_share_of_step"] = frontend_seconds / median(seconds["meamtm"])
    return dict(batch_size=args.train_batch_size, dtype=args.dtype, memory_repeats=args.repeats, runs=rows)


def frontend_share(args: BenchmarkArguments, device: torch.device) -> float:
    """Median seconds of MEAMTM's frontend on one training batch (the GPU goal: under 2% of a step)."""
    config = MeamtmConfig(**args.geometry)
    frontend = MeamtmFrontend(config).to(device)
    waveforms = torch.from_numpy(synthetic_clips(args.train_batch_size, config.num_samples)).to(device)
    return median(alternate({"frontend": lambda: frontend(waveforms)}, device, args.warmup, args.repeats)["frontend"])


# --------------------------------------------------------------------------------------------- storage


def directory_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def measure_storage(args: BenchmarkArguments) -> dict:
    """Bytes on disk (`save_to_disk`) of a training-ready FSDD split: decoded audio vs AST features."""
    from datasets import Audio, load_dataset

    if not (Path(args.fsdd_dir) / args.storage_split).is_dir():
        raise FileNotFoundError(
            f"No FSDD split {args.storage_split!r} under --fsdd_dir {args.fsdd_dir}: point it at the dataset "
            "(audiofolder layout) or leave 'storage' out of --sections."
        )
    workspace = Path(tempfile.mkdtemp(prefix="meamtm-benchmark-"))
    try:
        dataset = load_dataset(
            "audiofolder", data_dir=args.fsdd_dir, split=args.storage_split, cache_dir=str(workspace / "cache")
        )
        if args.storage_clips:
            dataset = dataset.select(range(min(args.storage_clips, len(dataset))))
        dataset = dataset.cast_column("audio", Audio(sampling_rate=SAMPLING_RATE))
        ours = MeamtmFeatureExtractor.from_model_config(MeamtmConfig(**args.geometry))
        theirs = ast_feature_extractor(args.geometry)
        recipes = {
            "meamtm_decoded_audio": lambda batch: ours(
                # No mask: it is all ones for an unpadded clip, and the collator makes it when it pads.
                [audio["array"] for audio in batch["audio"]], sampling_rate=SAMPLING_RATE, padding=False,
                return_attention_mask=False,
            ),
            "ast_features": lambda batch: theirs(
                [audio["array"] for audio in batch["audio"]], sampling_rate=SAMPLING_RATE
            ),
        }
        rows = {}
        for name, recipe in recipes.items():
            start = time.perf_counter()
            prepared = dataset.map(recipe, batched=True, batch_size=32, remove_columns=["audio"])
            prepared.save_to_disk(str(workspace / name))
            rows[name] = dict(
                bytes=directory_bytes(workspace / name),
                seconds_to_prepare=time.perf_counter() - start,
                columns=list(prepared.features),
            )
        ratio = rows["ast_features"]["bytes"] / rows["meamtm_decoded_audio"]["bytes"]
        return dict(split=args.storage_split, clips=len(dataset), ast_over_meamtm=ratio, runs=rows)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


# ------------------------------------------------------------------------------------------- inference


def converted_pair(args: BenchmarkArguments):
    """A randomly initialised AST and the MEAMTM converted from it (same weights), with their extractors."""
    torch.manual_seed(0)
    ast_config = ASTConfig(**args.geometry, num_labels=NUM_LABELS, attn_implementation=args.attn_implementation)
    ast = ASTForAudioClassification(ast_config).eval()
    ast_extractor = ast_feature_extractor(args.geometry)
    config = config_from_ast(ast_config, ast_extractor, attn_implementation=args.attn_implementation)
    model = MeamtmForAudioClassification(config).eval()
    model.load_state_dict(ast_to_meamtm_state_dict(ast.state_dict()))
    return (model, MeamtmFeatureExtractor.from_model_config(config)), (ast, ast_extractor)


def measure_inference(args: BenchmarkArguments, device: torch.device) -> dict:
    (model, extractor), (ast, ast_extractor) = converted_pair(args)
    dtype = args.autocast_dtype
    pipelines = {
        name: pipeline(
            "audio-classification", model=net.to(dtype), feature_extractor=fe, device=device,
            batch_size=args.inference_batch_size,
        )
        for name, net, fe in (("meamtm", model, extractor), ("ast", ast, ast_extractor))
    }
    clips = list(synthetic_clips(args.inference_clips, model.config.num_samples, seed=1))
    predictions = {}

    def classify(name):
        predictions[name] = [result[0]["label"] for result in pipelines[name](clips, top_k=1)]

    seconds = alternate({name: (lambda name=name: classify(name)) for name in pipelines}, device, args.warmup, args.repeats)
    rows = {
        name: dict(clips_per_second=args.inference_clips / median(values), feature_path=feature_path)
        for (name, values), feature_path in zip(seconds.items(), ("in the model", ast_feature_path()))
    }
    for row in rows.values():
        row["speedup_vs_ast"] = row["clips_per_second"] / rows["ast"]["clips_per_second"]
    agreement = np.mean([left == right for left, right in zip(predictions["meamtm"], predictions["ast"])])
    return dict(
        batch_size=args.inference_batch_size,
        clips=args.inference_clips,
        same_top1_as_ast=float(agreement),
        runs=rows,
    )


# --------------------------------------------------------------------------------- variable-length input


VARLEN_PIPELINES = ("meamtm_longest", "meamtm_max_length", "ast")


def varlen_pipelines(args: BenchmarkArguments, device: torch.device) -> dict:
    """`pipeline("audio-classification")` of AST and of the MEAMTM converted from it, in `padding_mode="longest"`
    and in `"max_length"` (two copies of the same weights), by the names of `VARLEN_PIPELINES`."""
    (model, extractor), (ast, ast_extractor) = converted_pair(args)
    longest = copy.deepcopy(model)
    longest.config.padding_mode = "longest"
    models = {"meamtm_longest": (longest, extractor), "meamtm_max_length": (model, extractor), "ast": (ast, ast_extractor)}
    return {
        name: pipeline(
            "audio-classification", model=net.to(args.autocast_dtype), feature_extractor=fe, device=device,
            batch_size=args.inference_batch_size,
        )
        for name, (net, fe) in models.items()
    }


def varlen_inference_peak_memory(name: str, seconds: float, settings: dict) -> dict:
    """Runs in a fresh process: peak memory of one pipeline call on a batch of `seconds`-long clips (see
    `peak_memory_of` for the measure)."""
    args = BenchmarkArguments(**settings)
    device = torch.device(args.device)
    fixed = device.type == "cpu" and args.fixed_mmap_threshold and fix_mmap_threshold()
    classifier = varlen_pipelines(args, device)[name]
    clips = list(synthetic_clips(args.inference_batch_size, round(seconds * SAMPLING_RATE), seed=2))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        classifier(clips, top_k=1)
        return dict(peak_bytes=torch.cuda.max_memory_allocated(device), measure="torch.cuda.max_memory_allocated")
    Path("/proc/self/clear_refs").write_text("5")
    baseline, _ = resident_memory()
    classifier(clips, top_k=1)
    _, peak = resident_memory()
    measure = "peak RSS above the RSS before the call (models loaded)"
    return dict(peak_bytes=peak - baseline, measure=measure + (", mmap threshold fixed" if fixed else ""))


def spread_of(values: list[float]) -> float:
    """Round-to-round spread of timings: (slowest - fastest) / median."""
    return (max(values) - min(values)) / median(values)


def measure_varlen_inference(args: BenchmarkArguments, device: torch.device) -> dict:
    """Pipeline throughput and peak memory per clip length: MEAMTM `padding_mode="longest"`, the same MEAMTM in
    `"max_length"` and AST (both pad every clip to the window), same converted weights, one batch of
    `inference_batch_size` clips per length."""
    pipelines = varlen_pipelines(args, device)
    cases = {}
    for seconds in args.varlen_clip_seconds:
        clips = list(synthetic_clips(args.inference_batch_size, round(seconds * SAMPLING_RATE), seed=2))
        labels = {}

        def classify(name, clips=clips, labels=labels):
            labels[name] = [result[0]["label"] for result in pipelines[name](clips, top_k=1)]

        timed = alternate({name: (lambda name=name: classify(name)) for name in pipelines}, device, args.warmup, args.repeats)
        rows = {}
        for name, values in timed.items():
            with ProcessPoolExecutor(max_workers=1, mp_context=fresh_processes(args.quick)) as pool:
                memory = pool.submit(varlen_inference_peak_memory, name, seconds, asdict(args)).result()
            rows[name] = dict(
                clips_per_second=len(clips) / median(values), seconds_per_batch_rounds=[round(v, 3) for v in values],
                spread=spread_of(values), **memory,
            )
        for row in rows.values():
            row["speedup_vs_ast"] = row["clips_per_second"] / rows["ast"]["clips_per_second"]
            row["memory_vs_ast"] = row["peak_bytes"] / rows["ast"]["peak_bytes"]
            row["speedup_vs_max_length"] = row["clips_per_second"] / rows["meamtm_max_length"]["clips_per_second"]
            row["memory_vs_max_length"] = row["peak_bytes"] / rows["meamtm_max_length"]["peak_bytes"]
        agreement = {
            other: float(np.mean([a == b for a, b in zip(labels["meamtm_longest"], labels[other])]))
            for other in ("ast", "meamtm_max_length")
        }
        cases[f"{seconds:g}s"] = dict(
            clip_seconds=seconds, same_top1_as_ast=agreement["ast"],
            longest_same_top1_as_max_length=agreement["meamtm_max_length"], runs=rows,
        )
    return dict(batch_size=args.inference_batch_size, cases=cases)


def varlen_training_model(case: str, padding_mode: str, args: BenchmarkArguments, device: torch.device):
    """The training model of a `VARLEN_TRAINING_CASES` case (its window set by the case), in train mode, with AdamW."""
    _, _, max_length = VARLEN_TRAINING_CASES[case]
    config = MeamtmConfig(
        **dict(SIZES[args.varlen_training_size], max_length=max_length), num_labels=NUM_LABELS, pooling="mean",
        padding_mode=padding_mode, attn_implementation=args.attn_implementation,
    )
    torch.manual_seed(0)
    model = MeamtmForAudioClassification(config).to(device).train()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4)


def padded_batch(lengths: np.ndarray, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise clips of `lengths` samples, zero-padded to the longest (as `AudioCollator` pads): waveforms
    `(batch, max(lengths))` and their mask."""
    waveforms = torch.from_numpy(synthetic_clips(len(lengths), int(lengths.max()), seed=seed)).to(device)
    mask = torch.arange(waveforms.shape[1], device=device)[None, :] < torch.from_numpy(lengths).to(device)[:, None]
    return waveforms * mask, mask.long()


def training_step_of(model, optimizer, args: BenchmarkArguments) -> Callable:
    """`step(waveforms, mask, labels)`: one AdamW step of `model` under the run's autocast."""

    def step(waveforms, mask, labels):
        with autocast(args):
            loss = model(input_values=waveforms, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def varlen_training_step(name: str, settings: dict, device: torch.device) -> tuple[Callable[[], None], dict]:
    """One AdamW step on a random mixed-length batch; `name` is `<case>_<padding_mode>` (`VARLEN_TRAINING_CASES`)."""
    args = BenchmarkArguments(**settings)
    case, padding_mode = name.split("_", 1)
    low, high, _ = VARLEN_TRAINING_CASES[case]
    model, optimizer = varlen_training_model(case, padding_mode, args, device)
    config = model.config
    rng = np.random.default_rng(3)
    lengths = np.minimum(
        np.round(rng.uniform(low, high, args.train_batch_size) * SAMPLING_RATE).astype(int), config.num_samples
    )
    waveforms, mask = padded_batch(lengths, device, seed=0)
    labels = torch.randint(0, NUM_LABELS, (args.train_batch_size,), device=device)
    train_step = training_step_of(model, optimizer, args)

    description = dict(
        window_seconds=config.num_samples / SAMPLING_RATE,
        clip_seconds=[round(length / SAMPLING_RATE, 2) for length in lengths.tolist()],
        real_over_padded_audio=float(lengths.sum() / (len(lengths) * config.num_samples)),
        longest_over_window=float(lengths.max() / config.num_samples),
        # What one batch can save at most: the patch columns of its longest clip over the grid's.
        longest_columns_over_grid=config.num_patch_columns_of(config.num_frames_of(int(lengths.max())))
        / config.patch_grid[1],
    )
    return (lambda: train_step(waveforms, mask, labels)), description


def epoch_batches(case: str, args: BenchmarkArguments, window: int) -> tuple[list[np.ndarray], dict]:
    """The clip lengths (samples) of `varlen_epoch_batches` batches sampled evenly from one epoch of
    `varlen_epoch_clips` clips of the case's lengths, in the order of transformers' `LengthGroupedSampler` (what
    `MeamtmTrainer` uses for `train_sampling_strategy="group_by_length"`), and a description of them.

    The sampler permutes the clips, sorts each mega-batch of up to 50 batches by length and batches them in that
    order; only whole batches are sampled.
    """
    low, high, _ = VARLEN_TRAINING_CASES[case]
    rng = np.random.default_rng(4)
    lengths = np.minimum(np.round(rng.uniform(low, high, args.varlen_epoch_clips) * SAMPLING_RATE).astype(int), window)
    sampler = LengthGroupedSampler(
        args.train_batch_size, lengths=lengths.tolist(), generator=torch.Generator().manual_seed(0)
    )
    order = np.fromiter(iter(sampler), dtype=int)
    epoch = [lengths[order[start : start + args.train_batch_size]]
             for start in range(0, len(order) - args.train_batch_size + 1, args.train_batch_size)]
    picks = np.unique(np.round(np.linspace(0, len(epoch) - 1, min(args.varlen_epoch_batches, len(epoch)))).astype(int))
    batches = [epoch[index] for index in picks]

    def real_over_padded(group):
        return float(sum(batch.sum() for batch in group) / (window * sum(len(batch) for batch in group)))

    description = dict(
        clips_in_epoch=len(lengths),
        batches_in_epoch=len(epoch),
        batches_timed=[int(index) for index in picks],
        real_over_padded_audio=real_over_padded(batches),
        epoch_real_over_padded_audio=real_over_padded(epoch),
        # What grouping leaves: each batch padded to its longest clip, over the window.
        padded_to_longest_over_window=float(
            sum(batch.max() * len(batch) for batch in batches) / (window * sum(map(len, batches)))
        ),
        clip_seconds_range=[float(lengths.min() / SAMPLING_RATE), float(lengths.max() / SAMPLING_RATE)],
    )
    return batches, description


def varlen_epoch_steps(name: str, settings: dict, device: torch.device) -> tuple[list[Callable[[], None]], dict]:
    """One AdamW step per sampled batch of a length-grouped epoch (`epoch_batches`); `name` is
    `<case>_<padding_mode>`. Every mode gets the same batches, padded to their longest clip."""
    args = BenchmarkArguments(**settings)
    case, padding_mode = name.split("_", 1)
    model, optimizer = varlen_training_model(case, padding_mode, args, device)
    batches, description = epoch_batches(case, args, model.config.num_samples)
    train_step = training_step_of(model, optimizer, args)
    generator = torch.Generator().manual_seed(0)
    steps = []
    for index, lengths in enumerate(batches):
        waveforms, mask = padded_batch(lengths, device, seed=index)
        labels = torch.randint(0, NUM_LABELS, (len(lengths),), generator=generator).to(device)
        steps.append(lambda waveforms=waveforms, mask=mask, labels=labels: train_step(waveforms, mask, labels))
    description.update(window_seconds=model.config.num_samples / SAMPLING_RATE)
    return steps, description


def varlen_epoch_peak_memory(name: str, settings: dict) -> dict:
    """Runs in a fresh process: the peak memory of each step of `varlen_epoch_steps(name)` above the memory before
    it (model, optimizer state and batches loaded; one untimed step first allocates AdamW's state). See
    `peak_memory_of` for the measure."""
    args = BenchmarkArguments(**settings)
    device = torch.device(args.device)
    fixed = device.type == "cpu" and args.fixed_mmap_threshold and fix_mmap_threshold()
    steps, _ = varlen_epoch_steps(name, settings, device)
    steps[-1]()
    peaks = []
    for step in steps:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            step()
            torch.cuda.synchronize(device)
            peaks.append(torch.cuda.max_memory_allocated(device) - before)
        else:
            Path("/proc/self/clear_refs").write_text("5")
            before, _ = resident_memory()
            step()
            peaks.append(resident_memory()[1] - before)
    if device.type == "cuda":
        measure = "torch.cuda.max_memory_allocated above the allocation before each step"
    else:
        measure = "peak RSS above the RSS before each step" + (", mmap threshold fixed" if fixed else "")
    return dict(peak_bytes_per_step=peaks, measure=measure)


def measure_varlen_training(args: BenchmarkArguments, device: torch.device) -> dict:
    """Step time and peak memory, `"longest"` against `"max_length"`, with the ideal ratio (real audio over audio
    padded to the window): on one random mixed-length batch per case (`cases`), and over the same batches of one
    length-grouped epoch (`epochs`, `epoch_batches`)."""
    settings = asdict(args)
    modes = ("max_length", "longest")
    cases, epochs = {}, {}
    for case in VARLEN_TRAINING_CASES:
        names = [f"{case}_{mode}" for mode in modes]
        steps, descriptions = {}, {}
        for name in names:
            steps[name], descriptions[name] = varlen_training_step(name, settings, device)
        seconds = alternate(steps, device, args.warmup, args.repeats)
        del steps
        memory = {}
        for name in names:
            with ProcessPoolExecutor(max_workers=1, mp_context=fresh_processes(args.quick)) as pool:
                memory[name] = pool.submit(peak_memory_of, name, settings, varlen_training_step).result()
        fixed, longest = (median(seconds[name]) for name in names)
        cases[case] = dict(
            descriptions[names[0]],
            ms_per_step={"max_length": 1000 * fixed, "longest": 1000 * longest},
            ms_per_step_rounds={mode: [round(1000 * v) for v in seconds[name]] for mode, name in zip(modes, names)},
            peak_bytes={mode: memory[name]["peak_bytes"] for mode, name in zip(modes, names)},
            measure=memory[names[0]]["measure"],
            time_ratio=longest / fixed,
            memory_ratio=memory[names[1]]["peak_bytes"] / memory[names[0]]["peak_bytes"],
        )

        runs, descriptions = {}, {}
        for name in names:
            batch_steps, descriptions[name] = varlen_epoch_steps(name, settings, device)
            runs[name] = lambda batch_steps=batch_steps: [step() for step in batch_steps]
        seconds = alternate(runs, device, args.warmup, args.repeats)
        del runs
        memory = {}
        for name in names:
            with ProcessPoolExecutor(max_workers=1, mp_context=fresh_processes(args.quick)) as pool:
                memory[name] = pool.submit(varlen_epoch_peak_memory, name, settings).result()
        fixed, longest = (median(seconds[name]) for name in names)
        mean_peak = {mode: float(np.mean(memory[name]["peak_bytes_per_step"])) for mode, name in zip(modes, names)}
        largest_peak = {mode: max(memory[name]["peak_bytes_per_step"]) for mode, name in zip(modes, names)}
        description = descriptions[names[0]]
        epochs[case] = dict(
            description,
            seconds={"max_length": fixed, "longest": longest},
            seconds_rounds={mode: [round(v, 3) for v in seconds[name]] for mode, name in zip(modes, names)},
            spread={mode: spread_of(seconds[name]) for mode, name in zip(modes, names)},
            peak_bytes_per_step={mode: memory[name]["peak_bytes_per_step"] for mode, name in zip(modes, names)},
            mean_peak_bytes=mean_peak,
            largest_peak_bytes=largest_peak,
            measure=memory[names[0]]["measure"],
            time_ratio=longest / fixed,
            memory_ratio=mean_peak["longest"] / mean_peak["max_length"],
            largest_memory_ratio=largest_peak["longest"] / largest_peak["max_length"],
        )
    return dict(batch_size=args.train_batch_size, size=args.varlen_training_size, cases=cases, epochs=epochs)


# ----------------------------------------------------------------------------------------------- goals


def goals_of(args: BenchmarkArguments, results: dict) -> list[dict]:
    """Each speed and memory goal with the measured value and whether it is met."""
    goals = []

    def goal(name, measured, target, met):
        goals.append(dict(goal=name, target=target, measured=round(measured, 3), met=bool(met)))

    on_cpu = args.device == "cpu"
    if "frontend" in results and on_cpu:
        speedup = results["frontend"]["runs"]["meamtm_frontend"]["speedup_vs_ast_numpy"]
        goal(f"frontend vs ASTFeatureExtractor numpy, batch {args.frontend_batch_size}", speedup, ">= 8x", speedup >= 8)
    if "training" in results:
        runs = results["training"]["runs"]
        if not on_cpu:
            share = runs["meamtm"]["frontend_share_of_step"]
            goal("frontend share of a training step (GPU)", share, "< 0.02", share < 0.02)
        patchout, plain = runs["meamtm_patchout"], runs["meamtm"]
        goal("training throughput with patchout vs AST", patchout["throughput_vs_ast"], ">= 3x", patchout["throughput_vs_ast"] >= 3)
        goal("peak memory with patchout vs AST", patchout["memory_vs_ast"], "<= 0.5x", patchout["memory_vs_ast"] <= 0.5)
        goal("training throughput without patchout vs AST", plain["throughput_vs_ast"], ">= 1x", plain["throughput_vs_ast"] >= 1)
        goal("peak memory without patchout vs AST", plain["memory_vs_ast"], "<= 1x", plain["memory_vs_ast"] <= 1)
    if "storage" in results:
        ratio = results["storage"]["ast_over_meamtm"]
        goal("storage: AST features / MEAMTM decoded audio", ratio, ">= 3x", ratio >= 3)
    if "inference" in results and on_cpu:
        speedup = results["inference"]["runs"]["meamtm"]["speedup_vs_ast"]
        goal(f"pipeline inference vs AST, batch {args.inference_batch_size}", speedup, ">= 1.2x", speedup >= 1.2)
    if "varlen_inference" in results and on_cpu:
        # Short clips: what "longest" saves against AST. Full 10 s clips fill the window (all but its last
        # column at AST's geometry): there "longest" must cost no more than "max_length", the same weights
        # padded to the window. The target is plain >= 1x; the rounds' spread is reported beside it.
        targets = {1.0: ("ast", 8.0), 5.0: ("ast", 1.8), 10.0: ("max_length", 1.0)}
        for case in results["varlen_inference"]["cases"].values():
            if case["clip_seconds"] not in targets:
                continue
            other, target = targets[case["clip_seconds"]]
            speedup = case["runs"]["meamtm_longest"][f"speedup_vs_{other}"]
            against = "AST" if other == "ast" else "max_length"
            name = f"pipeline, longest vs {against}, {case['clip_seconds']:g} s clips, batch {args.inference_batch_size}"
            goal(name, speedup, f">= {target:g}x", speedup >= target)
    if "varlen_training" in results:
        section = results["varlen_training"]
        # "In proportion to the real audio": within 0.05 of real / padded audio; below 1 alone is not that.
        for case_name, case in section["cases"].items():
            ideal = case["real_over_padded_audio"]
            for measure, ratio in (("step time", case["time_ratio"]), ("peak memory", case["memory_ratio"])):
                goal(f"training {measure}, longest / max_length, random batches of {case_name} clips",
                     ratio, f"~{ideal:.2f} (real / padded audio, within 0.05)", ratio <= ideal + 0.05)
        for case_name, epoch in section.get("epochs", {}).items():
            ideal = epoch["real_over_padded_audio"]
            batches = f"{len(epoch['batches_timed'])} of {epoch['batches_in_epoch']} batches"
            for measure, ratio in (("time", epoch["time_ratio"]), ("mean peak memory per step", epoch["memory_ratio"])):
                goal(f"training {measure}, longest / max_length, one epoch of {case_name} clips grouped by length "
                     f"({batches})", ratio, f"~{ideal:.2f} (real / padded audio, within 0.05)", ratio <= ideal + 0.05)
    return goals


# ---------------------------------------------------------------------------------------------- report


def machine_of(device: torch.device) -> dict:
    machine = dict(
        platform=platform.platform(),
        processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        thread_settings={name: os.environ.get(name, 'unset') for name in REPORTED_ENVIRONMENT},
        torch=torch.__version__,
        transformers=transformers.__version__,
    )
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
    return machine


def mb(value: float) -> str:
    return f"{value / 2**20:,.1f}"


def markdown_of(report: dict) -> str:
    settings, machine = report["settings"], report["machine"]
    lines = [
        "# MEAMTM vs transformers AST",
        "",
        f"Device `{settings['device']}` ({machine.get('gpu', machine['processor'])}, {machine['cpu_count']} CPUs, "
        f"{machine['torch_threads']} torch threads, "
        + ", ".join(f"{name}={value}" for name, value in machine["thread_settings"].items())
        + f"), dtype `{settings['dtype']}`, attention "
        f"`{settings['attn_implementation']}`, size `{settings['size']}` ({report['model']}), "
        f"torch {machine['torch']}, transformers {machine['transformers']}. Medians of {settings['repeats']} "
        f"alternating rounds ({settings['frontend_repeats']} for the frontend) after {settings['warmup']} warm-up "
        "round(s).",
    ]
    if "frontend" in report:
        section = report["frontend"]
        lines += [
            "",
            f"## Frontend: {section['clip_seconds']:.2f} s clips, batch {section['batch_size']}",
            "",
            "| frontend | device | ms / batch | ms / clip | clips / s | vs AST numpy | max abs difference to AST numpy |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for name, row in section["runs"].items():
            difference = row.get("max_abs_difference_to_ast")
            lines.append(
                f"| {name} | {row['device']} | {row['ms_per_batch']:.1f} | {row['ms_per_clip']:.2f} | "
                f"{row['clips_per_second']:.1f} | {row['speedup_vs_ast_numpy']:.2f}x | "
                + ("-" if difference is None else f"{difference:.1e}") + " |"
            )
        lines += [
            "",
            f"MEAMTM STFT back end `{section['stft_backend']}`; max |difference| to AST's features "
            f"{section['max_abs_difference_to_ast']:.1e}. torchaudio path: {section['torchaudio']}. "
            "Rounds (ms / batch): "
            + "; ".join(f"{name} " + ", ".join(f"{value:.0f}" for value in row["ms_per_batch_rounds"])
                        for name, row in section["runs"].items())
            + ".",
        ]
    if "training" in report:
        section = report["training"]
        lines += [
            "",
            f"## Training step: batch {section['batch_size']}, waveforms in, AdamW",
            "",
            "| configuration | patch tokens | ms / step | clips / s | vs AST | peak memory (MiB) | range (MiB) | vs AST |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, row in section["runs"].items():
            tokens = row["patch_tokens"]
            label = {"ast": f"AST + ASTFeatureExtractor ({row.get('feature_path')}) in the loop"}.get(name, name)
            lines.append(
                f"| {label} | {tokens} | {row['ms_per_step']:.0f} | {row['clips_per_second']:.2f} | "
                f"{row['throughput_vs_ast']:.2f}x | {mb(row['peak_bytes'])} | "
                f"{mb(row['peak_bytes_min'])}-{mb(row['peak_bytes_max'])} | {row['memory_vs_ast']:.2f}x |"
            )
        measure = section["runs"]["ast"]["measure"]
        lines += [
            "",
            f"Peak memory: {measure}, median of {section['memory_repeats']} fresh processes per configuration "
            "(alternating)."
            + (
                " Whole-process peak RSS (imports included): "
                + ", ".join(f"{name} {mb(row['process_peak_rss_bytes'])} MiB" for name, row in section["runs"].items())
                + "."
                if "process_peak_rss_bytes" in section["runs"]["ast"]
                else ""
            ),
            f"MEAMTM's frontend takes {100 * section['runs']['meamtm']['frontend_share_of_step']:.1f}% of its training step.",
        ]
    if "storage" in report:
        section = report["storage"]
        lines += [
            "",
            f"## Storage: training-ready FSDD `{section['split']}` split ({section['clips']} clips), `save_to_disk`",
            "",
            "| recipe | MiB on disk | KiB / clip | seconds to prepare |",
            "|---|---:|---:|---:|",
        ]
        for name, row in section["runs"].items():
            lines.append(
                f"| {name} | {mb(row['bytes'])} | {row['bytes'] / 1024 / section['clips']:.1f} | "
                f"{row['seconds_to_prepare']:.1f} |"
            )
        lines += ["", f"AST features take {section['ast_over_meamtm']:.1f}x the space of the decoded audio."]
    if "inference" in report:
        section = report["inference"]
        lines += [
            "",
            f"## Inference: `pipeline(\"audio-classification\")`, batch {section['batch_size']}, "
            f"{section['clips']} clips, same weights",
            "",
            "| model | features | clips / s | vs AST |",
            "|---|---|---:|---:|",
        ]
        for name, row in section["runs"].items():
            lines.append(f"| {name} | {row['feature_path']} | {row['clips_per_second']:.2f} | {row['speedup_vs_ast']:.2f}x |")
        lines += ["", f"Same top-1 label as AST on {100 * section['same_top1_as_ast']:.0f}% of the clips."]
    if "varlen_inference" in report:
        section = report["varlen_inference"]
        lines += [
            "",
            f"## Variable length, inference: `pipeline(\"audio-classification\")`, batch {section['batch_size']}, "
            "MEAMTM `padding_mode=\"longest\"` vs the same MEAMTM in `\"max_length\"` vs AST (both padded to the "
            "window), same weights",
            "",
            "| clips | model | clips / s | vs AST | vs max_length | spread of rounds | peak memory (MiB) | vs AST | "
            "vs max_length |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, case in section["cases"].items():
            for model_name, row in case["runs"].items():
                lines.append(
                    f"| {name} | {model_name} | {row['clips_per_second']:.2f} | {row['speedup_vs_ast']:.2f}x | "
                    f"{row['speedup_vs_max_length']:.2f}x | {100 * row['spread']:.0f}% | {mb(row['peak_bytes'])} | "
                    f"{row['memory_vs_ast']:.2f}x | {row['memory_vs_max_length']:.2f}x |"
                )
        first = next(iter(section["cases"].values()))
        lines += [
            "",
            f"Peak memory: {first['runs']['ast']['measure']}, one fresh process per row. Spread of rounds: (slowest - "
            "fastest) / median of the timed rounds; a ratio closer to 1 than that spread is a tie. "
            "Same top-1 label, longest as AST / as max_length: "
            + ", ".join(
                f"{name} {100 * case['same_top1_as_ast']:.0f}% / {100 * case['longest_same_top1_as_max_length']:.0f}%"
                for name, case in section["cases"].items()
            )
            + " (random weights; `longest` changes a converted checkpoint's logits on short clips: "
            "results/padding_mode_agreement.md).",
        ]
    if "varlen_training" in report:
        section = report["varlen_training"]
        lines += [
            "",
            f"## Variable length, training step on one random batch: size `{section['size']}`, batch "
            f"{section['batch_size']} of mixed-length clips, AdamW",
            "",
            "| clips | window | ms / step max_length | ms / step longest | time ratio | peak MiB max_length | "
            "peak MiB longest | memory ratio | ideal (real / padded audio) | longest clip / window | "
            "patch columns of the longest clip / grid |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, case in section["cases"].items():
            low, high = min(case["clip_seconds"]), max(case["clip_seconds"])
            lines.append(
                f"| {name}: {low:.2f}-{high:.2f} s | {case['window_seconds']:.2f} s | "
                f"{case['ms_per_step']['max_length']:.0f} | {case['ms_per_step']['longest']:.0f} | "
                f"{case['time_ratio']:.2f} | {mb(case['peak_bytes']['max_length'])} | {mb(case['peak_bytes']['longest'])} | "
                f"{case['memory_ratio']:.2f} | {case['real_over_padded_audio']:.2f} | {case['longest_over_window']:.2f} | "
                f"{case.get('longest_columns_over_grid', float('nan')):.2f} |"
            )
        lines += [
            "",
            "A batch in `longest` mode is padded to its longest clip in whole patch columns, so the last column "
            "bounds what one random batch can save.",
        ]
    if "epochs" in report.get("varlen_training", {}):
        section = report["varlen_training"]
        lines += [
            "",
            f"## Variable length, training over one epoch grouped by length: size `{section['size']}`, batch "
            f"{section['batch_size']}, transformers' `LengthGroupedSampler`, AdamW",
            "",
            "| clips | window | batches timed / epoch | s max_length | s longest | time ratio | time ratio / ideal | "
            "mean peak MiB / step max_length | longest | memory ratio | memory ratio / ideal | largest step peak "
            "ratio | ideal (real / padded audio) | padded to each batch's longest / window |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, epoch in section["epochs"].items():
            low, high = epoch["clip_seconds_range"]
            ideal = epoch["real_over_padded_audio"]
            lines.append(
                f"| {name}: {low:.2f}-{high:.2f} s | {epoch['window_seconds']:.2f} s | "
                f"{len(epoch['batches_timed'])} / {epoch['batches_in_epoch']} | {epoch['seconds']['max_length']:.2f} | "
                f"{epoch['seconds']['longest']:.2f} | {epoch['time_ratio']:.2f} | {epoch['time_ratio'] / ideal:.2f} | "
                f"{mb(epoch['mean_peak_bytes']['max_length'])} | {mb(epoch['mean_peak_bytes']['longest'])} | "
                f"{epoch['memory_ratio']:.2f} | {epoch['memory_ratio'] / ideal:.2f} | "
                f"{epoch['largest_memory_ratio']:.2f} | "
                f"{ideal:.2f} | {epoch['padded_to_longest_over_window']:.2f} |"
            )
        first = next(iter(section["epochs"].values()))
        lines += [
            "",
            f"The same batches in both modes, sampled evenly through one epoch of {first['clips_in_epoch']} clips "
            "(`varlen_epoch_clips`), each padded to its longest clip, as `train_sampling_strategy=\"group_by_length\"` "
            "batches them; seconds are the sum of their steps (median of the rounds; spread of rounds "
            + ", ".join(
                f"{name} " + " / ".join(f"{100 * value:.0f}%" for value in epoch["spread"].values())
                for name, epoch in section["epochs"].items()
            )
            + ", max_length / longest). Ideal: the real audio over the same clips padded to the window (whole epoch: "
            + ", ".join(
                f"{name} {epoch['epoch_real_over_padded_audio']:.2f}" for name, epoch in section["epochs"].items()
            )
            + f"). Memory: {first['measure']}, each step in one fresh process per mode; the largest step peak is "
            "the epoch's peak, set by its batch of the longest clips (the sampler puts it first). The fixed part of "
            "a step (weights' gradients, AdamW's update) does not shrink with the audio.",
        ]
    lines += ["", "## Goals", "", "| goal | target | measured | met |", "|---|---|---:|---|"]
    for goal in report["goals"]:
        lines.append(f"| {goal['goal']} | {goal['target']} | {goal['measured']} | {'yes' if goal['met'] else 'NO'} |")
    if settings["quick"]:
        lines += ["", "Quick mode (tiny sizes, memory processes forked from a server): the numbers check the script, not "
                  "the goals."]
    return "\n".join(lines) + "\n"


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses()
    device = torch.device(args.device)
    config = MeamtmConfig(**args.geometry)
    report = dict(
        settings=asdict(args),
        machine=machine_of(device),
        model=f"hidden {config.hidden_size}, {config.num_hidden_layers} layers, {config.num_patches} patches",
    )
    measures = dict(
        frontend=lambda: measure_frontend(args, device),
        training=lambda: measure_training(args, device),
        storage=lambda: measure_storage(args),
        inference=lambda: measure_inference(args, device),
        varlen_inference=lambda: measure_varlen_inference(args, device),
        varlen_training=lambda: measure_varlen_training(args, device),
    )
    for section in SECTIONS:
        if section in args.sections:
            logger.info("measuring %s", section)
            report[section] = measures[section]()
    report["goals"] = goals_of(args, report)
    report["readme"] = readme_of(args, report)
    markdown = markdown_of(report)
    write_result_file(Path(args.output_dir) / f"{args.name}.json", report, markdown)
    print(markdown)


def readme_of(args: BenchmarkArguments, report: dict) -> dict:
    """The README table of this run: each goal with its target, the measured value and whether it is met."""
    sections = [section for section in SECTIONS if section in args.sections]
    command = "python scripts/benchmark.py" + ("" if sections == list(DEFAULT_SECTIONS) else " --sections " + " ".join(sections))
    command += "" if args.device == "cpu" else f" --device {args.device}"
    command += "" if args.dtype == "float32" else f" --dtype {args.dtype}"
    command += "" if args.size == "small" else f" --size {args.size}"
    command += "" if args.name == "benchmark" else f" --name {args.name}"
    rows = [[goal["goal"], goal["target"], goal["measured"], "yes" if goal["met"] else "**no**"] for goal in report["goals"]]
    title = "Speed and memory against transformers' AST"
    title += "" if args.device == "cpu" else f" on a GPU ({args.device}, {args.dtype}, AST-{args.size} geometry)"
    title += " (quick mode: checks the script)" if args.quick else ""
    if sections == ["varlen_inference", "varlen_training"]:
        title = "Variable length (`padding_mode=\"longest\"`) against AST and `\"max_length\"`"
    notes = [f"Details: [results/{args.name}.md](results/{args.name}.md)."]
    frontend = report.get("frontend", {}).get("runs", {})
    if args.device != "cpu" and "meamtm_frontend" in frontend and "ast_kaldi_on_device" in frontend:
        ours, kaldi = frontend["meamtm_frontend"], frontend["ast_kaldi_on_device"]
        notes.insert(0, (
            f"Frontend, {report['frontend']['batch_size']} clips of {report['frontend']['clip_seconds']:.2f} s: "
            f"MEAMTM {ours['ms_per_batch']:.1f} ms on {args.device} ({ours['speedup_vs_ast_numpy']:.0f}x "
            f"ASTFeatureExtractor's numpy path on the CPU, {kaldi['ms_per_batch'] / ours['ms_per_batch']:.1f}x "
            f"torchaudio's Kaldi filter bank run clip by clip on the same {args.device} device, "
            f"{kaldi['ms_per_batch']:.1f} ms); max abs difference to AST's features {ours['max_abs_difference_to_ast']:.1e}."
        ))
    full = report.get("varlen_inference", {}).get("cases", {}).get("10s")
    if full is not None:
        runs = full["runs"]
        notes.insert(0, (
            f"10 s clips: the timed rounds spread by {100 * runs['meamtm_longest']['spread']:.0f}% (longest) and "
            f"{100 * runs['meamtm_max_length']['spread']:.0f}% (max_length) of their medians; a ratio closer to 1 "
            "than that is a tie."
        ))
    return readme_table(title, "scripts/benchmark.py", command, ["goal", "target", "measured", "met"], rows,
                        order=20 if args.name == "benchmark" else 25 if args.device != "cpu" else 30, notes=notes)


if __name__ == "__main__":
    main()
