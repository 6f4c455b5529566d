"""MEAMTM: the Audio Spectrogram Transformer (Gong et al. 2021) on raw waveforms.

The architecture and parameter names are those of transformers' `ASTModel`, so AST checkpoints map one
to one; the difference is `MeamtmFrontend`, which turns waveforms into AST's log-mel features inside
`forward`, on the model's device, batched.
"""

import contextvars
import os
from collections.abc import Callable

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import ConversionOps, WeightConverter
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, logging
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .augmentation_meamtm import (
    NUM_SPECIAL_TOKENS,
    MeamtmChannelDropout,
    MeamtmMixing,
    MeamtmMixup,
    MeamtmPatchout,
    MeamtmSpecAugment,
    average_test_time_predictions,
)
from .configuration_meamtm import MeamtmConfig
from .frontend_meamtm import MeamtmFrontend, stretched_lengths, trim_silence


logger = logging.get_logger(__name__)


def is_tracing() -> bool:
    """Whether this forward is being traced into a graph (torch.compile, torch.export, torch.jit.trace).

    A Python branch on tensor values (or on a dynamic size) would fix the graph to the batch it was traced on,
    or break it; such branches are taken in eager mode only.
    """
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


class MeamtmPatchEmbeddings(nn.Module):
    """Log-mel `(batch, num_frames, num_mel_bins)` (or `(..., channels)`, `config.spectrogram_channels` of them)
    -> patch tokens `(batch, frequency * time, hidden_size)` on the `(frequency, time)` patch grid of `num_frames`
    (`num_patches` tokens at `max_length` frames).

    Patches overlap when the strides are below `patch_size` (AST: 16x16 patches, stride 10).
    """

    def __init__(self, config: MeamtmConfig):
        super().__init__()
        self.projection = nn.Conv2d(
            config.spectrogram_channels,
            config.hidden_size,
            kernel_size=(config.patch_size, config.patch_size),
            stride=(config.frequency_stride, config.time_stride),
        )

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        # (batch, time, freq[, channels]) -> (batch, channels, freq, time): frequency is the image's height, as in AST.
        image = spectrogram.unsqueeze(1).transpose(2, 3) if spectrogram.dim() == 3 else spectrogram.permute(0, 3, 2, 1)
        return self.projection(image).flatten(2).transpose(1, 2)


