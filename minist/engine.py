"""The one training loop every recipe runs on (:mod:`minist.recipes`), and the benchmarks measure through.

A recipe gives the engine a model, an optimiser (and an optional second one for an auxiliary loss, the prior's
quantiles), a schedule stepped every batch, a loader per epoch and a ``step(batch) → (loss, logs)``. The engine
owns the rest, the same for every recipe:

* the loop: zero_grad → backward → (gradient clipping) → step → schedule, then the auxiliary loss;
* a tqdm bar with the step's terms, and a history record per epoch (seconds, images/s, mean terms, evaluation);
* ``evaluate(epoch)`` after every epoch (e.g. real bytes on a val subset); its dict joins the record;
* an atomic checkpoint ``<out>/<name>-last.pt`` after every epoch (weights, optimisers, schedule, RNG, history),
  so ``resume=True`` goes on at the next epoch after a crash; a finished run resumes to nothing;
* under ``torchrun``: rank 0 writes and reports, every rank waits at the barrier;
* :meth:`Engine.autocast`: bf16 autocast for what a recipe marks as safe to run in low precision.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import checkpoint, distributed


def recipe_of(config: dict, run_control=("max_steps", "workers", "device", "out", "resume"), ignore=()) -> dict:
    """The settings that define a run (JSON-normalised): a resumed run must have the same. Unset (None) fields
    are left out, so a run saved before a field existed resumes under the code that added it; ``ignore``: fields
    this part of the run does not read (a student's stage 1 ignores stage 2's)."""
    skip = set(run_control) | set(ignore)
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in skip and v is not None}, default=str))


class Engine:
    """Trains ``model`` with ``optimizer`` (+ ``scheduler``, stepped per batch; + ``aux``: ``(optimizer, loss_fn)``
    for a second loss that needs no batch). ``config``: the recipe, checked on resume; ``max_steps``: stop early."""

    def __init__(self, model: torch.nn.Module, optimizer, scheduler=None, *, out, name: str, config: dict,
                 aux=None, clip_grad: float | None = None, max_steps: int | None = None, amp: bool = False,
                 progress: bool = True, ignore: tuple[str, ...] = ()):
        self.model, self.optimizer, self.scheduler, self.aux = model, optimizer, scheduler, aux
        self.out, self.name, self.config, self.ignore = Path(out), name, config, tuple(ignore)
        self.clip_grad, self.max_steps, self.amp = clip_grad, max_steps, amp
        self.main = distributed.is_main()
        self.progress = progress and self.main
        self.history: list[dict] = []
        self.epoch = self.step = 0

    @property
    def last(self) -> Path:
        return self.out / f"{self.name}-last.pt"

    def autocast(self):
        """bf16 autocast on the model's device when the recipe asked for it, else nothing."""
        device = next(self.model.parameters()).device
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    # ---- checkpoints -------------------------------------------------------------------------
    def _state(self) -> dict:
        opts = {"optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else {},
                "aux_optimizer": self.aux[0].state_dict() if self.aux else {}}
        return dict(rng={"torch": torch.get_rng_state()}, epoch=self.epoch, step=self.step, history=self.history,
                    **opts)

    def save(self) -> None:
        if self.main:
            checkpoint.save(self.last, kind="train-state", config=self.config, state_dict=self.model.state_dict(),
                            **self._state())
        distributed.barrier()

    def restore(self) -> bool:
        """Go on from ``last`` if it exists; False if there is none."""
        if not self.last.is_file():
            return False
        state = checkpoint.load(self.last, kind="train-state")
        if recipe_of(state["config"], ignore=self.ignore) != recipe_of(self.config, ignore=self.ignore):
            raise ValueError(f"{self.last} was made with a different training config; "
                             "start a new run (another --out) or pass the same settings")
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.aux:
            self.aux[0].load_state_dict(state["aux_optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        self.epoch, self.step, self.history = state["epoch"], state["step"], state["history"]
        return True

    # ---- the loop ----------------------------------------------------------------------------
    def _update(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.name}: the loss became {loss.item()} at step {self.step}; "
                                     "lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_grad:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.clip_grad)
        self.optimizer.step()
        if self.scheduler:
            self.scheduler.step()

    def train_step(self, batch, step) -> dict:
        """One optimisation step on ``batch`` (``step(batch) → (loss, logs)``); returns the logs."""
        loss, logs = step(batch)
        self._update(loss)
        if self.aux:
            aux_opt, aux_loss = self.aux
            a = aux_loss()
            aux_opt.zero_grad(set_to_none=True)
            a.backward()
            aux_opt.step()
            logs["aux"] = a.item()
        self.step += 1
        return logs

    def run(self, epochs: int, loader_for_epoch, step, evaluate=None, resume: bool = False, tag: str = "",
            callback=None, record: dict | None = None) -> list[dict]:
        """Train until ``epochs`` epochs are done; returns the history (one dict per epoch).

        ``loader_for_epoch(epoch)`` → an iterable of batches; ``step(batch)`` → ``(loss, logs)`` with ``logs`` a
        dict of floats (per image); ``callback(step, logs)`` sees every step; ``record`` joins every epoch's entry.
        """
        if resume:
            self.restore()
        tag = tag or self.name
        while self.epoch < epochs and (self.max_steps is None or self.step < self.max_steps):
            self.model.train()
            tic, seen, terms = time.time(), 0, {}
            loader = loader_for_epoch(self.epoch)
            # the bar counts; it does not hold the batches: a notebook's bar sits in a reference cycle, and a loader
            # iterator kept there would shut its worker down only at some later garbage collection (seconds, in
            # whichever cell triggers it). Ours is freed as soon as the epoch ends.
            batches = iter(loader)
            bar = tqdm(total=len(loader) if hasattr(loader, "__len__") else None, leave=False,
                       desc=f"{tag} {self.epoch + 1}/{epochs}", disable=not self.progress or None)
            for batch in batches:
                logs = self.train_step(batch, step)
                seen += len(batch[0])
                for k, v in logs.items():
                    terms.setdefault(k, []).append(v)
                if callback is not None:
                    callback(self.step, logs)
                bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()}, refresh=False)
                bar.update(1)
                if self.max_steps is not None and self.step >= self.max_steps:
                    break
            bar.close()
            del batches
            seconds = time.time() - tic
            self.epoch += 1
            rec = {**(record or {}), "epoch": self.epoch, "seconds": seconds, "images_per_second": seen / seconds,
                   **{f"train_{k}": sum(v) / len(v) for k, v in terms.items()}}
            if evaluate is not None:
                rec.update(evaluate(self.epoch))
            self.history.append(rec)
            if self.progress:
                shown = {k: v for k, v in rec.items() if isinstance(v, float) and k not in ("seconds",)}
                tqdm.write(f"{tag} epoch {self.epoch}/{epochs}: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
            self.save()
        return self.history
