"""Where transformers' common model tests hold every model to a contract, MEAMTM keeps it."""

import inspect

import pytest
import torch
from transformers import PreTrainedModel

from meamtm import MeamtmForAudioClassification, MeamtmModel
from meamtm.modeling_meamtm import MeamtmCheckpointMismatchError

from .conftest import tiny_config


def test_a_new_head_without_ignore_mismatched_sizes_raises_the_runtime_error_callers_catch(tmp_path):
    MeamtmForAudioClassification(tiny_config(num_labels=3)).save_pretrained(tmp_path)
    with pytest.raises(RuntimeError) as caught:
        MeamtmForAudioClassification.from_pretrained(tmp_path, num_labels=5)
    assert isinstance(caught.value, MeamtmCheckpointMismatchError)
    message = str(caught.value)
    # The caller asked for another head: the message must offer that fix first, not only blame config.json.
    assert "ignore_mismatched_sizes=True" in message and "num_labels" in message


def test_a_model_made_on_the_meta_device_gets_every_frontend_buffer_from_init_weights():
    config = tiny_config()
    reference = MeamtmModel(config)
    with torch.device("meta"):
        model = MeamtmModel(config)
    model.to_empty(device="cpu")
    for name, buffer in model.frontend.named_buffers():
        buffer.fill_(float("nan"))  # what to_empty may leave: garbage
    model.initialize_weights() if hasattr(model, "initialize_weights") else model.init_weights()
    expected = dict(reference.frontend.named_buffers())
    assert "stft.window_mask" in expected
    for name, buffer in model.frontend.named_buffers():
        torch.testing.assert_close(buffer, expected[name], atol=0, rtol=0, msg=name)


@pytest.mark.parametrize("trainable", [False, True])
def test_modules_kept_in_float32_exist_and_hold_parameters(trainable):
    config = tiny_config(trainable_mel=trainable, num_labels=2)
    model = MeamtmForAudioClassification(config)
    kept = set(model._keep_in_fp32_modules or ()) | set(model._keep_in_fp32_modules_strict or ())
    module_names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for name in kept:
        assert name in module_names
        assert any(f".{name}." in f".{parameter}" for parameter, _ in model.named_parameters()), name
    assert bool(kept) == trainable


def test_a_trainable_frontend_stays_float32_when_loaded_in_bfloat16(tmp_path):
    MeamtmForAudioClassification(tiny_config(trainable_mel=True, num_labels=2)).save_pretrained(tmp_path)
    model = MeamtmForAudioClassification.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert model.meamtm.frontend.mel_filters.dtype == torch.float32
    assert model.meamtm.layernorm.weight.dtype == torch.bfloat16


def test_the_base_class_is_a_transformers_pretrained_model():
    assert issubclass(MeamtmForAudioClassification, PreTrainedModel)


@pytest.mark.parametrize("model_class", [MeamtmModel, MeamtmForAudioClassification])
def test_forward_declares_the_output_flags_transformers_reads_from_its_signature(model_class):
    # transformers' common tests (e.g. the eager-against-sdpa check with output_attentions=True) read a forward's
    # `**kwargs: Unpack[TransformersKwargs]` to know that it takes output_attentions; an untyped **kwargs reads
    # as "cannot return attentions" and those checks are skipped.
    kwargs = inspect.signature(model_class.forward).parameters["kwargs"]
    (typed_dict,) = kwargs.annotation.__args__
    assert {"output_attentions", "output_hidden_states"} <= set(typed_dict.__annotations__)
    # eager: sdpa returns no attention weights (transformers warns and leaves them out, as for AST)
    model = model_class(tiny_config(num_labels=2, attn_implementation="eager")).eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, 3000) * 0.1, output_attentions=True, output_hidden_states=True)
    assert len(outputs.attentions) == len(outputs.hidden_states) - 1 == model.config.num_hidden_layers
