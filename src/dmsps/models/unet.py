"""U-Net building blocks and the dual-decoder network used by DMSPS ("UNet-CCT").

One set of blocks serves 2D and 3D (``spatial_dims``). The backbone is split into an
encoder and a decoder so that the dual-decoder wrapper (``DualDecoderNet``) can give the
auxiliary decoder channel-dropped features while the main decoder sees the clean ones.

Two variants of the authors' code are options of the same blocks:

* 2D (``UNet_CCT``): BatchNorm, LeakyReLU, each up-step reduces the deeper features to
  the skip's width with a 1x1 convolution before upsampling (``join="reduce"``), and a
  3x3 output convolution. The defaults.
* 3D (``UNet_CCT_dp_3D``): InstanceNorm3d without affine parameters, ReLU, upsampling of
  the full-width deeper features then concatenation with the skip (``join="concat"``),
  and a 1x1x1 output convolution.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from dmsps.errors import DmspsError

NORMS = ("batch", "instance")
ACTIVATIONS = ("leakyrelu", "relu")
JOINS = ("reduce", "concat")


@dataclass
class NetworkSettings:
    """The network's architecture as a user chooses it: one definition, inherited by the
    training settings (``TrainConfig``) and by the model's own config (``ModelConfig``,
    saved in checkpoints), so the two cannot drift apart.

    Per-level kernels and pooling strides follow nnU-Net: on thick-slice volumes the
    levels whose slice spacing is still far above the in-plane spacing use 1x3x3 kernels
    and 1x2x2 pooling, so a convolution never mixes slices 10 mm apart before the
    in-plane resolution has caught up. Empty lists mean 3 everywhere and ``z_pooling``'s
    strides.
    """

    spatial_dims: int = 2  # 2: slices; 3: volumes
    network: str = "unet"  # a NETWORKS name (models/networks.py)
    features: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])
    # Dropout before each encoder level's second convolution; [] = the research code's
    # [0.05, 0.1, 0.2, 0.3, 0.5], cut or extended to the depth of ``features``.
    encoder_dropout: list[float] = field(default_factory=list)
    feature_dropout: float = 0.5  # channel dropout of the auxiliary decoder's inputs
    norm: str = "batch"  # batch | instance
    activation: str = "leakyrelu"  # leakyrelu | relu
    join: str = "reduce"  # decoder: reduce (1x1 conv, then upsample) | concat
    head_kernel: int = 3  # output convolution: 3 (2D research code) | 1 (3D)
    # 3D only: how many of the deepest down-steps also halve Z (-1: all). Thick-slice
    # volumes (ACDC: 5-10 mm slices, 1.5 mm pixels) keep their few slices longer.
    # ``pool_strides`` replaces it where given.
    z_pooling: int = -1
    # Per level (one per ``features`` entry): the convolution kernel, per axis, e.g.
    # [[1, 3, 3], [1, 3, 3], [3, 3, 3], ...]; [] = 3 on every axis at every level.
    kernel_sizes: list[list[int]] = field(default_factory=list)
    # Per down-step (one fewer than levels): the pooling stride per axis; [] = 2 in-plane,
    # Z as ``z_pooling`` says.
    pool_strides: list[list[int]] = field(default_factory=list)

    def network_settings(self) -> dict:
        """The fields of this class only (what a ``ModelConfig`` takes from a
        ``TrainConfig``)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(NetworkSettings)}

    @property
    def levels(self) -> int:
        return len(self.features)

    @property
    def pool_sizes(self) -> list[tuple[int, ...]]:
        """Pooling kernel (= stride) of each down-step, per axis."""
        steps = self.levels - 1
        if self.pool_strides:
            return [tuple(int(v) for v in s) for s in self.pool_strides]
        if self.spatial_dims == 2:
            return [(2, 2)] * steps
        z = steps if self.z_pooling < 0 else min(self.z_pooling, steps)
        return [(2 if i >= steps - z else 1, 2, 2) for i in range(steps)]

    @property
    def kernels(self) -> list[tuple[int, ...]]:
        """Convolution kernel of each level, per axis."""
        if self.kernel_sizes:
            return [tuple(int(v) for v in k) for k in self.kernel_sizes]
        return [(3,) * self.spatial_dims] * self.levels

    @property
    def multiples(self) -> tuple[int, ...]:
        """How much the encoder shrinks each axis: inputs are padded to a multiple of it."""
        out = [1] * self.spatial_dims
        for size in self.pool_sizes:
            out = [a * b for a, b in zip(out, size, strict=True)]
        return tuple(out)

    @property
    def downsampling(self) -> int:
        return max(self.multiples)

    def check_network(self) -> None:
        """Refuse an architecture that cannot be built (network names: build_model)."""
        for name, value, allowed in (
            ("norm", self.norm, NORMS),
            ("activation", self.activation, ACTIVATIONS),
            ("join", self.join, JOINS),
        ):
            if value not in allowed:
                raise DmspsError(f"{name} must be one of {', '.join(allowed)}, not '{value}'")
        if self.spatial_dims not in (2, 3):
            raise DmspsError(f"spatial_dims must be 2 or 3, not {self.spatial_dims}")
        if self.head_kernel not in (1, 3):
            raise DmspsError(f"head_kernel must be 1 or 3, not {self.head_kernel}")
        if len(self.features) < 2:
            raise DmspsError("features needs at least two levels")
        drop = self.encoder_dropout
        if drop and (len(drop) != self.levels or any(not 0 <= d < 1 for d in drop)):
            raise DmspsError(
                f"encoder_dropout {drop} needs one value in [0, 1) per encoder level "
                f"({self.levels}, as features {self.features}), or none for the default"
            )
        if not 0 <= self.feature_dropout < 1:
            raise DmspsError(f"feature_dropout must be in [0, 1), got {self.feature_dropout}")
        d = self.spatial_dims
        for name, given, count, ok in (
            ("kernel_sizes", self.kernel_sizes, self.levels, (1, 3)),
            ("pool_strides", self.pool_strides, self.levels - 1, (1, 2)),
        ):
            if not given:
                continue
            if len(given) != count or any(
                len(k) != d or any(v not in ok for v in k) for k in given
            ):
                each = " x ".join(["N"] * d)
                raise DmspsError(
                    f"{name} {_fmt_levels(given)} needs {count} entries of {d} sizes each "
                    f"({each}, every N in {ok}), one per "
                    f"{'level' if name == 'kernel_sizes' else 'down-step'}"
                )


