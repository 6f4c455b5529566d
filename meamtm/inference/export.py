"""One graph from waveform to logits: `torch.export` and ONNX export of a MEAMTM classifier, frontend included.

The exported graph takes `input_values` `(batch, num_samples)` float32 waveforms and `attention_mask`
`(batch, num_samples)` int64 (1 for real samples), any batch size, and returns logits `(batch, num_labels)`.
With `config.padding_mode="max_length"` `num_samples` is fixed at `config.num_samples`: pad clips to the model's
window first, as the feature extractor does: `extractor(clips, sampling_rate=sr, padding="max_length",
return_tensors="np")`. With `"longest"` the time dimension is dynamic too, in whole patch columns: pad a
batch to `bucket_num_samples(config, longest clip)` samples (2 columns at least, `config.longest_num_samples`
at most; the extractor does it with `max_length=` that width and `padding="max_length"`), and the graph
computes only that much.

The STFT back end is fixed at export time (`config.stft_backend`, "auto" would resolve on the exporting
machine). `"fft"` exports `torch.fft.rfft` as ONNX `DFT`, in the checkpoint's `stft_precision` (float64
by default, which ONNX Runtime's CPU provider runs); `"conv"` exports two `Conv` nodes, which ONNX Runtime's
CPU provider runs in float32 only (pair it with `stft_precision="float32"`).
"""

import numpy as np
import torch
from torch import nn

from ..modeling_meamtm import MeamtmForAudioClassification


INPUT_NAMES = ("input_values", "attention_mask")


class WaveformClassifier(nn.Module):
    """`(batch, num_samples)` waveforms and mask -> `(batch, num_labels)` logits: the graph that is exported."""

    def __init__(self, model: MeamtmForAudioClassification):
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_values, attention_mask=attention_mask).logits


def example_inputs(config, batch_size: int = 2, num_samples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of the exported signature, `num_samples` wide (the model's window by default; with
    `padding_mode="longest"`, which exports a dynamic width, the bucket of 3/4 of the window); the second clip is
    half padding, so the mask's path is traced."""
    if num_samples is None:
        longest = config.padding_mode == "longest"
        num_samples = bucket_num_samples(config, config.num_samples * 3 // 4) if longest else config.num_samples
    generator = torch.Generator().manual_seed(0)
    waveforms = torch.randn(batch_size, num_samples, generator=generator) * 0.1
    mask = torch.ones(batch_size, num_samples, dtype=torch.long)
    mask[1:, num_samples // 2 :] = 0
    return waveforms * mask, mask


def bucket_num_samples(config, num_samples: int) -> int:
    """The width an exported `padding_mode="longest"` graph takes for a batch whose longest clip has
    `num_samples` samples: the samples of whole patch columns, `(time_stride * columns - 1) * hop_length +
    win_length`, with 2 <= columns <= the grid's (longer clips are cut)."""
    frames = max(config.num_frames_of(num_samples), 1)
    return width_of_columns(config, min(max(-(-frames // config.time_stride), 2), config.patch_grid[1]))


def width_of_columns(config, columns):
    """The samples of `columns` whole patch columns, `(time_stride * columns - 1) * hop_length + win_length`
    (`columns` may be a `torch.export.Dim`: the expression stays linear in it)."""
    return config.time_stride * config.hop_length * columns + (config.win_length - config.hop_length)


WIDTHS_KEY = "meamtm_input_widths"


def dynamic_shapes(config) -> dict[str, dict[int, torch.export.Dim]]:
    """The exported inputs' dynamic dimensions: the batch, and with `padding_mode="longest"` the width, in
    whole patch columns (`bucket_num_samples`): a width linear in the columns keeps every size in the graph
    exact, where an arbitrary width would need guards on the remainders."""
    dimensions = {0: torch.export.Dim("batch", min=1)}
    if config.padding_mode == "longest":
        dimensions[1] = width_of_columns(config, torch.export.Dim("columns", min=2, max=config.patch_grid[1]))
    return {name: dimensions for name in INPUT_NAMES}


def export_program(model: MeamtmForAudioClassification) -> torch.export.ExportedProgram:
    """`torch.export` of waveform -> logits with a dynamic batch size (and length, see `dynamic_shapes`)."""
    if model.config.stft_backend == "auto":
        raise ValueError(
            "stft_backend='auto' picks the STFT back end from the device at trace time: load the model with "
            "stft_backend='fft' or 'conv' for export (from_pretrained(path, stft_backend='fft'))."
        )
    if model.config.test_time_tempo_factors:
        raise ValueError(
            f"test_time_max_tempo={model.config.test_time_max_tempo}: a test-time tempo view stretches the batch to "
            "another width, which an exported graph cannot follow. Set model.config.test_time_max_tempo = 0 before "
            "exporting (the exported model then averages over the other test-time views only)."
        )
    classifier = WaveformClassifier(model.eval())
    with torch.no_grad():
        return torch.export.export(classifier, example_inputs(model.config), dynamic_shapes=dynamic_shapes(model.config))


def export_onnx(model: MeamtmForAudioClassification, path: str, opset: int = 18) -> torch.export.ExportedProgram:
    """Write the ONNX graph of `export_program(model)` to `path`; returns the exported program."""
    if model.config.stft_backend == "conv" and model.config.stft_precision == "float64":
        raise ValueError(
            "stft_backend='conv' with stft_precision='float64' exports float64 Conv nodes, which ONNX Runtime's CPU "
            "provider does not implement: export with stft_backend='fft' (float64 DFT) or stft_precision='float32'."
        )
    program = export_program(model)
    onnx_program = torch.onnx.export(
        program, input_names=list(INPUT_NAMES), output_names=["logits"], opset_version=opset, dynamo=True
    )
    # The widths the graph takes, so that `onnx_logits` can refuse another one with the fix instead of ONNX Runtime
    # failing inside the graph.
    onnx_program.model.metadata_props[WIDTHS_KEY] = ",".join(map(str, exported_widths(model.config)))
    onnx_program.save(path)
    return program


def exported_widths(config) -> list[int]:
    """The input widths (samples) an exported graph of `config` takes: `num_samples` with `padding_mode=
    "max_length"`; with `"longest"`, the `bucket_num_samples` widths of 2 to all of the grid's columns."""
    if config.padding_mode != "longest":
        return [config.num_samples]
    return [width_of_columns(config, columns) for columns in range(2, config.patch_grid[1] + 1)]


def onnx_logits(path: str, input_values: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Run an exported graph with ONNX Runtime (CPU): `(batch, num_samples)` x2 -> `(batch, num_labels)`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    widths = session.get_modelmeta().custom_metadata_map.get(WIDTHS_KEY)
    if widths and str(input_values.shape[-1]) not in widths.split(","):
        raise ValueError(
            f"input_values is {input_values.shape[-1]} samples wide; the graph in {path} takes widths {widths}: pad or "
            "cut each batch to one of them (meamtm.inference.export.bucket_num_samples(config, longest_clip), with "
            "the feature extractor's padding='max_length', max_length=that width)."
        )
    feeds = {"input_values": input_values.astype(np.float32), "attention_mask": attention_mask.astype(np.int64)}
    return session.run(["logits"], feeds)[0]


__all__ = [
    "WaveformClassifier", "bucket_num_samples", "dynamic_shapes", "export_onnx", "export_program", "exported_widths",
    "onnx_logits",
]
