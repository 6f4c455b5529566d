"""Audio in, mono float32 waveforms at a chosen rate out: the one decoder and resampler of MEAMTM's tools.

Training (`meamtm.training.collate`), inference (`meamtm.inference.pipeline`, `python -m meamtm.predict`) and
the scripts all read audio through this module, so a file gives the same samples wherever it is read.
Decoding, down-mixing and resampling are FFmpeg's (libswresample, through torchcodec), the resampler that
`datasets.Audio(sampling_rate=...)` also uses:

* `load_audio`: a file, file bytes, a `datasets` audio value or an array -> `(num_samples,)` float32 at a rate.
* `resample`: an in-memory waveform -> the same waveform at another rate, through the same FFmpeg resampler
  (the array travels as a float32 WAV in memory, which FFmpeg reads losslessly).
* `stream_audio`: a file decoded block by block by the `ffmpeg` program, for recordings too long to hold;
  one resampler state runs over the whole file, so the blocks join into exactly what `load_audio` returns.
* `audio_info`: a file's sampling rate and duration from its header, without decoding it.

The model package (`configuration_meamtm.py` ... `modeling_meamtm.py`) does not import this module: models take
waveforms already at their rate.
"""

import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .feature_extraction_meamtm import to_mono_float32


def _name_of(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, dict) and source.get("path"):
        return str(source["path"])
    return f"<{type(source).__name__}>"


def _decode(source, sampling_rate: int | None) -> np.ndarray:
    """torchcodec: a path or bytes -> mono float32 at `sampling_rate` (the file's own rate when `None`).

    Channels are averaged, as `to_mono_float32` averages those of an array (FFmpeg's own down-mix would scale a
    stereo file by 1/sqrt(2) instead, so a file and its samples would differ).
    """
    from torchcodec.decoders import AudioDecoder

    name = _name_of(source)
    try:
        channels = AudioDecoder(source, sample_rate=sampling_rate).get_all_samples().data
    except (RuntimeError, ValueError, OSError) as error:
        raise ValueError(f"Could not decode audio from {name}: {error}. Is it an audio file FFmpeg can read?") from error
    if channels.numel() == 0:
        raise ValueError(f"{name} decodes to 0 samples: the file holds no audio.")
    return to_mono_float32(channels.mean(dim=0))


def load_audio(source, sampling_rate: int) -> np.ndarray:
    """Any audio input -> mono float32 `(num_samples,)` at `sampling_rate`, decoded whole.

    `source`: a file path; file bytes; a `torchcodec` `AudioDecoder`; a `datasets` audio value, encoded
    (`{"path", "bytes"}`) or decoded (`{"array", "sampling_rate"}`, `"raw"` for `"array"` as transformers'
    pipelines accept); or an array or tensor already at `sampling_rate`. Channels are averaged, in files and
    in arrays of shape `(channels, samples)` or `(samples, channels)` (`to_mono_float32`).
    Raises `ValueError` naming the source when it cannot be decoded, decodes to nothing or holds NaN/Inf.
    """
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, dict):
        if "array" in source or "raw" in source:
            if "sampling_rate" not in source:
                raise ValueError(f"An audio dict with an array needs 'sampling_rate', got keys {sorted(source)}.")
            array = source["array"] if "array" in source else source["raw"]
            return resample(to_mono_float32(array), source["sampling_rate"], sampling_rate)
        if source.get("bytes"):
            return _decode(source["bytes"], sampling_rate)
        if source.get("path"):
            return _decode(source["path"], sampling_rate)
        raise ValueError(f"An audio dict needs 'path', 'bytes' or 'array', got keys {sorted(source)}.")
    if isinstance(source, (str, bytes)):
        return _decode(source, sampling_rate)
    from torchcodec.decoders import AudioDecoder

    if isinstance(source, AudioDecoder):
        samples = source.get_all_samples()
        return resample(to_mono_float32(samples.data), samples.sample_rate, sampling_rate)
    return to_mono_float32(source)


def resample(waveform: np.ndarray, orig_sampling_rate: int, sampling_rate: int) -> np.ndarray:
    """`(num_samples,)` float32 at `orig_sampling_rate` -> float32 at `sampling_rate` (FFmpeg's resampler).

    The same resampler as `load_audio` applies to files, so resampling a mono file's samples gives exactly what
    decoding it at the new rate gives (a multi-channel file differs by float rounding: it is mixed down first).
    """
    if int(orig_sampling_rate) == int(sampling_rate):
        return waveform
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.asarray(waveform, dtype=np.float32), int(orig_sampling_rate), subtype="FLOAT",
                    format="WAV")
    return _decode(buffer.getvalue(), int(sampling_rate))


def stream_audio(path: str, sampling_rate: int, block_samples: int) -> Iterator[np.ndarray]:
    """Decode a file piece by piece: mono float32 blocks of up to `block_samples` samples at `sampling_rate`.

    The `ffmpeg` program decodes, mixes down and resamples in one pass with one resampler state (the command
    transformers' `ffmpeg_read` runs), read through a pipe, so memory stays at one block whatever the file's
    length and the blocks join into `load_audio(path, sampling_rate)`. torchcodec cannot do this: its range
    decoding restarts the resampler at every range, so consecutive ranges of a resampled file do not join up.
    Without `ffmpeg` on the PATH, the file is decoded whole by `load_audio` instead.
    """
    path = os.fspath(path)
    if shutil.which("ffmpeg") is None:
        waveform = load_audio(path, sampling_rate)
        yield from (waveform[start : start + block_samples] for start in range(0, len(waveform), block_samples))
        return
    if not os.path.isfile(path):
        raise ValueError(f"{path} is not a file: pass the path of an audio file.")
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", path, "-vn"]
    num_channels = audio_info(path).num_channels
    if num_channels > 1:  # the mean of the channels, as `load_audio` mixes down
        mean = "+".join(f"{1 / num_channels!r}*c{index}" for index in range(num_channels))
        command += ["-af", f"pan=mono|c0={mean}"]
    command += ["-ac", "1", "-ar", str(sampling_rate), "-f", "f32le", "pipe:1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    num_samples = 0
    try:
        while block := process.stdout.read(4 * block_samples):
            num_samples += len(block) // 4
            yield np.frombuffer(block[: len(block) // 4 * 4], dtype=np.float32)
        errors = process.stderr.read().decode(errors="replace").strip()
        if process.wait() != 0:
            raise ValueError(f"Could not decode audio from {path}: ffmpeg says: {errors or 'no details'}.")
        if num_samples == 0:
            raise ValueError(f"{path} decodes to 0 samples: the file holds no audio.")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@dataclass
class AudioInfo:
    """What a file's header says: its sampling rate (Hz), channels, and duration (seconds, `None` when unknown)."""

    sampling_rate: int
    num_channels: int
    duration_s: float | None


def audio_info(source) -> AudioInfo:
    """The sampling rate, channels and duration of a file (path or bytes) from its header, without decoding it."""
    from torchcodec.decoders import AudioDecoder

    try:
        metadata = AudioDecoder(os.fspath(source) if isinstance(source, os.PathLike) else source).metadata
    except (RuntimeError, ValueError, OSError) as error:
        raise ValueError(
            f"Could not decode audio from {_name_of(source)}: {error}. Is it an audio file FFmpeg can read?"
        ) from error
    duration = metadata.duration_seconds_from_header
    return AudioInfo(int(metadata.sample_rate), int(metadata.num_channels), float(duration) if duration is not None else None)


__all__ = ["AudioInfo", "audio_info", "load_audio", "resample", "stream_audio"]
