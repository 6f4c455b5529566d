"""What the Hub and pipelines rely on: saved files, remote code without `meamtm`, pipeline on real files."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile
from transformers import pipeline

from meamtm import MeamtmFeatureExtractor, MeamtmForAudioClassification

from .conftest import WITHOUT_MEAMTM, tiny_config


LABELS = {index: f"digit_{index}" for index in range(10)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("checkpoint")
    config = tiny_config(id2label=LABELS, label2id={v: k for k, v in LABELS.items()}, max_length=100)
    MeamtmForAudioClassification(config).save_pretrained(directory)
    MeamtmFeatureExtractor.from_model_config(config).save_pretrained(directory)
    return directory


def test_checkpoint_files_and_auto_map(checkpoint):
    names = set(os.listdir(checkpoint))
    assert {"model.safetensors", "config.json", "preprocessor_config.json"} <= names
    assert {"configuration_meamtm.py", "modeling_meamtm.py", "frontend_meamtm.py", "feature_extraction_meamtm.py"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in names)
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["model_type"] == "meamtm"
    assert config["auto_map"]["AutoModelForAudioClassification"] == "modeling_meamtm.MeamtmForAudioClassification"
    preprocessor = json.loads((checkpoint / "preprocessor_config.json").read_text())
    assert preprocessor["auto_map"]["AutoFeatureExtractor"] == "feature_extraction_meamtm.MeamtmFeatureExtractor"


@pytest.mark.slow
def test_remote_code_loads_where_meamtm_is_not_importable(checkpoint, fsdd_clips_16k):
    """A fresh process that cannot import `meamtm` loads model and extractor with trust_remote_code."""
    clip_path = checkpoint.parent / "clip.npy"
    np.save(clip_path, fsdd_clips_16k[0])
    script = WITHOUT_MEAMTM + textwrap.dedent(
        f"""
        import numpy as np, torch
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
        model = AutoModelForAudioClassification.from_pretrained({str(checkpoint)!r}, trust_remote_code=True).eval()
        extractor = AutoFeatureExtractor.from_pretrained({str(checkpoint)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        inputs = extractor(np.load({str(clip_path)!r}), sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            print(model(**inputs).logits[0].tolist())
        """
    )
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, cwd=checkpoint.parent
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote_logits = json.loads(result.stdout.strip().splitlines()[-1])
    model = MeamtmForAudioClassification.from_pretrained(checkpoint).eval()
    extractor = MeamtmFeatureExtractor.from_pretrained(checkpoint)
    local_logits = model(**extractor(fsdd_clips_16k[0], sampling_rate=16000, return_tensors="pt")).logits[0]
    np.testing.assert_allclose(remote_logits, local_logits.tolist(), atol=1e-6)


def test_pipeline_on_a_real_8khz_wav_file(checkpoint, fsdd_test_files):
    classifier = pipeline("audio-classification", model=str(checkpoint))
    assert soundfile.info(str(fsdd_test_files[0])).samplerate == 8000
    result = classifier(str(fsdd_test_files[0]), top_k=3)
    assert len(result) == 3 and all(item["label"] in LABELS.values() for item in result)
    assert abs(sum(item["score"] for item in classifier(str(fsdd_test_files[0]), top_k=10)) - 1) < 1e-5


def test_pipeline_file_equals_array_resampled_by_ffmpeg(checkpoint, fsdd_test_files):
    """A file goes through ffmpeg at the model's rate; the same samples as an array give the same scores."""
    from transformers.pipelines.audio_utils import ffmpeg_read

    classifier = pipeline("audio-classification", model=str(checkpoint))
    path = fsdd_test_files[1]
    array = ffmpeg_read(path.read_bytes(), 16000)
    from_file = classifier(str(path), top_k=10)
    from_array = classifier(array, top_k=10)
    assert [item["label"] for item in from_file] == [item["label"] for item in from_array]
    np.testing.assert_allclose([i["score"] for i in from_file], [i["score"] for i in from_array], atol=1e-6)


def test_pipeline_batch_of_arrays_matches_one_by_one(checkpoint, fsdd_clips_16k):
    classifier = pipeline("audio-classification", model=str(checkpoint))
    clips = fsdd_clips_16k[:4]
    batched = classifier(clips, batch_size=4, top_k=10)
    single = [classifier(clip, top_k=10) for clip in clips]
    for left, right in zip(batched, single):
        scores = {item["label"]: item["score"] for item in right}
        for item in left:
            assert abs(item["score"] - scores[item["label"]]) < 1e-5


class HubStandIn:
    """Stands in for the HTTP layer of `HfApi` only: records what would be uploaded."""

    def __init__(self):
        self.uploads = {}

    def create_repo(self, repo_id, **kwargs):
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def create_commit(self, repo_id, operations, **kwargs):
        for operation in operations:
            with open(operation.path_or_fileobj, "rb") as file:
                self.uploads[operation.path_in_repo] = file.read()
        return f"https://hub.invalid/{repo_id}/commit"


def test_push_to_hub_uploads_the_saved_files(checkpoint, monkeypatch):
    import transformers.utils.hub as hub

    stand_in = HubStandIn()
    monkeypatch.setattr(hub, "_hf_api", stand_in)
    model = MeamtmForAudioClassification.from_pretrained(checkpoint)
    model.push_to_hub("someone/meamtm-digits")
    MeamtmFeatureExtractor.from_pretrained(checkpoint).push_to_hub("someone/meamtm-digits")
    expected = {name for name in os.listdir(checkpoint)}
    assert expected <= set(stand_in.uploads)
    assert stand_in.uploads["model.safetensors"] == (checkpoint / "model.safetensors").read_bytes()
    assert json.loads(stand_in.uploads["config.json"])["auto_map"]
