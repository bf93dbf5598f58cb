"""The CNN study's recipes on RAVDESS: run them, then tabulate them.

    python experiments/ravdess_runs.py list
    python experiments/ravdess_runs.py run NAME [NAME...] [--runs runs] [--folds 1,2] [--resume] [--parallel]
    python experiments/ravdess_runs.py table [NAME...] [--runs runs]
    python experiments/ravdess_runs.py pair BAND COMPANION [--to DIR] [--runs runs]

A recipe is a data file, `experiments/recipes/NAME.json`: the protocol, the vocal channels,
whether the held-out clips are also scored through the telephone channel, and every field of
the feature, architecture and training configs, pinned. `run` writes those configs next to the
run and calls `ser train --feature-config ... --model-config ... --train-config ...` (so a
recipe runs what it reads, whatever today's defaults), into RUNS/NAME with the log in
RUNS/NAME.log; with `--parallel`, one process per fold at once (a GPU or many cores), joined
into RUNS/NAME by `ser train --resume`. `table` prints one Markdown row per finished run: mean
± sd over the held-out splits of accuracy, UAR and macro-F1 (clean audio), UAR through the
telephone channel when measured, intensity accuracy, training time and the command. `pair`
attaches each fold model of a telephone-band run to the same fold's model of a full-band run,
as the `--model cnn` bundle carries its wideband companion (`ser attach-wideband`), for
`experiments/robustness.py`.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
CONFIGS = ("feature", "model", "train")


def recipes() -> dict[str, dict[str, Any]]:
    """Every recipe file, by name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(RECIPES_DIR.glob("*.json"))}


def command(name: str, runs: Path, folds: str | None, resume: bool = False, out: Path | None = None) -> list[str]:
    """The `ser train` command of recipe `name`, its configs written into RUNS/NAME.recipe/."""
    recipe = recipes()[name]
    config_dir = runs / f"{name}.recipe"
    config_dir.mkdir(parents=True, exist_ok=True)
    args = ["--model", recipe["model"], "--protocol", recipe["protocol"], "--channels", recipe["channels"]]
    for kind in CONFIGS:
        path = config_dir / f"{kind}.json"
        path.write_text(json.dumps(recipe[f"{kind}_config"], indent=2))
        args += [f"--{kind}-config", str(path)]
    args += ["--test-telephone"] if recipe["test_telephone"] else []
    args += (["--folds", folds] if folds else []) + (["--resume"] if resume else [])
    return ["ser", "train", *args, "--verbose", "0", "--out", str(out or runs / name)]


def _ser(cmd: list[str], log: Path, append: bool) -> subprocess.Popen:
    print(f"[{time.strftime('%H:%M:%S')}] {shlex.join(cmd)}", flush=True)
    with open(log, "a" if append else "w") as f:
        # `ser` is `python -m ser_core.cli`: the same program without needing the venv on PATH
        return subprocess.Popen([sys.executable, "-m", "ser_core.cli", *cmd[1:]], stdout=f, stderr=subprocess.STDOUT)


def run(names: list[str], runs: Path, folds: str | None, resume: bool = False) -> None:
    runs.mkdir(parents=True, exist_ok=True)
    for name in names:
        status = _ser(command(name, runs, folds, resume), runs / f"{name}.log", resume).wait()
        print(f"[{time.strftime('%H:%M:%S')}] {name}: exit {status}", flush=True)


def run_parallel(name: str, runs: Path, folds: str | None, resume: bool = False) -> None:
    """One `ser train --folds K` process per fold at once, each into RUNS/NAME.parts/fold_K;
    then the finished folds are copied into RUNS/NAME and `ser train --resume` joins them
    (it scores their saved predictions)."""
    chosen = folds.split(",") if folds else [str(k) for k in range(1, 7)]
    parts = runs / f"{name}.parts"
    parts.mkdir(parents=True, exist_ok=True)
    procs = {k: _ser(command(name, runs, k, resume, out=parts / f"fold_{k}"), parts / f"fold_{k}.log", resume)
             for k in chosen}
    failed = [k for k, p in procs.items() if p.wait() != 0]
    if failed:
        sys.exit(f"{name}: folds {failed} failed (logs in {parts}); not joined")
    dest = runs / name
    dest.mkdir(exist_ok=True)
    with open(dest / "command.txt", "a" if resume else "w") as commands:
        for k in chosen:
            shutil.copytree(parts / f"fold_{k}" / f"fold_{k}", dest / f"fold_{k}", dirs_exist_ok=True)
            commands.write((parts / f"fold_{k}" / "command.txt").read_text())
    shutil.copy(parts / f"fold_{chosen[0]}" / "config.json", dest / "config.json")
    run([name], runs, folds, resume=True)


