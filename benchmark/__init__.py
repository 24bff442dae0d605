"""The clustermass benchmark: dataset API, fixed folds, metrics, harness and baseline models."""

HARNESS_VERSION = "0.1.0"
