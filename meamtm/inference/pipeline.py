"""Audio classification of recordings of any length: sliding windows, batched, aggregated per recording.

`MeamtmAudioClassificationPipeline` is transformers' `AudioClassificationPipeline` as a `ChunkPipeline` (the
way the speech recognition pipeline handles `chunk_length_s`): `preprocess` yields one window of the
recording at a time, the pipeline's `batch_size` stacks windows into model batches, and `postprocess`
aggregates the windows' logits (mean or max) into one prediction per recording, optionally with every
window's own labels and its time span. Files are decoded as a stream (`meamtm.audio_io.stream_audio`), so memory is
about one window plus one block of samples, `batch_size` windows in flight and the windows' logits, whatever
the recording's length; an array input is itself in memory, but nothing proportional to it is added.

    from transformers import pipeline
    classifier = pipeline("audio-classification", model="my-meamtm", pipeline_class=MeamtmAudioClassificationPipeline)
    classifier("meeting.flac", batch_size=8, chunk_length_s=10.0, chunk_overlap=0.5, aggregation="max",
               return_segments=True)
"""

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from transformers.pipelines.audio_classification import AudioClassificationPipeline
from transformers.pipelines.base import ChunkPipeline
from transformers.utils import logging

from ..audio_io import load_audio, stream_audio


logger = logging.get_logger(__name__)

AGGREGATIONS = ("mean", "max")


def blocks_of(waveform: np.ndarray, block_samples: int) -> Iterator[np.ndarray]:
    """An in-memory waveform as consecutive views of `block_samples` samples (no copy)."""
    return (waveform[start : start + block_samples] for start in range(0, len(waveform), block_samples))


def sliding_windows(
    blocks: Iterable[np.ndarray], window: int, hop: int, align_last: bool = True
) -> Iterator[tuple[int, np.ndarray, bool]]:
    """Cut a stream of sample blocks into windows: `(start sample, window samples, is_last)`.

    Windows of `window` samples start every `hop` samples while a full window fits before the end. With
    `align_last` the last window ends at the recording's end (it overlaps its neighbour more than `hop` says),
    so every window is full of audio: right for a model that pads every clip to its window anyway
    (`padding_mode="max_length"`). Without it the last window starts `hop` after its neighbour like the others
    and holds the rest of the recording, shorter than `window`: a `padding_mode="longest"` model then spends on
    it only its own length. A recording shorter than `window` is one window of its own length. Only about
    `window` plus one block of samples are held at any time, so the stream can be hours long.
    """
    buffer, offset, next_start = np.zeros(0, dtype=np.float32), 0, 0  # offset: stream index of buffer[0]
    pending = None  # the previous window, held back until we know whether it is the last
    for block in blocks:
        buffer = np.concatenate((buffer, block))
        # A regular window needs one sample beyond it: one that ends exactly at the end is the last window.
        while next_start + window < offset + len(buffer):
            if pending is not None:
                yield (*pending, False)
            pending = (next_start, buffer[next_start - offset : next_start - offset + window])
            next_start += hop
        # Keep what the next regular window, or an end-aligned last window, may still need.
        keep_from = max(offset, min(next_start, offset + len(buffer) - window))
        buffer, offset = buffer[keep_from - offset :], keep_from
    total = offset + len(buffer)
    if total == 0:
        raise ValueError("The audio is empty (0 samples).")
    if pending is not None:
        yield (*pending, False)
    start = max(0, total - window) if align_last else next_start
    yield start, buffer[start - offset :], True


