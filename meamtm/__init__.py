"""MEAMTM: an Audio Spectrogram Transformer that takes raw waveforms (its log-mel frontend is inside the model).

Importing the package registers the classes with the transformers Auto classes under model_type "meamtm",
and marks them for `auto_map`, so saved checkpoints also load with `trust_remote_code=True` where
`meamtm` is not installed.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
)

from .configuration_meamtm import MeamtmConfig
from .feature_extraction_meamtm import MeamtmFeatureExtractor
from .frontend_meamtm import MeamtmFrontend
from .modeling_meamtm import MeamtmForAudioClassification, MeamtmModel, MeamtmPreTrainedModel
from .inference.pipeline import MeamtmAudioClassificationPipeline


__version__ = "0.2.0"

AutoConfig.register(MeamtmConfig.model_type, MeamtmConfig, exist_ok=True)
AutoModel.register(MeamtmConfig, MeamtmModel, exist_ok=True)
AutoModelForAudioClassification.register(MeamtmConfig, MeamtmForAudioClassification, exist_ok=True)
AutoFeatureExtractor.register(MeamtmConfig, MeamtmFeatureExtractor, exist_ok=True)

MeamtmConfig.register_for_auto_class()
MeamtmModel.register_for_auto_class("AutoModel")
MeamtmForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")
MeamtmFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = [
    "MeamtmAudioClassificationPipeline",
    "MeamtmConfig",
    "MeamtmFeatureExtractor",
    "MeamtmForAudioClassification",
    "MeamtmFrontend",
    "MeamtmModel",
    "MeamtmPreTrainedModel",
]
