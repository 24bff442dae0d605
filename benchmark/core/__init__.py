"""The ground floor: pieces every other layer shares and that import nothing of the project.

- :mod:`benchmark.core.errors`: the one exception family (bad input names problem and fix).
- :mod:`benchmark.core.cosmology`: the one cosmology object and the physical constants.
- :mod:`benchmark.core.io`: atomic writes and strict JSON, written once.
- :mod:`benchmark.core.log`: module loggers and the command line's log set-up.
- :mod:`benchmark.core.settings`: folders and ``CLUSTERMASS_*`` variables, read in one place.
"""
