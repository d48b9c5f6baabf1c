"""The trainer trains with the run's thread count and gives the process its own back."""
from __future__ import annotations

import torch

from rank_search.run import RunSpec
from rank_search.run.prepare import prepare


def test_fit_restores_the_callers_thread_count() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        trainer = prepare(RunSpec(model="lenet5", dataset="synthetic", method="full", epochs=1,
                                  settings={"train.threads": 2}))
        seen = []
        trainer.fit(lambda tr, result: seen.append(torch.get_num_threads()))
        assert seen == [2] and trainer.threads == 2  # trained with the run's count
        assert torch.get_num_threads() == 1  # and the caller's is back
    finally:
        torch.set_num_threads(before)
