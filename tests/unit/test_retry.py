"""Backoff policies: exponential with jitter (default), linear, constant, polynomial, callable."""

from __future__ import annotations

import pytest

from aiojobs_engine import ConfigurationError, ConstantBackoff, ExponentialBackoff, LinearBackoff, PolynomialBackoff
from aiojobs_engine._retry import backoff_from_json, backoff_to_json, coerce_backoff


def test_default_exponential_with_jitter() -> None:
    policy = ExponentialBackoff()
    for attempt, expected in ((1, 1.0), (2, 2.0), (3, 4.0), (10, 512.0)):
        samples = [policy.delay(attempt) for _ in range(200)]
        assert min(samples) >= expected * 0.9 and max(samples) <= expected * 1.1
        assert len(set(samples)) > 1  # jittered
    assert ExponentialBackoff(jitter=0).delay(40) == 3600.0  # capped at an hour


def test_the_cap_holds_after_jitter() -> None:
    """DESIGN: "capped at 1 h" — jitter must not push a delay past the cap (it reached ~66 min)."""
    for policy, attempt in ((ExponentialBackoff(jitter=0.5), 40), (ExponentialBackoff(jitter=0.99), 13),
                            (LinearBackoff(step=100, max_delay=300, jitter=0.5), 3)):
        samples = [policy.delay(attempt) for _ in range(500)]
        assert max(samples) <= policy.max_delay
        assert min(samples) < policy.max_delay  # delays at the cap still spread below it


def test_linear_constant_polynomial_and_callable() -> None:
    assert [LinearBackoff(step=5).delay(n) for n in (1, 2, 3)] == [5.0, 10.0, 15.0]
    assert ConstantBackoff(7).delay(9) == 7.0
    assert [PolynomialBackoff().delay(n) for n in (1, 2, 3)] == [1.0, 16.0, 81.0]  # RedwoodJS: attempts ** 4
    custom = coerce_backoff(lambda attempt: attempt * 1.5, storable=False)
    assert custom.delay(2) == 3.0


def test_built_in_policies_are_stored_and_read_back() -> None:
    for policy in (ExponentialBackoff(base=2, factor=3, jitter=0), LinearBackoff(step=1), ConstantBackoff(3),
                   PolynomialBackoff(exponent=2)):
        assert backoff_from_json(backoff_to_json(policy)) == policy
    assert backoff_from_json({"kind": "unknown"}) is None
    assert backoff_from_json("garbage") is None


def test_invalid_policies() -> None:
    with pytest.raises(ConfigurationError, match="LinearBackoff step must be >= 0 seconds"):
        LinearBackoff(step=-1)
    with pytest.raises(ConfigurationError, match="jitter"):
        ExponentialBackoff(jitter=1.5)
    with pytest.raises(ConfigurationError, match="PolynomialBackoff exponent must be between 1 and 10"):
        PolynomialBackoff(exponent=0)
    with pytest.raises(ConfigurationError, match="a callable is stored in no database"):
        coerce_backoff(lambda attempt: 1.0, storable=True)
    with pytest.raises(ConfigurationError, match="retry must be a backoff policy"):
        coerce_backoff("exponential", storable=False)
