"""Start or join Ray for a sweep. A private local Ray by default; nothing here runs ``ray stop``."""
from __future__ import annotations

import os
import tempfile
from typing import Any


def init_ray(address: str, *, num_gpus: float | None = None) -> bool:
    """Connect or start Ray; returns whether this call started it (and must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    # Tune warns about frequent snapshots: we checkpoint every epoch on purpose (exact resume).
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if address == "local":
        temp = tempfile.mkdtemp(prefix="rs-ray-")
        kwargs: dict[str, Any] = {"address": "local", "_temp_dir": temp, "include_dashboard": False,
                                  "configure_logging": True, "logging_level": "WARNING",
                                  # worker chatter (checkpoint notices) stays in the Ray logs;
                                  # trial errors are reported by Tune and kept in error.txt
                                  "log_to_driver": False}
        if num_gpus is not None:
            kwargs["num_gpus"] = num_gpus
        ray.init(**kwargs)
    else:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    return True
