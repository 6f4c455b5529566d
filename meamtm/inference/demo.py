"""A web page for any MEAMTM audio classifier: upload or record audio, see the labels and the model's own log-mel.

    python -m meamtm.demo --model DIR_OR_HUB_ID [--port 7860] [--host 0.0.0.0] [--share false] [--examples DIR]

The page (Gradio, `pip install meamtm[demo]`) shows
  - the top-k labels of the recording (sliding windows aggregated, `MeamtmAudioClassificationPipeline`);
  - the log-mel spectrogram that the model's frontend computed in that forward pass (read with a forward
    hook on `model.meamtm.frontend`, not recomputed), with the patch grid over it and the padding patches
    shaded (labelled as skipped where the config's `padding_mode` is `"longest"`);
  - for recordings longer than the model's window, a timeline and a table of the windows with their top label;
  - what the checkpoint is: labels, sampling rate, window, parameters and the model card's results;
  - example clips from a folder (`--examples`, or an `examples/` folder inside the checkpoint).
Input that cannot be classified (not audio, no samples) gets its message in the page; silent and clipped
audio get a warning and are classified. Files are streamed through FFmpeg, so memory stays bounded whatever
the recording's length.

As a Hugging Face Space: copy this file as `app.py`, list `meamtm[demo]` in `requirements.txt`, and set the
Space variable `MEAMTM_MODEL` to the checkpoint's Hub id (`MEAMTM_EXAMPLES` to a folder of clips, optional).
The imports are absolute for that reason: as `app.py` the file runs outside the package.
"""

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import HfArgumentParser
from transformers.utils import logging

from meamtm.audio_io import stream_audio
from meamtm.inference.pipeline import AGGREGATIONS, MeamtmAudioClassificationPipeline
from meamtm.inference.predict import load_classifier


logger = logging.get_logger(__name__)

# A recording whose peak stays below this (-80 dBFS) holds nothing a classifier can hear.
SILENCE_PEAK = 1e-4
# Samples at or above this magnitude sit at full scale; more than CLIPPED_FRACTION of them is clipped audio.
FULL_SCALE = 0.999
CLIPPED_FRACTION = 1e-3
# File name endings the example finder picks up (FFmpeg reads many more; these are the usual ones).
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm")
# Rows of the window table; the timeline plot shows every window.
MAX_TABLE_ROWS = 500


