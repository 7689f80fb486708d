"""Other decoders for the dual-decoder network: attention U-Net and UNet++.

Both keep DMSPS's split (one shared encoder, a main decoder on the clean features, an
auxiliary decoder on feature-dropped copies in training) and change only what a decoder
does with the encoder's skip connections, so any training method, the padding to
``multiples``, BatchNorm folding and ONNX export work unchanged. They are built from the
N-D blocks of ``unet.py`` and so run in 2D and 3D (anisotropic Z pooling included), with
every ``ModelConfig`` option (norm, activation, join, head kernel).

* ``attention-unet`` (Oktay et al., "Attention U-Net: Learning where to look for the
  pancreas", MIDL 2018): before each up-step joins its skip connection, an additive
  attention gate driven by the coarser decoder features weights the skip voxel by voxel,
  so the decoder ignores encoder responses outside the organ it is reconstructing.
* ``unetpp`` (Zhou et al., "UNet++: A nested U-Net architecture for medical image
  segmentation", DLMIA 2018): nested dense skip pathways; every level gets a chain of
  conv blocks, each fed all earlier nodes of its level and the upsampled node below,
  which narrows the semantic gap between encoder and decoder features. The output is
  the last full-resolution node (no deep supervision).

``models/networks.py`` lists them in ``NETWORKS``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dmsps.models.unet import (
    ConvBlock,
    Decoder,
    DualDecoderNet,
    ModelConfig,
    UpBlock,
    _layers,
    output_head,
)


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018, eq. 1-2): weights in (0, 1) per voxel.

    The skip is brought to the gating signal's grid with a strided convolution (kernel
    and stride = the pooling step between the two levels), which is where the paper
    computes the gate: cheaper than upsampling the gate, and both terms see the same
    receptive field. ``psi`` gives one coefficient per voxel, resampled to the skip's
    size; the skip is multiplied by it. No normalisation inside, so nothing to fold.
    """

    def __init__(
        self, gate_channels: int, skip_channels: int, cfg: ModelConfig, pool: Sequence[int]
    ) -> None:
        super().__init__()
        conv, _, _ = _layers(cfg.spatial_dims)
        inter = max(skip_channels // 2, 1)  # the paper's code: half the skip's width
        pool = tuple(pool)
        self.theta = conv(skip_channels, inter, pool, stride=pool, bias=False)
        self.phi = conv(gate_channels, inter, 1)
        self.psi = conv(inter, 1, 1)
        self.mode = "bilinear" if cfg.spatial_dims == 2 else "trilinear"

    def coefficients(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """The attention map (N, 1, *skip's spatial size), for inspection and tests."""
        q = F.relu(self.theta(skip) + self.phi(gate), inplace=True)
        alpha = torch.sigmoid(self.psi(q))
        return F.interpolate(alpha, size=skip.shape[2:], mode=self.mode, align_corners=False)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return skip * self.coefficients(skip, gate)


class AttentionUpBlock(UpBlock):
    """``UpBlock`` whose skip connection passes an attention gate first, gated by the
    deeper decoder features at their full width (before any ``join="reduce"`` 1x1)."""

    def __init__(
        self,
        cin: int,
        cskip: int,
        cout: int,
        cfg: ModelConfig,
        scale: tuple[int, ...] = (2, 2),
        kernel: Sequence[int] | None = None,
    ) -> None:
        super().__init__(cin, cskip, cout, cfg, scale, kernel)
        self.gate = AttentionGate(cin, cskip, cfg, scale)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return super().forward(x, self.gate(skip, x))


class AttentionDecoder(Decoder):
    """``Decoder`` with attention-gated skip connections at every up-step."""

    up_block = AttentionUpBlock


class NestedUpBlock(UpBlock):
    """One UNet++ node X(i, j): the upsampled node below, X(i+1, j-1), joined with all
    ``skips`` earlier nodes of level i, X(i, 0..j-1), then a conv block.

    Up-sampling as ``UpBlock`` (``join="reduce"`` brings the deeper node to one level
    width first, like the paper's transposed convolution), only the conv block is wider.
    """

    def __init__(
        self,
        cin: int,
        width: int,
        skips: int,
        cfg: ModelConfig,
        scale: tuple[int, ...] = (2, 2),
        kernel: Sequence[int] | None = None,
    ) -> None:
        super().__init__(cin, width, width, cfg, scale, kernel)
        if skips > 1:  # UpBlock sized its conv block for one skip
            up = width if self.reduce is not None else cin
            self.block = ConvBlock(skips * width + up, width, 0.0, cfg, kernel)

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        skip = skips[0] if len(skips) == 1 else torch.cat(list(skips), dim=1)
        return super().forward(x, skip)


class NestedDecoder(nn.Module):
    """UNet++ decoder: ``columns[j - 1][i]`` is node X(i, j), for j = 1 .. L-1 and
    i = 0 .. L-1-j (L levels; X(i, 0) are the encoder features). The output is the
    head on X(0, L-1)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        ft, pools, ks = cfg.features, cfg.pool_sizes, cfg.kernels
        levels = len(ft)
        self.columns = nn.ModuleList(
            [
                nn.ModuleList(
                    [
                        NestedUpBlock(ft[i + 1], ft[i], j, cfg, pools[i], ks[i])
                        for i in range(levels - j)
                    ]
                )
                for j in range(1, levels)
            ]
        )
        self.head = output_head(cfg)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        grid = [[f] for f in feats]  # grid[i][j] = X(i, j)
        for j, column in enumerate(self.columns, start=1):
            for i, node in enumerate(column):
                grid[i].append(node(grid[i + 1][j - 1], grid[i][:j]))
        return self.head(grid[0][-1])


class _SwappedDecoders(DualDecoderNet):
    """``DualDecoderNet`` with both decoders of class ``decoder``: encoder, feature
    dropout, padding, ``main_logits`` and the state-dict layout (encoder., main., aux.)
    stay those of the original network."""

    decoder: type[nn.Module]

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)  # checks cfg; builds plain decoders, replaced here
        self.main = self.decoder(cfg)
        self.aux = self.decoder(cfg)


class AttentionUNet(_SwappedDecoders):
    """Dual-decoder attention U-Net (``network="attention-unet"``), 2D and 3D."""

    decoder = AttentionDecoder


class UNetPlusPlus(_SwappedDecoders):
    """Dual-decoder UNet++ (``network="unetpp"``), 2D and 3D."""

    decoder = NestedDecoder
