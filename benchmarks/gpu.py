"""The GPU figures of issue 16, in one short run: the paper AE eager vs compiled vs bf16, a DAE
epoch at 128², PatchCore's fit, and scoring batched vs batch size 1.

    python benchmarks/gpu.py                      # CUDA: the issue's sizes
    python benchmarks/gpu.py --device cpu --n 64 --ae-epochs 2 --dae-n 16 --patchcore-n 32
                                                  # a quick check that every path runs

* AE: the paper AE (64², batch 64, Adam 5e-4) trained for `--ae-epochs` epochs (the study's 250)
  on `--n` synthetic brain images (4,000 by default) with `engine.train`: eager fp32 (the
  default), `--compile` (on CUDA torch.compile with CUDA graphs, "reduce-overhead"), and bf16
  autocast. Wall time of the training alone, after one warm-up epoch of the same variant.
* DAE: one epoch of `--dae-n` images (4,000) at 128², its U-Net (eager fp32).
* PatchCore: `fit` on `--patchcore-n` images (WideResNet-50 features when its weights are in the
  torch hub cache, else EfficientNet-Lite0 when medad[weights] is installed, else a random
  ResNet18: the figure is the time, not the accuracy).
* scoring: the AE's test split scored batched (the largest batch that fits) vs batch size 1.

Many runs per GPU are timed by `benchmarks/gpu_grid.py`. Nothing is stored: the figures are
printed with the device and versions, for `benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from engine import brain_setup  # benchmarks/engine.py (medad.engine is `engine` below)

from medad import engine


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_seconds(name, overrides, n, device, options=None) -> tuple[float, object]:
    """Wall time of `engine.train` after a one-epoch warm-up run of the same variant."""
    warm = {**overrides, "epochs": 1}
    cls, config, pre, train, test, ds = brain_setup(name, warm, n)
    method = engine.create_method(cls, config, ds.channels, 0)
    engine.train(method, train, pre, device=device, progress=False, options=options)
    cls, config, pre, train, test, ds = brain_setup(name, overrides, n)
    method = engine.create_method(cls, config, ds.channels, 0)
    _sync(device)
    start = time.perf_counter()
    engine.train(method, train, pre, device=device, progress=False, options=options)
    _sync(device)
    return time.perf_counter() - start, (method, pre, test)


def patchcore_backbone() -> dict[str, str]:
    """The study's backbone when its ImageNet weights are here, else one that is."""
    from medad.methods.weights import locate

    for name in ("wide_resnet50_2", "efficientnet_lite0"):
        if locate(name).present:
            return {"backbone": name, "weights": "imagenet"}
    return {"backbone": "resnet18", "weights": "random"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n", type=int, default=4000, help="AE training images")
    parser.add_argument("--ae-epochs", type=int, default=250)
    parser.add_argument("--dae-n", type=int, default=4000, help="DAE images (one epoch)")
    parser.add_argument("--patchcore-n", type=int, default=1000)
    args = parser.parse_args()
    device = engine.resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"device: {device} ({name}); torch {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"{torch.get_num_threads()} CPU threads, numpy {np.__version__}")

    ae = {"epochs": args.ae_epochs}
    rows = []
    eager, (method, pre, test) = train_seconds("ae", ae, args.n, device)
    rows.append(("AE eager fp32", eager))
    variants = {
        "AE --compile": engine.TrainOptions(compile=True),
        "AE --precision bf16": engine.TrainOptions(precision="bf16"),
    }
    for label, options in variants.items():
        try:
            rows.append((label, train_seconds("ae", ae, args.n, device, options)[0]))
        except Exception as exc:  # noqa: BLE001 - a variant the device lacks is reported
            print(f"{label}: failed ({type(exc).__name__}: {exc})")
    print(f"AE: {args.ae_epochs} epochs on {args.n} images at 64² (target on a GPU: <= 15 s)")
    for label, seconds in rows:
        print(f"  {label:<24}{seconds:>9.2f} s{eager / seconds:>8.2f}x vs eager")

    seconds, _ = train_seconds("dae", {"epochs": 1}, args.dae_n, device)
    print(f"DAE: one epoch of {args.dae_n} images at 128²: {seconds:.2f} s")

    backbone = patchcore_backbone()
    cls, config, pre_pc, train_pc, _, ds = brain_setup("patchcore", backbone, args.patchcore_n)
    pc = engine.create_method(cls, config, ds.channels, 0)
    _sync(device)
    start = time.perf_counter()
    engine.train(pc, train_pc, pre_pc, device=device, progress=False)
    _sync(device)
    seconds = time.perf_counter() - start
    which = f"{backbone['backbone']}, {backbone['weights']}"
    print(f"PatchCore ({which}) fit on {args.patchcore_n} images: {seconds:.2f} s")

    times = {}
    for label, bs in (("batched", None), ("batch size 1", 1)):
        engine.predict(method, test, pre, device=device, batch_size=bs)  # warm-up
        _sync(device)
        start = time.perf_counter()
        engine.predict(method, test, pre, device=device, batch_size=bs)
        _sync(device)
        times[label] = time.perf_counter() - start
    print(
        f"scoring {len(test)} test images (AE): batched {times['batched']:.3f} s, batch size 1 "
        f"{times['batch size 1']:.3f} s, {times['batch size 1'] / times['batched']:.1f}x"
    )


if __name__ == "__main__":
    main()
