"""Export a MEAMTM classifier, frontend included, to ONNX (and optionally a torch.export program).

    python scripts/export_onnx.py --model PATH_OR_HUB_ID --output meamtm.onnx [--check_audio a.wav b.flac]
        [--stft_backend fft|conv] [--stft_precision float64|float32] [--torch_export meamtm.pt2]

The graph maps `input_values` (batch, num_samples) float32 and `attention_mask` (batch, num_samples) int64 to
`logits` (batch, num_labels), with a dynamic batch size, and for a `padding_mode="longest"` model a dynamic
num_samples in whole patch columns (`meamtm.inference.export.bucket_num_samples`). After writing it, the
script runs it with ONNX Runtime on the check clips (or on synthetic batches: two widths for "longest") and
fails if its logits differ from PyTorch's eager model, as loaded (the STFT back end "auto" picks on this
machine), by more than --tolerance.
"""

import sys
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import HfArgumentParser

from meamtm import MeamtmFeatureExtractor, MeamtmForAudioClassification
from meamtm.audio_io import load_audio
from meamtm.inference.export import bucket_num_samples, example_inputs, export_onnx, onnx_logits


@dataclass
class ExportArguments:
    model: str = field(metadata={"help": "Directory or Hub id of a MEAMTM audio classifier."})
    output: str = field(default="meamtm.onnx", metadata={"help": "Path of the ONNX file to write."})
    stft_backend: str = field(default="fft", metadata={"help": "fft (ONNX DFT) or conv (ONNX Conv)."})
    stft_precision: str | None = field(
        default=None, metadata={"help": "float64 or float32 STFT stage (default: the checkpoint's)."}
    )
    opset: int = field(default=18, metadata={"help": "ONNX opset version."})
    torch_export: str | None = field(default=None, metadata={"help": "Also save the torch.export program here (.pt2)."})
    check_audio: list[str] = field(default_factory=list, metadata={"help": "Audio files for the parity check."})
    tolerance: float = field(default=1e-4, metadata={"help": "Largest accepted |ONNX - PyTorch| logit difference."})


def load_models(arguments: ExportArguments):
    """The eager reference model as saved, and the one configured for export."""
    reference = MeamtmForAudioClassification.from_pretrained(arguments.model).eval()
    overrides = {"stft_backend": arguments.stft_backend}
    if arguments.stft_precision is not None:
        overrides["stft_precision"] = arguments.stft_precision
    return reference, MeamtmForAudioClassification.from_pretrained(arguments.model, **overrides).eval()


def check_inputs(arguments: ExportArguments, config) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches `(input_values, attention_mask)` at the widths the exported graph takes."""
    longest = config.padding_mode == "longest"
    if not arguments.check_audio:
        if longest:
            widths = (bucket_num_samples(config, config.num_samples // 3), config.longest_num_samples)
            return [example_inputs(config, batch_size=3, num_samples=width) for width in widths]
        return [example_inputs(config, batch_size=3)]
    extractor = MeamtmFeatureExtractor.from_model_config(config)
    clips = [load_audio(path, config.sampling_rate) for path in arguments.check_audio]
    width = bucket_num_samples(config, max(map(len, clips))) if longest else config.num_samples
    batch = extractor(clips, sampling_rate=config.sampling_rate, padding="max_length", max_length=width, return_tensors="pt")
    return [(batch["input_values"], batch["attention_mask"])]


def main(argv=None) -> float:
    (arguments,) = HfArgumentParser(ExportArguments).parse_args_into_dataclasses(args=argv)
    reference, model = load_models(arguments)
    program = export_onnx(model, arguments.output, opset=arguments.opset)
    if arguments.torch_export:
        torch.export.save(program, arguments.torch_export)
    difference, count = 0.0, 0
    for input_values, attention_mask in check_inputs(arguments, model.config):
        with torch.no_grad():
            expected = reference(input_values, attention_mask=attention_mask).logits.numpy()
        logits = onnx_logits(arguments.output, input_values.numpy(), attention_mask.numpy())
        difference, count = max(difference, float(np.abs(logits - expected).max())), count + len(input_values)
    print(f"wrote {arguments.output}; ONNX Runtime vs PyTorch on {count} clips: max |logit difference| = {difference:.3g}")
    if difference > arguments.tolerance:
        raise SystemExit(f"ONNX parity {difference:.3g} exceeds the tolerance {arguments.tolerance}")
    return difference


if __name__ == "__main__":
    main(sys.argv[1:])
