"""scripts/convert_ast_checkpoint.py end to end, in process, on checkpoints saved locally (nothing downloads)."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import (
    ASTConfig,
    ASTFeatureExtractor,
    ASTForAudioClassification,
    ASTModel,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
)

from meamtm import MeamtmFeatureExtractor, MeamtmForAudioClassification, MeamtmModel

from ..conftest import REPO, TINY
from .test_checkpoints import ESC50_NORM, clips_of, original_recipe_features, original_release


def load_script():
    spec = importlib.util.spec_from_file_location("convert_ast_checkpoint", REPO / "scripts" / "convert_ast_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = load_script()

EXTRACTOR = dict(num_mel_bins=32, max_length=64, mean=-5.0, std=3.0)


@pytest.fixture
def ast_dir(tmp_path):
    """A tiny ASTForAudioClassification with labels and a non-default feature extractor, saved as on the Hub."""
    config = ASTConfig(**TINY, id2label={0: "dog", 1: "cat", 2: "rain"})
    ast = ASTForAudioClassification(config).eval()
    directory = tmp_path / "ast"
    ast.save_pretrained(directory)
    ASTFeatureExtractor(**EXTRACTOR).save_pretrained(directory)
    return directory, ast


def test_converts_a_saved_ast_classifier_that_then_loads_and_agrees(ast_dir, tmp_path):
    directory, ast = ast_dir
    output = tmp_path / "meamtm"
    script.main(["--ast_model", str(directory), "--output_dir", str(output)])

    saved = json.loads((output / "config.json").read_text())
    assert saved["model_type"] == "meamtm" and saved["spectrogram_mean"] == -5.0 and saved["spectrogram_std"] == 3.0
    assert saved["auto_map"]["AutoModelForAudioClassification"] == "modeling_meamtm.MeamtmForAudioClassification"
    for source in ("modeling_meamtm.py", "configuration_meamtm.py", "frontend_meamtm.py", "augmentation_meamtm.py", "feature_extraction_meamtm.py"):
        assert (output / source).is_file(), source
    model = AutoModelForAudioClassification.from_pretrained(output)
    extractor = AutoFeatureExtractor.from_pretrained(output)
    assert isinstance(model, MeamtmForAudioClassification) and isinstance(extractor, MeamtmFeatureExtractor)
    assert model.config.id2label == {0: "dog", 1: "cat", 2: "rain"}
    assert extractor.num_samples == model.config.num_samples

    clips = clips_of(8000, 3000, seed=5)
    with torch.no_grad():
        expected = ast(**ASTFeatureExtractor(**EXTRACTOR)(clips, sampling_rate=16000, return_tensors="pt")).logits
        logits = model(**extractor(clips, sampling_rate=16000, return_tensors="pt")).logits
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_saved_checkpoint_loads_as_remote_code_without_meamtm(ast_dir, tmp_path):
    directory, _ = ast_dir
    output = tmp_path / "meamtm"
    script.main(["--ast_model", str(directory), "--output_dir", str(output)])
    # `sys.modules["meamtm"] = None` makes any import of the installed package fail, as where it is not installed.
    probe = (
        "import sys, torch; sys.modules['meamtm'] = None\n"
        "from transformers import AutoModelForAudioClassification as A\n"
        f"m = A.from_pretrained({str(output)!r}, trust_remote_code=True).eval()\n"
        "print(type(m).__module__, tuple(m(torch.zeros(1, 4000)).logits.shape))"
    )
    environment = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": ""}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=environment)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "transformers_modules" in result.stdout and "(1, 3)" in result.stdout


def test_converts_a_base_ast_model(tmp_path):
    ast = ASTModel(ASTConfig(**TINY)).eval()
    ast.save_pretrained(tmp_path / "ast")
    ASTFeatureExtractor(num_mel_bins=32, max_length=64).save_pretrained(tmp_path / "ast")
    script.main(["--ast_model", str(tmp_path / "ast"), "--output_dir", str(tmp_path / "out")])
    assert isinstance(AutoModel.from_pretrained(tmp_path / "out"), MeamtmModel)


def test_disagreement_fails_with_the_difference_and_writes_nothing(ast_dir, tmp_path, monkeypatch):
    directory, _ = ast_dir
    convert = script.convert_ast

    def broken_conversion(ast, extractor):
        model = convert(ast, extractor)
        with torch.no_grad():
            model.classifier.dense.bias[1] += 0.5
        return model

    monkeypatch.setattr(script, "convert_ast", broken_conversion)
    output = tmp_path / "meamtm"
    with pytest.raises(ValueError, match=r"largest output difference 5\.000e-01 > tolerance 1e-04 on 2 clips"):
        script.main(["--ast_model", str(directory), "--output_dir", str(output)])
    assert not output.exists()


def test_missing_feature_extractor_is_an_error(tmp_path):
    ASTForAudioClassification(ASTConfig(**TINY)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has no ASTFeatureExtractor"):
        script.main(["--ast_model", str(tmp_path), "--output_dir", str(tmp_path / "out")])


def test_converts_an_original_release_file(tmp_path):
    reference, state_dict = original_release(label_dim=3)
    checkpoint = tmp_path / "esc50_6_6.pth"
    torch.save(state_dict, checkpoint)
    labels = tmp_path / "class_labels_indices.csv"
    labels.write_text('index,mid,display_name\n0,/m/0bt9lr,Dog\n1,/m/01yrx,Cat\n2,/m/06mb1,"Rain, drizzle"\n')
    output = tmp_path / "meamtm"
    script.main(
        [
            "--original_ast", "--ast_model", str(checkpoint), "--output_dir", str(output),
            "--fstride", "6", "--tstride", "6", "--input_fdim", "32", "--input_tdim", "64", "--num_attention_heads", "4",
            "--norm_mean", str(ESC50_NORM["norm_mean"]), "--norm_std", str(ESC50_NORM["norm_std"]),
            "--label_csv", str(labels),
        ]
    )  # fmt: skip
    model = AutoModelForAudioClassification.from_pretrained(output)
    assert model.config.id2label == {0: "Dog", 1: "Cat", 2: "Rain, drizzle"}
    clips = clips_of(9000, 2500, seed=7)
    extractor = AutoFeatureExtractor.from_pretrained(output)
    with torch.no_grad():
        expected = reference(original_recipe_features(clips, 32, 64, **ESC50_NORM))
        logits = model(**extractor(clips, sampling_rate=16000, return_tensors="pt")).logits
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


def test_original_functional_forward_is_the_original_model():
    """The script's verification reference, against the module-based one of the tests."""
    reference, state_dict = original_release()
    features = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 64, 32)).astype(np.float32))
    with torch.no_grad():
        expected = reference(features)
    torch.testing.assert_close(script.original_ast_logits(state_dict, features, 4, (6, 6)), expected)


def test_wrong_original_geometry_names_the_sizes(tmp_path):
    _, state_dict = original_release()
    torch.save(state_dict, tmp_path / "x.pth")
    with pytest.raises(ValueError, match="covers 50 patches"):
        script.main(["--original_ast", "--ast_model", str(tmp_path / "x.pth"), "--output_dir", str(tmp_path / "o"), "--num_attention_heads", "4"])
