"""The networks by name, and ``build_model``.

This module collects the dual-decoder networks from the modules that define them
(``unet.py``, ``backbones.py``); none of them writes into the registry, so importing
any module first gives the same ``NETWORKS``. A new network is one class in its own
module, one entry here and one test (docs/CONTRIBUTING.md).
"""

from __future__ import annotations

from torch import nn

from dmsps.errors import DmspsError
from dmsps.models.backbones import AttentionUNet, UNetPlusPlus
from dmsps.models.unet import DualDecoderNet, ModelConfig

#: Network classes by ``ModelConfig.network`` name; each takes a ModelConfig.
NETWORKS: dict[str, type[nn.Module]] = {
    "unet": DualDecoderNet,
    "attention-unet": AttentionUNet,
    "unetpp": UNetPlusPlus,
}


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.network not in NETWORKS:
        raise DmspsError(
            f"unknown network '{cfg.network}' (available: {', '.join(sorted(NETWORKS))})"
        )
    return NETWORKS[cfg.network](cfg)
