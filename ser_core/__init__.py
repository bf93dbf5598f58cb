"""ser_core: speech emotion recognition library (audio front end, features, models, evaluation)."""
from .config import FeatureConfig, ModelConfig, TrainConfig
from .labels import EMOTIONS, INTENSITIES

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "INTENSITIES", "FeatureConfig", "ModelConfig", "TrainConfig", "__version__"]
