"""Which campaigns a set of enforced accounts found: the worker-against-replay tests compare these."""

from __future__ import annotations

from collections import Counter


def campaigns_found(accounts: set[str], labels: dict[str, dict]) -> set[str]:
    """The attack groups of which ``accounts`` hold three members, or every member of a smaller one: a
    campaign found, not one member met by chance in an order the other reader may not repeat (on the
    shadow test's hour replay enforces 1 of 724 slow-drip accounts)."""
    size = Counter(v["group"] for v in labels.values() if v.get("label") == "attack")
    found = Counter(labels[k]["group"] for k in accounts)
    assert found, "no campaign found: nothing to compare"
    return {g for g, n in found.items() if n >= min(3, size[g])}


def by_group(accounts: set[str], labels: dict[str, dict]) -> Counter:
    """How many of ``accounts`` each attack group holds (for a failure's message)."""
    return Counter(labels[k]["group"] for k in accounts)
