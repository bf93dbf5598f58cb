"""Configuration objects, one per concern, each serialisable to JSON.

The same JSON is saved beside every trained model so that training and serving
cannot disagree about how audio becomes model input.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="_JsonConfig")


def default_cache_dir() -> Path:
    """Where ser keeps what it computes once (encoder states of training clips, CNN features,
    the quantised encoder): $SER_CACHE_DIR, else ~/.cache/ser.

    Returns
    -------
    Path
        The cache folder (not created here).
    """
    return Path(os.environ.get("SER_CACHE_DIR", Path.home() / ".cache" / "ser"))


class _JsonConfig:
    """Mixin: dict/JSON round trip and a stable content hash."""

    # fields added after configs were first saved, with the values they had before they existed
    ADDED_LATER: ClassVar[dict[str, Any]] = {}
    # fields removed since, with the only value a saved config may still hold for them
    REMOVED: ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (tuples stay tuples).

        Returns
        -------
        dict of str to Any
        """
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> str:
        """`to_dict` as JSON, keys sorted, indented by 2.

        Returns
        -------
        str
        """
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """A config from field values (lists become tuples); missing fields take the defaults.

        Parameters
        ----------
        data : dict of str to Any
            Field values, e.g. from `to_dict` or JSON.

        Returns
        -------
        config : an instance of the class

        Raises
        ------
        ValueError
            An unknown field, or a value the class refuses.
        """
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_saved(cls: type[T], data: dict[str, Any]) -> T:
        """A config saved by `to_dict` (in a bundle or run): the fields it predates take the
        values they had before they existed, not today's defaults, so it reads as it ran;
        fields removed since are dropped where they hold the value that left them unused.

        Parameters
        ----------
        data : dict of str to Any
            The saved fields.

        Returns
        -------
        config : an instance of the class

        Raises
        ------
        ValueError
            A removed field at any other value, an unknown field, or a value the class refuses.
        """
        data = dict(data)
        for name, neutral in cls.REMOVED.items():
            if name in data:
                value = data.pop(name)
                if value != neutral and not (isinstance(value, list) and tuple(value) == neutral):
                    raise ValueError(f"this {cls.__name__} was saved with {name}={value!r}, an option this "
                                     f"version no longer has (only {neutral!r} can be read)")
        return cls.from_dict({**cls.ADDED_LATER, **data})

    def digest(self) -> str:
        """Short hash of the configuration, used as a cache key.

        Returns
        -------
        str
            The first 16 hex digits of the sha256 of `to_json`.
        """
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FeatureConfig(_JsonConfig):
    """How a waveform becomes the models' inputs.

    Defaults follow the study where it was explicit (30 dB trim, 40 MFCC x 128 frames,
    edge padding) and use 64 mel bands for the deep model's cube (see docs/RESULTS.md).
    Call audio is noisy: the trim also drops what is less than 10 dB above the recording's
    noise floor (`trim_noise_margin_db`, the default since 2026-11-26; 0 before).
    """

    ADDED_LATER: ClassVar[dict[str, Any]] = {"trim_noise_margin_db": 0.0, "spectrogram_fmax": None}
    REMOVED: ClassVar[dict[str, Any]] = {"speaker_norm": False}

    sample_rate: int = 16000
    trim_db: float = 30.0           # silence threshold below the loudest frame
    trim_noise_margin_db: float = 10.0  # >0: also trim what is not this far above the noise floor
    min_duration_s: float = 0.25    # shorter speech after trimming is rejected
    normalize: str = "peak"         # "peak", "rms" or "none"
    preemphasis: float = 0.97       # 0 disables the pre-emphasis filter
    n_fft: int = 1024
    hop_length: int = 256
    fmin: float = 50.0
    fmax: float | None = None       # None: Nyquist
    spectrogram_fmax: float | None = None  # None: spectrogram channel on linear bands over 0–Nyquist (the
                                    # study); else over fmin–this at STFT resolution (voice harmonics resolved)
    n_mfcc: int = 40
    mfcc_frames: int = 128
    n_mels: int = 64                # rows of every cube channel
    frames: int = 128               # columns of every cube channel
    pad_mode: str = "edge"
    standardize: bool = True        # per-utterance, per-channel zero mean / unit variance

    def __post_init__(self) -> None:
        if self.normalize not in ("peak", "rms", "none"):
            raise ValueError(f"normalize must be peak, rms or none, not {self.normalize!r}")
        if not 0.0 <= self.preemphasis < 1.0:
            raise ValueError("preemphasis must be in [0, 1)")
        if self.trim_db <= 0:
            raise ValueError("trim_db must be positive")
        if self.trim_noise_margin_db < 0:
            raise ValueError("trim_noise_margin_db must be >= 0")
        lo, hi = self.spectrogram_bins
        if hi - lo < self.n_mels or hi > self.n_fft // 2 + 1:
            raise ValueError(f"spectrogram_fmax={self.spectrogram_fmax} leaves {hi - lo} STFT bins above fmin "
                             f"for {self.n_mels} rows: raise it, or lower n_mels")

    def extraction_json(self) -> str:
        """JSON of the fields that shape one file's features: the key of the feature cache.
        Fields added later are left out at the values they had before they existed, so caches
        written before them stay valid.

        Returns
        -------
        str
        """
        fields = {k: v for k, v in self.to_dict().items()
                  if not (k in self.ADDED_LATER and v == self.ADDED_LATER[k])}
        return json.dumps(fields, sort_keys=True, indent=2)

    @property
    def spectrogram_bins(self) -> tuple[int, int]:
        """STFT bins [lo, hi) that the spectrogram channel spreads over its `n_mels` rows:
        (0, n_fft // 2 + 1) without `spectrogram_fmax`."""
        if self.spectrogram_fmax is None:
            return 0, self.n_fft // 2 + 1
        hz = self.sample_rate / self.n_fft
        return round(self.fmin / hz), int(self.spectrogram_fmax / hz) + 1

    @property
    def cube_shape(self) -> tuple[int, int, int]:
        """Deep model input of one utterance: (n_mels, frames, 3)."""
        return (self.n_mels, self.frames, 3)

    @property
    def mfcc_shape(self) -> tuple[int, int]:
        """Baseline input of one utterance, time first, coefficients as channels: (mfcc_frames, n_mfcc)."""
        return (self.mfcc_frames, self.n_mfcc)

    @property
    def window_s(self) -> float:
        """Seconds of audio covered by the cube's fixed frame count: frames * hop_length / sample_rate."""
        return self.frames * self.hop_length / self.sample_rate