class MeamtmEmbeddings(nn.Module):
    """Patch tokens with the cls and distillation tokens in front, plus learned positional embeddings.

    A spectrogram with fewer patch columns than the grid (`padding_mode="longest"`) takes the positional
    embeddings of the grid's first time columns, AST's cut when fine-tuning at a shorter length. In training,
    patchout (when configured) then drops patch tokens; it is `nn.Identity` otherwise.
    """

    def __init__(self, config: MeamtmConfig):
        super().__init__()
        self.config = config
        self.patch_grid = config.patch_grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.patch_embeddings = MeamtmPatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.num_patches + 2, config.hidden_size))
        self.patchout = MeamtmPatchout(config) if config.uses_patchout else nn.Identity()
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, spectrogram: torch.Tensor, patch_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(batch, num_frames, num_mel_bins)` and the patches' mask `(batch, patches)` (True: real; None: all
        real) -> tokens `(batch, 2 + patches', hidden_size)` and the mask of their patches `(batch, patches')`.

        `patches` is `num_patches` at `max_length` frames; in training, patchout leaves `patches'` of them.
        """
        patches = self.patch_embeddings(spectrogram)
        batch_size = patches.shape[0]
        tokens = torch.cat(
            (self.cls_token.expand(batch_size, -1, -1), self.distillation_token.expand(batch_size, -1, -1), patches),
            dim=1,
        )
        position_embeddings = self.position_embeddings
        num_columns = patches.shape[1] // self.patch_grid[0]
        # A spectrogram as wide as the grid takes the embeddings as they are, max_length's graph. While tracing
        # the columns are always selected: comparing a dynamic width with the grid's would fix it in the graph.
        if self.config.padding_mode == "longest" and (is_tracing() or num_columns != self.patch_grid[1]):
            position_embeddings = self.first_columns(num_columns)
        tokens = tokens + position_embeddings
        if isinstance(self.patchout, MeamtmPatchout):
            tokens, patch_mask = self.patchout(tokens, patch_mask)
        return self.dropout(tokens), patch_mask

    def first_columns(self, num_columns: int) -> torch.Tensor:
        """Positional embeddings `(1, 2 + frequency * num_columns, hidden_size)` of the grid's first time columns."""
        frequency, time = self.patch_grid
        device = self.position_embeddings.device
        # Patch p of the grid sits at row p // time, column p % time. Indices rather than a slice of the
        # (frequency, time) view: flattening that slice copies or not depending on num_columns == time, a branch
        # that torch.export would fix in the graph.
        rows = torch.arange(frequency, device=device)[:, None] * time
        patches = (rows + torch.arange(num_columns, device=device)[None, :]).flatten() + NUM_SPECIAL_TOKENS
        special = torch.arange(NUM_SPECIAL_TOKENS, device=device)
        return self.position_embeddings.index_select(1, torch.cat((special, patches)))


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(batch, heads, tokens, head_dim)` q/k/v -> output `(batch, tokens, heads, head_dim)`, weights."""
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


class MeamtmAttention(nn.Module):
    def __init__(self, config: MeamtmConfig):
        super().__init__()
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = False
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        return self.o_proj(output.reshape(*input_shape, -1).contiguous()), weights


class ActivationThenLinear(torch.autograd.Function):
    """`linear(activation(pre), weight, bias)` that saves `pre` only and recomputes `activation(pre)` in backward.

    Autograd would store both `pre` (for the activation's backward) and `activation(pre)` (for the linear's),
    two `(batch, tokens, intermediate_size)` tensors per layer; this stores one, for one extra elementwise
    pass in backward. Forward values are the same ops on the same inputs; under autocast the linear runs in
    the dtype autocast picks and the backward uses that dtype too.
    """

    @staticmethod
    def forward(ctx, pre, weight, bias, activation):
        with torch.no_grad():
            output = nn.functional.linear(activation(pre), weight, bias)
        ctx.activation = activation
        ctx.weight_dtype, ctx.has_bias = weight.dtype, bias is not None
        ctx.save_for_backward(pre, weight)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        pre, weight = ctx.saved_tensors
        with torch.enable_grad():
            pre = pre.detach().requires_grad_(True)
            activated = ctx.activation(pre)
        dtype = grad_output.dtype  # the linear's compute dtype (autocast's, where it was on)
        grad_rows = grad_output.reshape(-1, grad_output.shape[-1])
        grad_weight = grad_rows.t().mm(activated.detach().reshape(-1, activated.shape[-1]).to(dtype))
        grad_bias = grad_rows.sum(0) if ctx.has_bias else None
        grad_activated = grad_output.matmul(weight.to(dtype)).to(activated.dtype)
        (grad_pre,) = torch.autograd.grad(activated, pre, grad_activated)
        grad_bias = grad_bias.to(ctx.weight_dtype) if grad_bias is not None else None
        return grad_pre, grad_weight.to(ctx.weight_dtype), grad_bias, None


class MeamtmMLP(nn.Module):
    def __init__(self, config: MeamtmConfig):
        super().__init__()
        self.config = config
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def recomputes_activation(self, pre: torch.Tensor) -> bool:
        """Whether this forward stores only the pre-activation (see `config.recompute_mlp_activation`).

        Only in eager autograd with a plain `nn.Linear` fc2 without hooks: an adapter (LoRA), a quantised or a
        hooked fc2 must run its own forward, and torch.compile recomputes elementwise ops by itself.
        """
        return (
            self.config.recompute_mlp_activation
            and pre.requires_grad
            and torch.is_grad_enabled()
            and type(self.fc2) is nn.Linear
            and not (self.fc2._forward_hooks or self.fc2._forward_pre_hooks)
            and not is_tracing()
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        pre = self.fc1(hidden_states)
        if self.recomputes_activation(pre):
            return ActivationThenLinear.apply(pre, self.fc2.weight, self.fc2.bias, self.activation_fn)
        return self.fc2(self.activation_fn(pre))


class MeamtmDropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch `(batch, ...)` for each example with probability
    `p` and scale the kept ones by `1 / (1 - p)`; the identity in evaluation. The mask is drawn on the input's device."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return branch
        keep = 1.0 - self.p
        mask = torch.empty((branch.shape[0],) + (1,) * (branch.dim() - 1), device=branch.device, dtype=branch.dtype)
        return branch * mask.bernoulli_(keep) / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MeamtmLayer(GradientCheckpointingLayer):
    """Pre-norm ViT block: `x + attention(norm(x))`, then `x + mlp(norm(x))`."""

    def __init__(self, config: MeamtmConfig, drop_path: float = 0.0):
        super().__init__()
        self.attention = MeamtmAttention(config)
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MeamtmMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.drop_path = MeamtmDropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attended, _ = self.attention(self.layernorm_before(hidden_states), attention_mask, **kwargs)
        hidden_states = hidden_states + self.drop_path(self.dropout(attended))
        return hidden_states + self.drop_path(self.dropout(self.mlp(self.layernorm_after(hidden_states))))


def _fit_axis(grid: torch.Tensor, size: int, axis: int) -> torch.Tensor:
    """Cut `grid` `(batch, hidden, freq, time)` to `size` from the middle along `axis`, or interpolate up to it."""
    current = grid.shape[axis]
    if size <= current:
        start = current // 2 - size // 2
        return grid.narrow(axis, start, size)
    target = list(grid.shape[2:])
    target[axis - 2] = size
    return nn.functional.interpolate(grid, size=tuple(target), mode="bilinear", align_corners=False)


def resize_patch_position_embeddings(
    embeddings: torch.Tensor, source_grid: tuple[int, int], target_grid: tuple[int, int]
) -> torch.Tensor:
    """Patch positional embeddings `(batch, Fs * Ts, hidden)` on a `(Fs, Ts)` grid -> `(batch, F * T, hidden)`.

    AST's rule (`ASTModel.__init__` in YuanGongND/ast): the time axis first, then the frequency axis (each step
    acts on one axis only, so the order does not change the result); an axis that shrinks is cut from the middle
    (start `old // 2 - new // 2`), one that grows is interpolated bilinearly (`align_corners=False`). Computed in
    float32 and returned in the input's dtype.
    """
    source_frequency, source_time = source_grid
    batch_size, count, hidden_size = embeddings.shape
    if count != source_frequency * source_time:
        raise ValueError(f"{count} positional embeddings do not fill a {source_frequency} x {source_time} patch grid.")
    grid = embeddings.float().transpose(1, 2).reshape(batch_size, hidden_size, source_frequency, source_time)
    frequency, time = target_grid
    grid = _fit_axis(grid, time, axis=3)
    grid = _fit_axis(grid, frequency, axis=2)
    return grid.reshape(batch_size, hidden_size, frequency * time).transpose(1, 2).to(embeddings.dtype)


def resize_position_embeddings(
    position_embeddings: torch.Tensor, source_grid: tuple[int, int], target_grid: tuple[int, int]
) -> torch.Tensor:
    """MEAMTM positional embeddings `(1, 2 + Fs * Ts, hidden)` -> `(1, 2 + F * T, hidden)`; the cls and
    distillation positions are kept, the patch positions resized by `resize_patch_position_embeddings`."""
    prefix = position_embeddings[:, :NUM_SPECIAL_TOKENS]
    patches = resize_patch_position_embeddings(position_embeddings[:, NUM_SPECIAL_TOKENS:], source_grid, target_grid)
    return torch.cat((prefix, patches), dim=1)


def source_patch_grid(num_patches: int, target_grid: tuple[int, int]) -> tuple[int, int] | None:
    """The (frequency, time) grid of `num_patches` stored patch positions that shares one axis with `target_grid`.

    A checkpoint fine-tuned at another clip length keeps the frequency axis, one at another mel count keeps the
    time axis; a grid that changes both axes at once cannot be told from the count alone (None).
    """
    frequency, time = target_grid
    candidates = {
        grid
        for grid in ((frequency, num_patches // frequency), (num_patches // time, time))
        if grid[0] * grid[1] == num_patches
    }
    if len(candidates) != 1:
        return None
    return candidates.pop()


# The patch grid of the checkpoint being loaded, read from its saved config by `from_pretrained`; without it
# (a bare state dict), the grid is inferred from the number of stored positions.
_checkpoint_patch_grid: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "meamtm_checkpoint_patch_grid", default=None
)


class ResizePositionEmbeddings(ConversionOps):
    """Load-time conversion (transformers' checkpoint conversion mapping) of the stored positional embeddings to
    the model's patch grid, for fine-tuning at another `max_length` or `num_mel_bins` (AST's cut / interpolation).

    A tensor that already has the model's shape passes through unchanged; any other hidden size is left for
    transformers to report as a mismatch.
    """

    @torch.no_grad()
    def convert(self, input_dict, source_patterns, target_patterns, full_layer_name=None, model=None, **kwargs):
        (stored,) = input_dict.values()
        stored = stored[0] if isinstance(stored, list) else stored
        expected = model.get_parameter(full_layer_name).shape if model is not None else stored.shape
        if stored.shape == expected or stored.dim() != 3 or stored.shape[-1] != expected[-1]:
            return {target_patterns[0]: stored}
        target_grid = model.config.patch_grid
        count = stored.shape[1] - NUM_SPECIAL_TOKENS
        source_grid = _checkpoint_patch_grid.get() or source_patch_grid(count, target_grid)
        if source_grid is None or source_grid[0] * source_grid[1] != count:
            # A saved config that disagrees with its own weights is a damaged checkpoint, not a geometry change:
            # the tensor is passed on unchanged so that transformers reports the mismatch (a RuntimeError).
            logger.warning(
                f"{full_layer_name}: {count} stored patch positions fit neither the checkpoint's saved patch grid "
                f"({_checkpoint_patch_grid.get()}) nor, on one shared axis, this config's {target_grid}; not resized."
            )
            return {target_patterns[0]: stored}
        logger.warning(
            f"{full_layer_name}: the checkpoint's {source_grid[0]} x {source_grid[1]} patch grid was fitted to this "
            f"config's {target_grid[0]} x {target_grid[1]} (num_mel_bins={model.config.num_mel_bins}, max_length="
            f"{model.config.max_length}) the way AST does: each axis cut from the middle when it shrinks and "
            "interpolated bilinearly when it grows."
        )
        return {target_patterns[0]: resize_position_embeddings(stored, source_grid, target_grid)}

    @property
    def reverse_op(self) -> ConversionOps:
        return _SaveAsIs()


class _SaveAsIs(ConversionOps):
    """Saving writes the model's own positional embeddings, whatever grid it was loaded from."""

    def convert(self, input_dict, source_patterns, target_patterns, **kwargs):
        (value,) = input_dict.values()
        return {target_patterns[0]: value}

    @property
    def reverse_op(self) -> ConversionOps:
        return ResizePositionEmbeddings()


