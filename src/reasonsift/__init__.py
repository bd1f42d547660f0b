"""reasonsift: which long chain-of-thought examples are worth training on, and training on them well.

Stages (one subpackage each, same words as the CLI): data -> scoring -> selection -> critical ->
training -> evaluation; synth is the embedded synthetic reasoning world.
"""

__version__ = "0.1.0"

# The Python API mirrors the CLI subcommands (heavy imports happen inside each function).
from reasonsift.api import check_gradients, critical, curate, demo, evaluate, score, select, train  # noqa: E402

__all__ = ["check_gradients", "critical", "curate", "demo", "evaluate", "score", "select", "train", "__version__"]
