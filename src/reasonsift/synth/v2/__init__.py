"""World v2: long chain-of-thought traces over word tokens, four sources, latent capability in θ₀.

The miniature of TEMP's regime (docs/synth-world-v2.md): ``generate_pool`` (sources with different
difficulty, style and quality; wrong-step, truncated and looping traces flagged), ``generate_eval``
(held-out problems per family and number of steps), ``pretraining_corpus`` (facts and terse
solutions for θ₀) and ``world_tokenizer`` (one token per word, number or punctuation mark).
"""

from reasonsift.synth.v2.generate import (
    LOW_QUALITY_KINDS, SOURCES, generate_eval, generate_pool, pretraining_corpus, world_tokenizer,
)
from reasonsift.synth.v2.tasks import FAMILIES, MAX_STEPS

__all__ = ["FAMILIES", "LOW_QUALITY_KINDS", "MAX_STEPS", "SOURCES", "generate_eval", "generate_pool",
           "pretraining_corpus", "world_tokenizer"]
