"""Knowledge distillation for classifiers: one student learns from the averaged predictions of teachers.

A few fine-tuned classifiers that differ only by seed make better predictions together than any one of them,
but serving them all costs as many forward passes. Distillation keeps most of that gain in one model: the
student is trained on the hard labels and on the teachers' softened probabilities (Hinton et al., 2015):

    loss = (1 - w) * cross_entropy(student, label) + w * T^2 * KL(teachers_T || student_T)

where `_T` means softmax at temperature T and `teachers_T` is the mean of the teachers' softened
probabilities. The T^2 factor keeps the soft term's gradients on the scale of the hard one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias

from textcore.classifier import Classifier
from textcore.errors import InvalidInput


def teacher_probabilities(
    teachers: Sequence[str],
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    temperature: float,
    device: str = "auto",
    precision: str = "auto",
    max_length: int = 256,
) -> torch.Tensor:
    """The teachers' mean softened probabilities of `texts`: `(n, len(labels))` float32, in `labels` order.

    Raises:
        NotFound: a teacher folder does not resolve.
        InvalidInput: a teacher is multi-label or was trained on other labels than `labels`.
    """
    if not teachers:
        raise InvalidInput("distillation: expected at least one teacher model folder; found none")
    total = np.zeros((len(texts), len(labels)), dtype=np.float64)
    for folder in teachers:
        teacher = Classifier.load(folder, device=device, precision=precision, max_length=max_length)
        if teacher.multi_label:
            raise InvalidInput(f"teacher {folder}: expected a single-label classifier; found multi-label")
        if list(teacher.labels) != list(labels):
            raise InvalidInput(
                f"teacher {folder}: expected the labels {list(labels)}; found {list(teacher.labels)}"
            )
        logits = torch.from_numpy(teacher.logits(list(texts))).double()
        total += torch.softmax(logits / temperature, dim=1).numpy()
        del teacher
    return torch.from_numpy(total / len(teachers)).float()


def distillation_loss(logits: torch.Tensor, soft_targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(soft_targets || softmax(logits / T)), averaged over the batch."""
    log_student = F.log_softmax(logits.float() / temperature, dim=1)
    return F.kl_div(log_student, soft_targets, reduction="batchmean") * temperature**2
