"""transformers' own common feature-extractor tests (`SequenceFeatureExtractionTestMixin`) on MeamtmFeatureExtractor.

Run by `scripts/transformers_common_tests.py`, which downloads the common test modules; skipped without them.
"""

import os
import tempfile
import unittest

import numpy as np

from . import add_common_tests_to_path

add_common_tests_to_path()

from transformers.testing_utils import check_json_file_has_correct_format, require_torch  # noqa: E402
from transformers_tests.test_sequence_feature_extraction_common import SequenceFeatureExtractionTestMixin  # noqa: E402

from meamtm import MeamtmFeatureExtractor  # noqa: E402


class MeamtmFeatureExtractionTester:
    """Waveforms of 400 to 2,000 samples, rising by a step, or all 2,000 long; an extractor whose window holds them."""

    def __init__(self, parent, batch_size=7, min_seq_length=400, max_seq_length=2000):
        self.parent = parent
        self.batch_size = batch_size
        self.min_seq_length = min_seq_length
        self.max_seq_length = max_seq_length
        self.seq_length_diff = (max_seq_length - min_seq_length) // (batch_size - 1)
        self.feature_size, self.padding_value, self.sampling_rate = 1, 0.0, 16000
        self.rng = np.random.default_rng(0)

    def prepare_feat_extract_dict(self):
        return {"feature_size": self.feature_size, "padding_value": self.padding_value,
                "sampling_rate": self.sampling_rate, "return_attention_mask": True, "num_samples": 4000}

    def prepare_inputs_for_common(self, equal_length=False, numpify=False):
        lengths = ([self.max_seq_length] * self.batch_size if equal_length
                   else range(self.min_seq_length, self.max_seq_length, self.seq_length_diff))
        inputs = [self.rng.uniform(-1, 1, length).astype(np.float32) for length in lengths]
        return inputs if numpify else [clip.tolist() for clip in inputs]


@require_torch
class MeamtmFeatureExtractionTest(SequenceFeatureExtractionTestMixin, unittest.TestCase):
    feature_extraction_class = MeamtmFeatureExtractor

    def setUp(self):
        self.feat_extract_tester = MeamtmFeatureExtractionTester(self)

    def test_call(self):
        extractor = self.feature_extraction_class(**self.feat_extract_tester.prepare_feat_extract_dict())
        speech = [self.feat_extract_tester.rng.uniform(-1, 1, n).tolist() for n in (800, 1000, 1200)]
        as_arrays = [np.asarray(clip, dtype=np.float32) for clip in speech]
        # one clip, list or array; a batch, lists or arrays; a 2-D array is a batch
        one = extractor(speech[0], sampling_rate=16000, return_tensors="np").input_values
        np.testing.assert_allclose(one, extractor(as_arrays[0], sampling_rate=16000, return_tensors="np").input_values, atol=1e-6)
        batch = extractor(speech, sampling_rate=16000, return_tensors="np").input_values
        np.testing.assert_allclose(batch, extractor(as_arrays, sampling_rate=16000, return_tensors="np").input_values, atol=1e-6)
        square = np.stack([as_arrays[0]] * 3)
        np.testing.assert_allclose(
            extractor(square, sampling_rate=16000, return_tensors="np").input_values,
            extractor([square[0]] * 3, sampling_rate=16000, return_tensors="np").input_values, atol=1e-6,
        )

    def test_feat_extract_from_and_save_pretrained(self):
        first = self.feature_extraction_class(**self.feat_extract_dict)
        with tempfile.TemporaryDirectory() as folder:
            saved = first.save_pretrained(folder)[0]
            check_json_file_has_correct_format(saved)
            second = self.feature_extraction_class.from_pretrained(folder)
        self.assertDictEqual(first.to_dict(), second.to_dict())

    def test_feat_extract_to_json_file(self):
        first = self.feature_extraction_class(**self.feat_extract_dict)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "feat_extract.json")
            first.to_json_file(path)
            second = self.feature_extraction_class.from_json_file(path)
        self.assertEqual(first.to_dict(), second.to_dict())
