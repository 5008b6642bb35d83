"""Adversarial training on the word embeddings: FGM (Miyato et al., 2017) and PGD (Madry et al., 2018).

Both perturb what the encoder's word-embedding module returns (a forward hook on `get_input_embeddings()`),
never its weight, so they work with frozen embeddings (the default), with a peft-wrapped encoder, and with
tasks that run the encoder several times per loss (the embedding task embeds anchors, positives and
negatives: each call gets its own perturbation, matched by call order).

Gradient bookkeeping: during the clean forward a zero offset that requires grad is added to every
embedding output. The clean backward, which the loop runs anyway, then fills the offset's `.grad` with
g = dL/d(embeddings) at no extra cost and without changing the clean loss. Per example (a whole sequence):

- FGM: r = eps * g / ||g||; one more forward/backward with r added; its parameter gradients add to the
  clean ones, so the step minimises clean loss + adversarial loss.
- PGD: starting from r = 0, K times r <- Proj_eps(r + alpha * g / ||g||) with alpha = 2.5 * eps / K (the
  usual rule of thumb, so that the steps can reach the ball's surface and move along it), each new g taken
  at the previous perturbed point with `torch.autograd.grad` (no parameter gradient is touched); only the
  last perturbed loss is backpropagated into the parameters. FGM is the case K = 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from textcore.errors import InvalidInput
from textcore.training.config import TrainConfig

ScaledLoss = Callable[[], torch.Tensor]


def word_embeddings(model: nn.Module) -> nn.Module:
    """The word-embedding module of the first transformers (or peft) model inside `model`.

    Raises:
        InvalidInput: `model` holds no module with `get_input_embeddings()`.
    """
    for module in model.modules():
        getter = getattr(module, "get_input_embeddings", None)
        if not callable(getter):
            continue
        try:
            embeddings = getter()
        except NotImplementedError:
            continue
        if isinstance(embeddings, nn.Module):
            return embeddings
    raise InvalidInput(
        f"adversarial: expected a model with a transformers encoder (get_input_embeddings); "
        f"found {type(model).__name__}"
    )


class EmbeddingAdversary:
    """Adversarial losses on perturbed word embeddings for one model.

    For each batch: compute the clean loss inside `recording()`, backpropagate it, then call `attack` with a
    function that recomputes the same batch's loss; `attack` backpropagates the adversarial loss on top.
    """

    def __init__(self, model: nn.Module, epsilon: float, steps: int = 1) -> None:
        """Perturb the word embeddings of `model` within an L2 ball of radius `epsilon` per sequence.

        Args:
            model: the task's model; its first transformers encoder is perturbed.
            epsilon: radius of the perturbation, per example.
            steps: 1 for FGM; K > 1 for PGD with K projected steps.
        """
        if epsilon <= 0:
            raise InvalidInput(f"adversarial_epsilon: expected a positive number; found {epsilon!r}")
        if steps < 1:
            raise InvalidInput(f"adversarial_steps: expected an integer >= 1; found {steps!r}")
        self.embeddings = word_embeddings(model)
        self.epsilon = epsilon
        self.steps = steps
        self._recorded: list[torch.Tensor] = []

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Run the clean forward inside: its backward then yields the gradients w.r.t. the embeddings."""
        with _offset_embeddings(self.embeddings, None) as offsets:
            yield
        self._recorded = offsets

    def attack(self, scaled_loss: ScaledLoss) -> float:
        """Backpropagate the adversarial loss of the batch whose clean loss was recorded and backpropagated.

        Args:
            scaled_loss: recomputes that batch's loss exactly as the clean pass did (autocast, scaling).

        Returns:
            The value of the adversarial loss.
        """
        grads = [_grad_of(offset) for offset in self._recorded]
        self._recorded = []
        alpha = 2.5 * self.epsilon / self.steps
        deltas = [torch.zeros_like(g) for g in grads]
        for step in range(self.steps):
            deltas = [
                _project(d + alpha * _unit(g), self.epsilon) for d, g in zip(deltas, grads, strict=True)
            ]
            if step == self.steps - 1:
                break
            leaves = [d.requires_grad_() for d in deltas]
            with _offset_embeddings(self.embeddings, leaves):
                loss = scaled_loss()
            found = torch.autograd.grad(loss, leaves, allow_unused=True)
            grads = [torch.zeros_like(d) if g is None else g for d, g in zip(leaves, found, strict=True)]
            deltas = [d.detach() for d in leaves]
        with _offset_embeddings(self.embeddings, deltas):
            loss = scaled_loss()
        loss.backward()  # type: ignore[no-untyped-call]
        return float(loss.detach())


def adversary_for(model: nn.Module, config: TrainConfig) -> EmbeddingAdversary | None:
    """The adversary that `config.adversarial` asks for, or None for `none`."""
    if config.adversarial == "none":
        return None
    if config.adversarial not in ("fgm", "pgd"):
        raise InvalidInput(f"adversarial: expected one of none, fgm, pgd; found {config.adversarial!r}")
    steps = config.adversarial_steps if config.adversarial == "pgd" else 1
    return EmbeddingAdversary(model, config.adversarial_epsilon, steps)


@contextmanager
def _offset_embeddings(module: nn.Module, offsets: list[torch.Tensor] | None) -> Iterator[list[torch.Tensor]]:
    """While active, the i-th call of `module` returns its output plus `offsets[i]`.

    With `offsets` None each call adds a fresh zero offset that requires grad instead. Yields the offsets
    added, in call order.
    """
    added: list[torch.Tensor] = []

    def hook(_module: nn.Module, _args: object, output: torch.Tensor) -> torch.Tensor:
        if offsets is None:
            offset = torch.zeros_like(output, requires_grad=True)
        elif len(added) < len(offsets) and offsets[len(added)].shape == output.shape:
            offset = offsets[len(added)].to(output.dtype)
        else:
            raise RuntimeError("the adversarial pass called the word embeddings unlike the clean pass")
        added.append(offset)
        return output + offset

    handle = module.register_forward_hook(hook)
    try:
        yield added
    finally:
        handle.remove()


def _grad_of(offset: torch.Tensor) -> torch.Tensor:
    """The gradient the clean backward left on a recorded offset (zero where the loss did not use it)."""
    return offset.grad if offset.grad is not None else torch.zeros_like(offset)


def _norms(x: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norms, shaped to broadcast over `x`."""
    norms: torch.Tensor = torch.linalg.vector_norm(x.detach().float().flatten(1), dim=1)
    return norms.reshape((-1,) + (1,) * (x.dim() - 1))


def _unit(g: torch.Tensor) -> torch.Tensor:
    """`g` scaled to unit L2 norm per example (zero stays zero)."""
    return (g.float() / _norms(g).clamp_min(1e-12)).to(g.dtype)


def _project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """`delta` pulled back onto the L2 ball of radius `epsilon`, per example."""
    factor = (_norms(delta).clamp_min(1e-12).reciprocal() * epsilon).clamp(max=1.0)
    return (delta.float() * factor).to(delta.dtype).detach()
