"""medad end to end against the study's public code path, for the paper's AE on the CPU (issue 16).

    python benchmarks/study_ae.py [--epochs 100 --n-train 400 --n-test 100 --size 64 --repeat 2]
                                  [--also=--channels-last --also="--precision bf16"]

Both sides read the same PNG files, written first into a temporary folder in medad's `folder`
layout (``train/normal``, ``test/normal``, ``test/abnormal``, ``test/masks``) from the embedded
``synth-brain`` generator, and each runs in a fresh process timed from its start to its exit.

* the study (re-implemented from the loop of MedIAnomaly's public code, github.com/caiyu6666/
  MedIAnomaly: ``train.py``, ``utils/base_worker.py``, ``utils/ae_worker.py``,
  ``dataloaders/dataload.py``, ``dataloaders/data_utils.py``): images opened with PIL, converted
  to grayscale and resized bilinearly in a joblib pool and kept as PIL images; a Dataset applying
  ``ToTensor`` and ``Normalize(0.5, 0.5)`` to every item, every epoch; a shuffled DataLoader of
  batch 64; Adam (lr 1e-3, no weight decay); the loss read back with ``.item()`` every step; an
  evaluation at epoch 1, every 25 epochs (the study's ``eval_freq``) and at the end, each one a
  batch-1 loop over the test images with the input requiring gradients (the study scores without
  ``torch.no_grad``, for its gradient-based variants), the squared error as map, its mean as
  score and scikit-learn's AUROC and AP; the state dict saved at the end. Its W&B logging and FLOP
  count (``thop``) are left out, which only makes it faster. The network is medad's own AE
  (`AutoEncoder`, the paper's architecture), built from the same seed, so both sides compute the
  same thing; importing it stands in for the study's small ``networks/ae.py`` and is subtracted
  from the study's time. The study's pixel metrics are not computed (its Brain Tumor data has no
  masks), while medad computes every metric of a dataset with masks.
* medad: ``python -m medad run -m ae -d folder --data-root DATA --epochs N -r STORE --device cpu``,
  as a user runs it (start-up, listing and digesting the folder, decoding, training, scoring the
  test split and the training images for the thresholds, evaluation, the run folder and the
  store row). The process is started through this script's ``--medad-worker``, which wraps the
  stages of `medad.runs.produce` with timers and then runs the CLI unchanged, so the breakdown
  comes from the same run.

`--also` adds rows for medad with opt-in options (which change the arithmetic, so the numbers
are not bit-identical to the default's). Each side runs `--repeat` times (default 2), alternating
which goes first since the load of a shared machine drifts; the best wall time of each counts.
Printed: both wall times and CPU times (user + system, the steadier measure on a loaded machine),
the ratio (target ≥ 1.5×), both image AUROCs (they should agree within seed noise: the batch order
differs) and where each side spends its time. Nothing is stored.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: the reference's import of medad's network, which stands in for the study's own module
STAND_IN = "medad's network module (not counted)"
#: the study evaluates at epoch 1 and every `eval_freq` epochs (its options.py default)
STUDY_EVAL_FREQ = 25


# ---------------------------------------------------------------------------------------------
# data


def write_dataset(root: Path, n_train: int, n_test: int, size: int) -> None:
    """synth-brain as PNG files in medad's `folder` layout (masks 0/255 beside the abnormals)."""
    import numpy as np
    from PIL import Image

    from medad.data import synthetic

    def save(images: np.ndarray, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            Image.fromarray(image).save(folder / f"{i:05d}.png")

    train = synthetic.generate("brain", n_train, size=size, stream=synthetic.TRAIN_STREAM)
    normal = synthetic.generate("brain", n_test, size=size, stream=synthetic.TEST_NORMAL_STREAM)
    abnormal = synthetic.generate(
        "brain", n_test, size=size, stream=synthetic.TEST_ABNORMAL_STREAM, abnormal=True
    )
    save(train.images, root / "train" / "normal")
    save(normal.images, root / "test" / "normal")
    save(abnormal.images, root / "test" / "abnormal")
    save(abnormal.masks.astype(np.uint8) * 255, root / "test" / "masks")


# ---------------------------------------------------------------------------------------------
# the study's loop (runs in its own process: `--reference-worker`)


# ---------------------------------------------------------------------------------------------
# the study's data path and evaluation loop (also the batch-1 reference of benchmarks/engine.py)


def study_transform() -> Any:
    """The study's per-item transform of a grayscale PIL image: ToTensor, Normalize(0.5, 0.5)."""
    from torchvision import transforms

    return transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])


