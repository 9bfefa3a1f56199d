"""zoo: a model-zoo manager and benchmarker for the TensorFlow DeepLab checkpoints."""

__version__ = "0.1.0"
