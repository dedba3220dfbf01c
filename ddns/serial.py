"""SOA serial arithmetic (RFC 1982), pure.

Dynamic zones change far more than 100 times a day, so ``YYYYMMDDnn`` is out;
the next serial is ``max(old + 1, unix time)`` in serial-number arithmetic: it
never goes backwards (as secondaries see it) and never repeats.
"""
from __future__ import annotations

SERIAL_BITS = 32
_MODULUS = 1 << SERIAL_BITS
_HALF = 1 << (SERIAL_BITS - 1)


def serial_add(serial: int, n: int) -> int:
    """RFC 1982 addition; N must be in [0, 2**31 - 1]."""
    if not 0 <= n < _HALF:
        raise ValueError("serial increment must be in [0, 2**31 - 1]")
    return (serial + n) % _MODULUS


def serial_gt(a: int, b: int) -> bool:
    """True when A is after B in RFC 1982 order (undefined pairs are False)."""
    return (a < b and b - a > _HALF) or (a > b and a - b < _HALF)


def next_serial(old: int, now: int) -> int:
    """The serial to publish after OLD at unix time NOW.

    The wall clock is used when it is ahead of OLD (in RFC 1982 order and by
    less than 2**31); otherwise OLD + 1, which wraps at 2**32.
    """
    candidate = now % _MODULUS
    if serial_gt(candidate, old):
        return candidate
    return serial_add(old, 1)
