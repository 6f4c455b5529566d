"""Checkpoint conversion: transformers' AST -> MEAMTM, as pure functions over configs and state dicts.

MEAMTM keeps AST's parameter names below the base model, so an `ASTForAudioClassification` state dict
maps by renaming its base-model prefix; the features that `ASTFeatureExtractor` computed outside the model
become frontend fields of the config.
"""

from collections.abc import Mapping

import torch

from .configuration_meamtm import MeamtmConfig


AST_PREFIX = "audio_spectrogram_transformer."
MEAMTM_PREFIX = "meamtm."

# ASTConfig fields that MEAMTM carries under the same name.
AST_FIELDS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
    "patch_size", "qkv_bias", "frequency_stride", "time_stride", "max_length", "num_mel_bins",
    "id2label", "label2id", "problem_type",
)


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


__all__ = ["ast_to_meamtm_state_dict", "config_from_ast"]
