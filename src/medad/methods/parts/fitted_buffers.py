"""Buffers whose shapes are only known once a method has been fitted.

A fitted method (PaDiM's per-position Gaussians, PatchCore's memory bank) stores what it learned as
buffers, so it travels in the run's checkpoint and follows ``.to(device)``. Their sizes depend on
the data (how many patches the coreset keeps) or on the backbone's output size, so a freshly built
method holds empty placeholders; `FittedBuffers` adopts the checkpoint's shapes when a state dict
is loaded (PyTorch would otherwise refuse the size mismatch), keeping each buffer's dtype and
device.
"""

from __future__ import annotations

from typing import Any

from torch import nn


class FittedBuffers(nn.Module):
    """A module whose own buffers take the shapes of the state dict loaded into it."""

    def _load_from_state_dict(  # type: ignore[no-untyped-def]
        self, state_dict: dict[str, Any], prefix: str, *args, **kwargs
    ) -> None:
        for name, buf in self._buffers.items():
            incoming = state_dict.get(prefix + name)
            if buf is not None and incoming is not None and incoming.shape != buf.shape:
                self._buffers[name] = buf.new_empty(incoming.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