register_checkpoint_conversion_mapping(
    "meamtm",
    [
        WeightConverter(
            "embeddings.position_embeddings", "embeddings.position_embeddings", operations=[ResizePositionEmbeddings()]
        )
    ],
    overwrite=True,
)


class MeamtmCheckpointMismatchError(RuntimeError):
    """Raised by `from_pretrained` when stored weights do not fit the model's shapes (a `RuntimeError`, as
    transformers raises it, with MEAMTM's explanation of the two usual causes and their fixes)."""


class MeamtmPreTrainedModel(PreTrainedModel):
    config_class = MeamtmConfig
    config: MeamtmConfig
    base_model_prefix = "meamtm"
    main_input_name = "input_values"
    input_modalities = ("audio",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["MeamtmEmbeddings", "MeamtmLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    _can_record_outputs = {"hidden_states": MeamtmLayer, "attentions": MeamtmAttention}
    _input_embed_layer = "patch_embeddings"

    def __init__(self, config: MeamtmConfig, *inputs, **kwargs):
        super().__init__(config, *inputs, **kwargs)
        # `from_pretrained(path, field=value)` sets overrides on the config after its own checks ran: check again.
        config._check_consistency()
        # The log-mel runs in float32 in any case (see `MeamtmFrontend._apply`); a trainable frontend also keeps
        # its parameters float32 when a checkpoint is loaded in half precision. A frozen frontend holds no
        # parameters, and naming it would make transformers report a module that holds nothing.
        if config.trainable_stft or config.trainable_mel:
            self._keep_in_fp32_modules = {"frontend"}
            self._keep_in_fp32_modules_strict = {"frontend"}

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, MeamtmEmbeddings):
            init.trunc_normal_(module.cls_token, std=std)
            init.trunc_normal_(module.distillation_token, std=std)
            init.trunc_normal_(module.position_embeddings, std=std)
        elif isinstance(module, MeamtmFrontend):
            # Non-persistent kernels are not in checkpoints: re-derive them from the config.
            targets = module.kernel_tensors()
            for name, value in module.kernels().items():
                init.copy_(targets[name], value)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, use_safetensors: bool | None = None, **kwargs):
        """`PreTrainedModel.from_pretrained`, restricted to safetensors, with clear errors for damaged files.

        Loading never unpickles: a checkpoint with only `pytorch_model.bin` (a pickle, which can run code when
        loaded) is refused, `use_safetensors=False` is refused, and `use_safetensors=True` is always passed on.
        A truncated or corrupted weight file, weights whose shapes do not fit `config.json`, and weights with
        NaN or infinite values raise a `ValueError` that names the file and the fix.
        """
        if use_safetensors is False:
            raise ValueError(
                "MEAMTM loads safetensors weights only (use_safetensors=False was passed): pickled weights can run "
                "code when loaded. Convert them once, where you trust the file, with save_pretrained()."
            )
        _refuse_pickled_weights(pretrained_model_name_or_path, kwargs.get("subfolder", ""))
        grid = _checkpoint_patch_grid.set(_saved_patch_grid(pretrained_model_name_or_path, kwargs))
        try:
            loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, use_safetensors=True, **kwargs)
        except SafetensorError as error:
            raise ValueError(
                f"The weights of {pretrained_model_name_or_path} are not a readable safetensors file ({error}): the "
                "file is truncated or corrupted. Download it again (force_download=True) or save the model again."
            ) from error
        except RuntimeError as error:
            if "ignore_mismatched_sizes" not in str(error) or isinstance(error, MeamtmCheckpointMismatchError):
                raise
            raise MeamtmCheckpointMismatchError(
                f"Some weights of {pretrained_model_name_or_path} do not fit this model's shapes (listed in the load "
                "report above). If you asked for another head (num_labels, id2label) or geometry on purpose, pass "
                "ignore_mismatched_sizes=True to start the mismatched weights anew. Otherwise the checkpoint's "
                "config.json does not describe its weights (edited, or from another checkpoint): restore the "
                f"config saved with them.\n{error}"
            ) from error
        finally:
            _checkpoint_patch_grid.reset(grid)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        for name, parameter in model.named_parameters():
            if parameter.device.type != "meta" and not bool(torch.isfinite(parameter).all()):
                raise ValueError(
                    f"Weight {name} loaded from {pretrained_model_name_or_path} holds NaN or infinite values: the "
                    "weight file is corrupted (or was saved from a diverged run). Download it again or use another "
                    "checkpoint."
                )
        return loaded

    def no_weight_decay(self) -> set[str]:
        """Parameter names that AST/timm keep out of weight decay (tokens and positional embeddings)."""
        return {name for name, _ in self.named_parameters() if name.endswith(("_token", "position_embeddings"))}


