"""Run a code submission's fold in a sandbox that cannot see the truth.

A code entry is *trusted* only when its score could not have been faked. So each fold and
seed of a code submission runs in a child process inside bubblewrap (``bwrap``, Debian
package ``bubblewrap``) with:

- no network (all namespaces unshared) and a new session; the child dies with the harness;
- read-only views of the submission folder, the Python environment (the virtualenv and
  the interpreter it was made from), the system's libraries and the reference Keras recipe's
  eight modules (:data:`RECIPE_MODULES`, code only); nothing else of the host:
  no ``data/``, ``results/``, repository, home folder or ``../shared``;
- a private scratch folder (``/scratch``) holding only what the fold allows
  (:func:`write_fold_inputs`): training and validation images with their targets and the
  allowed auxiliary columns, and the test images with the allowed columns but no targets,
  shuffled, under opaque per-run tokens instead of image ids;
- limits on memory (address space), CPU time and wall time, each with its own clear error.

Predictions come back through one file (``/scratch/out/predictions.npy``, and
``sigma.npy`` for a model with ``predict_sigma``) and are mapped from tokens to image ids here
(:func:`read_fold_predictions`), then validated like a predictions submission before scoring.

The interpretation diagnostics need the model, which never leaves the sandbox: a
:class:`FoldSession` opened with ``serve=True`` keeps the child (same sandbox, same limits)
up after it predicted, and :meth:`FoldSession.request` sends it images to predict or
differentiate, through request files in its scratch folder, under fresh opaque tokens. The
harness reads the predictions before the first request. Folds run as Dask tasks through
:func:`benchmark.core.distributed.map_on_dask` (:data:`TASK_RETRIES` retries each).

Where the sandbox cannot start (no ``bwrap``, or user namespaces refused), :func:`probe`
says why; the harness then refuses to make a trusted entry unless the user asks for
``--unsandboxed``, and that entry says so.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import resource
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.errors import SubmissionError
from benchmark.core.io import refuse_nonfinite
from benchmark.dataset.layout import CARD_NAME, CATALOG_NAME, SPLITS_NAME

__all__ = ["Limits", "SandboxUnavailable", "probe", "write_fold_inputs", "run_fold",
           "read_fold_predictions", "read_model_info", "stage_submission", "FoldSession",
           "CHILD_SCRIPT", "code_protocol"]

logger = logging.getLogger(__name__)

CHILD_SCRIPT = Path(__file__).with_name("sandbox_child.py")
#: The reference Keras recipe (``benchmark.models.cnn.KerasRegressor``) and its whole import
#: closure, shown read-only under :data:`RECIPE_ROOT` so that a module that defines only
#: ``build_keras_model(input_shape)`` trains with the recipe inside the sandbox. Nothing else
#: of the harness is mounted (``tests/benchmark/test_sandbox.py`` lists what the child sees).
RECIPE_MODULES = ("__init__.py", "core/__init__.py", "core/errors.py", "core/io.py",
                  "dataset/__init__.py", "dataset/normalisation.py", "models/__init__.py",
                  "models/cnn.py")
RECIPE_ROOT = "/runner/recipe"
_PACKAGE_DIR = Path(__file__).resolve().parent
#: Auxiliary columns a sandboxed submission sees (``image_id`` becomes a token).
SANDBOX_AUX_COLUMNS = ("redshift", "pixel_arcsec")
_GIB = 1 << 30
#: Largest file the child may write (logs, predictions, anything in its scratch folder).
_MAX_FILE_BYTES = 2 * _GIB
#: Files of a dataset that a submission folder may not carry.
_DATASET_FILES = (CATALOG_NAME, CARD_NAME, SPLITS_NAME)
_MAX_PREDICTIONS_BYTES = 64 << 20
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
#: The sigma column of a predictions table (``benchmark.submission.SIGMA_COLUMN``; a sibling
#: layer, so not imported).
SIGMA_COLUMN = "log10_m500c_sigma"
#: Largest accepted sigma (dex), as ``benchmark.submission.MAX_SIGMA_DEX`` (checked by the
#: harness with that one; here only for the protocol text; tests keep the two equal).
MAX_SIGMA_DEX = 4.5
#: Seconds between two looks at the child's progress (predictions, diagnostic answers).
_POLL_SECONDS = 0.005
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/nsswitch.conf")


CODE_PROTOCOL = """\
Code submissions (make evaluate SUBMISSION=folder-or-module.py)
----------------------------------------------------------------
A code submission is a folder holding one Python module, anything it needs (helper
modules, weights) and an optional metadata.json (name, authors, code_url, description,
paper_url), or the module alone. The module defines

    make_model(config) -> model

