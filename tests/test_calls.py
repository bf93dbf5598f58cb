import numpy as np
import pytest
import soundfile as sf
from conftest import speechlike

from ser_core.calls import (
    CallInfo,
    open_audio,
    overlap_length,
    role_for,
    scan_speech,
    segment_call,
    summarize_call,
    total_length,
)
from ser_core.config import SegmentConfig
from ser_core.labels import EMOTIONS


def test_block_wise_scan_equals_whole_signal_scan(tmp_path):
    # was: block-wise frame levels == whole-signal levels (the level segmenter, replaced by the VAD in #27)
    from ser_core.vad import speech_probabilities
    sr = 8000
    pauses = (np.arange(int(5.3 * sr)) % sr < 0.7 * sr)[:, None]
    y = np.stack([speechlike(5.3, sr=sr), speechlike(5.3, sr=sr, seed=3) * 0.1], axis=1) * pauses
    path = tmp_path / "x.wav"
    sf.write(path, y, sr, subtype="FLOAT")
    with open(path, "rb") as raw, open_audio(raw) as f:
        probs, frame_s = scan_speech(f, block_s=1.0)
    assert frame_s == 0.032 and probs.shape == (2, -(-y.shape[0] // 256))
    for ch in range(2):
        np.testing.assert_allclose(probs[ch], speech_probabilities(np.ascontiguousarray(y[:, ch]), sr), atol=1e-5)


def test_a_dc_offset_does_not_move_the_speech_regions(tmp_path):
    # an offset of 10 % of the peak reads as a steady floor 10 dB under the speech: the
    # noise margin would then cut the speech itself unless the offset is removed first
    sr = 8000
    rng = np.random.default_rng(0)
    quiet = lambda s: 0.002 * rng.standard_normal(int(s * sr)).astype(np.float32)  # noqa: E731
    y = np.concatenate([quiet(1.0), speechlike(1.5, sr=sr), quiet(1.0), speechlike(1.0, sr=sr, seed=2), quiet(1.0)])
    regions = {}
    for offset in (0.0, 0.05):
        path = tmp_path / f"call_{offset}.wav"
        sf.write(path, y + offset, sr, subtype="FLOAT")
        with open(path, "rb") as raw, open_audio(raw) as f:
            regions[offset] = segment_call(f, SegmentConfig(), max_segment_s=4.0)[1][0]
    assert regions[0.0].shape == (2, 2)
    np.testing.assert_allclose(regions[0.05], regions[0.0], atol=0.05)


def test_interval_arithmetic():
    a = np.array([[0.0, 2.0], [1.0, 3.0], [5.0, 6.0]])
    b = np.array([[2.5, 5.5]])
    assert total_length(a) == pytest.approx(4.0)
    assert overlap_length(a, b) == pytest.approx(1.0)
    assert overlap_length(a, np.zeros((0, 2))) == 0.0


def test_roles():
    assert role_for(0, 1, ("agent", "customer")) == "mixed"
    assert [role_for(c, 3, ("agent", "customer")) for c in range(3)] == ["agent", "customer", None]  # not scored


def _row(role, start, end, emotion, valence):
    probs = {f"p_{e}": float(e == emotion) for e in EMOTIONS}
    return {"role": role, "start_s": start, "end_s": end, "valence": valence, **probs}


def test_call_summary_on_hand_checked_call():
    segments = [
        _row("agent", 0.0, 2.0, "neutral", 0.0),
        _row("customer", 2.0, 4.0, "angry", -0.6),
        _row("customer", 4.0, 5.0, "angry", -0.6),
        _row("customer", 6.0, 8.0, "happy", 0.8),
        _row("agent", 8.0, 9.0, "calm", 0.4),
    ]
    regions = {0: np.array([[0.0, 2.0], [7.5, 9.0]]), 1: np.array([[2.0, 5.0], [6.0, 8.0]])}
    row = summarize_call("c1", "/x/c1.wav", CallInfo(10.0, 8000, 2), segments, regions,
                         roles=("agent", "customer"), model_id="abc", schema_version="1.0")
    assert row["agent_talk_s"] == pytest.approx(3.5) and row["customer_talk_s"] == pytest.approx(5.0)
    assert row["overlap_s"] == pytest.approx(0.5)          # 7.5-8.0
    assert row["silence_s"] == pytest.approx(10.0 - 8.0)   # speech covers 0-5 and 6-9
    assert row["n_segments"] == 5 and row["customer_segments"] == 3 and row["mixed_segments"] is None
    assert row["customer_share_angry"] == pytest.approx(3 / 5) and row["customer_share_happy"] == pytest.approx(2 / 5)
    assert row["agent_share_neutral"] == pytest.approx(2 / 3) and row["mixed_share_angry"] is None
    assert row["customer_dominant_emotion"] == "angry"
    assert row["customer_start_emotion"] == "angry" and row["customer_end_emotion"] == "happy"
    v_mean = (-0.6 * 3 + 0.8 * 2) / 5
    assert row["customer_valence_trend"] == pytest.approx(0.8 - -0.6)
    assert row["satisfaction_proxy"] == pytest.approx(0.5 + 0.25 * v_mean + 0.25 * 0.8)


def test_mono_call_customer_is_mixed_and_no_speech_gives_nulls():
    row = summarize_call("m", "/m.wav", CallInfo(3.0, 16000, 1), [], {0: np.zeros((0, 2))}, roles=("agent", "customer"),
                         model_id="x", schema_version="1.0")
    assert row["customer_role"] is None and row["silence_s"] == pytest.approx(3.0)
    assert row["customer_dominant_emotion"] is None and row["satisfaction_proxy"] is None


def test_report_titles_the_timeline_with_the_calls_date_and_satisfaction_and_explains_the_shading(
        example_calls_output, tmp_path, monkeypatch):
    import matplotlib.figure
    import pandas as pd

    from ser_core.cli import main

    out, _ = example_calls_output
    call = pd.read_parquet(out / "calls").iloc[0]
    texts = []
    original = matplotlib.figure.Figure.savefig

    def savefig(fig, *a, **k):
        texts.extend([fig.axes[0].get_title(), fig.axes[0].get_legend().get_title().get_text()])
        return original(fig, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    png = tmp_path / "call.png"
    assert main(["report", "--output", str(out), "--call", call["call_id"], "--out", str(png)]) == 0
    assert png.stat().st_size > 5000
    assert f"date {call['date']}" in texts[0] and f"satisfaction proxy {call['satisfaction_proxy']:.2f}" in texts[0]
    assert any("shading" in t and "confidence" in t for t in texts[1:])
