"""ser_core: speech emotion recognition library (audio front end, features, models, evaluation)."""
from .vad import preload as _preload_vad

_preload_vad()  # before anything imports TensorFlow (`ser_core.vad.preload`)

from .config import FeatureConfig, ModelConfig, TrainConfig  # noqa: E402
from .labels import EMOTIONS, INTENSITIES  # noqa: E402

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "INTENSITIES", "FeatureConfig", "ModelConfig", "TrainConfig", "__version__"]