class PILImages:
    """The study's Dataset: images decoded once and kept as PIL images; the transform runs on
    every item (every epoch in training, every evaluation in scoring), and items carry their
    image's name, as the study's do."""

    def __init__(
        self, images: list[Any], labels: list[int], transform: Any, names: list[str]
    ) -> None:
        self.images, self.labels, self.transform, self.names = images, labels, transform, names

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = self.transform(self.images[i])
        return {"img": image, "label": self.labels[i], "name": self.names[i]}

    def __len__(self) -> int:
        return len(self.images)


def study_scores(net: Any, test_loader: Any) -> tuple[Any, Any]:
    """The study's evaluation of its AE (`ae_worker.eval_func`): batch size 1, the network's
    parameters frozen but the input requiring gradients (it scores without ``torch.no_grad``,
    for its gradient-based variants), the squared error as map and its mean as the image score.
    Returns (scores, labels) as NumPy arrays; the parameters require gradients again after."""
    import numpy as np
    import torch

    net.eval()
    for p in net.parameters():
        p.requires_grad = False
    maps, labels = [], []
    for batch in test_loader:
        img = batch["img"]
        img.requires_grad = True
        maps.append(((img - net(img)) ** 2).detach().cpu())
        labels.append(batch["label"].item())
    for p in net.parameters():
        p.requires_grad = True
    scores = torch.mean(torch.cat(maps), dim=[1, 2, 3]).numpy()
    return scores, np.array(labels)


