import numpy as np
import pytest

from ser_core.config import FeatureConfig, ModelConfig, TrainConfig
from ser_core.models import FrameContext, build_model


@pytest.mark.parametrize("kind,pooling", [("baseline", "stats"), ("deep", "stats"), ("deep", "flatten"),
                                          ("baseline", "flatten")])
def test_build_shapes(kind, pooling, tmp_path):
    fcfg = FeatureConfig(n_mels=32, frames=40, mfcc_frames=40)
    mcfg = ModelConfig(kind=kind, pooling=pooling, filters=(8, 16), dense_units=32)
    model = build_model(mcfg, fcfg)
    shape = fcfg.mfcc_shape if kind == "baseline" else fcfg.cube_shape
    assert tuple(model.input.shape[1:]) == shape
    out = model(np.random.default_rng(0).standard_normal((3, *shape)).astype("float32"))
    assert tuple(out["emotion"].shape) == (3, 8) and tuple(out["intensity"].shape) == (3, 2)
    np.testing.assert_allclose(np.asarray(out["emotion"]).sum(axis=1), 1.0, rtol=1e-5)
    _assert_bundle_round_trip(model, fcfg, mcfg, tmp_path)


def test_saved_configs_drop_removed_options_only_at_their_neutral_value():
    saved = {**ModelConfig().to_dict(), "recurrent_units": 0, "residual": False}
    assert ModelConfig.from_saved(saved) == ModelConfig()
    with pytest.raises(ValueError, match="recurrent_units=64"):
        ModelConfig.from_saved({**saved, "recurrent_units": 64})
    train = {**TrainConfig().to_dict(), "speed_perturb": [], "babble_augment": False}
    assert TrainConfig.from_saved(train) == TrainConfig()
    with pytest.raises(ValueError, match="speed_perturb"):
        TrainConfig.from_saved({**train, "speed_perturb": [0.9, 1.1]})
    features = {**FeatureConfig().to_dict(), "speaker_norm": False}
    assert FeatureConfig.from_saved(features) == FeatureConfig()
    with pytest.raises(ValueError, match="speaker_norm=True"):
        FeatureConfig.from_saved({**features, "speaker_norm": True})
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict(saved)  # a config given by hand (not a saved one) must name only today's fields


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


def _assert_bundle_round_trip(model, fcfg, mcfg, tmp_path):
    """A saved and reloaded bundle gives the model's own emotion probabilities."""
    from ser_core.bundle import load_bundle, save_bundle

    shape = fcfg.mfcc_shape if mcfg.kind == "baseline" else fcfg.cube_shape
    x = np.random.default_rng(1).standard_normal((2, *shape)).astype("float32")
    b = load_bundle(save_bundle(tmp_path / "b", model, feature_cfg=fcfg, model_cfg=mcfg, train_cfg=TrainConfig(), info={}))
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
save_bundle(OUT, model, feature_cfg=f, model_cfg=m, train_cfg=t, info={})
""".replace("OUT", repr(str(tmp_path / "bundle")))
    env = {**__import__("os").environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    from ser_core.bundle import load_bundle

    assert load_bundle(tmp_path / "bundle").model_config.kind == "deep"  # saved on JAX, loaded here
