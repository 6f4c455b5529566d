"""meamtm/convert/checkpoints.py: AST (transformers and the original release) and ImageNet ViT/DeiT -> MEAMTM, and
positional embeddings on another patch grid. Every source model is built locally; nothing downloads."""

import logging

import numpy as np
import pytest
import torch
from torch import nn
from transformers import (
    ASTConfig,
    ASTFeatureExtractor,
    ASTForAudioClassification,
    DeiTConfig,
    DeiTForImageClassificationWithTeacher,
    DeiTModel,
    ViTConfig,
    ViTForImageClassification,
    ViTModel,
)

from meamtm import MeamtmFeatureExtractor, MeamtmForAudioClassification, MeamtmModel
from meamtm.convert.checkpoints import (
    ast_to_meamtm_state_dict,
    config_from_ast,
    config_from_original_ast,
    load_converted_state_dict,
    model_from_vit,
    original_ast_to_meamtm_state_dict,
    resize_patch_position_embeddings,
    vit_to_meamtm_state_dict,
)

from ..conftest import TINY, tiny_config


def clips_of(*lengths, seed=0):
    generator = np.random.default_rng(seed)
    clips = []
    for length in lengths:
        time = np.arange(length) / 16000
        tone = 0.3 * np.sin(2 * np.pi * 440 * time * (1 + time))
        clips.append((tone + 0.05 * generator.standard_normal(length)).astype(np.float32))
    return clips


def meamtm_logits(model, clips):
    extractor = MeamtmFeatureExtractor.from_model_config(model.config)
    return model(**extractor(clips, sampling_rate=model.config.sampling_rate, return_tensors="pt")).logits


# ------------------------------------------------------------------------------------------------
# transformers' AST
# ------------------------------------------------------------------------------------------------

TINY_AST = {key: TINY[key] for key in TINY}


@pytest.mark.parametrize(
    "ast_fields, extractor_fields, lengths",
    [
        pytest.param(dict(TINY_AST, num_labels=4), {}, (9000, 4000), id="tiny"),
        pytest.param(
            dict(TINY_AST, max_length=128, num_labels=35),
            dict(mean=-6.845978, std=5.5654526),
            (12000, 25000),
            id="max_length-128-other-mean-std",
        ),
        pytest.param(dict(TINY_AST, num_labels=3), dict(do_normalize=False), (7000,), id="unnormalised"),
        pytest.param(dict(num_labels=527), {}, (100000,), id="base-128x1024-stride10", marks=pytest.mark.slow),
    ],
)
@torch.no_grad()
def test_ast_and_converted_model_agree_on_raw_waveforms(ast_fields, extractor_fields, lengths):
    ast_config = ASTConfig(**ast_fields)
    ast = ASTForAudioClassification(ast_config).eval()
    extractor = ASTFeatureExtractor(num_mel_bins=ast_config.num_mel_bins, max_length=ast_config.max_length, **extractor_fields)
    model = MeamtmForAudioClassification(config_from_ast(ast_config, extractor)).eval()
    load_converted_state_dict(model, ast_to_meamtm_state_dict(ast.state_dict()))
    for name in ("sampling_rate", "num_mel_bins", "max_length", "do_normalize"):
        assert getattr(model.config, name) == getattr(extractor, name)
    assert (model.config.spectrogram_mean, model.config.spectrogram_std) == (extractor.mean, extractor.std)
    assert model.config.num_patches + 2 == ast.audio_spectrogram_transformer.embeddings.position_embeddings.shape[1]
    clips = clips_of(*lengths)
    expected = ast(**extractor(clips, sampling_rate=16000, return_tensors="pt")).logits
    torch.testing.assert_close(meamtm_logits(model, clips), expected, atol=1e-4, rtol=0)


def test_base_config_carries_ast_geometry_and_labels():
    ast_config = ASTConfig(num_labels=527)
    config = config_from_ast(ast_config, ASTFeatureExtractor())
    assert config.patch_grid == (12, 101) and config.num_patches == 1212
    assert config.num_labels == 527 and config.id2label == ast_config.id2label


