"""One graph from waveform to logits: `torch.export` and ONNX export of a MEAMTM classifier, frontend included.

The exported graph takes `input_values` `(batch, config.num_samples)` float32 waveforms and `attention_mask`
`(batch, config.num_samples)` int64 (1 for real samples), any batch size, and returns logits
`(batch, num_labels)`. Pad clips to the model's window first, as the feature extractor does:
`extractor(clips, sampling_rate=sr, padding="max_length", return_tensors="np")`.

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


def example_inputs(config, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of the exported signature; the second clip is half padding, so the mask's path is traced."""
    generator = torch.Generator().manual_seed(0)
    waveforms = torch.randn(batch_size, config.num_samples, generator=generator) * 0.1
    mask = torch.ones(batch_size, config.num_samples, dtype=torch.long)
    mask[1:, config.num_samples // 2 :] = 0
    return waveforms * mask, mask


def export_program(model: MeamtmForAudioClassification) -> torch.export.ExportedProgram:
    """`torch.export` of waveform -> logits with a dynamic batch size."""
    if model.config.stft_backend == "auto":
        raise ValueError(
            "stft_backend='auto' picks the STFT back end from the device at trace time: load the model with "
            "stft_backend='fft' or 'conv' for export (from_pretrained(path, stft_backend='fft'))."
        )
    batch = torch.export.Dim("batch", min=1)
    classifier = WaveformClassifier(model.eval())
    with torch.no_grad():
        return torch.export.export(
            classifier, example_inputs(model.config), dynamic_shapes={name: {0: batch} for name in INPUT_NAMES}
        )


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
    onnx_program.save(path)
    return program


def onnx_logits(path: str, input_values: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Run an exported graph with ONNX Runtime (CPU): `(batch, num_samples)` x2 -> `(batch, num_labels)`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {"input_values": input_values.astype(np.float32), "attention_mask": attention_mask.astype(np.int64)}
    return session.run(["logits"], feeds)[0]


__all__ = ["WaveformClassifier", "export_onnx", "export_program", "onnx_logits"]