def _fmt_levels(levels: Sequence[Sequence[int]]) -> str:
    return ",".join("x".join(str(v) for v in k) for k in levels)


@dataclass
class ModelConfig(NetworkSettings):
    """Architecture of the dual-branch U-Net as built: the user's ``NetworkSettings``
    plus what the dataset decides. Saved in every checkpoint."""

    in_channels: int = 1
    num_classes: int = 4

    def __post_init__(self) -> None:
        # None is how checkpoints up to 2026-12 marked the default dropouts.
        if not self.encoder_dropout:
            self.encoder_dropout = default_dropouts(len(self.features))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Rebuild from a checkpoint; releases up to 0.1 called ``spatial_dims`` ``dims``."""
        data = dict(data)
        if "dims" in data:
            data["spatial_dims"] = data.pop("dims")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DmspsError(f"unknown model setting(s) {unknown}: made by a newer dmsps?")
        return cls(**data)

    def check(self) -> None:
        self.check_network()


def default_dropouts(levels: int) -> list[float]:
    """The research code's encoder dropout per level, cut or extended to ``levels``."""
    base = [0.05, 0.1, 0.2, 0.3, 0.5]
    return base[:levels] if levels <= len(base) else base + [0.5] * (levels - len(base))


class Conv3d(nn.Conv3d):
    """nn.Conv3d that computes in fp32 under CPU bf16 for inputs exactly two voxels deep.

    PyTorch's CPU bf16 weight gradient of a 3x3x3 convolution is wrong when the input is
    two voxels deep (relative error 1 to 1e37 and NaN; every other depth from 1 to 20 is
    within bf16 rounding; torch 2.13 on an AVX-512-BF16 CPU; tests/models/test_unet.py).
    A 3D U-Net meets that depth at its deepest levels (16 slices pooled three times), and
    it turned bf16 training NaN within tens of iterations. Those levels are tiny, so fp32
    there costs nothing measurable.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-3] != 2 or x.device.type != "cpu" or not _cpu_bf16(x):
            return super().forward(x)
        with torch.autocast("cpu", enabled=False):
            bias = None if self.bias is None else self.bias.float()
            y = self._conv_forward(x.float(), self.weight.float(), bias)
        return y.to(torch.bfloat16)


def _cpu_bf16(x: torch.Tensor) -> bool:
    """Would a CPU convolution of ``x`` run in bf16 (bf16 input, or bf16 autocast)?"""
    if x.dtype == torch.bfloat16:
        return True
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def _layers(dims: int):
    if dims == 2:
        return nn.Conv2d, nn.MaxPool2d, nn.Dropout2d
    if dims == 3:
        return Conv3d, nn.MaxPool3d, nn.Dropout3d
    raise ValueError(f"spatial_dims must be 2 or 3, got {dims}")


def _norm(kind: str, dims: int, channels: int) -> nn.Module:
    if kind == "batch":
        return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(channels)
    return (nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d)(channels)


def _act(kind: str) -> nn.Module:
    # In place on the norm's output (a norm's backward does not need it): one
    # activation-sized buffer less per layer, ~8 % faster CPU steps at 256x256.
    return nn.LeakyReLU(inplace=True) if kind == "leakyrelu" else nn.ReLU(inplace=True)


def _same(kernel: Sequence[int]) -> tuple[int, ...]:
    """Padding that keeps the size for an odd kernel, per axis."""
    return tuple(k // 2 for k in kernel)


def output_head(cfg: ModelConfig) -> nn.Module:
    """The output convolution: 1 x 1 (x 1), or the first level's kernel (3 x 3 in 2D)."""
    conv, _, _ = _layers(cfg.spatial_dims)
    k = (1,) * cfg.spatial_dims if cfg.head_kernel == 1 else cfg.kernels[0]
    return conv(cfg.features[0], cfg.num_classes, k, padding=_same(k))


