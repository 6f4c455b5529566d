"""configs/accelerate/*.yaml: they load with accelerate, FSDP wraps MeamtmLayer, and 2-process CPU FSDP (gloo)
trains to the weights of a 1-process run."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from meamtm import MeamtmForAudioClassification
from meamtm.modeling_meamtm import MeamtmLayer

from ..conftest import REPO, tiny_config


CONFIGS = REPO / "configs" / "accelerate"
ENVIRONMENT = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def fsdp_plugin():
    """accelerate's FSDP plugin as `accelerate launch --config_file fsdp.yaml` builds it (from FSDP_* variables)."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    options = yaml.safe_load((CONFIGS / "fsdp.yaml").read_text())["fsdp_config"]
    return FullyShardedDataParallelPlugin(
        fsdp_version=options["fsdp_version"],
        auto_wrap_policy=options["fsdp_auto_wrap_policy"],
        transformer_cls_names_to_wrap=options["fsdp_transformer_layer_cls_to_wrap"],
        reshard_after_forward=options["fsdp_reshard_after_forward"],
        activation_checkpointing=options["fsdp_activation_checkpointing"],
        state_dict_type=options["fsdp_state_dict_type"],
    )


@pytest.mark.parametrize("name", ["ddp.yaml", "ddp_multinode.yaml", "fsdp.yaml"])
def test_configs_load_with_accelerate(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / name))
    expected = {"ddp.yaml": "MULTI_GPU", "ddp_multinode.yaml": "MULTI_GPU", "fsdp.yaml": "FSDP"}[name]
    assert config.distributed_type == expected and config.mixed_precision == "bf16"
    if name == "ddp_multinode.yaml":
        assert config.num_machines > 1 and config.num_processes % config.num_machines == 0
    if name == "fsdp.yaml":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "MeamtmLayer"


def test_fsdp_wrap_policy_picks_the_transformer_layers_only():
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    plugin = fsdp_plugin()
    assert plugin.activation_checkpointing and plugin.reshard_after_forward is True  # full shard
    model = MeamtmForAudioClassification(tiny_config(num_hidden_layers=3))
    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    wrapped = [name for name, module in model.named_modules() if policy(module)]
    assert wrapped == ["meamtm.layers.0", "meamtm.layers.1", "meamtm.layers.2"]
    assert all(isinstance(model.get_submodule(name), MeamtmLayer) for name in wrapped)


