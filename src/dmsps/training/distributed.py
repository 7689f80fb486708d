"""Several processes (GPUs, or CPU processes with gloo) started by ``torchrun``.

    torchrun --nproc_per_node 4 -m dmsps.cli train DATA --out runs/s1 --preset acdc
    torchrun --nproc_per_node 4 -m dmsps.cli run DATA --out runs/acdc --preset acdc

The global batch (``batch_size``) is split evenly over the processes; each draws its own
share from its own data generator, seeded from (seed, rank, iteration) so that a resumed
run draws what an uninterrupted one would. Gradients are averaged by
DistributedDataParallel, so a step equals the single-process step on the concatenated
batch whenever the loss is a mean over equally sized shares. What differs:

* BatchNorm: on CUDA the layers become SyncBatchNorm (statistics over the global batch,
  as one process would compute them); on the CPU (gloo) SyncBatchNorm is not available
  and each process normalises with its own share. InstanceNorm (the 3D presets) is per
  sample and unaffected.
* Partial cross-entropy is a mean over each share's annotated voxels, so shares with
  different numbers of annotated voxels weigh their voxels slightly differently.

Only rank 0 writes files (checkpoints, logs, expansion, predictions, metrics); the others
wait at barriers. Every rank holds the same weights, so validation runs on rank 0 and its
result (for best-checkpoint choice and early stopping) is sent to the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from dmsps.errors import DmspsError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment (once per process);
    a single process without those variables gets ``DistInfo()``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        try:
            dist.init_process_group(backend=backend)
        except Exception as exc:  # a missing MASTER_ADDR, a port in use, ...
            raise DmspsError(
                f"cannot join the process group (rank {rank} of {world}): {exc}. Start "
                "several processes with torchrun --nproc_per_node N -m dmsps.cli ..."
            ) from None
    return DistInfo(rank=rank, world=world, local_rank=local)


def device_for(device: torch.device, info: DistInfo) -> torch.device:
    """Each process on its own GPU (``cuda`` means ``cuda:LOCAL_RANK`` under torchrun)."""
    if info.active and device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return device


def share(batch_size: int, info: DistInfo) -> int:
    if batch_size % info.world:
        raise DmspsError(
            f"batch_size {batch_size} does not split evenly over {info.world} processes; "
            f"use a multiple of {info.world}"
        )
    return batch_size // info.world


def data_generator(seed: int, info: DistInfo, iteration: int) -> torch.Generator:
    """The data generator of one process at one iteration (stateless, so resumable)."""
    return torch.Generator().manual_seed(
        (seed * 1_000_003 + info.rank * 7_919 + iteration * 104_729) % (2**63)
    )


def wrap(model: torch.nn.Module, device: torch.device, info: DistInfo) -> torch.nn.Module:
    """DistributedDataParallel around the training model (SyncBatchNorm on CUDA).

    The returned module trains; its ``.module`` is the model that validation and
    checkpoints use, the same object on every rank.
    """
    if not info.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def broadcast(value: Any, info: DistInfo) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not info.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