class ConvBlock(nn.Sequential):
    """conv-norm-act, dropout, conv-norm-act; ``kernel`` per axis (3 on every axis if
    not given)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        dropout: float,
        cfg: ModelConfig,
        kernel: Sequence[int] | None = None,
    ) -> None:
        conv, _, _ = _layers(cfg.spatial_dims)
        d = cfg.spatial_dims
        k = tuple(kernel) if kernel is not None else (3,) * d
        super().__init__(
            conv(cin, cout, k, padding=_same(k)),
            _norm(cfg.norm, d, cout),
            _act(cfg.activation),
            nn.Dropout(dropout),
            conv(cout, cout, k, padding=_same(k)),
            _norm(cfg.norm, d, cout),
            _act(cfg.activation),
        )


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        ft, dp, ks = cfg.features, cfg.encoder_dropout, cfg.kernels
        self.pool_sizes = cfg.pool_sizes
        self._pool = F.max_pool2d if cfg.spatial_dims == 2 else F.max_pool3d
        self.blocks = nn.ModuleList(
            [ConvBlock(cfg.in_channels, ft[0], dp[0], cfg, ks[0])]
            + [ConvBlock(ft[i - 1], ft[i], dp[i], cfg, ks[i]) for i in range(1, len(ft))]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self._pool(x, self.pool_sizes[i - 1]))
            feats.append(x)
        return feats


class UpBlock(nn.Module):
    """Upsample x2 ((bi/tri)linear), concatenate [skip, up], conv block.

    ``join="reduce"``: a 1x1 conv first brings the deeper features to the skip's width
    (align_corners=True upsampling, as the 2D research code). ``"concat"``: the full-width
    features are upsampled (align_corners=False, nn.Upsample's default, as the 3D code).
    """

    def __init__(
        self,
        cin: int,
        cskip: int,
        cout: int,
        cfg: ModelConfig,
        scale: tuple[int, ...] = (2, 2),
        kernel: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.scale = scale if len(set(scale)) > 1 else scale[0]
        conv, _, _ = _layers(cfg.spatial_dims)
        self.reduce = conv(cin, cskip, 1) if cfg.join == "reduce" else None
        self.mode = "bilinear" if cfg.spatial_dims == 2 else "trilinear"
        self.align = cfg.join == "reduce"
        width = 2 * cskip if self.reduce is not None else cskip + cin
        self.block = ConvBlock(width, cout, 0.0, cfg, kernel)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.reduce is not None:
            x = self.reduce(x)
        scale = self.scale if isinstance(self.scale, tuple) else (self.scale,) * (x.dim() - 2)
        if all(f * s == t for f, s, t in zip(scale, x.shape[2:], skip.shape[2:], strict=True)):
            x = F.interpolate(x, scale_factor=self.scale, mode=self.mode, align_corners=self.align)
        else:
            x = F.interpolate(x, size=skip.shape[2:], mode=self.mode, align_corners=self.align)
        return self.block(torch.cat([skip, x], dim=1))


class Decoder(nn.Module):
    """Up-steps from the deepest level to the first, then the output convolution; a
    variant changes ``up_block`` (backbones.py: attention-gated skips)."""

    up_block: type[UpBlock] = UpBlock

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        ft, pools, ks = cfg.features, cfg.pool_sizes, cfg.kernels
        self.ups = nn.ModuleList(
            [
                self.up_block(ft[i], ft[i - 1], ft[i - 1], cfg, pools[i - 1], ks[i - 1])
                for i in range(len(ft) - 1, 0, -1)
            ]
        )
        self.head = output_head(cfg)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for up, skip in zip(self.ups, reversed(feats[:-1]), strict=True):
            x = up(x, skip)
        return self.head(x)


def pad_to_multiple(x: torch.Tensor, multiples: Sequence[int]) -> tuple[torch.Tensor, list[int]]:
    """Pad (N, C, *spatial) centrally (edge values repeated) so every spatial size is a
    multiple of ``multiples``; returns the padded tensor and the original sizes."""
    sizes = list(x.shape[2:])
    extra = [(-s) % m for s, m in zip(sizes, multiples, strict=True)]
    if not any(extra):
        return x, sizes
    pad: list[int] = []
    for e in reversed(extra):  # F.pad wants the last dim first
        pad += [e // 2, e - e // 2]
    return F.pad(x, pad, mode="replicate" if x.dim() <= 5 else "constant"), sizes


def crop_to(y: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Undo ``pad_to_multiple``: the central ``sizes`` of (N, C, *spatial)."""
    if list(y.shape[2:]) == list(sizes):
        return y
    slices = [slice(None), slice(None)]
    for have, want in zip(y.shape[2:], sizes, strict=True):
        start = (have - want) // 2
        slices.append(slice(start, start + want))
    return y[tuple(slices)]


class DualDecoderNet(nn.Module):
    """Shared encoder, main decoder, auxiliary decoder on channel-dropped features.

    ``forward`` returns (main_logits, aux_logits) in training; in eval mode the auxiliary
    decoder sees clean features (feature dropout is a training-time perturbation only),
    unless ``dropout_at_inference`` is set: both author releases call ``F.dropout2d/3d``
    with its default ``training=True``, so their auxiliary decoder is perturbed at
    inference too, which changes the uncertainty that expansion thresholds.
    ``forward(x, aux=False)`` skips the auxiliary decoder entirely for fast inference.
    Inputs whose size is not a multiple of ``cfg.multiples`` are padded and cropped back.
    """

    #: Keep the auxiliary decoder's feature dropout on in eval mode (the authors' code).
    dropout_at_inference: bool = False

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.check()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.main = Decoder(cfg)
        self.aux = Decoder(cfg)
        _, _, drop = _layers(cfg.spatial_dims)
        self.feature_dropout = drop(cfg.feature_dropout)
        self.multiples = cfg.multiples

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        return pad_to_multiple(x, self.multiples)

    @staticmethod
    def _crop(y: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        return crop_to(y, sizes)

    def main_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The main decoder's logits for an input whose size is already a multiple of
        ``multiples`` (what ONNX export traces: no shape-dependent padding)."""
        return self.main(self.encoder(x))

    def forward(self, x: torch.Tensor, aux: bool = True):
        x, sizes = self._pad(x)
        feats = self.encoder(x)
        main = self._crop(self.main(feats), sizes)
        if not aux:
            return main
        if self.dropout_at_inference and not self.training:
            drop = F.dropout2d if self.cfg.spatial_dims == 2 else F.dropout3d
            aux_feats = [drop(f, self.cfg.feature_dropout, training=True) for f in feats]
        else:
            aux_feats = [self.feature_dropout(f) for f in feats]
        return main, self._crop(self.aux(aux_feats), sizes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
