"""Safe checkpoints (`MeamtmPreTrainedModel.from_pretrained`): safetensors only, never unpickled; damaged or
mismatched files give a ValueError naming the problem; what `trust_remote_code` runs is the copied source."""

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoModelForAudioClassification

from meamtm import MeamtmFeatureExtractor, MeamtmForAudioClassification
from meamtm.modeling_meamtm import MeamtmCheckpointMismatchError

from .conftest import WITHOUT_MEAMTM, tiny_config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = MeamtmForAudioClassification(tiny_config(num_labels=3)).eval()
    path = tmp_path_factory.mktemp("checkpoint")
    model.save_pretrained(path)
    MeamtmFeatureExtractor.from_model_config(model.config).save_pretrained(path)
    return path, model


@pytest.fixture
def copy(saved, tmp_path):
    path = tmp_path / "copy"
    shutil.copytree(saved[0], path)
    return path


def read_header(path):
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + size]), size, data


def test_a_checkpoint_round_trips(saved):
    path, model = saved
    loaded = MeamtmForAudioClassification.from_pretrained(path).eval()
    waveforms = torch.randn(2, 6000) * 0.1
    torch.testing.assert_close(loaded(waveforms).logits, model(waveforms).logits, atol=0, rtol=0)


def test_pickled_weights_are_refused_not_loaded(saved, copy, monkeypatch):
    (copy / "model.safetensors").unlink()
    torch.save(saved[1].state_dict(), copy / "pytorch_model.bin")
    unpickled = []
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: unpickled.append(args))
    for load in (MeamtmForAudioClassification.from_pretrained, AutoModelForAudioClassification.from_pretrained):
        with pytest.raises(ValueError, match=r"pickled weights only \(pytorch_model.bin\).*safetensors only"):
            load(copy)
    with pytest.raises(ValueError, match="not a .safetensors file"):
        MeamtmForAudioClassification.from_pretrained(copy / "pytorch_model.bin")
    with pytest.raises(ValueError, match="use_safetensors=False was passed"):
        MeamtmForAudioClassification.from_pretrained(saved[0], use_safetensors=False)
    assert unpickled == []


@pytest.mark.parametrize("keep", [0.5, 5 / 100_000, 0.999], ids=["half", "first-bytes", "last-byte-missing"])
def test_a_truncated_weight_file_is_a_clear_error(copy, keep):
    weights = copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: max(1, int(len(data) * keep))])
    with pytest.raises(ValueError, match="not a readable safetensors file.*truncated or corrupted"):
        MeamtmForAudioClassification.from_pretrained(copy)


def test_garbage_instead_of_weights_is_a_clear_error(copy):
    (copy / "model.safetensors").write_bytes(b"<html>404 Not Found</html>" * 40)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        MeamtmForAudioClassification.from_pretrained(copy)


def test_a_tampered_tensor_shape_is_a_clear_error(copy):
    header, size, data = read_header(copy / "model.safetensors")
    entry = header["classifier.dense.weight"]
    entry["shape"] = entry["shape"][::-1]  # same bytes, transposed shape
    text = json.dumps(header, separators=(",", ":")).encode().ljust(size)  # same length: compact, space-padded
    assert len(text) == size
    (copy / "model.safetensors").write_bytes(data[:8] + text + data[8 + size :])
    with pytest.raises(MeamtmCheckpointMismatchError, match="config.json does not describe its weights"):
        MeamtmForAudioClassification.from_pretrained(copy)


def test_tampered_weight_bytes_that_decode_to_nan_are_refused(copy):
    header, size, data = read_header(copy / "model.safetensors")
    begin, _ = header["meamtm.layernorm.weight"]["data_offsets"]
    start = 8 + size + begin
    corrupted = data[:start] + b"\xff" * 16 + data[start + 16 :]  # 0xffffffff is a float32 NaN
    (copy / "model.safetensors").write_bytes(corrupted)
    with pytest.raises(ValueError, match="meamtm.layernorm.weight .* NaN or infinite values"):
        MeamtmForAudioClassification.from_pretrained(copy)


@pytest.mark.parametrize("field, value", [("hidden_size", 64), ("num_mel_bins", 48), ("patch_size", 4)])
def test_a_config_that_does_not_fit_the_weights_is_a_clear_error(copy, field, value):
    config = json.loads((copy / "config.json").read_text())
    config[field] = value
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(MeamtmCheckpointMismatchError, match="config.json does not describe its weights"):
        MeamtmForAudioClassification.from_pretrained(copy)


def test_a_mismatched_head_can_still_be_replaced_on_purpose(saved):
    model = MeamtmForAudioClassification.from_pretrained(saved[0], num_labels=5, ignore_mismatched_sizes=True)
    assert model.classifier.dense.out_features == 5


def test_save_pretrained_copies_only_the_model_source(saved):
    """What trust_remote_code runs: these files and nothing else from this package."""
    path, _ = saved
    assert sorted(name for name in os.listdir(path) if name.endswith(".py")) == [
        "augmentation_meamtm.py",  # patchout, SpecAugment, mixup (training-time modules of the model)
        "configuration_meamtm.py",
        "feature_extraction_meamtm.py",
        "frontend_meamtm.py",
        "modeling_meamtm.py",
    ]
    config = json.loads((path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_meamtm.MeamtmConfig",
        "AutoModelForAudioClassification": "modeling_meamtm.MeamtmForAudioClassification",
    }


@pytest.mark.slow
def test_trust_remote_code_loads_without_meamtm_and_keeps_the_safety_checks(saved, tmp_path):
    path, model = saved
    pickled = tmp_path / "pickled"
    shutil.copytree(path, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    torch.save(torch.randn(2, 6000) * 0.1, tmp_path / "waveforms.pt")
    script = WITHOUT_MEAMTM + textwrap.dedent(
        f"""
        import importlib.util
        import torch
        from transformers import AutoModelForAudioClassification
        try:
            importlib.util.find_spec("meamtm")
            raise SystemExit("meamtm is importable")
        except ImportError:
            pass
        model = AutoModelForAudioClassification.from_pretrained({str(path)!r}, trust_remote_code=True).eval()
        waveforms = torch.load({str(tmp_path / "waveforms.pt")!r})
        torch.save(model(waveforms).logits, {str(tmp_path / "logits.pt")!r})
        try:
            AutoModelForAudioClassification.from_pretrained({str(pickled)!r}, trust_remote_code=True)
        except ValueError as error:
            print("refused:", error)
        """
    )
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "refused:" in result.stdout and "pickled weights only" in result.stdout
    expected = model(torch.load(tmp_path / "waveforms.pt")).logits
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, atol=0, rtol=0)
