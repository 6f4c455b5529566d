"""Writes tests/data/max_length_reference.pt: weights and outputs of AST's graph (padding_mode="max_length") on a
tiny config, for the bit-for-bit test in tests/test_padding_mode.py.

    python tests/data/make_max_length_reference.py REPO_ROOT OUTPUT.pt

Run it on a commit whose max_length graph is the reference; outputs are exact for one torch build and CPU.
"""
import sys
import torch
sys.path.insert(0, sys.argv[1])
from tests.conftest import tiny_config
from tests.test_padding_mode import reference_inputs
from meamtm import MeamtmForAudioClassification

def cases():
    waves, mask = reference_inputs()
    out = {}
    for name, overrides, train in [
        ("cls", {}, False),
        ("mean", {"pooling": "mean"}, False),
        ("eager", {"attn_implementation": "eager"}, False),
        ("train_patchout_specaugment", {"patchout_time": 0.3, "patchout_frequency": 0.2, "patchout_unstructured": 0.1,
                                        "freq_mask_param": 8, "time_mask_param": 16, "pooling": "mean"}, True),
        ("train_mixup_spectrogram", {"mixup_alpha": 0.3, "pooling": "mean"}, True),
    ]:
        torch.manual_seed(1)
        model = MeamtmForAudioClassification(tiny_config(num_labels=3, **overrides))
        if "state" in out:
            model.load_state_dict(out["state"])
        else:
            out["state"] = {k: v.clone() for k, v in model.state_dict().items()}
        model.train(train)
        torch.manual_seed(2)
        labels = torch.tensor([0, 1, 2]) if "mixup" in name else None
        with torch.no_grad():
            result = model(waves, attention_mask=mask, labels=labels)
            out[name] = result.logits
            if labels is not None:
                out[name + "_loss"] = result.loss
    return out

torch.set_num_threads(1)  # the test compares at one thread: the last bit of a product can depend on the count
torch.save(cases(), sys.argv[2])
