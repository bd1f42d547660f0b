"""Mean-pooled last hidden states, for the ``embedding`` baseline (temp-method.md §3.5).

The baseline embeds each example (prompt + response, truncated) with θ₀, runs k-means with
k = budget and keeps the example nearest each centroid. The forward uses the same padding-free
packing as scoring; pooling is per sequence over its own tokens only.
"""

from __future__ import annotations

import numpy as np
import torch

from reasonsift.scoring.scorer import Item, pack_plan, packed_token_limit


@torch.inference_mode()
def embed_items(model: torch.nn.Module, items: list[Item], batch_tokens: int = 8192,
                progress: bool = False) -> np.ndarray:
    """(n, d) fp32 mean-pooled last-layer hidden states, one row per item."""
    device = next(model.parameters()).device
    decoder = model.get_decoder()
    out = np.zeros((len(items), model.config.hidden_size), dtype=np.float32)
    bins = pack_plan([it.length for it in items], packed_token_limit(model, batch_tokens), max_examples=256)
    from tqdm.auto import tqdm

    for group in tqdm(bins, desc="embedding", unit="batch", disable=not progress, leave=False):
        seqs = [items[i].prompt_ids + items[i].response_ids for i in group]
        ids = torch.tensor([[t for s in seqs for t in s]], device=device)  # (1, T_total)
        pos = torch.tensor([[p for s in seqs for p in range(len(s))]], device=device)  # (1, T_total)
        hidden = decoder(input_ids=ids, position_ids=pos, attention_mask=None,
                         use_cache=False).last_hidden_state[0].float()  # (T_total, d)
        for i, chunk in zip(group, torch.split(hidden, [len(s) for s in seqs])):
            out[i] = chunk.mean(0).cpu().numpy()
    return out
