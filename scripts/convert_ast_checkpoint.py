"""Convert an Audio Spectrogram Transformer checkpoint to a MEAMTM checkpoint that takes raw waveforms.

    # transformers' AST (a Hub id such as MIT/ast-finetuned-audioset-10-10-0.4593, or a local directory)
    python scripts/convert_ast_checkpoint.py --ast_model MIT/ast-finetuned-audioset-10-10-0.4593 --output_dir ast-audioset-meamtm

    # the original release (YuanGongND/ast), with the geometry it was trained with
    python scripts/convert_ast_checkpoint.py --original_ast --ast_model audioset_10_10_0.4593.pth \
        --fstride 10 --tstride 10 --input_tdim 1024 --output_dir ast-audioset-meamtm

The converted model is checked before anything is written: the source model on its own features and the
MEAMTM model on the raw waveforms must give the same outputs on a few clips, within `--tolerance`; otherwise
the script fails with the measured difference. The output directory holds the model, its config, the feature
extractor and the model's source code (so `trust_remote_code=True` loads it where `meamtm` is not installed).
"""

import csv
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import (
    ASTConfig,
    ASTFeatureExtractor,
    ASTForAudioClassification,
    ASTModel,
    HfArgumentParser,
)


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing meamtm

from meamtm import MeamtmFeatureExtractor, MeamtmForAudioClassification, MeamtmModel  # noqa: E402
from meamtm.convert.checkpoints import (  # noqa: E402
    TIMM_LAYER_NORM_EPS,
    ast_to_meamtm_state_dict,
    config_from_ast,
    config_from_original_ast,
    load_converted_state_dict,
    original_ast_to_meamtm_state_dict,
    strip_data_parallel,
)


logger = logging.getLogger("convert_ast_checkpoint")


@dataclass
class ConversionArguments:
    ast_model: str = field(
        metadata={"help": "transformers AST checkpoint (Hub id or directory), or with --original_ast a .pth file."}
    )
    output_dir: str = field(metadata={"help": "Directory the MEAMTM checkpoint is written to."})
    push_to_hub: str | None = field(default=None, metadata={"help": "Also upload the result to this Hub repository."})
    num_verification_clips: int = field(default=2, metadata={"help": "Synthetic clips both models are run on."})
    tolerance: float = field(default=1e-4, metadata={"help": "Largest absolute output difference accepted."})


@dataclass
class OriginalAstArguments:
    """The original release stores no config: the geometry and normalisation it was trained with (`run.py`)."""

    original_ast: bool = field(default=False, metadata={"help": "--ast_model is a .pth file of YuanGongND/ast."})
    fstride: int = field(default=10, metadata={"help": "Frequency stride of the patches."})
    tstride: int = field(default=10, metadata={"help": "Time stride of the patches."})
    input_fdim: int = field(default=128, metadata={"help": "Mel bins."})
    input_tdim: int = field(default=1024, metadata={"help": "Frames (1024 for AudioSet, 512 for ESC-50, 128 for Speech Commands)."})
    norm_mean: float = field(default=-4.2677393, metadata={"help": "Data set mean of the log-mel (AudioSet's by default)."})
    norm_std: float = field(default=4.5689974, metadata={"help": "Data set standard deviation of the log-mel."})
    num_attention_heads: int | None = field(
        default=None, metadata={"help": "Heads, if the width is not one of DeiT's (192: 3, 384: 6, 768: 12)."}
    )
    label_csv: str | None = field(
        default=None, metadata={"help": "AST's class_labels_indices.csv (index, mid, display_name) for id2label."}
    )


def load_ast(name: str) -> tuple[nn.Module, ASTFeatureExtractor]:
    """The transformers AST model (classifier, or base model if that is what was saved) and its feature extractor."""
    try:
        extractor = ASTFeatureExtractor.from_pretrained(name)
    except OSError as error:
        raise ValueError(
            f"{name} has no ASTFeatureExtractor (preprocessor_config.json), and MEAMTM's frontend must reproduce "
            "the features the model was trained on: save the one you used next to the model, "
            f"ASTFeatureExtractor(max_length=..., mean=..., std=...).save_pretrained({name!r}). ({error})"
        ) from None
    architectures = ASTConfig.from_pretrained(name).architectures or []
    model_class = ASTModel if architectures == ["ASTModel"] else ASTForAudioClassification
    return model_class.from_pretrained(name).eval(), extractor