def _saved_patch_grid(path, kwargs: dict) -> tuple[int, int] | None:
    """The patch grid of the config saved with a checkpoint (None where there is none to read)."""
    hub_options = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")
    try:
        saved, _ = MeamtmConfig.get_config_dict(path, **{name: kwargs[name] for name in hub_options if name in kwargs})
    except (OSError, ValueError):
        return None
    if saved.get("model_type") != MeamtmConfig.model_type:
        return None
    defaults = MeamtmConfig.__dataclass_fields__
    mels, frames, patch, frequency_stride, time_stride = (
        saved.get(name, defaults[name].default)
        for name in ("num_mel_bins", "max_length", "patch_size", "frequency_stride", "time_stride")
    )
    return (mels - patch) // frequency_stride + 1, (frames - patch) // time_stride + 1


def _refuse_pickled_weights(path, subfolder: str = ""):
    """Raise if a local checkpoint holds only pickled weights (`pytorch_model.bin` or a `.bin`/`.pt` file)."""
    path = os.fspath(path) if path is not None else None
    if path is None:
        return
    if os.path.isfile(path) and not path.endswith(".safetensors"):
        raise ValueError(
            f"{path} is not a .safetensors file: MEAMTM loads safetensors weights only, because pickled weights "
            "(.bin, .pt) can run code when loaded. Pass the checkpoint directory or a .safetensors file."
        )
    directory = os.path.join(path, subfolder)
    if os.path.isdir(directory):
        names = set(os.listdir(directory))
        has_safetensors = any(name.endswith((".safetensors", ".safetensors.index.json")) for name in names)
        pickled = sorted(name for name in names if name.endswith((".bin", ".bin.index.json", ".pt", ".pth")))
        if pickled and not has_safetensors:
            raise ValueError(
                f"{directory} holds pickled weights only ({', '.join(pickled)}), which can run code when loaded; "
                "MEAMTM loads safetensors only. Where you trust the file, load it once with transformers' own "
                "class and save_pretrained() it, which writes model.safetensors."
            )