def _ms(stat: dict, splits: int) -> str:
    """mean ± sd over splits (just the value for a single split)."""
    return f"{stat['mean']:.3f} ± {stat['sd']:.3f}" if splits > 1 else f"{stat['mean']:.3f}"


def table(runs: Path, names: list[str]) -> None:
    print("| run | splits | accuracy | UAR | macro-F1 | telephone UAR | intensity acc. | train time | command |")
    print("|---|---|---|---|---|---|---|---|---|")
    chosen = [runs / n / "metrics.json" for n in names] if names else sorted(runs.glob("*/metrics.json"))
    for metrics in chosen:
        r = json.loads(metrics.read_text())
        if "mean" not in r:
            continue
        run_dir = metrics.parent
        m, n = r["mean"], len(r["folds"])
        tel = _ms(m["telephone"]["uar"], n) if "telephone" in m else "–"
        cmd = "` then `".join((run_dir / "command.txt").read_text().split("\n")[:-1])  # resumed runs: several
        print(f"| {run_dir.name} | {n} | {_ms(m['all']['accuracy'], n)} | **{_ms(m['all']['uar'], n)}** | "
              f"{_ms(m['all']['macro_f1'], n)} | {tel} | {_ms(m['all']['intensity_accuracy'], n)} | "
              f"{r['train_seconds'] / 60:.0f} min | `{cmd}` |")
        for group in ("speech", "song"):
            if group in m:
                tel = _ms(m[f"telephone_{group}"]["uar"], n) if f"telephone_{group}" in m else ""
                print(f"| ↳ {run_dir.name}, {group} clips only | | {_ms(m[group]['accuracy'], n)} | "
                      f"{_ms(m[group]['uar'], n)} | {_ms(m[group]['macro_f1'], n)} | {tel} | "
                      f"{_ms(m[group]['intensity_accuracy'], n)} | | |")


def pair(runs: Path, band: str, companion: str, out: Path | None = None) -> Path:
    """Fold bundles of `band` with `companion`'s fold bundles attached as wideband companions,
    in `OUT/fold_K/bundle` (default `runs/BAND_with_wideband`); every fold with a bundle in both."""
    from ser_core.bundle import attach_wideband

    out = out or runs / f"{Path(band).name}_with_wideband"
    for k in range(1, 7):
        src, extra = runs / band / f"fold_{k}" / "bundle", runs / companion / f"fold_{k}" / "bundle"
        if src.is_dir() and extra.is_dir():
            dest = out / f"fold_{k}" / "bundle"
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(src, dest)
            print(f"fold {k}: model id {attach_wideband(dest, extra)}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="action", required=True)
    sub.add_parser("list")
    p = sub.add_parser("run")
    p.add_argument("names", nargs="+")
    p.add_argument("--folds")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--parallel", action="store_true", help="all folds of each recipe at once")
    p = sub.add_parser("table")
    p.add_argument("names", nargs="*")
    p = sub.add_parser("pair")
    p.add_argument("band")
    p.add_argument("companion")
    p.add_argument("--to", type=Path)
    for p in sub.choices.values():
        p.add_argument("--runs", type=Path, default=Path("runs"))
    args = ap.parse_args()
    known = recipes()
    unknown = sorted(set(getattr(args, "names", [])) - set(known)) if args.action == "run" else []
    if unknown:
        sys.exit(f"unknown recipes {unknown}; `list` shows them")
    if args.action == "list":
        for name, recipe in known.items():
            print(f"{name}: {recipe['about']}")
    elif args.action == "run":
        for name in args.names:
            (run_parallel(name, args.runs, args.folds, args.resume) if args.parallel
             else run([name], args.runs, args.folds, args.resume))
    elif args.action == "table":
        table(args.runs, args.names)
    else:
        pair(args.runs, args.band, args.companion, args.to)


if __name__ == "__main__":
    main()
