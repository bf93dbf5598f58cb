"""ser_core.encoder: Whisper front end and frozen encoder against independent numpy references.

Tolerances: log-mel max |diff| < 1e-4 (float32 vs float64 reference); encoder layers
max |diff| < 2e-3 x the layer's output RMS (Keras float32 vs a float64 numpy forward pass from the
raw npz arrays; measured <= 1.0e-5 on tiny.en and <= 3.0e-4 on base, whose blocks 4-5 carry
a few very large activations; the log-mel differs by 1.8e-7).
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest
from scipy.special import erf

from ser_core import encoder as E

SR = E.SAMPLE_RATE
REL_TOL = 2e-3


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced-ish synthetic clip: harmonics with a wobbling pitch, amplitude envelope, noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    t = np.arange(n) / SR
    f0 = 140 + 30 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 * (1 + np.sin(2 * np.pi * 2.5 * t)) ** 2
    return (0.1 * env * y + 0.003 * rng.standard_normal(n)).astype(np.float32)


# ------------------------------------------------------------------ references (numpy, float64)


def _ref_log_mel(y: np.ndarray) -> np.ndarray:
    y = y.astype(np.float64)
    n_fft, hop = 400, 160
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    yp = np.concatenate([y[1:201][::-1], y, y[-201:-1][::-1]])  # reflect, no edge repeat
    n_frames = len(y) // hop
    frames = np.array([yp[i * hop:i * hop + n_fft] * window for i in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, 201)
    fb = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=80, dtype=np.float64)
    logm = np.log10(np.maximum(power @ fb.T, 1e-10))
    logm = np.maximum(logm, logm.max() - 8.0)
    return (logm + 4.0) / 4.0


def _gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _ln(x, g, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * g + b


def _conv(x, w, b, stride):
    xp = np.pad(x, ((1, 1), (0, 0)))
    t_out = (len(xp) - 3) // stride + 1
    return sum(xp[k:k + stride * (t_out - 1) + 1:stride] @ w[:, :, k].T for k in range(3)) + b


def _ref_encoder(npz, mel: np.ndarray, heads: int) -> list[np.ndarray]:
    p = {k: npz[k].astype(np.float64) for k in npz.files}
    x = _gelu(_conv(mel, p["encoder/conv1/weight"], p["encoder/conv1/bias"], 1))
    x = _gelu(_conv(x, p["encoder/conv2/weight"], p["encoder/conv2/bias"], 2))
    x = x + p["encoder/position_encodings/encodings"][: len(x)]
    outs = [x]
    i = 0
    while f"encoder/layer_{i}/ffn/linear_0/weight" in p:
        a = f"encoder/layer_{i}/self_attention"
        h = _ln(x, p[f"{a}/layer_norm/gamma"], p[f"{a}/layer_norm/beta"])
        qkv = h @ p[f"{a}/linear_0/weight"].T + p[f"{a}/linear_0/bias"]
        q, k, v = np.split(qkv, 3, axis=-1)
        d = q.shape[-1] // heads
        ctx = []
        for hh in range(heads):
            s = slice(hh * d, (hh + 1) * d)
            sc = q[:, s] @ k[:, s].T / math.sqrt(d)
            sc = np.exp(sc - sc.max(-1, keepdims=True))
            ctx.append((sc / sc.sum(-1, keepdims=True)) @ v[:, s])
        x = x + np.concatenate(ctx, -1) @ p[f"{a}/linear_1/weight"].T + p[f"{a}/linear_1/bias"]
        f = f"encoder/layer_{i}/ffn"
        h = _ln(x, p[f"{f}/layer_norm/gamma"], p[f"{f}/layer_norm/beta"])
        h = _gelu(h @ p[f"{f}/linear_0/weight"].T + p[f"{f}/linear_0/bias"])
        x = x + h @ p[f"{f}/linear_1/weight"].T + p[f"{f}/linear_1/bias"]
        outs.append(x)
        i += 1
    outs[-1] = _ln(x, p["encoder/layer_norm/gamma"], p["encoder/layer_norm/beta"])
    return outs


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def tiny():
    return E.load_encoder("whisper-tiny.en")


# ------------------------------------------------------------------ tests


def test_specs_and_registry():
    assert {"whisper-base", "whisper-tiny.en"} <= set(E.available_encoders())
    base, tiny_spec = E.encoder_spec("whisper-base"), E.encoder_spec("whisper-tiny.en")
    assert (base.n_layers, base.width, base.heads, base.n_mels) == (6, 512, 8, 80)
    assert (tiny_spec.n_layers, tiny_spec.width, tiny_spec.heads, tiny_spec.n_mels) == (4, 384, 6, 80)
    assert E.FRAME_RATE * 2 * E.HOP == E.SAMPLE_RATE
    with pytest.raises(ValueError, match="unknown encoder"):
        E.encoder_spec("whisper-huge")


def test_log_mel_matches_numpy_reference():
    y = _speechlike(1.3)
    got = E.log_mel(y)
    ref = _ref_log_mel(y)
    assert got.shape == (len(y) // 160, 80) == ref.shape and got.dtype == np.float32
    assert np.abs(got - ref).max() < 1e-4
    assert E.log_mel(np.zeros(159, np.float32)).shape == (0, 80)


def _check_layers(model, spec_name, seconds, seed):
    y = _speechlike(seconds, seed)
    mel = E.log_mel(y)
    got = E.encode(model, y)
    with np.load(E.encoder_spec(spec_name).directory / "encoder.npz", allow_pickle=False) as npz:
        ref = _ref_encoder(npz, mel.astype(np.float64), E.encoder_spec(spec_name).heads)
    assert got.shape == (len(ref), math.ceil(len(mel) / 2), ref[0].shape[-1])
    rel = [np.abs(got[i] - r).max() / np.sqrt((r ** 2).mean()) for i, r in enumerate(ref)]
    assert max(rel) < REL_TOL, rel


@pytest.mark.parametrize("runtime", E.RUNTIMES)
def test_tiny_encoder_matches_numpy_reference_all_layers(runtime):
    _check_layers(E.load_encoder("whisper-tiny.en", runtime=runtime), "whisper-tiny.en", 1.5, seed=1)


@pytest.mark.parametrize("runtime", E.RUNTIMES)
def test_base_encoder_matches_numpy_reference_all_layers(runtime):
    _check_layers(E.load_encoder("whisper-base", runtime=runtime), "whisper-base", 1.5, seed=2)


def test_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="runtime"):
        E.load_encoder("whisper-tiny.en", runtime="tflite")


@pytest.mark.parametrize("n", [int(0.7 * SR), int(2.1 * SR), int(0.7 * SR) + 197])
def test_variable_length_output(tiny, n):
    out = E.encode(tiny, _speechlike(n / SR, seed=3)[:n])
    assert out.shape == (5, math.ceil((n // 160) / 2), 384) and out.dtype == np.float32


def test_long_clip_is_encoded_in_30s_chunks(tiny):
    y = _speechlike(35.0, seed=4)
    out = E.encode(tiny, y)
    assert out.shape == (5, 1750, 384)
    parts = np.concatenate([E.encode(tiny, y[:30 * SR]), E.encode(tiny, y[30 * SR:])], axis=1)
    np.testing.assert_allclose(out, parts, rtol=0, atol=1e-5)


def test_tampered_npz_is_refused(tmp_path):
    src = E.encoder_spec("whisper-tiny.en").directory / "encoder.npz"
    bad = tmp_path / "encoder.npz"
    shutil.copyfile(src, bad)
    with open(bad, "r+b") as f:
        f.seek(5_000_000)
        byte = f.read(1)
        f.seek(5_000_000)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(E.EncoderIntegrityError, match="sha256"):
        E.load_encoder("whisper-tiny.en", npz_path=bad)


def test_int8_encoder_quantises_only_the_weight_products_and_stays_close_on_speech():
    """int8 (`quantize_int8`): the 4 weight products of every block run as integer products,
    the attention products stay float; on a recorded utterance every layer stays within 30 %
    relative RMS of float32 (measured about 2-18 % on CREMA-D clips, the top layers most),
    and two loads compute the same outputs."""
    import onnx
    import soundfile as sf

    from ser_core.audio import resample

    spec = E.encoder_spec("whisper-base")
    with np.load(spec.directory / "encoder.npz", allow_pickle=False) as npz:
        quantised = onnx.load_from_string(E.quantize_int8(E.onnx_graph(spec, npz)))
    ops = [n.op_type for n in quantised.graph.node]
    assert ops.count("MatMulInteger") + ops.count("DynamicQuantizeMatMul") == 4 * spec.n_layers
    assert ops.count("MatMul") == 2 * spec.n_layers  # q k^T and att v
    y, sr = sf.read(Path(__file__).parents[1] / "examples" / "clips" / "03-01-05-02-01-01-01.flac", dtype="float32")
    y = resample(y, sr, SR)
    ref = E.encode(E.load_encoder("whisper-base"), y)
    int8 = E.load_encoder("whisper-base", precision="int8")
    got = E.encode(int8, y)
    assert got.shape == ref.shape and got.dtype == np.float32
    rel = np.sqrt(((got - ref) ** 2).mean(axis=(1, 2)) / (ref ** 2).mean(axis=(1, 2)))
    assert rel.max() < 0.3 and rel[0] < 1e-6, rel  # the convolution stem is float32
    np.testing.assert_array_equal(E.encode(E.load_encoder("whisper-base", precision="int8"), y), got)


def test_int8_graph_is_quantised_once_then_read_from_the_cache(tmp_path, monkeypatch):
    """`cached_int8`: the first load writes the quantised graph; later loads read the same
    bytes without quantising; a damaged file is quantised again and replaced; an unwritable
    cache still gives the quantised graph."""
    spec = E.encoder_spec("whisper-tiny.en")
    with np.load(spec.directory / "encoder.npz", allow_pickle=False) as npz:
        graph = E.onnx_graph(spec, npz)
    fresh = E.quantize_int8(graph)
    first = E.cached_int8(graph, tmp_path)
    assert first == fresh
    [saved] = (tmp_path / "onnx").glob("int8-*.onnx")
    quantise = E.quantize_int8

    def refuse(model):
        raise AssertionError("quantised again")

    monkeypatch.setattr(E, "quantize_int8", refuse)
    assert E.cached_int8(graph, tmp_path) == fresh
    saved.write_bytes(fresh[: len(fresh) // 2])  # cut short, as by a full disk
    with pytest.raises(AssertionError, match="quantised again"):
        E.cached_int8(graph, tmp_path)
    monkeypatch.setattr(E, "quantize_int8", quantise)
    assert E.cached_int8(graph, tmp_path) == fresh
    assert [p.read_bytes() == fresh for p in (tmp_path / "onnx").iterdir()] == [True]
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    assert E.cached_int8(graph, blocked) == fresh


def test_int8_is_for_onnxruntime_only():
    with pytest.raises(ValueError, match="float32 only"):
        E.load_encoder("whisper-tiny.en", runtime="keras", precision="int8")
    with pytest.raises(ValueError, match="precision"):
        E.load_encoder("whisper-tiny.en", precision="float16")
