"""Checkpoint conversion to MEAMTM: pure functions over configs and state dicts (transformers' AST, the original
AST release, ImageNet ViT/DeiT)."""

from .checkpoints import (
    ast_to_meamtm_state_dict,
    config_from_ast,
    config_from_original_ast,
    config_from_vit,
    load_converted_state_dict,
    model_from_vit,
    original_ast_to_meamtm_state_dict,
    vit_to_meamtm_state_dict,
)


__all__ = [
    "ast_to_meamtm_state_dict",
    "config_from_ast",
    "config_from_original_ast",
    "config_from_vit",
    "load_converted_state_dict",
    "model_from_vit",
    "original_ast_to_meamtm_state_dict",
    "vit_to_meamtm_state_dict",
]