config: dict with "random_seed" (int, chosen by the harness: 1000 * seed + fold),
"image" (npix, pixel_arcsec, fov_arcmin, band_kev, exposure_ks of the dataset) and
"keras_recipe" (the reference recipe's schedule for this dataset; see below).

or, for a Keras network trained the way the reference CNN is,

    build_keras_model(input_shape) -> keras.Model (one linear output)

input_shape is (npix, npix, 1), the images as standardised log10(1 + counts); the output
is the standardised log10 M500c (both standardised on the training fold). The
harness's recipe (benchmark.models.cnn.KerasRegressor, shown read-only in the sandbox)
compiles it (Adam, MSE), augments with flips and 90-degree rotations, early-stops on the
validation fold with the schedule in config["keras_recipe"] (max_epochs, patience, ...),
seeds everything from random_seed and predicts; its gradients give the diagnostics.

    model.fit(train, val) -> model
    model.predict(test) -> 1-d array of log10 M500c [Msun], one finite float per image

train, val and test each have
    .images  float32 array (N, 128, 128): photon counts, 0.5-7 keV
    .aux     pandas DataFrame: image_id (an opaque per-run token), redshift,
             pixel_arcsec [arcsec]
    .y       float64 array (N,) of true log10 M500c for train and val; None for test
Test images come shuffled; tokens change every run and say nothing of clusters. The test
part also holds the images of the extra test sets (shift track, hidden set), mixed in under
the same tokens; each set is scored on its own.

Optional, for error bars (scored like the log10_m500c_sigma column of a predictions file):
    model.predict_sigma(test) -> 1-d array, one sigma of log10 M500c (dex) per image,
                                  finite, > 0 and <= {max_sigma:g}
  or model.predict_mean_and_sigma(test) -> (mean, sigma), or predict() returning
  (mean, sigma). A sigma of any other shape or value fails the fold with one error.

Optional, for the interpretation diagnostics (DeepDream ascent and saliency):
    model.gradient(data) -> float array (N, 128, 128): d log10 M500c / d counts of each
                            image of data (same fields as test)
  or model.predict_tensor(counts_tensor, aux) (a TensorFlow function of the counts), or
  model.keras_model with model.preprocess(counts_tensor, aux); a model.normalisation dict
  (transform, image_log_mean, image_log_std of the reference CNN) sets the space the ascent
  steps in. Without gradients the diagnostics are occlusion only (ring dimming, occluded
  cores), with a note. The model never leaves the sandbox: for seed 0 the same child, with
  the same limits, stays up after it predicted and answers the diagnostics' requests, files
  of images (occluded, dimmed, stepped variants of a few of the fold's test images) under
  new opaque tokens, with predict() or gradient(); the harness has already read the
  predictions then, so nothing those images show can change the score. The answers are
  kept in the fold folder and replayed when the diagnostics are drawn (default settings).

The harness trains every fold (fold k tests, fold k+1 validates, the others train) for the
seeds it chooses (0, 1, 2: a ranked code entry needs three), each in its own process inside
a bubblewrap sandbox: no network; read-only views of the submission folder and the Python
environment (numpy, pandas, scipy, tensorflow/keras, astropy, ...); a private scratch folder
as the working directory and HOME; no view of the dataset, results, repository (beyond the
recipe's modules for build_keras_model), home folder
or anything else of the host. Limits per fold: {memory:g} GiB of address space, {cpu} s of
CPU time, {wall:g} s of wall time; a submission that fails or passes a limit gets one clear
error naming it, and nothing is scored. What the module prints is logged.

"Trusted" on the leaderboard means exactly this: the harness trained the model under these
rules, and while it trained and predicted it could not read the dataset, the catalog or the
image ids. It does not mean the model never saw the truth: the dataset is public, so a
submission could carry what it learnt from it (a table of images and masses, say). The
hidden test set, generated by the maintainer from a secret seed, closes that: every fold
model also predicts it (and the public shift-track sets), its images mixed into the test
images under the same shuffled opaque tokens, and the leaderboard's "hidden" column shows
that score. Only a
submission's module is copied into the sandbox, or its whole folder when it is a folder
(never one holding dataset files). Prediction submissions and code run with --unsandboxed
(for a machine where bubblewrap cannot start) are not trusted. A code entry is ranked only
when trained on the harness's seeds 0 1 2. With the setting DASK_SCHEDULER (e.g.
tcp://host:8786, the scheduler generation uses) or jobs > 1 (a LocalCluster of that many
processes), each fold and seed is one Dask task; the workers need the dataset and results
at the same paths; the results are those of the serial run. The diagnostics of a code entry
(`clustermass diagnostics NAME`) replay the answers its sandboxed children gave.
"""


class SandboxUnavailable(SubmissionError):
    """The sandbox cannot start here; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed fold.

    Attributes
    ----------
    memory_gib : float
        Address-space limit (``RLIMIT_AS``) of the child, GiB. TensorFlow reserves a few GiB
        of address space it never touches, so leave room above the working set.
    cpu_seconds : int
        CPU time over all threads (``RLIMIT_CPU``).
    wall_seconds : float
        Elapsed time, after which the child's whole process group is killed.
    """

    memory_gib: float = 16.0
    cpu_seconds: int = 6 * 3600
    wall_seconds: float = 4 * 3600

    def __post_init__(self):
        if self.memory_gib <= 0 or self.cpu_seconds <= 0 or self.wall_seconds <= 0:
            raise SubmissionError(f"sandbox limits must be positive, got {self}")


# ----------------------------------------------------------------------------- the sandbox

def _python_roots() -> list[Path]:
    """Folders the interpreter needs: the virtualenv and the Python it was made from."""
    roots = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    return sorted(roots)


def bwrap_argv(submission_dir: Path, scratch: Path, env: dict[str, str]) -> list[str]:
    """The ``bwrap`` command line that shows the child only what a fold allows."""
    argv = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--clearenv"]
    for d in _SYSTEM_DIRS:
        if Path(d).is_symlink():
            argv += ["--symlink", os.readlink(d), d]
        elif Path(d).is_dir():
            argv += ["--ro-bind", d, d]
    for f in _SYSTEM_FILES:
        if Path(f).exists():
            argv += ["--ro-bind", f, f]
    # Mounts apply in order: the fresh /tmp comes before the binds, so that a virtualenv that
    # lives under /tmp (a CI checkout) stays visible on top of it.
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for root in _python_roots():
        argv += ["--ro-bind", str(root), str(root)]
    argv += ["--ro-bind", str(submission_dir), "/submission",
             "--ro-bind", str(CHILD_SCRIPT), "/runner/child.py",
             "--bind", str(scratch), "/scratch",
             "--chdir", "/scratch"]
    for module in RECIPE_MODULES:
        argv += ["--ro-bind", str(_PACKAGE_DIR / module), f"{RECIPE_ROOT}/benchmark/{module}"]
    for key, value in sorted(env.items()):
        argv += ["--setenv", key, value]
    return argv


def _child_env(threads: int) -> dict[str, str]:
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": "/scratch/home", "TMPDIR": "/tmp", "MPLCONFIGDIR": "/scratch/home/mpl",
        "KERAS_HOME": "/scratch/home/keras", "XDG_CACHE_HOME": "/scratch/home/cache",
        "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
        "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1",
        "OMP_NUM_THREADS": str(threads), "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
    }


@lru_cache(maxsize=1)
def probe() -> str | None:
    """None when the sandbox starts here, else the reason it cannot (one line)."""
    if shutil.which("bwrap") is None:
        return ("bubblewrap is not installed (`bwrap` not on PATH): install the Debian package "
                "`bubblewrap` (`make test` and the container image do)")
    scratch = Path(os.environ.get("TMPDIR", "/tmp"))
    argv = bwrap_argv(scratch, scratch, {"PATH": "/usr/bin:/bin"})
    argv += [sys.executable, "-c", "import numpy, pandas"]
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not start: {exc}"
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no message"])[-1]
        return (f"bwrap could not start a sandbox here ({last}); user namespaces may be "
                "disabled (sysctl kernel.unprivileged_userns_clone=1, or run as root)")
    return None


# ----------------------------------------------------------------------------- fold files

def _part_arrays(images: np.ndarray, aux: pd.DataFrame, y=None) -> dict[str, np.ndarray]:
    arrays = {"images": np.ascontiguousarray(images, dtype=np.float32)}
    for column in SANDBOX_AUX_COLUMNS:
        if column in aux:
            arrays[f"aux_{column}"] = aux[column].to_numpy(dtype=np.float64)
    if y is not None:
        arrays["y"] = np.asarray(y, dtype=np.float64)
    return arrays


def _write_part(directory: Path, name: str, arrays: dict, tokens: np.ndarray) -> None:
    np.savez(directory / f"{name}.npz", aux_image_id=tokens, **arrays)


def write_fold_inputs(scratch: Path, train, val, test, config: dict, seed: int) -> pd.DataFrame:
    """Write what the fold allows into ``scratch/in``; return the test token -> id map.

    ``train``, ``val`` and ``test`` are the harness's fold parts (images, aux with
    ``image_id``, y). Every image id becomes a random token; the test images are shuffled
    (with a generator seeded from the OS, not the run's seed, so the order cannot be
    reproduced from public information) and carry no target.

    Returns
    -------
    DataFrame
        ``token, image_id`` in the order the child sees the test images.
    """
    config = {**config, "random_seed": int(seed)}
    refuse_nonfinite(config, "the submission's config")  # before any file: strict JSON
    inbox = scratch / "in"
    inbox.mkdir(parents=True)
    (scratch / "home").mkdir()
    for name, part in (("train", train), ("val", val)):
        tokens = np.array([secrets.token_hex(8) for _ in range(len(part.images))])
        _write_part(inbox, name, _part_arrays(part.images, part.aux, part.y), tokens)
    order = np.random.default_rng(secrets.randbits(64)).permutation(len(test.images))
    tokens = np.array([secrets.token_hex(8) for _ in range(len(test.images))])
    test_aux = test.aux.iloc[order].reset_index(drop=True)
    _write_part(inbox, "test", _part_arrays(test.images[order], test_aux), tokens)
    (inbox / "config.json").write_text(json.dumps(config, sort_keys=True, allow_nan=False))
    return pd.DataFrame({"token": tokens, "image_id": test_aux["image_id"].to_numpy()})


def _load_child_array(path: Path, what: str) -> np.ndarray:
    """A 1-d real array the child wrote: a regular file (no link), bounded, numeric."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise SubmissionError(f"the submission wrote no {what} (predict() returned nothing "
                              "the runner could save)") from None
    if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_PREDICTIONS_BYTES:
        raise SubmissionError(f"the submission's {what} file is not a regular file of at most "
                              f"{_MAX_PREDICTIONS_BYTES >> 20} MB")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        with os.fdopen(fd, "rb") as fh:
            values = np.load(fh, allow_pickle=False)
    except ValueError as exc:
        raise SubmissionError(f"the submission's {what} are unreadable ({exc})") from None
    if values.dtype.kind not in "fiu":
        raise SubmissionError(f"the submission's {what} have dtype {values.dtype}; "
                              "predict() must return real numbers")
    return values.astype(np.float64)


def read_fold_predictions(scratch: Path, tokens: pd.DataFrame) -> pd.DataFrame:
    """The child's predictions as ``image_id, log10_m500c_pred`` (and ``log10_m500c_sigma``
    when the model gave sigmas); refuse malformed output.

    The sigmas' range is checked by the harness like a prediction submission's
    (:data:`benchmark.submission.MAX_SIGMA_DEX`); here only their shape and type.
    """
    values = _load_child_array(scratch / "out" / "predictions.npy", "predictions")
    if values.shape != (len(tokens),):
        raise SubmissionError(f"predict() returned shape {values.shape}; expected "
                              f"({len(tokens)},): one log10 M500c per test image")
    if not np.all(np.isfinite(values)):
        raise SubmissionError(f"predict() returned {int(np.sum(~np.isfinite(values)))} "
                              "non-finite value(s); every prediction must be a finite float")
    out = pd.DataFrame({"image_id": tokens["image_id"].to_numpy(), "log10_m500c_pred": values})
    if os.path.lexists(scratch / "out" / "sigma.npy"):
        sigma = _load_child_array(scratch / "out" / "sigma.npy", "sigmas")
        if sigma.shape != (len(tokens),):
            raise SubmissionError(f"predict_sigma() returned shape {sigma.shape}; expected "
                                  f"({len(tokens)},): one sigma (dex) per test image")
        out[SIGMA_COLUMN] = sigma
    return out


def read_model_info(scratch: Path) -> dict:
    """What the child reported of the model (``has_gradient``, ``normalisation``)."""
    path = scratch / "out" / "model.json"
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode) or os.lstat(path).st_size > 1 << 16:
            raise SubmissionError("the sandbox's model.json is not a small regular file")
        info = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {"has_gradient": False}
    norm = info.get("normalisation")
    return {"has_gradient": info.get("has_gradient") is True,
            "normalisation": norm if isinstance(norm, dict) else None}