@dataclass(frozen=True)
class ModelConfig(_JsonConfig):
    """Architecture of either CNN."""

    REMOVED: ClassVar[dict[str, Any]] = {"recurrent_units": 0, "pool_real_frames": False, "residual": False}

    kind: str = "deep"                      # "baseline" (1-D CNN on MFCC) or "deep" (2-D CNN on the cube)
    filters: tuple[int, ...] = (32, 64, 128)
    dense_units: int = 1024
    dropout: float = 0.3
    pooling: str = "stats"                  # "flatten" (the study) or "stats" (mean+max over time)
    context: int = 2                        # baseline: frames of context on each side
    l2: float = 1e-4

    def __post_init__(self) -> None:
        if self.kind not in ("baseline", "deep"):
            raise ValueError(f"kind must be baseline or deep, not {self.kind!r}")
        if self.pooling not in ("flatten", "stats"):
            raise ValueError(f"pooling must be flatten or stats, not {self.pooling!r}")

    @classmethod
    def for_model(cls, kind: str) -> ModelConfig:
        """Default architecture per network: the field defaults (the study's three blocks),
        and for the deep model a fourth block of 256 filters, which gained 3.7 points of
        speech UAR over three on all 6 folds (docs/RESULTS.md, section 1).

        Parameters
        ----------
        kind : {"baseline", "deep"}
            The network.

        Returns
        -------
        ModelConfig

        Raises
        ------
        ValueError
            Another `kind`.
        """
        return cls(kind=kind, filters=(32, 64, 128, 256)) if kind == "deep" else cls(kind=kind)


