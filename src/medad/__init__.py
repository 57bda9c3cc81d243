"""medad: train, evaluate and compare anomaly-detection methods on medical images."""

__version__ = "0.1.0"
