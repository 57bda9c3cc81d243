"""medad's training step against a bare PyTorch loop, batched scoring against batch size 1, and
torch.compile / channels-last for the AE training step, on the CPU (or `--device`).

    python benchmarks/engine.py [--n 256 --epochs 2 --device cpu]

* training: `engine.train` (uint8 split gathered per batch, losses summed on the device, the
  method's schedule) against a bare loop over the same network, loss and batch size: the split
  converted to float once, a random batch indexed, `training_loss`, backward, Adam step. AE
  (paper AE, 64²), DAE (its U-Net at a reduced 64² instead of 128², to keep the run short) and
  CutPaste one-stage (its ResNet18 U-Net at 64², crops of 48; synthetic anomalies made ahead in
  medad's background thread and in the step in the bare loop). Time per step, median over the
  epochs after the first (a warm-up, also for torch.compile).
* scoring: `engine.predict` at its default batch against batch size 1, and against the study's
  evaluation loop (batch 1 through a DataLoader over PIL images, ToTensor/Normalize per item,
  the input requiring gradients: `study_ae.study_scores`), AE on the test split.
* AE step variants (bare loop): eager, channels-last tensors, `torch.compile` (inductor), both;
  adopted as an option only when ≥ 1.2× faster (issue 16).

Data: the synthetic brain dataset (`synth-brain`). No timings are stored; they are printed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import torch

from medad import engine
from medad.data.base import get_dataset
from medad.data.loading import load_split
from medad.methods.base import build_config, method_class

CASES: dict[str, dict[str, Any]] = {
    "ae": {},
    "dae": {"image_size": 64},
    "cutpaste-1stage": {
        "image_size": 64,
        "train_center_crop": 56,
        "crop_size": 48,
        "steps_per_epoch": None,
    },
}


def brain_setup(name: str, overrides: dict[str, Any], n: int, n_test: int = 32) -> tuple[Any, ...]:
    """(class, config, preprocess, train split, test split, dataset) of method `name` with
    `overrides` on `n` synthetic brain images at its image size, `n_test` + `n_test` to test."""
    cls = method_class(name)
    config = build_config(cls, overrides)
    ds = get_dataset(
        "synth-brain",
        n_train=n,
        n_test_normal=n_test,
        n_test_abnormal=n_test,
        size=config.image_size,
    )
    pre = cls.preprocess(config, ds.channels)
    return cls, config, pre, load_split(ds, "train", pre), load_split(ds, "test", pre), ds


def setup(name: str, n: int, epochs: int, device: torch.device) -> tuple[Any, ...]:
    return brain_setup(name, {**CASES[name], "epochs": epochs}, n)


def medad_step(name: str, n: int, epochs: int, device: torch.device) -> float:
    cls, config, pre, train, _, ds = setup(name, n, epochs, device)
    method = engine.create_method(cls, config, ds.channels, 0)
    per_epoch: list[float] = []
    start = time.perf_counter()
    engine.train(
        method,
        train,
        pre,
        seed=0,
        device=device,
        progress=False,
        log=lambda _: per_epoch.append(time.perf_counter()),
    )
    ends = [start, *per_epoch][1:]  # the first epoch warms up (as in the bare loop)
    steps = -(-len(train) // config.batch_size)
    return statistics.median(b - a for a, b in zip(ends, ends[1:], strict=False)) / steps


def bare_step(
    name: str,
    n: int,
    epochs: int,
    device: torch.device,
    channels_last: bool = False,
    compiled: bool = False,
) -> float:
    cls, config, pre, train, _, ds = setup(name, n, epochs, device)
    method = engine.create_method(cls, config, ds.channels, 0).to(device)
    lo, hi = pre.value_range
    images = torch.from_numpy(train.images).to(device, torch.float32) * ((hi - lo) / 255.0) + lo
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    method = method.to(memory_format=fmt)
    opt = torch.optim.Adam(method.parameters(), lr=config.lr)
    loss_fn = torch.compile(method.training_loss) if compiled else method.training_loss
    gen = torch.Generator().manual_seed(0)
    bs = config.batch_size
    method.train()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(train), generator=gen)
        for i in range(0, len(train), bs):
            x = method.train_inputs(method.train_transform(images[order[i : i + bs]]))
            if isinstance(x, torch.Tensor):
                x = x.contiguous(memory_format=fmt)
            opt.zero_grad(set_to_none=True)
            out = loss_fn(x, "train", "model")
            loss = out["loss"] if isinstance(out, dict) else out
            loss.backward()
            opt.step()
        times.append((time.perf_counter() - start) / -(-len(train) // bs))
    return statistics.median(times[1:])  # the first epoch warms up (compiles)


def scoring(n: int, device: torch.device, repeat: int = 3) -> dict[str, float]:
    """Seconds to score the AE's test split: `engine.predict` batched (its default batch) and at
    batch size 1, and the study's evaluation loop (`study_ae.study_scores`: a DataLoader of batch
    1 over PIL images with ToTensor/Normalize per item, the input requiring gradients). Each is
    warmed up once, then the best of `repeat` counts. The scores of all three must agree."""
    from PIL import Image
    from study_ae import PILImages, study_scores, study_transform
    from torch.utils.data import DataLoader

    cls, config, pre, train, test, ds = setup("ae", n, 1, device)
    method = engine.create_method(cls, config, ds.channels, 0)
    pil = [Image.fromarray(image[0]) for image in test.images]  # [N, 1, H, W] uint8
    items = PILImages(pil, list(test.labels), study_transform(), list(test.ids))
    loader = DataLoader(items, batch_size=1)

    def ours(batch_size: int | None):
        return lambda: engine.predict(method, test, pre, device=device, batch_size=batch_size)

    def study():
        return study_scores(method.net.to(device), loader)

    runs = {"batched": ours(None), "batch size 1": ours(1), "study loop (batch 1)": study}
    seconds, scores = {}, {}
    for label, run in runs.items():
        out = run()  # warm-up
        scores[label] = out.image_scores if hasattr(out, "image_scores") else out[0]
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        seconds[label] = min(times)
    first = scores["batched"]
    for label, values in scores.items():  # same network, same images: the same scores
        if not np.allclose(values, first, rtol=1e-4, atol=1e-6):
            raise SystemExit(f"scoring: {label} disagrees with the batched scores")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="training images")
    parser.add_argument(
        "--epochs", type=int, default=4, help="epochs per measurement (the first is dropped)"
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = engine.resolve_device(args.device)
    print(f"{device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'training step':<22}{'medad (ms)':>12}{'bare (ms)':>12}{'bare/medad':>12}")
    for name in CASES:
        ours = medad_step(name, args.n, args.epochs, device)
        bare = bare_step(name, args.n, args.epochs, device)
        print(f"{name:<22}{1e3 * ours:>12.1f}{1e3 * bare:>12.1f}{bare / ours:>11.2f}x")
    times = scoring(args.n, device)
    batched = times["batched"]
    print(f"scoring 64 test images (AE, best of 3){'s':>11}{'vs batched':>12}")
    for label, seconds in times.items():
        print(f"  {label:<34}{seconds:>8.3f}{seconds / batched:>11.1f}x")
    print(f"{'AE step variant':<28}{'ms':>8}{'vs eager':>10}")
    eager = bare_step("ae", args.n, args.epochs, device)
    variants = {
        "eager": eager,
        "channels-last": bare_step("ae", args.n, args.epochs, device, channels_last=True),
        "torch.compile": bare_step("ae", args.n, args.epochs, device, compiled=True),
        "compile + channels-last": bare_step(
            "ae", args.n, args.epochs, device, channels_last=True, compiled=True
        ),
    }
    for label, seconds in variants.items():
        print(f"{label:<28}{1e3 * seconds:>8.1f}{eager / seconds:>9.2f}x")


if __name__ == "__main__":
    main()
