"""Single-label classification metrics for `evaluate`: accuracy and macro-averaged F1.

Loaded by path, never from the network: `evaluate.load(meamtm.training.metrics.path_of("accuracy_f1"))`.
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score, f1_score


_DESCRIPTION = """Accuracy (fraction of clips whose predicted class is the reference class) and macro F1 (the
unweighted mean over classes of per-class F1, so rare classes count as much as frequent ones)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class indices, `(num_clips,)`.
    references (`list[int]`): reference class indices, `(num_clips,)`.
    labels (`list[int]`, *optional*): the classes to average F1 over; defaults to those present in either list.
Returns:
    accuracy (`float`), macro_f1 (`float`).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AccuracyF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, labels=None):
        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "macro_f1": float(f1_score(references, predictions, labels=labels, average="macro", zero_division=0)),
        }
