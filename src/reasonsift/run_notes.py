"""Console warnings of a run, kept for its report.

A warning printed to the console scrolls away; the report a person opens later must show it too
("Notes: none" after a run that warned twice is wrong). ``collect_warnings`` records every
WARNING-or-worse message logged under the ``reasonsift`` logger while a stage runs, in order and
without repeats; the stage puts the list in ``report.json`` and the HTML report shows it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator


class _Collector(logging.Handler):
    def __init__(self, out: list[str]) -> None:
        super().__init__(level=logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed log call must not break the run
            return
        if message not in self.out:
            self.out.append(message)


@contextlib.contextmanager
def collect_warnings(logger_name: str = "reasonsift") -> Iterator[list[str]]:
    """Yield a list that fills with the warnings logged under ``logger_name`` inside the block."""
    notes: list[str] = []
    handler = _Collector(notes)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield notes
    finally:
        logger.removeHandler(handler)