def reference_worker(data: Path, epochs: int, size: int, seed: int, out: Path) -> None:
    """The study's training and evaluation loop (see the module docstring); prints JSON."""
    marks: dict[str, float] = {"start": time.perf_counter()}
    import random

    import numpy as np
    import torch
    from joblib import Parallel, delayed
    from PIL import Image
    from scipy import ndimage  # noqa: F401 - the study's dataload.py imports it at top level
    from sklearn import metrics
    from torch.utils.data import DataLoader
    from torchvision import transforms  # noqa: F401 - the study imports it at top level

    marks["imports"] = time.perf_counter()
    # medad's module stands in for the study's few lines of networks/ae.py: not counted
    from medad.methods.parts.autoencoder import AutoEncoder

    marks["network module"] = time.perf_counter()

    def open_resized(path: Path) -> Image.Image:
        return Image.open(path).convert("L").resize((size, size), resample=Image.BILINEAR)

    def decoded(files: list[Path]) -> list[Image.Image]:
        return Parallel(n_jobs=-1)(delayed(open_resized)(f) for f in files)

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the study seeds NumPy's global generator
    torch.manual_seed(seed)
    net = AutoEncoder(1, size)  # the paper's AE: latent 16, width 16, FC 1024 (its defaults)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=0.0)

    transform = study_transform()
    train_files = sorted((data / "train" / "normal").glob("*.png"))
    normal = sorted((data / "test" / "normal").glob("*.png"))
    abnormal = sorted((data / "test" / "abnormal").glob("*.png"))
    train_set = PILImages(
        decoded(train_files), [0] * len(train_files), transform, [f.stem for f in train_files]
    )
    test_files = normal + abnormal
    test_labels = [0] * len(normal) + [1] * len(abnormal)
    test_set = PILImages(decoded(test_files), test_labels, transform, [f.stem for f in test_files])
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=1, shuffle=False)
    marks["load"] = time.perf_counter()

    def evaluate() -> dict[str, float]:
        scores, y = study_scores(net, test_loader)
        return {
            "auroc": float(metrics.roc_auc_score(y, scores)),
            "ap": float(metrics.average_precision_score(y, scores)),
            "normal_score": float(np.mean(scores[y == 0])),
            "abnormal_score": float(np.mean(scores[y == 1])),
        }

    train_s = eval_s = 0.0
    result: dict[str, float] = {}
    evaluations = 0
    for epoch in range(1, epochs + 1):
        t = time.perf_counter()
        net.train()
        total, count = 0.0, 0
        for batch in train_loader:
            img = batch["img"]
            loss = ((img - net(img)) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * img.size(0), count + img.size(0)
        train_s += time.perf_counter() - t
        if epoch == 1 or epoch % STUDY_EVAL_FREQ == 0 or epoch == epochs:
            t = time.perf_counter()
            result = evaluate()
            evaluations += 1
            eval_s += time.perf_counter() - t
    t = time.perf_counter()
    torch.save(net.state_dict(), out / "model.pt")
    marks["end"] = time.perf_counter()
    stages = {
        "imports": marks["imports"] - marks["start"],
        STAND_IN: marks["network module"] - marks["imports"],
        "model, optimiser, decoding (joblib)": marks["load"] - marks["network module"],
        "training": train_s,
        f"evaluation x{evaluations} (batch 1)": eval_s,
        "checkpoint": marks["end"] - t,
    }
    print(json.dumps({**result, "stages": stages, "start": marks["start"]}))


# ---------------------------------------------------------------------------------------------
# medad's CLI with stage timers (runs in its own process: `--medad-worker`)

#: (module, class or None, attribute, label) of the stages of `medad.runs.produce` (and the
#: planning before it), timed by wrapping them
STAGES = [
    ("medad.runs", None, "plan", "plan: list and digest the folder"),
    ("medad.runs", None, "load_split", "decode images"),
    ("medad.engine", None, "create_method", "build the network"),
    ("medad.engine", None, "train", "training"),
    ("torch", None, "save", "checkpoint"),
    ("medad.engine", None, "predict", "predict"),
    ("medad.predictions", "Predictions", "save", "save predictions.npz"),
    ("medad.runs", None, "fit_thresholds", "thresholds"),
    ("medad.runs", None, "evaluate", "evaluate"),
    ("medad.runs", None, "commit", "commit: run folder and store row"),
]


def medad_worker(timings: Path, argv: list[str]) -> None:
    """Run ``python -m medad ARGV`` in this process with the `STAGES` timed; write the times."""
    import importlib
    import runpy

    spans: list[tuple[str, float, float]] = []

    def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spans.append((label, t, time.perf_counter()))

        return wrapper

    for module, owner, name, label in STAGES:
        target = importlib.import_module(module)
        target = getattr(target, owner) if owner else target
        setattr(target, name, timed(label, getattr(target, name)))
    sys.argv = ["medad", *argv]
    try:
        runpy.run_module("medad", run_name="__main__", alter_sys=True)
    finally:
        timings.write_text(json.dumps({"spans": spans, "end": time.perf_counter()}))


# ---------------------------------------------------------------------------------------------
# driver


def run_process(args: list[str]) -> tuple[float, float, float, str]:
    """(start, wall seconds, CPU seconds, stdout) of ``python ARGS`` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cpu = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed: python {' '.join(args)}\n{done.stdout}\n{done.stderr}")
    return start, wall, _children_cpu() - cpu, done.stdout


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def medad_breakdown(start: float, wall: float, timings: dict[str, Any]) -> dict[str, float]:
    """Seconds per stage of the medad process; predict is split into its two calls."""
    spans = sorted(timings["spans"], key=lambda s: s[1])
    out: dict[str, float] = {}
    first = spans[0][1] if spans else start + wall
    out["start-up: interpreter, imports, CLI"] = first - start
    predicts = 0
    for label, a, b in spans:
        if label == "predict":
            label = ("score the test split", "score training images (thresholds)")[min(predicts, 1)]
            predicts += 1
        out[label] = out.get(label, 0.0) + b - a
    out["interpreter exit (after the CLI returned)"] = start + wall - timings["end"]
    out["rest: folders, config, logs, JSON"] = wall - sum(out.values())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--n-train", type=int, default=400, help="training images")
    parser.add_argument("--n-test", type=int, default=100, help="test images of each label")
    parser.add_argument("--size", type=int, default=64, help="image side (the AE's input)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of each side, alternating (best counts)"
    )
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="ARGS",
        help="time medad once more with these extra options, e.g. --also=--channels-last "
        "(an opt-in row beside the default one; repeatable)",
    )
    parser.add_argument("--reference-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--medad-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.medad_worker is not None:
        return medad_worker(args.medad_worker, [a for a in rest if a != "--"])
    if args.reference_worker is not None:
        return reference_worker(args.data, args.epochs, args.size, args.seed, args.reference_worker)

    import torch

    load = os.getloadavg()[0]
    medad_runs: list[dict[str, Any]] = []
    study_runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="medad-study-ae-") as tmp:
        data = Path(tmp) / "data"
        write_dataset(data, args.n_train, args.n_test, args.size)
        cli = ["run", "-m", "ae", "-d", "folder", "--data-root", str(data), "--epochs"]
        cli += [str(args.epochs), "--set", f"image_size={args.size}", "--seed", str(args.seed)]
        cli += ["--device", "cpu", "--json"]
        study = [__file__, "--data", str(data), "--epochs", str(args.epochs)]
        study += ["--size", str(args.size), "--seed", str(args.seed), "--reference-worker"]

        variant_runs: dict[str, list[dict[str, Any]]] = {v: [] for v in args.also}

        def medad_run(k: int, extra: list[str], into: list[dict[str, Any]]) -> None:
            tag = f"{k}-{sum(map(len, variant_runs.values())) + len(medad_runs)}"
            timings = Path(tmp) / f"timings{tag}.json"
            store = ["-r", str(Path(tmp) / f"store{tag}")]  # a new store: nothing is reused
            start, wall, cpu, out = run_process(
                [__file__, "--medad-worker", str(timings), "--", *cli, *extra, *store]
            )
            spans = json.loads(timings.read_text())
            result = json.loads(out.strip().splitlines()[-1])
            breakdown = medad_breakdown(start, wall, spans)
            into.append({"wall": wall, "cpu": cpu, "result": result, "stages": breakdown})

        def time_medad(k: int) -> None:
            medad_run(k, [], medad_runs)
            for variant, into in variant_runs.items():
                medad_run(k, variant.split(), into)

        def time_study(k: int) -> None:
            folder = Path(tmp) / f"reference{k}"
            folder.mkdir()
            start, wall, cpu, out = run_process([*study, str(folder)])
            ref = json.loads(out.strip().splitlines()[-1])
            stages = {"interpreter start": ref["start"] - start, **ref["stages"]}
            stages["rest: exit"] = wall - sum(stages.values())
            wall, cpu = wall - stages[STAND_IN], cpu - stages[STAND_IN]
            study_runs.append({"wall": wall, "cpu": cpu, "result": ref, "stages": stages})

        for k in range(args.repeat):  # alternate which side goes first: load drifts
            for side in (time_medad, time_study) if k % 2 == 0 else (time_study, time_medad):
                side(k)

    ours = min(medad_runs, key=lambda r: r["wall"])
    ref = min(study_runs, key=lambda r: r["wall"])
    print(
        f"paper AE, {args.epochs} epochs, {args.n_train} training images, "
        f"{2 * args.n_test} test images, {args.size}px PNG; cpu, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load average {load:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )
    print(f"medad:  python -m medad {' '.join(cli)} -r STORE")
    print(f"best of {args.repeat} runs each (all walls in brackets)")
    print(f"{'':<8}{'wall (s)':>10}{'CPU (s)':>10}{'image AUROC':>14}{'image AP':>10}")
    for name, best, runs, auroc, ap in (
        ("study", ref, study_runs, ref["result"]["auroc"], ref["result"]["ap"]),
        ("medad", ours, medad_runs, ours["result"]["image_auroc"], ours["result"]["image_ap"]),
    ):
        walls = ", ".join(f"{r['wall']:.1f}" for r in runs)
        print(
            f"{name:<8}{best['wall']:>10.1f}{best['cpu']:>10.1f}{auroc:>14.4f}{ap:>10.4f}"
            f"   [{walls}]"
        )
    print(
        f"end to end: medad {ref['wall'] / ours['wall']:.2f}x the study's speed "
        f"(target 1.5x; CPU time {ref['cpu'] / ours['cpu']:.2f}x)"
    )
    for variant, runs in variant_runs.items():  # opt-in options: other digits, other numbers
        best = min(runs, key=lambda r: r["wall"])
        walls = ", ".join(f"{r['wall']:.1f}" for r in runs)
        print(
            f"medad {variant}: {best['wall']:.1f} s, {ref['wall'] / best['wall']:.2f}x the "
            f"study's speed (CPU time {ref['cpu'] / best['cpu']:.2f}x), image AUROC "
            f"{best['result']['image_auroc']:.4f}, AP {best['result']['image_ap']:.4f}   [{walls}]"
        )
    for name, best in (("medad", ours), ("study", ref)):
        print(f"{name}, per stage (s), its best run:")
        for label, seconds in best["stages"].items():
            print(f"  {label:<42}{seconds:>8.2f}")


if __name__ == "__main__":
    main()
