import inspect
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, speechlike, tone

from ser_core import audio
from ser_core.config import FeatureConfig
from ser_core.training import views


def test_trim_removes_leading_and_trailing_silence_at_30_db():
    rng = np.random.default_rng(1)
    speech = tone(1.0)  # -6 dBFS peak
    quiet = lambda s, db: (10 ** (db / 20) * 0.5 * rng.standard_normal(int(s * SR))).astype(np.float32)  # noqa: E731
    y = np.concatenate([quiet(0.5, -45), speech, quiet(0.7, -45)])
    trimmed, (start, end) = audio.trim_silence(y, top_db=30)
    hop = 256
    assert abs(start - int(0.5 * SR)) <= 4 * hop
    assert abs(end - int(1.5 * SR)) <= 4 * hop
    assert trimmed.size == end - start


def test_trim_keeps_sound_louder_than_threshold():
    rng = np.random.default_rng(2)
    y = np.concatenate([0.05 * rng.standard_normal(SR // 2).astype(np.float32), tone(1.0)])  # ~-20 dB re. tone
    _, (start, _) = audio.trim_silence(y, top_db=30)
    assert start < 512


def test_trim_threshold_is_configurable():
    rng = np.random.default_rng(3)
    y = np.concatenate([0.02 * rng.standard_normal(SR // 2).astype(np.float32), tone(1.0)])  # ~-28 dB
    _, (start_40, _) = audio.trim_silence(y, top_db=40)
    _, (start_20, _) = audio.trim_silence(y, top_db=20)
    assert start_40 < 512 and start_20 > SR // 2 - 1024


def test_noise_aware_trim_cuts_line_noise_the_plain_trim_keeps():
    rng = np.random.default_rng(4)
    noise = lambda s, std: (std * rng.standard_normal(int(s * SR))).astype(np.float32)  # noqa: E731
    noisy = np.concatenate([noise(0.5, 0.02), tone(1.0) + noise(1.0, 0.02), noise(0.7, 0.02)])  # floor ~-25 dB
    _, (plain_start, plain_end) = audio.trim_silence(noisy, top_db=30)
    assert plain_start < 512 and plain_end > noisy.size - 512  # the noise is within 30 dB: all kept
    _, (start, end) = audio.trim_silence(noisy, top_db=30, noise_margin_db=10)
    assert abs(start - SR // 2) <= 4 * 256 and abs(end - int(1.5 * SR)) <= 4 * 256
    quiet = np.concatenate([noise(0.5, 1e-4), tone(1.0), noise(0.7, 0.003)])  # clean recording: floor far below
    assert audio.trim_silence(quiet, top_db=30, noise_margin_db=10)[1] == audio.trim_silence(quiet, top_db=30)[1]


def test_noise_aware_trim_leaves_a_trimmed_utterance_alone():
    # real speech (the committed RAVDESS clips) trimmed once, then again: its own weak
    # consonants are not a noise floor, so the second pass must not eat onset or ending
    clips = sorted((Path(__file__).parents[1] / "examples" / "clips").glob("*.flac"))
    assert len(clips) >= 10
    for clip in clips:
        y, _ = audio.load_audio(clip, sr=SR)
        once, _ = audio.trim_silence(y, top_db=30, noise_margin_db=10)
        twice, _ = audio.trim_silence(once, top_db=30, noise_margin_db=10)
        assert once.size - twice.size <= 2 * 256, (clip.name, once.size, twice.size)


def test_a_click_louder_than_the_speech_does_not_set_the_trim():
    # a 2 ms full-scale click 0.1 s into each committed clip (its speech peaking at -12 dBFS)
    # must not become the reference that keeps the silence between it and the sentence
    for clip in sorted((Path(__file__).parents[1] / "examples" / "clips").glob("*.flac")):
        y, _ = audio.load_audio(clip, sr=SR)
        y = 0.25 * y / np.max(np.abs(y))
        clicked = y.copy()
        clicked[int(0.1 * SR) : int(0.102 * SR)] = 1.0
        for margin in (0, 10):
            clean = audio.trim_silence(y, top_db=30, noise_margin_db=margin)[1]
            start, end = audio.trim_silence(clicked, top_db=30, noise_margin_db=margin)[1]
            assert abs(start - clean[0]) <= 2 * 256 and abs(end - clean[1]) <= 2 * 256, (clip.name, margin)
    # a short sound that is not an impulse is kept; a file of nothing but a click still trims
    blip = np.concatenate([np.zeros(SR // 2), tone(0.05), np.zeros(SR // 2)]).astype(np.float32)
    assert abs(audio.trim_silence(blip, top_db=30)[1][0] - SR // 2) <= 2 * 256
    only_click = np.zeros(SR, np.float32)
    only_click[SR // 2 : SR // 2 + 32] = 1.0
    assert audio.trim_silence(only_click, top_db=30)[0].size > 0


def test_a_dc_offset_does_not_move_the_trim():
    for clip in sorted((Path(__file__).parents[1] / "examples" / "clips").glob("*.flac")):
        y, _ = audio.load_audio(clip, sr=SR)
        for margin in (0, 10):
            clean = audio.trim_silence(y, top_db=30, noise_margin_db=margin)[1]
            start, end = audio.trim_silence(y + 0.1 * np.max(np.abs(y)), top_db=30, noise_margin_db=margin)[1]
            assert abs(start - clean[0]) <= 2 * 256 and abs(end - clean[1]) <= 2 * 256, (clip.name, margin)
    y = tone(1.0, freq=250.0)  # whole periods in every 1024-sample frame: no offset of its own
    small = y + 1e-4
    assert audio.remove_offset(small) is small  # -74 dB re. the peak: left as it is
    np.testing.assert_allclose(audio.remove_offset(y + 0.05), y, atol=1e-6)


def test_trim_does_not_depend_on_the_recording_level():
    # digital silence around a quiet utterance with soft onsets: the interval kept must be the
    # same at any gain (a quiet line is the same utterance), not read zeros as a noise floor
    fade = np.minimum(1, np.minimum(np.arange(SR), np.arange(SR)[::-1]) / (0.3 * SR)).astype(np.float32)
    y = np.concatenate([np.zeros(SR // 2, np.float32), 0.02 * speechlike(1.0) * fade, np.zeros(SR // 2, np.float32)])
    for margin in (0, 10):
        kept = {db: audio.trim_silence(y * 10 ** (db / 20), top_db=30, noise_margin_db=margin)[1] for db in (0, -15, -25)}
        assert len(set(kept.values())) == 1, (margin, kept)


def test_resample_preserves_duration_and_pitch():
    sr_in = 44100
    t = np.arange(sr_in) / sr_in
    y = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    out = audio.resample(y, sr_in, SR)
    assert out.dtype == np.float32 and abs(out.size - SR) <= 1
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * SR / out.size - 1000) < 2


def test_load_keeps_channels_apart_or_downmixes(tmp_path):
    left, right = tone(0.5, 200), tone(0.5, 300, amp=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 8000)
    y, sr = audio.load_audio(path, mono=False)
    assert sr == 8000 and y.shape == (2, left.size)
    np.testing.assert_allclose(y[0], left, atol=1e-4)
    np.testing.assert_allclose(y[1], right, atol=1e-4)
    mono, _ = audio.load_audio(path, mono=True)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-4)
    up, sr = audio.load_audio(path, sr=SR, mono=False)
    assert sr == SR and up.shape[0] == 2 and abs(up.shape[1] - 2 * left.size) <= 2


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("WAV", "FLOAT")])
def test_load_formats(tmp_path, fmt, subtype):
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, tone(0.5), SR, format=fmt, subtype=subtype)
    y, sr = audio.load_audio(path)
    assert sr == SR and y.ndim == 1 and abs(y.size - SR // 2) < 2000


def test_unreadable_and_unsupported_files(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    text = tmp_path / "notes.mp4"
    text.write_text("not audio at all")
    for p in (corrupt, text, tmp_path / "missing.wav"):
        with pytest.raises(audio.UnreadableAudioError) as info:
            audio.load_audio(p)
        assert info.value.code == "unreadable"


def test_empty_silent_and_too_short(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    with pytest.raises(audio.EmptyAudioError):
        audio.load_audio(empty)
    cfg = FeatureConfig()
    with pytest.raises(audio.SilentAudioError):
        audio.preprocess(np.zeros(SR, np.float32), SR, cfg)
    short = np.concatenate([np.zeros(SR // 2, np.float32), tone(0.05), np.zeros(SR // 2, np.float32)])
    with pytest.raises(audio.TooShortError):
        audio.preprocess(short, SR, cfg)
    assert issubclass(audio.TooShortError, ValueError)


def test_normalisation_and_preemphasis():
    y = tone(0.5, amp=0.1)
    assert np.max(np.abs(audio.normalize(y, "peak"))) == pytest.approx(1.0)
    rms = np.sqrt(np.mean(audio.normalize(y, "rms", target_dbfs=-20) ** 2))
    assert 20 * np.log10(rms) == pytest.approx(-20, abs=0.01)
    np.testing.assert_array_equal(audio.normalize(y, "none"), y)
    emphasised = audio.preemphasis(y, 0.97)
    assert emphasised[1] == pytest.approx(y[1] - 0.97 * y[0], abs=1e-6)
    np.testing.assert_array_equal(audio.preemphasis(y, 0.0), y)


def test_preprocess_resamples_and_trims():
    cfg = FeatureConfig()
    sr = 22050
    y = np.concatenate([np.zeros(sr // 2, np.float32), speechlike(1.0, sr=sr), np.zeros(sr // 2, np.float32)])
    out = audio.preprocess(y, sr, cfg)
    assert out.dtype == np.float32
    assert abs(out.size / cfg.sample_rate - 1.0) < 0.1


def test_speech_intervals_on_known_layout():
    gap = lambda s: np.zeros(int(s * SR), np.float32)  # noqa: E731
    # speech at 0.5-1.5 s and 2.5-3.3 s; a 0.1 s pause inside the second is bridged
    y = np.concatenate([gap(0.5), speechlike(1.0), gap(1.0), speechlike(0.4, seed=1), gap(0.1),
                        speechlike(0.3, seed=2), gap(1.0)])
    iv = audio.speech_intervals(y, SR, min_silence_s=0.3) / SR
    assert iv.shape == (2, 2)
    np.testing.assert_allclose(iv, [[0.5, 1.5], [2.5, 3.3]], atol=0.05)


def test_speech_intervals_cut_long_runs_into_overlapping_windows():
    y = speechlike(10.0)
    iv = audio.speech_intervals(y, SR, max_segment_s=4.0, overlap_s=1.0) / SR
    lengths = iv[:, 1] - iv[:, 0]
    assert np.all(lengths <= 4.0 + 1e-6) and np.all(lengths > 3.9)
    assert iv[0, 0] == pytest.approx(0, abs=0.05) and iv[-1, 1] == pytest.approx(10.0, abs=0.05)
    assert np.all(np.diff(iv[:, 0]) <= 3.0 + 1e-6)  # consecutive windows overlap


def test_speech_intervals_ignore_one_loud_click():
    y = speechlike(3.0, amp=0.05)
    y[SR] = 1.0  # a click 26 dB above the speech
    iv = audio.speech_intervals(y, SR)
    assert (iv[:, 1] - iv[:, 0]).sum() / SR > 2.8


def test_room_reverb_adds_a_decaying_tail_at_the_same_length_and_level():
    click = np.zeros(SR, np.float32)
    click[SR // 10] = 1.0
    wet = views.room_reverb(click, SR, seed=3)
    assert wet.shape == click.shape and wet.dtype == np.float32
    assert np.isclose(np.sqrt(np.mean(wet.astype(np.float64) ** 2)), np.sqrt(np.mean(click.astype(np.float64) ** 2)))
    assert np.abs(wet[: SR // 10]).max() < 1e-6  # nothing before the sound
    starts = range(SR // 10 + 1, SR // 10 + 1 + SR // 5, SR // 20)  # four 50 ms windows after the click
    energy = [np.sum(wet[a : a + SR // 20].astype(np.float64) ** 2) for a in starts]
    assert energy[0] > 0 and all(b < a for a, b in zip(energy, energy[1:]))  # the tail decays
    assert np.array_equal(wet, views.room_reverb(click, SR, seed=3))
    assert not np.array_equal(wet, views.room_reverb(click, SR, seed=4))


def test_noise_is_added_at_the_requested_snr():
    rng = np.random.default_rng(0)
    y, noise = rng.standard_normal(16000).astype(np.float32), rng.standard_normal(16000)
    z = views.mix_at_snr(y, noise, 10)
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean((z - y).astype(np.float64) ** 2))
    assert snr == pytest.approx(10, abs=0.01)


def test_background_noise_is_white_or_pink_within_the_snr_range():
    y = speechlike(1.0)
    power = lambda v: np.mean(np.square(v, dtype=np.float64))  # noqa: E731
    low_share = []
    for seed in range(12):
        noisy = views.background_noise(y, SR, seed=seed, snr_db=(5.0, 15.0))
        assert noisy.shape == y.shape and noisy.dtype == np.float32
        noise = noisy.astype(np.float64) - y
        assert 5.0 - 1e-6 <= 10 * np.log10(power(y) / power(noise)) <= 15.0 + 1e-6
        spec = np.abs(np.fft.rfft(noise)) ** 2
        low_share.append(spec[: spec.size // 8].sum() / spec.sum())  # power share below 1 kHz
    assert min(low_share) < 0.2 and max(low_share) > 0.5  # white (1/8 below 1 kHz) and pink (about 2/3) both drawn
    np.testing.assert_array_equal(views.background_noise(y, SR, seed=3), views.background_noise(y, SR, seed=3))


def test_codec_view_is_seeded_lossy_and_keeps_length():
    y = speechlike(1.0)
    coded = views.lossy_codec(y, SR, seed=3)
    assert coded.shape == y.shape and coded.dtype == np.float32
    np.testing.assert_array_equal(coded, views.lossy_codec(y, SR, seed=3))
    # lossy, not a copy; but aligned with the original (no codec delay), its coding noise 10 dB or more below it
    assert 1e-6 < np.mean((coded - y) ** 2) / np.mean(y**2) < 0.1
    # the whole range of levels the training view draws from is accepted by libsndfile
    for level in inspect.signature(views.lossy_codec).parameters["levels"].default:
        assert views.lossy_codec(y, SR, levels=(level, level)).shape == y.shape


def test_telephone_channel_band_limits_and_keeps_rate():
    rng = np.random.default_rng(0)
    y = (0.3 * rng.standard_normal(SR)).astype(np.float32)  # white noise: energy at all frequencies
    out = audio.telephone_channel(y, SR, snr_db=20.0, seed=1)
    assert out.dtype == np.float32 and abs(out.size - y.size) <= 2
    spectrum = np.abs(np.fft.rfft(out)) ** 2
    freqs = np.fft.rfftfreq(out.size, 1 / SR)
    in_band = spectrum[(freqs > 500) & (freqs < 3000)].mean()
    assert spectrum[freqs > 4500].mean() < 1e-3 * in_band      # nothing above the 8 kHz Nyquist
    assert spectrum[freqs < 100].mean() < 0.05 * in_band       # the 300 Hz high-pass
    np.testing.assert_array_equal(out, audio.telephone_channel(y, SR, seed=1))  # seeded


def test_the_products_telephone_line_is_the_telephone_training_view(tmp_path):
    """`ser evaluate --telephone` (`telephone_line`) scores exactly what the telephone view
    trains and tests on: the same channel, seeded by the file name."""
    cfg = FeatureConfig()
    path = tmp_path / "03-01-05-01-01-01-01.wav"
    sf.write(path, speechlike(1.0), SR)
    y = speechlike(1.0)
    np.testing.assert_array_equal(audio.telephone_line(y, SR, path.name), views.View(telephone=True).apply(y, SR, path.name))
    np.testing.assert_array_equal(audio.load_preprocessed(path, cfg, audio.telephone_line),
                                  views.load_view(path, cfg, views.View(telephone=True)))
    np.testing.assert_array_equal(audio.load_preprocessed(path, cfg), views.load_view(path, cfg))


def test_speech_intervals_ignore_line_noise_between_turns():
    rng = np.random.default_rng(5)
    noise = lambda s: (10 ** (-34 / 20) * rng.standard_normal(int(s * SR))).astype(np.float32)  # noqa: E731
    speech = speechlike(1.5, amp=0.5)  # about 26 dB above the noise: within top_db, yet not speech
    y = np.concatenate([noise(2.0), speech + noise(1.5), noise(3.0)])
    iv = audio.speech_intervals(y, SR) / SR
    assert iv.shape == (1, 2)
    np.testing.assert_allclose(iv[0], [2.0, 3.5], atol=0.05)
