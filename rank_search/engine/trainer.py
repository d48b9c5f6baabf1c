"""The training engine: seeded SGD loop with method hooks and a resumable state. No ray here."""
from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from ..decomp import as_working, full_precision
from ..errors import RankSearchError
from .distill import distill_loss, frozen_teacher, teacher_table
from .train_config import DistillConfig, TrainConfig
from .hooks import TrainingHooks
from .precision import autocast, batch_to, check_amp, grad_scaler, to_channels_last


class DivergedError(RuntimeError):
    """Raised when the training loss becomes NaN or infinite."""

    def __init__(self, epoch: int, step: int, loss: float) -> None:
        super().__init__(f"training diverged at epoch {epoch + 1}, iteration {step} (loss={loss}); lower train.lr")
        self.epoch, self.step, self.loss = epoch, step, loss


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based count of finished epochs
    train_loss: float
    val_accuracy: float
    val_loss: float
    seconds: float


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RankSearchError(f"train.device={name!r} but CUDA is not available on this machine")
    return torch.device(name)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``loader``; the model's mode is restored."""
    was_training = model.training
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        total += y.numel()
    model.train(was_training)
    return correct / max(total, 1), loss_sum / max(total, 1)


class Trainer:
    """Trains ``method.build_model(dense)`` for ``epochs`` epochs on ``data``.

    Args:
        dense: the freshly initialised dense model (kept untouched as the cost reference).
        method: the hooks driving compression (a method plugin).
        data: a ``DataSplits`` (train/val/test loaders with ``set_epoch``).
        config: optimiser, schedule and precision settings (``amp``: the forward pass and the loss
            under autocast, every hook outside it; ``channels_last``: model and batches in that
            memory format).
        epochs: number of epochs.
        seed: seeds torch, numpy, python and the data order.
        progress: optional ``callable(message)`` for per-batch progress text.
        distill: distillation settings; with ``weight > 0`` a ``teacher`` is required.
        teacher: the dense teacher (trained weights): a frozen copy (eval mode, no gradient) runs
            on the trial's device, outside the trained model, so no compact model holds it.
    """

    def __init__(self, dense: nn.Module, method: TrainingHooks, data, config: TrainConfig, *, epochs: int,
                 seed: int = 0, progress: Callable[[str], None] | None = None,
                 distill: DistillConfig | None = None, teacher: nn.Module | None = None) -> None:
        if epochs < 1:
            raise RankSearchError(f"epochs must be >= 1, got {epochs}")
        self.config, self.method, self.data = config, method, data
        self.epochs, self.seed, self.progress = epochs, seed, progress
        self.device = resolve_device(config.device)
        check_amp(config.amp, self.device, setting=config.device)
        self.scaler = grad_scaler(config.amp, self.device)  # kept across set_model: it scales losses
        self._caller_threads = torch.get_num_threads()  # given back at the end of ``fit``
        if config.threads:
            torch.set_num_threads(config.threads)
        # The intra-op threads the run trains with: results depend on it (the order of float
        # reductions), so the run record keeps it and a re-run applies it.
        self.threads = torch.get_num_threads()
        self.dense = dense
        self.distill = distill or DistillConfig()
        self.teacher = frozen_teacher(teacher, self.device) if self.distill.enabled else None
        if self.teacher is not None and config.channels_last:
            to_channels_last(self.teacher)
        self._teacher_logits: torch.Tensor | None = None  # per training sample, where its inputs are fixed
        if self.distill.enabled and self.teacher is None:
            raise RankSearchError(f"distill.weight={self.distill.weight:g} needs a dense teacher: train --init FILE "
                                  "(or teacher: FILE in --config); a sweep gives its dense reference")
        self.input_shape = (data.in_channels, data.image_size, data.image_size)
        self.steps_per_epoch = len(data.train)
        self.total_steps = self.steps_per_epoch * epochs
        self.epoch = 0  # finished epochs
        self.global_step = 0
        self.history: list[EpochResult] = []
        self.last_loss = float("nan")
        method.validate(self)
        seed_everything(seed)
        self.model: nn.Module = nn.Identity()
        self._compact: nn.Module | None = None
        self.set_model(method.build_model(copy.deepcopy(dense), self))

    # ---- model and optimiser ----
    def set_model(self, model: nn.Module) -> None:
        """Swap the trained module (e.g. after a post-hoc decomposition); rebuilds the optimiser."""
        self.model = model.to(self.device).train()
        if self.config.channels_last:
            to_channels_last(self.model)
        self._compact = None
        c = self.config
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=c.lr, momentum=c.momentum,
                                         weight_decay=c.weight_decay, nesterov=c.nesterov and c.momentum > 0)

    def current_lr(self) -> float:
        return self.config.lr_at(self.global_step, self.total_steps, self.steps_per_epoch)

    # ---- loop ----
    def fit(self, on_epoch_end: Callable[["Trainer", EpochResult], None] | None = None) -> None:
        """Train the remaining epochs (all of them, or those after a restored state), with the
        run's thread count; the process's count from before the trainer was made is restored after."""
        torch.set_num_threads(self.threads)
        try:
            if self.epoch == 0 and self.global_step == 0:
                self.method.on_train_start(self)
            while self.epoch < self.epochs:
                result = self.train_epoch()
                if on_epoch_end is not None:
                    on_epoch_end(self, result)
        finally:
            torch.set_num_threads(self._caller_threads)

    @contextlib.contextmanager
    def using_threads(self) -> Iterator[None]:
        """The run's thread count for work after ``fit`` (its final evaluation: results depend on
        the count), the process's count before it given back after."""
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def train_epoch(self) -> EpochResult:
        epoch = self.epoch
        start = time.perf_counter()
        self._compact = None  # training changes the weights
        self.method.on_epoch_start(self, epoch)
        self.data.train.set_epoch(epoch)  # the loader mixes in its seed
        self.model.train()
        loss_sum, seen = 0.0, 0
        n_batches = len(self.data.train)
        for i, (x, y, idx) in enumerate(self._train_batches()):
            x = batch_to(x, self.device, channels_last=self.config.channels_last)
            y = y.to(self.device, non_blocking=True)
            lr = self.current_lr()
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.method.before_forward(self)
            with autocast(self.config.amp, self.device):
                logits = self.model(x)
            # The loss in float32 (half-precision logits promoted), and every hook outside
            # autocast: a regularizer is computed in the weights' float32.
            loss = nn.functional.cross_entropy(as_working(logits), y)
            if self.teacher is not None:
                if idx is not None:
                    teacher_logits = self._teacher_logits[idx.to(self._teacher_logits.device)]
                else:
                    with torch.no_grad(), autocast(self.config.amp, self.device):
                        teacher_logits = self.teacher(x)
                loss = distill_loss(loss, as_working(logits), as_working(teacher_logits), self.distill)
            reg = self.method.regularization_loss(self)
            total = loss if reg is None else loss + reg
            value = loss.item()
            if not math.isfinite(value) or not math.isfinite(total.item()):
                raise DivergedError(epoch, self.global_step, value)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is None:
                total.backward()
                self.method.after_backward(self)
                self.optimizer.step()
            else:
                self.scaler.scale(total).backward()
                self.scaler.unscale_(self.optimizer)  # hooks edit true gradients, not scaled ones
                self.method.after_backward(self)
                self.scaler.step(self.optimizer)  # skipped where a gradient overflowed
                self.scaler.update()
            self.global_step += 1
            loss_sum += value * y.numel()
            seen += y.numel()
            if self.progress is not None and (i + 1) % 10 == 0:
                self.progress(f"epoch {epoch + 1}/{self.epochs} batch {i + 1}/{n_batches} loss {loss_sum / seen:.4f}")
        self.method.on_epoch_end(self, epoch)
        self.epoch += 1
        if self.epoch == self.epochs:
            self.method.finalize(self)
        val_acc, val_loss = evaluate(self.compact_model(), self.data.val, self.device)
        self.last_loss = loss_sum / max(seen, 1)
        result = EpochResult(self.epoch, self.last_loss, val_acc, val_loss, time.perf_counter() - start)
        self.history.append(result)
        return result

    def _train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """The epoch's training batches with their sample indices where the teacher's logits are
        looked up (``distill.teacher_table``, built at the first epoch), else with None."""
        loader = self.data.train
        if self.teacher is None or not getattr(loader, "fixed_inputs", False):
            return ((x, y, None) for x, y in loader)
        if self._teacher_logits is None:
            self._teacher_logits = teacher_table(self.teacher, loader, self.device, amp=self.config.amp,
                                                 channels_last=self.config.channels_last)
        return loader.indexed()

    def compact_model(self) -> nn.Module:
        """The compact model of the current state, built once per state: the end-of-epoch
        evaluation, the trainable's report and checkpoint, and the final metrics share it
        (building it can mean a copy and a decomposition of every planned layer)."""
        if self._compact is None:
            # Building it can draw random numbers (new layers' default init, a randomized SVD):
            # the forked RNG keeps evaluating from changing the training run.
            with torch.random.fork_rng(devices=rng_devices(self.model)), full_precision():
                compact = self.method.compact_model(self)
            self._compact = to_channels_last(compact) if self.config.channels_last else compact
        return self._compact

    # ---- state ----
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: model, optimiser, grad scaler, method, RNG, counters."""
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "method": self.method.state_dict(),
            "rng": rng_state(),
            "history": [r.__dict__ for r in self.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._compact = None
        saved_scaler = state.get("scaler")
        if (saved_scaler is None) != (self.scaler is None):
            trained = "with" if saved_scaler is not None else "without"
            raise RankSearchError(
                f"the saved state was trained {trained} train.amp='fp16' (a grad scaler) but this run has "
                f"train.amp={self.config.amp!r}: resume it with the train.amp it was trained with")
        self.method.load_state_dict(state["method"], self)
        self.model.load_state_dict(state["model"])
        self.set_model(self.model)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None:
            self.scaler.load_state_dict(saved_scaler)
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = [EpochResult(**r) for r in state.get("history", [])]
        set_rng_state(state["rng"])


def rng_devices(model: nn.Module) -> list[torch.device]:
    """The CUDA devices of ``model``'s parameters: what ``torch.random.fork_rng`` must cover to
    keep every RNG that work on the model can draw from."""
    return sorted({p.device for p in model.parameters() if p.device.type == "cuda"}, key=str)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),  # (version, tuple of ints, gauss or None): weights_only-safe
        "numpy": np_state[1].tolist() + [int(np_state[2])],
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],  # the cached second normal deviate
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = list(state["numpy"])
    has_gauss, cached = state.get("numpy_gauss", (0, 0.0))
    np.random.set_state(("MT19937", np.array(np_state[:-1], dtype=np.uint32), np_state[-1], has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
