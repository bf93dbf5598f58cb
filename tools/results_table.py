"""Print the Markdown rows of docs/model_card.md's accuracy table from finished `ser train
--model encoder` runs (their metrics.json), so no figure is copied by hand.

    python tools/results_table.py runs/whisper-base/crema_folds runs/whisper-base/cross_to_crema ...
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def cell(m: dict) -> str:
    mean = isinstance(m.get("uar"), dict)  # mean over splits
    value = (lambda k: m[k]["mean"]) if mean else (lambda k: m[k])
    text = " / ".join(f"{value(k):.3f}" for k in ("uar", "accuracy", "macro_f1")) + (f" (± {m['uar']['sd']:.3f})" if mean else "")
    if "outside_classes" in m and value("outside_classes") > 0:  # the job's argmax is over all 8 classes
        text += f"; over all 8 classes UAR {value('uar_all_classes'):.3f}, {value('outside_classes'):.1%} outside"
    return text


def row(run: Path) -> str:
    r = json.loads((run / "metrics.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    figures = r.get("mean") if r["protocol"] == "folds" else {c: v for c, v in r["pooled"].items()}
    what = (f"{r['test_corpus']}, {len(r['folds'])} speaker folds" if r["protocol"] == "folds"
            else f"{'+'.join(r['corpora'])} → all of {r['test_corpus']}")
    return (f"| {what} | {'+'.join(r['corpora'])} | {len(r['classes'])} | {cell(figures['clean'])} | "
            f"{cell(figures['telephone']) if 'telephone' in figures else '–'} | `{cfg['command']}` |")


if __name__ == "__main__":
    print("| test set | trained on | classes | clean: UAR / acc. / macro-F1 | telephone channel | command |")
    print("|---|---|---|---|---|---|")
    for arg in sys.argv[1:]:
        print(row(Path(arg)))
