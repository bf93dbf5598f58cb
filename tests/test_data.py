import numpy as np

from ser_core.evaluation import read_labelled_manifest
from ser_core.training.data import fold_splits, ravdess_manifest, seed_split


def test_folds_are_speaker_independent(corpus_root):
    df = ravdess_manifest(corpus_root)
    assert len(df) == 2452
    seen_test = set()
    for s in fold_splits(df):
        actors = lambda ix: set(df["actor"].iloc[ix])  # noqa: E731
        assert not actors(s.test) & actors(s.train)
        assert not actors(s.val) & (actors(s.train) | actors(s.test))
        assert len(actors(s.test)) == 4 and len(actors(s.val)) == 2
        assert set(df["sex"].iloc[s.val]) == {"female", "male"}
        assert len(s.train) + len(s.val) + len(s.test) == len(df)
        seen_test |= actors(s.test)
    assert seen_test == set(range(1, 25))


def test_seed_split_is_last_20_percent_and_speaker_independent(corpus_root):
    df = ravdess_manifest(corpus_root)
    speech = df[df["vocal_channel"] == "speech"].reset_index(drop=True)
    s = seed_split(speech)
    assert len(s.test) == 288
    assert set(speech["actor"].iloc[s.test]) == {20, 21, 22, 23, 24}
    assert not set(speech["actor"].iloc[s.train]) & {20, 21, 22, 23, 24}
    both = seed_split(df)
    assert len(both.test) == round(0.2 * len(df))
    assert set(df["vocal_channel"].iloc[both.test]) == {"speech"}


def test_labelled_manifest_resolves_relative_paths(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\na.wav,happy\n/abs/b.wav,sad\n")
    df = read_labelled_manifest(csv)
    assert df["path"][0] == str((tmp_path / "a.wav").resolve()) and df["path"][1] == "/abs/b.wav"
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\na.wav,bored\n")
    try:
        read_labelled_manifest(bad)
    except ValueError as exc:
        assert "bored" in str(exc)
    else:
        raise AssertionError("unknown label accepted")
    assert np.all(df.columns == ["path", "label"])


