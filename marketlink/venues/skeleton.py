"""Proof, over a frame's raw bytes, that every string in its level lists is a plain decimal.

A depth frame is mostly level strings, and checking each one in Python costs more than the rest
of the frame's handling together. Deleting the ASCII digits from the frame (one C pass of
``bytes.translate``) leaves its *skeleton*, where a level string of digits around one "." reads
``"."`` and one of digits only reads ``""``; a sign, exponent, space, escape, second "." or
non-ASCII digit survives the translation and shows. So if the level lists' part of the skeleton
is made of those two forms only, each of those strings held nothing but digits and at most one
".". With the decoder's length bounds (``CheckedNumber``: 2 to 30 characters, so at least one
digit and below 1e30), each is a plain decimal as ``marketlink.core.numbers`` defines it.

A skeleton is first proved good on a frame whose strings were each checked in Python. After
that, any frame with the very same skeleton is good without looking at its strings: position by
position it holds the same forms. Frames of one stream share a handful of skeletons (one per
count of levels on each side, as a venue writes every size the same way), so the check is then
one ``translate`` and one set lookup; the set is bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Generic, TypeVar

from marketlink.core.numbers import is_plain_decimal

__all__ = ["DIGITS", "SkeletonCheck", "level_skeleton"]

#: What ``bytes.translate`` deletes to leave a skeleton.
DIGITS: Final = b"0123456789"

T = TypeVar("T")


def level_skeleton(levels: Sequence[Sequence[str]]) -> bytes | None:
    """The skeleton of a JSON list of ``[price, size]`` strings, each checked in Python first;
    None if one is not a plain decimal."""
    parts = []
    for level in levels:
        forms = []
        for text in level:
            if not is_plain_decimal(text):
                return None
            forms.append(b'"."' if "." in text else b'""')
        parts.append(b"[" + b",".join(forms) + b"]")
    return b"[" + b",".join(parts) + b"]"


class SkeletonCheck(Generic[T]):
    """Is every level string of a frame a plain decimal? ``skeleton(raw)`` in ``good``, else
    ``prove(skeleton, decoded)``. (A hot path writes the first half out: ``raw.translate(None,
    DIGITS) in check.good``, two C calls and no Python frame.)

    ``tail(decoded)`` is the skeleton the frame must end with, given what the decoder made of it
    (built with ``level_skeleton``; None if a string is not a plain decimal). The level lists
    must be the frame's last fields, so that they are the ones the decoder kept: JSON allows a
    key twice, and msgspec keeps the last one. And the decoder must refuse unknown fields: the
    skeleton keeps no digits, so two frames whose key names differ only in digits ("b1", "b")
    share one, and with unknown keys ignored the second could hold its bad lists under the names
    the first proved clean.
    """

    __slots__ = ("_limit", "_tail", "good")

    def __init__(self, tail: Callable[[T], bytes | None], limit: int = 1024) -> None:
        self._tail = tail
        self._limit = limit
        #: Skeletons proved good: any frame with one of them is good.
        self.good: set[bytes] = set()

    def vouches(self, raw: bytes, decoded: T) -> bool:
        skeleton = raw.translate(None, DIGITS)
        return skeleton in self.good or self.prove(skeleton, decoded)

    def prove(self, skeleton: bytes, decoded: T) -> bool:
        """A skeleton not seen yet: good if it ends as the checked strings of ``decoded`` say."""
        tail = self._tail(decoded)
        if tail is None or not skeleton.endswith(tail):
            return False
        good = self.good
        if len(good) >= self._limit:
            good.clear()
        good.add(skeleton)
        return True
