"""Audio classification of recordings of any length: sliding windows, batched, aggregated per recording.

`MeamtmAudioClassificationPipeline` is transformers' `AudioClassificationPipeline` as a `ChunkPipeline` (the
way the speech recognition pipeline handles `chunk_length_s`): `preprocess` yields one window of the
recording at a time, the pipeline's `batch_size` stacks windows into model batches, and `postprocess`
aggregates the windows' logits (mean or max) into one prediction per recording, optionally with every
window's own labels and its time span. Memory is the decoded waveform (4 bytes a sample, 230 MB for an hour
at 16 kHz) plus `batch_size` windows in flight: no spectrogram of more than one batch ever exists.

    from transformers import pipeline
    classifier = pipeline("audio-classification", model="my-meamtm", pipeline_class=MeamtmAudioClassificationPipeline)
    classifier("meeting.flac", batch_size=8, chunk_length_s=10.0, chunk_overlap=0.5, aggregation="max",
               return_segments=True)
"""

import sys

import numpy as np
import torch
from transformers.pipelines.audio_classification import AudioClassificationPipeline
from transformers.pipelines.base import ChunkPipeline
from transformers.utils import logging

from .feature_extraction_meamtm import to_mono_float32


logger = logging.get_logger(__name__)

AGGREGATIONS = ("mean", "max")


def decode_audio(source, sampling_rate: int) -> np.ndarray:
    """A file path, file bytes or `torchcodec` decoder -> mono float32 `(num_samples,)` at `sampling_rate`.

    Decoding, down-mixing and resampling are torchcodec's (FFmpeg), as `datasets`' `Audio` column does them.
    """
    from torchcodec.decoders import AudioDecoder

    name = source if isinstance(source, str) else type(source).__name__
    try:
        if isinstance(source, AudioDecoder):
            samples = source.get_all_samples()
            return resample(to_mono_float32(samples.data), samples.sample_rate, sampling_rate)
        decoder = AudioDecoder(source, sample_rate=sampling_rate, num_channels=1)
        waveform = decoder.get_all_samples().data[0].numpy()
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"Could not decode audio from {name}: {error}. Is it an audio file FFmpeg can read?") from error
    if waveform.size == 0:
        raise ValueError(f"{name} decodes to 0 samples: the file holds no audio.")
    return to_mono_float32(waveform)


def resample(waveform: np.ndarray, orig_sampling_rate: int, sampling_rate: int) -> np.ndarray:
    """`(num_samples,)` float32 at `orig_sampling_rate` -> float32 at `sampling_rate` (scipy's polyphase filter)."""
    if orig_sampling_rate == sampling_rate:
        return waveform
    from math import gcd

    from scipy.signal import resample_poly

    divisor = gcd(int(orig_sampling_rate), int(sampling_rate))
    return resample_poly(waveform, sampling_rate // divisor, orig_sampling_rate // divisor).astype(np.float32)


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of windows of `window` samples every `hop` samples that cover `num_samples` samples.

    The last window ends at the recording's end (it overlaps its neighbour more than `hop` says), so every
    window is full of audio; a recording shorter than `window` is one window of its own length.
    """
    return list(range(0, num_samples - window, hop)) + [max(0, num_samples - window)]


class MeamtmAudioClassificationPipeline(ChunkPipeline, AudioClassificationPipeline):
    """`AudioClassificationPipeline` that classifies recordings of any length by sliding windows.

    Inputs: a file path or bytes (decoded and resampled by torchcodec), a `torchcodec` `AudioDecoder`, a
    `{"array"|"raw": ..., "sampling_rate": sr}` dict (resampled with scipy when `sr` differs), or an array or
    tensor at the model's rate; 2-D inputs are multi-channel clips, mixed down to mono (`to_mono_float32`).

    Call arguments (besides `top_k`, `function_to_apply`, `batch_size` of `AudioClassificationPipeline`):
        chunk_length_s (`float`, *optional*): window length in seconds; defaults to the model's window
            (`config.num_samples` samples, 10.24 s for AST). Longer windows are refused: the model sees no more.
        chunk_overlap (`float`, defaults to 0.5): fraction of a window that the next window overlaps, in [0, 1).
        aggregation (`str`, defaults to `"mean"`): `"mean"` or `"max"` of the windows' logits per recording.
        return_segments (`bool`, defaults to `False`): return `{"labels": [...], "segments": [{"start", "end",
            "labels"}, ...]}` with each window's top-k labels and its span in seconds, instead of the list of labels.

    A recording no longer than the window is one window, classified exactly as `AudioClassificationPipeline`
    classifies it.
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

    def load_waveform(self, inputs) -> np.ndarray:
        """Any supported input -> mono float32 `(num_samples,)` at the model's sampling rate."""
        sampling_rate = self.feature_extractor.sampling_rate
        if isinstance(inputs, str) and inputs.startswith(("http://", "https://")):
            from huggingface_hub.utils import httpx

            inputs = httpx.get(inputs, follow_redirects=True).content
        torchcodec = sys.modules.get("torchcodec")
        if isinstance(inputs, (str, bytes)) or (torchcodec and isinstance(inputs, torchcodec.decoders.AudioDecoder)):
            return decode_audio(inputs, sampling_rate)
        if isinstance(inputs, dict):
            if "sampling_rate" not in inputs or not ("raw" in inputs or "array" in inputs):
                raise ValueError(
                    f"A dict input needs 'sampling_rate' and 'raw' or 'array', got keys {sorted(inputs)}."
                )
            array = inputs["raw"] if "raw" in inputs else inputs["array"]
            return resample(to_mono_float32(array), inputs["sampling_rate"], sampling_rate)
        return to_mono_float32(inputs)

    def preprocess(self, inputs, chunk_length_s: float | None = None, chunk_overlap: float = 0.5):
        waveform = self.load_waveform(inputs)
        sampling_rate = self.feature_extractor.sampling_rate
        window = self.window_length(chunk_length_s)
        starts = window_starts(len(waveform), window, max(1, round(window * (1 - chunk_overlap))))
        for index, start in enumerate(starts):
            chunk = waveform[start : start + window]
            processed = self.feature_extractor(chunk, sampling_rate=sampling_rate, return_tensors="pt")
            if self.dtype is not None:
                processed = processed.to(dtype=self.dtype)
            yield {
                "is_last": index == len(starts) - 1,
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


__all__ = ["MeamtmAudioClassificationPipeline", "decode_audio", "resample", "window_starts"]
