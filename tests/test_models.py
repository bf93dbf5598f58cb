import numpy as np
import pytest

from ser_core.config import FeatureConfig, ModelConfig, TrainConfig
from ser_core.models import AttentiveStatsPooling, FrameContext, build_model


@pytest.mark.parametrize("kind,pooling", [("baseline", "stats"), ("deep", "stats"), ("deep", "flatten"),
                                          ("baseline", "attention"), ("deep", "attention")])
def test_build_shapes(kind, pooling):
    fcfg = FeatureConfig(n_mels=32, frames=40, mfcc_frames=40)
    model = build_model(ModelConfig(kind=kind, pooling=pooling, filters=(8, 16), dense_units=32), fcfg)
    shape = fcfg.mfcc_shape if kind == "baseline" else fcfg.cube_shape
    assert tuple(model.input.shape[1:]) == shape
    out = model(np.random.default_rng(0).standard_normal((3, *shape)).astype("float32"))
    assert tuple(out["emotion"].shape) == (3, 8) and tuple(out["intensity"].shape) == (3, 2)
    np.testing.assert_allclose(np.asarray(out["emotion"]).sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kind", ["baseline", "deep"])
def test_recurrent_layer_reads_the_time_sequence(kind, tmp_path):
    fcfg = FeatureConfig(n_mels=16, frames=32, mfcc_frames=32)
    mcfg = ModelConfig(kind=kind, filters=(4, 8), dense_units=8, recurrent_units=6)
    model = build_model(mcfg, fcfg)
    assert tuple(model.get_layer("gru").output.shape[1:]) == (32 // 4, 12)  # time after two poolings; both ways
    _assert_bundle_round_trip(model, fcfg, mcfg, tmp_path)
    with pytest.raises(ValueError, match="recurrent_units"):
        ModelConfig(pooling="flatten", recurrent_units=6)


@pytest.mark.parametrize("kind", ["baseline", "deep"])
def test_residual_blocks_add_a_projected_shortcut_around_two_convolutions(kind, tmp_path):
    fcfg = FeatureConfig(n_mels=16, frames=32, mfcc_frames=32)
    mcfg = ModelConfig(kind=kind, filters=(4, 8), dense_units=8, residual=True)
    model = build_model(mcfg, fcfg)
    convs = {layer.name: layer for layer in model.layers if layer.name.startswith(("conv", "shortcut"))}
    assert sorted(convs) == ["conv0", "conv0b", "conv1", "conv1b", "shortcut0", "shortcut1"]
    assert convs["shortcut1"].kernel_size == (1,) * len(convs["conv1"].kernel_size)
    assert sum(layer.__class__.__name__ == "Add" for layer in model.layers) == 2
    _assert_bundle_round_trip(model, fcfg, mcfg, tmp_path)


def test_study_deep_model_has_three_blocks_and_dense_1024():
    model = build_model(ModelConfig(kind="deep", pooling="flatten"), FeatureConfig(n_mels=128, frames=90))
    convs = [layer for layer in model.layers if layer.name.startswith("conv")]
    assert [c.filters for c in convs] == [32, 64, 128]
    assert model.get_layer("dense").units == 1024
    assert sum(1 for layer in model.layers if "batch_normalization" in layer.name) == 3


def test_frame_context_splices_neighbours_with_edge_padding():
    x = np.arange(5, dtype="float32").reshape(1, 5, 1)
    out = np.asarray(FrameContext(1)(x))
    assert out.shape == (1, 5, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 2, 3])  # previous frame
    np.testing.assert_array_equal(out[0, :, 1], [0, 1, 2, 3, 4])  # the frame itself
    np.testing.assert_array_equal(out[0, :, 2], [1, 2, 3, 4, 4])  # next frame


def test_attentive_pooling_weights_frames_by_learned_scores(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 7, 3)).astype("float32")
    pool = AttentiveStatsPooling(units=4)
    pool.build(x.shape)
    pool.score.kernel.assign(np.zeros((4, 1), "float32"))  # equal scores: plain mean and sd over time
    out = np.asarray(pool(x))
    np.testing.assert_allclose(out[:, :3], x.mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(out[:, 3:], x.std(axis=1), atol=1e-3)
    # score = 100 * tanh(feature 0): the one frame with a high feature 0 takes all the weight
    hidden = np.zeros((3, 4), "float32")
    hidden[0, 0] = 1.0
    pool.hidden.kernel.assign(hidden)
    pool.score.kernel.assign(np.array([[100.0], [0.0], [0.0], [0.0]], "float32"))
    marked = x.copy()
    marked[:, :, 0] = -5.0
    marked[:, 2, 0] = 5.0
    out = np.asarray(pool(marked))
    np.testing.assert_allclose(out[:, :3], marked[:, 2], atol=1e-3)
    np.testing.assert_allclose(out[:, 3:], 0.0, atol=1e-2)
    assert pool.compute_output_shape((None, 7, 3)) == (None, 6)
    # survives a bundle round trip (registered for Keras safe mode)
    fcfg, mcfg = FeatureConfig(n_mels=16, frames=24), ModelConfig(pooling="attention", filters=(4, 8), dense_units=8)
    _assert_bundle_round_trip(build_model(mcfg, fcfg), fcfg, mcfg, tmp_path)


def test_pooling_over_real_frames_ignores_the_edge_padding(tmp_path):
    from ser_core.models import MaskedStatsPooling, RealFrames

    rng = np.random.default_rng(0)
    real = rng.standard_normal((3, 16, 48, 3)).astype("float32")
    cubes = np.stack([np.pad(real[i, :, :n], [(0, 0), (0, 48 - n), (0, 0)], mode="edge")
                      for i, n in enumerate((48, 30, 7))])
    np.testing.assert_array_equal(np.asarray(RealFrames()(cubes)).sum(axis=1), [48, 30, 7])
    # pooled steps (6 here, 8 input frames each) that see no real frame do not count
    steps = rng.standard_normal((3, 6, 4)).astype("float32")
    mask = np.asarray(RealFrames()(cubes))
    out = np.asarray(MaskedStatsPooling()([steps, mask]))
    for i, seen in enumerate((6, 4, 1)):  # ceil(48 / 8), ceil(30 / 8), ceil(7 / 8)
        np.testing.assert_allclose(out[i, :4], steps[i, :seen].mean(axis=0), atol=1e-5)
        np.testing.assert_allclose(out[i, 4:], steps[i, :seen].max(axis=0), atol=1e-5)
    steps[:, 4:] = 1e6  # what the padding makes of the later steps changes nothing
    np.testing.assert_allclose(np.asarray(MaskedStatsPooling()([steps, mask]))[1:], out[1:], atol=1e-5)
    with pytest.raises(ValueError, match="pool_real_frames"):
        ModelConfig(kind="baseline", pool_real_frames=True)
    fcfg, mcfg = FeatureConfig(n_mels=16, frames=24), ModelConfig(filters=(4, 8), dense_units=8, pool_real_frames=True)
    _assert_bundle_round_trip(build_model(mcfg, fcfg), fcfg, mcfg, tmp_path)


def _assert_bundle_round_trip(model, fcfg, mcfg, tmp_path):
    """A saved and reloaded bundle gives the model's own emotion probabilities."""
    from ser_core.bundle import load_bundle, save_bundle

    shape = fcfg.mfcc_shape if mcfg.kind == "baseline" else fcfg.cube_shape
    x = np.random.default_rng(1).standard_normal((2, *shape)).astype("float32")
    b = load_bundle(save_bundle(tmp_path / "b", model, fcfg, mcfg, TrainConfig(), {}))
    np.testing.assert_allclose(b.predict_inputs(x)[0], np.asarray(model(x)["emotion"]), atol=1e-5)


def _batches(views, **train):
    from ser_core.training.cnn import AugmentedBatches, Targets

    x = np.zeros((10, 4, 6, 3), np.float32)
    y = Targets(np.arange(10) % 8, np.arange(10) % 2)
    cfg = TrainConfig(batch_size=4, mixup_alpha=0, freq_masks=0, time_masks=0, **train)
    return AugmentedBatches(x, y, cfg, time_axis=2, freq_axis=1, views=views)


def test_batches_cover_every_clip_once_per_pass_and_repeat():
    batches = _batches([])
    stream = iter(batches)
    first = [next(stream) for _ in range(len(batches))]
    assert len(batches) == 3 and sum(len(x) for x, _ in first) == 10
    assert sorted(np.concatenate([y["emotion"].argmax(1) for _, y in first])) == sorted(np.arange(10) % 8)
    assert next(stream)[0].shape == (4, 4, 6, 3)  # endless: the next pass starts


def test_batches_draw_each_example_from_the_clip_or_one_of_its_views():
    views = [np.full((10, 4, 6, 3), 1.0, np.float32), np.full((10, 4, 6, 3), 2.0, np.float32)]
    stream = iter(_batches(views, seed=3))
    values = np.concatenate([next(stream)[0][:, 0, 0, 0] for _ in range(30)])
    assert set(values) == {0.0, 1.0, 2.0}
    with pytest.raises(ValueError):
        _batches([np.zeros((9, 4, 6, 3), np.float32)])


def test_freq_warp_stretches_each_example_by_its_own_factor_within_bounds():
    from ser_core.training.cnn import freq_warp

    rng = np.random.default_rng(0)
    ramp = np.broadcast_to(np.arange(16, dtype=np.float32)[None, :, None, None], (50, 16, 5, 3)).copy()
    assert freq_warp(ramp, rng, 1, 0.0) is ramp
    warped = freq_warp(ramp, rng, 1, 0.2)
    assert warped.shape == ramp.shape
    np.testing.assert_array_equal(warped, np.broadcast_to(warped[:, :, :1, :1], warped.shape))  # one warp per example
    # each example's ramp is f / alpha (clamped at the top bin): alpha from the slope of its first bins
    alphas = 1 / warped[:, 1, 0, 0]
    assert alphas.min() >= 0.8 - 1e-6 and alphas.max() <= 1.2 + 1e-6 and alphas.std() > 0.05
    expected = np.minimum(np.arange(16)[None, :] / alphas[:, None], 15)
    np.testing.assert_allclose(warped[:, :, 0, 0], expected, atol=1e-4)


def test_random_crop_takes_a_restandardised_stretch_of_the_real_frames():
    from ser_core.training.cnn import random_crop, valid_frames

    rng = np.random.default_rng(0)
    real = rng.standard_normal((20, 16, 100, 3)).astype(np.float32)  # 100 real frames, edge-padded to 128
    x = np.pad(real, [(0, 0), (0, 0), (0, 28), (0, 0)], mode="edge")
    assert [valid_frames(e, 1) for e in x] == [100] * 20
    assert random_crop(x, rng, 2, 31, 0.0) is x
    out = random_crop(x, rng, 2, 31, 1.0)
    assert out.shape == x.shape
    for orig, crop in zip(real, out):
        n = valid_frames(crop, 1)
        assert 31 <= n <= 100
        part = crop[:, :n]
        np.testing.assert_allclose(part.mean(axis=(0, 1)), 0, atol=1e-4)
        np.testing.assert_allclose(part.std(axis=(0, 1)), 1, atol=1e-3)
        starts = [s for s in range(101 - n) if np.allclose(
            part, (orig[:, s:s + n] - orig[:, s:s + n].mean(axis=(0, 1))) / (orig[:, s:s + n].std(axis=(0, 1)) + 1e-5),
            atol=1e-4)]
        assert len(starts) == 1  # a contiguous stretch of the utterance, nothing of its padding
    assert len({valid_frames(c, 1) for c in out}) > 5  # lengths vary
    short = x[:, :, 90:]  # 10 real frames: shorter than the minimum, left alone
    np.testing.assert_array_equal(random_crop(short, rng, 2, 31, 1.0), short)


def test_freq_warp_is_refused_for_the_mfcc_baseline():
    from ser_core.training.cnn import Targets, fit

    with pytest.raises(ValueError, match="freq_warp"):
        fit(ModelConfig(kind="baseline"), FeatureConfig(), TrainConfig(freq_warp=0.1),
            np.zeros((2, 128, 40), np.float32), Targets(np.zeros(2, int), np.zeros(2, int)))


def test_balanced_pool_repeats_rarer_classes():
    from ser_core.training.cnn import balanced_pool

    labels = np.array([0, 1, 1, 2, 2, 0, 1, 2, 1, 2, 2, 2])
    pool = balanced_pool(labels)
    assert np.bincount(labels[pool]).tolist() == [6, 8, 6]  # x3, x2 (rounded from 1.5), x1
    assert set(pool) == set(range(len(labels)))


def test_balanced_batches_see_a_rare_class_as_often_as_the_others():
    batches = _batches([], balance_classes=True)  # labels 0..7, 0 and 1 twice each
    stream = iter(batches)
    seen = np.concatenate([next(stream)[1]["emotion"].argmax(1) for _ in range(len(batches))])
    assert np.bincount(seen, minlength=8).tolist() == [2] * 8


def test_weight_averaging_validates_and_returns_the_moving_average():
    """A slow average (momentum 0.999) starts from the weights after the first step and
    barely moves in 16 more, so the model validated and returned stays about one Adam
    step (~learning rate) from its initial weights; plain training moves several steps."""
    import keras

    from ser_core.training.cnn import Targets, fit

    fcfg = FeatureConfig(n_mels=8, frames=8)
    mcfg = ModelConfig(kind="deep", filters=(4,), dense_units=8)
    x = np.random.default_rng(0).standard_normal((16, *fcfg.cube_shape)).astype(np.float32)
    y = Targets(np.arange(16) % 8, np.arange(16) % 2)
    keras.utils.set_random_seed(0)
    initial = build_model(mcfg, fcfg).get_layer("dense").get_weights()[0]
    lr = 0.01
    moved = {}
    for ema, val in ((0.0, None), (0.999, (x, y))):
        cfg = TrainConfig(epochs=4, batch_size=4, learning_rate=lr, ema_momentum=ema)
        model, history = fit(mcfg, fcfg, cfg, x, y, val=val, verbose=0)
        moved[ema] = np.abs(model.get_layer("dense").get_weights()[0] - initial).mean()
    assert "val_uar" in history
    assert moved[0.999] < 1.5 * lr < 3 * lr < moved[0.0]


def test_patience_zero_trains_every_epoch_and_keeps_the_last_weights():
    from ser_core.training.cnn import Targets, fit

    fcfg = FeatureConfig(n_mels=8, frames=8)
    mcfg = ModelConfig(kind="deep", filters=(4,), dense_units=8)
    x = np.random.default_rng(1).standard_normal((16, *fcfg.cube_shape)).astype(np.float32)
    y = Targets(np.arange(16) % 8, np.arange(16) % 2)
    val = (x[:8], Targets(np.zeros(8, int), np.zeros(8, int)))  # one class: val UAR soon stops rising
    model, history = fit(mcfg, fcfg, TrainConfig(epochs=6, batch_size=4, patience=0), x, y, val=val, verbose=0)
    assert len(history) == 6 and "val_uar" in history


def test_ema_swap_exchanges_weights_and_averages_by_copy():
    import keras

    from ser_core.training.cnn import CopyingSwapEMAWeights

    class Optimizer:  # what the callback reads from an EMA optimizer
        _trainable_variables = [keras.Variable(np.array([1.0, 2.0]))]
        _model_variables_moving_average = [keras.Variable(np.array([3.0, 4.0]))]

    (var,), (avg,) = Optimizer._trainable_variables, Optimizer._model_variables_moving_average
    swap = CopyingSwapEMAWeights(swap_on_epoch=True)
    swap._backend_swap_variables(Optimizer)
    assert np.asarray(var).tolist() == [3.0, 4.0] and np.asarray(avg).tolist() == [1.0, 2.0]
    swap._backend_finalize_ema_values(Optimizer)
    var.assign(np.array([5.0, 6.0]))
    assert np.asarray(avg).tolist() == [3.0, 4.0]


def test_weight_averaged_training_and_saving_run_on_the_jax_backend(tmp_path):
    """Training with EMA to the last epoch and saving a bundle with KERAS_BACKEND=jax (where JAX is
    installed); the bundle loads on this process's backend."""
    import subprocess
    import sys

    pytest.importorskip("jax")
    script = """
import numpy as np
from ser_core.bundle import save_bundle
from ser_core.config import FeatureConfig, ModelConfig, TrainConfig
from ser_core.training.cnn import Targets, fit
f, m = FeatureConfig(n_mels=8, frames=8), ModelConfig(kind="deep", filters=(4,), dense_units=8)
t = TrainConfig(epochs=2, batch_size=4, ema_momentum=0.9, patience=0)
x = np.random.default_rng(0).standard_normal((16, *f.cube_shape)).astype(np.float32)
y = Targets(np.arange(16) % 8, np.arange(16) % 2)
model, _ = fit(m, f, t, x, y, val=(x, y), verbose=0)
save_bundle(OUT, model, f, m, t, {})
""".replace("OUT", repr(str(tmp_path / "bundle")))
    env = {**__import__("os").environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    from ser_core.bundle import load_bundle

    assert load_bundle(tmp_path / "bundle").model_config.kind == "deep"  # saved on JAX, loaded here
