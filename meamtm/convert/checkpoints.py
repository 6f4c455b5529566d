"""Checkpoint conversion to MEAMTM, as pure functions over configs and state dicts.

Three sources:

* transformers' AST (`ASTForAudioClassification` / `ASTModel`, e.g. the `MIT/ast-*` checkpoints): MEAMTM keeps
  AST's parameter names below the base model, so the state dict maps by renaming its base-model prefix; the
  features that `ASTFeatureExtractor` computed outside the model become frontend fields of the config.
* the original AST release (YuanGongND/ast `.pth` files): timm DeiT names under `module.v.`, a fused `qkv`
  projection, the head under `module.mlp_head.`; the geometry (`fstride`, `tstride`, `input_tdim`) is not
  stored and comes from the user.
* ImageNet ViT / DeiT (transformers' `ViTModel` / `DeiTModel`), AST's ImageNet initialisation: the RGB patch
  projection summed to one channel, the square positional grid cut or interpolated to the spectrogram's
  (frequency, time) patch grid.

AST's rule for moving positional embeddings to another patch grid (`resize_position_embeddings`) lives with the
model, which also applies it when a checkpoint is loaded at another clip length or mel count.
"""

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from transformers.utils import logging

from ..configuration_meamtm import MeamtmConfig
from ..modeling_meamtm import resize_patch_position_embeddings, resize_position_embeddings


logger = logging.get_logger(__name__)

AST_PREFIX = "audio_spectrogram_transformer."
MEAMTM_PREFIX = "meamtm."
# Tokens in front of the patches: cls and distillation.
NUM_PREFIX_TOKENS = 2

# ASTConfig fields that MEAMTM carries under the same name.
AST_FIELDS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
    "patch_size", "qkv_bias", "frequency_stride", "time_stride", "max_length", "num_mel_bins",
    "id2label", "label2id", "problem_type",
)


# --------------------------------------------------------------------------------------------------
# transformers' AST
# --------------------------------------------------------------------------------------------------


def config_from_ast(ast_config, feature_extractor=None, **overrides) -> MeamtmConfig:
    """A `MeamtmConfig` from an `ASTConfig` and the `ASTFeatureExtractor` that fed it.

    The feature extractor's sampling rate, mel bins, frame count, normalisation and mean/std become frontend
    fields; it must agree with the model config on `num_mel_bins` and `max_length`.
    """
    fields = {name: getattr(ast_config, name) for name in AST_FIELDS if getattr(ast_config, name, None) is not None}
    if isinstance(fields.get("patch_size"), (list, tuple)):
        sizes = set(fields["patch_size"])
        if len(sizes) != 1:
            raise ValueError(f"MEAMTM supports square patches only, got patch_size={fields['patch_size']}.")
        fields["patch_size"] = sizes.pop()
    if feature_extractor is not None:
        for name in ("num_mel_bins", "max_length"):
            if getattr(feature_extractor, name) != getattr(ast_config, name):
                raise ValueError(
                    f"The feature extractor's {name}={getattr(feature_extractor, name)} differs from the model "
                    f"config's {name}={getattr(ast_config, name)}: the checkpoint is inconsistent; fix one of them."
                )
        fields.update(
            sampling_rate=feature_extractor.sampling_rate,
            do_normalize=feature_extractor.do_normalize,
            spectrogram_mean=float(feature_extractor.mean),
            spectrogram_std=float(feature_extractor.std),
        )
    return MeamtmConfig(**{**fields, **overrides})


