"""dmsps: scribble-supervised medical image segmentation (DMSPS, MedIA 2024).

The Python API (``dmsps.load_model``, ``Model``, ``Segmentation``) is in ``dmsps.api``;
it is imported on first use, so ``import dmsps`` and the command line stay quick.
"""

__version__ = "0.1.0"

__all__ = ["Model", "Segmentation", "__version__", "load_model"]


def __getattr__(name: str):
    if name in ("Model", "Segmentation", "load_model"):
        from dmsps import api

        return getattr(api, name)
    raise AttributeError(f"module 'dmsps' has no attribute '{name}'")
