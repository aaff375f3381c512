"""Honest machines in a shared cloud region that look like attackers on network signals, each group
labelled benign with its own group name.

- ``ci_runners``: scheduled CI workflows of many old customers. A hosted CI service
  runs them on runners in one or two /24s of a cloud region, and cron schedules pile
  up at the top of the hour (``0 * * * *`` is the most common schedule there is), so
  dozens of quiet accounts wake up together on one /24 and each sends a few requests
  a second for a minute or two: the shape of stolen keys fanning out from one network.
- ``paas_egress``: app back-ends of many customers hosted on one platform whose
  outbound traffic leaves through a few shared static egress addresses; some of the
  apps were deployed this week, on new accounts.
- ``serverless_fleet``: customers whose calls come from serverless functions: every
  invocation from another address across dozens of the region's /24s, like a
  campaign rotating over a proxy pool's exits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from .accounts import make_event
from .benign import Integration, Templates, customer, plan_sessions
from .clients import SDK_UAS, pick_model
from .draws import log_uniform, lognormal
from .providers import CloudRegion, Exits, Providers
from .world import World


class CiCustomer:
    """One customer's CI workflow: runs on cron (mostly at the top of the hour) and on pushes during
    working hours; each run's test suite calls the API tens of times at a few requests a second with
    the same test prompts, from a runner of the CI service's /24s."""

    def __init__(self, world: World, tag: str, region: CloudRegion, egress: list) -> None:
        rng = world.rng(tag, "plan")
        self.world, self.tag, self.region, self.egress = world, tag, region, egress
        period = rng.choice((900.0, 1800.0, 3600.0, 3600.0, 3600.0, 3600.0))
        offset = 0.0 if rng.random() < 0.7 else float(rng.choice((300, 600, 900, 1800))) % period
        first = math.ceil((world.t0 - 120.0 - offset) / period) * period + offset
        runs = [first + k * period for k in range(int((world.t1 - first) / period) + 1)]
        r = world.rhythm
        pushes = plan_sessions(rng, world, log_uniform(rng, 0.05, 1.0), r.workers, r.max_workers)
        self.runs = sorted(t for t in runs + pushes if world.t0 - 120.0 <= t < world.t1)
        self.calls = log_uniform(rng, 5.0, 150.0)
        self.rate = rng.uniform(1.0, 6.0)
        self.ua, self.model = rng.choice(SDK_UAS), rng.choice(("small", "medium", "large"))
        # test fixtures: the same prompts every run
        self.fixtures = Templates(rng, rng.randint(1, 6), 0)
        self.accounts = [customer(world, rng, "ci_runners", (60.0, 1500.0))]

    def streams(self) -> list[Iterator[dict]]:
        return [self._events()]

    def _events(self) -> Iterator[dict]:
        w, acct = self.world, self.accounts[0]
        rng = w.rng(self.tag, "events")
        last = float("-inf")
        for run in self.runs:
            # queueing for a runner takes seconds to minutes
            t = max(run + lognormal(rng, 20.0, 0.8, 2.0, 300.0), last + 1.0)
            runners = self.region.lease(rng, rng.randint(1, 3), self.egress)
            for _ in range(max(1, int(self.calls * rng.uniform(0.8, 1.2)))):
                if t >= w.t1:
                    return
                if t >= w.t0:
                    ip, asn = rng.choice(runners)
                    fp, inp, out = self.fixtures.draw(rng)
                    yield make_event(acct, t, ip, asn, self.ua, self.model, inp, out, fp)
                last = t
                t += rng.uniform(0.3, 1.7) / self.rate


def ci_runners(world: World, providers: Providers, n: int) -> list[CiCustomer]:
    """n customers of one hosted CI service whose runners live in one or two /24s of the region."""
    rng = world.rng("ci_service", "plan")
    egress = rng.sample(providers.cloud.nets, rng.randint(1, 2))
    customers = [CiCustomer(world, f"ci_runners/{i}", providers.cloud, egress) for i in range(n)]
    return [c for c in customers if c.runs]


def paas_egress(world: World, providers: Providers, n: int) -> list[Integration]:
    """n app back-ends on one platform, all leaving through its few egress addresses in one /24;
    about one in six is an app deployed this week on a new account."""
    rng = world.rng("paas", "plan")
    net = rng.choice(providers.cloud.nets)
    egress = (net.hosts(rng, rng.randint(2, 6)), net.asn)
    out = []
    for i in range(n):
        tag = f"paas_egress/{i}"
        young = world.rng(tag, "age").random() < 0.15
        out.append(
            Integration(
                world,
                tag,
                egress=egress,
                age_days=(0.05, 7.0) if young else (30.0, 1500.0),
                rate=(0.003, 0.3),
                group="paas_egress",
            )
        )
    return out


class ServerlessFleet:
    """A customer calling from serverless functions: a request or a few a second, each from another
    address in dozens of the region's /24s, a few dozen prompt templates, an old account."""

    def __init__(self, world: World, tag: str, region: CloudRegion) -> None:
        rng = world.rng(tag, "plan")
        self.world, self.tag = world, tag
        self.exits = Exits(nets=rng.sample(region.nets, rng.randint(10, min(40, len(region.nets)))))
        self.rate = log_uniform(rng, 0.2, 3.0)
        self.ua, self.model = rng.choice(SDK_UAS), pick_model(rng)
        self.templates = Templates(rng, rng.randint(3, 30), 4)
        self.accounts = [customer(world, rng, "serverless_fleet", (30.0, 1500.0))]

    def streams(self) -> list[Iterator[dict]]:
        return [self._events()]

    def _events(self) -> Iterator[dict]:
        w, acct = self.world, self.accounts[0]
        rng = w.rng(self.tag, "events")
        t = w.t0 + rng.expovariate(self.rate)
        while t < w.t1:
            ip, asn = self.exits.pick(rng)
            fp, inp, out = self.templates.draw(rng)
            yield make_event(acct, t, ip, asn, self.ua, self.model, inp, out, fp)
            t += rng.expovariate(self.rate * w.rhythm.machines(t, 0.5))


def serverless_fleet(world: World, providers: Providers, n: int) -> list[ServerlessFleet]:
    """n customers running on the region's serverless platform."""
    return [ServerlessFleet(world, f"serverless_fleet/{i}", providers.cloud) for i in range(n)]
