"""The dataset contract: what a clustermass dataset is, written down once.

Generation writes through it, the harness reads through it, and nothing else knows a file
name or a column.

- ``HDF5_SPEC.md``: the layout of a dataset folder, in prose.
- :mod:`benchmark.dataset.layout`: the names (files, catalog columns, file attributes).
- :mod:`benchmark.dataset.card`: the dataset card's required fields, read and written.
- :mod:`benchmark.dataset.checker`: the layout checker (catalog columns, file attributes).
- :mod:`benchmark.dataset.splits`: the fixed ten-fold splits, grouped by cluster.
- :mod:`benchmark.dataset.loader`: :class:`ClusterMassDataset`, the NumPy loader.
- :mod:`benchmark.dataset.sources`: the true sky sources of each view (point sources,
  line-of-sight haloes), read from the cluster files' ``/sources`` tables.
- :mod:`benchmark.dataset.normalisation`: training-fold normalisation (the reference CNN's).
- :mod:`benchmark.dataset.frameworks`: fold-aware loaders for other frameworks: NumPy batches
  (JAX), ``tf.data``, a ``torch.utils.data.Dataset``.
- :mod:`benchmark.dataset.croissant`: Croissant metadata (``croissant.json``), via mlcroissant.
- :mod:`benchmark.dataset.fits`: any image as FITS with a celestial WCS.
- :mod:`benchmark.dataset.release`: the dataset as a DataLad data product (fetch,
  regenerate, verify, pin, release).
- :mod:`benchmark.dataset.archive`: the plain archive for users without git-annex.
"""
