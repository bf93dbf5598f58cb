"""A bundle with a wideband companion: routing by the band above a phone line, the pair's
averaged scores in `predict_files` and in the nightly job, and the checks on the pair."""
from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import soundfile as sf
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from pipelines import score_calls as sc
from ser_core.audio import high_band_stats, is_wideband, load_audio, preprocess, telephone_channel
from ser_core.bundle import (
    WIDEBAND_DIR,
    BundleError,
    attach_wideband,
    combined_id,
    load_bundle,
    predict_files,
    read_bundle_inputs,
    save_bundle,
)
from ser_core.config import FeatureConfig, ModelConfig, TrainConfig
from ser_core.models import build_model

CLIPS = sorted((Path(__file__).parents[1] / "examples" / "clips").glob("*.flac"))[:4]
SMALL = {"n_mels": 24, "frames": 64, "mfcc_frames": 64}


def make_bundle(folder: Path, seed: int, **features) -> Path:
    fcfg = FeatureConfig(**{**SMALL, **features})
    mcfg = ModelConfig(filters=(8, 16), dense_units=16)
    import keras

    keras.utils.set_random_seed(seed)
    return save_bundle(folder, build_model(mcfg, fcfg), feature_cfg=fcfg, model_cfg=mcfg, train_cfg=TrainConfig(),
                       info={"training_command": "untrained"})


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pair")
    band = make_bundle(root / "band", 1, fmin=300, fmax=3400, spectrogram_fmax=3400)
    wide = make_bundle(root / "wide", 2)
    attach_wideband(band, wide)
    return band


@pytest.fixture(scope="module")
def narrowband_clips(tmp_path_factory) -> list[Path]:
    """The example clips through the simulated telephone line, stored back at 16 kHz."""
    d = tmp_path_factory.mktemp("narrow")
    out = []
    for p in CLIPS:
        y, sr = load_audio(p)
        out.append(d / p.name)
        sf.write(out[-1], telephone_channel(y, sr), sr)
    return out


def test_wideband_speech_is_told_from_a_phone_line_and_from_a_noise_floor(narrowband_clips):
    """The RAVDESS example clips are quiet (peaks of -23 to -43 dBFS): stored as 16-bit files
    after the telephone channel, their quantisation noise fills the band above the line at
    -30 to -45 dB, but steadily, unlike speech."""
    cfg = FeatureConfig()
    for p, q in zip(CLIPS, narrowband_clips):
        y, sr = load_audio(p)
        wide, line, stored = (preprocess(v, sr, cfg) for v in (y, telephone_channel(y, sr), load_audio(q)[0]))
        assert is_wideband(wide, sr) and not is_wideband(line, sr) and not is_wideband(stored, sr), p.name
        assert high_band_stats(line, sr)[0] < -80 and high_band_stats(stored, sr)[0] > -50, p.name
        assert is_wideband(wide[: int(0.6 * sr)], sr) and not is_wideband(stored[: int(0.6 * sr)], sr), p.name
    assert high_band_stats(np.ones(8000, np.float32), 8000) == (float("-inf"), 0.0)


def test_pair_averages_both_networks_on_wideband_audio_only(pair, narrowband_clips):
    bundle = load_bundle(pair)
    assert bundle.wideband is not None and bundle.model_id == combined_id(bundle.sha256, bundle.wideband.sha256)
    alone = load_bundle(pair)
    alone.wideband = None
    companion = load_bundle(pair / WIDEBAND_DIR)
    labels = list(bundle.labels)
    both, band, full = (predict_files(b, CLIPS)[labels].to_numpy() for b in (bundle, alone, companion))
    np.testing.assert_allclose(both, (band + full) / 2, atol=1e-5)
    assert not np.allclose(both, band, atol=1e-3)
    np.testing.assert_allclose(predict_files(bundle, narrowband_clips)[labels].to_numpy(),
                               predict_files(alone, narrowband_clips)[labels].to_numpy(), atol=1e-6)
    # the simulated channel of `--telephone` is narrowband too
    np.testing.assert_allclose(predict_files(bundle, CLIPS, telephone=True)[labels].to_numpy(),
                               predict_files(alone, CLIPS, telephone=True)[labels].to_numpy(), atol=1e-6)


