"""Multi-label metrics for `evaluate`, as AudioSet papers (AST, PSLA, PANNs) report them: mAP, mean AUC, d-prime.

Loaded by path, never from the network: `evaluate.load(meamtm.training.metrics.path_of("audioset"))`.
"""

import datasets
import evaluate
import numpy as np
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score


_DESCRIPTION = """Per-class average precision and ROC AUC over clips, averaged over classes (macro). Classes with
no positive or no negative clip in the references have no AUC (and no AP without positives) and are left out of
the means, as in AST's evaluation code. d-prime is sqrt(2) * Phi^-1(mean AUC), Phi the standard normal CDF."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): scores `(num_clips, num_classes)`, logits or probabilities (any monotone
        score gives the same AP and AUC).
    references (`list[list[int]]`): multi-hot targets `(num_clips, num_classes)`.
Returns:
    mAP (`float`), mAUC (`float`), d_prime (`float`), and num_classes_scored (`int`): the classes the means cover.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Audioset(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Gong, Chung, Glass: AST: Audio Spectrogram Transformer, Interspeech 2021.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions, references):
        scores = np.asarray(predictions, dtype=np.float64)
        targets = np.asarray(references, dtype=np.int64)
        if scores.shape != targets.shape or scores.ndim != 2:
            raise ValueError(
                f"predictions {scores.shape} and references {targets.shape} must both be (num_clips, num_classes)."
            )
        positives = targets.sum(axis=0)
        scored = (positives > 0) & (positives < len(targets))
        if not scored.any():
            raise ValueError(
                "No class has both positive and negative clips in the references: AP and AUC are undefined."
            )
        average_precision = average_precision_score(targets[:, scored], scores[:, scored], average=None)
        auc = roc_auc_score(targets[:, scored], scores[:, scored], average=None)
        mean_auc = float(np.mean(auc))
        return {
            "mAP": float(np.mean(average_precision)),
            "mAUC": mean_auc,
            "d_prime": float(np.sqrt(2.0) * norm.ppf(mean_auc)),
            "num_classes_scored": int(scored.sum()),
        }
