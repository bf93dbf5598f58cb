import numpy as np
import pytest
from conftest import SR, speechlike

from ser_core import features as F
from ser_core.training import cnn_features as CF
from ser_core.config import FeatureConfig, ModelConfig


@pytest.fixture(scope="module")
def cfg():
    return FeatureConfig()


@pytest.fixture(scope="module")
def y(cfg):
    return speechlike(1.3)


def test_fix_frames_edge_pads_and_crops():
    x = np.arange(12, dtype=float).reshape(3, 4)
    padded = F.fix_frames(x, 6)
    assert padded.shape == (3, 6)
    np.testing.assert_array_equal(padded[:, 4:], np.repeat(x[:, -1:], 2, axis=1))
    np.testing.assert_array_equal(F.fix_frames(x, 2), x[:, :2])


def test_mfcc_from_the_shared_stft_is_librosas_mfcc_of_the_waveform(cfg, y):
    import librosa

    reference = librosa.feature.mfcc(y=y, sr=cfg.sample_rate, n_mfcc=cfg.n_mfcc, n_fft=cfg.n_fft,
                                     hop_length=cfg.hop_length, fmin=cfg.fmin, fmax=cfg.fmax, n_mels=128)
    np.testing.assert_allclose(F.mfcc(y, cfg), reference, atol=1e-4)
    # one input alone is the same as both computed together
    np.testing.assert_array_equal(F.extract_windows(y, cfg, "mfcc")[0], F.extract(y, cfg).mfcc)
    np.testing.assert_array_equal(F.extract_windows(y, cfg, "cube")[0], F.extract(y, cfg).cube)


def test_each_representation_shape(cfg, y):
    frames = 1 + y.size // cfg.hop_length
    assert F.mfcc(y, cfg).shape == (40, frames)
    assert F.spectrogram(y, cfg).shape == (cfg.n_mels, frames)
    assert F.mel_filterbank(y, cfg).shape == (cfg.n_mels, frames)
    assert F.mel_spectrogram(y, cfg).shape == (cfg.n_mels, frames)


def test_representations_are_distinct_and_sane(cfg, y):
    spec, fbank, mel = F.spectrogram(y, cfg), F.mel_filterbank(y, cfg), F.mel_spectrogram(y, cfg)
    assert mel.max() == pytest.approx(0.0) and mel.min() >= -80.0 - 1e-3
    np.testing.assert_allclose(fbank.mean(axis=1), 0.0, atol=1e-4)
    assert not np.allclose(spec, mel)
    # a 150 Hz harmonic tone: the loudest linear band is a low one
    assert np.argmax(spec.mean(axis=1)) < cfg.n_mels // 8


def test_spectrogram_fmax_resolves_voice_harmonics():
    """With `spectrogram_fmax` the linear channel spans fmin–fmax at STFT resolution: the
    harmonics of a 200 Hz voice stand out from the bands between them; the default bands
    (125 Hz wide) cannot separate them."""
    t = np.arange(SR) / SR
    y = sum(np.sin(2 * np.pi * 200 * k * t) / k for k in range(1, 6)).astype(np.float32)
    fine = FeatureConfig(fmin=300, fmax=3400, spectrogram_fmax=1300)
    lo, hi = fine.spectrogram_bins
    assert hi - lo >= fine.n_mels

    def level(cfg, hz):
        lo, hi = cfg.spectrogram_bins
        row = int((hz * cfg.n_fft / cfg.sample_rate - lo) / (hi - lo) * cfg.n_mels)
        return F.spectrogram(y, cfg)[row].mean()

    assert F.spectrogram(y, fine).shape[0] == fine.n_mels
    assert level(fine, 400) - level(fine, 500) > 20
    assert abs(level(FeatureConfig(), 400) - level(FeatureConfig(), 600)) < 10
    with pytest.raises(ValueError, match="spectrogram_fmax"):
        FeatureConfig(fmin=300, spectrogram_fmax=600)


def test_extract_fixes_lengths_with_edge_padding(cfg, y):
    feats = F.extract(y, cfg)
    assert feats.mfcc.shape == (128, 40) and feats.mfcc.dtype == np.float32
    assert feats.cube.shape == (cfg.n_mels, cfg.frames, 3)
    n = 1 + y.size // cfg.hop_length
    assert n < cfg.frames  # 1.3 s is shorter than the window: the tail is edge padding
    np.testing.assert_array_equal(feats.cube[:, -1], feats.cube[:, n - 1])
    np.testing.assert_array_equal(feats.mfcc[-1], feats.mfcc[n - 1])


def test_extract_crops_long_input(cfg):
    feats = F.extract(speechlike(5.0), cfg)
    assert feats.cube.shape == cfg.cube_shape and feats.mfcc.shape == cfg.mfcc_shape


