"""Dataset importers: each module of this package converts one source into our layout.

A module that defines ``IMPORTER`` (see ``common.Importer``) is registered under its
name; ``dmsps import NAME`` dispatches here. To add a source, write one module (copy
``acdc.py`` for a NIfTI release, ``acdc_h5.py`` for another container) and its test.
"""

from __future__ import annotations

import importlib
import pkgutil

from dmsps.data.importers.common import Importer, ImportResult
from dmsps.errors import DmspsError

__all__ = ["IMPORTERS", "ImportResult", "Importer", "get_importer"]


def _discover() -> dict[str, Importer]:
    found: dict[str, Importer] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        imp = getattr(module, "IMPORTER", None)
        if isinstance(imp, Importer):
            if imp.name in found:
                raise RuntimeError(f"two importers are called '{imp.name}'")
            found[imp.name] = imp
    return found


#: name -> Importer, for every source module in this package.
IMPORTERS: dict[str, Importer] = _discover()


def get_importer(name: str) -> Importer:
    if name not in IMPORTERS:
        raise DmspsError(f"unknown import source '{name}' (available: {', '.join(IMPORTERS)})")
    return IMPORTERS[name]