def test_inconsistent_ast_feature_extractor_is_an_error():
    with pytest.raises(ValueError, match="max_length=128 differs from the model config's max_length=64"):
        config_from_ast(ASTConfig(**TINY_AST), ASTFeatureExtractor(num_mel_bins=32, max_length=128))


def test_loading_reports_missing_unexpected_and_mismatched_keys_by_name():
    model = MeamtmForAudioClassification(tiny_config(num_labels=3))
    state = {key: value.clone() for key, value in model.state_dict().items()}
    del state["meamtm.layers.1.mlp.fc2.bias"]
    state["meamtm.layers.7.mlp.fc2.bias"] = torch.zeros(32)
    state["classifier.dense.weight"] = torch.zeros(5, 32)
    with pytest.raises(ValueError) as error:
        load_converted_state_dict(model, state)
    message = str(error.value)
    assert "missing: ['meamtm.layers.1.mlp.fc2.bias']" in message
    assert "unexpected: ['meamtm.layers.7.mlp.fc2.bias']" in message
    assert "classifier.dense.weight: checkpoint (5, 32), model (3, 32)" in message


def test_frontend_parameters_come_from_the_config_not_the_checkpoint():
    ast = ASTForAudioClassification(ASTConfig(**TINY_AST, num_labels=2))
    model = MeamtmForAudioClassification(tiny_config(num_labels=2, trainable_mel=True))
    load_converted_state_dict(model, ast_to_meamtm_state_dict(ast.state_dict()))
    assert "meamtm.frontend.mel_filters" in dict(model.named_parameters())


# ------------------------------------------------------------------------------------------------
# The original AST release: timm DeiT names, fused qkv, `module.` from DataParallel
# ------------------------------------------------------------------------------------------------


class TimmAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        batch, length, width = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]
        attention = ((query @ key.transpose(-2, -1)) * (width // self.heads) ** -0.5).softmax(dim=-1)
        return self.proj((attention @ value).transpose(1, 2).reshape(batch, length, width))


class TimmMlp(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TimmBlock(nn.Module):
    def __init__(self, width, heads, hidden):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(width, eps=1e-6), TimmAttention(width, heads)
        self.norm2, self.mlp = nn.LayerNorm(width, eps=1e-6), TimmMlp(width, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TimmPatchEmbed(nn.Module):
    def __init__(self, width, patch, stride):
        super().__init__()
        self.proj = nn.Conv2d(1, width, kernel_size=patch, stride=stride)


class TimmDistilledViT(nn.Module):
    """The parts of timm 0.4.5's `DistilledVisionTransformer` that AST's state dicts hold (`self.v`)."""

    def __init__(self, width, depth, heads, hidden, patch, stride, num_patches):
        super().__init__()
        self.patch_embed = TimmPatchEmbed(width, patch, stride)
        self.cls_token = nn.Parameter(torch.randn(1, 1, width) * 0.1)
        self.dist_token = nn.Parameter(torch.randn(1, 1, width) * 0.1)
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 2, width) * 0.1)
        self.blocks = nn.ModuleList(TimmBlock(width, heads, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.head = nn.Linear(width, 1000)
        self.head_dist = nn.Linear(width, 1000)


class OriginalAST(nn.Module):
    """AST's `ASTModel` (YuanGongND/ast, src/models/ast_models.py) at a given geometry, forward included."""

    def __init__(self, label_dim, fstride, tstride, input_fdim, input_tdim, width=32, depth=2, heads=4, hidden=37, patch=8):
        super().__init__()
        self.stride = (fstride, tstride)
        grid = ((input_fdim - patch) // fstride + 1, (input_tdim - patch) // tstride + 1)
        self.v = TimmDistilledViT(width, depth, heads, hidden, patch, self.stride, grid[0] * grid[1])
        self.mlp_head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, label_dim))
        with torch.no_grad():  # away from the identity init, so that every mapping error shows
            for name, parameter in self.named_parameters():
                if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("0.weight"):
                    parameter.copy_(1 + 0.2 * torch.randn_like(parameter))
                elif name.endswith("bias"):
                    parameter.copy_(0.1 * torch.randn_like(parameter))

    def forward(self, x):
        x = self.v.patch_embed.proj(x.unsqueeze(1).transpose(2, 3)).flatten(2).transpose(1, 2)
        batch = x.shape[0]
        x = torch.cat((self.v.cls_token.expand(batch, -1, -1), self.v.dist_token.expand(batch, -1, -1), x), dim=1)
        x = x + self.v.pos_embed
        for block in self.v.blocks:
            x = block(x)
        x = self.v.norm(x)
        return self.mlp_head((x[:, 0] + x[:, 1]) / 2)


ORIGINAL_GEOMETRY = dict(fstride=6, tstride=6, input_fdim=32, input_tdim=64)
ESC50_NORM = dict(norm_mean=-6.6268077, norm_std=5.358466)


def original_release(label_dim=5, **geometry):
    """An `OriginalAST` and its state dict as the release stores it: wrapped in DataParallel (`module.` keys)."""
    reference = OriginalAST(label_dim, **{**ORIGINAL_GEOMETRY, **geometry}).eval()
    return reference, nn.DataParallel(reference).state_dict()


def original_recipe_features(clips, input_fdim, input_tdim, norm_mean, norm_std):
    """AST's `dataloader.py`: waveform - waveform.mean(), Kaldi fbank, pad/cut, (fbank - mean) / (2 std)."""
    extractor = ASTFeatureExtractor(num_mel_bins=input_fdim, max_length=input_tdim, mean=norm_mean, std=norm_std)
    return extractor([clip - clip.mean() for clip in clips], sampling_rate=16000, return_tensors="pt")["input_values"]


def test_original_release_keys_are_what_ast_saves():
    _, state_dict = original_release()
    assert "module.v.blocks.1.attn.qkv.weight" in state_dict
    assert "module.v.patch_embed.proj.weight" in state_dict and "module.mlp_head.1.bias" in state_dict
    assert "module.v.head_dist.weight" in state_dict


@torch.no_grad()
def test_original_ast_and_converted_model_agree_on_raw_waveforms():
    reference, state_dict = original_release()
    config = config_from_original_ast(
        state_dict,
        frequency_stride=6,
        time_stride=6,
        num_mel_bins=32,
        max_length=64,
        num_attention_heads=4,
        spectrogram_mean=ESC50_NORM["norm_mean"],
        spectrogram_std=ESC50_NORM["norm_std"],
    )
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.patch_size) == (32, 2, 37, 8)
    assert config.num_labels == 5 and config.layer_norm_eps == 1e-6
    model = MeamtmForAudioClassification(config).eval()
    load_converted_state_dict(model, original_ast_to_meamtm_state_dict(state_dict))
    clips = [clip + 0.2 for clip in clips_of(9000, 5000)]  # a DC offset, which the recipe subtracts
    features = original_recipe_features(clips, 32, 64, **ESC50_NORM)
    torch.testing.assert_close(meamtm_logits(model, clips), reference(features), atol=1e-4, rtol=0)


def test_fused_qkv_is_split_into_query_key_value_in_order():
    _, state_dict = original_release()
    converted = original_ast_to_meamtm_state_dict(state_dict)
    qkv = state_dict["module.v.blocks.0.attn.qkv.weight"]
    for index, name in enumerate(("q_proj", "k_proj", "v_proj")):
        torch.testing.assert_close(converted[f"meamtm.layers.0.attention.{name}.weight"], qkv[32 * index : 32 * (index + 1)])
    assert not any("head" in key and "mlp" not in key for key in converted if not key.startswith("classifier"))


def test_unknown_original_key_is_an_error_naming_it():
    _, state_dict = original_release()
    state_dict["module.v.blocks.0.ls1.gamma"] = torch.ones(32)
    with pytest.raises(KeyError, match=r"v\.blocks\.0\.ls1\.gamma"):
        original_ast_to_meamtm_state_dict(state_dict)


def test_original_geometry_that_does_not_fit_the_positions_is_an_error():
    _, state_dict = original_release()
    with pytest.raises(ValueError, match=r"covers 50 patches.*input_tdim=128.*5 x 21 = 105"):
        config_from_original_ast(state_dict, 6, 6, 32, 128, num_attention_heads=4)


def test_original_width_without_known_heads_needs_them_given():
    _, state_dict = original_release()
    with pytest.raises(ValueError, match="hidden_size=32 is not one of DeiT's"):
        config_from_original_ast(state_dict, 6, 6, 32, 64)


@torch.no_grad()
def test_global_mean_subtraction_of_the_recipe_is_a_no_op_after_per_frame_dc_removal():
    """AST's recipe subtracts the clip's mean before Kaldi's fbank, which removes each frame's mean anyway: the
    frontend, fed the raw clip, matches the recipe's features of the centred clip, even for a large offset."""
    config = tiny_config(spectrogram_mean=ESC50_NORM["norm_mean"], spectrogram_std=ESC50_NORM["norm_std"])
    frontend = MeamtmModel(config).frontend
    (clip,) = clips_of(9000)
    for offset in (0.0, 0.5):
        raw = clip + offset
        recipe = original_recipe_features([raw], 32, 64, **ESC50_NORM)
        torch.testing.assert_close(frontend(torch.from_numpy(raw)[None]), recipe, atol=1e-4, rtol=0)
    # Without the per-frame step the offset would matter: the test above would catch a frontend that lost it.
    no_dc_removal = MeamtmModel(tiny_config(remove_dc_offset=False)).frontend
    shifted = no_dc_removal(torch.from_numpy(clip + 0.5)[None]) - no_dc_removal(torch.from_numpy(clip)[None])
    assert shifted.abs().max() > 0.1


# ------------------------------------------------------------------------------------------------
# Positional embeddings on another grid: AST's code as the reference
# ------------------------------------------------------------------------------------------------


def ast_reference_patch_positions(grid_positions, source_grid, f_dim, t_dim):
    """AST's `ASTModel.__init__` (ImageNet branch), line for line, with its square `oringal_hw` split into the two
    source sizes: `grid_positions` `(1, Fs * Ts, D)` -> `(1, f_dim * t_dim, D)`."""
    source_f, source_t = source_grid
    dim = grid_positions.shape[-1]
    new_pos_embed = grid_positions.transpose(1, 2).reshape(1, dim, source_f, source_t)
    if t_dim <= source_t:
        new_pos_embed = new_pos_embed[:, :, :, int(source_t / 2) - int(t_dim / 2) : int(source_t / 2) - int(t_dim / 2) + t_dim]
    else:
        new_pos_embed = torch.nn.functional.interpolate(new_pos_embed, size=(source_f, t_dim), mode="bilinear")
    if f_dim <= source_f:
        new_pos_embed = new_pos_embed[:, :, int(source_f / 2) - int(f_dim / 2) : int(source_f / 2) - int(f_dim / 2) + f_dim, :]
    else:
        new_pos_embed = torch.nn.functional.interpolate(new_pos_embed, size=(f_dim, t_dim), mode="bilinear")
    return new_pos_embed.reshape(1, dim, f_dim * t_dim).transpose(1, 2)


@pytest.mark.parametrize(
    "source_grid, target_grid",
    [((24, 24), (12, 101)), ((12, 101), (12, 12)), ((4, 4), (5, 10)), ((8, 8), (5, 10)), ((12, 101), (14, 50))],
)
def test_resize_matches_ast_code(source_grid, target_grid):
    positions = torch.randn(1, source_grid[0] * source_grid[1], 6)
    expected = ast_reference_patch_positions(positions, source_grid, *target_grid)
    torch.testing.assert_close(resize_patch_position_embeddings(positions, source_grid, target_grid), expected)


def test_cutting_keeps_the_middle_of_the_grid():
    grid = torch.arange(12 * 101, dtype=torch.float32).reshape(1, 12 * 101, 1)
    cut = resize_patch_position_embeddings(grid, (12, 101), (12, 12)).reshape(12, 12)
    assert cut[0].tolist() == list(range(44, 56))  # AST: columns 50 - 6 ... 50 + 6 of every row
    assert cut[:, 0].tolist() == [44 + 101 * row for row in range(12)]


# ------------------------------------------------------------------------------------------------
# ImageNet ViT / DeiT initialisation
# ------------------------------------------------------------------------------------------------

VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, patch_size=8)
AUDIO = dict(num_mel_bins=32, max_length=64, frequency_stride=6, time_stride=6, num_labels=3)


@pytest.mark.parametrize("image_size", [32, 64], ids=["grid-4x4-interpolated", "grid-8x8-cut-and-interpolated"])
@pytest.mark.parametrize("source", ["vit", "deit-distilled"])
def test_from_vit_maps_every_weight(source, image_size):
    if source == "vit":
        vit = ViTModel(ViTConfig(**VIT, image_size=image_size))
    else:
        vit = DeiTModel(DeiTConfig(**VIT, image_size=image_size))
    model = model_from_vit(MeamtmForAudioClassification, vit, **AUDIO)
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.patch_size) == (32, 2, 8)
    assert config.patch_grid == (5, 10) and config.num_labels == 3
    ours, theirs = model.meamtm.state_dict(), vit.state_dict()
    embeddings = model.meamtm.embeddings

    assert embeddings.patch_embeddings.projection.weight.shape == (32, 1, 8, 8)
    assert embeddings.patch_embeddings.projection.stride == (6, 6)
    torch.testing.assert_close(
        embeddings.patch_embeddings.projection.weight, theirs["embeddings.patch_embeddings.projection.weight"].sum(1, keepdim=True)
    )
    for key, value in theirs.items():
        if key.startswith(("layers.", "layernorm.")) or key in ("embeddings.cls_token", "embeddings.patch_embeddings.projection.bias"):
            torch.testing.assert_close(ours[key], value, atol=0, rtol=0, msg=key)

    positions = theirs["embeddings.position_embeddings"]
    num_prefix = 1 if source == "vit" else 2
    grid = image_size // 8
    expected_patches = ast_reference_patch_positions(positions[:, num_prefix:], (grid, grid), 5, 10)
    assert embeddings.position_embeddings.shape == (1, 2 + 50, 32)
    torch.testing.assert_close(embeddings.position_embeddings[:, 2:], expected_patches)
    if source == "vit":  # a distillation token made from the cls token, position included
        torch.testing.assert_close(embeddings.distillation_token, theirs["embeddings.cls_token"])
        torch.testing.assert_close(embeddings.position_embeddings[:, 1], positions[:, 0])
        torch.testing.assert_close(embeddings.position_embeddings[:, 0], positions[:, 0])
    else:
        torch.testing.assert_close(embeddings.distillation_token, theirs["embeddings.distillation_token"])
        torch.testing.assert_close(embeddings.position_embeddings[:, :2], positions[:, :2])


