"""The `ser` command-line contract, end to end on a few real RAVDESS clips."""
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ser_core.bundle import BundleError, load_bundle, predict_files
from ser_core.cli import main, parser, train_configs
from ser_core.config import ModelConfig, TrainConfig
from ser_core.labels import EMOTIONS

TINY = ["--feature", "n_mels=24", "--feature", "frames=40", "--feature", "mfcc_frames=40",
        "--arch", "filters=[8, 16]", "--arch", "dense_units=16",
        "--train", "epochs=2", "--train", "batch_size=16", "--train", "patience=1"]



def run_script(script: Path, *args: str) -> str:
    """stdout of a repository script run on this checkout's `ser_core` (not an installed copy)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True, check=True).stdout

@pytest.fixture(scope="module")
def tiny_data(corpus_root, tmp_path_factory):
    """A RAVDESS-shaped data folder: 8 actors of folds 1 and 2, 12 speech clips each (6 emotions)."""
    df = pd.read_csv(corpus_root / "manifest.csv")
    df = df[(df["vocal_channel"] == "speech") & df["fold"].isin([1, 2])]
    df = df.groupby(["actor", "emotion"]).head(2).groupby("actor").head(12).copy()
    df["path"] = [str(corpus_root / p) for p in df["path"]]
    root = tmp_path_factory.mktemp("data") / "ravdess"
    root.mkdir()
    df.to_csv(root / "manifest.csv", index=False)
    return root, df


@pytest.fixture(scope="module")
def trained_bundle(tiny_data, tmp_path_factory, monkeypatch_module):
    root, _ = tiny_data
    out = tmp_path_factory.mktemp("run_all")
    assert main(["train", "--data", str(root), "--model", "deep", "--protocol", "all", "--out", str(out),
                 "--verbose", "0", *TINY]) == 0
    return out / "bundle"


@pytest.fixture(scope="module")
def monkeypatch_module(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("SER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def labelled_csv(tiny_data, tmp_path_factory):
    _, df = tiny_data
    csv = tmp_path_factory.mktemp("manifest") / "test.csv"
    df.head(10)[["path", "emotion"]].rename(columns={"emotion": "label"}).to_csv(csv, index=False)
    return csv


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "ser_core.cli", "--help"], capture_output=True, text=True, check=True)
    for sub in ("plot", "train", "evaluate", "predict"):
        assert sub in out.stdout


def test_train_folds_writes_reports(tiny_data, tmp_path, monkeypatch_module):
    root, _ = tiny_data
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--model", "baseline", "--protocol", "folds", "--test-telephone",
                 "--out", str(out), "--verbose", "0", *TINY, "--train", "telephone_augment=true",
                 "--train", "noise_augment=true", "--train", "codec_augment=true"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["folds"]) == {"fold_1", "fold_2"}
    for key in ("accuracy", "uar", "macro_f1"):
        assert 0.0 <= metrics["mean"]["all"][key]["mean"] <= 1.0
    for fold in ("fold_1", "fold_2"):
        for name in ("curves.png", "history.csv", "confusion_matrix.png", "confusion_matrix_normalized.png",
                     "classification_report.txt", "predictions.csv", "metrics.json"):
            assert (out / fold / name).stat().st_size > 0, name
        history = pd.read_csv(out / fold / "history.csv")
        assert {"emotion_loss", "val_emotion_loss", "emotion_accuracy", "val_emotion_accuracy", "val_uar"} <= set(history)
        test_actors = set(pd.read_csv(out / fold / "predictions.csv")["actor"])
        assert len(test_actors) == 4
    assert "ser train" in (out / "command.txt").read_text()
    assert "fold_1" in (out / "report.md").read_text()
    config = json.loads((out / "config.json").read_text())
    assert config["model_config"]["kind"] == "baseline" and config["train_config"]["codec_augment"] is True
    assert config["train_config"]["ema_momentum"] == TrainConfig().ema_momentum  # the baseline's recipe
    # two training actors' clips, each seen as one of four views (original, telephone, noise, MP3)
    fold = metrics["folds"]["fold_1"]
    assert fold["train_clips"] == 2 * 12 and fold["train_views"] == 4 and fold["test_clips"] == 4 * 12
    assert set(metrics["mean"]) == {"all", "telephone"}
    assert (out / "pooled_telephone" / "confusion_matrix.png").exists()
    assert (out / "fold_1" / "bundle" / "model.keras").exists()
    pred = pd.read_csv(out / "fold_1" / "predictions.csv")
    conditions = pred["condition"].value_counts()
    assert conditions["clean"] == conditions["telephone"] == 4 * 12
    # one scoring path: `ser evaluate` with the split's bundle on its held-out clips gives the split's figures
    for condition, flags in (("clean", []), ("telephone", ["--telephone"])):
        held_out = pred[pred["condition"] == condition]
        manifest = tmp_path / f"held_out_{condition}.csv"
        held_out[["path", "true"]].rename(columns={"true": "label"}).to_csv(manifest, index=False)
        assert main(["evaluate", "--model", str(out / "fold_1" / "bundle"), "--manifest", str(manifest),
                     "--out", str(tmp_path / f"eval_{condition}"), *flags]) == 0
        evaluated = json.loads((tmp_path / f"eval_{condition}" / "metrics.json").read_text())
        split = metrics["folds"]["fold_1"]["all" if condition == "clean" else "telephone"]
        assert evaluated["n"] == split["n"] == 4 * 12
        assert evaluated["uar"] == pytest.approx(split["uar"], abs=1e-9)
        assert evaluated["accuracy"] == pytest.approx(split["accuracy"], abs=1e-9)
    script = Path(__file__).parents[1] / "experiments" / "ravdess_runs.py"
    table = run_script(script, "table", "--runs", str(tmp_path)).splitlines()
    row = next(line for line in table if line.startswith("| run |"))
    assert len(table) == 3 and table[2].count("|") == row.count("|")  # header, rule, one row
    assert f"| 2 | {metrics['mean']['all']['accuracy']['mean']:.3f} ± " in table[2]


def test_every_recipe_pins_every_config_field_and_runs_what_it_reads(tmp_path):
    """A recipe file names every field of today's configs, and its `ser train` command parses
    back into exactly those configs, whatever the defaults."""
    import dataclasses

    from conftest import load_benchmark
    from ser_core.config import FeatureConfig

    runs_module = load_benchmark("ravdess_runs")
    recipes = runs_module.recipes()
    assert {"study_baseline_seed_speech", "study_deep_seed_speech", "cnn_band_all_both", "cnn_wideband_all_speech",
            "baseline_folds_speech", "deep_folds_speech"} <= set(recipes)
    for name, recipe in recipes.items():
        for kind, cls in (("feature", FeatureConfig), ("model", ModelConfig), ("train", TrainConfig)):
            assert set(recipe[f"{kind}_config"]) == {f.name for f in dataclasses.fields(cls)}, (name, kind)
        args = parser().parse_args(runs_module.command(name, tmp_path, None)[1:])
        f, m, t = train_configs(args)
        assert f.to_dict() == FeatureConfig.from_dict(recipe["feature_config"]).to_dict(), name
        assert m == ModelConfig.from_dict(recipe["model_config"]) and t == TrainConfig.from_dict(recipe["train_config"])
        assert (args.model, args.protocol, args.channels, args.test_telephone) == (
            recipe["model"], recipe["protocol"], recipe["channels"], recipe["test_telephone"])
    # the shipped CNN bundle's recipes are its own saved configs
    meta = json.loads((Path(__file__).parents[1] / "ser_core" / "cnn_model" / "bundle.json").read_text())
    assert TrainConfig.from_saved(meta["train_config"]) == TrainConfig.from_dict(recipes["cnn_band_all_both"]["train_config"])


def test_each_network_starts_from_its_own_architecture_and_recipe():
    def configs(*argv):
        return train_configs(parser().parse_args(["train", "--out", "x", *argv]))

    _, deep, deep_train = configs("--model", "deep", "--arch", "dropout=0.1")
    assert deep.filters == (32, 64, 128, 256) and deep.dropout == 0.1 and deep_train == TrainConfig.for_model("deep")
    _, baseline, baseline_train = configs("--model", "baseline")
    assert baseline == ModelConfig(kind="baseline") and baseline_train == TrainConfig()
    assert configs("--model", "deep", "--arch", "filters=[32,64,128]")[1].filters == (32, 64, 128)  # pinned, as older commands do


def test_protocol_all_writes_a_verified_bundle(trained_bundle):
    meta = json.loads((trained_bundle / "bundle.json").read_text())
    assert meta["labels"] == list(EMOTIONS) and "ser train" in meta["training_command"]
    # the deep model starts from its own recipe; command-line settings still win
    deep = TrainConfig.for_model("deep")
    assert meta["train_config"]["ema_momentum"] == deep.ema_momentum > 0
    assert meta["train_config"]["learning_rate"] == deep.learning_rate != TrainConfig().learning_rate
    assert meta["train_config"]["epochs"] == 2
    bundle = load_bundle(trained_bundle)
    assert bundle.feature_config.n_mels == 24 and bundle.model_id == meta["sha256"][:12]
    with zipfile.ZipFile(trained_bundle / "model.keras") as z, z.open("model.weights.h5") as f:
        assert "optimizer" not in h5py.File(io.BytesIO(f.read()))  # inference weights only


def test_tampered_bundle_is_rejected(trained_bundle, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(trained_bundle, copy)
    with open(copy / "model.keras", "ab") as f:
        f.write(b"x")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(copy)


def test_evaluate_writes_metrics_report_and_confusion(trained_bundle, labelled_csv, tmp_path):
    assert main(["evaluate", "--model", str(trained_bundle), "--manifest", str(labelled_csv), "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["n"] == 10 and {"accuracy", "uar", "macro_f1", "per_class", "confusion_matrix"} <= set(m)
    assert np.asarray(m["confusion_matrix"]).sum() == 10
    assert "precision" in (tmp_path / "classification_report.txt").read_text()
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 0
    phone = tmp_path / "phone"
    assert main(["evaluate", "--model", str(trained_bundle), "--manifest", str(labelled_csv), "--out", str(phone),
                 "--telephone"]) == 0
    clean_p = pd.read_csv(tmp_path / "predictions.csv")[list(EMOTIONS)].to_numpy()
    phone_p = pd.read_csv(phone / "predictions.csv")[list(EMOTIONS)].to_numpy()
    assert clean_p.shape == phone_p.shape and not np.allclose(clean_p, phone_p)


def test_predict_rows_per_file_with_errors(trained_bundle, labelled_csv, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"garbage")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    good = pd.read_csv(labelled_csv)["path"][0]
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(trained_bundle), good, str(bad), str(silent), "--out", str(out)]) == 0
    pred = pd.read_csv(out)
    assert list(pred["path"]) == [good, str(bad), str(silent)]
    assert set(EMOTIONS) | {"label", "confidence", "intensity", "valence", "arousal", "error"} <= set(pred)
    assert pred.loc[0, list(EMOTIONS)].sum() == pytest.approx(1.0, abs=1e-4)
    assert pred.loc[0, "label"] in EMOTIONS and pd.isna(pred.loc[0, "error"])
    assert pred.loc[1, "error"].startswith("unreadable") and pred.loc[2, "error"].startswith("silent")
    out2 = tmp_path / "pred2.csv"
    assert main(["predict", "--model", str(trained_bundle), "--manifest", str(labelled_csv), "--out", str(out2)]) == 0
    assert len(pd.read_csv(out2)) == 10


def test_plot_shows_what_each_bundle_reads_with_labelled_axes(labelled_csv, tmp_path, monkeypatch):
    import matplotlib.figure

    audio = pd.read_csv(labelled_csv)["path"][0]
    seen = []  # (axes labels, colour-bar label) of every image saved
    original = matplotlib.figure.Figure.savefig

    def savefig(fig, *a, **k):
        main_ax, *bars = fig.axes
        seen.append((main_ax.get_xlabel(), main_ax.get_ylabel(), bars[0].get_ylabel() if bars else None))
        return original(fig, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    assert main(["plot", audio, "--model", "cnn", "--out", str(tmp_path / "cnn")]) == 0
    for name in ("waveform", "mfcc", "spectrogram", "mel_filterbank", "mel_spectrogram"):
        assert (tmp_path / "cnn" / f"{name}.png").stat().st_size > 1000
    assert main(["plot", audio, "--out", str(tmp_path / "default")]) == 0
    assert sorted(p.name for p in (tmp_path / "default").iterdir()) == ["waveform.png", "whisper_log_mel.png"]
    assert seen[0][:2] == ("Time (s)", "Amplitude (full scale = 1)")
    for xlabel, ylabel, bar in seen[1:5] + seen[6:]:
        assert xlabel == "Time (s)" and ylabel and bar  # every image: time, a frequency or coefficient axis, a unit
    assert [s[1] for s in seen[1:5]] == ["MFCC coefficient index", "Frequency (Hz)", "Hz", "Hz"]


def test_attach_cv_records_matching_runs_only(trained_bundle, tiny_data, tmp_path):
    import shutil

    root, _ = tiny_data
    run = tmp_path / "cv"
    assert main(["train", "--data", str(root), "--model", "deep", "--protocol", "folds", "--folds", "1",
                 "--out", str(run), "--verbose", "0", *TINY]) == 0
    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle, bundle)
    assert main(["attach-cv", str(bundle), str(run)]) == 0
    cv = json.loads((bundle / "bundle.json").read_text())["cross_validation"]
    assert set(cv["folds"]) == {"fold_1"} and "uar" in cv["mean"]["all"] and "--protocol folds" in cv["command"]
    load_bundle(bundle)  # metadata changes leave the weights' hash intact
    config = json.loads((run / "config.json").read_text())
    config["train_config"]["epochs"] = 99
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="train_config"):
        main(["attach-cv", str(bundle), str(run)])


def test_resume_keeps_finished_splits_and_refuses_another_config(tiny_data, tmp_path, monkeypatch_module):
    root, _ = tiny_data
    out = tmp_path / "run"
    args = ["train", "--data", str(root), "--model", "baseline", "--out", str(out), "--verbose", "0", *TINY]
    assert main([*args, "--folds", "1"]) == 0
    first = (out / "fold_1" / "bundle" / "model.keras").stat().st_mtime_ns
    saved = json.loads((out / "config.json").read_text())
    saved["feature_config"]["speaker_norm"] = False  # as written when that option existed: still the same config
    (out / "config.json").write_text(json.dumps(saved))
    fold_json = out / "fold_1" / "fold.json"
    scored = json.loads(fold_json.read_text())
    fold_json.write_text(json.dumps({k: v for k, v in scored.items() if k != "all"}))  # as if scored before "all" existed
    assert main([*args, "--resume"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["folds"]) == {"fold_1", "fold_2"}
    assert metrics["folds"]["fold_1"]["all"] == scored["all"]  # scored again from its predictions
    assert (out / "fold_1" / "bundle" / "model.keras").stat().st_mtime_ns == first  # not trained again
    assert len(pd.read_csv(out / "predictions.csv")) == 2 * 4 * 12
    assert metrics["train_seconds"] == pytest.approx(sum(f["train_seconds"] for f in metrics["folds"].values()), abs=0.2)
    assert len((out / "command.txt").read_text().splitlines()) == 2
    assert "resumed run" in (out / "report.md").read_text()
    with pytest.raises(ValueError, match="another configuration"):
        main([*args, "--resume", "--train", "epochs=3"])


def test_predict_averages_the_windows_of_whole_utterances(labelled_csv, tmp_path):
    """Files longer than the model's input are scored whole, not cropped to their start."""
    from ser_core.audio import load_preprocessed
    from ser_core.bundle import save_bundle
    from ser_core.config import FeatureConfig, ModelConfig
    from ser_core.features import extract_windows
    from ser_core.models import build_model

    fcfg = FeatureConfig(n_mels=24, frames=40, mfcc_frames=40)  # 0.64 s windows: every clip needs several
    mcfg = ModelConfig(filters=(8, 16), dense_units=16)
    bundle = load_bundle(save_bundle(tmp_path / "b", build_model(mcfg, fcfg), feature_cfg=fcfg, model_cfg=mcfg,
                                     train_cfg=TrainConfig(), info={}))
    paths = list(pd.read_csv(labelled_csv)["path"])[:3]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"garbage")
    pred = predict_files(bundle, [paths[0], str(bad), *paths[1:]])
    assert pd.isna(pred.loc[1, "windows"]) and pd.isna(pred.loc[1, "speech_s"]) and pred.loc[1, "error"].startswith("unreadable")
    scored = pred.drop(index=1).reset_index(drop=True)
    for i, p in enumerate(paths):
        y = load_preprocessed(p, fcfg)
        x = extract_windows(y, fcfg, "cube")
        emo, _ = bundle.predict_inputs(x)
        assert scored.loc[i, "windows"] == len(x) > 1 and scored.loc[i, "speech_s"] == pytest.approx(y.size / 16000)
        np.testing.assert_allclose(scored.loc[i, list(EMOTIONS)].to_numpy(float), emo.mean(axis=0), atol=1e-5)
