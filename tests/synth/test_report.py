"""demo_report.html's accuracy chart: bars readable at low accuracies, on a labelled axis."""

from __future__ import annotations

import re

from reasonsift.synth.report import svg_accuracy_bars


def test_accuracy_bars_use_the_width_and_label_the_axis():
    svg = svg_accuracy_bars(["temp", "random", "θ₀ (no SFT)"], [0.12, 0.06, 0.0], ["#111", "#222", "#333"])
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([\d.]+)"', svg)]
    # the axis ends at 0.2, so 0.12 takes 60% of the plot (on a 0..1 axis it would be a stub)
    assert widths[0] > 250 and abs(widths[1] - widths[0] / 2) < 1 and widths[2] == 0
    ticks = re.findall(r'text-anchor="middle">([\d.]+)</text>', svg)
    assert ticks[0] == "0" and ticks[-1] == "0.2"
    assert ">0.120</text>" in svg and ">temp</text>" in svg and "accuracy on held-out problems" in svg