def ast_to_meamtm_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an `ASTForAudioClassification` / `ASTModel` state dict (transformers v5 names) to MEAMTM's.

    Keys of an `ASTModel` (no prefix) become `MeamtmModel` keys; keys under `audio_spectrogram_transformer.`
    move under `meamtm.`; the classifier keeps its name. Any other key is an error, never dropped.
    """
    converted = {}
    unknown = []
    for key, value in state_dict.items():
        if key.startswith(AST_PREFIX):
            converted[MEAMTM_PREFIX + key[len(AST_PREFIX) :]] = value
        elif key.startswith(("classifier.", "embeddings.", "layers.", "layernorm.")):
            converted[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"Unexpected keys in the AST state dict, not converted: {sorted(unknown)}")
    return converted


# --------------------------------------------------------------------------------------------------
# The original AST release (YuanGongND/ast)
# --------------------------------------------------------------------------------------------------

# DeiT's ImageNet heads: `timm.create_model` builds them and the released `.pth` files keep them, but AST's
# forward never calls them (it has its own `mlp_head`).
ORIGINAL_AST_UNUSED_KEYS = ("v.head.weight", "v.head.bias", "v.head_dist.weight", "v.head_dist.bias")
ORIGINAL_AST_TOP_LEVEL = {
    "v.cls_token": "embeddings.cls_token",
    "v.dist_token": "embeddings.distillation_token",
    "v.pos_embed": "embeddings.position_embeddings",
    "v.patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "v.patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "v.norm.weight": "layernorm.weight",
    "v.norm.bias": "layernorm.bias",
}
ORIGINAL_AST_HEAD = {
    "mlp_head.0.weight": "classifier.layernorm.weight",
    "mlp_head.0.bias": "classifier.layernorm.bias",
    "mlp_head.1.weight": "classifier.dense.weight",
    "mlp_head.1.bias": "classifier.dense.bias",
}
ORIGINAL_AST_BLOCK = {
    "norm1": "layernorm_before",
    "attn.proj": "attention.o_proj",
    "norm2": "layernorm_after",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
ORIGINAL_BLOCK_KEY = re.compile(r"v\.blocks\.(\d+)\.(.+)\.(weight|bias)")
# Heads of the timm DeiT models AST builds on (tiny224, small224, base224/base384); the weights do not store it.
DEIT_NUM_HEADS = {192: 3, 384: 6, 768: 12}
# timm's ViT blocks use LayerNorm(eps=1e-6); AST's `mlp_head` uses PyTorch's default 1e-5, which MEAMTM's single
# `layer_norm_eps` cannot express: the logits then move by ~5e-6 on the test model (the parity bound is 1e-4).
TIMM_LAYER_NORM_EPS = 1e-6


def strip_data_parallel(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the `module.` prefix that `torch.nn.DataParallel` puts on every key of AST's released files."""
    if state_dict and all(key.startswith("module.") for key in state_dict):
        return {key[len("module.") :]: value for key, value in state_dict.items()}
    return dict(state_dict)


