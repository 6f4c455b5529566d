"""meamtm/training_report_meamtm.py: learning-curve and confusion-matrix PNGs, the model card."""

import numpy as np
import pytest
from huggingface_hub import ModelCard
from PIL import Image

from meamtm.training.report import plot_confusion_matrix, plot_learning_curve, write_model_card


LOG = [
    {"loss": 2.3, "step": 10, "epoch": 0.5},
    {"loss": 1.1, "step": 20, "epoch": 1.0},
    {"eval_loss": 1.2, "eval_accuracy": 0.6, "step": 20, "epoch": 1.0},
    {"loss": 0.5, "step": 30, "epoch": 1.5},
    {"eval_loss": 0.7, "eval_accuracy": 0.8, "step": 40, "epoch": 2.0},
    {"train_runtime": 12.0, "step": 40},
]


def test_learning_curve_is_a_png(tmp_path):
    path = plot_learning_curve(LOG, str(tmp_path / "curve.png"), "accuracy")
    image = Image.open(path)
    assert image.format == "PNG" and image.size[0] > 300
    # A different history draws a different picture (the plot is not a placeholder).
    other = plot_learning_curve(LOG[:2], str(tmp_path / "other.png"))
    assert np.asarray(Image.open(other)).tobytes() != np.asarray(image).tobytes()


def test_confusion_matrix_is_a_png(tmp_path):
    path = plot_confusion_matrix(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]), ["a", "b", "c"], str(tmp_path / "cm.png"))
    assert Image.open(path).format == "PNG"


def test_model_card_carries_the_results(tmp_path):
    results = {"eval_accuracy": 0.875, "eval_macro_f1": 0.8, "eval_runtime": 3.0, "train_loss": 0.2}
    path = write_model_card(str(tmp_path), "me/digits", "some/dataset", results, ["zero", "one"],
                            {"epochs": 3, "augmentation": "gain 6 dB"}, figures=["learning_curve.png"], hub_dataset=True)
    card = ModelCard.load(path)
    assert card.data.pipeline_tag == "audio-classification" and card.data.datasets == ["some/dataset"]
    results_by_metric = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results_by_metric == {"accuracy": 0.875, "macro_f1": 0.8}
    assert "| accuracy | 0.8750 |" in card.text and "- augmentation: gain 6 dB" in card.text
    assert "![learning_curve](learning_curve.png)" in card.text and "trained from scratch" in card.text


@pytest.mark.parametrize("padding_mode", ["max_length", "longest"])
def test_model_card_shows_the_padding_mode(tmp_path, padding_mode):
    path = write_model_card(str(tmp_path), "me/digits", "local/folder", {"eval_accuracy": 0.9}, ["a", "b"], {},
                            padding_mode=padding_mode)
    assert f"Padding mode: `{padding_mode}`" in ModelCard.load(path).text
