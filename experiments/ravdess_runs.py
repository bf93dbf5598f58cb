"""The RAVDESS experiments of docs/RESULTS.md: run named recipes, then tabulate them.

    python experiments/ravdess_runs.py list
    python experiments/ravdess_runs.py run deep_folds_speech baseline_folds_speech [--runs runs] [--folds 1,2] [--resume]
    python experiments/ravdess_runs.py run NAME --parallel [--folds 1,2] [--runs runs]
    python experiments/ravdess_runs.py table [NAME...] [--runs runs]
    python experiments/ravdess_runs.py ensemble NAME NAME... [--runs runs]
    python experiments/ravdess_runs.py breakdown NAME... [--runs runs]
    python experiments/ravdess_runs.py tta NAME... [--speeds 0.9,1.1] [--runs runs]
    python experiments/ravdess_runs.py speaker-groups NAME... [--group-sizes 5,10,20] [--runs runs]
    python experiments/ravdess_runs.py compare NAME... [--against deep_ema_last_folds_speech] [--telephone] [--runs runs]
    python experiments/ravdess_runs.py windows NAME... [--runs runs]
    python experiments/ravdess_runs.py archive NAME... --to docs/runs/GROUP [--runs runs]
    python experiments/ravdess_runs.py pair BAND COMPANION [--to DIR] [--runs runs]
    python experiments/ravdess_runs.py statements NAME... [--runs runs]

`run` calls `ser train` for each recipe, one after the other (each uses every core),
into RUNS/NAME with the log in RUNS/NAME.log; with `--parallel`, all folds of a recipe
at once, one process each (on a GPU: `KERAS_BACKEND=jax`, as docs/RESULTS.md's GPU
screens ran), joined into RUNS/NAME. `table` reads every RUNS/*/metrics.json and prints
one Markdown row per run: mean ± sd over the held-out splits of accuracy,
UAR and macro-F1 (clean audio), UAR through the telephone channel when it was
measured, intensity accuracy, summed training time, model size and CPU inference time per
segment (the first split's model, batches of 64 and single segments), and the command.
`ensemble` averages the class probabilities that finished runs gave the same held-out
clips (their `predictions.csv`) and prints the same figures for the average.
`breakdown` says where a run succeeds: accuracy per held-out actor, UAR per sex,
accuracy per intensity, top-2 accuracy. `tta` re-scores a run's saved split models with
test-time augmentation (the held-out clips also at other speeds, probabilities averaged).
`compare` sets screened recipes (often run on `--folds 1,2` only) against a reference run
on the same folds, paired by fold. `speaker-groups` re-scores a speaker-normalised run with its statistics taken from less of
each speaker's audio (one clip, random groups of k clips). `windows` re-scores a run's
saved split models on whole utterances, as `ser predict` does, instead of each clip's first window.
`archive` copies a finished run's figures (config, commands, metrics, report and gzipped
predictions; no models) into the repository, so `table`, `ensemble`, `breakdown` and
`compare` work on a fresh checkout with `--runs docs/runs/GROUP`. `pair` attaches each fold
model of a full-band run to the same fold's model of a telephone-band run, as the shipped
bundle carries its wideband companion, for `experiments/robustness.py`. `statements` scores
each of RAVDESS's two sentences apart; for runs trained on one of them (`ser train
--train-statements`), it sets each fold's heard sentence against the unheard one.
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

import numpy as np
import pandas as pd

from ser_core.labels import EMOTIONS, parse_ravdess_name
from ser_core.metrics import classification_metrics, summarize

# the deep model learns slowly under its augmentation: a longer schedule (docs/RESULTS.md, levers)
SCHEDULE = ["--train", "epochs=100", "--train", "learning_rate=0.002"]
LONG = [*SCHEDULE, "--train", "patience=25"]
EMA = ["--train", "ema_momentum=0.99"]
# the best deep recipe: LONG's schedule, weight averaging, the last epoch's averaged weights
# (no early stopping; what `--protocol all` trains for a bundle). It is the deep model's
# default (TrainConfig.for_model) and spelled out here so that the commands stay pinned.
BEST = [*SCHEDULE, *EMA, "--train", "patience=0"]
# the shared TrainConfig defaults (the baseline's recipe), pinned for deep runs that used them
V1 = ["--train", "epochs=60", "--train", "learning_rate=0.001", "--train", "patience=12", "--train", "ema_momentum=0"]
BAND = ["--feature", "fmin=300", "--feature", "fmax=3400", "--train", "telephone_augment=true", "--test-telephone"]
# the study as published: 128 mel x 90 frames for the deep model, flatten + dense 1024, no augmentation
STUDY_TRAIN = ["--train", "mixup_alpha=0", "--train", "freq_masks=0", "--train", "time_masks=0",
               "--train", "label_smoothing=0"]
STUDY = {"baseline": ["--arch", "pooling=flatten", *STUDY_TRAIN],
         "deep": ["--feature", "n_mels=128", "--feature", "frames=90", "--arch", "pooling=flatten", *V1, *STUDY_TRAIN]}
PROTOCOLS = {"folds": ["--protocol", "folds"], "seed": ["--protocol", "seed-split"]}
CHANNELS = {"speech": ["--channels", "speech"], "both": ["--channels", "both"]}

# name -> `ser train` arguments (besides --out): MODEL[_VARIANT]_PROTOCOL_CHANNELS
RECIPES: dict[str, list[str]] = {}
for _model in ("baseline", "deep"):
    for _p, _pargs in PROTOCOLS.items():
        for _c, _cargs in CHANNELS.items():
            RECIPES[f"{_model}_{_p}_{_c}"] = ["--model", _model, *_pargs, *_cargs, *(BEST if _model == "deep" else [])]
            RECIPES[f"study_{_model}_{_p}_{_c}"] = ["--model", _model, *_pargs, *_cargs, *STUDY[_model]]
_SPEECH_FOLDS = ["--model", "deep", "--protocol", "folds", "--channels", "speech"]
_BOTH_FOLDS = ["--model", "deep", "--protocol", "folds", "--channels", "both"]
# the path to BEST (docs/RESULTS.md section 1): early stopping without, then with, weight averaging
RECIPES["deep_long_folds_speech"] = [*_SPEECH_FOLDS, *LONG, "--train", "ema_momentum=0"]
RECIPES["deep_ema_folds_speech"] = [*_SPEECH_FOLDS, *LONG, *EMA]
RECIPES["deep_ema_last_folds_speech"] = [*_SPEECH_FOLDS, *BEST]  # = deep_folds_speech
# the shipped bundle's recipe, scored clean and through the telephone channel
RECIPES["deep_band_ema_last_folds_speech"] = [*_SPEECH_FOLDS, *BEST, *BAND]
# the same on speech and song, as the bundle is trained since 2026-11-26
RECIPES["deep_band_folds_both"] = [*_BOTH_FOLDS, *BEST, *BAND]
# levers and ablations of BEST
RECIPES["deep_speed_folds_speech"] = [*_SPEECH_FOLDS, *BEST, "--train", "speed_perturb=[0.9,1.1]"]
RECIPES["deep_room_folds_speech"] = [*_SPEECH_FOLDS, *BEST, "--train", "room_augment=true"]
RECIPES["deep_4block_folds_speech"] = [*_SPEECH_FOLDS, *BEST, "--arch", "filters=[32,64,128,256]"]
RECIPES["deep_4block_folds_both"] = [*_BOTH_FOLDS, *BEST, "--arch", "filters=[32,64,128,256]"]
# the next shipped recipe if the fourth block and the song clips add up
RECIPES["deep_4block_band_folds_both"] = [*_BOTH_FOLDS, *BEST, *BAND, "--arch", "filters=[32,64,128,256]"]
# ... with the noise-aware trim (the telephone channel's noise is within the 30 dB trim's reach)
RECIPES["deep_4block_band_noisetrim_folds_both"] = [*RECIPES["deep_4block_band_folds_both"],
                                                    "--feature", "trim_noise_margin_db=10"]
# ... trained twice as long (the GPU screen's largest gain on speech)
RECIPES["deep_4block_band_noisetrim_e200_folds_both"] = [*RECIPES["deep_4block_band_noisetrim_folds_both"],
                                                         "--train", "epochs=200"]
# ... on speech alone, narrow and twice as wide (the GPU screen's best single model, in the shipped form)
RECIPES["deep_4block_band_noisetrim_e200_folds_speech"] = [*_SPEECH_FOLDS, *BEST, *BAND, "--arch", "filters=[32,64,128,256]",
                                                           "--feature", "trim_noise_margin_db=10", "--train", "epochs=200"]
RECIPES["deep_4block_band_noisetrim_wide_e200_folds_speech"] = [*RECIPES["deep_4block_band_noisetrim_e200_folds_speech"],
                                                                "--arch", "filters=[64,128,256,512]"]
# [J]'s recipe on speech trained on one of RAVDESS's two sentences, a run for each: every held-out sentence is
# scored heard by one model and unheard by the other, a first step towards other words (`statements`)
for _s in (1, 2):
    RECIPES[f"deep_4block_band_noisetrim_bandspec_e200_statement{_s}_folds_speech"] = [
        *RECIPES["deep_4block_band_noisetrim_e200_folds_speech"], "--feature", "spectrogram_fmax=3400",
        "--train-statements", str(_s)]
# the shipped recipe twice as wide, and both with a mild (±5 %) vocal-tract-length warp (GPU screen 4)
RECIPES["deep_4block_band_noisetrim_wide_e200_folds_both"] = [*RECIPES["deep_4block_band_noisetrim_e200_folds_both"],
                                                              "--arch", "filters=[64,128,256,512]"]
RECIPES["deep_4block_band_noisetrim_vtlp05_e200_folds_both"] = [*RECIPES["deep_4block_band_noisetrim_e200_folds_both"],
                                                                "--train", "freq_warp=0.05"]
RECIPES["deep_4block_band_noisetrim_wide_vtlp05_e200_folds_both"] = [
    *RECIPES["deep_4block_band_noisetrim_wide_e200_folds_both"], "--train", "freq_warp=0.05"]
# ... and with speed-perturbed training views (two more feature caches), at 200 and 100 epochs
RECIPES["deep_4block_band_noisetrim_speed_e200_folds_both"] = [*RECIPES["deep_4block_band_noisetrim_e200_folds_both"],
                                                               "--train", "speed_perturb=[0.9,1.1]"]
RECIPES["deep_4block_band_noisetrim_speed_folds_both"] = [*RECIPES["deep_4block_band_noisetrim_folds_both"],
                                                          "--train", "speed_perturb=[0.9,1.1]"]
# the linear spectrogram channel band-limited too (300-3400 Hz at STFT resolution): the telephone-band
# recipes restrict the mel channels only, so their linear channel still reads 3.4-8 kHz on wideband audio
RECIPES["deep_4block_band_noisetrim_bandspec_folds_both"] = [*RECIPES["deep_4block_band_noisetrim_folds_both"],
                                                             "--feature", "spectrogram_fmax=3400"]
RECIPES["deep_4block_band_noisetrim_bandspec_e200_folds_both"] = [*RECIPES["deep_4block_band_noisetrim_e200_folds_both"],
                                                                  "--feature", "spectrogram_fmax=3400"]
# ... with a training view in white or pink background noise at 0-20 dB SNR (experiments/robustness.py:
# 10 dB of noise cost the screened models 21-25 points), and with both changes
RECIPES["deep_4block_band_noisetrim_noise_folds_both"] = [*RECIPES["deep_4block_band_noisetrim_folds_both"],
                                                          "--train", "noise_augment=true"]
RECIPES["deep_4block_band_noisetrim_noise_e200_folds_both"] = [*RECIPES["deep_4block_band_noisetrim_e200_folds_both"],
                                                               "--train", "noise_augment=true"]
RECIPES["deep_4block_band_noisetrim_bandspec_noise_e200_folds_both"] = [
    *RECIPES["deep_4block_band_noisetrim_bandspec_e200_folds_both"], "--train", "noise_augment=true"]
# ... on the shipped recipe [J], a training view in the babble of the other actors of each clip's fold at
# 0-20 dB SNR (babble at 10 dB costs [J]'s recipe 23 points, the largest loss left in experiments/robustness.py)
RECIPES["deep_4block_band_noisetrim_bandspec_babble_folds_both"] = [
    *RECIPES["deep_4block_band_noisetrim_bandspec_folds_both"], "--train", "babble_augment=true"]
RECIPES["deep_4block_band_noisetrim_bandspec_babble_e200_folds_both"] = [
    *RECIPES["deep_4block_band_noisetrim_bandspec_e200_folds_both"], "--train", "babble_augment=true"]
# ... on [J]'s recipe, half the training examples replaced by a random stretch (at least 0.5 s) of their
# utterance: call turns are often shorter than a sentence (a 1 s middle stretch costs [J]'s recipe 26 points,
# experiments/robustness.py), and the model should not lean on the contour of RAVDESS's two whole sentences
RECIPES["deep_4block_band_noisetrim_bandspec_crop_folds_both"] = [
    *RECIPES["deep_4block_band_noisetrim_bandspec_folds_both"], "--train", "crop_prob=0.5"]
# (on folds 1-2 at 100 epochs: +7.8 at 1 s, -6.1 on whole sentences; a milder share at 200 epochs next)
RECIPES["deep_4block_band_noisetrim_bandspec_crop25_e200_folds_both"] = [
    *RECIPES["deep_4block_band_noisetrim_bandspec_e200_folds_both"], "--train", "crop_prob=0.25"]
# ... [J]'s recipe pooling statistics over the utterance's real frames only, not its edge padding: a short
# turn is then read from its own frames, not from a long run of its last frame repeated
RECIPES["deep_4block_band_noisetrim_bandspec_realpool_folds_both"] = [
    *RECIPES["deep_4block_band_noisetrim_bandspec_folds_both"], "--arch", "pool_real_frames=true"]
RECIPES["deep_4block_band_noisetrim_bandspec_realpool_e200_folds_both"] = [
    *RECIPES["deep_4block_band_noisetrim_bandspec_e200_folds_both"], "--arch", "pool_real_frames=true"]
# ... both: with real-frame pooling a random stretch reaches the pooling as a short turn does (folds 1-2:
# real-frame pooling -2.0 whole / +4.1 at 1 s, crops at 0.5 -6.1 / +7.8), so a quarter of the examples cropped
RECIPES["deep_4block_band_noisetrim_bandspec_realpool_crop25_folds_both"] = [
    *RECIPES["deep_4block_band_noisetrim_bandspec_realpool_folds_both"], "--train", "crop_prob=0.25"]
RECIPES["deep_4block_band_noisetrim_bandspec_realpool_crop25_e200_folds_both"] = [
    *RECIPES["deep_4block_band_noisetrim_bandspec_realpool_e200_folds_both"], "--train", "crop_prob=0.25"]
# ... and with a reverberant-room training view instead (speakerphones, headsets in rooms)
RECIPES["deep_4block_band_noisetrim_room_folds_both"] = [*RECIPES["deep_4block_band_noisetrim_folds_both"],
                                                         "--train", "room_augment=true"]
# the spectrogram channel at STFT resolution below 1.3 kHz: the voice's harmonics (pitch, voice quality)
# resolved, instead of 125 Hz bands over 0-8 kHz that the mel channels already cover
RECIPES["deep_4block_pitchspec_folds_speech"] = [*RECIPES["deep_4block_folds_speech"],
                                                 "--feature", "spectrogram_fmax=1300"]
RECIPES["deep_4block_band_pitchspec_folds_both"] = [*RECIPES["deep_4block_band_folds_both"],
                                                    "--feature", "spectrogram_fmax=1300"]
# a CRNN: a bidirectional GRU (64 units each way) over the fourth block's time steps before the pooling
RECIPES["deep_4block_gru_folds_speech"] = [*RECIPES["deep_4block_folds_speech"], "--arch", "recurrent_units=64"]
# more capacity on the four-block model: twice the width, a fifth block, twice the epochs
RECIPES["deep_4block_wide_folds_speech"] = [*_SPEECH_FOLDS, *BEST, "--arch", "filters=[64,128,256,512]"]
RECIPES["deep_5block_folds_speech"] = [*_SPEECH_FOLDS, *BEST, "--arch", "filters=[32,64,128,256,512]"]
RECIPES["deep_4block_e200_folds_speech"] = [*RECIPES["deep_4block_folds_speech"], "--train", "epochs=200"]
RECIPES["deep_4block_wide_e200_folds_speech"] = [*RECIPES["deep_4block_wide_folds_speech"], "--train", "epochs=200"]
# the noise-aware trim (+4.1 clean in the shipped form) on the full-band speech recipes at 200 epochs
RECIPES["deep_4block_noisetrim_e200_folds_speech"] = [*RECIPES["deep_4block_e200_folds_speech"],
                                                      "--feature", "trim_noise_margin_db=10"]
RECIPES["deep_4block_wide_noisetrim_e200_folds_speech"] = [*RECIPES["deep_4block_wide_e200_folds_speech"],
                                                           "--feature", "trim_noise_margin_db=10"]
# a full-band wideband companion that hears through noise: the companion recipe above with the white/pink noise
# view (the plain one collapses in wideband white noise: fold 1 at 20 dB SNR 0.336, section 1 of RESULTS)
RECIPES["deep_4block_noisetrim_noise_e200_folds_speech"] = [*RECIPES["deep_4block_noisetrim_e200_folds_speech"],
                                                            "--train", "noise_augment=true"]
# ... and one that hears through lossy coding: an MP3 training view (16 kHz MP3 files cost the companion alone
# 15 points on fold 1, and give the pair nothing, section 1 of RESULTS), alone and with the noise view
RECIPES["deep_4block_noisetrim_codec_e200_folds_speech"] = [*RECIPES["deep_4block_noisetrim_e200_folds_speech"],
                                                            "--train", "codec_augment=true"]
RECIPES["deep_4block_noisetrim_noise_codec_e200_folds_speech"] = [
    *RECIPES["deep_4block_noisetrim_noise_e200_folds_speech"], "--train", "codec_augment=true"]
# ... and that companion with the remaining training views (babble, room) or with random short crops (1 s turns)
RECIPES["deep_4block_noisetrim_noise_codec_babble_room_e200_folds_speech"] = [
    *RECIPES["deep_4block_noisetrim_noise_codec_e200_folds_speech"], "--train", "babble_augment=true",
    "--train", "room_augment=true"]
RECIPES["deep_4block_noisetrim_noise_codec_crop25_e200_folds_speech"] = [
    *RECIPES["deep_4block_noisetrim_noise_codec_e200_folds_speech"], "--train", "crop_prob=0.25"]
# residual blocks (two convolutions and a projected shortcut each) on the companion's recipe
RECIPES["deep_4block_noisetrim_residual_e200_folds_speech"] = [*RECIPES["deep_4block_noisetrim_e200_folds_speech"],
                                                               "--arch", "residual=true"]
RECIPES["deep_5block_e200_folds_speech"] = [*RECIPES["deep_5block_folds_speech"], "--train", "epochs=200"]
RECIPES["deep_4block_e300_folds_speech"] = [*RECIPES["deep_4block_folds_speech"], "--train", "epochs=300"]
RECIPES["deep_4block_e200_folds_both"] = [*RECIPES["deep_4block_folds_both"], "--train", "epochs=200"]
RECIPES["deep_4block_wide_e200_folds_both"] = [*_BOTH_FOLDS, *BEST, "--arch", "filters=[64,128,256,512]", "--train", "epochs=200"]
# vocal-tract-length perturbation: each training example's frequency axis stretched by up to ±10 %
RECIPES["deep_4block_vtlp_folds_speech"] = [*RECIPES["deep_4block_folds_speech"], "--train", "freq_warp=0.1"]
RECIPES["deep_4block_vtlp_e200_folds_speech"] = [*RECIPES["deep_4block_e200_folds_speech"], "--train", "freq_warp=0.1"]
RECIPES["deep_128mel_folds_speech"] = [*_SPEECH_FOLDS, *BEST, "--feature", "n_mels=128"]  # the study's 128 bands
RECIPES["deep_balanced_folds_speech"] = [*_SPEECH_FOLDS, *BEST, "--train", "balance_classes=true"]
# each actor's features standardised per band over all of that actor's clips (in a call: per channel)
RECIPES["deep_spknorm_folds_speech"] = [*_SPEECH_FOLDS, *BEST, "--feature", "speaker_norm=true"]
# no early stopping needs no validation actors: train on all 20 actors of the 5 training folds
RECIPES["deep_noval_folds_speech"] = [*_SPEECH_FOLDS, *BEST, "--train", "val_actors=0"]
RECIPES["deep_attention_folds_speech"] = [*_SPEECH_FOLDS, *BEST, "--arch", "pooling=attention"]
# ablation of BEST: one ingredient removed at a time
for _name, _args in {"normalize": ["--feature", "normalize=none"], "preemphasis": ["--feature", "preemphasis=0"],
                     "ema": ["--train", "ema_momentum=0"], "mixup": ["--train", "mixup_alpha=0"],
                     "specaugment": ["--train", "freq_masks=0", "--train", "time_masks=0"],
                     "smoothing": ["--train", "label_smoothing=0"], "stats_pooling": ["--arch", "pooling=flatten"]}.items():
    RECIPES[f"deep_no_{_name}_folds_speech"] = [*_SPEECH_FOLDS, *BEST, *_args]
_BASELINE_SPEECH = ["--model", "baseline", "--protocol", "folds", "--channels", "speech"]
RECIPES["baseline_no_normalize_folds_speech"] = [*_BASELINE_SPEECH, "--feature", "normalize=none"]
RECIPES["baseline_no_preemphasis_folds_speech"] = [*_BASELINE_SPEECH, "--feature", "preemphasis=0"]
# defaults changed on 2026-11-26; the recipes that ran before pin the earlier ones, so that their
# commands still reproduce them: three convolution blocks for the deep model (ModelConfig.for_model
# has four since), and the plain 30 dB trim (FeatureConfig's trim is noise-aware since)
for _args in RECIPES.values():
    if _args[:2] == ["--model", "deep"] and not any(a.startswith("filters=") for a in _args):
        _args += ["--arch", "filters=[32,64,128]"]
    if not any(a.startswith("trim_noise_margin_db=") for a in _args):
        _args += ["--feature", "trim_noise_margin_db=0"]


def command(name: str, runs: Path, folds: str | None, resume: bool = False) -> list[str]:
    extra = (["--folds", folds] if folds else []) + (["--resume"] if resume else [])
    return ["ser", "train", *RECIPES[name], *extra, "--out", str(runs / name)]


def run(names: list[str], runs: Path, folds: str | None, resume: bool = False) -> None:
    runs.mkdir(parents=True, exist_ok=True)
    for name in names:
        cmd = command(name, runs, folds, resume)
        print(f"[{time.strftime('%H:%M:%S')}] {shlex.join(cmd)}", flush=True)
        with open(runs / f"{name}.log", "a" if resume else "w") as log:
            # `ser` is `python -m ser_core.cli`: the same program without needing the venv on PATH
            status = subprocess.run([sys.executable, "-m", "ser_core.cli", *cmd[1:]], stdout=log,
                                    stderr=subprocess.STDOUT, check=False).returncode
        print(f"[{time.strftime('%H:%M:%S')}] {name}: exit {status}", flush=True)


def run_parallel(name: str, runs: Path, folds: str | None, resume: bool = False) -> None:
    """One `ser train --folds K` process per fold at once (a GPU shared by small models, or
    many cores), each into RUNS/NAME.parts/fold_K; then the finished folds are copied into
    RUNS/NAME and `ser train --resume` joins them (it scores their saved predictions)."""
    chosen = folds.split(",") if folds else [str(k) for k in range(1, 7)]
    parts = runs / f"{name}.parts"
    parts.mkdir(parents=True, exist_ok=True)
    procs = {}
    for k in chosen:
        cmd = command(name, parts, k, resume)[:-1] + [str(parts / f"fold_{k}")]
        print(f"[{time.strftime('%H:%M:%S')}] {shlex.join(cmd)}", flush=True)
        with open(parts / f"fold_{k}.log", "a" if resume else "w") as log:
            procs[k] = subprocess.Popen([sys.executable, "-m", "ser_core.cli", *cmd[1:]], stdout=log, stderr=subprocess.STDOUT)
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


def model_figures(bundle_dir: Path) -> tuple[int, float, float]:
    """Parameter count and milliseconds per segment: batched (64) and one at a time, after a warm-up."""
    from ser_core.bundle import load_bundle  # TensorFlow: only for `table`

    b = load_bundle(bundle_dir)
    shape = b.model.input.shape[1:]
    x = np.random.default_rng(0).standard_normal((64, *shape)).astype(np.float32)
    b.model.predict(x, verbose=0)
    t0 = time.perf_counter()
    for _ in range(3):
        b.model.predict(x, batch_size=64, verbose=0)
    batched = (time.perf_counter() - t0) / (3 * 64) * 1000
    one = x[:1]
    b.model.predict_on_batch(one)
    t0 = time.perf_counter()
    for _ in range(20):
        b.model.predict_on_batch(one)
    return b.model.count_params(), batched, (time.perf_counter() - t0) / 20 * 1000


def _ms(stat: dict, splits: int) -> str:
    """mean ± sd over splits (just the value for a single split)."""
    return f"{stat['mean']:.3f} ± {stat['sd']:.3f}" if splits > 1 else f"{stat['mean']:.3f}"


def table(runs: Path, names: list[str]) -> None:
    print("| run | splits | accuracy | UAR | macro-F1 | telephone UAR | intensity acc. | train time | "
          "model | CPU ms/segment (64-batch / single) | command |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    chosen = [runs / n / "metrics.json" for n in names] if names else sorted(runs.glob("*/metrics.json"))
    for metrics in chosen:
        r = json.loads(metrics.read_text())
        if "mean" not in r:
            continue
        run_dir = metrics.parent
        first = next(iter(r["folds"]))
        bundle = run_dir / first / "bundle"
        keras_file = bundle / "model.keras"
        if keras_file.exists():
            params, batched, single = model_figures(bundle)
            model = (f"{params / 1e3:.0f} k params, {keras_file.stat().st_size / 2**20:.1f} MiB | "
                     f"{batched:.2f} / {single:.1f}")
        else:  # an archived run keeps no models
            model = "– | –"
        m, n = r["mean"], len(r["folds"])
        tel = _ms(m["telephone"]["uar"], n) if "telephone" in m else "–"
        cmd = "` then `".join((run_dir / "command.txt").read_text().split("\n")[:-1])  # resumed runs: several
        print(f"| {run_dir.name} | {n} | {_ms(m['all']['accuracy'], n)} | **{_ms(m['all']['uar'], n)}** | "
              f"{_ms(m['all']['macro_f1'], n)} | {tel} | {_ms(m['all']['intensity_accuracy'], n)} | "
              f"{r.get('train_seconds', r['wall_seconds']) / 60:.0f} min | "
              f"{model} | `{cmd}` |")
        for group in ("speech", "song"):
            if group in m:
                tel = _ms(m[f"telephone_{group}"]["uar"], n) if f"telephone_{group}" in m else ""
                print(f"| ↳ {run_dir.name}, {group} clips only | | {_ms(m[group]['accuracy'], n)} | {_ms(m[group]['uar'], n)} | "
                      f"{_ms(m[group]['macro_f1'], n)} | {tel} | {_ms(m[group]['intensity_accuracy'], n)} | | | | |")


def ensemble_scores(predictions: list[pd.DataFrame]) -> dict[str, dict[str, list[float]]]:
    """Average the emotion probabilities of several runs over the held-out clips they all
    scored, and score the average per split: {condition: {metric: [one value per split]}}.
    Clips are matched by their path within the corpus, so runs made on different machines match."""
    tables = [p.assign(path=p["path"].str.split("/").str[-3:].str.join("/")).set_index(["condition", "split", "path"])
              .sort_index() for p in predictions]
    conditions = set.intersection(*(set(t.index.get_level_values("condition")) for t in tables))
    tables = [t[t.index.get_level_values("condition").isin(conditions)] for t in tables]
    if any(not t.index.equals(tables[0].index) for t in tables):
        raise ValueError("the runs did not score the same held-out clips")
    probs = np.mean([t[[f"p_{e}" for e in EMOTIONS]].to_numpy() for t in tables], axis=0)
    scored = tables[0].assign(pred_index=probs.argmax(axis=1))
    out: dict[str, dict[str, list[float]]] = {}
    for (condition, _), g in scored.groupby(level=["condition", "split"]):
        m = classification_metrics(g["true"].map(EMOTIONS.index), g["pred_index"])
        for k in ("accuracy", "uar", "macro_f1"):
            out.setdefault(condition, {}).setdefault(k, []).append(m[k])
    return out


def predictions(runs: Path, name: str, vocal_channel: str | None = None) -> pd.DataFrame:
    """A finished run's held-out predictions; with `vocal_channel`, only those clips
    (e.g. the speech of a speech+song run)."""
    path = runs / name / "predictions.csv"
    pred = pd.read_csv(path if path.exists() else path.with_suffix(".csv.gz"))  # archived runs: docs/runs
    return pred[pred["vocal_channel"] == vocal_channel] if vocal_channel else pred


def ensemble(runs: Path, names: list[str], vocal_channel: str | None = None, folds: str | None = None) -> None:
    """The averaged probabilities' scores as a RESULTS row (one name: that run's own scores,
    with its intensity accuracy); with `folds` (e.g. "1,2"), on those folds' clips only."""
    preds = [predictions(runs, n, vocal_channel) for n in names]
    if folds:
        preds = [p[p["split"].isin([f"fold_{k}" for k in folds.split(",")])] for p in preds]
    scores = ensemble_scores(preds)
    clean = {k: summarize(v) for k, v in scores["clean"].items()}
    n = len(scores["clean"]["uar"])
    tel = _ms(summarize(scores["telephone"]["uar"]), n) if "telephone" in scores else "–"
    print(f"| ensemble: {' + '.join(names)} | {n} | {_ms(clean['accuracy'], n)} | **{_ms(clean['uar'], n)}** | "
          f"{_ms(clean['macro_f1'], n)} | {tel} | – | – | – | – | "
          f"`python experiments/ravdess_runs.py ensemble {' '.join(names)}"
          f"{' --vocal-channel ' + vocal_channel if vocal_channel else ''}"
          f"{' --runs ' + str(runs) if runs != Path('runs') else ''}{' --folds ' + folds if folds else ''}` |")
    print("per split UAR: " + ", ".join(f"{u:.3f}" for u in scores["clean"]["uar"]))
    if len(preds) == 1:
        own = preds[0][preds[0]["condition"] == "clean"]
        per_split = (own["true_intensity"] == own["pred_intensity"]).groupby(own["split"]).mean()
        print(f"intensity accuracy: {per_split.mean():.3f} (mean over splits)")