# ----------------------------------------------------------------------------- running

def _limit_child(limits: Limits):
    memory = int(limits.memory_gib * _GIB)

    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (_MAX_FILE_BYTES, _MAX_FILE_BYTES))
        os.setsid()  # its own process group, so a timeout kills every process of it

    return apply


def _failure(returncode: int, stderr: str, limits: Limits) -> SubmissionError:
    tail = "\n".join(stderr.strip().splitlines()[-15:])
    # Python reports a child killed by signal S as -S; bwrap passes it on as 128 + S.
    killed_by = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if killed_by == signal.SIGXCPU:
        return SubmissionError(f"the submission used its CPU-time limit "
                               f"({limits.cpu_seconds} s) and was stopped")
    if killed_by == signal.SIGKILL and "MemoryError" not in stderr:
        return SubmissionError(f"the submission was killed (past its CPU-time limit of "
                               f"{limits.cpu_seconds} s, or out of the machine's memory)")
    if killed_by == signal.SIGXFSZ:
        return SubmissionError("the submission wrote a file larger than "
                               f"{_MAX_FILE_BYTES >> 30} GiB and was stopped")
    if "MemoryError" in stderr or "std::bad_alloc" in stderr or "Cannot allocate" in stderr:
        return SubmissionError(f"the submission ran out of its memory limit "
                               f"({limits.memory_gib:g} GiB):\n{tail}")
    return SubmissionError(f"the submission failed in the sandbox (exit status {returncode}):"
                           f"\n{tail}")


