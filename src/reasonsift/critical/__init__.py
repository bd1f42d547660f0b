"""Critical tokens (CFT): which response tokens decide the final answer, found by counterfactual
substitution; ``train --objective cft`` takes loss on them only."""