@dataclass(frozen=True)
class TrainConfig(_JsonConfig):
    """Optimisation and augmentation of either CNN. The field defaults are the baseline's
    recipe; `TrainConfig.for_model` gives each network the recipe it was tuned with."""

    REMOVED: ClassVar[dict[str, Any]] = {
        "freq_warp": 0.0, "crop_prob": 0.0, "crop_min_s": 0.5, "balance_classes": False, "speed_perturb": (),
        "room_augment": False, "babble_augment": False}

    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 12              # early stopping on validation UAR (training actors only);
                                    # 0: train every epoch and keep the last weights
    label_smoothing: float = 0.05
    intensity_weight: float = 0.3
    mixup_alpha: float = 0.2        # 0 disables mixup
    freq_masks: int = 2             # SpecAugment masks per example (0 disables)
    time_masks: int = 2
    max_mask_frac: float = 0.15
    val_actors: int = 2             # held out of the training actors for early stopping
    telephone_augment: bool = False  # a training view through the telephone channel
    noise_augment: bool = False     # a training view in white or pink background noise, 0-20 dB SNR
    codec_augment: bool = False     # a training view coded as MP3 at a random compression level
    ema_momentum: float = 0.0       # >0: validate and keep an exponential moving average of the weights
    seed: int = 0

    @classmethod
    def for_model(cls, kind: str) -> TrainConfig:
        """Default recipe per network (docs/RESULTS.md, section 1): the deep model learns
        slowly under its augmentation, so it gets a longer cosine schedule and keeps the
        moving average of its weights at the last epoch instead of early stopping.

        Parameters
        ----------
        kind : str
            The network: "deep", or anything else for the field defaults.

        Returns
        -------
        TrainConfig
        """
        if kind == "deep":
            return cls(epochs=100, learning_rate=2e-3, patience=0, ema_momentum=0.99)
        return cls()


@dataclass(frozen=True)
class SegmentConfig(_JsonConfig):
    """How a long call recording is cut into model-sized speech segments, per channel."""

    vad_backend: str = "silero"     # voice-activity detector (ser_core.vad): "silero" or "webrtc"
    vad_threshold: float = 0.2      # a region starts at this speech probability, holds down to half of it
    pad_s: float = 0.06             # each speech region widened by this much on both sides
    min_speech_s: float = 0.3
    min_silence_s: float = 0.3      # shorter pauses are bridged
    max_segment_s: float | None = None  # None: the model's segment length; longer turns are cut into equal pieces
    block_s: float = 30.0           # decode this much audio at a time (bounded memory)
    roles: tuple[str, ...] = ("agent", "customer")  # by channel index; mono recordings are "mixed"

    def __post_init__(self) -> None:
        if self.vad_backend not in ("silero", "webrtc"):
            raise ValueError(f"vad_backend must be silero or webrtc, not {self.vad_backend!r}")
        if not 0.0 < self.vad_threshold < 1.0:
            raise ValueError("vad_threshold must be in (0, 1)")


def differing_configs(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Which of the feature/model/train configs saved in two JSON records differ, compared
    as saved config objects (so fields added later, at their earlier values, still match).

    Parameters
    ----------
    a, b : dict of str to Any
        Records with ``feature_config``, ``model_config`` and ``train_config`` (`to_dict`
        output), e.g. a run's config.json and a bundle.json.

    Returns
    -------
    list of str
        The keys whose configs differ, in that order.
    """
    classes = {"feature_config": FeatureConfig, "model_config": ModelConfig, "train_config": TrainConfig}
    return [k for k, cls in classes.items() if cls.from_saved(a[k]) != cls.from_saved(b[k])]
