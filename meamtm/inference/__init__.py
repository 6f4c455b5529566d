"""Using a trained MEAMTM: the audio-classification pipeline (long audio included), the command line, export."""
