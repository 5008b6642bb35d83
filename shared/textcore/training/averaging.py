"""Weight averaging: an exponential moving average (EMA) of the weights, evaluated and kept instead of them.

Fine-tuning on a few thousand rows ends wherever the last noisy steps left the weights. With `TrainConfig.ema`
set, every optimizer step also moves an average towards the new weights (`avg = d * avg + (1 - d) * w`, the
average starting at the first step's weights), and the loop evaluates, selects and saves the averaged weights.
A decay d averages over about 1 / (1 - d) steps. The average is `torch.optim.swa_utils.AveragedModel`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverage:
    """An EMA of `model`'s parameters that can stand in for them during a block."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self._model = model
        ema = get_ema_multi_avg_fn(decay)  # type: ignore[no-untyped-call]
        self._average = AveragedModel(model, multi_avg_fn=ema)

    def update(self) -> None:
        """Fold the model's current parameters into the average (after an optimizer step)."""
        self._average.update_parameters(self._model)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the model holds the averaged parameters; after it, its own again."""
        live = [p.detach().clone() for p in self._model.parameters()]
        averaged = list(self._average.module.parameters())
        with torch.no_grad():
            for param, value in zip(self._model.parameters(), averaged, strict=True):
                param.copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, own in zip(self._model.parameters(), live, strict=True):
                    param.copy_(own)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """CPU copies of the average and its step count, for a checkpoint."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self._average.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from a checkpoint's average."""
        self._average.load_state_dict(state)