def test_window_starts_cover_the_utterance():
    assert F.window_starts(100, 128) == [0]
    assert F.window_starts(300, 128) == [0, 64, 128, 172]  # half-overlapping; the last ends at frame 300
    assert F.window_starts(129, 128, overlap=0.0) == [0, 1]


def test_extract_windows_slides_the_input_over_long_utterances(cfg, y):
    short = F.extract_windows(y, cfg, "cube")
    np.testing.assert_array_equal(short, F.extract(y, cfg).cube[None])  # fits one window: extract's input
    long = speechlike(5.0)
    cubes, mfccs = F.extract_windows(long, cfg, "cube"), F.extract_windows(long, cfg, "mfcc")
    n = len(F.window_starts(1 + long.size // cfg.hop_length, cfg.frames))
    assert cubes.shape == (n, *cfg.cube_shape) and mfccs.shape[1:] == cfg.mfcc_shape and n > 2
    np.testing.assert_array_equal(cubes[0], F.extract(long, cfg).cube)
    np.testing.assert_array_equal(cubes[1][:, : cfg.frames // 2], cubes[0][:, cfg.frames // 2 :])  # overlap
    assert not np.allclose(cubes[-1], cubes[0])


def test_study_shape_is_configurable():
    cfg = FeatureConfig(n_mels=128, frames=90)
    assert F.extract(speechlike(2.0), cfg).cube.shape == (128, 90, 3)


def test_extract_corpus_caches_and_records_errors(tmp_path, cfg):
    import soundfile as sf

    good = tmp_path / "good.wav"
    sf.write(good, speechlike(1.0), SR)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR, np.float32), SR)
    cache = tmp_path / "cache"
    first = CF.extract_corpus([good, silent], cfg, cache_dir=cache, n_jobs=1, progress=False)
    assert list(first.errors) == [1] and first.errors[1].startswith("silent")
    assert first.cube.shape == (2, *cfg.cube_shape) and np.abs(first.cube[0]).sum() > 0
    files = list(cache.glob("features-*.npz"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    second = CF.extract_corpus([good, silent], cfg, cache_dir=cache, n_jobs=1, progress=False)
    np.testing.assert_array_equal(first.cube, second.cube)
    assert second.errors == first.errors and files[0].stat().st_mtime_ns == mtime
    CF.extract_corpus([good], FeatureConfig(n_mels=32), cache_dir=cache, n_jobs=1, progress=False)
    assert len(list(cache.glob("features-*.npz"))) == 2  # another config, another cache entry


def test_extract_corpus_caches_each_view_under_its_own_key(tmp_path, cfg):
    import soundfile as sf

    from ser_core.training.views import View

    good = tmp_path / "good.wav"
    sf.write(good, speechlike(1.0), SR)
    view = View(codec=True)
    feats = CF.extract_corpus([good], cfg, cache_dir=tmp_path, n_jobs=1, progress=False, view=view)
    np.testing.assert_array_equal(feats.cube[0], CF.extract_file(good, cfg, view).cube)
    assert len(list(tmp_path.glob("features-*.npz"))) == 1
    CF.extract_corpus([good], cfg, cache_dir=tmp_path, n_jobs=1, progress=False, view=View())
    assert len(list(tmp_path.glob("features-*.npz"))) == 2
    again = CF.extract_corpus([good], cfg, cache_dir=tmp_path, n_jobs=1, progress=False, view=view)
    np.testing.assert_array_equal(again.cube, feats.cube)
    assert len(list(tmp_path.glob("features-*.npz"))) == 2


def test_feature_cache_key_follows_the_extraction_fields(tmp_path, cfg):
    import dataclasses

    assert dataclasses.replace(cfg, n_mels=cfg.n_mels + 1).extraction_json() != cfg.extraction_json()
    # options added after caches existed, at their earlier values, leave the keys unchanged
    plain = dataclasses.replace(cfg, trim_noise_margin_db=0.0)
    assert "spectrogram_fmax" not in plain.extraction_json() and "trim_noise_margin_db" not in plain.extraction_json()
    assert dataclasses.replace(plain, spectrogram_fmax=2000.0).extraction_json() != plain.extraction_json()
    assert cfg.trim_noise_margin_db == 10.0 and cfg.extraction_json() != plain.extraction_json()


def test_saved_configs_read_fields_they_predate_as_they_were():
    """A bundle's config saved before the noise-aware trim existed keeps the plain trim it was
    trained with; a partial config (command line, JSON file) takes today's defaults."""
    saved = FeatureConfig().to_dict()
    del saved["trim_noise_margin_db"], saved["spectrogram_fmax"]
    assert FeatureConfig.from_saved(saved) == FeatureConfig(trim_noise_margin_db=0.0)
    assert FeatureConfig.from_saved(FeatureConfig().to_dict()) == FeatureConfig()
    assert FeatureConfig.from_dict({"n_mels": 32}).trim_noise_margin_db == 10.0
    assert ModelConfig.from_saved(ModelConfig().to_dict()) == ModelConfig()
