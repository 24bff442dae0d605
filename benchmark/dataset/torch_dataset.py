"""The PyTorch dataset of a fold part; imports torch, so only :func:`torch_dataset` imports it.

A module of its own (rather than a class made inside a function) so that the class pickles
by name: ``DataLoader(num_workers > 0)`` sends the dataset to its worker processes.
Use :func:`benchmark.dataset.frameworks.torch_dataset` to build one.
"""
from __future__ import annotations

import torch

__all__ = ["FoldTorchDataset"]


class FoldTorchDataset(torch.utils.data.Dataset):
    """Items of a :class:`benchmark.dataset.frameworks.FoldSplit` as float32 tensors.

    Parameters
    ----------
    split : FoldSplit
        The part in memory, normalised or not.
    with_redshift : bool
        Items ``((image, redshift (1,)), target)`` instead of ``(image, target)``.
    augment : bool
        A random symmetry of the square per item (flip, then quarter turns), drawn from
        torch's generator.

    Attributes
    ----------
    split : FoldSplit
    image_ids : ndarray of str
        In item order, to match predictions to the catalog.
    """

    def __init__(self, split, *, with_redshift: bool = False, augment: bool = False):
        self.split = split
        self.image_ids = split.image_ids
        self.with_redshift = bool(with_redshift)
        self.augment = bool(augment)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        rows = [int(i)]
        # (1, H, W, 1) -> (1, H, W): the leading axis becomes the channel.
        image = torch.from_numpy(self.split.images(rows)[..., 0])
        if self.augment:
            image = self._symmetry(image)
        target = torch.from_numpy(self.split.targets(rows))[0]
        if self.with_redshift:
            return (image, torch.from_numpy(self.split.redshifts(rows))[0]), target
        return image, target

    @staticmethod
    def _symmetry(image: torch.Tensor) -> torch.Tensor:
        if bool(torch.randint(0, 2, ()).item()):
            image = torch.flip(image, dims=(2,))
        return torch.rot90(image, int(torch.randint(0, 4, ()).item()), dims=(1, 2))
