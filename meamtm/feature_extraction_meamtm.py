"""The MEAMTM feature extractor: waveform housekeeping for pipelines and Trainer, no spectrogram.

It checks the sampling rate, makes every clip a mono float32 waveform, and pads or truncates a batch of
clips, returning `input_values` `(batch, num_samples)` with an `attention_mask` that marks the real
samples. The spectrogram itself is computed inside the model (`MeamtmFrontend`).
"""

import numpy as np
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import TensorType, logging


logger = logging.get_logger(__name__)

# Above this many channels a 2-D clip is not read as (channels, samples) or (samples, channels).
MAX_CHANNELS = 16
# Full-scale values of integer PCM, to map it to floats in [-1, 1).
INTEGER_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31, np.dtype(np.int8): 2.0**7}


# Float audio is expected in [-1, 1]; a peak above this looks like integer PCM stored as floats.
SUSPICIOUS_PEAK = 2.0


def _as_numpy(clip) -> np.ndarray:
    if hasattr(clip, "detach") and hasattr(clip, "cpu"):  # a torch tensor, without importing torch here
        clip = clip.detach().cpu()
        if clip.is_floating_point() and clip.element_size() == 2:
            clip = clip.float()  # numpy has no bfloat16
        return clip.numpy()
    return np.asarray(clip)


def to_mono_float32(clip, index: int = 0) -> np.ndarray:
    """One clip as a 1-D float32 array, the input contract of MEAMTM in one function.

    Accepts lists, numpy arrays and torch tensors (any device, bfloat16 included); int8/16/32 PCM is scaled
    by its full-scale value, uint8 PCM is centred at 128; float16/64 are cast. A 2-D clip is multi-channel
    audio in (channels, samples) or (samples, channels) layout (the shorter axis is the channel axis) and is
    averaged to mono. Raises `ValueError` for an empty clip and for NaN or infinite samples, `TypeError`
    for non-numeric, complex and other integer dtypes. Float values are kept as they are (clipped audio at
    +-1 is fine); a peak above 2 gets a warning, as it is usually integer PCM cast to float without scaling.
    `index` only names the clip in error messages.
    """
    array = _as_numpy(clip)
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.number)):
        raise TypeError(f"Clip {index} has dtype {array.dtype}; audio must be float or integer PCM samples.")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"Clip {index} is complex ({array.dtype}); pass the real waveform.")
    if array.dtype == np.uint8:
        array = (array.astype(np.float32) - 128.0) / 128.0
    elif array.dtype in INTEGER_SCALE:
        array = array.astype(np.float32) / INTEGER_SCALE[array.dtype]
    elif np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"Clip {index} has dtype {array.dtype}; integer PCM must be int8, int16, int32 or uint8. "
            "Convert it to float in [-1, 1] first."
        )
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, reported below
        array = array.astype(np.float32, copy=False)

    if array.ndim == 2:
        channel_axis = int(np.argmin(array.shape))
        if array.shape[channel_axis] > MAX_CHANNELS:
            raise ValueError(
                f"Clip {index} has shape {array.shape}, which is neither (channels, samples) nor (samples, "
                f"channels) with at most {MAX_CHANNELS} channels. For a batch of clips pass a list of 1-D arrays."
            )
        array = array.mean(axis=channel_axis)
    elif array.ndim != 1:
        raise ValueError(
            f"Clip {index} has shape {array.shape}; expected (num_samples,) mono or a 2-D multi-channel clip."
        )
    if array.size == 0:
        raise ValueError(f"Clip {index} is empty (0 samples); remove it from the batch or data set.")
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.isfinite(array).sum())
        raise ValueError(
            f"Clip {index} has {bad} NaN or infinite samples (a broken decoder or a division by zero upstream); "
            "fix or drop the clip, or replace them with np.nan_to_num(clip)."
        )
    if np.abs(array).max() > SUSPICIOUS_PEAK:
        # One fixed message, so warning_once shows it once per process, not once per clip.
        logger.warning_once(
            f"A clip peaks above {SUSPICIOUS_PEAK}; float audio is expected in [-1, 1]. If it is integer PCM cast "
            "to float, divide it by its full scale (32768 for 16-bit) or pass the integer array itself."
        )
    return array


class MeamtmFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Prepares raw audio for a MEAMTM model: mono float32 waveforms, padded or truncated, with an attention mask.

    Args:
        feature_size (`int`, defaults to 1): one value per time step (a waveform).
        sampling_rate (`int`, defaults to 16000): the rate the model expects; other rates raise a `ValueError`.
        num_samples (`int`, defaults to 164080): the model's input window in samples,
            `(max_length - 1) * hop_length + win_length` of its config; longer clips are truncated to it.
        padding_value (`float`, defaults to 0.0): value of padding samples.
        return_attention_mask (`bool`, defaults to `True`): return the mask of real samples, which the model
            uses to pad the spectrogram exactly as `ASTFeatureExtractor` does.
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = 16000,
        num_samples: int = 164080,
        padding_value: float = 0.0,
        return_attention_mask: bool = True,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.num_samples = num_samples

    @classmethod
    def from_model_config(cls, config, **kwargs) -> "MeamtmFeatureExtractor":
        """The feature extractor that matches a `MeamtmConfig`."""
        return cls(sampling_rate=config.sampling_rate, num_samples=config.num_samples, **kwargs)

    def __call__(
        self,
        raw_speech,
        sampling_rate: int | None = None,
        padding: bool | str = "longest",
        max_length: int | None = None,
        truncation: bool = True,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | TensorType | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Args:
            raw_speech: one clip or a batch. A clip is a 1-D array, list or tensor of samples, or a 2-D
                multi-channel clip; a batch is a list of clips or a 2-D array/tensor `(batch, num_samples)`.
            sampling_rate (`int`): the clips' rate. It must equal `self.sampling_rate`; resample first
                (`dataset.cast_column("audio", Audio(sampling_rate=...))`).
            padding: `"longest"` (default), `"max_length"` (to `max_length` or `num_samples`) or `False`.
            max_length (`int`, *optional*): length in samples to truncate/pad to; defaults to `num_samples`.
            truncation (`bool`, defaults to `True`): cut clips longer than `max_length`.

        Returns:
            `BatchFeature` with `input_values` `(batch, length)` float32 and `attention_mask` `(batch, length)`.
        """
        if sampling_rate is None:
            logger.warning(
                f"No sampling_rate was passed to {self.__class__.__name__}; assuming {self.sampling_rate} Hz. "
                "Pass sampling_rate= so that audio at another rate is caught instead of silently misread."
            )
        elif sampling_rate != self.sampling_rate:
            raise ValueError(
                f"The audio is at sampling_rate={sampling_rate} Hz but this model expects {self.sampling_rate} Hz. "
                f"Resample it first, e.g. dataset.cast_column('audio', Audio(sampling_rate={self.sampling_rate})) "
                f"or meamtm.audio_io.resample(waveform, {sampling_rate}, {self.sampling_rate})."
            )

        clips = [to_mono_float32(clip, index) for index, clip in enumerate(self._as_batch(raw_speech))]
        limit = max_length or self.num_samples
        longest = max(len(clip) for clip in clips)
        if truncation and longest > limit:
            logger.warning_once(
                f"Clips longer than the model's window of {limit} samples ({limit / self.sampling_rate:.2f} s) are "
                "cut to it. To classify all of a long recording, use "
                "meamtm.MeamtmAudioClassificationPipeline (sliding windows) or `python -m meamtm.predict`."
            )
        batch = BatchFeature({"input_values": clips})
        padded = self.pad(
            batch,
            padding=padding,
            max_length=max_length or self.num_samples,
            truncation=truncation,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=self.return_attention_mask if return_attention_mask is None else return_attention_mask,
            return_tensors=return_tensors,
        )
        return padded

    @staticmethod
    def _as_batch(raw_speech) -> list:
        if hasattr(raw_speech, "detach") and hasattr(raw_speech, "cpu"):
            raw_speech = _as_numpy(raw_speech)
        if isinstance(raw_speech, np.ndarray):
            if raw_speech.ndim == 1:
                return [raw_speech]
            if raw_speech.ndim == 2:
                # A 2-D array is a batch (batch, num_samples), as everywhere in transformers; a single
                # multi-channel clip goes in a list: [clip]. "Clips" of at most MAX_CHANNELS samples are
                # shorter than any analysis window: that is one clip in (samples, channels) layout.
                if raw_speech.shape[0] > raw_speech.shape[1] and raw_speech.shape[1] <= MAX_CHANNELS:
                    raise ValueError(
                        f"Got an array of shape {raw_speech.shape}, read as a batch of {raw_speech.shape[0]} clips of "
                        f"{raw_speech.shape[1]} samples. For one multi-channel clip in (samples, channels) layout pass "
                        "it in a list, [clip], and it is mixed down to mono."
                    )
                return list(raw_speech)
            raise ValueError(
                f"Got an array of shape {raw_speech.shape}; pass (num_samples,), (batch, num_samples), or a list "
                "of clips (each 1-D, or 2-D multi-channel)."
            )
        if isinstance(raw_speech, (list, tuple)):
            if len(raw_speech) == 0:
                raise ValueError("Got an empty batch: pass at least one clip.")
            first = raw_speech[0]
            if isinstance(first, (list, tuple)) or getattr(first, "ndim", 0) >= 1:
                return list(raw_speech)
            return [np.asarray(raw_speech)]
        raise TypeError(
            f"Unsupported audio input of type {type(raw_speech).__name__}: pass numpy arrays, lists or torch tensors."
        )


__all__ = ["MeamtmFeatureExtractor", "to_mono_float32"]
