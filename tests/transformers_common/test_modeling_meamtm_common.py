"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`) on MEAMTM's model classes.

The common test modules ship in transformers' source distribution, not its wheel: `scripts/transformers_common_tests.py`
downloads them for the installed version and runs this file against them. Without them (`make test`) it is skipped.
"""

import inspect
import unittest

import torch
from torch import nn

from . import add_common_tests_to_path

add_common_tests_to_path()

from transformers.models.auto import modeling_auto  # noqa: E402
from transformers.testing_utils import require_torch  # noqa: E402
from transformers_tests.test_configuration_common import ConfigTester  # noqa: E402
from transformers_tests.test_modeling_common import ModelTesterMixin, floats_tensor, ids_tensor  # noqa: E402

from meamtm import MeamtmConfig, MeamtmForAudioClassification, MeamtmModel  # noqa: E402

from ..conftest import TINY  # noqa: E402


class MeamtmModelTester:
    """Tiny configs and inputs for the common tests: waveforms of exactly `max_length` frames, and their mask."""

    def __init__(self, parent, batch_size=13, num_labels=10, **overrides):
        self.parent = parent
        self.batch_size = batch_size
        self.num_labels = num_labels
        self.overrides = {**TINY, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, **overrides}
        self.is_training = True
        config = self.get_config()
        self.hidden_size = config.hidden_size
        self.num_hidden_layers = config.num_hidden_layers
        self.num_attention_heads = config.num_attention_heads
        self.seq_length = config.num_patches + 2  # the cls and distillation tokens
        self.num_samples = config.num_samples  # the window: `max_length` frames

    def get_config(self) -> MeamtmConfig:
        return MeamtmConfig(**self.overrides, num_labels=self.num_labels)

    def prepare_config_and_inputs_for_common(self):
        waveforms = floats_tensor([self.batch_size, self.num_samples]) * 2 - 1
        # The mask is over samples, as MeamtmFeatureExtractor returns it: given here, the common tests pad it
        # rather than make one over tokens.
        return self.get_config(), {"input_values": waveforms, "attention_mask": torch.ones_like(waveforms, dtype=torch.long)}


@require_torch
class MeamtmModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (MeamtmModel, MeamtmForAudioClassification)
    test_resize_embeddings = False
    tester_overrides: dict = {}

    @classmethod
    def setUpClass(cls):
        # The mixin tells base models from heads, and gives labels to heads, by transformers' own registry of
        # model names, which lists the models inside transformers only.
        cls._registered = [
            (modeling_auto.MODEL_MAPPING_NAMES, "MeamtmModel"),
            (modeling_auto.MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES, "MeamtmForAudioClassification"),
        ]
        for names, class_name in cls._registered:
            names[MeamtmConfig.model_type] = class_name

    @classmethod
    def tearDownClass(cls):
        for names, _ in cls._registered:
            names.pop(MeamtmConfig.model_type, None)

    def setUp(self):
        self.model_tester = MeamtmModelTester(self, **self.tester_overrides)
        self.config_tester = ConfigTester(
            self, config_class=MeamtmConfig, has_text_modality=False, hidden_size=32, num_attention_heads=4
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip(reason="MEAMTM takes waveforms; it has no inputs_embeds")
    def test_inputs_embeds(self):
        pass

    def test_model_get_set_embeddings(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            self.assertIsInstance(model.get_input_embeddings(), nn.Module)
            self.assertTrue(model.get_output_embeddings() is None or isinstance(model.get_output_embeddings(), nn.Linear))

    def test_forward_signature(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            names = list(inspect.signature(model_class(config).forward).parameters)
            self.assertEqual(names[0], "input_values")
            self.assertIn("attention_mask", names)

    def test_reverse_loading_mapping(self):
        # MEAMTM's one conversion op (ResizePositionEmbeddings) fits weights to another grid; no key is renamed.
        super().test_reverse_loading_mapping(check_keys_were_modified=False)


class MeamtmRecipeShapedModelTest(MeamtmModelTest):
    """The same tests on what the fsdd recipe trains: two channels, batches padded to their longest clip, mean
    pooling, and test-time warps and shifts in evaluation."""

    tester_overrides = dict(
        normalization="global+per_clip", padding_mode="longest", pooling="mean", test_time_max_warp=0.1,
        test_time_max_shift=2,
    )