def _check_waveforms(
    input_values: torch.Tensor, attention_mask: torch.Tensor | None, config: MeamtmConfig | None = None
) -> torch.Tensor | None:
    """Validate `(batch, num_samples)` waveforms; return per-clip lengths `(batch,)` from the mask, if any.

    Shapes and dtypes are checked always (free). Non-finite samples are checked in eager mode only: one
    `isfinite` pass and, on an accelerator, one device sync per forward; a NaN input would otherwise turn
    into NaN logits, and in training into NaN weights, silently. Under torch.compile / torch.export /
    tracing the check is left out, so it never breaks or specialises a graph (validate upstream there:
    `MeamtmFeatureExtractor` refuses non-finite clips).
    """
    if not isinstance(input_values, torch.Tensor):
        raise TypeError(
            f"input_values must be a torch.Tensor of waveforms, got {type(input_values).__name__}: "
            "use MeamtmFeatureExtractor(..., return_tensors='pt')."
        )
    if not input_values.is_floating_point():
        raise TypeError(
            f"input_values has dtype {input_values.dtype}; the model takes float waveforms in [-1, 1]. Convert "
            "integer PCM first (int16: x / 32768), or let MeamtmFeatureExtractor do it."
        )
    if input_values.dim() != 2:
        hint = (
            "add a batch dimension with input_values[None]"
            if input_values.dim() == 1
            else "mix multi-channel audio down to mono (e.g. x.mean(dim=1)); MeamtmFeatureExtractor does this"
        )
        raise ValueError(
            f"input_values must have shape (batch, num_samples), got {tuple(input_values.shape)}: {hint}."
        )
    if input_values.shape[0] == 0 or input_values.shape[1] == 0:
        raise ValueError(
            f"input_values has shape {tuple(input_values.shape)}: empty batch or empty waveforms. Drop empty clips "
            "before calling the model (MeamtmFeatureExtractor raises on them)."
        )
    if config is not None and input_values.shape[1] < config.win_length:
        logger.warning_once(
            f"input_values has {input_values.shape[1]} samples, fewer than one analysis window (win_length="
            f"{config.win_length}): the spectrogram is all padding frames, as ASTFeatureExtractor makes it, and "
            "the logits are those of an empty clip."
        )
    if not is_tracing():
        finite = torch.isfinite(input_values).all(dim=-1)
        if not bool(finite.all()):
            rows = (~finite).nonzero().flatten().tolist()
            raise ValueError(
                f"input_values rows {rows} hold NaN or infinite samples (a broken decoder or a division by zero "
                "upstream): fix or drop those clips, or replace the values with torch.nan_to_num(input_values)."
            )
    if attention_mask is None:
        return None
    if attention_mask.shape != input_values.shape:
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but input_values has "
            f"{tuple(input_values.shape)}: the mask marks real samples (1) and padding (0) of each waveform."
        )
    return attention_mask.to(torch.long).sum(-1)


