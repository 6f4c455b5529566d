"""The model on a CUDA device: the same features and logits as on the CPU, augmentation drawn on the GPU, training
under autocast, loading straight onto the device, and the pipeline. Skipped where torch sees no CUDA device."""

import pytest
import torch
from transformers import pipeline

from meamtm import (
    MeamtmAudioClassificationPipeline,
    MeamtmFeatureExtractor,
    MeamtmForAudioClassification,
)
from meamtm.frontend_meamtm import MeamtmFrontend

from .conftest import tiny_config


pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
AUGMENTED = dict(
    vtlp_max_warp=0.1,
    mel_tilt_db=6,
    mel_band_stop_width=4,
    mel_low_pass_probability=0.5,
    freq_mask_param=8,
    time_mask_param=10,
    patchout_time=0.3,
    patchout_unstructured=0.2,
    mixup_alpha=0.3,
    drop_path_rate=0.1,
    freq_mixstyle_probability=0.5,
    pitch_shift_semitones=2,
    tempo_perturbation=0.2,
)


def mixed_batch(lengths, seed=0):
    """Zero-padded waveforms `(batch, max(lengths))` and their mask, on the CPU."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    waveforms = torch.randn(len(lengths), width, generator=generator) * 0.1
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return waveforms * mask, mask


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(padding_mode="longest", normalization="per_clip"),
        dict(padding_mode="longest", normalization="per_clip_envelope"),
        dict(padding_mode="longest", cepstral_coefficients=12),
        dict(stft_precision="float32"),
    ],
)
@pytest.mark.parametrize("backend", ["auto", "fft", "conv"])
def test_features_on_cuda_equal_those_on_the_cpu(overrides, backend):
    config = tiny_config(stft_backend=backend, **overrides)
    waveforms, mask = mixed_batch([9000, 4000, 300, 10400])
    lengths = mask.sum(1)
    frontend = MeamtmFrontend(config).eval()
    expected = frontend(waveforms, lengths)
    actual = frontend.to(CUDA)(waveforms.to(CUDA), lengths.to(CUDA))
    assert actual.device.type == "cuda" and actual.dtype == torch.float32
    # float64 STFT on both; float32 mel and log products: their rounding differs by device.
    tolerance = 1e-3 if config.stft_precision == "float32" else 1e-4
    torch.testing.assert_close(actual.cpu(), expected, atol=tolerance, rtol=0)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(padding_mode="max_length"),
        dict(padding_mode="longest"),
        # the fsdd recipe's model
        dict(padding_mode="longest", normalization="global+per_clip", test_time_max_warp=0.1, test_time_max_shift=2),
        dict(padding_mode="longest", normalization="global+per_clip", test_time_max_shift=2, test_time_max_tempo=0.2),
        dict(padding_mode="longest", normalization="global+per_clip", trim_silence_db=30),
    ],
)
def test_logits_on_cuda_equal_those_on_the_cpu_and_a_clip_alone_equals_it_in_a_batch(overrides):
    model = MeamtmForAudioClassification(tiny_config(num_labels=5, **overrides)).eval()
    waveforms, mask = mixed_batch([9000, 4000, 300, 10400])
    if overrides.get("trim_silence_db"):  # quiet for the trim to cut: each clip's first 0.1 s, 60 dB down
        waveforms[:, :1600] *= 1e-3
    with torch.no_grad():
        expected = model(waveforms, attention_mask=mask).logits
        model.to(CUDA)
        batched = model(waveforms.to(CUDA), attention_mask=mask.to(CUDA)).logits
        assert batched.device.type == "cuda"
        torch.testing.assert_close(batched.cpu(), expected, atol=1e-4, rtol=1e-4)
        for row, length in enumerate(mask.sum(1).tolist()):
            alone = model(waveforms[row : row + 1, :length].to(CUDA)).logits[0]
            torch.testing.assert_close(alone, batched[row], atol=1e-4, rtol=1e-4)


def test_training_augmentation_runs_on_cuda_per_example_seeded_and_off_in_evaluation():
    plain = MeamtmForAudioClassification(tiny_config(num_labels=3)).to(CUDA).eval()
    augmented = MeamtmForAudioClassification(tiny_config(num_labels=3, **AUGMENTED)).to(CUDA)
    augmented.load_state_dict(plain.state_dict())
    waveforms = (torch.randn(8, 9000) * 0.1).to(CUDA)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1], device=CUDA)
    augmented.train()
    torch.manual_seed(5)
    first = augmented(waveforms, labels=labels)
    torch.manual_seed(5)
    again = augmented(waveforms, labels=labels)
    torch.testing.assert_close(again.logits, first.logits, atol=0, rtol=0)  # the CUDA generator is seeded too
    first.loss.backward()
    gradients = [p.grad for p in augmented.parameters() if p.grad is not None]
    assert gradients and all(torch.isfinite(g).all() for g in gradients)
    assert all(g.device.type == "cuda" for g in gradients)
    same = waveforms[:1].expand(8, -1).contiguous()
    with torch.no_grad():
        spectrograms = augmented.meamtm.frontend(same)  # per-example filter banks: different for one clip
        assert all(not torch.equal(spectrograms[0], other) for other in spectrograms[1:])
        augmented.eval()
        torch.testing.assert_close(augmented(waveforms).logits, plain(waveforms).logits, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_training_step_under_autocast_on_cuda_keeps_the_frontend_float32_and_is_finite(dtype):
    model = MeamtmForAudioClassification(tiny_config(num_labels=3, padding_mode="longest", **AUGMENTED)).to(CUDA)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    waveforms, mask = mixed_batch([9000, 4000, 3000, 10400])
    waveforms, mask = waveforms.to(CUDA), mask.to(CUDA)
    labels = torch.tensor([0, 1, 2, 1], device=CUDA)
    losses = []
    for _ in range(20):
        with torch.autocast("cuda", dtype=dtype):
            assert model.meamtm.frontend(waveforms, mask.sum(1)).dtype == torch.float32
            loss = model(waveforms, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        assert torch.isfinite(loss)
        losses.append(loss.item())
    assert min(losses[-5:]) < losses[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loading_onto_cuda_re_derives_the_frozen_kernels_there(tmp_path, dtype):
    model = MeamtmForAudioClassification(tiny_config(num_labels=3, cepstral_coefficients=12)).eval()
    model.save_pretrained(tmp_path)
    loaded = MeamtmForAudioClassification.from_pretrained(tmp_path, device_map="cuda", dtype=dtype).eval()
    for name, tensor in loaded.meamtm.frontend.kernel_tensors().items():
        assert tensor.device.type == "cuda", name
        torch.testing.assert_close(tensor.cpu(), model.meamtm.frontend.kernel_tensors()[name], atol=0, rtol=0, msg=name)
    waveforms = torch.randn(3, 9000) * 0.1
    with torch.no_grad():
        logits = loaded(waveforms.to(CUDA)).logits
        expected = model(waveforms).logits
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(logits.float().cpu(), expected, atol=tolerance, rtol=tolerance)


def test_the_pipeline_on_cuda_gives_the_cpu_scores(tmp_path):
    config = tiny_config(num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
    MeamtmForAudioClassification(config).save_pretrained(tmp_path)
    MeamtmFeatureExtractor.from_model_config(config).save_pretrained(tmp_path)
    clips = [(torch.randn(n) * 0.1).numpy() for n in (16000, 5000, 800)]
    scores = {}
    for device in ("cpu", "cuda"):
        classifier = pipeline(
            "audio-classification", model=str(tmp_path), device=device,
            pipeline_class=MeamtmAudioClassificationPipeline,
        )
        assert classifier.model.device.type == device
        outputs = classifier([{"raw": clip, "sampling_rate": 16000} for clip in clips], top_k=3, batch_size=2)
        scores[device] = [{row["label"]: row["score"] for row in output} for output in outputs]
    for on_cpu, on_cuda in zip(scores["cpu"], scores["cuda"]):
        assert on_cpu.keys() == on_cuda.keys()
        for label in on_cpu:
            assert on_cuda[label] == pytest.approx(on_cpu[label], abs=1e-4)