def config_from_original_ast(
    state_dict: Mapping[str, torch.Tensor],
    frequency_stride: int = 10,
    time_stride: int = 10,
    num_mel_bins: int = 128,
    max_length: int = 1024,
    sampling_rate: int = 16000,
    num_attention_heads: int | None = None,
    **overrides,
) -> MeamtmConfig:
    """A `MeamtmConfig` for a state dict of the original AST release.

    The transformer's sizes are read off the weights; the patch geometry is what the user trained with (AST's
    `fstride`, `tstride`, `input_fdim`, `input_tdim`) and must give as many patches as the stored positional
    embedding has. AST's recipe frames with Kaldi's 25 ms / 10 ms at the file's rate, hence the window and hop.
    `overrides` sets any other field (`spectrogram_mean` / `spectrogram_std`: AST's `norm_mean` / `norm_std`,
    `id2label`, ...).
    """
    weights = strip_data_parallel(state_dict)
    required = ("v.pos_embed", "v.patch_embed.proj.weight", "v.blocks.0.mlp.fc1.weight")
    missing = [key for key in required if key not in weights]
    if missing:
        raise KeyError(
            f"Not a state dict of the original AST release: it lacks {missing} (expected keys under 'module.v.' "
            f"such as 'module.v.pos_embed'; found e.g. {sorted(state_dict)[:5]})."
        )
    hidden_size = weights["v.pos_embed"].shape[-1]
    projection = weights["v.patch_embed.proj.weight"]
    if projection.shape[1] != 1 or projection.shape[2] != projection.shape[3]:
        raise ValueError(
            f"v.patch_embed.proj.weight has shape {tuple(projection.shape)}; an AST checkpoint has square "
            "one-channel patches (hidden, 1, p, p). For an ImageNet ViT/DeiT use meamtm.convert.model_from_vit."
        )
    if num_attention_heads is None:
        if hidden_size not in DEIT_NUM_HEADS:
            raise ValueError(
                f"hidden_size={hidden_size} is not one of DeiT's {sorted(DEIT_NUM_HEADS)}: the number of attention "
                "heads is not stored in the weights; pass num_attention_heads."
            )
        num_attention_heads = DEIT_NUM_HEADS[hidden_size]
    num_layers = len({match.group(1) for key in weights if (match := ORIGINAL_BLOCK_KEY.fullmatch(key))})
    fields = dict(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=weights["v.blocks.0.mlp.fc1.weight"].shape[0],
        qkv_bias="v.blocks.0.attn.qkv.bias" in weights,
        layer_norm_eps=TIMM_LAYER_NORM_EPS,
        patch_size=projection.shape[-1],
        frequency_stride=frequency_stride,
        time_stride=time_stride,
        num_mel_bins=num_mel_bins,
        max_length=max_length,
        sampling_rate=sampling_rate,
        win_length=round(0.025 * sampling_rate),
        hop_length=round(0.010 * sampling_rate),
        n_fft=1 << (round(0.025 * sampling_rate) - 1).bit_length(),
    )
    if "mlp_head.1.weight" in weights and "id2label" not in overrides:
        fields["num_labels"] = weights["mlp_head.1.weight"].shape[0]
    config = MeamtmConfig(**{**fields, **overrides})
    stored = weights["v.pos_embed"].shape[1] - NUM_PREFIX_TOKENS
    if stored != config.num_patches:
        raise ValueError(
            f"The checkpoint's positional embedding covers {stored} patches, but fstride={frequency_stride}, "
            f"tstride={time_stride}, input_fdim={num_mel_bins}, input_tdim={max_length} give a "
            f"{config.patch_grid[0]} x {config.patch_grid[1]} = {config.num_patches} patch grid: pass the geometry "
            "the checkpoint was trained with (e.g. input_tdim=128 for AST's Speech Commands model, "
            "fstride=tstride=16 for the audioset_16_16 model)."
        )
    return config


