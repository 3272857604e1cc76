"""supervisor.restart: the restart decision as pure functions (Erlang/OTP ``supervisor`` semantics).

No clock, no sleeping, no processes: ``now`` is injected and randomness is a seeded
``random.Random``. The OTP reference is ``supervisor.erl``:

* restart types: permanent is always restarted; transient only when it ends abnormally
  (not ``normal``, ``shutdown`` or ``{shutdown, _}``); temporary never.
* strategies: one_for_one restarts the failed child; one_for_all stops every other child
  (reverse start order) and restarts them all (start order); rest_for_one does the same
  for the failed child and those started after it. Temporary children stopped by a
  strategy are not restarted (OTP deletes them).
* intensity: ``add_restart`` keeps the restarts with ``R >= Now - Period`` (an entry exactly
  ``period`` old still counts), adds ``Now``, and terminates the supervisor when more than
  ``intensity`` remain.
"""

from __future__ import annotations

import random

import pytest

from supervisor.registry import ExitKind
from supervisor.restart import Plan, add_restart, backoff_delay, plan, should_restart

NORMAL, SHUTDOWN, ABNORMAL = ExitKind.NORMAL, ExitKind.SHUTDOWN, ExitKind.ABNORMAL

# ---- should_restart: restart type x exit kind ----------------------------------------------------

MATRIX = [
    # type         exit kind  restarted?
    ("permanent", NORMAL, True),
    ("permanent", SHUTDOWN, True),
    ("permanent", ABNORMAL, True),
    ("transient", NORMAL, False),
    ("transient", SHUTDOWN, False),
    ("transient", ABNORMAL, True),
    ("temporary", NORMAL, False),
    ("temporary", SHUTDOWN, False),
    ("temporary", ABNORMAL, False),
]


@pytest.mark.parametrize(("restart_type", "exit_kind", "expected"), MATRIX)
def test_should_restart_matrix(restart_type, exit_kind, expected):
    assert should_restart(restart_type, exit_kind) is expected


def test_exit_kind_names():
    assert (NORMAL, SHUTDOWN, ABNORMAL) == ("normal", "shutdown", "abnormal")


# ---- plan: strategies ------------------------------------------------------------------------------

ABC = ["a", "b", "c"]
ALL_PERMANENT = {c: "permanent" for c in "abcde"}

PLANS = [
    # strategy, children, failed, types, expected Plan(stop, start, drop)
    pytest.param("one_for_one", ABC, "a", ALL_PERMANENT, Plan((), ("a",), ()), id="one_for_one-first"),
    pytest.param("one_for_one", ABC, "b", ALL_PERMANENT, Plan((), ("b",), ()), id="one_for_one-middle"),
    pytest.param("one_for_one", ABC, "c", ALL_PERMANENT, Plan((), ("c",), ()), id="one_for_one-last"),
    pytest.param("one_for_one", ["a"], "a", ALL_PERMANENT, Plan((), ("a",), ()), id="one_for_one-only"),
    pytest.param("one_for_one", ABC, "b", {"a": "temporary", "b": "permanent", "c": "temporary"},
                 Plan((), ("b",), ()), id="one_for_one-temporary-siblings-untouched"),

    pytest.param("one_for_all", ABC, "a", ALL_PERMANENT, Plan(("c", "b"), ("a", "b", "c"), ()),
                 id="one_for_all-first"),
    pytest.param("one_for_all", ABC, "b", ALL_PERMANENT, Plan(("c", "a"), ("a", "b", "c"), ()),
                 id="one_for_all-middle"),
    pytest.param("one_for_all", ABC, "c", ALL_PERMANENT, Plan(("b", "a"), ("a", "b", "c"), ()),
                 id="one_for_all-last"),
    pytest.param("one_for_all", ["a"], "a", ALL_PERMANENT, Plan((), ("a",), ()), id="one_for_all-only"),
    pytest.param("one_for_all", list("abcd"), "b",
                 {"a": "permanent", "b": "transient", "c": "temporary", "d": "transient"},
                 Plan(("d", "c", "a"), ("a", "b", "d"), ("c",)), id="one_for_all-temporary-dropped"),
    pytest.param("one_for_all", ABC, "b", {"a": "temporary", "b": "permanent", "c": "temporary"},
                 Plan(("c", "a"), ("b",), ("a", "c")), id="one_for_all-all-others-temporary"),

    pytest.param("rest_for_one", ABC, "a", ALL_PERMANENT, Plan(("c", "b"), ("a", "b", "c"), ()),
                 id="rest_for_one-first"),
    pytest.param("rest_for_one", ABC, "b", ALL_PERMANENT, Plan(("c",), ("b", "c"), ()), id="rest_for_one-middle"),
    pytest.param("rest_for_one", ABC, "c", ALL_PERMANENT, Plan((), ("c",), ()), id="rest_for_one-last"),
    pytest.param("rest_for_one", list("abcde"), "b", ALL_PERMANENT,
                 Plan(("e", "d", "c"), ("b", "c", "d", "e"), ()), id="rest_for_one-longer-rest"),
    pytest.param("rest_for_one", list("abcde"), "b",
                 {"a": "temporary", "b": "permanent", "c": "temporary", "d": "transient", "e": "temporary"},
                 Plan(("e", "d", "c"), ("b", "d"), ("c", "e")), id="rest_for_one-temporary-dropped"),
    pytest.param("rest_for_one", ABC, "z", ALL_PERMANENT, Plan((), ("z",), ()), id="rest_for_one-unknown-failed"),
]


