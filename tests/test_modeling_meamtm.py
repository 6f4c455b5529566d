"""MeamtmModel / MeamtmForAudioClassification: what transformers' common model tests check, on tiny configs."""

import pytest
import torch
from transformers import (
    ASTConfig,
    ASTFeatureExtractor,
    ASTForAudioClassification,
    AutoModel,
    AutoModelForAudioClassification,
)

from meamtm import MeamtmFeatureExtractor, MeamtmForAudioClassification, MeamtmModel
from meamtm.convert.checkpoints import ast_to_meamtm_state_dict, config_from_ast

from .conftest import TINY, tiny_config


def waveforms(batch_size=2, num_samples=9000):
    return torch.randn(batch_size, num_samples) * 0.1


def classifier(**overrides):
    return MeamtmForAudioClassification(tiny_config(num_labels=3, **overrides)).eval()


def test_shapes_of_base_model_and_classifier():
    config = tiny_config()
    model = MeamtmModel(config).eval()
    output = model(waveforms(3))
    tokens = config.num_patches + 2
    assert output.last_hidden_state.shape == (3, tokens, config.hidden_size)
    assert output.pooler_output.shape == (3, config.hidden_size)
    assert classifier()(waveforms(3)).logits.shape == (3, 3)


def test_pooling_reads_the_cls_tokens_or_the_patch_tokens():
    model = MeamtmModel(tiny_config()).eval()
    batch = waveforms(2)
    output = model(batch)
    tokens = output.last_hidden_state
    torch.testing.assert_close(output.pooler_output, (tokens[:, 0] + tokens[:, 1]) / 2)  # AST's
    model.config.pooling = "mean"
    output = model(batch)
    torch.testing.assert_close(output.pooler_output, output.last_hidden_state[:, 2:].mean(dim=1))


def test_hidden_states_and_attentions_on_request():
    model = classifier(attn_implementation="eager")
    output = model(waveforms(), output_hidden_states=True, output_attentions=True)
    config = model.config
    assert len(output.hidden_states) == config.num_hidden_layers + 1
    assert len(output.attentions) == config.num_hidden_layers
    tokens = config.num_patches + 2
    assert output.attentions[0].shape == (2, config.num_attention_heads, tokens, tokens)
    torch.testing.assert_close(output.attentions[0].sum(-1), torch.ones(2, config.num_attention_heads, tokens))
    assert classifier()(waveforms()).hidden_states is None


def test_tuple_and_dict_outputs_are_equivalent():
    model = classifier(attn_implementation="eager")
    inputs = dict(input_values=waveforms(), labels=torch.tensor([0, 2]), output_hidden_states=True)
    as_dict = model(**inputs)
    as_tuple = model(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], as_dict.loss)
    torch.testing.assert_close(as_tuple[1], as_dict.logits)
    for left, right in zip(as_tuple[2], as_dict.hidden_states):
        torch.testing.assert_close(left, right)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2), (torch.float16, 3e-3)])
def test_eager_and_sdpa_agree(dtype, tolerance):
    eager = classifier(attn_implementation="eager")
    sdpa = classifier(attn_implementation="sdpa")
    sdpa.load_state_dict(eager.state_dict())
    assert sdpa.config._attn_implementation == "sdpa"
    eager.to(dtype), sdpa.to(dtype)
    inputs = waveforms()
    with torch.no_grad():
        left, right = eager(inputs).logits, sdpa(inputs).logits
    assert left.dtype == dtype
    torch.testing.assert_close(left.float(), right.float(), atol=tolerance, rtol=tolerance)


def test_sdpa_is_the_default():
    assert classifier().config._attn_implementation == "sdpa"


def test_gradient_checkpointing_gives_the_same_gradients():
    plain = classifier(hidden_dropout_prob=0.0).train()
    checkpointed = classifier(hidden_dropout_prob=0.0).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.activation_checkpointing_enable()
    assert checkpointed.is_activation_checkpointing
    inputs, labels = waveforms(), torch.tensor([1, 2])
    plain(inputs, labels=labels).loss.backward()
    checkpointed(inputs, labels=labels).loss.backward()
    for (name, left), right in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(left.grad, right.grad, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("hidden_act", ["gelu", "relu"])
def test_recomputed_mlp_activation_gives_the_same_outputs_and_gradients(dtype, hidden_act):
    recomputing = classifier(hidden_act=hidden_act).train()
    storing = classifier(hidden_act=hidden_act, recompute_mlp_activation=False).train()
    storing.load_state_dict(recomputing.state_dict())
    assert recomputing.config.recompute_mlp_activation  # the default
    inputs, labels = waveforms(), torch.tensor([1, 2])
    results = []
    for model in (recomputing, storing):
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            output = model(inputs, labels=labels)
        output.loss.backward()
        results.append((output.logits, {name: parameter.grad for name, parameter in model.named_parameters()}))
    (logits, gradients), (expected_logits, expected_gradients) = results
    assert torch.equal(logits, expected_logits)
    for name, gradient in gradients.items():
        assert gradient is not None and gradient.dtype == torch.float32, name
        torch.testing.assert_close(gradient, expected_gradients[name], msg=name)


def test_recomputed_mlp_activation_stores_less_for_backward():
    """The point of it: per layer, the `(batch, tokens, intermediate_size)` activation is not kept."""
    sizes = {}
    for recompute in (True, False):
        model = classifier(recompute_mlp_activation=recompute).train()
        stored = []

        def pack(tensor):
            stored.append(tensor.untyped_storage().nbytes())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):  # what forward stores
            loss = model(waveforms(), labels=torch.tensor([1, 2])).loss
        sizes[recompute] = sum(stored)
        loss.backward()
    config = classifier().config
    activation_bytes = 2 * (config.num_patches + 2) * config.intermediate_size * 4
    assert sizes[False] - sizes[True] >= config.num_hidden_layers * activation_bytes


