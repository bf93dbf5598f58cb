"""The `ser` command: plot, train, evaluate, predict, download.

`train` and `download` import `ser_core.training` when they run; the other commands never do.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .config import FeatureConfig, ModelConfig, TrainConfig


def _config(cls, path: str | None, overrides: list[str], base=None):
    """A config from `base` (default: the class defaults), then an optional JSON file,
    then `key=value` overrides (values parsed as JSON)."""
    data = base.to_dict() if base is not None else {}
    data.update(json.loads(Path(path).read_text()) if path else {})
    for item in overrides:
        key, _, value = item.partition("=")
        try:
            data[key] = json.loads(value)
        except json.JSONDecodeError:
            data[key] = value
    return cls.from_dict(data)


def _cmd_plot(args) -> int:
    from .bundle import read_bundle_inputs
    from .encoder_bundle import EncoderInputs
    from .plots import plot_audio

    inputs, _ = read_bundle_inputs(args.model)
    cfg = _config(FeatureConfig, args.feature_config, args.feature, base=inputs.feature_config)
    for p in plot_audio(args.audio, args.out, cfg, encoder=isinstance(inputs, EncoderInputs)):
        print(p)
    return 0


def train_configs(args) -> tuple[FeatureConfig, ModelConfig, TrainConfig]:
    """`ser train`'s configs: each network's own defaults, then JSON files, then overrides.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed `ser train` arguments (`parser`): ``model``, ``feature_config``, ``feature``,
        ``model_config``, ``arch``, ``train_config`` and ``train``.

    Returns
    -------
    tuple of (FeatureConfig, ModelConfig, TrainConfig)

    Raises
    ------
    ValueError
        An unknown field, or a value a config refuses.
    """
    return (_config(FeatureConfig, args.feature_config, args.feature),
            _config(ModelConfig, args.model_config, [f"kind={json.dumps(args.model)}"] + args.arch,
                    base=ModelConfig.for_model(args.model)),
            _config(TrainConfig, args.train_config, args.train, base=TrainConfig.for_model(args.model)))


def _cmd_train_encoder(args, root: Path) -> int:
    """`ser train --model encoder`: the emotion head on the frozen encoder."""
    from .head import HeadConfig
    from .training.heads import HeadTrainConfig, run_head_protocol

    if args.protocol == "seed-split":
        sys.exit("--model encoder takes --protocol folds, cross or all")
    results = run_head_protocol(
        root, args.out, _config(HeadConfig, args.model_config, args.arch),
        _config(HeadTrainConfig, args.train_config, args.train),
        corpora=tuple(args.corpora.split(",")), protocol=args.protocol, test_corpus=args.test_corpus,
        folds=[int(f) for f in args.folds.split(",")] if args.folds else None,
        test_telephone=args.test_telephone, command=args.command_line, verbose=args.verbose)
    print(json.dumps(results.get("mean", results["folds"]), indent=2))
    print(f"reports in {args.out}")
    return 0


def _cmd_train(args) -> int:
    from .training.cnn_protocols import run_protocol
    from .training.data import data_dir

    root = data_dir(args.data)
    if root is None:
        sys.exit("no data: pass --data or set SER_DATA_DIR")
    if args.model == "encoder":
        return _cmd_train_encoder(args, root)
    if args.protocol == "cross":
        sys.exit("--protocol cross is for --model encoder")
    results = run_protocol(
        root, args.out, *train_configs(args),
        protocol=args.protocol, channels=args.channels,
        folds=[int(f) for f in args.folds.split(",")] if args.folds else None,
        command=args.command_line, verbose=args.verbose, test_telephone=args.test_telephone,
        resume=args.resume,
    )
    if args.cv_run and args.protocol == "all":
        from .bundle import attach_cross_validation

        attach_cross_validation(Path(args.out) / "bundle", args.cv_run)
    print(json.dumps(results.get("mean", results["folds"]), indent=2))
    print(f"reports in {args.out}")
    return 0


def _cmd_evaluate(args) -> int:
    from .bundle import load_bundle, predict_files
    from .evaluation import read_labelled_manifest, write_evaluation
    from .labels import EMOTIONS

    df = read_labelled_manifest(args.manifest)
    if "label" not in df.columns:
        sys.exit(f"{args.manifest} needs a 'label' column to evaluate")
    classes = args.classes.split(",") if args.classes else list(EMOTIONS)
    unknown = sorted(set(classes) - set(EMOTIONS))
    if unknown:
        sys.exit(f"--classes: unknown classes {unknown}; expected some of {list(EMOTIONS)}")
    bundle = load_bundle(args.model)
    pred = predict_files(bundle, df["path"], telephone=args.telephone)
    ok = pred["error"].isna().to_numpy()
    if args.classes:  # the top class among those the test set can have
        pred.loc[ok, "label"] = pred.loc[ok, classes].idxmax(axis=1)
    out = Path(args.out)
    m = write_evaluation(out, df["label"][ok].map(EMOTIONS.index), pred["label"][ok].map(EMOTIONS.index))
    pred.assign(true=df["label"]).to_csv(out / "predictions.csv", index=False)
    print(f"accuracy {m['accuracy']:.3f}  UAR {m['uar']:.3f}  macro-F1 {m['macro_f1']:.3f}  "
          f"on {m['n']} files ({(~ok).sum()} unusable), over {len(classes)} classes; reports in {out}")
    return 0


def _cmd_predict(args) -> int:
    from .bundle import load_bundle, predict_files
    from .evaluation import read_labelled_manifest

    df = read_labelled_manifest(args.manifest) if args.manifest else None
    paths = list(df["path"]) if df is not None else args.files
    if not paths:
        sys.exit("give audio files or --manifest")
    pred = predict_files(load_bundle(args.model), paths)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pred.to_csv(args.out, index=False)
    print(f"{len(pred)} rows ({pred['error'].notna().sum()} unusable) -> {args.out}")
    return 0


def _cmd_download(args) -> int:
    from .training.download import (CREMA_D_META_URL, CREMA_D_URL, ZENODO_URL, ChecksumError, download_crema_d,
                                    download_ravdess, parse_speakers)

    try:
        if args.corpus == "crema_d":
            manifest = download_crema_d(args.out, base_url=args.url or CREMA_D_URL, meta_url=args.meta_url or CREMA_D_META_URL,
                                        speakers=parse_speakers(args.speakers), jobs=args.jobs)
        else:
            manifest = download_ravdess(args.out, base_url=args.url or ZENODO_URL, channels=tuple(args.channels))
    except (ChecksumError, ValueError) as e:
        sys.exit(f"ser download: {e}")
    print(f"verified and converted; manifest: {manifest}\nuse it with: export SER_DATA_DIR={Path(args.out).resolve()}")
    return 0


def _cmd_attach_cv(args) -> int:
    from .bundle import attach_cross_validation

    cv = attach_cross_validation(args.bundle, args.cv_run)
    print(json.dumps(cv["mean"], indent=2))
    return 0


def _cmd_attach_wideband(args) -> int:
    from .bundle import attach_wideband

    print(f"model id of the pair: {attach_wideband(args.bundle, args.companion)}")
    return 0


def _cmd_report(args) -> int:
    import pandas as pd

    from .plots import plot_call_timeline

    def rows(table: str) -> pd.DataFrame:
        df = pd.read_parquet(Path(args.output) / table, filters=[("call_id", "==", args.call)])
        return df[df["date"].astype(str) == args.date] if args.date else df

    segments = rows("segments")
    if segments.empty:
        sys.exit(f"no segments for call {args.call!r} in {args.output}/segments")
    dates = sorted(segments["date"].astype(str).unique())
    if len(dates) > 1:
        sys.exit(f"call {args.call!r} was scored on several dates ({', '.join(dates)}): pass --date")
    calls = rows("calls")
    call = {**calls.iloc[0].to_dict(), "date": dates[0]} if len(calls) else {"date": dates[0]}
    print(plot_call_timeline(segments, args.out, title=f"call {args.call}", call=call))
    return 0


def _add_config_args(p: argparse.ArgumentParser, *kinds: str) -> None:
    for kind in kinds:
        p.add_argument(f"--{kind}-config", help=f"JSON file with {kind} settings")
        p.add_argument(f"--{kind}", action="append", default=[], metavar="KEY=VALUE",
                       help=f"override one {kind} setting (repeatable)")


def parser() -> argparse.ArgumentParser:
    """The `ser` argument parser; each subcommand sets ``func``, its handler.

    Returns
    -------
    argparse.ArgumentParser
    """
    ap = argparse.ArgumentParser(prog="ser", description="Speech emotion recognition toolkit.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plot", help="figures of one file as a bundle reads it")
    p.add_argument("audio")
    p.add_argument("--model", default="default",
                   help="bundle whose preprocessing and input are shown: 'default' (Whisper log-mel), 'cnn' "
                        "(the four representations) or a bundle directory")
    p.add_argument("--out", required=True, help="output directory for PNG files")
    _add_config_args(p, "feature")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("train", help="train and evaluate under a speaker-independent protocol")
    p.add_argument("--data", help="data folder holding ravdess/ and crema_d/ (default: $SER_DATA_DIR or ../shared/data)")
    p.add_argument("--model", choices=("encoder", "baseline", "deep"), default="encoder",
                   help="encoder: an emotion head on the frozen pretrained encoder (RAVDESS and CREMA-D); "
                        "baseline, deep: the study's CNNs on RAVDESS, each with its own architecture and recipe "
                        "(ModelConfig.for_model, TrainConfig.for_model)")
    p.add_argument("--protocol", choices=("folds", "cross", "seed-split", "all"), default="folds",
                   help="encoder: folds (of --test-corpus), cross (train on --corpora, test on --test-corpus), all")
    p.add_argument("--corpora", default="ravdess,crema_d", help="encoder: training corpora, comma-separated")
    p.add_argument("--test-corpus", choices=("ravdess", "crema_d"), help="encoder: corpus held out (folds, cross)")
    p.add_argument("--channels", choices=("speech", "song", "both"), default="speech",
                   help="which RAVDESS clips to train and test on")
    p.add_argument("--folds", help="comma-separated folds: which to run (folds), or whose actors to train on (all)")
    p.add_argument("--cv-run", help="with --protocol all: a finished folds run whose metrics go into the bundle")
    p.add_argument("--out", required=True, help="run directory for reports (and the bundle with --protocol all)")
    p.add_argument("--verbose", type=int, default=2, help="Keras verbosity (0, 1, 2)")
    p.add_argument("--resume", action="store_true",
                   help="keep the held-out splits already finished in --out by a run with the same configuration")
    p.add_argument("--test-telephone", action="store_true",
                   help="also score the test clips through the telephone channel (300-3400 Hz, 8 kHz, mu-law, 20 dB SNR)")
    _add_config_args(p, "feature", "train")
    p.add_argument("--model-config", help="JSON file with architecture settings")
    p.add_argument("--arch", action="append", default=[], metavar="KEY=VALUE", help="override one architecture setting")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="score a labelled manifest (path,label) with a bundle")
    p.add_argument("--model", default="default", help="bundle directory or 'default'")
    p.add_argument("--manifest", required=True, help="CSV with path and label columns")
    p.add_argument("--out", required=True)
    p.add_argument("--telephone", action="store_true",
                   help="pass every file through the simulated telephone channel first (robustness check)")
    p.add_argument("--classes", help="comma-separated classes the label is chosen among (default: all 8), "
                   "e.g. a corpus's own classes")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="class probabilities per file")
    p.add_argument("--model", default="default", help="bundle directory or 'default'")
    p.add_argument("--manifest", help="CSV with a path column")
    p.add_argument("files", nargs="*")
    p.add_argument("--out", required=True, help="output CSV")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("attach-cv", help="record a finished folds run's figures in a bundle (same recipe)")
    p.add_argument("bundle")
    p.add_argument("cv_run", help="run directory of `ser train --protocol folds`")
    p.set_defaults(func=_cmd_attach_cv)

    p = sub.add_parser("attach-wideband", help="copy a full-band bundle into a bundle as its wideband companion "
                       "(averaged in on wideband audio)")
    p.add_argument("bundle")
    p.add_argument("companion", help="bundle directory of a full-band model with the same preprocessing")
    p.set_defaults(func=_cmd_attach_wideband)

    p = sub.add_parser("report", help="picture of one call's emotion timeline from the job's output")
    p.add_argument("--output", required=True, help="the Beam job's output folder")
    p.add_argument("--call", required=True, help="call_id")
    p.add_argument("--date", help="partition date (needed when the call was scored on several dates)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("download", help="fetch RAVDESS (Zenodo) or CREMA-D (GitHub), verify sha256 of every file, convert")
    p.add_argument("--corpus", choices=("ravdess", "crema_d"), default="ravdess", help="default: %(default)s")
    p.add_argument("--out", required=True, help="data folder to create (holds ravdess/ or crema_d/ afterwards)")
    p.add_argument("--channels", nargs="+", choices=("speech", "song"), default=["speech", "song"],
                   help="ravdess only")
    p.add_argument("--url", help="base URL of the audio: RAVDESS archives (default: its Zenodo record) or "
                                 "CREMA-D AudioWAV files (default: its GitHub repository's Git LFS media)")
    p.add_argument("--meta-url",
                   help="crema_d: base URL of VideoDemographics.csv and processedResults/ (default: the CREMA-D "
                        "GitHub repository)")
    p.add_argument("--speakers", default="all",
                   help="crema_d: actor ids to fetch, e.g. 1001,1005-1010, or all (default: %(default)s, 91 actors)")
    p.add_argument("--jobs", type=int, default=4, help="crema_d: parallel downloads (default: %(default)s)")
    p.set_defaults(func=_cmd_download)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run one `ser` command.

    Parameters
    ----------
    argv : list of str, optional
        Arguments after ``ser``; default: ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status (0); errors exit through `SystemExit` with a message.
    """
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.command_line = "ser " + shlex.join(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
