"""The two contracts every model honours.

* :class:`Backbone` encodes a batch of input embeddings into per-position states and owns the
  item-embedding table. It knows nothing of FAERec.
* :class:`SequentialRecommender` is what the trainer and the evaluator talk to
  (``calculate_loss``, ``full_sort_predict``), in the spirit of RecBole. The plain model
  (:class:`PlainRecommender`) and FAERec both implement it by wrapping any backbone.

Padding is left-sided (the official layout: the last item always sits at position L-1). To save
compute, :meth:`SequentialRecommender.sequence_states` cuts a batch to its longest sequence and
passes the *absolute* positions, so outputs at real positions do not change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from faerec.config import ModelConfig


@dataclass
class TrainBatch:
    """One training batch, left-padded to L (0 = padding); ``epoch`` is 0-based."""

    input_ids: Tensor  # [B, L]
    target_pos: Tensor  # [B, L]
    target_neg: Tensor  # [B, L]


@dataclass
class LossTerms:
    """The total loss to back-propagate, its parts and the curriculum weights used.

    ``losses`` stay detached tensors on the model's device so that the trainer can sum them
    there and read them once per epoch: a ``float()`` per part and batch would wait for the GPU
    after every batch.
    """

    total: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def parts(self) -> dict[str, float]:
        """Losses as floats, then weights (one host sync per loss: for tests and logs)."""
        return {**{name: float(value) for name, value in self.losses.items()}, **self.weights}


class Backbone(nn.Module, ABC):
    """A sequence encoder with an item-embedding table.

    Subclasses set ``name`` and implement :meth:`encode`; they may override :meth:`embed`.
    """

    name: ClassVar[str] = ""
    #: True when states at real positions do not depend on how much left padding precedes them.
    supports_trimming: ClassVar[bool] = True
    #: True when learned absolute position embeddings are added at the input.
    uses_position_embedding: ClassVar[bool] = True

    def __init__(self, num_items: int, config: ModelConfig, max_len: int) -> None:
        super().__init__()
        self.num_items = num_items
        self.hidden_size = config.hidden_size
        self.max_len = max_len
        # rows: 0 = padding, 1..num_items = items, num_items + 1 = the official extra row
        self.item_embedding = nn.Embedding(num_items + 2, config.hidden_size, padding_idx=0)
        self.position_embedding: nn.Embedding | None = (
            nn.Embedding(max_len, config.hidden_size) if self.uses_position_embedding else None
        )
        self.input_norm = nn.LayerNorm(config.hidden_size, eps=1e-12)
        self.input_dropout = nn.Dropout(config.hidden_dropout)

    def position_embeddings(self, positions: Tensor) -> Tensor | None:
        """[T] absolute positions -> [1, T, d], or None for a backbone without them."""
        if self.position_embedding is None:
            return None
        return self.position_embedding(positions).unsqueeze(0)

    def embed(self, item_ids: Tensor, positions: Tensor) -> Tensor:
        """The plain input layer: Dropout(LayerNorm(E[i] + P[t]))."""
        x = self.item_embedding(item_ids)
        pos = self.position_embeddings(positions)
        if pos is not None:
            x = x + pos
        return self.input_dropout(self.input_norm(x))

    @abstractmethod
    def encode(self, inputs: Tensor, padding_mask: Tensor) -> Tensor:
        """[B, T, d] input embeddings, [B, T] bool (True = real item) -> [B, T, d] states."""

    def encode_last(self, inputs: Tensor, padding_mask: Tensor) -> Tensor:
        """[B, T, d], [B, T] -> [B, d]: the states at the last position only.

        What ranking needs. A backbone may override it to skip work whose only use is the
        states at earlier positions (SASRec's last block); the values must be those of
        ``encode(...)[:, -1]``.
        """
        return self.encode(inputs, padding_mask)[:, -1, :]


def trim_left_padding(input_ids: Tensor) -> tuple[Tensor, Tensor]:
    """Cut left padding shared by the whole batch; return (ids [B, T], absolute positions [T])."""
    length = input_ids.shape[1]
    real = (input_ids != 0).any(dim=0)
    first = int(torch.nonzero(real)[0]) if bool(real.any()) else length - 1
    positions = torch.arange(first, length, device=input_ids.device)
    return input_ids[:, first:], positions


class SequentialRecommender(nn.Module, ABC):
    """What trainer and evaluator see: a loss for a batch, and scores over all item rows."""

    def __init__(self, backbone: Backbone, trim_padding: bool = True) -> None:
        super().__init__()
        self.backbone = backbone
        self.trim_padding = trim_padding

    @property
    def num_items(self) -> int:
        return self.backbone.num_items

    @abstractmethod
    def input_embeddings(self, item_ids: Tensor, positions: Tensor) -> Tensor:
        """[B, T] ids and [T] absolute positions -> [B, T, d] encoder input."""

    @abstractmethod
    def calculate_loss(self, batch: TrainBatch, epoch: int) -> LossTerms:
        """The training loss of one batch at (0-based) ``epoch``."""

    @abstractmethod
    def scoring_table(self) -> Tensor:
        """[num_items + 2, d] item table that evaluation scores against (computed once per call)."""

    @contextmanager
    def ranking_session(self) -> Iterator[None]:
        """Held by the evaluator around one ranking pass (eval mode, no gradients, weights
        fixed): a model may compute per-item quantities once for all batches inside it, and
        must drop them on exit. The plain model has nothing to keep."""
        yield

    def _encoder_inputs(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        """[B, L] padded ids -> ([B, T, d] encoder inputs, [B, T] trimmed ids) with T <= L."""
        if self.trim_padding and self.backbone.supports_trimming:
            ids, positions = trim_left_padding(input_ids)
        else:
            ids = input_ids
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.input_embeddings(ids, positions), ids

    def sequence_states(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        """[B, L] padded ids -> ([B, T, d] states, [B, T] trimmed ids) with T <= L."""
        inputs, ids = self._encoder_inputs(input_ids)
        return self.backbone.encode(inputs, ids != 0), ids

    def last_state(self, input_ids: Tensor) -> Tensor:
        """[B, L] -> [B, d]: the user representation at the last position."""
        inputs, ids = self._encoder_inputs(input_ids)
        return self.backbone.encode_last(inputs, ids != 0)

    def full_sort_predict(self, input_ids: Tensor, table: Tensor | None = None) -> Tensor:
        """[B, L] -> [B, num_items + 2] scores. Pass ``table`` to reuse one across batches.

        Always ``last_state @ scoring_table().T``: the evaluator computes that product itself,
        once per batch of several encoder passes, so a model changes its scores through those
        two methods, not by overriding this one."""
        if table is None:
            table = self.scoring_table()
        return self.last_state(input_ids) @ table.T


def bce_next_item_loss(
    states: Tensor, item_table: Tensor, target_pos: Tensor, target_neg: Tensor
) -> Tensor:
    """BCE of positive vs one negative per real position, on ``item_table`` rows
    (docs/method.md §Recommendation loss).

    ``states`` [B, T, d]; targets [B, T] aligned with states (0 = no target there).
    """
    # Only ~10% of a left-padded grid holds targets: gather those rows before the dot products.
    real = target_pos != 0
    real_states = states[real]
    pos_logits = (real_states * item_table[target_pos[real]]).sum(-1)
    neg_logits = (real_states * item_table[target_neg[real]]).sum(-1)
    # log(sigmoid(x) + 1e-24) as in the official code
    pos_term = torch.log(torch.sigmoid(pos_logits) + 1e-24)
    neg_term = torch.log(1 - torch.sigmoid(neg_logits) + 1e-24)
    return -(pos_term + neg_term).sum() / max(int(real.sum()), 1)


class PlainRecommender(SequentialRecommender):
    """The plain ID backbone: trained and scored on its own item table
    (docs/method.md §Scoring tables)."""

    def input_embeddings(self, item_ids: Tensor, positions: Tensor) -> Tensor:
        return self.backbone.embed(item_ids, positions)

    def calculate_loss(self, batch: TrainBatch, epoch: int) -> LossTerms:
        states, ids = self.sequence_states(batch.input_ids)
        width = ids.shape[1]
        loss = bce_next_item_loss(
            states,
            self.backbone.item_embedding.weight,
            batch.target_pos[:, -width:],
            batch.target_neg[:, -width:],
        )
        return LossTerms(total=loss, losses={"rec": loss.detach()})

    def scoring_table(self) -> Tensor:
        return self.backbone.item_embedding.weight


__all__ = [
    "Backbone",
    "LossTerms",
    "PlainRecommender",
    "SequentialRecommender",
    "TrainBatch",
    "bce_next_item_loss",
    "trim_left_padding",
]
