"""ddns.serial: SOA serials never go backwards and never repeat (RFC 1982)."""
import random

import pytest

from ddns.serial import next_serial, serial_add, serial_gt

MOD = 2**32
HALF = 2**31


# ---------------------------------------------------------------- next_serial


def test_clock_is_used_when_ahead():
    assert next_serial(1_700_000_000, 1_700_000_500) == 1_700_000_500
    assert next_serial(0, 1_700_000_000) == 1_700_000_000
    assert next_serial(1, 2) == 2


def test_old_plus_one_when_clock_is_not_ahead():
    assert next_serial(1_700_000_000, 1_700_000_000) == 1_700_000_001  # same second
    assert next_serial(1_700_000_000, 1_699_999_000) == 1_700_000_001  # clock went back
    assert next_serial(1_700_000_000, 0) == 1_700_000_001
    assert next_serial(2_000_000_000, 1_700_000_000) == 2_000_000_001  # counter ran ahead of the clock


def test_many_changes_in_one_second_stay_increasing():
    now = 1_700_000_000
    serial = next_serial(1_600_000_000, now)
    seen = {serial}
    for _ in range(1000):
        nxt = next_serial(serial, now)
        assert nxt == serial + 1
        assert nxt not in seen
        seen.add(nxt)
        serial = nxt


def test_wraps_at_2_pow_32():
    assert next_serial(MOD - 1, 0) == 0
    assert next_serial(MOD - 1, 100) == 100  # clock ahead in RFC 1982 order
    assert next_serial(MOD - 2, MOD - 2) == MOD - 1
    assert serial_gt(next_serial(MOD - 1, 0), MOD - 1)
    assert 0 <= next_serial(MOD - 1, MOD - 1) < MOD


def test_clock_beyond_32_bits_is_taken_modulo():
    # after 2106 the unix time no longer fits in 32 bits
    now = MOD + 5
    assert next_serial(MOD - 10, now) == 5
    assert 0 <= next_serial(3, now) < MOD


def test_clock_more_than_half_ahead_is_not_used():
    # a jump of 2**31 or more would look like going backwards to secondaries
    assert next_serial(100, 100 + HALF) == 101
    assert next_serial(100, 100 + HALF - 1) == 100 + HALF - 1
    assert next_serial(0, HALF) == 1


def test_result_is_always_in_range():
    for old, now in [(0, 0), (MOD - 1, MOD - 1), (MOD - 1, 2 * MOD), (12345, -1), (0, MOD * 7 + 3)]:
        assert 0 <= next_serial(old, now) < MOD


def test_next_serial_is_always_after_old_property():
    rng = random.Random(1982)
    interesting = [0, 1, HALF - 1, HALF, HALF + 1, MOD - 2, MOD - 1]
    for _ in range(10_000):
        old = rng.choice(interesting) if rng.random() < 0.2 else rng.randrange(MOD)
        kind = rng.random()
        if kind < 0.25:
            now = old  # same second
        elif kind < 0.5:
            now = (old + rng.randrange(-5, 5)) % (2 * MOD)  # close to old, either side, possibly past 2**32
        else:
            now = rng.randrange(2 * MOD)
        new = next_serial(old, now)
        assert 0 <= new < MOD, (old, now, new)
        assert serial_gt(new, old), (old, now, new)
        assert not serial_gt(old, new), (old, now, new)
        assert new == now % MOD or new == (old + 1) % MOD, (old, now, new)


# ---------------------------------------------------------------- serial_gt


@pytest.mark.parametrize("a, b, expected", [
    (1, 0, True),
    (0, 1, False),
    (5, 5, False),
    (0, MOD - 1, True),  # wrapped: 0 comes after 2**32-1
    (MOD - 1, 0, False),
    (HALF - 1, 0, True),  # just under half-way: after
    (0, HALF - 1, False),
    (HALF + 1, 0, False),  # just over half-way: before
    (0, HALF + 1, True),
    (100, MOD - 100, True),
    (MOD - 100, 100, False),
])
def test_serial_gt_truth_table(a, b, expected):
    assert serial_gt(a, b) is expected


@pytest.mark.parametrize("a, b", [(0, HALF), (HALF, 0), (1, HALF + 1), (HALF + 1, 1), (MOD - 1, HALF - 1)])
def test_serial_gt_undefined_half_distance_pair_is_false_both_ways(a, b):
    assert serial_gt(a, b) is False
    assert serial_gt(b, a) is False


def test_serial_gt_is_never_true_both_ways():
    rng = random.Random(7)
    for _ in range(2000):
        a, b = rng.randrange(MOD), rng.randrange(MOD)
        assert not (serial_gt(a, b) and serial_gt(b, a))
        if a != b and (a - b) % MOD != HALF:
            assert serial_gt(a, b) != serial_gt(b, a)


# ---------------------------------------------------------------- serial_add


def test_serial_add():
    assert serial_add(0, 0) == 0
    assert serial_add(10, 5) == 15
    assert serial_add(MOD - 1, 1) == 0
    assert serial_add(MOD - 1, 2) == 1
    assert serial_add(0, HALF - 1) == HALF - 1
    assert serial_add(MOD - 1, HALF - 1) == HALF - 2


@pytest.mark.parametrize("n", [-1, HALF, HALF + 1, MOD, -HALF])
def test_serial_add_refuses_increments_out_of_range(n):
    with pytest.raises(ValueError, match="2\\*\\*31"):
        serial_add(100, n)


def test_serial_add_result_is_after_for_every_allowed_increment():
    for s in (0, 1, HALF, MOD - 1):
        for n in (1, 2, 1000, HALF - 1):
            assert serial_gt(serial_add(s, n), s)
