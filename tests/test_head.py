"""The emotion head on the encoder: loss masking, padding invariance, training on both
corpora, and the encoder bundle's round trip with its hash checks."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from ser_core.head import HeadConfig, build_head, masked_emotion_loss, masked_intensity_loss
from ser_core.labels import EMOTIONS
from ser_core.scoring import predict_states
from ser_core.training.corpora import CLASSES, class_mask, load_corpora


@pytest.fixture(scope="module")
def data_root(corpus_root):
    root = corpus_root.parent
    if not (root / "crema_d" / "manifest.csv").exists():
        if os.environ.get("SER_REQUIRE_DATA"):
            pytest.fail("SER_REQUIRE_DATA is set but CREMA-D was not found")
        pytest.skip("CREMA-D not found")
    return root


def test_class_mask_follows_each_corpus():
    m = class_mask(["ravdess", "crema_d"])
    assert m[0].tolist() == [1.0] * 8
    assert [EMOTIONS[j] for j in np.flatnonzero(m[1])] == [e for e in EMOTIONS if e in CLASSES["crema_d"]]
    assert m[1, EMOTIONS.index("calm")] == 0 and m[1, EMOTIONS.index("surprised")] == 0


def test_masked_loss_ignores_classes_the_corpus_lacks():
    import tensorflow as tf

    target = np.eye(8, dtype=np.float32)[[EMOTIONS.index("sad"), EMOTIONS.index("sad")]]
    y_true = np.concatenate([target, class_mask(["crema_d", "ravdess"])], axis=1)
    logits = tf.Variable(np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = masked_emotion_loss(0.1)(tf.constant(y_true), tf.nn.softmax(logits))
        total = tf.reduce_sum(loss)
    grad = tape.gradient(total, logits).numpy()
    calm, surprised = EMOTIONS.index("calm"), EMOTIONS.index("surprised")
    # a CREMA-D clip neither pushes calm/surprised down nor up; a RAVDESS clip does
    assert abs(grad[0, calm]) < 1e-7 and abs(grad[0, surprised]) < 1e-7
    assert grad[1, calm] > 1e-4 and grad[1, surprised] > 1e-4
    # the CREMA-D loss equals the cross-entropy of the softmax restricted to its 6 classes
    keep = class_mask(["crema_d"])[0] > 0
    restricted = tf.nn.softmax(logits.numpy()[0, keep]).numpy()
    smooth = 0.9 * target[0, keep] + 0.1 / keep.sum()
    assert float(loss[0]) == pytest.approx(-(smooth * np.log(restricted)).sum(), rel=1e-5)


def test_intensity_loss_is_zero_where_intensity_is_unknown():
    y_pred = np.array([[0.3, 0.7], [0.3, 0.7]], np.float32)
    y_true = np.array([[1, 0, 0], [1, 0, 1]], np.float32)
    loss = np.asarray(masked_intensity_loss(y_true, y_pred))
    assert loss[0] == 0.0 and loss[1] == pytest.approx(-np.log(0.3), rel=1e-5)


@pytest.mark.parametrize("how", HeadConfig.LAYERS)
def test_head_scores_a_clip_the_same_alone_and_padded_in_a_batch(how):
    cfg = HeadConfig(layers=how, conv_channels=16, attention_units=8, dense_units=16)
    head = build_head(cfg, n_layers=3, width=12, mean=np.full((3, 12), 0.5), variance=np.full((3, 12), 2.0))
    rng = np.random.default_rng(1)
    clips = [rng.standard_normal((3, t, 12)).astype(np.float32) for t in (7, 31, 60, 3)]
    emo_batch, inten_batch = predict_states(head, clips)
    for i, c in enumerate(clips):
        emo, inten = predict_states(head, [c])
        np.testing.assert_allclose(emo_batch[i], emo[0], atol=1e-5)
        np.testing.assert_allclose(inten_batch[i], inten[0], atol=1e-5)
    assert np.allclose(emo_batch.sum(axis=1), 1.0, atol=1e-5)


def test_concatenating_head_projects_every_unit_of_every_layer_and_old_heads_mix_them():
    concat = build_head(HeadConfig(projection=8, conv_channels=8, attention_units=4, dense_units=0), n_layers=3, width=12)
    assert concat.get_layer("projection").kernel.shape == (3 * 12, 8)
    saved = HeadConfig().to_dict()
    for key in ("layers", "input_dropout"):  # a head saved before "concat" existed mixed its layers
        del saved[key]
    old = HeadConfig.from_saved(saved)
    assert (old.layers, old.input_dropout) == ("mix", 0.0) and HeadConfig().layers == "concat"
    mix = build_head(old, n_layers=3, width=12)
    assert mix.get_layer("layer_mix").logits.shape == (3,) and mix.get_layer("projection").kernel.shape == (12, 128)
    with pytest.raises(ValueError, match="layers"):
        HeadConfig(layers="sum")
    with pytest.raises(ValueError, match="projection"):
        HeadConfig(projection=0)


def test_corpora_table_keeps_speakers_apart(data_root):
    df = load_corpora(data_root, ["ravdess", "crema_d"])
    assert set(df["corpus"]) == {"ravdess", "crema_d"}
    assert df["speaker"].nunique() == 24 + 44
    assert set(df.loc[df["corpus"] == "crema_d", "emotion"]) == set(CLASSES["crema_d"])
    assert df["path"].map(os.path.exists).all()


def _smoke_setup(data_root, tmp_path, monkeypatch):
    """Two clips per corpus and class, a fresh cache, a tiny head on the tiny encoder, 2 epochs."""
    from ser_core.training import heads

    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "cache"))
    full = load_corpora(data_root, ["ravdess", "crema_d"])
    few = full.groupby(["corpus", "emotion"], group_keys=False).head(2)
    monkeypatch.setattr(heads, "load_corpora",
                        lambda root, names, channels="speech": few[few["corpus"].isin(names)].reset_index(drop=True))
    cfg = heads.HeadTrainConfig(epochs=2, batch_size=8, views=("clean",))
    head_cfg = HeadConfig(encoder="whisper-tiny.en", conv_channels=32, attention_units=16, dense_units=32)
    return few, cfg, head_cfg


def test_training_smoke_run_on_both_corpora_and_bundle_round_trip(data_root, tmp_path, monkeypatch):
    """A head on a few clips of RAVDESS and CREMA-D (tiny encoder, 2 epochs): the
    protocol runs, writes a bundle, and the bundle scores files as it scored in training."""
    from ser_core.bundle import load_bundle, predict_files
    from ser_core.encoder_bundle import EncoderBundleError, load_encoder_bundle
    from ser_core.training import heads

    few, cfg, head_cfg = _smoke_setup(data_root, tmp_path, monkeypatch)
    out = tmp_path / "run"
    results = heads.run_head_protocol(data_root, out, head_cfg, cfg, corpora=("ravdess", "crema_d"),
                                      protocol="all", command="ser train --model encoder", verbose=0)
    assert results["folds"]["all"]["train_clips"] == len(few)
    meta = json.loads((out / "bundle" / "bundle.json").read_text())
    assert meta["kind"] == "encoder" and meta["encoder"]["name"] == "whisper-tiny.en"
    assert meta["encoder"]["licence"] == "MIT" and meta["encoder"]["precision"] == head_cfg.encoder_precision == "int8"
    assert {c["corpus"] for c in meta["trained_on"]} == {"ravdess", "crema_d"}
    assert [c["commercial_use"] for c in meta["trained_on"]] == ["no", "yes"]

    bundle = load_bundle(out / "bundle")
    assert bundle.encoder.precision == "int8"  # served on the precision it was trained on
    pred = predict_files(bundle, few["path"].tolist()[:4])
    assert pred["error"].isna().all()
    assert np.allclose(pred[list(EMOTIONS)].sum(axis=1), 1.0, atol=1e-4)
    # the bundle scores a file exactly as the cached training states score it
    from ser_core.training.states import corpus_states, load_states, prep_config

    files, _ = corpus_states(few["path"].tolist()[:4], "whisper-tiny.en", prep_config(), precision=head_cfg.encoder_precision)
    emo, _ = bundle.score_states(load_states(files))
    np.testing.assert_allclose(pred[list(EMOTIONS)].to_numpy(), emo, atol=2e-3)

    # hash checks: a changed head, or a head trained on other encoder weights, is refused
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name in ("bundle.json", "head.keras"):
        (tampered / name).write_bytes((out / "bundle" / name).read_bytes())
    meta["encoder"]["sha256"] = "0" * 64
    (tampered / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(EncoderBundleError, match="not the ones this head was trained on"):
        load_encoder_bundle(tampered)
    with open(tampered / "head.keras", "ab") as f:
        f.write(b"x")
    with pytest.raises(EncoderBundleError, match="sha256"):
        load_encoder_bundle(tampered)


def test_a_cross_validation_split_scores_as_ser_evaluate_with_its_bundle(data_root, tmp_path, monkeypatch):
    """One scoring path: a held-out split's figures are reproduced by `ser evaluate` run with
    the split's saved bundle on the same clips (over the same classes)."""
    from ser_core.cli import main
    from ser_core.training import heads

    few, cfg, head_cfg = _smoke_setup(data_root, tmp_path, monkeypatch)
    out = tmp_path / "cross"
    results = heads.run_head_protocol(data_root, out, head_cfg, cfg, corpora=("crema_d",), protocol="cross",
                                      test_corpus="ravdess", test_telephone=False, verbose=0)
    split = results["folds"]["cross_ravdess"]["clean"]
    cv = pd.read_csv(out / "predictions.csv")
    # RAVDESS's calm and surprised clips are not scored by a head that never learned them
    assert set(cv["true"]) == set(results["classes"]) == set(CLASSES["crema_d"])
    manifest = tmp_path / "test.csv"
    cv[["path"]].assign(label=cv["true"]).to_csv(manifest, index=False)
    assert main(["evaluate", "--model", str(out / "cross_ravdess" / "bundle"), "--manifest", str(manifest),
                 "--out", str(tmp_path / "eval"), "--classes", ",".join(results["classes"])]) == 0
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert results["classes"] == list(CLASSES["crema_d"]) or set(results["classes"]) == set(CLASSES["crema_d"])
    assert evaluated["uar"] == pytest.approx(split["uar"], abs=1e-9)
    assert evaluated["accuracy"] == pytest.approx(split["accuracy"], abs=1e-9)
    pred = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    np.testing.assert_allclose(pred[list(EMOTIONS)].to_numpy(), cv[[f"p_{e}" for e in EMOTIONS]].to_numpy(), atol=2e-3)
    # and over all 8 classes, as the job labels: the share the argmax puts outside the scored classes
    full = np.array(EMOTIONS)[cv[[f"p_{e}" for e in EMOTIONS]].to_numpy().argmax(axis=1)]
    assert split["outside_classes"] == pytest.approx(np.mean(~np.isin(full, results["classes"])))
    assert (cv["pred_all"] == full).all() and 0.0 <= split["uar_all_classes"] <= split["uar"] + 1e-9


def test_the_encoder_precision_is_part_of_the_head_and_of_the_states_cache_key():
    from ser_core.training.states import cache_key, prep_config
    from ser_core.training.views import View

    saved = HeadConfig().to_dict()
    del saved["encoder_precision"]  # a head saved before int8 existed was trained on float32 states
    assert HeadConfig.from_saved(saved).encoder_precision == "float32" and HeadConfig().encoder_precision == "int8"
    with pytest.raises(ValueError, match="encoder_precision"):
        HeadConfig(encoder_precision="float16")
    keys = {p: cache_key("0" * 64, prep_config(), View(), p) for p in ("float32", "int8")}
    assert keys["float32"] != keys["int8"]