def real_patches(config: MeamtmConfig, lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Which patches of a `padding_mode="longest"` batch hold audio: `(batch,)` lengths in samples and the
    spectrogram's `num_frames` -> `(batch, frequency * time)` bool, True for a real patch.

    A clip of `n` samples has `num_frames_of(n)` real frames; patch column `j` (frames `[j * time_stride,
    j * time_stride + patch_size)`) is padding when its first frame lies past them, i.e. when its frames are all
    padding frames. Column 0 is always real, so a clip shorter than one analysis window keeps one column of
    patches (of AST's padding value), as it has alone.
    """
    frequency, _ = config.patch_grid
    num_columns = (num_frames - config.patch_size) // config.time_stride + 1
    frames = (torch.div(lengths - config.win_length, config.hop_length, rounding_mode="floor") + 1).clamp_min(1)
    columns = torch.div(frames - 1, config.time_stride, rounding_mode="floor") + 1
    real = torch.arange(num_columns, device=lengths.device)[None, :] < columns[:, None]  # (batch, time)
    return real[:, None, :].expand(-1, frequency, -1).flatten(1)


def attention_mask_of(config: MeamtmConfig, hidden_states: torch.Tensor, keep: torch.Tensor):
    """The key mask `keep` `(batch, tokens)` (True: attend) in the format of `config._attn_implementation`; None
    when nothing is masked (checked outside torch.compile / export only: it reads the mask).

    eager gets an additive float mask and sdpa a bool one, `(batch, 1, 1, tokens)`: one row per clip that
    broadcasts over the queries. A square `(batch, 1, tokens, tokens)` mask, even an expanded view, makes SDPA
    on CPU materialise `batch * tokens**2` values per layer and keep them for backward, more than the padding
    saves. Other implementations get transformers' `create_bidirectional_mask`.
    """
    if not is_tracing() and bool(keep.all()):
        return None
    implementation = config._attn_implementation
    if implementation not in ("eager", "sdpa"):
        return create_bidirectional_mask(config, hidden_states, keep)
    keys = keep[:, None, None, :]
    if implementation == "eager":
        keys = torch.zeros(keys.shape, dtype=hidden_states.dtype, device=keys.device).masked_fill(
            ~keys, torch.finfo(hidden_states.dtype).min
        )
    return keys


class MeamtmModel(MeamtmPreTrainedModel):
    def __init__(self, config: MeamtmConfig):
        super().__init__(config)
        self.embeddings = MeamtmEmbeddings(config)
        depth = config.num_hidden_layers
        self.layers = nn.ModuleList(
            [MeamtmLayer(config, config.drop_path_rate * index / max(depth - 1, 1)) for index in range(depth)]
        )
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        # Registered last so that `model.dtype` (the first parameter's) is the encoder's even when the
        # frontend is trainable and kept in float32.
        self.frontend = MeamtmFrontend(config)
        uses_spec_augment = config.freq_mask_param > 0 or config.time_mask_param > 0
        self.spec_augment = MeamtmSpecAugment(config) if uses_spec_augment else nn.Identity()
        self.channel_dropout = MeamtmChannelDropout(config) if config.channel_dropout > 0 else nn.Identity()
        self.post_init()

    def get_input_embeddings(self) -> MeamtmPatchEmbeddings:
        return self.embeddings.patch_embeddings

    @property
    def trims_silence(self) -> bool:
        """Whether `forward` cuts each clip to its loud span now (`config.trim_silence_db`, in this mode)."""
        return self.config.trim_silence_db > 0 and (self.config.trim_silence_in_training or not self.training)

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        mixing: MeamtmMixing | None = None,
        filter_bank_warp: float | None = None,
        frame_shift: int = 0,
        tempo: float | None = None,
        trim: bool = True,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch_size, num_samples)`):
            Mono waveforms at `config.sampling_rate`, floats in [-1, 1], zero-padded on the right. With
            `config.trim_silence_db`, each is first cut to its loud span and its length with it (`trim_silence`).
        attention_mask (`torch.Tensor` of shape `(batch_size, num_samples)`, *optional*):
            1 for real samples, 0 for padding (as `MeamtmFeatureExtractor` returns it). Frames that reach into
            the padding become AST's padding frames, so a clip gives the same output alone or in a batch. With
            `config.padding_mode="longest"` it also masks the patches that lie wholly past each clip's audio out
            of attention and mean pooling (`real_patches`).
        mixing (`MeamtmMixing`, *optional*): a mixup draw to apply, at the waveform or spectrogram level;
            `MeamtmForAudioClassification` passes it in training (mixup needs the labels).
        filter_bank_warp (`float`, *optional*): run the frontend with its filter bank VTLP-warped by this factor;
            `MeamtmForAudioClassification` passes each of `config.test_time_warp_factors` in evaluation.
        frame_shift (`int`, *optional*): the log-mel of every clip after that many frames of digital silence (at most
            `patch_size - time_stride`, so that the clip keeps its patch columns); `MeamtmForAudioClassification`
            passes each of `config.test_time_frame_shifts` in evaluation.
        tempo (`float`, *optional*): every clip's log-mel stretched along time to this tempo (1.2: a fifth faster;
            see `config.test_time_max_tempo`), its patch mask following; `MeamtmForAudioClassification` passes each
            of `config.test_time_tempo_factors` in evaluation.
        trim (`bool`, defaults to `True`): `False` when the caller has already cut the clips as `trims_silence` says
            (`MeamtmForAudioClassification` cuts them once for all its test-time views).
        """
        lengths = _check_waveforms(input_values, attention_mask, self.config)
        if trim and self.trims_silence:
            input_values, lengths = trim_silence(self.config, input_values, lengths)
        if mixing is not None:
            input_values, lengths = mixing.mix_waveforms(input_values, lengths)
        if not 0 <= frame_shift <= max(self.config.patch_size - self.config.time_stride, 0):
            raise ValueError(
                f"frame_shift={frame_shift} must be between 0 and patch_size - time_stride = "
                f"{self.config.patch_size - self.config.time_stride} frames (see config.test_time_max_shift)."
            )
        if self.training and self.config.tempo_perturbation > 0:
            if tempo is not None:
                raise ValueError(
                    f"tempo={tempo} is a test-time view; in training, config.tempo_perturbation draws each example's "
                    "tempo."
                )
            batch_size, spread = input_values.shape[0], self.config.tempo_perturbation
            tempo = 1 + spread * (2 * torch.rand(batch_size, device=input_values.device) - 1)
            if lengths is None:  # the stretched clips' lengths make the patch mask
                lengths = torch.full((batch_size,), input_values.shape[1], device=input_values.device)
        spectrogram = self.spec_augment(self.frontend(input_values, lengths, filter_bank_warp, frame_shift, tempo))
        if (isinstance(tempo, torch.Tensor) or (tempo is not None and tempo != 1)) and lengths is not None:
            lengths = stretched_lengths(self.config, lengths, tempo)
        spectrogram = self.channel_dropout(spectrogram)
        if mixing is not None:
            spectrogram = mixing.mix_spectrograms(spectrogram)
            lengths = mixing.spectrogram_lengths(lengths)
        patch_mask = None
        if self.config.padding_mode == "longest" and lengths is not None:
            patch_mask = real_patches(self.config, lengths, spectrogram.shape[1])
            # A batch without padded patches runs max_length's graph: no attention mask, a plain mean. The check
            # reads the mask, so it is made in eager mode only; a traced graph keeps the all-True mask, which
            # gives the same values, so that one graph serves every batch.
            if not is_tracing() and bool(patch_mask.all()):
                patch_mask = None
        dtype = self.embeddings.patch_embeddings.projection.weight.dtype
        hidden_states, patch_mask = self.embeddings(spectrogram.to(dtype), patch_mask)
        attention = None
        if patch_mask is not None:
            special = patch_mask.new_ones(patch_mask.shape[0], NUM_SPECIAL_TOKENS)
            attention = attention_mask_of(self.config, hidden_states, torch.cat((special, patch_mask), dim=1))
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention, **kwargs)
        sequence_output = self.layernorm(hidden_states)
        if self.config.pooling == "cls":
            pooled_output = (sequence_output[:, 0] + sequence_output[:, 1]) / 2
        elif patch_mask is None:
            pooled_output = sequence_output[:, NUM_SPECIAL_TOKENS:].mean(dim=1)
        else:
            weights = patch_mask.to(sequence_output.dtype)[..., None]
            pooled_output = (sequence_output[:, NUM_SPECIAL_TOKENS:] * weights).sum(1) / weights.sum(1)
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=pooled_output)