def test_job_routes_segments_as_predict_files_does(pair, narrowband_clips):
    bundle = load_bundle(pair)
    inputs, model_id = read_bundle_inputs(pair)
    assert model_id == bundle.model_id
    cfg = inputs.feature_config
    waves = [preprocess(load_audio(p)[0], 16000, cfg)[: int(cfg.window_s * 16000)] for p in (CLIPS[0], narrowband_clips[0])]
    keys = [sc.SegmentKey("c", "/x/c.wav", 0, "agent", i, 0.0, 1.0, -20.0) for i in range(2)]
    expected = bundle.predict_routed([inputs.segment(w) for w in waves])[0]
    assert [x is None for x in inputs.segment(waves[0])] == [False, False]
    assert [x is None for x in inputs.segment(waves[1])] == [False, True]

    def check(rows):
        got = {r["segment_index"]: [r[f"p_{e}"] for e in bundle.labels] for r in rows}
        for i in range(2):
            np.testing.assert_allclose(got[i], expected[i], atol=1e-5)
        assert {r["segment_index"]: r["wideband"] for r in rows} == {0: True, 1: False}
        assert {r["model_id"] for r in rows} == {model_id}

    with TestPipeline() as p:
        rows = (p | beam.Create(list(zip(keys, waves)))
                | sc.ExtractFeatures(inputs)
                | sc.RunInference(sc.KeyedModelHandler(sc.BundleModelHandler(str(pair), 4)))
                | beam.MapTuple(sc.segment_row))
        assert_that(rows, check)


def test_companion_must_share_preprocessing_and_windows(tmp_path):
    band = make_bundle(tmp_path / "band", 1, fmin=300, fmax=3400)
    for i, (field, value) in enumerate([("hop_length", 128), ("trim_noise_margin_db", 0.0)]):
        other = make_bundle(tmp_path / f"other{i}", 2, **{field: value})
        with pytest.raises(BundleError, match=field):
            attach_wideband(band, other)
    assert WIDEBAND_DIR not in json.loads((band / "bundle.json").read_text())


def test_a_tampered_companion_is_refused(tmp_path):
    band = make_bundle(tmp_path / "band", 1, fmin=300, fmax=3400)
    attach_wideband(band, make_bundle(tmp_path / "wide", 2))
    meta_path = band / WIDEBAND_DIR / "bundle.json"
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(band)


def test_a_swapped_companion_is_refused(tmp_path):
    band = make_bundle(tmp_path / "band", 1, fmin=300, fmax=3400)
    attach_wideband(band, make_bundle(tmp_path / "wide", 2))
    other = make_bundle(tmp_path / "other", 3)
    for name in ("model.keras", "bundle.json"):
        (band / WIDEBAND_DIR / name).write_bytes((other / name).read_bytes())
    with pytest.raises(BundleError, match="not the one recorded"):
        load_bundle(band)
    with pytest.raises(BundleError, match="not the one recorded"):
        read_bundle_inputs(band)


def test_cli_attaches_a_companion_and_predicts_with_the_pair(tmp_path, capsys):
    import pandas as pd

    from ser_core.cli import main

    band = make_bundle(tmp_path / "band", 1, fmin=300, fmax=3400)
    assert main(["attach-wideband", str(band), str(make_bundle(tmp_path / "wide", 2))]) == 0
    pair_id = load_bundle(band).model_id
    assert pair_id in capsys.readouterr().out
    assert main(["predict", "--model", str(band), str(CLIPS[0]), "--out", str(tmp_path / "p.csv")]) == 0
    out = pd.read_csv(tmp_path / "p.csv")
    assert len(out) == 1 and out["error"].isna().all()


def test_ravdess_runs_pair_attaches_each_folds_companion(tmp_path):
    """`experiments/ravdess_runs.py pair`: fold K of the full-band run rides with fold K of the
    telephone-band run, in a folder of its own; a fold missing from either run is skipped."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ravdess_runs", Path(__file__).parents[1] / "experiments" / "ravdess_runs.py")
    runs_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runs_module)
    runs = tmp_path / "runs"
    for k in (1, 2):
        make_bundle(runs / "band" / f"fold_{k}" / "bundle", k, fmin=300, fmax=3400, spectrogram_fmax=3400)
    make_bundle(runs / "wide" / "fold_2" / "bundle", 7)
    out = runs_module.pair(runs, "band", "wide", out=tmp_path / "paired")
    assert out == tmp_path / "paired" and not (out / "fold_1").exists()
    paired = load_bundle(out / "fold_2" / "bundle")
    assert len(paired.networks) == 2 and not (runs / "band" / "fold_2" / "bundle" / WIDEBAND_DIR).exists()
