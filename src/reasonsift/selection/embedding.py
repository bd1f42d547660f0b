"""Mean-pooled last hidden states, for the ``embedding`` baseline (temp-method.md §3.5).

The baseline embeds each example (prompt + response, truncated) with θ₀, runs k-means with
k = budget and keeps the example nearest each centroid. The forward uses the same batching as
scoring; pooling is per sequence over its own tokens only.
"""

from __future__ import annotations

import numpy as np
import torch

from reasonsift.data.render import Tokenized
from reasonsift.scoring.scorer import decoder_hidden, pack_plan, padded_plan, uses_packing


@torch.inference_mode()
def embed_items(model: torch.nn.Module, items: list[Tokenized], batch_tokens: int = 8192,
                progress: bool = False) -> np.ndarray:
    """(n, d) fp32 mean-pooled last-layer hidden states, one row per item."""
    packed = uses_packing(model)
    out = np.zeros((len(items), model.config.hidden_size), dtype=np.float32)
    bins = (pack_plan if packed else padded_plan)([it.length for it in items], batch_tokens, 256)
    from tqdm.auto import tqdm

    for group in tqdm(bins, desc="embedding", unit="batch", disable=not progress, leave=False):
        seqs = [items[i].prompt_ids + items[i].response_ids for i in group]
        hidden, starts = decoder_hidden(model, seqs, packed)  # (rows, d)
        for i, seq, start in zip(group, seqs, starts):
            out[i] = hidden[start:start + len(seq)].float().mean(0).cpu().numpy()  # this sequence's tokens only
    return out