# accelerate (1.15) applies an FSDP plugin only on top of a GPU-class distributed type (MULTI_GPU, MULTI_XPU, ...):
# on CPUs `accelerate launch --config_file fsdp.yaml` runs DDP (gloo, Trainer's use_cpu) or no process group at all.
# torch's fully_shard itself shards on CPUs over gloo, so this script applies it as accelerate's
# `fsdp2_prepare_model` would with fsdp.yaml: accelerate's wrap policy and activation checkpointing
# (`fsdp2_apply_ac`), each MeamtmLayer fully_shard-ed bottom-up, then the root; mixed precision is the
# MixedPrecisionPolicy accelerate builds for bf16. It trains 6 AdamW steps on 4 clips per step (each of N
# processes takes 4/N of them) and saves the full weights; with `bf16` it also reports dtypes inside the model.
FSDP_RUN = textwrap.dedent("""
    import json, os, sys, types
    import torch
    import torch.distributed as dist
    from accelerate.utils.fsdp_utils import fsdp2_apply_ac, fsdp2_prepare_auto_wrap_policy, get_module_children_bottom_up
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
    from torch.distributed.tensor import DTensor
    from meamtm import MeamtmConfig, MeamtmForAudioClassification
    sys.path.insert(0, sys.argv[3])
    from tests.training.test_accelerate_configs import fsdp_plugin

    output, precision = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    config = MeamtmConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                          num_mel_bins=32, max_length=64, patch_size=8, frequency_stride=6, time_stride=6, num_labels=3)
    model = MeamtmForAudioClassification(config)
    plugin = fsdp_plugin()
    if precision == "bf16":
        plugin.set_mixed_precision("bf16")
    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    if world > 1:
        model = fsdp2_apply_ac(types.SimpleNamespace(state=types.SimpleNamespace(fsdp_plugin=plugin)), model)
        options = dict(reshard_after_forward=plugin.reshard_after_forward,
                       mp_policy=plugin.mixed_precision_policy or MixedPrecisionPolicy())
        for module in get_module_children_bottom_up(model)[:-1]:
            if policy(module):
                fully_shard(module, **options)
        fully_shard(model, **options)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = torch.Generator().manual_seed(1)
    seen = {}
    model.meamtm.frontend.register_forward_hook(
        lambda module, inputs, out: seen.update(frontend_in=str(inputs[0].dtype), frontend_out=str(out.dtype)))
    for step in range(6):
        waves = (torch.randn(4, 10480, generator=data) * 0.3).clamp(-1, 1)
        labels = torch.randint(0, 3, (4,), generator=data)
        part = slice(rank * 4 // world, (rank + 1) * 4 // world)
        loss = model(input_values=waves[part], labels=labels[part]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    fc1 = model.meamtm.layers[0]._checkpoint_wrapped_module.mlp.fc1.weight if world > 1 else None
    state = {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().float() for k, v in model.state_dict().items()}
    state = {k.replace("_checkpoint_wrapped_module.", ""): v for k, v in state.items()}
    if rank == 0:
        torch.save(state, output + ".pt")
        with open(output + ".json", "w") as report:
            json.dump({
                "world_size": world, "backend": dist.get_backend(),
                "layers_are_fsdp_units": all(isinstance(layer, FSDPModule) for layer in model.meamtm.layers),
                "root_is_fsdp_unit": isinstance(model, FSDPModule),
                "layer_type": type(model.meamtm.layers[0]).__name__,
                "fc1_local_shape": list(fc1.to_local().shape) if isinstance(fc1, DTensor) else None,
                "loss_dtype": str(loss.dtype), **seen,
            }, report)
    dist.barrier()
    dist.destroy_process_group()
    # Once FSDP2 has sharded over the gloo group, the group stays referenced after destroy_process_group (even with
    # the model deleted) and its worker threads keep running; one can free a finished collective's tensors while the
    # interpreter finalizes, which aborts the process (SIGABRT in about 1 run in 8 on two cores). The results are
    # written and closed, so the script leaves without finalizing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
""")


def run_fsdp(tmp_path: Path, processes: int, precision: str = "fp32") -> tuple[dict, dict]:
    script = tmp_path / "fsdp_run.py"
    script.write_text(FSDP_RUN)
    output = tmp_path / f"run{processes}{precision}"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               str(script), str(output), precision, str(REPO)]
    finished = subprocess.run(command, env=ENVIRONMENT, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(Path(f"{output}.json").read_text()), torch.load(f"{output}.pt")


@pytest.mark.slow
def test_two_process_cpu_fsdp_matches_one_process(tmp_path):
    one, one_weights = run_fsdp(tmp_path, 1)
    two, two_weights = run_fsdp(tmp_path, 2)
    assert two["world_size"] == 2 and two["backend"] == "gloo"
    assert two["layers_are_fsdp_units"] and two["root_is_fsdp_unit"] and two["layer_type"] == "FSDPCheckpointWrapper"
    assert two["fc1_local_shape"] == [19, 32]  # full shard: each process holds half of the 37 rows
    assert not one["layers_are_fsdp_units"]
    # Reduce-scattered mean gradients of 2 x 2 clips equal the gradient of 4 clips up to summation order; the
    # tolerance is the DDP test's. The key biases move most: their gradient is zero up to rounding (softmax
    # ignores a shift shared by every key), and Adam scales that rounding up to steps of the learning rate.
    assert one_weights.keys() == two_weights.keys()
    for key in one_weights:
        torch.testing.assert_close(two_weights[key], one_weights[key], atol=1e-4, rtol=0, msg=key)


@pytest.mark.slow
def test_fsdp_bf16_keeps_the_frontend_float32(tmp_path):
    report, weights = run_fsdp(tmp_path, 2, "bf16")
    # The log-mel is computed in float32; FSDP2 casts the root module's inputs (the waveforms) to bf16 before it
    # (MixedPrecisionPolicy.cast_forward_inputs, which accelerate's config does not expose).
    assert report["frontend_out"] == "torch.float32" and report["frontend_in"] == "torch.bfloat16"
    assert all(torch.isfinite(value).all() for value in weights.values())
