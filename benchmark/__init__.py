"""The clustermass benchmark: dataset API, fixed folds, metrics, harness and baseline models."""
import os

# TensorFlow leaves oneDNN off on some CPUs (AMD EPYC on the reference machines); with it on,
# the reference CNN trains ~2x and infers ~4x faster there. Set before TensorFlow is imported.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

HARNESS_VERSION = "0.1.0"