@pytest.mark.parametrize(("strategy", "children", "failed", "types", "expected"), PLANS)
def test_plan(strategy, children, failed, types, expected):
    got = plan(strategy, children, failed, types)
    assert got == expected


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
@pytest.mark.parametrize("failed", ["a", "c", "e"])
def test_plan_invariants(strategy, failed):
    """Whatever the strategy: the failed child (already dead) is never stopped but always restarted;
    stop is in reverse start order, start in start order; dropped = stopped temporaries."""
    children = list("abcde")
    types = {"a": "permanent", "b": "temporary", "c": "transient", "d": "temporary", "e": "permanent"}
    types[failed] = "permanent"
    p = plan(strategy, children, failed, types)
    assert failed not in p.stop
    assert failed in p.start
    assert list(p.stop) == sorted(p.stop, key=children.index, reverse=True)
    assert list(p.start) == sorted(p.start, key=children.index)
    assert set(p.drop) == {c for c in p.stop if types[c] == "temporary"}
    assert not set(p.drop) & set(p.start)
    assert set(p.start) | set(p.drop) == set(p.stop) | {failed}


def test_plan_does_not_touch_its_inputs():
    children, types = ["a", "b", "c"], {"a": "permanent", "b": "temporary", "c": "permanent"}
    plan("one_for_all", children, "a", types)
    plan("rest_for_one", children, "a", types)
    assert children == ["a", "b", "c"]
    assert types == {"a": "permanent", "b": "temporary", "c": "permanent"}


def test_plan_missing_types_count_as_restartable():
    """A sibling without a known type is not temporary: restarted, not dropped."""
    assert plan("one_for_all", ABC, "a", {}) == Plan(("c", "b"), ("a", "b", "c"), ())


def test_plan_unknown_strategy():
    with pytest.raises(ValueError, match="simple_one_for_one"):
        plan("simple_one_for_one", ABC, "a", ALL_PERMANENT)


# ---- add_restart: intensity within period ---------------------------------------------------------

def test_intensity_zero_first_restart_exceeds():
    history, exceeded = add_restart([], now=100.0, period=5.0, intensity=0)
    assert exceeded
    assert history == [100.0]


@pytest.mark.parametrize("intensity", [1, 2, 3, 5])
def test_intensity_n_allows_n_restarts_within_period(intensity):
    history: list[float] = []
    for i in range(intensity):
        history, exceeded = add_restart(history, now=100.0 + i * 0.1, period=5.0, intensity=intensity)
        assert not exceeded, f"restart {i + 1} of {intensity} allowed"
    history, exceeded = add_restart(history, now=100.0 + intensity * 0.1, period=5.0, intensity=intensity)
    assert exceeded
    assert len(history) == intensity + 1


def test_intensity_three_table():
    """(now, exceeded?, history afterwards) step by step, intensity 3 in 5 s."""
    steps = [
        (10.0, False, [10.0]),
        (11.0, False, [10.0, 11.0]),
        (12.0, False, [10.0, 11.0, 12.0]),
        (13.0, True, [10.0, 11.0, 12.0, 13.0]),        # 4 within 5 s
        (15.5, True, [11.0, 12.0, 13.0, 15.5]),        # 10.0 fell out, still 4
        (17.5, False, [13.0, 15.5, 17.5]),             # 11.0 and 12.0 fell out
        (30.0, False, [30.0]),                         # a quiet spell forgets everything
    ]
    history: list[float] = []
    for now, exceeded, after in steps:
        history, got = add_restart(history, now=now, period=5.0, intensity=3)
        assert (got, history) == (exceeded, after), f"at now={now}"


def test_restarts_spread_out_never_exceed():
    history: list[float] = []
    for i in range(50):
        history, exceeded = add_restart(history, now=i * 3.0, period=5.0, intensity=2)
        assert not exceeded
        assert len(history) <= 2


