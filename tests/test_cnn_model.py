"""The study's CNN pair shipped inside the package (`--model cnn`)."""
import json

import pandas as pd
import pytest

from ser_core.bundle import CNN_BUNDLE, MODEL_FILE, combined_id, load_bundle, predict_files
from ser_core.labels import EMOTIONS, parse_ravdess_name

EXAMPLES = CNN_BUNDLE.parents[1] / "examples"


@pytest.fixture(scope="module")
def bundle():
    return load_bundle("cnn")


def test_default_bundle_is_complete_small_and_verified(bundle):
    meta = json.loads((CNN_BUNDLE / "bundle.json").read_text())
    assert (CNN_BUNDLE / MODEL_FILE).stat().st_size < 20 * 2**20
    assert bundle.model_config.kind == "deep" and bundle.labels == EMOTIONS
    assert meta["training_command"].startswith("ser train") and "--protocol all" in meta["training_command"]
    assert bundle.model_id == combined_id(meta["sha256"], meta["wideband"]["sha256"])


def test_default_bundle_carries_a_full_band_companion_trained_on_all_actors(bundle):
    """The telephone-band network scores every recording; the full-band companion joins it
    on wideband audio (README, "The bundled model")."""
    band, full = bundle.feature_config, bundle.wideband.feature_config
    assert (band.fmin, band.fmax, band.spectrogram_fmax) == (300, 3400, 3400)
    assert full.fmax is None and full.spectrogram_fmax is None and full.fmin < 300
    assert (CNN_BUNDLE / "wideband" / MODEL_FILE).stat().st_size < 20 * 2**20
    trained = bundle.wideband.info["trained_on"]
    assert trained["actors"] == list(range(1, 25)) and trained["channels"] == "speech"
    cv = bundle.wideband.info["cross_validation"]
    assert cv["protocol"] == "folds" and cv["channels"] == trained["channels"]


def test_default_model_is_trained_on_all_of_ravdess_and_says_so(bundle):
    """Speech and song of all 24 actors, the example calls' actors included (README)."""
    trained = bundle.info["trained_on"]
    assert trained["channels"] == "both" and trained["actors"] == list(range(1, 25)) and trained["clips"] == 2452
    sources = pd.read_csv(EXAMPLES / "calls" / "truth.csv")["source"]
    assert {parse_ravdess_name(s).actor for s in sources} <= set(trained["actors"])
    cv = bundle.info["cross_validation"]
    assert cv["protocol"] == "folds" and cv["channels"] == trained["channels"]


def test_default_bundle_scores_the_example_clips(bundle):
    manifest = pd.read_csv(EXAMPLES / "clips" / "manifest.csv")
    pred = predict_files(bundle, [str(EXAMPLES / "clips" / p) for p in manifest["path"]])
    assert pred["error"].isna().all() and set(pred["label"]) <= set(EMOTIONS)
    assert pred[list(EMOTIONS)].sum(axis=1).round(4).eq(1.0).all()
