"""Export a trained run's scoring as a standalone TorchScript or ONNX model (``medad export``).

Only methods whose score is one plain forward pass can be exported (`EXPORTABLE`): torch modules
and buffers, the same operations whatever the batch holds. Not exportable: AE-Grad and the VAE-Grad
family (they back-propagate to score) and FAE (its image score takes a per-image quantile over the
object's pixels, a loop whose shape depends on the image). Fitted state is fine when it is a
buffer: the two-stage SSL methods and ResNet18-ImageNet score with a Gaussian density whose mean and
precision travel in the checkpoint (`medad.methods.parts.density`). Every entry is checked by
tracing it and comparing traced and eager scores on another batch (``tests/test_export.py``);
methods added later are refused until they are checked and listed.

The exported model takes what ``medad predict`` gives a method, minus the file reading: a float32
tensor [B, C, S, S] of images already resized to the run's S×S (``Preprocess``: ``image_size`` and
its resize rule) with values in [0, 1]; it maps them to the method's value range itself. It
returns ``(image_scores [B], maps [B, S, S])``, or ``(image_scores,)`` for methods without maps.
``export.json`` beside it says all of that for the run at hand.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from medad.errors import MedadError
from medad.inference import load_run
from medad.outputs import check_output_dir, output_dir

Format = Literal["torchscript", "onnx"]
FORMATS: tuple[Format, ...] = ("torchscript", "onnx")

#: methods whose score is a plain, deterministic forward pass of torch modules (module docs)
EXPORTABLE: tuple[str, ...] = (
    "ae",
    "ae-l1",
    "ae-ssim",
    "ae-spatial",
    "ae-u",
    "ae-pl",
    "ceae",
    "constrae",
    "dae",
    "draem",
    "f-anogan",
    "ganomaly",
    "memae",
    "rd",
    "recontrast",
    "vae",
    "cutpaste-1stage",
    "fpi",
    "pii",
    "nsa",
    "cutpaste-2stage",
    "anatpaste",
    "resnet18-imagenet",
)


class ScoringModel(nn.Module):
    """A method's score as a module: [0, 1] images in, (image scores, maps) out."""

    def __init__(self, method: nn.Module, value_range: tuple[float, float]) -> None:
        super().__init__()
        self.method = method
        self.low, self.span = float(value_range[0]), float(value_range[1] - value_range[0])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.method.score(x * self.span + self.low)  # type: ignore[operator]
        scores = out.image_scores.reshape(-1)
        return (scores,) if out.maps is None else (scores, out.maps)


def scoring_model(method_name: str, method: nn.Module, pre: object) -> ScoringModel:
    """The exportable model of a loaded method; a clear error for methods that cannot be."""
    if method_name not in EXPORTABLE:
        raise MedadError(
            f"method {method_name!r} cannot be exported: its score is not a plain forward pass "
            f"(gradients, a fitted density or search at test time); exportable: "
            f"{', '.join(EXPORTABLE)}"
        )
    return ScoringModel(method, pre.value_range).eval()  # type: ignore[attr-defined]


def example_input(pre: object, batch: int = 2) -> torch.Tensor:
    """A deterministic [0, 1] batch of the run's input shape, to trace with."""
    gen = torch.Generator().manual_seed(0)
    size, channels = pre.size, pre.channels  # type: ignore[attr-defined]
    return torch.rand(batch, channels, size, size, generator=gen)


def to_torchscript(model: ScoringModel, pre: object) -> torch.jit.ScriptModule:
    """Trace `model` on one batch and check the trace on a batch of another size."""
    with torch.no_grad(), warnings.catch_warnings():
        # shape checks in a method's score become constants of the trace: true for this size
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # TorchScript is deprecated in favour of torch.export, but it is what loads without
        # medad and Python-free (C++ libtorch); the warning is for torch's own users
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        return torch.jit.trace(
            model, example_input(pre, 2), check_inputs=[(example_input(pre, 3),)]
        )


def export_run(
    run_dir: Path, out: Path, fmt: Format = "torchscript", *, overwrite: bool = False
) -> Path:
    """Export the run in `run_dir` into the folder `out`; returns the model file's path."""
    if fmt not in FORMATS:
        raise MedadError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "onnx" and importlib.util.find_spec("onnx") is None:
        raise MedadError("ONNX export needs the onnx package: pip install onnx")
    inputs = {"RUN_DIR": Path(run_dir)}
    loaded = load_run(run_dir, "cpu")
    name = loaded.method.name
    model = scoring_model(name, loaded.method, loaded.pre)
    check_output_dir(out, "export", overwrite=overwrite, inputs=inputs)
    x = example_input(loaded.pre)
    with torch.no_grad():
        outputs = ["image_scores", "maps"][: len(model(x))]
    file_name = "model.pt" if fmt == "torchscript" else "model.onnx"
    with output_dir(out, "export", overwrite=overwrite, inputs=inputs) as stage:
        try:
            if fmt == "torchscript":
                to_torchscript(model, loaded.pre).save(str(stage / file_name))
            else:
                torch.onnx.export(
                    model,
                    (x,),
                    str(stage / file_name),
                    input_names=["images"],
                    output_names=outputs,
                    dynamic_axes={n: {0: "batch"} for n in ["images", *outputs]},
                )
        except (RuntimeError, torch.jit.TracingCheckError, ImportError) as exc:
            raise MedadError(f"{run_dir}: {fmt} export of {name} failed ({exc})") from exc
        pre = loaded.pre
        (stage / "export.json").write_text(
            json.dumps(
                {
                    "run": str(Path(run_dir).resolve()),
                    "method": name,
                    "format": fmt,
                    "file": file_name,
                    "input": {
                        "shape": ["B", pre.channels, pre.size, pre.size],  # type: ignore[attr-defined]
                        "dtype": "float32",
                        "values": "[0, 1], resized as the run's preprocessing",
                        "resize": pre.resize,  # type: ignore[attr-defined]
                    },
                    "outputs": outputs,
                },
                indent=1,
            )
        )
    return Path(out) / file_name
