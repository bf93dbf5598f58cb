"""The printed block of docs/analysts.md is what docs/analysts.py prints on the job's output for
the example calls with the default model, its encoder held to float32 (`run_example_job`)."""
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
# absolute, per printed number: round-off of the float32 encoder and head across CPUs and kernels
TOLERANCE = 0.01
NUMBER = re.compile(r"[-+]?\d+(\.\d+)?")


def load_analysts():
    spec = importlib.util.spec_from_file_location("analysts", ROOT / "docs" / "analysts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def differences(want: str, got: str, tol: float = TOLERANCE) -> list[str]:
    """Where two texts differ, token by token (whitespace-separated); numbers within `tol` match."""
    a, b = want.split(), got.split()
    out = [f"{len(a)} tokens in the doc, {len(b)} printed"] if len(a) != len(b) else []
    for i, (x, y) in enumerate(zip(a, b)):
        if NUMBER.fullmatch(x) and NUMBER.fullmatch(y):
            if abs(float(x) - float(y)) > tol + 1e-9:
                out.append(f"token {i}: doc {x}, printed {y}")
        elif x != y:
            out.append(f"token {i}: doc {x!r}, printed {y!r}")
    return out


def test_differences_tolerates_round_off_only():
    assert differences("call_002  0.352 calm", "call_002 0.357  calm") == []
    assert differences("0.352 calm", "0.392 calm") == ["token 0: doc 0.352, printed 0.392"]
    assert differences("2026-11-24 call_002", "2026-11-25 call_002")  # dates and ids compare as text
    assert differences("a b", "a b c")


def test_the_printed_block_of_analysts_md_is_current(tmp_path):
    analysts = load_analysts()
    analysts.run_example_job(tmp_path / "out")
    got = analysts.printed(tmp_path / "out")
    want = analysts.doc_block(analysts.DOC.read_text(encoding="utf-8"))
    diff = differences(want, got)
    assert not diff, (f"docs/analysts.md's printed block is stale ({len(diff)} differences, first: {diff[:5]}); "
                      f"regenerate with: {analysts.REGENERATE} (then reread the prose after the block)")
