"""Scoring time of the diffusion methods, and what DDIM's fewer steps cost in AUROC.

    python benchmarks/diffusion.py [--n 64 --size 64 --time-images 64 --train 96 --epochs 30
                                    --ddim-steps 5 10 25 --device cpu --seed 0]

Diffusion scoring is where CPU time goes: every image is denoised through tens to hundreds of
U-Net passes. Two tables, on the embedded synth-brain (`n` test images, half with lesions, at
`size`²), batched across images:

1. seconds per image to score, for each method (AnoDDPM Gaussian and Simplex, AutoDDPM, pDDPM)
   at its defaults (the papers' U-Net width and steps) and at the test suite's settings (tiny U-Net,
   5 DDIM steps); the networks are untrained here, which does not change the time. Only the first
   `time-images` images are timed (the default settings take long on a CPU);
2. AnoDDPM (Gaussian) trained at the test settings for `epochs` epochs on `train` normal images,
   then scored from the same start t_λ = 250 with DDPM (all 250 steps) and with DDIM at each of
   `ddim-steps`: image and pixel AUROC and seconds per image of each, so users can choose.

No timings are stored anywhere; they depend on the machine and are only printed.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from medad import engine
from medad.data.base import get_dataset
from medad.data.loading import ArraySplit, load_split
from medad.evaluation import evaluate
from medad.methods.base import build_config, method_class

METHODS = ["anoddpm-gaussian", "anoddpm-simplex", "autoddpm", "pddpm"]
#: the test suite's settings (tests/methods/test_diffusion.py)
TEST = {
    "lr": 3e-3,
    "base_width": 8,
    "channel_mults": (1, 2),
    "res_blocks": 1,
    "attention_sides": (),
    "batch_size": 16,
    "sampler": "ddim",
    "sample_steps": 5,
}
TEST_EXTRA = {"autoddpm": {"perceptual_layers": ("layer1", "layer2"), "inpaint_steps": 5,
                           "resample_steps": 2}}  # fmt: skip


def seconds_per_image(method: Any, data: ArraySplit, pre: Any, device: str) -> float:
    start = time.perf_counter()
    engine.predict(method, data, pre, device=device)
    return (time.perf_counter() - start) / len(data)


def head(data: ArraySplit, n: int) -> ArraySplit:
    """The first n normal and last n abnormal images (so both classes are timed)."""
    keep = np.r_[0 : (n + 1) // 2, len(data) - n // 2 : len(data)]
    masks = None if data.masks is None else data.masks[keep]
    return ArraySplit(data.images[keep], data.labels[keep], masks, [data.ids[i] for i in keep])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=64, help="test images (half with lesions)")
    ap.add_argument("--size", type=int, default=64, help="image side")
    ap.add_argument("--time-images", type=int, default=None, help="images timed (default all)")
    ap.add_argument("--train", type=int, default=96, help="normal training images")
    ap.add_argument("--epochs", type=int, default=30, help="training epochs of table 2")
    ap.add_argument("--ddim-steps", type=int, nargs="+", default=[5, 10, 25])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    ds = get_dataset(
        "synth-brain",
        n_train=args.train,
        n_test_normal=args.n // 2,
        n_test_abnormal=args.n - args.n // 2,
        size=args.size,
    )
    timed_n = args.time_images or args.n
    print(f"synth-brain, {args.n} test images at {args.size}², device {args.device}")
    print(f"\n1. seconds per image to score ({timed_n} images timed, untrained networks)")
    print(f"{'method':<18}{'settings':<10}{'sampler':<16}{'s/image':>10}")
    for name in METHODS:
        cls = method_class(name)
        for label, values in (("default", {}), ("test", {**TEST, **TEST_EXTRA.get(name, {})})):
            config = build_config(cls, {**values, "image_size": args.size, "epochs": 0})
            pre = cls.preprocess(config, ds.channels)
            test = head(load_split(ds, "test", pre), timed_n)
            method = engine.create_method(cls, config, ds.channels, args.seed)
            steps = config.sample_steps or config.t_start
            sampler = f"{config.sampler} {steps}"
            if name == "autoddpm":  # then the re-sampling: steps × passes per step
                inpaint = config.inpaint_steps or config.inpaint_start
                sampler += f" +{inpaint}×{config.resample_steps}"
            sec = seconds_per_image(method, test, pre, args.device)
            print(f"{name:<18}{label:<10}{sampler:<16}{sec:>10.3f}", flush=True)

    print(
        f"\n2. anoddpm-gaussian at the test settings, {args.epochs} epochs: DDPM vs DDIM from t=250"
    )
    cls = method_class("anoddpm-gaussian")
    config = build_config(cls, {**TEST, "image_size": args.size, "epochs": args.epochs})
    pre = cls.preprocess(config, ds.channels)
    train, test = load_split(ds, "train", pre), load_split(ds, "test", pre)
    method = engine.create_method(cls, config, ds.channels, args.seed)
    engine.train(method, train, pre, seed=args.seed, device=args.device, progress=False)
    print(f"{'sampler':<16}{'image AUROC':>12}{'pixel AUROC':>12}{'s/image':>10}")
    for sampler, steps in [("ddpm", None), *[("ddim", k) for k in args.ddim_steps]]:
        method.config = build_config(
            cls, {**config.model_dump(), "sampler": sampler, "sample_steps": steps}
        )
        start = time.perf_counter()
        pred = engine.predict(method, test, pre, device=args.device)
        sec = (time.perf_counter() - start) / len(test)
        m = evaluate(pred)
        label = f"{sampler} {steps or config.t_start}"
        print(
            f"{label:<16}{m['image_auroc']:>12.3f}{m['pixel_auroc']:>12.3f}{sec:>10.3f}", flush=True
        )


if __name__ == "__main__":
    main()
