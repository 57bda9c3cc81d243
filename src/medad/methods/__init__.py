"""Anomaly-detection methods: one file per method, registered by the paper's name."""

from medad.methods.base import (
    Method,
    MethodConfig,
    ScoreOutput,
    build_config,
    method_class,
    method_infos,
    register,
)

__all__ = [
    "Method",
    "MethodConfig",
    "ScoreOutput",
    "build_config",
    "method_class",
    "method_infos",
    "register",
]
