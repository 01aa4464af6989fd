"""Loss functions with parallel signatures: `loss(prediction, target, weight=None)`."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mse_loss(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error (explicit ratings)."""
    err = (prediction - target) ** 2
    return err.mean() if weight is None else (err * weight).sum() / weight.sum()


def bce_loss(logit: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy on logits (the course's 0/1 version: sigmoid + cross-entropy)."""
    return F.binary_cross_entropy_with_logits(logit, target, weight=weight)


def bpr_loss(positive: torch.Tensor, negative: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Bayesian personalised ranking: -log sigmoid(s+ - s-); `negative` may be (B,) or (B, n_neg)."""
    if negative.dim() == 2:
        positive = positive.unsqueeze(1)
    loss = -F.logsigmoid(positive - negative)
    if loss.dim() == 2:
        loss = loss.mean(1)
    return loss.mean() if weight is None else (loss * weight).sum() / weight.sum()


def sampled_softmax_loss(positive: torch.Tensor, negative: torch.Tensor,
                         weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the positive against sampled (or in-batch) negatives, (B,) and (B, n_neg)."""
    logits = torch.cat([positive.unsqueeze(1), negative], dim=1)
    loss = torch.logsumexp(logits, dim=1) - positive
    return loss.mean() if weight is None else (loss * weight).sum() / weight.sum()
