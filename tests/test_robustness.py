import numpy as np
import pytest
import soundfile as sf
from conftest import SR, load_benchmark, speechlike


def _robustness():
    return load_benchmark("robustness")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "03-01-05-02-01-01-01.wav"
    sf.write(path, speechlike(2.0, amp=0.3), SR, subtype="PCM_16")
    return path


def test_every_condition_writes_a_readable_file_of_the_clip(clip, tmp_path):
    rob = _robustness()
    original, _ = sf.read(clip, dtype="float32")
    for condition in rob.CONDITIONS:
        out = tmp_path / condition
        out.mkdir()
        (written,) = rob.degrade_files([str(clip)], condition, out)
        y, sr = sf.read(written, dtype="float32")
        assert sr == {"narrowband_8khz": 8000, "wideband_44khz": 44100}.get(condition, SR), condition
        length = float(condition[6:-1]) if condition.startswith("short_") else 2.0
        assert abs(y.size / sr - length) < 0.1, condition
        if condition == "clean":
            np.testing.assert_allclose(y, original, atol=1e-4)
        else:
            assert y.size != original.size or not np.allclose(y, original, atol=1e-4), condition
        if condition == "quiet_-20db":
            assert np.max(np.abs(y)) == pytest.approx(np.max(np.abs(original)) * 10 ** (-1.0), rel=0.01)
        if condition == "dc_offset":
            assert np.mean(y - original) == pytest.approx(0.1 * np.max(np.abs(original)), rel=0.01)
        if condition == "click":
            assert np.max(y) > 0.99 and np.sum(y > 0.99) == 32
        if condition == "clipped_+20db":
            assert np.max(np.abs(y)) > 0.99 and np.mean(np.abs(y) > 0.99) > 0.1


def test_conditions_are_the_training_views_and_reproducible_per_file(clip, tmp_path):
    from ser_core.audio import load_audio
    from ser_core.training.views import View

    rob = _robustness()
    runs = []
    for i in range(2):
        out = tmp_path / str(i)
        out.mkdir()
        runs.append(sf.read(rob.degrade_files([str(clip)], "noise_telephone", out)[0], dtype="float32")[0])
    np.testing.assert_array_equal(runs[0], runs[1])
    y, _ = load_audio(str(clip), sr=None, mono=True)
    expected = np.clip(View(noise=True, telephone=True).apply(y, SR, f"noise_telephone/{clip.name}"), -1, 1)
    np.testing.assert_allclose(runs[0], expected, atol=1 / 32768 + 1e-6)  # the view itself, as 16-bit PCM
