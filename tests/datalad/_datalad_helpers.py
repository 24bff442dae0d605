"""Constants shared by the DataLad tests (a module of its own: conftest is not importable)."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Stand-in generation command: write_fake_dataset with 10 clusters into the current folder.
FAKE_CMD = f"{sys.executable} {HERE / 'fake_generate.py'} . 10"
PRESET = "ci"
