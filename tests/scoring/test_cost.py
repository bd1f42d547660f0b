"""The printed token cost: both references, with words that fit the sign."""

from __future__ import annotations

from reasonsift.scoring.cost import token_cost_lines, versus


def test_a_saving_and_an_extra_cost_are_worded_differently():
    assert versus(25, 100, "X") == "75% fewer than X (100)"
    assert versus(318, 100, "one full pass") == "3.2x as many as one full pass (100)"  # not "-218% saved"
    assert versus(5, 0, "X") == ""


def test_token_cost_lines_name_both_references():
    tokens = {"scored": 175_131, "full_trace_all_checkpoints": 231_840, "full_trace_once": 33_120, "checkpoints": 7}
    assert token_cost_lines(tokens) == [
        "24% fewer than full traces at the same 7 checkpoints (231,840)",
        "5.3x as many as one full pass over the pool at θ₀ (33,120)",
    ]
