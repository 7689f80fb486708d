"""ONNX export of a checkpoint's inference network, and running the result.

The exported graph is the main decoder only (what segmentation uses), with BatchNorm
folded into the convolutions, softmax left out (logits), and dynamic batch and spatial
sizes. Spatial sizes must be multiples of the network's down-sampling factor; the
runner pads and crops around the graph as the PyTorch model does itself, so callers
pass any size. The checkpoint's metadata (classes, channels, normalisation, inference
settings, target spacing) travels inside the file as ``dmsps_meta`` JSON, which is what
lets ``dmsps predict`` take an ``.onnx`` file instead of a checkpoint.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dmsps.errors import DmspsError, missing_extra
from dmsps.io.atomic import atomic_path
from dmsps.models.checkpoint import load_checkpoint, model_config, model_from_checkpoint
from dmsps.models.fold import fold_batchnorm
from dmsps.models.unet import crop_to, pad_to_multiple

META_KEY = "dmsps_meta"
INPUT, OUTPUT = "image", "logits"


class _MainDecoder(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.main_logits(x)


def export_onnx(checkpoint: str | Path, out: str | Path, check: bool = True) -> dict[str, Any]:
    """Write ``out`` (atomically) from ``checkpoint``; returns what was exported and, with
    ``check``, the largest logit difference between ONNX Runtime and PyTorch on a random
    input of twice the network's multiple."""
    try:
        import onnx
    except ImportError as exc:
        raise missing_extra("onnx", "ONNX export", exc) from None
    checkpoint, out = Path(checkpoint), Path(out)
    if out.suffix != ".onnx":
        raise DmspsError(f"{out}: the output file name must end in .onnx")
    ckpt = load_checkpoint(checkpoint)
    cfg = model_config(ckpt)
    net = fold_batchnorm(model_from_checkpoint(ckpt, checkpoint))
    model = _MainDecoder(net).eval()
    multiples = list(cfg.multiples)
    example = torch.randn(2, cfg.in_channels, *[2 * m for m in multiples])
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=4096)}
    for i, m in enumerate(multiples):
        dims[2 + i] = m * torch.export.Dim(f"size{i}", min=1, max=4096)
    out.parent.mkdir(parents=True, exist_ok=True)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed" notes, not ours
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (example,),
                dynamic_shapes=(dims,),
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamo=True,
                verbose=False,
            )
    except ImportError as exc:
        raise missing_extra("onnx", "ONNX export", exc) from None
    except Exception as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else "no message"
        raise DmspsError(
            f"{checkpoint}: ONNX export failed ({type(exc).__name__}: {first})"
        ) from None
    finally:
        quiet.setLevel(level)
    proto = program.model_proto
    meta = dict(ckpt["meta"])
    meta["exported_from"] = checkpoint.name
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    with atomic_path(out, suffix=".onnx") as tmp:
        onnx.save(proto, str(tmp))
    result: dict[str, Any] = {
        "path": str(out),
        "spatial_dims": cfg.spatial_dims,
        "in_channels": cfg.in_channels,
        "num_classes": cfg.num_classes,
        "multiples": multiples,
    }
    if check:
        probe = torch.randn(1, cfg.in_channels, *[2 * m + 3 for m in multiples])
        with torch.no_grad():
            ref = net(probe, aux=False).numpy()
        got = OnnxNet(out)(probe, aux=False).numpy()
        result["max_abs_diff"] = float(np.abs(got - ref).max())
    return result


class OnnxNet:
    """An exported network behind the interface inferers call: ``net(x, aux=False)``
    returns main-decoder logits for (N, C, *spatial) of any size; asking for the
    auxiliary decoder (the default, as for the PyTorch model) is a clear error."""

    def __init__(self, path: str | Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise missing_extra("onnx", "Running an ONNX model", exc) from None
        self.path = Path(path)
        if not self.path.is_file():
            raise DmspsError(f"{self.path}: ONNX file not found")
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise DmspsError(
                f"{self.path}: not a readable ONNX model ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:160] if str(exc) else 'corrupt'})"
            ) from None
        props = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in props:
            raise DmspsError(
                f"{self.path}: an ONNX model without dmsps metadata; export it with "
                "`dmsps export CHECKPOINT --onnx OUT.onnx`"
            )
        self.meta: dict[str, Any] = json.loads(props[META_KEY])
        from dmsps.models.unet import ModelConfig

        self.multiples = list(ModelConfig.from_dict(self.meta["model"]).multiples)

    def eval(self) -> OnnxNet:
        return self

    def to(self, *args: Any, **kwargs: Any) -> OnnxNet:
        return self

    def __call__(self, x: torch.Tensor, aux: bool = True) -> torch.Tensor:
        if aux:
            raise DmspsError(
                f"{self.path}: an exported model holds the main decoder only; the mean of "
                "both decoders (uncertainty, expansion) needs the checkpoint"
            )
        padded, sizes = pad_to_multiple(x.float(), self.multiples)
        array = np.ascontiguousarray(padded.detach().cpu().numpy(), dtype=np.float32)
        (logits,) = self.session.run([OUTPUT], {INPUT: array})
        return crop_to(torch.from_numpy(logits), sizes)
