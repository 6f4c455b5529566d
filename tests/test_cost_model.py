"""scripts/cost_model.py: the FLOP count, and a --quick run's report (speed is never asserted)."""

import importlib.util
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from meamtm import MeamtmForAudioClassification

from .conftest import REPO, tiny_config


spec = importlib.util.spec_from_file_location("cost_model_script", REPO / "scripts" / "cost_model.py")
cost_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cost_model)


@pytest.mark.parametrize("patchout", [0.0, 0.5])
def test_flop_count_agrees_with_torch_flop_counter(patchout):
    config = tiny_config(num_labels=3, recompute_mlp_activation=False, patchout_time=patchout)
    config._attn_implementation = "eager"  # the counter sees eager attention's matrix products, not CPU SDPA kernels
    model = MeamtmForAudioClassification(config).train()
    with FlopCounterMode(display=False) as counter:
        model(input_values=torch.randn(2, config.num_samples) * 0.1, labels=torch.tensor([0, 2])).loss.backward()
    counted = counter.get_total_flops() / 2
    estimated = cost_model.training_flops_per_clip(config, config.num_training_patches + 2)
    assert estimated == pytest.approx(counted, rel=0.01)


@pytest.mark.slow
def test_quick_cost_model_writes_a_complete_report(tmp_path):
    report = cost_model.main(["--quick", "--output_dir", str(tmp_path)])
    assert json.loads((tmp_path / "cost_model.json").read_text()) == json.loads(json.dumps(report))
    rows = report["configurations"]
    assert set(rows) == {"fp32", "fp32_patchout", "bf16", "bf16_patchout"}
    assert rows["fp32_patchout"]["patch_tokens"] < rows["fp32"]["patch_tokens"]
    assert rows["fp32_patchout"]["training_flops_per_clip"] < rows["fp32"]["training_flops_per_clip"]
    for row in rows.values():
        assert row["cpu_seconds_per_step"] > 0 and row["cpu_peak_bytes"] > 0
        for gpu, hours in row["gpu_hours_per_epoch"].items():
            peak = cost_model.GPUS[gpu][row["dtype"]]
            assert hours == pytest.approx(row["epoch_flops"] / (peak * report["utilisation"]) / 3600)
    assert report["ast_published"]["gpu_hours_per_epoch"] == pytest.approx(4 * 7 * 24 / 5)
    markdown = (tmp_path / "cost_model.md").read_text()
    assert "| fp32_patchout |" in markdown and "Assumptions:" in markdown and "nothing here ran on a GPU" in markdown