def test_mlp_with_an_adapter_or_hook_on_fc2_runs_its_own_forward():
    model = classifier().train()
    mlp = model.meamtm.layers[0].mlp
    pre = torch.randn(2, 3, model.config.intermediate_size, requires_grad=True)
    assert mlp.recomputes_activation(pre)
    with torch.no_grad():
        assert not mlp.recomputes_activation(pre)
    calls = []
    handle = mlp.fc2.register_forward_hook(lambda *args: calls.append(1))
    assert not mlp.recomputes_activation(pre)
    model(waveforms(), labels=torch.tensor([1, 2])).loss.backward()
    assert len(calls) == 1
    handle.remove()


def test_training_reduces_the_loss():
    model = classifier().train()
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    time = torch.arange(9000) / 16000
    inputs = 0.3 * torch.sin(2 * torch.pi * 400.0 * (labels[:, None] + 1) * time) + 0.05 * waveforms(6)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model(inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
    "problem_type, labels, reference",
    [
        ("single_label_classification", torch.tensor([2, 0]), torch.nn.functional.cross_entropy),
        (
            "multi_label_classification",
            torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]),
            torch.nn.functional.binary_cross_entropy_with_logits,
        ),
    ],
)
def test_problem_type_picks_the_loss(problem_type, labels, reference):
    model = classifier(problem_type=problem_type)
    output = model(waveforms(), labels=labels)
    torch.testing.assert_close(output.loss, reference(output.logits, labels))


def test_regression_loss():
    model = MeamtmForAudioClassification(tiny_config(num_labels=1, problem_type="regression")).eval()
    targets = torch.tensor([0.5, -1.0])
    output = model(waveforms(), labels=targets)
    torch.testing.assert_close(output.loss, torch.nn.functional.mse_loss(output.logits.squeeze(-1), targets))


def test_save_and_load_through_auto_classes(tmp_path):
    model = classifier(id2label={0: "a", 1: "b", 2: "c"})
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MeamtmForAudioClassification)
    inputs = waveforms()
    torch.testing.assert_close(loaded(inputs).logits, model(inputs).logits, atol=0, rtol=0)
    base = AutoModel.from_pretrained(tmp_path)  # the base model out of a classifier checkpoint
    assert isinstance(base, MeamtmModel)
    torch.testing.assert_close(base.eval()(inputs).pooler_output, model.meamtm(inputs).pooler_output)


def test_init_weights_re_creates_frontend_buffers(tmp_path):
    """Frozen kernels are not saved: loading must re-derive them, also for a model built on the meta device."""
    model = classifier(trainable_mel=True, cepstral_coefficients=8, normalization="per_clip_envelope")
    model.save_pretrained(tmp_path)
    loaded = MeamtmForAudioClassification.from_pretrained(tmp_path)
    fresh = model.meamtm.frontend
    assert {"cepstral_smoothing", "clip_envelope"} <= set(loaded.meamtm.frontend.kernel_tensors())
    for name, tensor in loaded.meamtm.frontend.kernel_tensors().items():
        torch.testing.assert_close(tensor, fresh.kernel_tensors()[name], atol=0, rtol=0, msg=name)
    with torch.no_grad():
        model.meamtm.frontend.stft.wcos.zero_()
    model.meamtm.frontend.stft.wcos._is_hf_initialized = False
    model._init_weights(model.meamtm.frontend)
    torch.testing.assert_close(model.meamtm.frontend.stft.wcos, loaded.meamtm.frontend.stft.wcos)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_model_keeps_the_frontend_exact(tmp_path, dtype):
    model = classifier(trainable_mel=True, cepstral_coefficients=8)
    model.save_pretrained(tmp_path)
    inputs = waveforms()
    reference = model(inputs).logits
    frozen_path = tmp_path / "frozen"
    classifier(cepstral_coefficients=8, normalization="per_clip_envelope").save_pretrained(frozen_path)
    for half in (
        MeamtmForAudioClassification.from_pretrained(tmp_path, dtype=dtype),
        MeamtmForAudioClassification.from_pretrained(frozen_path, dtype=dtype),
        classifier(cepstral_coefficients=8, normalization="per_clip_envelope").to(dtype),
    ):
        assert half.dtype == dtype
        assert half.meamtm.embeddings.patch_embeddings.projection.weight.dtype == dtype
        assert half.meamtm.frontend.mel_filters.dtype == torch.float32
        assert half.meamtm.frontend.cepstral_smoothing.dtype == torch.float32
        if half.config.uses_clip_envelope:
            assert half.meamtm.frontend.clip_envelope.dtype == torch.float32
        assert half.meamtm.frontend.stft.wcos.dtype == torch.float64
        logits = half(inputs).logits
        assert logits.dtype == dtype and torch.isfinite(logits).all()
    loaded = MeamtmForAudioClassification.from_pretrained(tmp_path, dtype=dtype).eval()
    torch.testing.assert_close(loaded(inputs).logits.float(), reference, atol=5e-2, rtol=5e-2)


