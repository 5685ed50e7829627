"""FAERec around any backbone: gated fusion of ID and LLM item views plus two alignment losses.

The wrapper talks to the backbone through the :class:`~faerec.models.base.Backbone` contract
only (its item table, position embeddings, input dropout, width and ``encode``), so the same
code serves every encoder. What it adds (docs/method.md §Model):

* a frozen LLM item table (a buffer, never a parameter) and a trainable adapter (``Mapper``);
* PCA initialisation of the ID table from the LLM table;
* a fusion gate per input token, followed by a LayerNorm;
* the item-level (InfoNCE) and feature-level (Barlow-Twins) alignment losses, weighted by the
  curriculum;
* the evaluation item table chosen by ``faerec.scoring``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn

from faerec.config import FAERec_SCORING, FAERecConfig
from faerec.errors import ConfigError
from faerec.models.alignment import barlow_twins, item_infonce, split_barlow_twins
from faerec.models.base import (
    Backbone,
    LossTerms,
    SequentialRecommender,
    TrainBatch,
    bce_next_item_loss,
)
from faerec.models.curriculum import curriculum_weights
from faerec.models.gates import build_gate
from faerec.models.layers import FastDropout


class LLMAdapter(nn.Module):
    """The official "LLMEmbeddingMapper": d_llm -> d_llm/2 -> GELU -> Dropout -> d.

    Keeps PyTorch's default Linear init, as the official code builds it after its weight init.
    The dropout is ``FastDropout`` (the distribution of ``nn.Dropout``, cheaper on CPU).
    """

    def __init__(self, llm_size: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        inner = max(1, llm_size // 2)
        self.hidden = nn.Linear(llm_size, inner)
        self.activation = nn.GELU()
        self.dropout = FastDropout(dropout)
        self.output = nn.Linear(inner, hidden_size)

    def features(self, llm_vectors: Tensor) -> Tensor:
        """GELU(W1 x + b1): the deterministic first half (no dropout yet)."""
        return self.activation(self.hidden(llm_vectors))

    def project(self, features: Tensor) -> Tensor:
        """W2 Dropout(h) + b2: the second half, dropout drawn per row it is given."""
        return self.output(self.dropout(features))

    def forward(self, llm_vectors: Tensor) -> Tensor:
        return self.project(self.features(llm_vectors))


def pca_projection(matrix: np.ndarray, n_components: int) -> np.ndarray:
    """Rows of ``matrix`` projected on its first ``n_components`` principal axes.

    What scikit-learn's full PCA computes, fitted through the eigen-decomposition of the
    d_llm x d_llm scatter matrix in float64: the same axes as an SVD of the centred data (to
    ~1e-13 on the bundled embeddings) at a fraction of the cost. Each axis is signed so that its
    largest-magnitude coefficient is positive (scikit-learn's convention), which makes the
    result deterministic. When the data have fewer axes of non-zero variance than
    ``n_components`` (few rows, or a narrow embedding), the missing columns are zero.
    """
    data = np.asarray(matrix, dtype=np.float64)
    centred = data - data.mean(axis=0, keepdims=True)
    variances, vectors = np.linalg.eigh(centred.T @ centred)  # ascending
    variances, axes = variances[::-1], vectors[:, ::-1].T
    top = variances[0] if variances.size else 0.0
    rank = int(np.sum(variances > top * 1e-12)) if top > 0 else 0
    axes = axes[: min(n_components, rank)]
    strongest = np.argmax(np.abs(axes), axis=1)
    signs = np.sign(axes[np.arange(axes.shape[0]), strongest])
    axes = axes * signs[:, None]
    projected = np.zeros((data.shape[0], n_components), dtype=np.float64)
    projected[:, : axes.shape[0]] = centred @ axes.T
    return projected.astype(np.float32)


def padded_llm_table(llm_table: np.ndarray | Tensor, num_items: int) -> Tensor:
    """[num_items + 1 or + 2, d_llm] -> float32 [num_items + 2, d_llm] with rows 0, |I|+1 zero."""
    table = torch.as_tensor(np.asarray(llm_table), dtype=torch.float32)
    if table.dim() != 2 or table.shape[0] not in (num_items + 1, num_items + 2):
        raise ConfigError(
            f"LLM item table: expected shape [{num_items + 1}, d_llm] (row = item id, row 0 = "
            f"padding) for {num_items} items, got {list(table.shape)}"
        )
    padded = torch.zeros(num_items + 2, table.shape[1], dtype=torch.float32)
    padded[1 : num_items + 1] = table[1 : num_items + 1]
    return padded


def padded_popularity(popularity: np.ndarray | Tensor, num_items: int) -> Tensor:
    """Per-item training popularity -> float32 [num_items + 2] (missing ids count 1,
    docs/method.md §Feature-level alignment)."""
    counts = torch.as_tensor(np.asarray(popularity), dtype=torch.float32).flatten()
    if counts.shape[0] not in (num_items + 1, num_items + 2):
        raise ConfigError(
            f"training popularity: expected {num_items + 2} counts (index = item id), "
            f"got {counts.shape[0]}"
        )
    padded = torch.ones(num_items + 2, dtype=torch.float32)
    padded[: counts.shape[0]] = counts
    return padded


class FAERecRecommender(SequentialRecommender):
    """FAERec on top of ``backbone`` (spec 1).

    ``llm_table`` is [num_items + 1, d_llm] (row = item id, row 0 = padding), as
    :func:`faerec.embeddings.load_item_embeddings` returns it; ``train_popularity`` is indexed by
    item id (``PopularityGroups.train_popularity``) and needed for the popularity split.
    """

    def __init__(
        self,
        backbone: Backbone,
        config: FAERecConfig,
        llm_table: np.ndarray | Tensor,
        train_popularity: np.ndarray | Tensor | None = None,
        trim_padding: bool = True,
    ) -> None:
        super().__init__(backbone, trim_padding=trim_padding)
        if config.scoring not in FAERec_SCORING:
            raise ConfigError(
                f"faerec.scoring: expected one of {', '.join(FAERec_SCORING)}, "
                f"got {config.scoring!r}"
            )
        needs_popularity = config.feature_align and config.popularity_split
        if needs_popularity and train_popularity is None:
            raise ConfigError(
                "faerec.popularity_split: needs the training popularity of every item; "
                "pass train_popularity, or set faerec.popularity_split=false"
            )
        self.config = config
        hidden = backbone.hidden_size
        num_items = backbone.num_items
        llm = padded_llm_table(llm_table, num_items)
        # Frozen: a buffer is never returned by parameters(), so no optimiser can touch it.
        # Not persistent: build_model always receives the table again, and leaving it out of
        # the state dict keeps every checkpoint of a study tens of MB smaller.
        self.llm_item_table: Tensor
        self.register_buffer("llm_item_table", llm, persistent=False)
        self.train_popularity: Tensor
        popularity = (
            torch.ones(num_items + 2)
            if train_popularity is None
            else padded_popularity(train_popularity, num_items)
        )
        self.register_buffer("train_popularity", popularity, persistent=False)
        self.adapter = LLMAdapter(llm.shape[1], hidden, config.mapper_dropout)
        self.gate = build_gate(config.gate, hidden, config.gate_dropout)
        self.fusion_norm = nn.LayerNorm(hidden, eps=1e-12)
        #: the mapped LLM table, kept only inside ``ranking_session``
        self._ranking_llm_view: Tensor | None = None
        if config.pca_init:
            self._init_id_table_with_pca()

    @property
    def id_table(self) -> nn.Embedding:
        return self.backbone.item_embedding

    def _init_id_table_with_pca(self) -> None:
        """Rows 1..|I|+1 of E_id <- PCA(d) of the zero-padded LLM table (fit on all rows)."""
        projected = pca_projection(self.llm_item_table.cpu().numpy(), self.backbone.hidden_size)
        with torch.no_grad():
            weight = self.id_table.weight
            weight[1:] = torch.from_numpy(projected[1:]).to(weight.device, weight.dtype)

    def mapped_llm(self, item_ids: Tensor) -> Tensor:
        """Mapper(E_llm[item_ids]) for ids of any shape: the LLM view in the model's width.

        The wide first layer (d_llm -> d_llm/2) runs once per distinct id, then the rows are
        gathered and the dropout and second layer run per occurrence. Same values and the same
        per-occurrence dropout as mapping every occurrence, at a fraction of the cost (a batch
        has ~12k tokens but ~2k distinct items). In eval mode there is no dropout to draw, so
        the second layer runs once per distinct id too; inside ``ranking_session`` the whole
        table is mapped once.
        """
        if self._ranking_llm_view is not None:
            return self._ranking_llm_view[item_ids]
        distinct, inverse = torch.unique(item_ids, return_inverse=True)
        features = self.adapter.features(self.llm_item_table[distinct])
        if not self.training:
            return self.adapter.project(features)[inverse]
        return self.adapter.project(features[inverse])

    @contextmanager
    def ranking_session(self) -> Iterator[None]:
        """Maps the whole LLM table once for a ranking pass: its batches together hold ~8x the
        distinct items of the table on Beauty. Eval mode only (no dropout to draw)."""
        if self.training:
            raise RuntimeError("ranking_session needs eval mode")
        self._ranking_llm_view = self.adapter(self.llm_item_table)
        try:
            yield
        finally:
            self._ranking_llm_view = None

    def input_embeddings(self, item_ids: Tensor, positions: Tensor) -> Tensor:
        """LN(g * x_id + (1 - g) * x_llm), both views with position and dropout
        (docs/method.md §Model).

        A backbone that supports trimming never reads its inputs at padding positions (its
        real states do not depend on the padding), so for it the fusion runs on the real
        tokens only and padding positions are zero, as the backbones' own input layers do;
        Beauty batches are ~90% padding. Otherwise (FMLP-Rec) every position is fused, padding
        included, as in the official code.
        """
        if not self.backbone.supports_trimming:
            return self._fuse(item_ids, self.backbone.position_embeddings(positions))
        real = item_ids != 0
        real_positions = positions.unsqueeze(0).expand_as(item_ids)[real]
        position = self.backbone.position_embeddings(real_positions)
        fused = self._fuse(item_ids[real], None if position is None else position.squeeze(0))
        grid = fused.new_zeros(*item_ids.shape, fused.shape[-1])
        grid[real] = fused
        return grid

    def _fuse(self, item_ids: Tensor, position: Tensor | None) -> Tensor:
        """Fused input vectors of ``item_ids`` (any shape) given their position vectors."""
        id_view = self.id_table(item_ids)
        llm_view = self.mapped_llm(item_ids)
        if position is not None:
            id_view = id_view + position
            llm_view = llm_view + position
        x_id = self.backbone.input_dropout(id_view)
        x_llm = self.backbone.input_dropout(llm_view)
        gate = self.gate(x_id, x_llm)
        return self.fusion_norm(gate * x_id + (1.0 - gate) * x_llm)

    def alignment_losses(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """(L_item, L_feat) over the given item occurrences; a switched-off loss is 0."""
        zero = self.id_table.weight.new_zeros(())
        if not (self.config.item_align or self.config.feature_align) or items.numel() == 0:
            return zero, zero
        id_vectors = self.id_table(items)
        llm_vectors = self.mapped_llm(items)
        item_loss = zero
        if self.config.item_align:
            item_loss = item_infonce(id_vectors, llm_vectors, items, self.config.tau)
        feature_loss = zero
        if self.config.feature_align:
            if self.config.popularity_split:
                feature_loss = split_barlow_twins(
                    id_vectors, llm_vectors, self.train_popularity[items], self.config.gamma
                )
            elif items.numel() > 1:
                feature_loss = barlow_twins(id_vectors, llm_vectors, self.config.gamma)
        return item_loss, feature_loss

    def calculate_loss(self, batch: TrainBatch, epoch: int) -> LossTerms:
        """L_rec + lambda * (w_item * L_item + w_feat * L_feat)
        (docs/method.md §Training objective)."""
        states, ids = self.sequence_states(batch.input_ids)
        width = ids.shape[1]
        rec_loss = bce_next_item_loss(
            states,
            self.id_table.weight,
            batch.target_pos[:, -width:],
            batch.target_neg[:, -width:],
        )
        w_item, w_feat = curriculum_weights(self.config, epoch)
        occurrences = torch.cat([batch.input_ids, batch.target_neg], dim=1)
        items = occurrences[occurrences != 0]
        item_loss, feature_loss = self.alignment_losses(items)
        total = rec_loss + self.config.align_weight * (w_item * item_loss + w_feat * feature_loss)
        return LossTerms(
            total=total,
            losses={
                "rec": rec_loss.detach(),
                "item_align": item_loss.detach(),
                "feature_align": feature_loss.detach(),
            },
            weights={"w_item": w_item, "w_feat": w_feat},
        )

    def scoring_table(self) -> Tensor:
        """docs/method.md §Scoring tables: the item table of evaluation, by ``faerec.scoring``."""
        id_table = self.id_table.weight
        if self.config.scoring == "id":
            return id_table
        llm_view = (
            self.adapter(self.llm_item_table)
            if self._ranking_llm_view is None
            else self._ranking_llm_view
        )
        if self.config.scoring == "official":
            return self.fusion_norm(id_table + llm_view)
        gate = self.gate(id_table, llm_view)
        return self.fusion_norm(gate * id_table + (1.0 - gate) * llm_view)


__all__ = ["FAERecRecommender", "LLMAdapter", "padded_llm_table", "pca_projection"]
