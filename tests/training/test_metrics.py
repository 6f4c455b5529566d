"""The `evaluate` metric modules in meamtm/metrics, checked on cases worked by hand, loaded offline."""

import numpy as np
import pytest
from scipy.stats import norm

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


def test_accuracy_and_macro_f1_on_a_case_worked_by_hand(accuracy_f1):
    # Class 0: both right (F1 1). Class 1: predicted 3 times, 1 right, 1 of its 2 clips found (precision 1/3,
    # recall 1/2, F1 2/5). Class 2: never right (F1 0). Accuracy 3 of 6.
    result = accuracy_f1.compute(predictions=[0, 0, 1, 1, 1, 2], references=[0, 0, 1, 2, 2, 1])
    assert result["accuracy"] == pytest.approx(3 / 6)
    assert result["macro_f1"] == pytest.approx((1 + 0.4 + 0) / 3)


def test_macro_f1_counts_classes_never_predicted(accuracy_f1):
    # Class 2 exists but is never predicted: its F1 of 0 must pull the macro mean down.
    result = accuracy_f1.compute(predictions=[0, 1, 1, 0], references=[0, 1, 2, 0], labels=[0, 1, 2])
    assert result["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_audioset_metrics_on_a_case_worked_by_hand(audioset):
    # One class, clips ranked 0.9 (pos), 0.8 (neg), 0.4 (pos), 0.1 (neg): AP = (1/1 + 2/3) / 2; of the four
    # positive-negative pairs three are ordered right, AUC = 3/4; d' = sqrt(2) * Phi^-1(AUC).
    result = audioset.compute(predictions=[[0.9], [0.8], [0.4], [0.1]], references=[[1], [0], [1], [0]])
    assert result["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["mAUC"] == pytest.approx(0.75)
    assert result["d_prime"] == pytest.approx(np.sqrt(2) * norm.ppf(0.75))
    assert result["num_classes_scored"] == 1


def test_audioset_metrics_skip_classes_without_positives(audioset):
    # Class 2 has no positive clip (AP and AUC undefined): the means cover classes 0 and 1, as in AST's code.
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    scores = np.array([[0.9, 0.2, 0.5], [0.1, 0.8, 0.5], [0.7, 0.3, 0.5], [0.2, 0.1, 0.5]])
    result = audioset.compute(predictions=scores, references=targets)
    assert result["num_classes_scored"] == 2
    # Class 0 ranks its positives 0.9, 0.7 above its negatives 0.2, 0.1: AP 1, AUC 1. Class 1 ranks 0.8 (pos),
    # 0.3 (pos), 0.2 (neg), 0.1 (neg): AP 1, AUC 1. Class 2 would be undefined and must not count as 0.
    assert result["mAP"] == pytest.approx(1.0)
    assert result["mAUC"] == pytest.approx(1.0)


def test_audioset_metrics_reject_mismatched_shapes(audioset):
    with pytest.raises(ValueError, match=r"must both be \(num_clips, num_classes\)"):
        audioset.compute(predictions=[[0.1, 0.2]], references=[[1, 0, 1]])