def stage_submission(module_path: Path, scratch: Path, folder: Path | None = None) -> Path:
    """Copy the submission into ``scratch/submission``: the only part of the host it sees.

    A bare module is copied alone (never the folder it happens to lie in, which may hold a
    dataset); a submission folder is copied whole, without following links, and refused if it
    holds dataset files.
    """
    stage = scratch / "submission"
    if folder is None:
        stage.mkdir()
        shutil.copy2(module_path, stage / module_path.name)
        return stage
    leaked = sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*")
                    if p.name in _DATASET_FILES)
    if leaked:
        raise SubmissionError(f"the submission folder {folder} holds dataset files "
                              f"({', '.join(leaked[:5])}): a code submission may not carry "
                              "the truth; remove them")
    shutil.copytree(folder, stage, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    return stage


def run_fold(module_path: Path, scratch: Path, limits: Limits = Limits(), threads: int = 1,
             unsandboxed: bool = False, folder: Path | None = None) -> str:
    """Run the child on the inputs in ``scratch``; return the end of what it printed.

    Parameters
    ----------
    module_path : Path
        The submission's module.
    scratch : Path
        Written by :func:`write_fold_inputs`; the child writes ``scratch/out``.
    limits : Limits
    threads : int
        Threads the child's numerical libraries may use.
    unsandboxed : bool
        Run the child without bubblewrap (limits still apply). Only for a local user who
        cannot start the sandbox; such an entry is never marked trusted.
    folder : Path, optional
        The submission folder (module, helpers, weights), copied whole; by default only the
        module is copied (:func:`stage_submission`).

    Raises
    ------
    SandboxUnavailable
        The sandbox cannot start and ``unsandboxed`` is false.
    SubmissionError
        The submission failed or hit a limit; the message says which.
    """
    with FoldSession(module_path, scratch, limits, threads, unsandboxed, folder) as session:
        session.wait_predictions()
    return session.log


class FoldSession:
    """One sandboxed child: it fits and predicts, then (``serve=True``) stays up to answer
    the diagnostics' requests (:meth:`request`) until the session closes.

    Use as a context manager: leaving it stops the child (``req/stop``), waits for it and
    raises the child's failure, if any; an exception inside kills it. Every wait counts
    against one wall-time limit from the start. Arguments as :func:`run_fold`.
    """

    def __init__(self, module_path: Path, scratch: Path, limits: Limits = Limits(),
                 threads: int = 1, unsandboxed: bool = False, folder: Path | None = None,
                 serve: bool = False):
        self.module_path = Path(module_path).resolve()
        self.scratch = Path(scratch)
        self.limits, self.threads, self.unsandboxed = limits, threads, unsandboxed
        self.folder, self.serve = folder, serve
        self.log = ""
        self._proc = None
        self._n_requests = 0

    def __enter__(self) -> "FoldSession":
        if not self.unsandboxed and (reason := probe()):
            raise SandboxUnavailable(f"cannot sandbox the submission: {reason}. A local run "
                                     "may use --unsandboxed; its entry is then not trusted")
        stage = stage_submission(self.module_path, self.scratch, self.folder)
        env = _child_env(self.threads)
        mode = ["--serve"] if self.serve else []
        if self.unsandboxed:
            argv = [sys.executable, str(CHILD_SCRIPT), str(stage / self.module_path.name),
                    str(self.scratch), *mode]
            home = str(self.scratch / "home")
            # The recipe from the harness's own tree, as the sandbox mounts it.
            env = {**env, "HOME": home, "MPLCONFIGDIR": home, "KERAS_HOME": home,
                   "XDG_CACHE_HOME": home, "PYTHONPATH": str(_PACKAGE_DIR.parent)}
        else:
            argv = bwrap_argv(stage, self.scratch, {**env, "PYTHONPATH": RECIPE_ROOT})
            argv += [sys.executable, "/runner/child.py", f"/submission/{self.module_path.name}",
                     "/scratch", *mode]
        for sub in ("req", "resp"):
            (self.scratch / sub).mkdir(exist_ok=True)
        # Output goes to files (capped by RLIMIT_FSIZE), never into the harness's memory.
        self._out = open(self.scratch / "stdout.log", "wb")
        self._err = open(self.scratch / "stderr.log", "wb")
        self._deadline = time.monotonic() + self.limits.wall_seconds
        try:
            self._proc = subprocess.Popen(argv, stdout=self._out, stderr=self._err,
                                          preexec_fn=_limit_child(self.limits),
                                          env=env if self.unsandboxed else {}, cwd=self.scratch)
        except BaseException:
            self._out.close()
            self._err.close()
            raise
        return self

    def _wait_for(self, path: Path, what: str) -> None:
        """Until ``path`` exists; raise the child's failure if it ends first."""
        while not os.path.lexists(path):
            if self._proc.poll() is not None:
                if os.path.lexists(path):
                    return
                self._raise_exit(what)
            if time.monotonic() > self._deadline:
                self._wall_time()
            time.sleep(_POLL_SECONDS)

    def _raise_exit(self, what: str):
        if self._proc.returncode != 0:
            raise _failure(self._proc.returncode, _tail(self.scratch / "stderr.log"),
                           self.limits)
        raise SubmissionError(f"the submission's child ended before it wrote its {what}")

    def _wall_time(self):
        _kill_group(self._proc)
        raise SubmissionError(f"the submission ran past its wall-time limit "
                              f"({self.limits.wall_seconds:g} s) and was stopped")

    def wait_predictions(self) -> None:
        """Until the predictions are written (a serving child stays up; the other ends)."""
        if self.serve:
            self._wait_for(self.scratch / "out" / "predictions.npy", "predictions")
            return
        self._wait_exit()

    def _wait_exit(self) -> None:
        """Until the child ends, within its wall time; a failed exit is one clear error."""
        try:
            self._proc.wait(timeout=max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._wall_time()
        if self._proc.returncode != 0:
            self._raise_exit("predictions")

    def request(self, op: str, images: np.ndarray, aux: pd.DataFrame) -> np.ndarray:
        """The model's ``predict`` (1-d) or ``gradient`` (images' shape) of ``images``.

        The images go in with the allowed auxiliary columns under fresh opaque tokens.
        """
        if not self.serve or op not in ("predict", "gradient"):
            raise SubmissionError(f"request {op!r} of a child that is not serving; "
                                  "open the session with serve=True")
        images = np.ascontiguousarray(images, dtype=np.float32)
        n = self._n_requests
        self._n_requests += 1
        arrays = _part_arrays(images, aux)
        tokens = np.array([secrets.token_hex(8) for _ in range(len(images))])
        tmp = self.scratch / "req" / f".{n}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, op=np.array(op), aux_image_id=tokens, **arrays)
        os.replace(tmp, self.scratch / "req" / f"{n}.npz")
        answer = self.scratch / "resp" / f"{n}.npy"
        self._wait_for(answer, f"answer to a diagnostics {op} request")
        values = _load_child_array(answer, f"diagnostics {op} answer")
        os.unlink(answer)
        want = (len(images),) if op == "predict" else images.shape
        if values.size != int(np.prod(want)):
            raise SubmissionError(f"the submission's {op} returned {values.shape} for "
                                  f"{len(images)} diagnostic images; expected {want}")
        return values.reshape(want)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None:
                if self._proc is not None and self._proc.poll() is None:
                    _kill_group(self._proc)
                return
            (self.scratch / "req" / "stop").touch()
            self._wait_exit()
        finally:
            for fh in (getattr(self, "_out", None), getattr(self, "_err", None)):
                if fh is not None:
                    fh.close()
            if self._proc is not None:
                self.log = _tail(self.scratch / "stdout.log")


def _tail(path: Path, n_bytes: int = 16384) -> str:
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - n_bytes))
        return fh.read().decode("utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen) -> None:
    # The child leads its own process group (setsid); bwrap's --die-with-parent takes the
    # sandbox down with it.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def code_protocol(limits: Limits = Limits()) -> str:
    """The code-submission protocol as ``clustermass format`` prints it."""
    return CODE_PROTOCOL.format(memory=limits.memory_gib, cpu=limits.cpu_seconds,
                                wall=limits.wall_seconds, max_sigma=MAX_SIGMA_DEX)


#: Dask retries of a fold task whose worker died (a fold writes its folder atomically; a
#: submission that fails fails again, so one retry only).
TASK_RETRIES = 1
