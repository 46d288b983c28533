"""The skeleton proof: good frames pass, any non-digit in a level string fails, the memo is bounded."""

from __future__ import annotations

import pytest

from marketlink.venues.skeleton import SkeletonCheck, level_skeleton


def frame(levels: list[list[str]]) -> bytes:
    return ('{"id":17,"b":[' + ",".join(f'["{p}","{q}"]' for p, q in levels) + "]}").encode()


def tail(levels: list[list[str]]) -> bytes | None:
    body = level_skeleton(levels)
    return None if body is None else b'"b":' + body + b"}"


def test_level_skeleton_names_each_form() -> None:
    assert level_skeleton([]) == b"[]"
    assert level_skeleton([["1.5", "20"], ["0.1", "3."]]) == b'[[".",""],[".","."]]'
    assert level_skeleton([["1.5", "-2"]]) is None
    assert level_skeleton([["1.5", "."]]) is None  # not a plain decimal: no digit


def test_a_good_skeleton_is_remembered_and_then_only_looked_up() -> None:
    calls: list[int] = []

    def counted(levels: list[list[str]]) -> bytes | None:
        calls.append(1)
        return tail(levels)

    check: SkeletonCheck[list[list[str]]] = SkeletonCheck(counted)
    levels = [["30000.01", "0.5"], ["29999.99", "12"]]
    assert check.vouches(frame(levels), levels)
    other = [["1.00000000", "9.99999"], ["7.7", "0"]]  # other digits, same forms
    assert check.vouches(frame(other), other)
    assert len(calls) == 1


@pytest.mark.parametrize("bad", ["-1.0", "1e5", "1.2.3", " 1.0", "1,0", "1_0.0", "\u0661.0", "1.0\\n"])
def test_any_non_digit_shows_in_the_skeleton(bad: str) -> None:
    check: SkeletonCheck[list[list[str]]] = SkeletonCheck(tail)
    good = [["30000.01", "0.5"], ["29999.99", "1.5"]]
    assert check.vouches(frame(good), good)
    levels = [["30000.01", "0.5"], ["29999.99", bad]]
    # Even when the caller's own reading of the strings would pass them, the bytes decide.
    assert not check.vouches(frame(levels), good)


def test_the_levels_must_end_the_frame() -> None:
    check: SkeletonCheck[list[list[str]]] = SkeletonCheck(tail)
    levels = [["1.0", "2.0"]]
    assert not check.vouches(frame(levels)[:-1] + b',"x":1}', levels)


def test_the_memo_is_bounded() -> None:
    check: SkeletonCheck[list[list[str]]] = SkeletonCheck(tail, limit=2)
    for n in range(1, 6):
        levels = [["1.0", "2.0"]] * n
        assert check.vouches(frame(levels), levels)
        assert len(check.good) <= 2