def test_autocast_keeps_loss_finite_and_frontend_float32():
    model = classifier().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spectrogram = model.meamtm.frontend(waveforms())
        loss = model(waveforms(), labels=torch.tensor([0, 1])).loss
    assert spectrogram.dtype == torch.float32
    assert torch.isfinite(loss)
    loss.backward()


def test_a_clip_classifies_the_same_alone_and_in_a_padded_batch():
    model = classifier()
    extractor = MeamtmFeatureExtractor.from_model_config(model.config)
    clips = [waveforms(1, 5000)[0].numpy(), waveforms(1, 11000)[0].numpy(), waveforms(1, 300)[0].numpy()]
    batch = extractor(clips, sampling_rate=16000, return_tensors="pt")
    batched = model(**batch).logits
    for row, clip in enumerate(clips):
        alone = model(**extractor(clip, sampling_rate=16000, return_tensors="pt")).logits[0]
        torch.testing.assert_close(batched[row], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "inputs, error, message",
    [
        (torch.zeros(2, 1000, dtype=torch.int16), TypeError, "dtype torch.int16"),
        (torch.zeros(1000), ValueError, r"add a batch dimension"),
        (torch.zeros(2, 2, 1000), ValueError, r"mix multi-channel audio down to mono"),
        ([0.0] * 1000, TypeError, "must be a torch.Tensor"),
    ],
)
def test_wrong_inputs_get_clear_errors(inputs, error, message):
    with pytest.raises(error, match=message):
        classifier()(inputs)


def test_mask_of_the_wrong_shape_is_an_error():
    with pytest.raises(ValueError, match="attention_mask has shape"):
        classifier()(waveforms(2, 1000), attention_mask=torch.ones(2, 999))


def test_no_weight_decay_names_tokens_and_positions():
    names = classifier().no_weight_decay()
    assert names == {
        "meamtm.embeddings.cls_token",
        "meamtm.embeddings.distillation_token",
        "meamtm.embeddings.position_embeddings",
    }


def test_same_logits_as_transformers_ast_on_the_same_weights():
    """The architecture is AST's: its weights give its logits from raw audio (float32, CPU)."""
    ast_config = ASTConfig(**{key: TINY[key] for key in TINY}, num_labels=4)
    ast = ASTForAudioClassification(ast_config).eval()
    extractor = ASTFeatureExtractor(num_mel_bins=ast_config.num_mel_bins, max_length=ast_config.max_length)
    model = MeamtmForAudioClassification(config_from_ast(ast_config, extractor)).eval()
    model.load_state_dict(ast_to_meamtm_state_dict(ast.state_dict()))
    clips = [waveforms(1, 9000)[0].numpy(), waveforms(1, 4000)[0].numpy()]
    expected = ast(**extractor(clips, sampling_rate=16000, return_tensors="pt")).logits
    ours = MeamtmFeatureExtractor.from_model_config(model.config)(clips, sampling_rate=16000, return_tensors="pt")
    torch.testing.assert_close(model(**ours).logits, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_torch_compile_of_the_whole_waveform_to_logits_model_matches_eager():
    """One graph (fullgraph) from waveforms to logits, FFT frontend included; patchout/SpecAugment are off in eval."""
    model = classifier(patchout_time=0.4, freq_mask_param=8, time_mask_param=10)
    compiled = torch.compile(model, fullgraph=True)
    inputs = waveforms(3)
    mask = torch.ones_like(inputs, dtype=torch.long)
    mask[1, 5000:] = 0
    with torch.no_grad():
        torch.testing.assert_close(compiled(inputs, attention_mask=mask).logits, model(inputs, attention_mask=mask).logits)