def test_add_restart_does_not_mutate_history():
    history = [1.0, 2.0]
    new, _ = add_restart(history, now=3.0, period=5.0, intensity=3)
    assert history == [1.0, 2.0]
    assert new == [1.0, 2.0, 3.0]


def test_entries_older_than_the_period_are_dropped():
    history, exceeded = add_restart([0.0, 94.9, 94.99], now=100.0, period=5.0, intensity=0)
    assert history == [100.0]
    assert exceeded                     # intensity 0: the new restart alone exceeds


def test_entries_just_inside_the_period_are_kept():
    history, exceeded = add_restart([95.01, 99.0], now=100.0, period=5.0, intensity=2)
    assert history == [95.01, 99.0, 100.0]
    assert exceeded


def test_entry_exactly_one_period_old_still_counts():
    """Boundary, as OTP's supervisor:add_restart/3 defines it: ``Threshold = Now - Period``
    and restarts with ``R >= Threshold`` are kept. A restart exactly ``period`` seconds ago
    (95.0 at now=100.0, period 5) is still inside the window, so with intensity 1 this second
    restart exceeds it. Only entries *older* than now - period are dropped."""
    history, exceeded = add_restart([95.0], now=100.0, period=5.0, intensity=1)
    assert history == [95.0, 100.0]
    assert exceeded
    # the same in OTP's whole seconds: intensity 1, period 1, restarts at t=10 and t=11 exceed
    # (11 - 1 = 10 >= 10); at t=10 and t=12 they do not.
    h, _ = add_restart([], now=10.0, period=1.0, intensity=1)
    assert add_restart(h, now=12.0, period=1.0, intensity=1)[1] is False
    assert add_restart(h, now=11.0, period=1.0, intensity=1)[1] is True


def test_escalation_flag_is_only_about_the_count():
    """The flag is True exactly when the kept history (including now) is longer than intensity."""
    for intensity in range(0, 5):
        for n in range(0, 7):
            history = [50.0 + i * 0.01 for i in range(n)]
            new, exceeded = add_restart(history, now=51.0, period=10.0, intensity=intensity)
            assert len(new) == n + 1
            assert exceeded is (n + 1 > intensity), (intensity, n)


# ---- backoff_delay ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("attempt", "expected"), [
    (0, 0.1),       # the first restart waits min
    (1, 0.2),
    (2, 0.4),
    (3, 0.8),
    (4, 1.6),
    (5, 3.2),
    (6, 5.0),       # 6.4 capped at max
    (7, 5.0),
    (62, 5.0),
    (63, 5.0),
    (10_000, 5.0),  # no overflow however many attempts
])
def test_backoff_doubles_from_min_and_caps_at_max(attempt, expected):
    assert backoff_delay(attempt, 0.1, 5.0, 0.0) == pytest.approx(expected)


def test_backoff_min_equals_max():
    assert [backoff_delay(a, 2.0, 2.0, 0.0) for a in range(5)] == [2.0] * 5


def test_backoff_jitter_zero_is_exact_whatever_the_rng():
    for seed in range(20):
        assert backoff_delay(3, 0.25, 60.0, 0.0, random.Random(seed)) == 2.0


@pytest.mark.parametrize("jitter", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("attempt", [0, 1, 2, 3])
def test_backoff_jitter_bounds(attempt, jitter):
    low, high = 0.5, 3.0
    base = min(high, low * 2 ** attempt)
    rng = random.Random(1234 + attempt)
    delays = [backoff_delay(attempt, low, high, jitter, rng) for _ in range(500)]
    assert all(base <= d <= base * (1 + jitter) for d in delays), (min(delays), max(delays))
    assert len(set(delays)) > 1, "jitter spreads the delays, at the cap too (no restarts in lockstep)"


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_backoff_jitter_is_the_seeded_fraction(seed):
    """delay = base + U * jitter * base with U the rng's next random(); reproducible by seed."""
    expected_u = random.Random(seed).random()
    got = backoff_delay(2, 1.0, 100.0, 0.5, random.Random(seed))
    assert got == pytest.approx(4.0 + expected_u * 0.5 * 4.0)
    assert backoff_delay(2, 1.0, 100.0, 0.5, random.Random(seed)) == got


def test_backoff_jitter_exceeds_max_by_at_most_its_fraction():
    rng = random.Random(7)
    for attempt in range(10):
        for _ in range(100):
            assert backoff_delay(attempt, 1.0, 4.0, 0.25, rng) <= 4.0 * 1.25


def test_backoff_without_rng_uses_module_random():
    d = backoff_delay(1, 1.0, 10.0, 0.5)
    assert 2.0 <= d <= 3.0