@dataclass
class DemoArguments:
    model: str | None = field(
        default=None,
        metadata={"help": "Directory or Hub id of a MEAMTM audio classifier (default: the MEAMTM_MODEL variable)."},
    )
    examples: str | None = field(
        default=None,
        metadata={
            "help": "Folder of example clips, e.g. the evaluation audiofolder (default: MEAMTM_EXAMPLES, or the "
            "checkpoint's examples/ folder when it has one)."
        },
    )
    num_examples: int = field(default=8, metadata={"help": "Example clips shown (one per class first)."})
    top_k: int = field(default=5, metadata={"help": "Labels shown."})
    chunk_overlap: float = field(default=0.5, metadata={"help": "Fraction of a window its successor overlaps."})
    aggregation: str = field(default="mean", metadata={"help": "Window logits to recording logits: mean or max."})
    batch_size: int = field(default=8, metadata={"help": "Windows per forward pass."})
    device: str | None = field(default=None, metadata={"help": "torch device, e.g. cpu or cuda (default: cpu)."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run the checkpoint's own model code (only where meamtm is not installed)."}
    )
    host: str | None = field(
        default=None, metadata={"help": "Address to serve on (default: Gradio's, 127.0.0.1 or GRADIO_SERVER_NAME)."}
    )
    port: int | None = field(default=None, metadata={"help": "Port (default: Gradio's, 7860 or GRADIO_SERVER_PORT)."})
    share: bool = field(default=False, metadata={"help": "Ask Gradio for a public share link."})


def parse_arguments(argv=None) -> DemoArguments:
    parser = HfArgumentParser(DemoArguments, prog="python -m meamtm.demo")
    (arguments,) = parser.parse_args_into_dataclasses(args=argv)
    arguments.model = arguments.model or os.environ.get("MEAMTM_MODEL")
    arguments.examples = arguments.examples or os.environ.get("MEAMTM_EXAMPLES")
    if not arguments.model:
        parser.error("no model: pass --model DIR_OR_HUB_ID or set the MEAMTM_MODEL variable")
    if arguments.aggregation not in AGGREGATIONS:
        parser.error(f"--aggregation {arguments.aggregation!r} is not one of {AGGREGATIONS}")
    if not 0 <= arguments.chunk_overlap < 1:
        parser.error(f"--chunk_overlap {arguments.chunk_overlap} must be in [0, 1)")
    return arguments


@dataclass
class AudioStats:
    """What one streamed pass over a recording says about it."""

    num_samples: int
    sampling_rate: int
    peak: float
    clipped: int  # samples at full scale

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sampling_rate

    def warnings(self) -> list[str]:
        messages = []
        if self.peak < SILENCE_PEAK:
            level = "-inf" if self.peak == 0 else f"{20 * np.log10(self.peak):.0f}"
            messages.append(
                f"The recording is silent (peak {level} dBFS over {self.seconds:.2f} s): the labels below are those "
                "of silence. Check the microphone or the file's volume."
            )
        if self.clipped > CLIPPED_FRACTION * self.num_samples:
            messages.append(
                f"The audio is clipped: {self.clipped} of {self.num_samples} samples "
                f"({100 * self.clipped / self.num_samples:.1f} %) sit at full scale. It is classified as it is; "
                "record at a lower level for labels that can be trusted."
            )
        return messages


def audio_stats(path: str, sampling_rate: int) -> AudioStats:
    """Length, peak and clipped samples of a file, decoded as a stream (bounded memory).

    Raises the decoder's `ValueError` for a file that is not audio or holds no samples.
    """
    num_samples, peak, clipped = 0, 0.0, 0
    for block in stream_audio(path, sampling_rate, block_samples=sampling_rate * 10):
        magnitude = np.abs(block)
        num_samples += len(block)
        peak = max(peak, float(magnitude.max(initial=0.0)))
        clipped += int((magnitude >= FULL_SCALE).sum())
    return AudioStats(num_samples, sampling_rate, peak, clipped)


@dataclass
class Classification:
    labels: list[dict]  # [{"label", "score"}], best first
    segments: list[dict]  # [{"start", "end", "labels"}] per window
    spectrogram: np.ndarray  # (frames, num_mel_bins) of the first window, as the frontend returned it
    num_frames: int  # frames of the first window that hold audio; the rest is padding
    stats: AudioStats
    seconds: float  # time the classification took


class DemoClassifier:
    """The pipeline plus a forward hook that keeps the log-mel the model's frontend computed for the first window.

    One classification runs at a time (a lock): the hook's state belongs to the call that holds it.
    """

    def __init__(
        self,
        classifier: MeamtmAudioClassificationPipeline,
        top_k: int = 5,
        chunk_overlap: float = 0.5,
        aggregation: str = "mean",
        batch_size: int = 8,
    ):
        self.classifier = classifier
        self.config = classifier.model.config
        self.options = dict(
            top_k=min(top_k, self.config.num_labels),
            chunk_overlap=chunk_overlap,
            aggregation=aggregation,
            batch_size=batch_size,
            return_segments=True,
        )
        self._lock = threading.Lock()
        self._capturing, self._first_window = False, None
        classifier.model.meamtm.frontend.register_forward_hook(self._keep_first_window)

    def _keep_first_window(self, module, args, output):
        """Forward hook: `output` `(batch, frames, num_mel_bins)`; `args` `(waveforms, lengths)`."""
        if not self._capturing or self._first_window is not None:  # other users of the model, later batches
            return
        waveforms = args[0]
        lengths = args[1] if len(args) > 1 else None
        num_samples = int(lengths[0]) if lengths is not None else waveforms.shape[-1]
        # With two channels (`normalization="global+per_clip"`) the first, AST's global normalisation, is shown.
        first = output[0] if output.dim() == 3 else output[0, ..., 0]
        self._first_window = (first.detach().float().cpu().numpy(), self.config.num_frames_of(num_samples))

    def __call__(self, path: str) -> Classification:
        """Classify an audio file. Raises `ValueError`/`TypeError` for input the model cannot take."""
        start = time.perf_counter()
        stats = audio_stats(path, self.config.sampling_rate)
        with self._lock:
            self._capturing, self._first_window = True, None
            try:
                result = self.classifier(path, **self.options)
            finally:
                self._capturing = False
            spectrogram, num_frames = self._first_window
        return Classification(
            result["labels"], result["segments"], spectrogram, num_frames, stats, time.perf_counter() - start
        )


def padding_skipped(config) -> bool:
    """Whether the model drops padding patches (`padding_mode="longest"`) instead of attending to them."""
    return getattr(config, "padding_mode", "max_length") == "longest"


def padding_columns(config, num_frames: int) -> list[int]:
    """Time columns of the patch grid whose frames are all padding: those that start past `num_frames`."""
    _, columns = config.patch_grid
    return [column for column in range(columns) if column * config.time_stride >= num_frames]


def plot_spectrogram(spectrogram: np.ndarray, num_frames: int, config):
    """`(frames, num_mel_bins)` log-mel -> a matplotlib Figure with the patch grid and the padding shaded."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    figure = Figure(figsize=(9, 3.4), layout="constrained")
    axes = figure.subplots()
    frames = np.full((config.max_length, config.num_mel_bins), np.nan, dtype=np.float32)
    frames[: len(spectrogram)] = spectrogram[: config.max_length]  # a frontend that trims padding returns fewer
    image = axes.imshow(frames.T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
    figure.colorbar(image, ax=axes, pad=0.01, label="normalised log-mel")
    rows, columns = config.patch_grid
    # Patch edges: with strides below the patch size, patches overlap and a line marks where each one starts.
    grid = dict(color="white", lw=0.5, alpha=0.7)
    for row in range(rows):
        axes.axhline(row * config.frequency_stride - 0.5, **grid)
    for column in range(columns):
        axes.axvline(column * config.time_stride - 0.5, **grid)
    only = padding_columns(config, num_frames)
    skipped = padding_skipped(config)
    style = dict(facecolor="#c6dbef", alpha=0.6, hatch="//" if skipped else None, edgecolor="#2171b5", lw=0)
    if only:
        axes.axvspan(only[0] * config.time_stride - 0.5, config.max_length - 0.5, **style)
    if num_frames < config.max_length:
        axes.axvline(num_frames - 0.5, color="#2171b5", lw=1.5)
    seconds = config.hop_length / config.sampling_rate
    axes.set_xlabel(f"frame ({seconds * 1000:.0f} ms hop)")
    axes.set_ylabel("mel bin")
    what = "padding patches, skipped by the model" if skipped else "padding patches (the model attends to them)"
    handles = [Patch(**style, label=f"{len(only)} of {columns} columns: {what}")] if only else []
    if handles:
        axes.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.85)
    axes.set_title(
        f"The model's own log-mel, first window: {num_frames} of {config.max_length} frames hold audio; "
        f"{rows} x {columns} patches of {config.patch_size}",
        fontsize=9,
    )
    return figure


def plot_timeline(segments: list[dict], duration: float):
    """Each window `(start, end)` as a bar coloured by its top label, in two lanes so overlaps show."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    figure = Figure(figsize=(9, 1.9), layout="constrained")
    axes = figure.subplots()
    names = sorted({segment["labels"][0]["label"] for segment in segments})
    colours = {name: f"C{index % 10}" for index, name in enumerate(names)}
    for index, segment in enumerate(segments):
        top = segment["labels"][0]
        lane = index % 2
        axes.barh(lane, segment["end"] - segment["start"], left=segment["start"], height=0.8,
                  color=colours[top["label"]], alpha=0.35 + 0.65 * top["score"], edgecolor="white", lw=0.5)
        if len(segments) <= 40:
            axes.text((segment["start"] + segment["end"]) / 2, lane, top["label"], ha="center", va="center", fontsize=7)
    axes.set_yticks([])
    axes.set_xlim(0, duration)
    axes.set_xlabel("time (s)")
    axes.set_title(f"{len(segments)} windows, top label of each (opacity: its score)", fontsize=9)
    if len(names) <= 12:
        handles = [Patch(color=colours[name], label=name) for name in names]
        axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    return figure


def model_card_results(model_id: str) -> list[tuple[str, str, float]]:
    """(dataset, metric, value) rows of the model card's `model-index`; empty when there is no card or none."""
    from huggingface_hub import ModelCard

    local = Path(model_id) / "README.md"
    try:
        card = ModelCard.load(local if local.is_file() else model_id)
    except Exception as error:  # noqa: BLE001 - a missing or unreachable card only leaves the panel without results
        logger.info(f"No model card for {model_id}: {error}")
        return []
    results = card.data.eval_results or []
    return [(result.dataset_name, result.metric_type, float(result.metric_value)) for result in results]


def describe_checkpoint(model_id: str, model) -> str:
    """Markdown: what the checkpoint is and how well its card says it does."""
    config = model.config
    labels = [config.id2label[index] for index in range(config.num_labels)]
    shown = ", ".join(labels[:40]) + (f" ... ({len(labels) - 40} more)" if len(labels) > 40 else "")
    rows, columns = config.patch_grid
    lines = [
        f"**{model_id}**",
        "",
        "| property | value |",
        "|---|---|",
        f"| labels | {len(labels)}: {shown} |",
        f"| sampling rate | {config.sampling_rate} Hz (other rates are resampled) |",
        f"| window | {config.num_samples / config.sampling_rate:.2f} s ({config.num_samples} samples); longer audio "
        "is classified in sliding windows |",
        f"| log-mel | {config.num_mel_bins} mel bins x {config.max_length} frames, "
        f"{config.hop_length / config.sampling_rate * 1000:.0f} ms hop |",
        f"| patches | {rows} x {columns} of {config.patch_size} (strides {config.frequency_stride}, "
        f"{config.time_stride}); padding {'skipped' if padding_skipped(config) else 'attended to'} |",
        f"| parameters | {model.num_parameters() / 1e6:.2f} M |",
    ]
    results = model_card_results(model_id)
    lines += ["", "Results from the model card:" if results else "The model card lists no results."]
    if results:
        lines += ["", "| data | metric | value |", "|---|---|---|"]
        lines += [f"| {dataset} | {metric} | {value:.4f} |" for dataset, metric, value in results]
    return "\n".join(lines)


def find_examples(directory: str, labels: list[str], count: int) -> list[str]:
    """Up to `count` audio files under `directory`: one of each class folder named after a label first
    (the audiofolder layout, `label/clip.wav`), then the others in name order."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"Examples folder {directory} does not exist: pass a folder of audio files to --examples.")
    files = sorted(path for path in root.rglob("*") if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file())
    first_of_class = {}
    for path in files:
        first_of_class.setdefault(path.parent.name, path)
    chosen = [first_of_class[label] for label in labels if label in first_of_class]
    chosen += [path for path in files if path not in chosen]
    return [str(path) for path in chosen[:count]]


def examples_folder(arguments: DemoArguments) -> str | None:
    if arguments.examples:
        return arguments.examples
    inside = Path(arguments.model) / "examples"
    return str(inside) if inside.is_dir() else None


def summary_of(result: Classification, config, aggregation: str) -> str:
    stats = result.stats
    window = config.num_samples / config.sampling_rate
    lines = [
        f"{stats.seconds:.2f} s of audio at {config.sampling_rate} Hz, {len(result.segments)} "
        f"window{'s' if len(result.segments) > 1 else ''} of up to {window:.2f} s, classified in {result.seconds:.2f} s.",
    ]
    if len(result.segments) > 1:
        lines.append(
            f"The labels are the {aggregation} of the windows' logits; the timeline below shows each window's own."
        )
    return "\n\n".join(lines)


def segment_rows(segments: list[dict]) -> list[list]:
    return [
        [round(segment["start"], 2), round(segment["end"], 2), segment["labels"][0]["label"],
         round(segment["labels"][0]["score"], 3)]
        for segment in segments[:MAX_TABLE_ROWS]
    ]


def build_demo(arguments: DemoArguments, classifier: MeamtmAudioClassificationPipeline | None = None):
    """The Gradio Blocks of the page (not launched). `classifier` defaults to the one `arguments.model` loads."""
    import gradio as gr

    classifier = classifier or load_classifier(arguments)
    demo_classifier = DemoClassifier(
        classifier, arguments.top_k, arguments.chunk_overlap, arguments.aggregation, arguments.batch_size
    )
    model, config = classifier.model, classifier.model.config
    folder = examples_folder(arguments)
    labels = [config.id2label[index] for index in range(config.num_labels)]
    examples = find_examples(folder, labels, arguments.num_examples) if folder else []

    def classify(path: str | None):
        if not path:
            raise gr.Error("No audio yet: upload a file or record with the microphone, then press Classify.")
        try:
            result = demo_classifier(path)
        except (ValueError, TypeError) as error:
            # The upload's temporary path means nothing to the person who sent the file: show its name.
            raise gr.Error(str(error).replace(path, Path(path).name), title="Cannot classify this input") from error
        for message in result.stats.warnings():
            gr.Warning(message)
        logger.info(f"Classified {Path(path).name} ({result.stats.seconds:.1f} s of audio) in {result.seconds:.2f} s")
        long = len(result.segments) > 1
        scores = {item["label"]: item["score"] for item in result.labels}
        return (
            scores,
            summary_of(result, config, arguments.aggregation),
            plot_spectrogram(result.spectrogram, result.num_frames, config),
            gr.Plot(value=plot_timeline(result.segments, result.stats.seconds) if long else None, visible=long),
            gr.Dataframe(value=segment_rows(result.segments) if long else None, visible=long),
        )

    # No usage analytics: the page serves a local model and may run where nothing outside can be reached.
    with gr.Blocks(title=f"MEAMTM: {arguments.model}", analytics_enabled=False) as demo:
        gr.Markdown(
            f"# MEAMTM audio classifier: {arguments.model}\n"
            "The model takes the raw waveform and makes its own log-mel spectrogram; the one shown is taken from "
            "the model's forward pass. Upload a file (any format and rate FFmpeg reads) or record one."
        )
        with gr.Row():
            with gr.Column(scale=2):
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio", elem_id="audio")
                button = gr.Button("Classify", variant="primary", elem_id="classify")
                if examples:
                    gr.Examples(
                        examples=[[path] for path in examples],
                        inputs=audio,
                        # Class folder and name: audiofolder clips of different classes often share a name.
                        example_labels=[str(Path(path).relative_to(folder)) for path in examples],
                        label=f"Examples from {folder}",
                    )
                with gr.Accordion("The checkpoint", open=True):
                    gr.Markdown(describe_checkpoint(arguments.model, model), elem_id="checkpoint")
            with gr.Column(scale=3):
                top_labels = gr.Label(num_top_classes=demo_classifier.options["top_k"], label="Labels", elem_id="labels")
                summary = gr.Markdown(elem_id="summary")
                spectrogram = gr.Plot(label="Log-mel and patch grid", show_label=False, elem_id="spectrogram")
                timeline = gr.Plot(label="Sliding windows", show_label=False, visible=False, elem_id="timeline")
                table = gr.Dataframe(
                    headers=["start (s)", "end (s)", "top label", "score"],
                    label=f"Windows (first {MAX_TABLE_ROWS})",
                    visible=False,
                    interactive=False,
                    elem_id="segments",
                )
        # The previous result goes first, so that what the page shows always belongs to the audio in the input.
        outputs = [top_labels, summary, spectrogram, timeline, table]
        button.click(lambda: (None, "", None, None, None), outputs=outputs, queue=False).then(
            classify, inputs=audio, outputs=outputs
        )
    # One request at a time classifies (the model holds the CPU); the others wait in Gradio's queue.
    demo.queue(default_concurrency_limit=1)
    return demo


def launch(demo, arguments: DemoArguments, **kwargs):
    """Serve `demo`; `kwargs` go to `gradio.Blocks.launch` (e.g. `prevent_thread_lock=True`)."""
    folder = examples_folder(arguments)
    return demo.launch(
        server_name=arguments.host,
        server_port=arguments.port,
        share=arguments.share,
        allowed_paths=[folder] if folder else None,
        **kwargs,
    )


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    launch(build_demo(arguments), arguments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
