"""The ``clustermass`` command: the top floor, the one module that imports every layer."""
