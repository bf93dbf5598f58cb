from pathlib import Path

import numpy as np
import pytest
from conftest import load_benchmark

from ser_core.labels import EMOTIONS, VALENCE_AROUSAL, parse_ravdess_name, valence_arousal
from ser_core.metrics import classification_metrics, summarize, unweighted_average_recall


def test_metrics_on_hand_checked_example():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    m = classification_metrics(y_true, y_pred)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["uar"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    # precision: 1/2, 2/3, 1; F1: 0.5, 0.8, 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["per_class"]["neutral"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["calm"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["sad"]["support"] == 0
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (8, 8) and cm[0, 1] == 1 and cm[2, 0] == 1 and cm.trace() == 4


def test_uar_differs_from_accuracy_on_imbalanced_data():
    y_true = [0] * 8 + [1] * 2
    y_pred = [0] * 10
    assert unweighted_average_recall(y_true, y_pred) == pytest.approx(0.5)
    assert classification_metrics(y_true, y_pred)["accuracy"] == pytest.approx(0.8)


def test_summarize_mean_and_sample_sd():
    s = summarize([0.5, 0.7])
    assert s["mean"] == pytest.approx(0.6) and s["sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1)) and s["n"] == 2


def test_parse_ravdess_name():
    n = parse_ravdess_name("speech/Actor_07/03-01-05-02-01-02-07.flac")
    assert (n.vocal_channel, n.emotion, n.intensity, n.statement, n.repetition, n.actor) == (
        "speech", "angry", "strong", 1, 2, 7)
    with pytest.raises(ValueError):
        parse_ravdess_name("call_0001.wav")


def test_valence_arousal_mapping():
    one_hot = np.eye(8)
    va = valence_arousal(one_hot)
    for i, e in enumerate(EMOTIONS):
        assert tuple(va[i]) == pytest.approx(VALENCE_AROUSAL[e])
    mixed = valence_arousal(np.array([0.5, 0, 0.5, 0, 0, 0, 0, 0]))
    assert mixed == pytest.approx([0.4, 0.25])
    assert np.all(np.abs(va) <= 1)


def _ravdess_runs():
    return load_benchmark("ravdess_runs")


def test_scores_split_clean_and_telephone_figures_by_vocal_channel():
    import pandas as pd

    from ser_core.training.cnn_protocols import _scores

    rows = [{"condition": c, "vocal_channel": v, "true": "sad", "pred": p, "true_intensity": "normal", "pred_intensity": "normal"}
            for c in ("clean", "telephone") for v, p in (("speech", "sad"), ("song", "calm"))]
    scores = _scores(pd.DataFrame(rows))
    assert set(scores) == {"all", "speech", "song", "telephone", "telephone_speech", "telephone_song"}
    assert scores["telephone_speech"]["accuracy"] == 1.0 and scores["telephone_song"]["accuracy"] == 0.0
    assert scores["telephone"]["accuracy"] == 0.5


def test_parallel_run_trains_each_fold_in_its_own_process_then_joins_them(tmp_path, monkeypatch):
    rr = _ravdess_runs()
    launched, joined = [], []

    class Process:  # stands in for `ser train --folds K --out PARTS/fold_K`; fold 3 fails when asked to
        def __init__(self, argv, **_):
            out, fold = Path(argv[argv.index("--out") + 1]), argv[argv.index("--folds") + 1]
            launched.append(fold)
            (out / f"fold_{fold}").mkdir(parents=True)
            (out / f"fold_{fold}" / "fold.json").write_text("{}")
            (out / "config.json").write_text('{"same": "recipe"}')
            (out / "command.txt").write_text(f"ser train --folds {fold}\n")
            self.status = 1 if fold == "3" and fail else 0

        def wait(self):
            return self.status

    monkeypatch.setattr(rr.subprocess, "Popen", Process)
    monkeypatch.setattr(rr, "run", lambda names, runs, folds, resume: joined.append((names, folds, resume)))
    name = next(iter(rr.recipes()))
    fail = False
    rr.run_parallel(name, tmp_path, "1,2")
    assert launched == ["1", "2"] and joined == [([name], "1,2", True)]
    run = tmp_path / name
    assert sorted(p.name for p in run.iterdir()) == ["command.txt", "config.json", "fold_1", "fold_2"]
    assert (run / "command.txt").read_text() == "ser train --folds 1\nser train --folds 2\n"
    fail = True
    with pytest.raises(SystemExit, match=r"folds \['3'\] failed"):
        rr.run_parallel(name, tmp_path / "other", "3")
    assert len(joined) == 1 and not (tmp_path / "other" / name).exists()