class MeamtmMLPHead(nn.Module):
    def __init__(self, config: MeamtmConfig):
        super().__init__()
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dense = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.dense(self.layernorm(pooled))


class MeamtmForAudioClassification(MeamtmPreTrainedModel):
    """MEAMTM with AST's head (layer norm + linear) on the pooled output (`config.pooling`)."""

    def __init__(self, config: MeamtmConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.meamtm = MeamtmModel(config)
        self.classifier = MeamtmMLPHead(config)
        self.mixup = MeamtmMixup(config) if config.mixup_alpha > 0 else None
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch_size, num_samples)`): waveforms, see `MeamtmModel`.
        labels (`torch.Tensor`, *optional*): `(batch_size,)` class indices for single-label classification and
            regression, `(batch_size, num_labels)` targets for multi-label; `config.problem_type` picks the loss.
            In training with mixup, the batch and its labels are mixed here and the loss uses the mixed targets.
            In evaluation with `config.test_time_max_warp`, `config.test_time_max_shift` and/or
            `config.test_time_max_tempo`, the logits are the average prediction over the warped filter banks, the
            shifted log-mels and the tempi, every combination of them (`average_test_time_predictions`), and hidden
            states and attentions those of the plain bank, unshifted, at the clip's own tempo.
        """
        mixing = None
        if self.mixup is not None and self.training:
            if labels is None:
                logger.warning_once(
                    "Mixup is configured (mixup_alpha > 0) but this training forward has no labels, so nothing is "
                    "mixed: mixup must mix the targets too. Pass labels to the model, or set mixup_alpha=0."
                )
            else:
                _check_waveforms(input_values, attention_mask, self.config)  # before the draw reads its shape and device
                mixing = self.mixup.draw(input_values.shape[0], input_values.device)
        factors = [] if self.training else self.config.test_time_warp_factors
        shifts = [] if self.training else self.config.test_time_frame_shifts
        tempi = [] if self.training else self.config.test_time_tempo_factors
        if factors or shifts or tempi:
            trim = {}
            if self.meamtm.trims_silence:  # the clips are cut once, not once per view
                lengths = _check_waveforms(input_values, attention_mask, self.config)
                input_values, lengths = trim_silence(self.config, input_values, lengths)
                positions = torch.arange(input_values.shape[1], device=input_values.device)
                attention_mask, trim = (positions[None, :] < lengths[:, None]).long(), dict(trim=False)
            predictions = []
            for shift in shifts or [0]:
                for factor in factors or [None]:
                    for tempo in tempi or [None]:
                        view = self.meamtm(
                            input_values, attention_mask=attention_mask, filter_bank_warp=factor, frame_shift=shift,
                            tempo=tempo, **trim, **kwargs,
                        )
                        predictions.append(self.classifier(view.pooler_output))
                        if shift == 0 and factor in (None, 1) and tempo in (None, 1):
                            outputs = view
            logits = average_test_time_predictions(torch.stack(predictions), self.config)
        else:
            outputs = self.meamtm(input_values, attention_mask=attention_mask, mixing=mixing, **kwargs)
            logits = self.classifier(outputs.pooler_output)
        loss = None
        if mixing is not None:
            loss = self.mixup.loss(logits, labels, mixing, self.config, **kwargs)
        elif labels is not None:
            loss = self.loss_function(labels, logits, self.config, **kwargs)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = ["MeamtmCheckpointMismatchError", "MeamtmModel", "MeamtmForAudioClassification", "MeamtmPreTrainedModel"]