@torch.no_grad()
def test_from_deit_computes_what_deit_computes_on_the_spectrogram_image():
    """Same grid, strides = patch size: MEAMTM on a waveform equals DeiT on its log-mel as a grey RGB image."""
    deit = DeiTModel(DeiTConfig(**VIT, image_size=32), add_pooling_layer=False).eval()
    model = model_from_vit(MeamtmModel, deit, num_mel_bins=32, max_length=32, frequency_stride=8, time_stride=8).eval()
    waveforms = torch.from_numpy(np.stack(clips_of(5360, 5360, seed=3)))
    spectrogram = model.frontend(waveforms)  # (batch, time, freq); the image's height is frequency
    image = spectrogram.transpose(1, 2)[:, None].expand(-1, 3, -1, -1)
    torch.testing.assert_close(
        model(waveforms).last_hidden_state, deit(pixel_values=image).last_hidden_state, atol=1e-5, rtol=1e-5
    )


@torch.no_grad()
def test_vit_without_distillation_token_starts_with_twin_tokens():
    vit = ViTModel(ViTConfig(**VIT, image_size=32))
    model = model_from_vit(MeamtmModel, vit, **{key: AUDIO[key] for key in AUDIO if key != "num_labels"}).eval()
    output = model(torch.from_numpy(np.stack(clips_of(9000))))
    torch.testing.assert_close(output.last_hidden_state[:, 0], output.last_hidden_state[:, 1])
    torch.testing.assert_close(output.pooler_output, output.last_hidden_state[:, 0])


