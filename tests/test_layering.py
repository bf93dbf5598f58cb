"""The package's layering: what serves calls does not import what trains models, and the
installed package imports nothing from the repository's unshipped `experiments/`."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAINING = "ser_core.training"  # the package: everything `ser train` needs and the serving path does not


# the only product code that may import `ser_core.training`: the `ser` commands that train or download
TRAINING_COMMANDS = {"_cmd_train", "_cmd_train_encoder", "_cmd_download"}


def test_the_serving_path_does_not_import_training():
    code = ("import sys, pipelines.score_calls, ser_core.cli, ser_core.bundle, ser_core.evaluation; "
            "ser_core.cli.parser(); "
            f"print(sorted(m for m in sys.modules if m == {TRAINING!r} or m.startswith({TRAINING + '.'!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def _imports_training(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(a.name == TRAINING or a.name.startswith(TRAINING + ".") for a in node.names)
    if isinstance(node, ast.ImportFrom):
        module = node.module or ""
        if node.level == 0:
            return module == TRAINING or module.startswith(TRAINING + ".")
        if node.level == 1 and not module:  # from . import training
            return any(a.name == "training" for a in node.names)
        return node.level == 1 and (module == "training" or module.startswith("training."))
    return False


def test_product_modules_import_training_only_in_the_training_commands():
    """No product module imports `ser_core.training`, not even inside a function; `ser_core.cli`
    only inside the commands that train or download (so `ser predict`/`evaluate` never load it)."""
    for path in [*(ROOT / "ser_core").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py")]:
        if (ROOT / "ser_core" / "training") in path.parents:
            continue
        tree = ast.parse(path.read_text())
        allowed: set[int] = set()
        if path == ROOT / "ser_core" / "cli.py":
            allowed = {id(n) for f in tree.body if isinstance(f, ast.FunctionDef) and f.name in TRAINING_COMMANDS
                       for n in ast.walk(f)}
        bad = [n.lineno for n in ast.walk(tree) if _imports_training(n) and id(n) not in allowed]
        assert not bad, f"{path.relative_to(ROOT)} imports {TRAINING} at lines {bad}"


def test_the_package_imports_nothing_from_experiments():
    for path in [*(ROOT / "ser_core").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py"), *(ROOT / "schemas").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            assert not any(n == "experiments" or n.startswith("experiments.") for n in names), path
