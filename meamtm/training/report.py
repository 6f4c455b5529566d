"""What a training run leaves for people: learning-curve and confusion-matrix PNGs, and the model card.

Plots use matplotlib's file-only back end (no display needed); the model card is a `huggingface_hub.ModelCard`
whose metadata carries the evaluation results in the Hub's `model-index` format.
"""

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(log_history: list[dict], path: str, metric: str | None = None) -> str:
    """Training loss, evaluation loss and (right axis) `eval_<metric>` against the optimizer step, saved as PNG."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry and "step" in entry]
    evaluation = [(entry["step"], entry["eval_loss"]) for entry in log_history if "eval_loss" in entry]
    if train:
        axis.plot(*zip(*train), label="training loss")
    if evaluation:
        axis.plot(*zip(*evaluation), "o-", label="evaluation loss")
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    handles, names = axis.get_legend_handles_labels()
    key = f"eval_{metric}" if metric else None
    scores = [(entry["step"], entry[key]) for entry in log_history if key and key in entry]
    if scores:
        right = axis.twinx()
        right.plot(*zip(*scores), "s--", color="tab:green", label=f"evaluation {metric}")
        right.set_ylabel(metric)
        more_handles, more_names = right.get_legend_handles_labels()
        handles, names = handles + more_handles, names + more_names
    if handles:
        axis.legend(handles, names, loc="best")
    axis.set_title("Learning curve")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_confusion_matrix(references: np.ndarray, predictions: np.ndarray, names: list[str], path: str) -> str:
    """Confusion matrix (rows: true class, columns: predicted class) of a single-label evaluation, saved as PNG."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    size = min(4 + 0.4 * len(names), 30)
    figure, axis = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(
        references, predictions, labels=list(range(len(names))), display_labels=names, ax=axis, colorbar=False,
        xticks_rotation="vertical" if len(names) > 10 else "horizontal",
    )
    axis.set_title("Confusion matrix (evaluation split)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


PADDING_MODE_NOTES = {
    "max_length": [
        "Padding mode: `max_length` (AST's): every clip is padded to the model's window, so a short clip costs as "
        "much as a full one. `from_pretrained(..., padding_mode=\"longest\")` makes a batch cost its longest clip "
        "(outputs on clips shorter than the window change: docs/variable-length.md).",
        "",
    ],
    "longest": [
        "Padding mode: `longest`: a batch costs its longest clip, not the model's window; padded patches are kept "
        "out of attention and pooling, so a clip gives the same output alone or in any batch.",
        "",
    ],
}


def write_model_card(
    output_dir: str,
    model_name: str,
    dataset_name: str,
    results: dict[str, float],
    labels: list[str],
    recipe: dict,
    base_model: str | None = None,
    figures: list[str] = (),
    hub_dataset: bool = False,
    padding_mode: str | None = None,
) -> str:
    """Write `README.md` in `output_dir`: metadata with the results (`model-index`), then what, how, how well.

    `hub_dataset`: `dataset_name` is a Hub data set id (listed in the metadata), not a local path.
    `padding_mode`: the model's `config.padding_mode`, shown under "Use" with what it means for callers.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    task = "audio-classification"
    metric_values = {key.removeprefix("eval_"): value for key, value in results.items() if key.startswith("eval_")}
    speed = ("runtime", "samples_per_second", "steps_per_second", "epoch")
    scores = {k: v for k, v in metric_values.items() if k not in speed}
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=task,
        tags=["audio-classification", "meamtm", "audio-spectrogram-transformer"],
        base_model=base_model,
        datasets=[dataset_name] if hub_dataset else None,
        model_name=model_name,
        eval_results=[
            EvalResult(
                task_type=task, dataset_type=dataset_name, dataset_name=dataset_name, metric_type=key,
                metric_value=float(value),
            )
            for key, value in scores.items()
        ]
        or None,
    )
    lines = [
        f"# {model_name}",
        "",
        "A MEAMTM audio classifier (an Audio Spectrogram Transformer that takes raw waveforms; the log-mel "
        f"frontend is part of the model), {'fine-tuned from ' + base_model if base_model else 'trained from scratch'} "
        f"on {dataset_name}.",
        "",
        "## Results (evaluation split)",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {key} | {value:.4f} |" for key, value in scores.items()],
        "",
        f"Classes ({len(labels)}): {', '.join(labels[:50])}{' ...' if len(labels) > 50 else ''}",
        "",
        "## Training recipe",
        "",
        *[f"- {key}: {value}" for key, value in recipe.items()],
        "",
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        f'classifier = pipeline("audio-classification", model="{model_name}", trust_remote_code=True)',
        'classifier("clip.wav")',
        "```",
        "",
        *(PADDING_MODE_NOTES[padding_mode] if padding_mode else []),
        *[f"![{Path(figure).stem}]({Path(figure).name})" for figure in figures],
    ]
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")
    path = str(Path(output_dir) / "README.md")
    card.save(path)
    return path


def write_run_report(
    trainer,
    metrics: dict,
    prediction,
    labels,
    dataset_name: str,
    recipe: dict,
    base_model: str | None = None,
    hub_dataset: bool = False,
) -> None:
    """Everything a finished run leaves in `trainer.args.output_dir` for people (main process only).

    `eval_results.json` / `all_results.json` and the trainer state, the learning curve, the confusion matrix
    (single-label runs with evaluation data: `prediction` is the `Trainer.predict` output, or `None`), and the
    model card (`write_model_card`) with `recipe` (`{setting: value}`) as its training recipe.
    """
    if not trainer.is_world_process_zero():
        return
    output_dir = trainer.args.output_dir
    trainer.save_metrics("eval", metrics)
    trainer.save_state()
    figures = [plot_learning_curve(trainer.state.log_history, f"{output_dir}/learning_curve.png",
                                   "mAP" if labels.multi_label else "accuracy")]
    if prediction is not None and not labels.multi_label:
        figures.append(plot_confusion_matrix(prediction.label_ids, prediction.predictions.argmax(-1), labels.names,
                                             f"{output_dir}/confusion_matrix.png"))
    write_model_card(output_dir, trainer.args.hub_model_id or Path(output_dir).name, dataset_name, metrics,
                     labels.names, recipe, base_model=base_model, figures=figures, hub_dataset=hub_dataset,
                     padding_mode=getattr(trainer.model.config, "padding_mode", None))


__all__ = ["plot_confusion_matrix", "plot_learning_curve", "write_model_card", "write_run_report"]
