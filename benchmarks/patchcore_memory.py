"""Peak memory and time of fitting PatchCore: medad's chunked bank vs an all-in-memory reference.

    OMP_NUM_THREADS=1 python benchmarks/patchcore_memory.py [--images 2000 --size 128
        --backbone resnet18 --ratio 0.01 --bank-dtype float16]

Each variant fits the same PatchCore (random-init backbone, so no weights file is needed; the
memory is that of the patch features, not of the weights) on `images` synthetic grayscale images
of `size`² pixels (smooth seeded noise: the content does not change what is stored), in its own
child process, and reports the growth of the process's peak resident memory during the fit
(``resource.getrusage(...).ru_maxrss`` after the fit minus before it; torch's allocations are not
seen by ``tracemalloc``, so the operating system's count is the one that means something) and the
fit's wall time.

* ours: `PatchCore.fit` (medad.methods.patchcore): features go to the CPU batch by batch in
  `bank_dtype`, with their float32 random projections; the greedy coreset runs on the
  projections and only its rows are gathered into the bank.
* reference: what the official code does (patchcore-inspection ``PatchCore.fit``): every patch
  feature of the training set in one float32 matrix (a list of batches concatenated), projected as
  a whole, the same greedy k-center selection, the bank indexed out of the matrix.

Both draw the same projection and the same first pick, so their banks hold the same rows; the
table ends with the largest difference between them (float16 rounding when ``--bank-dtype
float16``). The greedy selection's time grows with the number of picks: ``--ratio`` 0.01 (the
paper's smallest bank) keeps a run to minutes on one core; the default of the method is 0.1.
No timings are stored anywhere; they depend on the machine and are only printed.
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
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from medad import engine
from medad.methods.base import build_config, method_class
from medad.methods.parts.coreset import coreset_size, greedy_k_center, sparse_random_projection
from medad.methods.patchcore import PatchCore


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def synthetic_batches(n: int, size: int, batch: int, seed: int) -> Iterator[torch.Tensor]:
    """`n` smooth noise images in [0, 1], made batch by batch (never all held at once)."""
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch):
        coarse = torch.rand(min(batch, n - start), 1, size // 8, size // 8, generator=gen)
        yield F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def reference_fit(method: PatchCore, batches: Iterator[torch.Tensor]) -> torch.Tensor:
    """All-in-memory PatchCore fit (the official code's order of work); returns the bank."""
    c = method.config
    gen = torch.Generator().manual_seed(int(method.rng.integers(2**31)))
    feats = []
    for x in batches:
        z = method.patch_features(x)
        feats.append(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]))
    features = torch.cat(feats)
    del feats
    projection = sparse_random_projection(features.shape[1], c.projection_dim, gen)
    projected = features @ projection
    start = int(torch.randint(features.shape[0], (1,), generator=gen))
    picks = greedy_k_center(projected, coreset_size(features.shape[0], c.coreset_ratio), start)
    return features[picks]


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    cls = method_class("patchcore")
    config = build_config(
        cls,
        {
            "weights": "random",
            "backbone": args.backbone,
            "image_size": args.size,
            "coreset_ratio": args.ratio,
            "bank_dtype": args.bank_dtype if args.variant == "ours" else "float32",
            "batch_size": args.batch,
        },
    )
    method = engine.create_method(cls, config, 1, 0).eval()
    method.rng = np.random.default_rng(0)
    with torch.no_grad():
        method.patch_features(next(synthetic_batches(args.batch, args.size, args.batch, 1)))
        before = peak_rss_bytes()
        start = time.perf_counter()
        if args.variant == "ours":
            method.fit(lambda: synthetic_batches(args.images, args.size, args.batch, 0))
            bank = method.bank.features
        else:
            bank = reference_fit(method, synthetic_batches(args.images, args.size, args.batch, 0))
        seconds = time.perf_counter() - start
    torch.save(bank.float(), args.bank_out)
    grown = peak_rss_bytes() - before
    print(json.dumps({"peak_bytes": grown, "seconds": seconds, "bank": list(bank.shape)}))


def run_variant(variant: str, args: argparse.Namespace, bank_out: str) -> dict:
    cmd = [sys.executable, __file__, "--variant", variant, "--bank-out", bank_out]
    for key in ("images", "size", "backbone", "ratio", "bank_dtype", "batch"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--ratio", type=float, default=0.01)
    p.add_argument("--bank-dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--variant", choices=["ours", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--bank-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_variant("ours", args, f"{tmp}/ours.pt")
        ref = run_variant("reference", args, f"{tmp}/ref.pt")
        diff = float((torch.load(f"{tmp}/ours.pt") - torch.load(f"{tmp}/ref.pt")).abs().max())
    mib = 2**20
    print(
        f"PatchCore fit, {args.images} images at {args.size} px, {args.backbone} (random init), "
        f"coreset {args.ratio:g}, bank {ours['bank']}, "
        f"threads {os.environ.get('OMP_NUM_THREADS', '1')}"
    )
    print(f"{'':28}{'peak memory (MiB)':>18}{'time (s)':>10}")
    print(
        f"{'ours (chunked, ' + args.bank_dtype + ')':28}{ours['peak_bytes'] / mib:18.0f}"
        f"{ours['seconds']:10.1f}"
    )
    print(f"{'reference (all in float32)':28}{ref['peak_bytes'] / mib:18.0f}{ref['seconds']:10.1f}")
    print(
        f"{'ratio ours / reference':28}{ours['peak_bytes'] / ref['peak_bytes']:18.2f}"
        f"{ours['seconds'] / ref['seconds']:10.2f}"
    )
    print(f"largest difference between the two banks: {diff:.3g}")


if __name__ == "__main__":
    main()
