"""How an anomaly map becomes an image score, shared by every method that makes maps.

PAPER.md scores every map-producing method by the mean of its map. A lesion of a few pixels moves
that mean little, so medad also offers the max and the mean of the top fraction of pixels (the
rules of the SSL literature, e.g. NSA and DRAEM score by a smoothed max). The paper's mean is the
default everywhere; `MapScoreConfig` adds the two fields to a method's config.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, Field

from medad.methods.base import ScoreOutput

ImageScore = Literal["mean", "max", "topk"]


class MapScoreConfig(BaseModel):
    """Config fields of the map → image-score rule (mixed into a method's config)."""

    image_score: ImageScore = "mean"
    """How the map becomes the image score: mean (PAPER.md), max, or mean of the top fraction."""
    topk_fraction: float = Field(0.01, gt=0.0, le=1.0)
    """Fraction of the map's pixels averaged by ``image_score="topk"``."""


def reduce_map(
    maps: torch.Tensor, rule: ImageScore = "mean", topk_fraction: float = 0.01
) -> torch.Tensor:
    """Image scores [B] from maps [B, H, W]: their mean, max, or mean of the top fraction."""
    flat = maps.flatten(1)
    if rule == "mean":
        return flat.mean(dim=1)
    if rule == "max":
        return flat.amax(dim=1)
    k = max(1, round(topk_fraction * flat.shape[1]))
    return flat.topk(k, dim=1).values.mean(dim=1)


def map_scores(maps: torch.Tensor, config: MapScoreConfig) -> ScoreOutput:
    """`ScoreOutput` of maps [B, H, W], image scores by the config's `image_score` rule."""
    return ScoreOutput(reduce_map(maps, config.image_score, config.topk_fraction), maps)
