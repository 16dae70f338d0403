"""Value checks for settings read from user files (configs, selections): each returns None when a
value is fine, else the words for what it should be, so callers can write one message per key."""

from collections.abc import Callable

#: A check returns None when the value is fine, else what the value should be.
Check = Callable[[object], str | None]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def integer(minimum: int) -> Check:
    wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    return lambda value: None if _is_int(value) and value >= minimum else wanted


def number(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False) -> Check:
    """A real number in [low, high] (open ends where asked; None: unbounded)."""
    left = "" if low is None else f"{'>' if low_open else '>='} {low}"
    right = "" if high is None else f"{'<' if high_open else '<='} {high}"
    wanted = "a number" + (f" {left}" if left else "") + (" and" if left and right else "") + (f" {right}" if right else "")

    def check(value):
        if not _is_number(value):
            return wanted
        if low is not None and (value <= low if low_open else value < low):
            return wanted
        if high is not None and (value >= high if high_open else value > high):
            return wanted
        return None

    return check


def optional(inner: Check) -> Check:
    return lambda value: None if value is None else (None if inner(value) is None else f"null or {inner(value)}")


def choice(*values) -> Check:
    wanted = "one of " + ", ".join(repr(value) for value in values)
    return lambda value: None if isinstance(value, str) and value in values else wanted


def boolean(value) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def pair_in_unit_interval(value) -> str | None:
    good = isinstance(value, (list, tuple)) and len(value) == 2 and all(number(0, 1, high_open=True)(item) is None for item in value)
    return None if good else "two numbers in [0, 1)"


POSITIVE = number(0, low_open=True)
