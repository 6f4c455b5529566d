"""The `evaluate` metric modules in meamtm/metrics, against scikit-learn on the same arrays, loaded offline."""

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

from meamtm.training import metrics


@pytest.fixture(scope="module")
def accuracy_f1():
    return metrics.load("accuracy_f1")


@pytest.fixture(scope="module")
def audioset():
    return metrics.load("audioset")


def test_modules_load_by_path_from_the_package():
    assert metrics.path_of("audioset").endswith("meamtm/training/metrics/audioset")
    with pytest.raises(ValueError, match=r"No metric module 'bleu'.*\['accuracy_f1', 'audioset'\]"):
        metrics.path_of("bleu")


def test_accuracy_and_macro_f1_match_sklearn(accuracy_f1):
    rng = np.random.default_rng(0)
    references = rng.integers(0, 7, 300)
    predictions = np.where(rng.random(300) < 0.6, references, rng.integers(0, 7, 300))
    result = accuracy_f1.compute(predictions=predictions, references=references)
    assert result["accuracy"] == pytest.approx(accuracy_score(references, predictions), abs=1e-12)
    assert result["macro_f1"] == pytest.approx(f1_score(references, predictions, average="macro"), abs=1e-12)


def test_macro_f1_counts_classes_never_predicted(accuracy_f1):
    # Class 2 exists but is never predicted: its F1 of 0 must pull the macro mean down.
    result = accuracy_f1.compute(predictions=[0, 1, 1, 0], references=[0, 1, 2, 0], labels=[0, 1, 2])
    assert result["macro_f1"] == pytest.approx(f1_score([0, 1, 2, 0], [0, 1, 1, 0], average="macro", labels=[0, 1, 2]))
    assert result["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_audioset_metrics_match_sklearn(audioset):
    rng = np.random.default_rng(1)
    targets = (rng.random((200, 12)) < 0.2).astype(int)
    scores = targets * rng.normal(1.0, 1.0, targets.shape) + rng.normal(0.0, 1.0, targets.shape)
    result = audioset.compute(predictions=scores, references=targets)
    expected_map = np.mean([average_precision_score(targets[:, k], scores[:, k]) for k in range(12)])
    expected_auc = roc_auc_score(targets, scores, average="macro")
    assert result["mAP"] == pytest.approx(expected_map, abs=1e-12)
    assert result["mAUC"] == pytest.approx(expected_auc, abs=1e-12)
    assert result["d_prime"] == pytest.approx(np.sqrt(2) * norm.ppf(expected_auc), abs=1e-9)
    assert result["num_classes_scored"] == 12


def test_audioset_metrics_skip_classes_without_positives(audioset):
    # Class 2 has no positive clip (AP and AUC undefined): the means cover classes 0 and 1, as in AST's code.
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    scores = np.array([[0.9, 0.2, 0.5], [0.1, 0.8, 0.5], [0.7, 0.3, 0.5], [0.2, 0.1, 0.5]])
    result = audioset.compute(predictions=scores, references=targets)
    assert result["num_classes_scored"] == 2
    assert result["mAP"] == pytest.approx(average_precision_score(targets[:, :2], scores[:, :2], average="macro"))
    assert result["mAUC"] == pytest.approx(roc_auc_score(targets[:, :2], scores[:, :2], average="macro"))


def test_audioset_metrics_reject_mismatched_shapes(audioset):
    with pytest.raises(ValueError, match=r"must both be \(num_clips, num_classes\)"):
        audioset.compute(predictions=[[0.1, 0.2]], references=[[1, 0, 1]])
