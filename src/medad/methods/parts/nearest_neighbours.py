"""Exact k-nearest-neighbour search of query features in a memory bank, in bounded memory.

PatchCore (Roth et al. 2022) scores each test patch by its Euclidean distance to the nearest
feature of the memory bank. A bank of 10⁵-10⁶ features against the patches of a batch does not fit
one distance matrix, so the search runs over blocks of `chunk` queries × `chunk` bank rows and keeps
the running k smallest (the block is at most chunk² float32 values). A float16 bank (half the
memory) is widened to float32 one block at a time.

The official code searches with faiss (``IndexFlatL2``, exact); medad uses faiss-cpu when it is
importable and the data are on the CPU (``search="auto"``), and this torch search otherwise
(``search="torch"`` forces it). Both are exact, so they agree up to rounding.
"""

from __future__ import annotations

from typing import Literal

import torch

from medad.errors import MedadError

Search = Literal["auto", "torch", "faiss"]


def _faiss():  # type: ignore[no-untyped-def]
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def nearest_neighbours(
    queries: torch.Tensor,
    bank: torch.Tensor,
    k: int = 1,
    *,
    chunk: int = 4096,
    search: Search = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances [Q, k], indices [Q, k]) of the `k` nearest bank rows of each query, nearest first.

    `queries` [Q, D] and `bank` [M, D] (any float dtype); distances are Euclidean, float32.
    """
    if queries.ndim != 2 or bank.ndim != 2 or queries.shape[1] != bank.shape[1]:
        raise MedadError(
            f"nearest neighbours: queries {tuple(queries.shape)} and bank {tuple(bank.shape)} "
            "must be [Q, D] and [M, D]"
        )
    if not 1 <= k <= bank.shape[0]:
        raise MedadError(f"nearest neighbours: k = {k} with a bank of {bank.shape[0]} features")
    faiss = _faiss() if search != "torch" else None
    if search == "faiss" and faiss is None:
        raise MedadError("search='faiss' needs faiss: pip install faiss-cpu (or search='torch')")
    if faiss is not None and (search == "faiss" or queries.device.type == "cpu"):
        return _faiss_search(faiss, queries, bank, k)
    return _torch_search(queries, bank, k, chunk)


def _torch_search(
    queries: torch.Tensor, bank: torch.Tensor, k: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    dists, indices = [], []
    for q0 in range(0, queries.shape[0], chunk):
        q = queries[q0 : q0 + chunk].float()
        q_sq = q.pow(2).sum(dim=1, keepdim=True)
        best_d = torch.full((q.shape[0], 0), 0.0, device=q.device)
        best_i = torch.zeros((q.shape[0], 0), dtype=torch.long, device=q.device)
        for b0 in range(0, bank.shape[0], chunk):
            b = bank[b0 : b0 + chunk].to(q.device, torch.float32)
            d = torch.addmm(q_sq, q, b.t(), alpha=-2).add_(b.pow(2).sum(dim=1)).clamp_(min=0)
            d, i = d.topk(min(k, d.shape[1]), dim=1, largest=False)
            best_d, order = torch.cat([best_d, d], dim=1).topk(
                min(k, best_d.shape[1] + d.shape[1]), dim=1, largest=False
            )
            best_i = torch.cat([best_i, i + b0], dim=1).gather(1, order)
        dists.append(best_d.sqrt())
        indices.append(best_i)
    return torch.cat(dists), torch.cat(indices)


def _faiss_search(
    faiss, queries: torch.Tensor, bank: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    index = faiss.IndexFlatL2(bank.shape[1])
    index.add(bank.detach().to("cpu", torch.float32).contiguous().numpy())
    d, i = index.search(queries.detach().to("cpu", torch.float32).contiguous().numpy(), k)
    dev = queries.device
    dist = torch.from_numpy(d).clamp_(min=0).sqrt().to(dev)
    return dist, torch.from_numpy(i).long().to(dev)