def original_ast_to_meamtm_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a state dict of the original AST release to `MeamtmForAudioClassification` keys.

    timm's fused `attn.qkv` projection `(3 * hidden, hidden)` is split into `q_proj`, `k_proj`, `v_proj` (timm
    reshapes its output as (3, heads, head_dim), so the thirds are q, k, v in that order). DeiT's ImageNet heads
    (`ORIGINAL_AST_UNUSED_KEYS`) are dropped with a log line; any other key that has no place is an error.
    """
    converted = {}
    unknown = []
    for key, value in strip_data_parallel(state_dict).items():
        if key in ORIGINAL_AST_UNUSED_KEYS:
            logger.info(f"Dropping {key!r}: DeiT's ImageNet head, which AST's forward never uses.")
        elif key in ORIGINAL_AST_TOP_LEVEL:
            converted[MEAMTM_PREFIX + ORIGINAL_AST_TOP_LEVEL[key]] = value
        elif key in ORIGINAL_AST_HEAD:
            converted[ORIGINAL_AST_HEAD[key]] = value
        elif match := ORIGINAL_BLOCK_KEY.fullmatch(key):
            index, name, kind = match.groups()
            layer = f"{MEAMTM_PREFIX}layers.{index}."
            if name == "attn.qkv":
                for projection, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                    converted[f"{layer}attention.{projection}.{kind}"] = part
            elif name in ORIGINAL_AST_BLOCK:
                converted[f"{layer}{ORIGINAL_AST_BLOCK[name]}.{kind}"] = value
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"Keys of the original AST state dict with no MEAMTM counterpart: {sorted(unknown)}")
    return converted


# --------------------------------------------------------------------------------------------------
# ImageNet ViT / DeiT initialisation (AST's recipe)
# --------------------------------------------------------------------------------------------------

# ViT/DeiT fields that fix the shapes of the weights: a MEAMTM initialised from them must have the same.
VIT_SHAPE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size", "qkv_bias")
# Taken from the ViT by default, but free to change.
VIT_OTHER_FIELDS = ("hidden_act", "layer_norm_eps", "initializer_range")
# Parts of transformers' ViT/DeiT models that belong to image tasks and have no counterpart in AST: the pooler,
# the ImageNet classifiers, the masked-image-modeling token. They are dropped, with a log line naming them.
IMAGENET_ONLY_KEYS = re.compile(r"(pooler|classifier|cls_classifier|distillation_classifier)\..+|embeddings\.mask_token")
VIT_BASE_PREFIXES = ("vit.", "deit.")


def config_from_vit(vit_config, **fields) -> MeamtmConfig:
    """A `MeamtmConfig` with a ViT/DeiT config's transformer and the audio geometry, labels, etc. of `fields`.

    The patch size, widths and depth come from `vit_config` (a `fields` value that contradicts them is an error);
    the strides, `num_mel_bins`, `max_length` and everything about the frontend and labels from `fields`.
    """
    transformer = {name: getattr(vit_config, name) for name in VIT_SHAPE_FIELDS + VIT_OTHER_FIELDS}
    if isinstance(transformer["patch_size"], (list, tuple)):
        if len(set(transformer["patch_size"])) != 1:
            raise ValueError(f"MEAMTM supports square patches only, got patch_size={transformer['patch_size']}.")
        transformer["patch_size"] = transformer["patch_size"][0]
    clashes = {
        name: (fields[name], transformer[name])
        for name in VIT_SHAPE_FIELDS
        if name in fields and fields[name] != transformer[name]
    }
    if clashes:
        details = ", ".join(f"{name}={ours} (the ViT has {theirs})" for name, (ours, theirs) in clashes.items())
        raise ValueError(f"{details}: these are fixed by the pretrained weights; leave them out.")
    return MeamtmConfig(**{**transformer, **fields})


def _vit_grid(vit_config, num_patches: int) -> tuple[int, int]:
    """The (height, width) patch grid of a ViT/DeiT's positional embeddings."""
    image_size, patch_size = vit_config.image_size, vit_config.patch_size
    height, width = image_size if isinstance(image_size, (list, tuple)) else (image_size, image_size)
    patch_height, patch_width = patch_size if isinstance(patch_size, (list, tuple)) else (patch_size, patch_size)
    grid = (height // patch_height, width // patch_width)
    if grid[0] * grid[1] != num_patches:
        raise ValueError(
            f"The ViT's positional embedding has {num_patches} patch positions, but image_size={image_size} and "
            f"patch_size={patch_size} in its config give a {grid[0]} x {grid[1]} grid: the config does not match the weights."
        )
    return grid


def vit_to_meamtm_state_dict(
    state_dict: Mapping[str, torch.Tensor], vit_config, config: MeamtmConfig
) -> dict[str, torch.Tensor]:
    """A transformers `ViTModel` / `DeiTModel` state dict (or of their image classifiers) -> `MeamtmModel` keys.

    AST's ImageNet initialisation: the patch projection's input channels are summed (an RGB filter applied to a
    grey image is the sum of its channel filters); the positional grid is resized to `config.patch_grid` by
    `resize_patch_position_embeddings`; cls and distillation tokens and their positions are copied. A ViT without
    a distillation token gets a copy of its cls token and cls position, so both tokens start identical and their
    average (MEAMTM's pooled output) starts as the ViT's cls output. Encoder weights map one to one. Image-only
    parts (`IMAGENET_ONLY_KEYS`) are dropped with a log line; any other key without a place is an error.
    """
    weights = dict(state_dict)
    for prefix in VIT_BASE_PREFIXES:
        if f"{prefix}embeddings.cls_token" in weights:
            weights = {key.removeprefix(prefix): value for key, value in weights.items()}
            break
    converted = {}
    unknown = []
    dropped = []
    for key, value in weights.items():
        if IMAGENET_ONLY_KEYS.fullmatch(key):
            dropped.append(key)
        elif key == "embeddings.patch_embeddings.projection.weight":
            converted[key] = value.sum(dim=1, keepdim=True)
        elif key in ("embeddings.patch_embeddings.projection.bias", "embeddings.cls_token", "embeddings.distillation_token"):
            converted[key] = value
        elif key == "embeddings.position_embeddings":
            continue  # below, once we know whether there is a distillation token
        elif key.startswith(("layers.", "layernorm.")):
            converted[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"Keys of the ViT/DeiT state dict with no MEAMTM counterpart: {sorted(unknown)}")
    if "embeddings.position_embeddings" not in weights or "embeddings.cls_token" not in weights:
        raise KeyError(
            "The ViT/DeiT state dict lacks 'embeddings.position_embeddings' or 'embeddings.cls_token': "
            f"pass the state dict of a ViTModel/DeiTModel (found e.g. {sorted(weights)[:5]})."
        )
    if dropped:
        logger.info(f"Not used by MEAMTM (image-task parts of the ViT/DeiT): {sorted(dropped)}")

    positions = weights["embeddings.position_embeddings"]
    num_prefix = 2 if "embeddings.distillation_token" in weights else 1
    source_grid = _vit_grid(vit_config, positions.shape[1] - num_prefix)
    patches = resize_patch_position_embeddings(positions[:, num_prefix:], source_grid, config.patch_grid)
    if num_prefix == 1:
        converted["embeddings.distillation_token"] = weights["embeddings.cls_token"].clone()
        prefix = torch.cat((positions[:, :1], positions[:, :1]), dim=1)
    else:
        prefix = positions[:, :2]
    converted["embeddings.position_embeddings"] = torch.cat((prefix, patches), dim=1)
    return converted


def load_vit(vit):
    """A transformers ViT/DeiT model from an instance, a local path or a Hub id (`AutoModel.from_pretrained`)."""
    if isinstance(vit, (str, Path)):
        from transformers import AutoModel

        vit = AutoModel.from_pretrained(vit)
    config = getattr(vit, "config", None)
    if not isinstance(vit, nn.Module) or getattr(config, "model_type", None) not in ("vit", "deit"):
        raise TypeError(
            f"Expected a transformers ViT or DeiT model (or its path / Hub id), got {type(vit).__name__} with "
            f"model_type={getattr(config, 'model_type', None)!r}."
        )
    return vit


def model_from_vit(model_class, vit, **config_fields):
    """`model_class` (a MEAMTM model class) initialised from an ImageNet ViT/DeiT; see `vit_to_meamtm_state_dict`.

    `config_fields` are `MeamtmConfig` fields for the audio side (`num_mel_bins`, `max_length`, strides,
    `num_labels`, frontend settings). Everything below the classifier comes from the ViT; the classifier is new.
    """
    vit = load_vit(vit)
    config = config_from_vit(vit.config, **config_fields)
    model = model_class(config)
    load_converted_state_dict(model.base_model, vit_to_meamtm_state_dict(vit.state_dict(), vit.config, config))
    return model


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def load_converted_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a converted state dict into a MEAMTM model, exactly: every weight of the model gets a value of the
    same shape and every value a weight, or a `ValueError` names the keys that do not fit.

    Frontend tensors (`frontend.` keys, present when `trainable_stft` / `trainable_mel` make them parameters)
    are exempt: they are derived from the config at construction, and no source checkpoint has them.
    """
    expected = model.state_dict()
    derived = {key for key in expected if key.startswith("frontend.") or ".frontend." in key}
    missing = sorted(set(expected) - set(state_dict) - derived)
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{key}: checkpoint {tuple(value.shape)}, model {tuple(expected[key].shape)}"
        for key, value in state_dict.items()
        if key in expected and value.shape != expected[key].shape
    )
    problems = [
        f"{label}: {keys}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mismatched", mismatched))
        if keys
    ]
    if problems:
        raise ValueError(f"The converted weights do not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=False)


__all__ = [
    "ast_to_meamtm_state_dict",
    "config_from_ast",
    "config_from_original_ast",
    "config_from_vit",
    "load_converted_state_dict",
    "model_from_vit",
    "original_ast_to_meamtm_state_dict",
    "resize_patch_position_embeddings",
    "resize_position_embeddings",
    "vit_to_meamtm_state_dict",
]
