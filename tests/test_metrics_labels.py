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


def test_ensemble_averages_probabilities_of_runs_on_the_same_clips():
    import pandas as pd

    from ser_core.labels import EMOTIONS

    def run(probs_for_true):  # two clips per split, true classes neutral and calm
        rows = []
        for split in ("fold_1", "fold_2"):
            for path, true, p in (("a.wav", "neutral", probs_for_true[0]), ("b.wav", "calm", probs_for_true[1])):
                probs = dict.fromkeys(EMOTIONS, 0.0) | {true: p, "angry": 1 - p}
                rows.append({"split": split, "condition": "clean", "path": f"{split}/{path}", "true": true,
                             **{f"p_{e}": v for e, v in probs.items()}})
        return pd.DataFrame(rows)

    ensemble_scores = _ravdess_runs().ensemble_scores
    # run 1 is sure of clip a (0.9) and wrong on b (0.2); run 2 is wrong on a (0.4) and unsure on b (0.6)
    one, two = run((0.9, 0.2)), run((0.4, 0.6))
    assert ensemble_scores([one])["clean"]["uar"] == [0.5, 0.5]
    assert ensemble_scores([two])["clean"]["uar"] == [0.5, 0.5]
    # averaged: a 0.65 vs angry 0.35 -> right; b 0.4 vs angry 0.6 -> wrong
    assert ensemble_scores([one, two])["clean"]["uar"] == [0.5, 0.5]
    # a third run sure of b tips it: b 0.6 vs angry 0.4 on average -> both right
    assert ensemble_scores([one, two, run((0.5, 1.0))])["clean"]["uar"] == [1.0, 1.0]
    with pytest.raises(ValueError):
        ensemble_scores([one, two.iloc[1:]])


def test_breakdown_by_actor_sex_intensity_and_top2():
    import pandas as pd

    from ser_core.labels import EMOTIONS

    def row(actor, true, intensity, ranked):  # ranked: the predicted classes, most probable first
        probs = dict.fromkeys(EMOTIONS, 0.0) | {ranked[0]: 0.6, ranked[1]: 0.3, ranked[2]: 0.1}
        return {"condition": "clean", "actor": actor, "true": true, "pred": ranked[0], "true_intensity": intensity,
                **{f"p_{e}": v for e, v in probs.items()}}

    pred = pd.DataFrame([
        row(1, "sad", "normal", ("sad", "calm", "angry")),      # male, right
        row(1, "calm", "normal", ("sad", "calm", "angry")),     # male, wrong, second guess right
        row(2, "angry", "strong", ("angry", "sad", "calm")),    # female, right
        row(2, "sad", "strong", ("calm", "angry", "sad")),      # female, wrong, third guess
        {**row(2, "sad", "strong", ("sad", "calm", "angry")), "condition": "telephone"},  # not counted
    ])
    b = _ravdess_runs().breakdown_scores(pred)
    assert b["actor_accuracy"] == {"1": 0.5, "2": 0.5}
    assert b["sex_uar"] == {"female": 0.5, "male": 0.5}  # female: angry 1/1, sad 0/1; male: sad 1/1, calm 0/1
    assert b["intensity_accuracy"] == {"normal": 0.5, "strong": 0.5}
    assert b["top2_accuracy"] == {"all": 0.75}


def test_predictions_of_a_speech_and_song_run_can_be_limited_to_one_vocal_channel(tmp_path):
    import pandas as pd

    (tmp_path / "run").mkdir()
    pd.DataFrame({"path": ["a", "b", "c"], "vocal_channel": ["speech", "song", "speech"]}).to_csv(
        tmp_path / "run" / "predictions.csv", index=False)
    predictions = _ravdess_runs().predictions
    assert list(predictions(tmp_path, "run")["path"]) == ["a", "b", "c"]
    assert list(predictions(tmp_path, "run", "speech")["path"]) == ["a", "c"]


def test_compare_pairs_folds_on_the_chosen_vocal_channel(tmp_path, capsys):
    import pandas as pd

    def run(name, folds):  # one speech and one song clip of class sad per fold: {fold: (speech right, song right)}
        (tmp_path / name).mkdir()
        pd.DataFrame([{"split": f"fold_{n}", "condition": "clean", "vocal_channel": v, "true": "sad",
                       "pred": "sad" if ok else "calm"}
                      for n, oks in folds.items() for v, ok in zip(("speech", "song"), oks)]).to_csv(
            tmp_path / name / "predictions.csv", index=False)

    run("new", {1: (True, False), 2: (True, True)}), run("ref", {1: (False, True)})  # fold 2: new only
    compare = _ravdess_runs().compare
    compare(tmp_path, ["new"], "ref")
    assert "| new | 1 | 1.000 | 1.000 | 0.000 | +1.000 (1 of 1 folds better) |" in capsys.readouterr().out
    compare(tmp_path, ["new"], "ref", vocal_channel="song")
    assert "| new | 1 | 0.000 | 0.000 | 1.000 | -1.000 (0 of 1 folds better) |" in capsys.readouterr().out


def test_an_archived_run_keeps_its_figures_and_predictions_but_no_models(tmp_path):
    import pandas as pd

    run = tmp_path / "runs" / "r"
    (run / "fold_1" / "bundle").mkdir(parents=True)
    (run / "fold_1" / "bundle" / "model.keras").write_bytes(b"weights")
    for f in ("config.json", "metrics.json"):
        (run / f).write_text("{}")
    (run / "command.txt").write_text("ser train\n")
    (run / "report.md").write_text("# r\n")
    pred = pd.DataFrame({"path": ["a", "b"], "vocal_channel": ["speech", "song"]})
    pred.to_csv(run / "predictions.csv", index=False)
    rr = _ravdess_runs()
    rr.archive(tmp_path / "runs", ["r"], tmp_path / "archive")
    kept = sorted(p.name for p in (tmp_path / "archive" / "r").rglob("*"))
    assert kept == ["command.txt", "config.json", "metrics.json", "predictions.csv.gz", "report.md"]
    pd.testing.assert_frame_equal(rr.predictions(tmp_path / "archive", "r"), pred)


def test_confusion_table_pools_clean_clips_with_recall_and_precision():
    import pandas as pd

    pred = pd.DataFrame([{"condition": c, "true": t, "pred": p} for c, t, p in (
        ("clean", "sad", "sad"), ("clean", "sad", "calm"), ("clean", "calm", "calm"), ("telephone", "calm", "sad"))])
    table = _ravdess_runs().confusion_table(pred).splitlines()
    assert table[3] == "| calm | 0 | 1 | 0 | 0 | 0 | 0 | 0 | 0 | 1.00 |"
    assert table[5] == "| sad | 0 | 1 | 0 | 1 | 0 | 0 | 0 | 0 | 0.50 |"
    assert table[-1].startswith("| precision | 0.00 | 0.50 | 0.00 | 1.00 |")


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
    name = next(iter(rr.RECIPES))
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
