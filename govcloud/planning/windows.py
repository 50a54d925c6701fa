"""Weekly maintenance windows as bit masks: one bit per minute of the week (Monday 00:00 = bit 0).

Intersections become a single AND and "is there an hour everyone shares?" a few shifts, which keeps
the planner fast on ten thousand systems.
"""

from __future__ import annotations

from functools import lru_cache

from govcloud.model import DAYS, Window

MINUTES_PER_DAY = 1440
WEEK = 7 * MINUTES_PER_DAY
_FULL = (1 << WEEK) - 1


def _minutes(hhmm: str) -> int:
    hh, mm = hhmm.split(":")
    return int(hh) * 60 + int(mm)


def window_length(window: Window) -> int:
    """Minutes in one occurrence; end at or before start crosses midnight."""
    return (_minutes(window.end) - _minutes(window.start)) % MINUTES_PER_DAY or MINUTES_PER_DAY


def _span(start: int, length: int) -> int:
    """Bits [start, start+length) of the week, wrapping from Sunday night into Monday."""
    start %= WEEK
    bits = ((1 << length) - 1) << start
    return (bits | (bits >> WEEK)) & _FULL


@lru_cache(maxsize=4096)
def window_mask(window: Window) -> int:
    mask = 0
    length = window_length(window)
    for day in window.days:
        mask |= _span(DAYS.index(day) * MINUTES_PER_DAY + _minutes(window.start), length)
    return mask


def _runs_at_least(mask: int, k: int) -> int:
    """Bits of the doubled week where a run of >= k set minutes begins."""
    t = mask | (mask << WEEK)
    n = 1
    while n < k:
        step = min(n, k - n)
        t &= t >> step
        n += step
    return t


def has_run(mask: int, minutes: int) -> bool:
    """True if ``mask`` holds a stretch of at least ``minutes`` consecutive minutes."""
    if mask == _FULL:
        return True
    return mask != 0 and _runs_at_least(mask, minutes) != 0


def longest_run(mask: int) -> tuple[int, int]:
    """(start minute of week, length) of the longest run, earliest first among equals; (0, 0) if empty."""
    if mask == 0:
        return 0, 0
    if mask == _FULL:
        return 0, WEEK
    # rotate so that bit 0 is a clear bit: then no run wraps
    zero = (~mask & _FULL & -(~mask & _FULL)).bit_length() - 1
    rot = ((mask >> zero) | (mask << (WEEK - zero))) & _FULL
    best_start, best_len = 0, 0
    pos = 0
    while rot:
        low = (rot & -rot).bit_length() - 1  # first set bit
        rot >>= low
        pos += low
        run = (~rot & (rot + 1)).bit_length() - 1  # count of trailing ones
        start = (pos + zero) % WEEK
        if run > best_len or (run == best_len and start < best_start):
            best_start, best_len = start, run
        rot >>= run
        pos += run
    return best_start, best_len


def representative_window(mask: int) -> Window | None:
    """One window {days, start, end} inside ``mask``: the longest shared stretch, on every day it fits."""
    start, length = longest_run(mask)
    if length == 0:
        return None
    length = min(length, MINUTES_PER_DAY - 1)
    tod = start % MINUTES_PER_DAY
    days = tuple(d for i, d in enumerate(DAYS)
                 if _span(i * MINUTES_PER_DAY + tod, length) & ~mask == 0)
    end = (tod + length) % MINUTES_PER_DAY
    return Window(days, f"{tod // 60:02d}:{tod % 60:02d}", f"{end // 60:02d}:{end % 60:02d}")


def contains(outer: Window, inner: Window) -> bool:
    """True if every minute of ``inner`` lies inside ``outer``."""
    return window_mask(inner) & ~window_mask(outer) == 0