def test_from_vit_takes_image_classifiers_and_saved_directories(tmp_path, caplog):
    teacher = DeiTForImageClassificationWithTeacher(DeiTConfig(**VIT, image_size=32, num_labels=10))
    teacher.save_pretrained(tmp_path)
    from_directory = model_from_vit(MeamtmForAudioClassification, str(tmp_path), **AUDIO)
    with caplog.at_level(logging.INFO, logger="meamtm.modeling_meamtm"):
        from_instance = model_from_vit(MeamtmForAudioClassification, teacher, **AUDIO)
    assert "cls_classifier.weight" in caplog.text and "distillation_classifier.bias" in caplog.text
    for key, value in from_instance.meamtm.state_dict().items():
        torch.testing.assert_close(from_directory.meamtm.state_dict()[key], value, msg=key)
    classifier = ViTForImageClassification(ViTConfig(**VIT, image_size=32, num_labels=10))
    assert model_from_vit(MeamtmForAudioClassification, classifier, **AUDIO).classifier.dense.out_features == 3


def test_from_vit_refuses_unknown_keys_and_conflicting_sizes():
    vit = ViTModel(ViTConfig(**VIT, image_size=32))
    config = tiny_config()
    with pytest.raises(KeyError, match=r"embeddings\.rel_pos_bias"):
        vit_to_meamtm_state_dict(dict(vit.state_dict(), **{"embeddings.rel_pos_bias": torch.zeros(3)}), vit.config, config)
    # Encoder keys map one to one; one the model lacks is named when loading.
    state_dict = dict(vit.state_dict(), **{"layers.0.attention.rel_pos_bias": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"unexpected: \['layers\.0\.attention\.rel_pos_bias'\]"):
        load_converted_state_dict(MeamtmModel(config), vit_to_meamtm_state_dict(state_dict, vit.config, config))
    with pytest.raises(ValueError, match=r"hidden_size=64 \(the ViT has 32\)"):
        model_from_vit(MeamtmForAudioClassification, vit, hidden_size=64, **AUDIO)
    with pytest.raises(TypeError, match="Expected a transformers ViT or DeiT model"):
        model_from_vit(MeamtmForAudioClassification, ASTForAudioClassification(ASTConfig(**TINY_AST)), **AUDIO)
    with pytest.raises(ValueError, match="image_size=48"):
        vit_to_meamtm_state_dict(vit.state_dict(), ViTConfig(**VIT, image_size=48), config)


# ------------------------------------------------------------------------------------------------
# Another geometry at load time (fine-tuning at another clip length or mel count)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "saved, loaded",
    [
        (dict(max_length=128), dict(max_length=64)),  # 5 x 21 -> 5 x 10: time cut
        (dict(max_length=64), dict(max_length=128, num_mel_bins=48)),  # 5 x 10 -> 7 x 21: both interpolated
    ],
)
def test_from_pretrained_fits_positions_to_a_new_geometry(tmp_path, caplog, saved, loaded):
    source = MeamtmForAudioClassification(tiny_config(num_labels=3, **saved))
    source.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="meamtm.modeling_meamtm"):
        model = MeamtmForAudioClassification.from_pretrained(tmp_path, **loaded)
    grid, new_grid = source.config.patch_grid, model.config.patch_grid
    assert f"{grid[0]} x {grid[1]} patch grid was fitted to this config's {new_grid[0]} x {new_grid[1]}" in caplog.text
    stored = source.meamtm.embeddings.position_embeddings.detach()
    expected = ast_reference_patch_positions(stored[:, 2:], grid, *new_grid)
    positions = model.meamtm.embeddings.position_embeddings
    torch.testing.assert_close(positions[:, 2:], expected)
    torch.testing.assert_close(positions[:, :2], stored[:, :2])
    assert positions.requires_grad and "meamtm.embeddings.position_embeddings" in dict(model.named_parameters())
    for key, value in source.state_dict().items():
        if "position_embeddings" not in key:
            torch.testing.assert_close(model.state_dict()[key], value, atol=0, rtol=0, msg=key)
    assert torch.isfinite(meamtm_logits(model, clips_of(6000))).all()


def test_other_mismatches_still_fail_loudly(tmp_path):
    MeamtmForAudioClassification(tiny_config(num_labels=3)).save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        MeamtmForAudioClassification.from_pretrained(tmp_path, num_labels=5, max_length=128)
