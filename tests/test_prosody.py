import numpy as np
import pytest
from conftest import speechlike, tone

from ser_core.audio import preemphasis
from ser_core.config import FeatureConfig
from ser_core.labels import EMOTIONS
from ser_core.prosody import FUNCTIONAL_NAMES, fit_prosody, functionals, fuse, group_standardize

BAND = FeatureConfig(fmin=300, fmax=3400, spectrogram_fmax=3400)


def named(y: np.ndarray, cfg: FeatureConfig = BAND) -> dict[str, float]:
    return dict(zip(FUNCTIONAL_NAMES, functionals(preemphasis(y, cfg.preemphasis), cfg)))


def test_functionals_are_finite_and_named():
    f = functionals(preemphasis(speechlike(1.2), BAND.preemphasis), BAND)
    assert f.shape == (len(FUNCTIONAL_NAMES),) and f.dtype == np.float32 and np.isfinite(f).all()


def test_pitch_is_tracked_below_the_band():
    """The 120-180 Hz voice lies below the 300 Hz band edge; its harmonics still give its pitch."""
    f = named(speechlike(1.5))
    assert f["f0_st_p50"] == pytest.approx(12 * np.log2(150 / 100), abs=1.5)
    assert 1.0 < f["f0_st_p90"] - f["f0_st_p10"] < 8.0  # the +-30 Hz glide, in semitones


def test_spectral_features_ignore_what_lies_outside_the_band():
    y = speechlike(1.2)
    with_hiss = named(y + tone(1.2, 6000.0, amp=0.3)[: y.size])
    alone = named(y)
    for name in ("centroid_khz_mean", "mfcc1_mean", "level_db_sd"):
        assert with_hiss[name] == pytest.approx(alone[name], rel=0.05, abs=0.05)


def test_group_standardize_per_column_with_constant_columns():
    x = np.column_stack([np.arange(10.0), np.full(10, 3.0)])
    z = group_standardize(x)
    np.testing.assert_allclose(z[:, 0].mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(z[:, 0].std(), 1.0, atol=1e-4)
    np.testing.assert_array_equal(z[:, 1], 0.0)


@pytest.fixture(scope="module")
def toy():
    """Two emotions told apart by one functional, 6 speakers."""
    rng = np.random.default_rng(0)
    n = 240
    y = np.array(["angry", "sad"] * (n // 2))
    z = rng.standard_normal((n, len(FUNCTIONAL_NAMES)))
    z[:, :4] += np.where(y == "angry", 1.5, -1.5)[:, None]
    return z, y, np.repeat(np.arange(6), n // 6)


def test_fit_predicts_held_out_rows(toy):
    z, y, speakers = toy
    model = fit_prosody(z[:180], y[:180], speakers[:180], folds=3)
    p = model.predict_proba(z[180:])
    assert p.shape == (60, len(EMOTIONS)) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert (np.array(EMOTIONS)[p.argmax(axis=1)] == y[180:]).mean() > 0.9
    assert p[:, EMOTIONS.index("happy")].max() < 1e-6  # never trained on: never predicted


def test_arrays_reproduce_sklearn_on_eight_classes():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    y = np.array(EMOTIONS * 30)
    z = rng.standard_normal((y.size, len(FUNCTIONAL_NAMES))) + np.eye(len(EMOTIONS), len(FUNCTIONAL_NAMES))[
        [EMOTIONS.index(e) for e in y]]
    model = fit_prosody(z, y, np.repeat(np.arange(6), y.size // 6), folds=3)
    x = (z - model.mean) / model.sd
    ref = LogisticRegression(C=model.c, max_iter=3000).fit(x, [EMOTIONS.index(e) for e in y])
    np.testing.assert_allclose(model.predict_proba(z), ref.predict_proba(x), atol=1e-5)


def test_fuse_weights_the_prosody_share():
    a, b = np.eye(8, dtype=np.float32)[:1], np.eye(8, dtype=np.float32)[1:2]
    np.testing.assert_allclose(fuse(a, b, 0.25), 0.75 * a + 0.25 * b)


def test_benchmark_groupings_score_every_clip_once_with_the_statistics_they_name():
    """`benchmarks/speaker_prosody.py`: each grouping scores each held-out clip exactly once
    and takes its statistics from the clips it says (same actor, one mood, another actor)."""
    import pandas as pd
    from conftest import load_benchmark

    bench = load_benchmark("speaker_prosody")
    te = pd.DataFrame([(a, e) for a in (1, 2) for e in EMOTIONS for _ in range(4)], columns=["actor", "emotion"])
    te.index = [f"{a}-{e}-{i}" for i, (a, e) in enumerate(zip(te["actor"], te["emotion"]))]
    for mode in bench.MODES:
        groups = bench.stats_groups(te, mode, 10, np.random.default_rng(0))
        scored = np.concatenate([s for s, _ in groups])
        assert sorted(scored) == sorted(te.index), mode
        for s, extra in groups:
            assert te.loc[s, "actor"].nunique() == 1
            mates = te.loc[extra]
            if mode in ("actor", "random", "uniform"):
                assert extra.size == 0
            if mode == "uniform":
                assert te.loc[s, "emotion"].nunique() == 1
            if mode in ("skewed", "mostly"):
                assert set(mates["actor"]) == set(te.loc[s, "actor"]) and len(mates) > 0
                assert mates["emotion"].nunique() == 1 if mode == "mostly" else set(mates["emotion"]) <= {"neutral", "calm"}
            if mode == "two":
                assert set(mates["actor"]).isdisjoint(te.loc[s, "actor"]) and len(mates) == len(s)
