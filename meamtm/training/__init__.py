"""Training MEAMTM with the transformers Trainer: data, waveform augmentation, trainer, metrics, reports, recipes."""
