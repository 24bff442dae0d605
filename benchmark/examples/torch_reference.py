"""Example code submission: the reference CNN of Ntampaka et al. (2019) re-implemented in PyTorch.

Score it like any code entry (``clustermass format`` prints the protocol)::

    .venv/bin/pip install -r requirements-torch.lock      # the optional PyTorch extra
    make evaluate SUBMISSION=benchmark/examples/torch_reference.py

It mirrors :mod:`benchmark.models.cnn` (see that module for why each choice was made) so that
the two frameworks can be compared on the same folds:

* network: three blocks of 3x3 convolution (16, 32, 64 filters, ReLU, same padding) and 2x2
  max pooling on the 128x128 image, flatten, dense 200, 100, 20 (ReLU), one linear output;
  Glorot-uniform weights and zero biases (Keras's defaults, not PyTorch's);
* inputs: ``log10(1 + counts)`` standardised with one scalar mean and std over the pixels of
  the training images; the target log10 M500c standardised with training statistics;
* training: Adam (learning rate 1e-3, epsilon 1e-7 as Keras), MSE, batch 32, one random
  symmetry of the square per training image per epoch, early stopping on the validation
  loss with the best weights restored, the learning rate halved after ``lr_patience``
  epochs without improvement (floor 1e-5);
* schedule: the reference's ``quick`` schedule (20 epochs, patience 5, learning-rate
  patience 3); override any key through ``config``.

The module is self-contained (numpy and torch only): the sandbox that trains code entries
shows it the Python environment but not this repository, so it cannot import
:mod:`benchmark.dataset.normalisation`; the few lines below compute the same statistics.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

#: The recipe; any key can be overridden by the harness's config.
DEFAULT_CONFIG = {
    "filters": [16, 32, 64],
    "dense_units": [200, 100, 20],
    "batch_size": 32,
    "learning_rate": 1e-3,
    "max_epochs": 20,
    "patience": 5,
    "lr_patience": 3,
    "lr_factor": 0.5,
    "min_learning_rate": 1e-5,
    "augment": True,
    "predict_batch_size": 256,
}


def build_network(filters=(16, 32, 64), dense_units=(200, 100, 20), npix: int = 128) -> nn.Module:
    """The reference network, channels first: (N, 1, npix, npix) -> (N,)."""
    layers: list[nn.Module] = []
    channels = 1
    for n_filters in filters:
        layers += [nn.Conv2d(channels, int(n_filters), 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        channels = int(n_filters)
    width = channels * (npix // 2 ** len(filters)) ** 2
    layers.append(nn.Flatten())
    for units in dense_units:
        layers += [nn.Linear(width, int(units)), nn.ReLU()]
        width = int(units)
    layers += [nn.Linear(width, 1), nn.Flatten(0)]
    net = nn.Sequential(*layers)
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return net


def _log_counts(images) -> np.ndarray:
    return np.log10(1.0 + np.asarray(images, dtype=np.float32))


def _safe_std(value: float) -> float:
    return float(value) if value > 1e-8 else 1.0


def _square_symmetry(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random flip, then a random number of quarter turns, per image of (B, H, W)."""
    flip = rng.integers(0, 2, len(batch)).astype(bool)
    out = np.where(flip[:, None, None], batch[:, :, ::-1], batch)
    turns = rng.integers(0, 4, len(batch))
    for k in (1, 2, 3):
        out[turns == k] = np.rot90(out[turns == k], k, axes=(1, 2))
    return out


class TorchReference:
    """The reference recipe in PyTorch, following the harness's model protocol."""

    def __init__(self, config: dict | None = None):
        self.config = {**DEFAULT_CONFIG, **(config or {})}
        self.seed = int(self.config.get("random_seed", 0))
        self.net: nn.Module | None = None
        self.stats: dict = {}
        self.history: dict = {"loss": [], "val_loss": []}

    def _inputs(self, images) -> torch.Tensor:
        x = (_log_counts(images) - self.stats["image_log_mean"]) / self.stats["image_log_std"]
        return torch.from_numpy(x.astype(np.float32))

    def _targets(self, y) -> torch.Tensor:
        y = (np.asarray(y, np.float64) - self.stats["y_mean"]) / self.stats["y_std"]
        return torch.from_numpy(y.astype(np.float32))

    def _forward(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        return self.net(torch.as_tensor(x)[:, None])

    def _loss_on(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.net.eval()
        batch = int(self.config["predict_batch_size"])
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(x), batch):
                pred = self._forward(x[start:start + batch])
                total += float(((pred - y[start:start + batch]) ** 2).sum())
        return total / len(x)

    def fit(self, train, val) -> "TorchReference":
        """Train on ``train``, early-stop on ``val`` (images, aux, y)."""
        cfg = self.config
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        log_x = _log_counts(train.images).astype(np.float64)
        y = np.asarray(train.y, np.float64)
        self.stats = {"image_log_mean": float(log_x.mean()),
                      "image_log_std": _safe_std(log_x.std()),
                      "y_mean": float(y.mean()), "y_std": _safe_std(y.std())}
        del log_x
        x_train, y_train = self._inputs(train.images), self._targets(train.y)
        x_val, y_val = self._inputs(val.images), self._targets(val.y)
        npix = int(x_train.shape[-1])
        self.net = build_network(cfg["filters"], cfg["dense_units"], npix)
        optimiser = torch.optim.Adam(self.net.parameters(), lr=float(cfg["learning_rate"]),
                                     eps=1e-7)
        # Keras's ReduceLROnPlateau: an absolute improvement of 1e-4 counts.
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimiser, factor=float(cfg["lr_factor"]), patience=int(cfg["lr_patience"]),
            threshold=1e-4, threshold_mode="abs", min_lr=float(cfg["min_learning_rate"]))
        best, best_state, waited = math.inf, None, 0
        for _ in range(int(cfg["max_epochs"])):
            self.history["loss"].append(self._epoch(x_train, y_train, optimiser, rng))
            val_loss = self._loss_on(x_val, y_val)
            self.history["val_loss"].append(val_loss)
            scheduler.step(val_loss)
            if val_loss < best:
                best, best_state, waited = val_loss, copy.deepcopy(self.net.state_dict()), 0
            else:
                waited += 1
                if waited >= int(cfg["patience"]):
                    break
        self.net.load_state_dict(best_state)
        return self

    def _epoch(self, x: torch.Tensor, y: torch.Tensor, optimiser, rng) -> float:
        self.net.train()
        batch = int(self.config["batch_size"])
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), batch):
            rows = order[start:start + batch]
            images = x[rows].numpy()
            if self.config["augment"]:
                images = _square_symmetry(images, rng)
            optimiser.zero_grad()
            loss = ((self._forward(np.ascontiguousarray(images)) - y[rows]) ** 2).mean()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(rows)
        return total / len(x)

    def predict(self, data) -> np.ndarray:
        """log10 M500c [Msun], one per image of ``data``."""
        if self.net is None:
            raise RuntimeError("the model is not trained: call fit(train, val) first")
        self.net.eval()
        x = self._inputs(data.images)
        batch = int(self.config["predict_batch_size"])
        with torch.no_grad():
            out = torch.cat([self._forward(x[s:s + batch]) for s in range(0, len(x), batch)])
        return out.numpy().astype(np.float64) * self.stats["y_std"] + self.stats["y_mean"]


def make_model(config: dict | None = None) -> TorchReference:
    """The protocol's entry point: a fresh, untrained model."""
    return TorchReference(config)
