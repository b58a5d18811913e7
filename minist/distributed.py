"""Distributed training with ``torchrun`` + PyTorch's DistributedDataParallel (NCCL on GPUs, gloo on CPU).

The training engine (:mod:`minist.engine`) and the recipes call these helpers; in a plain ``python`` process they are
no-ops (world size 1), so the mini setting and the paper setting run the same code::

    torchrun --nproc_per_node 8 -m minist train-student --preset paper --data-root /data/imagenet --beta 0.08

What DDP needs from the Entropic Student, and where it is handled:

* **Global batch.** ``batch_size`` in the configs is the *global* batch (the paper's 64 / 128); each of
  the ``W`` ranks takes ``batch_size / W`` samples through a :class:`~torch.utils.data.DistributedSampler`
  (the single-process run uses the same sampler with ``W = 1``, so both see the same samples per step).
* **Sum-reduced losses.** Stage 1's loss is a *sum* over the batch (distortion and total bits, docs/design.md §3);
  DDP averages gradients over ranks, so each rank's loss is multiplied by ``W``
  (:func:`loss_scale`): one DDP step then equals one single-process step on the combined batch.
  Stage 2's KD loss is a batch mean and needs no scaling.
* **The prior's quantiles.** The auxiliary loss trains ``codec.quantiles`` outside the
  forward pass; it does not depend on the data, so every rank computes the same update and DDP is told
  to ignore that parameter.
* **Stage 1's uniform noise** is drawn on each rank independently, as it would be for each sample.
* **BatchNorm.** Stage 1 keeps ``layer2`` … ``layer4`` frozen in eval mode (no batch statistics).
  Stage 2 trains them: on GPUs they become ``SyncBatchNorm`` (statistics over the global batch);
  PyTorch has no SyncBatchNorm on CPU, so gloo runs use per-rank statistics.
* **Evaluation** is split across ranks (every ``W``-th image, batch 1 each) and gathered
  (:func:`gather`); checkpoints and logs come from rank 0 only (:func:`is_main`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .utils import get_device


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """True inside a process started by ``torchrun`` (it sets ``WORLD_SIZE`` and ``RANK``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init(device: str | None = None) -> Context:
    """Join the process group ``torchrun`` set up (NCCL on CUDA, else gloo); a no-op outside ``torchrun``."""
    if not launched():
        return Context(device=get_device(device))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device != "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local)
    return Context(dist.get_rank(), dist.get_world_size(), local,
                   torch.device(f"cuda:{local}") if cuda else torch.device("cpu"))


def context() -> Context:
    """The current process's place in the group (world size 1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        cuda = torch.cuda.is_available() and dist.get_backend() == "nccl"
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return Context(dist.get_rank(), dist.get_world_size(), local,
                       torch.device(f"cuda:{local}") if cuda else torch.device("cpu"))
    return Context()


def is_main() -> bool:
    return context().main


def loss_scale() -> int:
    """Multiply a batch-*sum* loss by this, so DDP's gradient average equals the combined batch's sum."""
    return context().world


def per_rank_batch(batch_size: int) -> int:
    world = context().world
    if batch_size % world:
        raise ValueError(f"the global batch size {batch_size} does not split over {world} processes; "
                         f"use a multiple of {world}")
    return batch_size // world


def sampler(dataset, seed: int, epoch: int, shuffle: bool = True):
    """A :class:`DistributedSampler` for this rank (also with one process: the same order either way)."""
    ctx = context()
    s = torch.utils.data.DistributedSampler(dataset, num_replicas=ctx.world, rank=ctx.rank, shuffle=shuffle,
                                            seed=seed, drop_last=True)
    s.set_epoch(epoch)
    return s


IGNORED = ("codec.quantiles",)   # trained by the aux loss on every rank alike


def wrap(model: torch.nn.Module, sync_bn: bool = True, find_unused: bool = False) -> torch.nn.Module:
    """``model`` itself with one process; else DDP around it (SyncBatchNorm on GPUs when ``sync_bn``).

    Call it again after changing which parameters train (a new stage): DDP registers them at wrap time.
    ``find_unused``: some trainable parameters get no gradient in a step (e.g. FPN levels a head ignores).
    """
    ctx = context()
    if ctx.world == 1:
        return model
    if sync_bn and ctx.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    names = [n for n, _ in model.named_parameters() if n in IGNORED]
    torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None, find_unused_parameters=find_unused)


def shard(n: int) -> range:
    """This rank's share of ``n`` evaluation items: every ``world``-th one."""
    ctx = context()
    return range(ctx.rank, n, ctx.world)


def gather(obj) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` with one process)."""
    ctx = context()
    if ctx.world == 1:
        return [obj]
    out = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if context().world > 1:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
