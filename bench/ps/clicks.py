"""Synthetic click data with a planted structure, and the AUC to score a model on it.

Each impression is (user, item, category of the item); its click probability is
sigmoid(score) with

    score = b_user + b_item + <p_user, q_item> + <p_user, r_cat> + A[segment(user), cat]
            + offset

where p, q, r are latent factors (dimension `rank`), b are biases, segment(user) is one of a
few hidden user segments and A a segment x category affinity table (the "feature interaction"
no single id explains). Users and items are drawn with Zipf-like popularity, as in real logs.
`offset` sets the mean click rate. Everything comes from one seeded generator: the same
arguments give the same data on every machine. The true score gives the best AUC any model can
reach on the test split (`oracle_auc`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict

import numpy as np
import torch


@dataclass(frozen=True)
class ClickSpec:
    num_users: int = 12_000
    num_items: int = 3_000
    num_categories: int = 100
    num_samples: int = 1_200_000
    rank: int = 8
    segments: int = 4
    test_fraction: float = 0.2
    offset: float = -1.0
    seed: int = 1234

    def to_dict(self) -> Dict:
        return asdict(self)


def _zipf_draw(gen: torch.Generator, n: int, count: int, exponent: float) -> torch.Tensor:
    weights = 1.0 / torch.arange(1, n + 1, dtype=torch.float64) ** exponent
    order = torch.randperm(n, generator=gen)  # popularity unrelated to the id
    return order[torch.multinomial(weights, count, replacement=True, generator=gen)]


def generate(spec: ClickSpec) -> Dict[str, torch.Tensor]:
    """Returns train/test tensors: {user,item,cat,label,score}_{train,test} (ids int64,
    labels float32 0/1, score = the planted logit)."""
    g = torch.Generator().manual_seed(spec.seed)
    k = spec.rank
    item_cat = torch.randint(spec.num_categories, (spec.num_items,), generator=g)
    user_segment = torch.randint(spec.segments, (spec.num_users,), generator=g)
    p = torch.randn(spec.num_users, k, generator=g) / k**0.5
    q = torch.randn(spec.num_items, k, generator=g) / k**0.5
    r = torch.randn(spec.num_categories, k, generator=g) / k**0.5
    b_user = torch.randn(spec.num_users, generator=g) * 0.5
    b_item = torch.randn(spec.num_items, generator=g) * 0.5
    affinity = torch.randn(spec.segments, spec.num_categories, generator=g)

    users = _zipf_draw(g, spec.num_users, spec.num_samples, 0.6)
    items = _zipf_draw(g, spec.num_items, spec.num_samples, 0.8)
    cats = item_cat[items]
    score = (
        b_user[users]
        + b_item[items]
        + 1.5 * (p[users] * q[items]).sum(1)
        + 1.5 * (p[users] * r[cats]).sum(1)
        + affinity[user_segment[users], cats]
        + spec.offset
    )
    labels = torch.bernoulli(torch.sigmoid(score), generator=g).float()

    perm = torch.randperm(spec.num_samples, generator=g)
    n_test = int(spec.num_samples * spec.test_fraction)
    split = {"test": perm[:n_test], "train": perm[n_test:]}
    out: Dict[str, torch.Tensor] = {}
    for part, idx in split.items():
        out[f"user_{part}"] = users[idx]
        out[f"item_{part}"] = items[idx]
        out[f"cat_{part}"] = cats[idx]
        out[f"label_{part}"] = labels[idx]
        out[f"score_{part}"] = score[idx]
    return out


def auc(labels, scores) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic; tied scores count one half)."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_pos = float(y.sum())
    n_neg = float(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError("auc: needs both positive and negative labels")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # average 1-based rank of each distinct score
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0
    ranks = avg_rank[inverse]
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def oracle_auc(data: Dict[str, torch.Tensor]) -> float:
    return auc(data["label_test"], data["score_test"])
