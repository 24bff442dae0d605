"""Preset files (TOML): each overrides the defaults of the pipeline's parameter dataclasses."""
