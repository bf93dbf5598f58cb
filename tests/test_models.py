import numpy as np
import pytest

from ser_core.config import FeatureConfig, ModelConfig
from ser_core.models import FrameContext, build_model


@pytest.mark.parametrize("kind,pooling", [("baseline", "stats"), ("deep", "stats"), ("deep", "flatten")])
def test_build_shapes(kind, pooling):
    fcfg = FeatureConfig(n_mels=32, frames=40, mfcc_frames=40)
    model = build_model(ModelConfig(kind=kind, pooling=pooling, filters=(8, 16), dense_units=32), fcfg)
    shape = fcfg.mfcc_shape if kind == "baseline" else fcfg.cube_shape
    assert tuple(model.input.shape[1:]) == shape
    out = model(np.random.default_rng(0).standard_normal((3, *shape)).astype("float32"))
    assert tuple(out["emotion"].shape) == (3, 8) and tuple(out["intensity"].shape) == (3, 2)
    np.testing.assert_allclose(np.asarray(out["emotion"]).sum(axis=1), 1.0, rtol=1e-5)


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