class MeamtmAudioClassificationPipeline(ChunkPipeline, AudioClassificationPipeline):
    """`AudioClassificationPipeline` that classifies recordings of any length by sliding windows.

    Inputs: a file path (streamed, `meamtm.audio_io.stream_audio`), file bytes, a `torchcodec` `AudioDecoder`, a
    `{"array"|"raw": ..., "sampling_rate": sr}` dict (resampled when `sr` differs), or an array or tensor at the
    model's rate; all are decoded and resampled by `meamtm.audio_io`, as in training. 2-D inputs are
    multi-channel clips, mixed down to mono (`to_mono_float32`).

    Call arguments (besides `top_k`, `function_to_apply`, `batch_size` of `AudioClassificationPipeline`):
        chunk_length_s (`float`, *optional*): window length in seconds; defaults to the model's window
            (`config.num_samples` samples, 10.24 s for AST). Longer windows are refused: the model sees no more.
        chunk_overlap (`float`, defaults to 0.5): fraction of a window that the next window overlaps, in [0, 1).
        aggregation (`str`, defaults to `"mean"`): `"mean"` or `"max"` of the windows' logits per recording.
        return_segments (`bool`, defaults to `False`): return `{"labels": [...], "segments": [{"start", "end",
            "labels"}, ...]}` with each window's top-k labels and its span in seconds, instead of the list of labels.

    A recording no longer than the window is one window, classified exactly as `AudioClassificationPipeline`
    classifies it. Windows are batched padded to the batch's longest; with `config.padding_mode="longest"` a
    batch costs that longest window, and the last window of a recording holds only its rest (`sliding_windows`
    without `align_last`), so it costs its own length.
    """

    def _sanitize_parameters(
        self,
        top_k=None,
        function_to_apply=None,
        chunk_length_s=None,
        chunk_overlap=None,
        aggregation=None,
        return_segments=None,
        **kwargs,
    ):
        _, _, postprocess_params = super()._sanitize_parameters(top_k=top_k, function_to_apply=function_to_apply)
        preprocess_params = {}
        if chunk_length_s is not None:
            preprocess_params["chunk_length_s"] = chunk_length_s
        if chunk_overlap is not None:
            if not 0 <= chunk_overlap < 1:
                raise ValueError(f"chunk_overlap={chunk_overlap} must be in [0, 1) (a fraction of the window).")
            preprocess_params["chunk_overlap"] = chunk_overlap
        if aggregation is not None:
            if aggregation not in AGGREGATIONS:
                raise ValueError(f"aggregation={aggregation!r} is not one of {AGGREGATIONS}.")
            postprocess_params["aggregation"] = aggregation
        if return_segments is not None:
            postprocess_params["return_segments"] = return_segments
        if kwargs:
            raise TypeError(f"Unknown arguments {sorted(kwargs)} for {type(self).__name__}.")
        return preprocess_params, {}, postprocess_params

    def window_length(self, chunk_length_s: float | None) -> int:
        """Window length in samples for `chunk_length_s` (the model's window when `None`), checked."""
        config = self.model.config
        if chunk_length_s is None:
            return config.num_samples
        window = round(chunk_length_s * config.sampling_rate)
        if not config.win_length <= window <= config.num_samples:
            raise ValueError(
                f"chunk_length_s={chunk_length_s} is {window} samples; it must hold at least one analysis window "
                f"({config.win_length} samples) and at most the model's window ({config.num_samples} samples = "
                f"{config.num_samples / config.sampling_rate:.2f} s)."
            )
        return window

    def load_blocks(self, inputs, block_samples: int) -> Iterator[np.ndarray]:
        """Any supported input -> mono float32 blocks at the model's sampling rate (files are streamed)."""
        sampling_rate = self.feature_extractor.sampling_rate
        if isinstance(inputs, str) and inputs.startswith(("http://", "https://")):
            from huggingface_hub.utils import httpx

            inputs = httpx.get(inputs, follow_redirects=True).content
        if isinstance(inputs, str):
            return stream_audio(inputs, sampling_rate, block_samples)
        if isinstance(inputs, dict) and ("sampling_rate" not in inputs or not ("raw" in inputs or "array" in inputs)):
            raise ValueError(f"A dict input needs 'sampling_rate' and 'raw' or 'array', got keys {sorted(inputs)}.")
        return blocks_of(load_audio(inputs, sampling_rate), block_samples)

    def preprocess(self, inputs, chunk_length_s: float | None = None, chunk_overlap: float = 0.5):
        sampling_rate = self.feature_extractor.sampling_rate
        window = self.window_length(chunk_length_s)
        hop = max(1, round(window * (1 - chunk_overlap)))
        blocks = self.load_blocks(inputs, block_samples=max(hop, sampling_rate))
        align_last = self.model.config.padding_mode == "max_length"
        for start, chunk, is_last in sliding_windows(blocks, window, hop, align_last=align_last):
            processed = self.feature_extractor(chunk, sampling_rate=sampling_rate, return_tensors="pt")
            if self.dtype is not None:
                processed = processed.to(dtype=self.dtype)
            yield {
                "is_last": is_last,
                "start": start / sampling_rate,
                "end": (start + len(chunk)) / sampling_rate,
                **processed,
            }

    def _forward(self, model_inputs):
        spans = {key: model_inputs.pop(key) for key in ("is_last", "start", "end")}
        logits = self.model(**model_inputs).logits
        return {"logits": logits.float(), **spans}

    def postprocess(
        self, model_outputs, top_k=5, function_to_apply=None, aggregation="mean", return_segments=False
    ):
        logits = torch.cat([output["logits"] for output in model_outputs])  # (num_windows, num_labels)
        pooled = logits.mean(0) if aggregation == "mean" else logits.amax(0)
        labels = self.top_labels(pooled, top_k, function_to_apply)
        if not return_segments:
            return labels
        segments = [
            {"start": output["start"], "end": output["end"], "labels": self.top_labels(row, top_k, function_to_apply)}
            for output, row in zip(model_outputs, logits)
        ]
        return {"labels": labels, "segments": segments}

    def top_labels(self, logits: torch.Tensor, top_k: int, function_to_apply: str | None) -> list[dict]:
        """`(num_labels,)` logits -> the `top_k` `{"score", "label"}` dicts, as `AudioClassificationPipeline` gives them."""
        output = super().postprocess(_Logits(logits[None]), top_k=top_k, function_to_apply=function_to_apply)
        return output


class _Logits:
    """The one attribute of a model output that `AudioClassificationPipeline.postprocess` reads."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits


__all__ = ["MeamtmAudioClassificationPipeline", "sliding_windows"]
