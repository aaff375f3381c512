"""Consumer settings Faust does not expose.

Faust creates its aiokafka consumer with ``fetch_max_wait_ms=1500`` hard-coded. A
real Kafka answers a fetch as soon as data arrives, but the embedded broker holds
an empty fetch for the whole wait, so each of the three hops between agents
could add up to 1.5 s. The wait is capped here (``RATEHOUND_FETCH_MAX_WAIT_MS``,
100 ms by default): a little more idle polling, decisions in a fraction of a second.
"""

from __future__ import annotations

import aiokafka

_original = aiokafka.AIOKafkaConsumer
_installed: list[int] = []


def cap_fetch_wait(max_wait_ms: int) -> None:
    """Make every aiokafka consumer created from now on wait at most ``max_wait_ms`` per fetch."""
    if _installed:
        _installed[0] = max_wait_ms
        return
    _installed.append(max_wait_ms)

    class CappedConsumer(_original):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", 500), _installed[0])
            super().__init__(*args, **kwargs)

    aiokafka.AIOKafkaConsumer = CappedConsumer  # type: ignore[misc]