def convert_ast(ast: nn.Module, extractor: ASTFeatureExtractor) -> nn.Module:
    config = config_from_ast(ast.config, extractor)
    model = (MeamtmModel if isinstance(ast, ASTModel) else MeamtmForAudioClassification)(config)
    load_converted_state_dict(model, ast_to_meamtm_state_dict(ast.state_dict()))
    return model.eval()


def read_label_csv(path: str) -> dict[int, str]:
    with open(path, newline="") as handle:
        return {int(row["index"]): row["display_name"] for row in csv.DictReader(handle)}


def convert_original_ast(state_dict: dict, args: OriginalAstArguments) -> MeamtmForAudioClassification:
    labels = {"id2label": read_label_csv(args.label_csv)} if args.label_csv else {}
    config = config_from_original_ast(
        state_dict,
        frequency_stride=args.fstride,
        time_stride=args.tstride,
        num_mel_bins=args.input_fdim,
        max_length=args.input_tdim,
        num_attention_heads=args.num_attention_heads,
        spectrogram_mean=args.norm_mean,
        spectrogram_std=args.norm_std,
        **labels,
    )
    model = MeamtmForAudioClassification(config)
    load_converted_state_dict(model, original_ast_to_meamtm_state_dict(state_dict))
    return model.eval()


def original_ast_features(clips: list[np.ndarray], args: OriginalAstArguments) -> torch.Tensor:
    """AST's `dataloader.py` recipe: `waveform - waveform.mean()`, Kaldi fbank (Hanning window, no dither, 10 ms
    shift), zero-padded or cut to `input_tdim` frames, `(fbank - norm_mean) / (2 * norm_std)`.
    `ASTFeatureExtractor` computes that same fbank (torchaudio's, or its numpy port)."""
    extractor = ASTFeatureExtractor(
        num_mel_bins=args.input_fdim, max_length=args.input_tdim, mean=args.norm_mean, std=args.norm_std
    )
    centred = [clip - clip.mean() for clip in clips]
    return extractor(centred, sampling_rate=16000, return_tensors="pt")["input_values"]


