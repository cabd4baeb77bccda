"""The decode loop (decoding/loop.py) with a scripted step: when a single-line request stops."""

import pytest

from codila_engine.decoding.canvas import Canvas
from codila_engine.decoding.events import Commit
from codila_engine.decoding.loop import Decoding

NL, MASK = 9, 50
SPAN = [3, 4, NL, 5, 6, 7, 8, 3]  # "de\nfghid", in blocks of two


def decode(ids: list[int]) -> str:
    return "".join("\n" if i == NL else chr(ord("a") + i) for i in ids)


def decoding(block_order: list[int], single_line: bool) -> Decoding:
    canvas = Canvas([1], [2], len(SPAN), 2, mask_id=MASK, eos_id=0)  # infilling
    commits = [Commit([2 * b, 2 * b + 1], SPAN[2 * b : 2 * b + 2], "ar") for b in block_order]
    step = lambda clock: commits.pop(0)  # noqa: E731
    line_end = (lambda text: text.index("\n") + 1 if "\n" in text else None) if single_line else None
    return Decoding(step, canvas, decode, "~", line_end=line_end)


@pytest.mark.parametrize(
    "order, iterations",
    [
        ([0, 1, 2, 3], 2),  # the line break lands in the second block: nothing after it matters
        ([3, 2, 1, 0], 4),  # the line's start comes last: every block was needed
        ([0, 2, 3, 1], 4),  # a masked block before the line break: not settled until it lands
        ([1, 0, 3, 2], 2),
    ],
)
def test_a_single_line_stops_once_its_first_line_is_committed_through_the_line_break(order, iterations):
    one = decoding(order, single_line=True).run()
    assert one.stats.iterations == iterations
    assert one.text == "de\n" and one.stats.text_tokens == 3
    assert not one.cancelled
    whole = decoding(order, single_line=False).run()
    assert whole.stats.iterations == 4 and whole.text == decode(SPAN)
