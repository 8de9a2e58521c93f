import random
from email.utils import formatdate

import pytest

from openparity.models.retry import RetryPolicy, retry_after_seconds


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"Retry-After-Ms": "250", "Retry-After": "9"}, 0.25),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_forms(headers, expected):
    assert retry_after_seconds(headers) == expected


def test_retry_after_http_date():
    now = 1_800_000_000.0
    header = {"Retry-After": formatdate(now + 30, usegmt=True)}
    assert retry_after_seconds(header, now=now) == pytest.approx(30, abs=1)


def test_server_hint_wins_but_is_capped():
    policy = RetryPolicy(max_retry_after_s=10)
    assert policy.delay(0, {"Retry-After": "2"}) == 2.0
    assert policy.delay(0, {"Retry-After": "3600"}) == 10.0


def test_backoff_is_jittered_exponential_and_bounded():
    policy = RetryPolicy(initial_delay_s=0.5, max_delay_s=4.0)
    rng = random.Random(0)
    for retry, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0)]:
        delays = [policy.backoff(retry, rng) for _ in range(200)]
        assert min(delays) >= 0 and max(delays) <= ceiling
        assert max(delays) > ceiling * 0.8  # full jitter spans the range