def original_ast_logits(state_dict: dict, features: torch.Tensor, num_heads: int, stride: tuple[int, int]) -> torch.Tensor:
    """AST's forward (`ASTModel.forward` over timm 0.4.5's DeiT blocks) written over the released state dict, so a
    conversion is checked against the original computation, fused qkv and all, without installing timm.
    `features` `(batch, frames, mel_bins)` -> logits `(batch, num_labels)`."""
    weights = strip_data_parallel(state_dict)
    functional = nn.functional

    def norm(x, name, eps=TIMM_LAYER_NORM_EPS):
        return functional.layer_norm(x, x.shape[-1:], weights[f"{name}.weight"], weights[f"{name}.bias"], eps=eps)

    def linear(x, name):
        return functional.linear(x, weights[f"{name}.weight"], weights.get(f"{name}.bias"))

    image = features.unsqueeze(1).transpose(2, 3)
    patches = functional.conv2d(
        image, weights["v.patch_embed.proj.weight"], weights["v.patch_embed.proj.bias"], stride=stride
    ).flatten(2).transpose(1, 2)
    batch_size = patches.shape[0]
    tokens = torch.cat(
        (weights["v.cls_token"].expand(batch_size, -1, -1), weights["v.dist_token"].expand(batch_size, -1, -1), patches), 1
    )
    x = tokens + weights["v.pos_embed"]
    _, length, width = x.shape
    num_layers = len({key.split(".")[2] for key in weights if key.startswith("v.blocks.")})
    for index in range(num_layers):
        block = f"v.blocks.{index}"
        qkv = linear(norm(x, f"{block}.norm1"), f"{block}.attn.qkv")
        query, key, value = qkv.reshape(batch_size, length, 3, num_heads, width // num_heads).permute(2, 0, 3, 1, 4)
        attention = ((query @ key.transpose(-2, -1)) * (width // num_heads) ** -0.5).softmax(dim=-1)
        x = x + linear((attention @ value).transpose(1, 2).reshape(batch_size, length, width), f"{block}.attn.proj")
        x = x + linear(functional.gelu(linear(norm(x, f"{block}.norm2"), f"{block}.mlp.fc1")), f"{block}.mlp.fc2")
    x = norm(x, "v.norm")
    pooled = (x[:, 0] + x[:, 1]) / 2
    return linear(norm(pooled, "mlp_head.0", eps=1e-5), "mlp_head.1")


def verification_clips(config, count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` synthetic clips (noise plus a rising tone): the full input window, then ever shorter ones, so that
    both a full spectrogram and AST's padding are checked."""
    generator = np.random.default_rng(seed)
    clips = []
    for index in range(count):
        length = config.num_samples * (count - index) // count
        time = np.arange(length) / config.sampling_rate
        tone = 0.3 * np.sin(2 * np.pi * (200 + 300 * index) * time * (1 + time))
        clips.append((tone + 0.05 * generator.standard_normal(length)).astype(np.float32))
    return clips


def meamtm_outputs(model: nn.Module, clips: list[np.ndarray]) -> torch.Tensor:
    extractor = MeamtmFeatureExtractor.from_model_config(model.config)
    outputs = model(**extractor(clips, sampling_rate=model.config.sampling_rate, return_tensors="pt"))
    return outputs.logits if hasattr(outputs, "logits") else outputs.last_hidden_state


def check_agreement(expected: torch.Tensor, converted: torch.Tensor, tolerance: float) -> float:
    """The largest absolute difference; a `ValueError` stating it when it exceeds `tolerance`."""
    difference = (expected - converted).abs().max().item()
    if not difference <= tolerance:
        raise ValueError(
            f"The converted model disagrees with the source: largest output difference {difference:.3e} > tolerance "
            f"{tolerance:.0e} on {expected.shape[0]} clips. Nothing was written."
        )
    return difference


def save(model: nn.Module, output_dir: str, push_to_hub: str | None) -> None:
    """Model, config, feature extractor and (through the Auto-class registration) the model's source code."""
    extractor = MeamtmFeatureExtractor.from_model_config(model.config)
    model.save_pretrained(output_dir)
    extractor.save_pretrained(output_dir)
    if push_to_hub:
        model.push_to_hub(push_to_hub)
        extractor.push_to_hub(push_to_hub)


@torch.no_grad()
def main(argv: list[str] | None = None) -> nn.Module:
    parser = HfArgumentParser((ConversionArguments, OriginalAstArguments))
    args, original = parser.parse_args_into_dataclasses(args=argv)

    if original.original_ast:
        state_dict = torch.load(args.ast_model, map_location="cpu", weights_only=True)
        model = convert_original_ast(state_dict, original)
        clips = verification_clips(model.config, args.num_verification_clips)
        stride = (original.fstride, original.tstride)
        features = original_ast_features(clips, original)
        expected = original_ast_logits(state_dict, features, model.config.num_attention_heads, stride)
    else:
        ast, ast_extractor = load_ast(args.ast_model)
        model = convert_ast(ast, ast_extractor)
        clips = verification_clips(model.config, args.num_verification_clips)
        inputs = ast_extractor(clips, sampling_rate=ast_extractor.sampling_rate, return_tensors="pt")
        outputs = ast(**inputs)
        expected = outputs.logits if hasattr(outputs, "logits") else outputs.last_hidden_state

    difference = check_agreement(expected, meamtm_outputs(model, clips), args.tolerance)
    logger.info(f"Source and MEAMTM agree on {len(clips)} clips: largest output difference {difference:.2e}.")
    save(model, args.output_dir, args.push_to_hub)
    logger.info(f"Wrote {args.output_dir}" + (f" and pushed it to {args.push_to_hub}" if args.push_to_hub else ""))
    return model


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
