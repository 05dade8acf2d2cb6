"""The retry budget: a reserve per second, a share of deposits, over a sliding window."""

from __future__ import annotations

from weft.proxy.budget import RetryBudget


def withdraw_all(budget: RetryBudget, now: float, limit: int = 10000) -> int:
    """How many withdrawals ``budget`` allows at ``now`` (stops at ``limit``)."""
    count = 0
    while count < limit and budget.withdraw(now):
        count += 1
    return count


def test_the_reserve_is_min_per_second_times_ttl() -> None:
    budget = RetryBudget(0.2, 10, 10.0, now=1000.0)
    for i in range(100):
        assert budget.withdraw(1000.0 + i * 0.001), f"withdrawal {i + 1} refused"
    assert not budget.withdraw(1000.1)


def test_a_ratio_of_deposits_may_be_retried() -> None:
    budget = RetryBudget(0.2, 0, 10.0, now=0.0)
    assert not budget.withdraw(0.0)
    for _ in range(1000):
        budget.deposit(0.5)
    assert withdraw_all(budget, 0.5) == 200


def test_reserve_and_deposits_add_up() -> None:
    budget = RetryBudget(0.5, 1, 10.0, now=0.0)
    for _ in range(10):
        budget.deposit(0.0)
    assert withdraw_all(budget, 0.0) == 10 + 5


def test_withdrawals_expire_after_the_ttl() -> None:
    budget = RetryBudget(0.2, 10, 10.0, now=0.0)
    assert withdraw_all(budget, 0.0) == 100
    assert not budget.withdraw(9.5)  # still inside the window
    assert withdraw_all(budget, 10.5) == 100  # the first withdrawals fell out of it


def test_withdrawals_fall_out_a_bucket_at_a_time() -> None:
    budget = RetryBudget(0.0, 1, 10.0, now=0.0)  # a reserve of 10, buckets of 1 s
    for _ in range(5):
        assert budget.withdraw(0.0)
    assert withdraw_all(budget, 3.0) == 5
    assert not budget.withdraw(9.9)
    assert withdraw_all(budget, 10.0) == 5  # only the first bucket's five expired
    assert not budget.withdraw(12.9)
    assert withdraw_all(budget, 13.0) == 5


def test_deposits_expire_after_the_ttl() -> None:
    budget = RetryBudget(1.0, 0, 10.0, now=0.0)
    for _ in range(10):
        budget.deposit(0.0)
    assert budget.withdraw(9.0)  # still in the window
    assert not budget.withdraw(10.5)  # the deposits fell out of it
    budget.deposit(10.5)
    budget.deposit(10.5)  # two more deposits cover the withdrawal at 9 s and one more
    assert budget.withdraw(10.5)
    assert not budget.withdraw(10.5)
    # Long idle periods (more than a whole window) clear everything.
    for _ in range(5):
        budget.deposit(11.0)
    assert withdraw_all(budget, 500.0) == 0


def test_a_refused_withdrawal_takes_nothing() -> None:
    budget = RetryBudget(0.5, 0, 10.0, now=0.0)
    budget.deposit(0.0)
    for _ in range(50):
        assert not budget.withdraw(0.0)  # 0.5 is less than one retry
    budget.deposit(0.0)
    assert budget.withdraw(0.0)  # the refusals left the balance at 1.0
    assert not budget.withdraw(0.0)
