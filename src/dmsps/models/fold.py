"""Inference copies of a model with each BatchNorm folded into the convolution before it.

In eval mode a BatchNorm is a fixed per-channel affine map, so it can live in the
preceding convolution's weights and bias: one memory pass less per block, the same
outputs up to float rounding. The training model is never changed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module, channels_last: bool = False) -> nn.Module:
    """An eval-mode copy of ``model`` where every Conv -> BatchNorm pair inside an
    ``nn.Sequential`` is one convolution (the BatchNorm becomes ``nn.Identity``)."""
    folded = copy.deepcopy(model).eval()
    for seq in folded.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, _ConvNd) and isinstance(bn, _BatchNorm) and bn.track_running_stats:
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
    if channels_last:
        fmt = torch.channels_last if _dims(folded) == 2 else torch.channels_last_3d
        folded = folded.to(memory_format=fmt)
    return folded


def _dims(model: nn.Module) -> int:
    conv = next((m for m in model.modules() if isinstance(m, _ConvNd)), None)
    return 2 if conv is None else len(conv.kernel_size)
