"""Ranks of ground-truth items among scored candidates, with ties counted against the model."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def gt_ranks(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """scores: Tensor[N, M]; positive: BoolTensor[N, M] (>= 1 true per row) -> LongTensor[N].

    The rank of a row's best positive = how many negatives score at least as high as it; a hit at
    k iff rank < k. Counting ties as higher is the strict rule (a tie is wrong), and other positives
    never push a positive down (standard multi-caption retrieval: any ground truth in the top k).
    """
    best = scores.masked_fill(~positive, float("-inf")).amax(dim=1, keepdim=True)  # [N, 1]
    return ((scores >= best) & ~positive).sum(dim=1)


def one_hot(target: torch.Tensor, m: int) -> torch.Tensor:
    """target: LongTensor[N] -> BoolTensor[N, m]."""
    return torch.nn.functional.one_hot(target, m).bool()


def percent(hits: torch.Tensor) -> float:
    """Share of true values in percent, as exact count / total in double precision."""
    return 100.0 * int(hits.sum()) / hits.numel()


def recall_at(ranks: torch.Tensor, ks: Iterable[int]) -> dict[int, float]:
    """Percent of rows whose rank is < k, for each k."""
    return {k: percent(ranks < k) for k in ks}


def chunked_ranks(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    positives: torch.Tensor | list[torch.Tensor],
    chunk: int = 1024,
) -> torch.Tensor:
    """Ranks for each query (Tensor[N, D]) over candidates (Tensor[M, D]) without an [N, M] matrix at once.

    positives: LongTensor[N] (one correct candidate per query) or a list of LongTensors (several).
    """
    out = []
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ candidates.T  # [b, M]
        if isinstance(positives, torch.Tensor):
            positive = one_hot(positives[start : start + chunk], scores.shape[1])
        else:
            positive = torch.zeros_like(scores, dtype=torch.bool)
            for r, idx in enumerate(positives[start : start + chunk]):
                positive[r, idx] = True
        out.append(gt_ranks(scores, positive))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)
