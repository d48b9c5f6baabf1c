"""Training hyper-parameters (``--set train.KEY=VALUE``) and distillation (``--set distill.KEY=VALUE``)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import RankSearchError

SCHEDULES = ("cosine", "step", "constant")
#: ``train.amp``: no autocast, bfloat16 autocast, float16 autocast with a grad scaler (CUDA only).
AMP_MODES = ("off", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """SGD with momentum and weight decay, a per-iteration learning-rate schedule.

    Attributes:
        lr: peak learning rate (None: the dataset's recommended value).
        momentum: SGD momentum.
        weight_decay: L2 weight decay (all parameters).
        batch_size: training batch size (None: the dataset's recommended value).
        schedule: ``cosine`` (to 0 over the run), ``step`` (x ``gamma`` at each of
            ``milestones``, fractions of the run) or ``constant``.
        warmup_epochs: linear warm-up length (may be fractional).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``.
        threads: torch CPU threads (0 = leave torch's default).
        amp: mixed precision of the training forward pass: ``off``, ``bf16`` (autocast to
            bfloat16; CPU and CUDA) or ``fp16`` (autocast to float16 with a grad scaler; CUDA
            only). Weights, optimizer state, SVDs, projections, regularizers and the evaluation
            stay float32.
        channels_last: keep the model's 4-D weights and the input batches in the
            ``channels_last`` memory format (faster convolutions on tensor cores, and with
            oneDNN on a CPU).
    """

    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int | None = None
    schedule: str = "cosine"
    gamma: float = 0.1
    milestones: tuple[float, ...] = (0.5, 0.75)
    warmup_epochs: float = 0.0
    nesterov: bool = False
    device: str = "auto"
    threads: int = 0
    amp: str = "off"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise RankSearchError(f"train.lr must be a finite number > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise RankSearchError(f"train.momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise RankSearchError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size is not None and self.batch_size < 1:
            raise RankSearchError(f"train.batch_size must be >= 1, got {self.batch_size}")
        if self.schedule not in SCHEDULES:
            raise RankSearchError(f"train.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if any(not 0 < m < 1 for m in self.milestones):
            raise RankSearchError(f"train.milestones must be fractions in (0, 1), got {list(self.milestones)}")
        if self.warmup_epochs < 0:
            raise RankSearchError(f"train.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.threads < 0:
            raise RankSearchError(f"train.threads must be >= 0, got {self.threads}")
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise RankSearchError(f"train.device must be auto, cpu or cuda[:N], got {self.device!r}")
        if self.amp not in AMP_MODES:
            raise RankSearchError(f"train.amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.amp == "fp16" and self.device == "cpu":
            raise fp16_needs_cuda("train.device='cpu'")
        if not isinstance(self.channels_last, bool):
            raise RankSearchError(f"train.channels_last must be true or false, got {self.channels_last!r}")

    def with_defaults(self, *, lr: float, batch_size: int) -> "TrainConfig":
        """Fill the unset learning rate and batch size (from the dataset's recommendation)."""
        from dataclasses import replace

        return replace(self, lr=self.lr if self.lr is not None else lr,
                       batch_size=self.batch_size if self.batch_size is not None else batch_size)

    def lr_at(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        """The learning rate at global iteration ``step`` of ``total_steps``."""
        import math

        warmup = self.warmup_epochs * steps_per_epoch
        if warmup and step < warmup:
            return self.lr * (step + 1) / warmup
        frac = min(step / max(total_steps, 1), 1.0)
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * frac))
        if self.schedule == "step":
            return self.lr * self.gamma ** sum(frac >= m for m in self.milestones)
        return self.lr


@dataclass(frozen=True)
class DistillConfig:
    """Distillation from a dense teacher (``--set distill.KEY=VALUE``): the loss is
    ``(1 - weight) * CE(student, labels) + weight * T^2 * KL(softmax(teacher / T) || softmax(student / T))``
    (Hinton et al. 2015), the teacher's logits computed under ``no_grad`` (``engine.distill``: once
    per training sample where the loader does not augment, else on every batch).

    Attributes:
        weight: the distillation share in [0, 1]; 0 (default) is off: no teacher is built or
            run, and training is bit-identical to training without this setting.
        temperature: T > 0, the softening of both distributions (default 1).
    """

    weight: float = 0.0
    # *our choice*: at 4, posthoc on LeNet-5 wide collapsed in one seed of three per init; at 1 never
    # (docs/training.md)
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and 0 <= self.weight <= 1):
            raise RankSearchError(f"distill.weight must be a number in [0, 1], got {self.weight}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise RankSearchError(f"distill.temperature must be a finite number > 0, got {self.temperature}")

    @property
    def enabled(self) -> bool:
        return self.weight > 0


def fp16_needs_cuda(device: str) -> RankSearchError:
    """The error of ``train.amp=fp16`` on a CPU device. *Our choice*: refuse rather than run it:
    float16 autocast on CPU is slower than float32 and has no grad scaler to keep small
    gradients from flushing to zero; bfloat16 keeps float32's range and needs none."""
    return RankSearchError(f"train.amp='fp16' needs a CUDA device (use train.amp=bf16 on cpu), got {device}")