def pair(runs: Path, band: str, companion: str, out: Path | None = None) -> Path:
    """Fold bundles of `band` with `companion`'s fold bundles attached as wideband companions
    (`ser attach-wideband`), in `OUT/fold_K/bundle` (default `runs/BAND_with_wideband`), for
    `experiments/robustness.py`; every fold with a bundle in both runs."""
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


def breakdown_scores(pred: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Where a run's clean held-out predictions succeed: accuracy per actor, UAR per sex
    (RAVDESS: odd actors male), accuracy per intensity, and top-2 accuracy."""
    clean = pred[pred["condition"] == "clean"]
    ok = clean["true"] == clean["pred"]
    probs = clean[[f"p_{e}" for e in EMOTIONS]].to_numpy()
    true = clean["true"].map(EMOTIONS.index).to_numpy()
    sex = np.where(clean["actor"] % 2 == 1, "male", "female")
    return {
        "actor_accuracy": {str(a): float(v) for a, v in ok.groupby(clean["actor"]).mean().items()},
        "sex_uar": {s: classification_metrics(true[sex == s], probs[sex == s].argmax(1))["uar"] for s in ("female", "male")},
        "intensity_accuracy": {str(i): float(v) for i, v in ok.groupby(clean["true_intensity"]).mean().items()},
        "top2_accuracy": {"all": float((np.argsort(-probs, axis=1)[:, :2] == true[:, None]).any(axis=1).mean())},
    }


def breakdown(runs: Path, names: list[str], vocal_channel: str | None = None) -> None:
    for name in names:
        pred = predictions(runs, name, vocal_channel)
        b = breakdown_scores(pred)
        actors = pd.Series(b.pop("actor_accuracy"))
        print(f"{name}: accuracy per held-out actor {actors.min():.2f}–{actors.max():.2f} (sd {actors.std():.3f}; "
              f"worst {', '.join(actors.nsmallest(3).index)}; best {', '.join(actors.nlargest(3).index)})")
        for key, values in b.items():
            print(f"  {key}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
        print(confusion_table(pred))


def confusion_table(pred: pd.DataFrame) -> str:
    """The clean held-out clips pooled over the folds: a markdown confusion matrix (rows
    true, columns predicted) with each class's recall and precision."""
    clean = pred[pred["condition"] == "clean"]
    m = classification_metrics(clean["true"].map(EMOTIONS.index), clean["pred"].map(EMOTIONS.index))
    lines = ["| true \\ predicted | " + " | ".join(EMOTIONS) + " | recall |", "|---" * (len(EMOTIONS) + 2) + "|"]
    for e, row in zip(EMOTIONS, m["confusion_matrix"]):
        lines.append(f"| {e} | " + " | ".join(map(str, row)) + f" | {m['per_class'][e]['recall']:.2f} |")
    lines.append("| precision | " + " | ".join(f"{m['per_class'][e]['precision']:.2f}" for e in EMOTIONS) + " | |")
    return "\n".join(lines)


def _held_out(runs: Path, name: str) -> tuple[Any, str, pd.DataFrame, list[str]]:
    """A finished run's feature config, model input name, clean held-out predictions and
    the sorted held-out paths (the file list whose features are extracted once)."""
    from ser_core.config import FeatureConfig, ModelConfig
    from ser_core.models import input_name

    config = json.loads((runs / name / "config.json").read_text())
    pred = predictions(runs, name)
    return (FeatureConfig.from_saved(config["feature_config"]), input_name(ModelConfig.from_saved(config["model_config"])),
            pred[pred["condition"] == "clean"], sorted(set(pred["path"])))


def tta(runs: Path, name: str, speeds: list[float]) -> None:
    """Test-time augmentation of a finished run, no training: each split's saved model scores
    its held-out clips as recorded and at `speeds`, and the class probabilities are averaged."""
    from ser_core.bundle import load_bundle
    from ser_core.training.cnn_features import extract_corpus
    from ser_core.training.views import View

    feature_cfg, field, clean, paths = _held_out(runs, name)
    index = {p: i for i, p in enumerate(paths)}
    views = [getattr(extract_corpus(paths, feature_cfg, view=View(speed=s)), field) for s in [1.0, *speeds]]
    plain, averaged = [], []
    for split, g in clean.groupby("split"):
        bundle = load_bundle(runs / name / split / "bundle")
        rows, true = g["path"].map(index).to_numpy(), g["true"].map(EMOTIONS.index).to_numpy()
        probs = [bundle.predict_inputs(v[rows])[0] for v in views]
        plain.append(classification_metrics(true, probs[0].argmax(1))["uar"])
        averaged.append(classification_metrics(true, np.mean(probs, axis=0).argmax(1))["uar"])
        print(f"{split}: UAR as recorded {plain[-1]:.3f}, averaged with speeds {speeds} {averaged[-1]:.3f}")
    n = len(plain)
    print(f"{name}: UAR {_ms(summarize(plain), n)} -> {_ms(summarize(averaged), n)} with test-time speeds {speeds}")


def windows(runs: Path, name: str) -> None:
    """Whole-utterance scoring of a finished run, no training: each split's saved model
    scores its held-out clips through `predict_files` (what `ser predict` and `ser evaluate`
    do: the fixed-length input slid over the whole trimmed utterance, probabilities
    averaged) against the run's own scores of each clip's first window."""
    from ser_core.bundle import load_bundle, predict_files

    pred = predictions(runs, name)
    uars: dict[str, dict[str, list[float]]] = {}
    lengths: dict[str, list[pd.DataFrame]] = {}
    for split, g_split in pred.groupby("split"):
        bundle = load_bundle(runs / name / split / "bundle")
        for condition, g in g_split.groupby("condition"):
            whole = predict_files(bundle, list(g["path"]), telephone=condition == "telephone").set_index(g.index)
            for channel, rows in [("all", g.index), *g.groupby("vocal_channel").groups.items()]:
                lengths.setdefault(f"{condition}, {channel}", []).append(whole.loc[rows, ["speech_s", "windows"]])
                true = g.loc[rows, "true"].map(EMOTIONS.index)
                for how, labels in (("first window", g.loc[rows, "pred"]), ("whole", whole.loc[rows, "label"])):
                    uar = classification_metrics(true, labels.map(EMOTIONS.index))["uar"]
                    uars.setdefault(f"{condition}, {channel}", {}).setdefault(how, []).append(uar)
    print(f"| {name}: held-out clips | trimmed length, median | longer than one window | UAR, first window | "
          "UAR, whole utterance | per split (first / whole) |")
    print("|---|---|---|---|---|---|")
    for key, by in uars.items():
        n, length = len(by["whole"]), pd.concat(lengths[key])
        per = ", ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(by["first window"], by["whole"]))
        print(f"| {key} | {length['speech_s'].median():.2f} s | {length['windows'].gt(1).mean():.0%} | "
              f"{_ms(summarize(by['first window']), n)} | {_ms(summarize(by['whole']), n)} | {per} |")


def speaker_groups(runs: Path, name: str, sizes: list[int], repeats: int = 3) -> None:
    """How much of a speaker's audio a speaker-normalised run needs at test time: each split's
    saved model scores its held-out clips standardised per actor (as in training), per clip
    alone, and per random group of k clips of one actor (as from a short call)."""
    from ser_core.bundle import load_bundle
    from ser_core.features import INPUT_TIME_AXIS, speaker_standardize
    from ser_core.training.cnn_features import extract_corpus

    feature_cfg, field, clean, paths = _held_out(runs, name)
    if not feature_cfg.speaker_norm:
        sys.exit(f"{name} was not trained with speaker_norm")
    time_axis = 1 + INPUT_TIME_AXIS[field]
    index = {p: i for i, p in enumerate(paths)}
    x = getattr(extract_corpus(paths, feature_cfg), field)
    rng = np.random.default_rng(0)
    scores: dict[str, list[float]] = {}
    for split, g in clean.groupby("split"):
        bundle = load_bundle(runs / name / split / "bundle")
        xs, true, actor = x[g["path"].map(index).to_numpy()], g["true"].map(EMOTIONS.index).to_numpy(), g["actor"].to_numpy()

        def uar(groups: np.ndarray) -> float:
            probs = bundle.predict_inputs(speaker_standardize(xs, groups, time_axis))[0]
            return classification_metrics(true, probs.argmax(1))["uar"]

        scores.setdefault("per actor (as trained)", []).append(uar(actor))
        scores.setdefault("per clip alone", []).append(uar(np.arange(len(xs))))
        for k in sizes:
            runs_k = []
            for _ in range(repeats):  # random groups of k clips within each actor
                groups = np.empty(len(xs), object)
                for a in np.unique(actor):
                    rows = rng.permutation(np.flatnonzero(actor == a))
                    groups[rows] = [f"{a}-{i // k}" for i in range(len(rows))]
                runs_k.append(uar(groups.astype(str)))
            scores.setdefault(f"per {k} clips of one actor", []).append(float(np.mean(runs_k)))
    n = len(scores["per clip alone"])
    for how, values in scores.items():
        print(f"| {how} | {_ms(summarize(values), n)} | {' / '.join(f'{v:.3f}' for v in values)} |")


def compare(runs: Path, names: list[str], against: str, telephone: bool = False, vocal_channel: str = "speech") -> None:
    """Screened levers against a reference run on the folds both finished: per-fold UAR
    (on `vocal_channel` clips where a run has them; with `telephone`, through the telephone
    channel), from each fold's predictions, their mean, and the paired difference."""
    def fold_uar(name: str) -> dict[str, float]:
        folds = {}
        pred = predictions(runs, name)
        for split, g in pred[pred["condition"] == ("telephone" if telephone else "clean")].groupby("split"):
            if (g["vocal_channel"] == vocal_channel).any():
                g = g[g["vocal_channel"] == vocal_channel]
            folds[split] = classification_metrics(g["true"].map(EMOTIONS.index), g["pred"].map(EMOTIONS.index))["uar"]
        return folds

    ref = fold_uar(against)
    print(f"| recipe | folds | UAR per fold | mean | {against} on the same folds | paired difference |")
    print("|---|---|---|---|---|---|")
    for name in names:
        mine = fold_uar(name)
        common = [f for f in mine if f in ref]
        if not common:
            continue
        a, r = np.array([mine[f] for f in common]), np.array([ref[f] for f in common])
        print(f"| {name} | {', '.join(f.split('_')[1] for f in common)} | {' / '.join(f'{v:.3f}' for v in a)} | "
              f"{a.mean():.3f} | {r.mean():.3f} | {a.mean() - r.mean():+.3f} ({(a > r).sum()} of {len(a)} folds better) |")


def statement_scores(pred: pd.DataFrame) -> dict[str, dict[int, dict[str, float]]]:
    """UAR per held-out split on each RAVDESS sentence (named in the file name):
    {condition: {statement: {split: UAR}}}."""
    pred = pred.assign(statement=[parse_ravdess_name(p).statement for p in pred["path"]])
    out: dict[str, dict[int, dict[str, float]]] = {}
    for (condition, statement, split), g in pred.groupby(["condition", "statement", "split"]):
        m = classification_metrics(g["true"].map(EMOTIONS.index), g["pred"].map(EMOTIONS.index))
        out.setdefault(condition, {}).setdefault(int(statement), {})[split] = m["uar"]
    return out


def statements(runs: Path, names: list[str], vocal_channel: str = "speech") -> None:
    """Held-out UAR on each of RAVDESS's two sentences, per run and condition. A run trained
    on one sentence (`--train-statements`) never heard the other; over such runs, the last
    rows pair each fold's heard and unheard sentence (with one run per sentence, each
    sentence counts once as heard and once as unheard, so their difficulty cancels)."""
    print("| run | trained on sentences | condition | UAR, sentence 1 | UAR, sentence 2 | 2 − 1 | 2 − 1 per fold |")
    print("|---|---|---|---|---|---|---|")
    pairs: dict[str, list[tuple[float, float]]] = {}
    for name in names:
        heard = json.loads((runs / name / "config.json").read_text()).get("train_statements", [1, 2])
        for condition, by_statement in statement_scores(predictions(runs, name, vocal_channel)).items():
            folds = sorted(by_statement[1])
            one, two = np.array([by_statement[1][f] for f in folds]), np.array([by_statement[2][f] for f in folds])
            print(f"| {name} | {', '.join(map(str, heard))} | {condition} | {_ms(summarize(one), len(one))} | "
                  f"{_ms(summarize(two), len(two))} | {two.mean() - one.mean():+.3f} | "
                  f"{' / '.join(f'{d:+.3f}' for d in two - one)} |")
            if len(heard) == 1:
                pairs.setdefault(condition, []).extend(
                    (by_statement[heard[0]][f], by_statement[3 - heard[0]][f]) for f in folds)
    for condition, scores in pairs.items():
        h, u = np.array(scores).T
        print(f"| single-sentence runs, heard against unheard sentence | | {condition} | heard {h.mean():.3f} | "
              f"unheard {u.mean():.3f} | {u.mean() - h.mean():+.3f} | {(u < h).sum()} of {len(h)} fold runs lower |")


ARCHIVED = ("config.json", "command.txt", "metrics.json", "report.md")


def archive(runs: Path, names: list[str], to: Path) -> None:
    """The run's figures without its models, for committing (see the module docstring)."""
    for name in names:
        dest = to / name
        dest.mkdir(parents=True, exist_ok=True)
        for f in ARCHIVED:
            shutil.copy(runs / name / f, dest / f)
        predictions(runs, name).to_csv(dest / "predictions.csv.gz", index=False)
        print(f"{runs / name} -> {dest}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("list", "run", "table", "ensemble", "breakdown", "tta", "speaker-groups", "compare",
                                       "windows", "archive", "pair", "statements"))
    ap.add_argument("names", nargs="*", help="recipes to run (see `list`), or runs to tabulate (default: all)")
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--folds", help="only these folds, e.g. 1,2 (default: all six)")
    ap.add_argument("--speeds", default="0.9,1.1", help="tta: test-time speeds besides 1.0")
    ap.add_argument("--vocal-channel", choices=("speech", "song"),
                    help="ensemble, breakdown, compare, statements: only these held-out clips")
    ap.add_argument("--to", type=Path, help="archive: the folder to copy runs into, e.g. docs/runs/gpu_jax_s11; "
                    "pair: the folder for the paired bundles (default: runs/BAND_with_wideband)")
    ap.add_argument("--against", default="deep_ema_last_folds_speech", help="compare: the reference run")
    ap.add_argument("--telephone", action="store_true", help="compare: UAR through the telephone channel")
    ap.add_argument("--group-sizes", default="5,10,20", help="speaker-groups: clips per random group of one actor")
    ap.add_argument("--parallel", action="store_true",
                    help="run: one process per fold at once, then join them (for a GPU: set KERAS_BACKEND=jax)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the splits a run with the same recipe already finished (e.g. screened on --folds 1,2)")
    args = ap.parse_intermixed_args()
    if args.action == "list":
        for name in RECIPES:
            print(shlex.join(command(name, args.runs, args.folds)))
    elif args.action == "run":
        unknown = set(args.names) - set(RECIPES)
        if unknown or not args.names:
            sys.exit(f"name recipes to run; unknown: {sorted(unknown)}; known: {sorted(RECIPES)}")
        if args.parallel:
            for name in args.names:
                run_parallel(name, args.runs, args.folds, args.resume)
        else:
            run(args.names, args.runs, args.folds, args.resume)
    elif args.action == "ensemble":
        ensemble(args.runs, args.names, args.vocal_channel, args.folds)
    elif args.action == "breakdown":
        breakdown(args.runs, args.names, args.vocal_channel)
    elif args.action == "statements":
        statements(args.runs, args.names, args.vocal_channel or "speech")
    elif args.action == "compare":
        compare(args.runs, args.names, args.against, args.telephone, args.vocal_channel or "speech")
    elif args.action == "speaker-groups":
        for name in args.names:
            speaker_groups(args.runs, name, [int(k) for k in args.group_sizes.split(",")])
    elif args.action == "windows":
        for name in args.names:
            windows(args.runs, name)
    elif args.action == "archive":
        if not args.to:
            sys.exit("archive needs --to")
        archive(args.runs, args.names, args.to)
    elif args.action == "pair":
        if len(args.names) != 2:
            sys.exit("pair needs two runs: the band-limited one and its full-band companion")
        print(pair(args.runs, *args.names, out=args.to))
    elif args.action == "tta":
        for name in args.names:
            tta(args.runs, name, [float(f) for f in args.speeds.split(",")])
    else:
        table(args.runs, args.names)


if __name__ == "__main__":
    main()
