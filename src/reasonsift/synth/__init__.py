"""reasonsift.synth: a small synthetic reasoning world with known difficulty and task families.

Ground truth for checking TEMP's claims without a pretrained LLM: ``generate_pool`` builds an SFT
pool (difficulty = reasoning steps, flagged low-quality traces), ``generate_eval`` held-out
problems, ``pretraining_corpus`` single-step facts for pretraining a tiny base model.
"""

from reasonsift.synth.generate import (
    LOW_QUALITY_KINDS, check_answer, extract_answer, generate_eval, generate_pool, pretraining_corpus, write_jsonl,
)
from reasonsift.synth.tasks import ALL_FAMILIES, CHARSET

__all__ = [
    "ALL_FAMILIES", "CHARSET", "LOW_QUALITY_KINDS", "check_answer", "extract_answer", "generate_eval",
    "generate_pool", "pretraining_corpus", "write_jsonl",
]
