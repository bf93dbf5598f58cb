"""The package's layering: what serves calls does not import what trains models, and the
installed package imports nothing from the repository's unshipped `experiments/`."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ("ser_core.head_training", "ser_core.training", "ser_core.experiments", "ser_core.states")


def test_the_serving_path_does_not_import_training():
    code = ("import sys, pipelines.score_calls, ser_core.cli, ser_core.bundle; "
            f"print([m for m in {TRAINING!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_package_imports_nothing_from_experiments():
    for path in [*(ROOT / "ser_core").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py"), *(ROOT / "schemas").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            assert not any(n == "experiments" or n.startswith("experiments.") for n in names), path
