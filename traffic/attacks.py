"""Abusive traffic: distillation through a proxy (hydra), slow drips, compromised keys and bursts.

Attackers ignore the day/night curve and launch-day surges: their rates follow
their own schedule. Like benign actors, each attack has `accounts` (with labels
and onset, known at build time) and `streams()` of event dicts in ts order.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from .accounts import Account, make_event
from .addresses import CLOUD_ASNS, RESIDENTIAL_ASNS, ExitPool
from .clients import SDK_UAS, TOOL_UAS, harvest_tokens, human_tokens, human_ua, pick_model
from .draws import log_uniform, lognormal_int
from .fingerprints import SharedPayments, Topics, payment_fp, random_fp, to_hex
from .world import World


class _Harvest:
    """What a distillation operation shares across its accounts: topics, cards and SDK user agents."""

    def __init__(self, rng: random.Random) -> None:
        self.topics = Topics(rng, n=rng.randint(3, 8), max_flips=4)
        self.payments = SharedPayments(rng)
        self.uas = rng.sample(SDK_UAS, rng.randint(1, 2))


class Hydra:
    """A distillation campaign: a steady pool of fresh accounts, each slow (a request every 5-25 s),
    spread over a proxy service's exits, harvesting long answers on a few topics.

    Each of `concurrency` slots holds one account at a time; when it has lived its
    lifetime (minutes) a new account takes over, which is how bans look from the
    attacker's side: per-account history stays short.
    """

    def __init__(
        self,
        world: World,
        tag: str,
        pool: ExitPool,
        *,
        onset: float,
        concurrency: int,
        life_min: tuple[float, float] = (2.0, 40.0),
        interval_s: tuple[float, float] = (5.0, 25.0),
        created_before_min: tuple[float, float] = (5.0, 360.0),
        group: str = "hydra",
    ) -> None:
        rng = world.rng(tag, "plan")
        self.world, self.tag, self.pool, self.onset = world, tag, pool, onset
        self.harvest = _Harvest(rng)
        self.interval_s = interval_s
        ramp = rng.uniform(60.0, 600.0)
        self.slots: list[list[tuple[Account, float, float]]] = []
        for _ in range(concurrency):
            t = onset + rng.uniform(0.0, ramp)
            lives = []
            while t < world.t1:
                life = log_uniform(rng, *life_min) * 60.0
                created = round(t - log_uniform(rng, *created_before_min) * 60.0, 3)
                acct = Account(
                    world.ids.new(),
                    created,
                    label="attack",
                    group=group,
                    onset=onset,
                    payment_fp=self.harvest.payments.next(),
                )
                lives.append((acct, t, t + life))
                # the replacement needs a moment to be registered and configured
                t += life + rng.uniform(5.0, 120.0)
            self.slots.append(lives)
        self.accounts = [a for lives in self.slots for a, _, _ in lives]

    def streams(self) -> list[Iterator[dict]]:
        return [self._slot(i, lives) for i, lives in enumerate(self.slots)]

    def _slot(self, i: int, lives: list[tuple[Account, float, float]]) -> Iterator[dict]:
        w, pick = self.world, self.pool.pick
        rng = w.rng(self.tag, "events", i)
        topic = self.harvest.topics.sample
        for acct, start, end in lives:
            ua = rng.choice(self.harvest.uas)
            gap = rng.uniform(*self.interval_s)
            t, sticky = start, 0
            end = min(end, w.t1)
            while t < end:
                if sticky == 0:
                    ip, asn = pick(rng)
                    sticky = rng.randint(1, 3)
                sticky -= 1
                inp, out = harvest_tokens(rng)
                yield make_event(acct, t, ip, asn, ua, "large", inp, out, topic(rng))
                t += gap * rng.uniform(0.6, 1.4)


class SlowDrip:
    """Hundreds of fresh accounts, each a request every one to several minutes from its own exit
    (its own residential /24 or /48), harvesting long answers like the hydra."""

    def __init__(
        self,
        world: World,
        tag: str,
        *,
        onset: float,
        accounts: int,
        v6: bool = False,
        interval_s: tuple[float, float] = (60.0, 300.0),
    ) -> None:
        rng = world.rng(tag, "plan")
        self.world, self.tag, self.onset = world, tag, onset
        self.harvest = _Harvest(rng)
        ramp = rng.uniform(300.0, 1200.0)
        self.plans: list[tuple[Account, float, float, str, int]] = []
        for _ in range(accounts):
            net = world.internet.net(rng.choice(RESIDENTIAL_ASNS), v6=v6)
            start = onset + rng.uniform(0.0, ramp)
            created = round(start - log_uniform(rng, 10.0, 4320.0) * 60.0, 3)
            acct = Account(
                world.ids.new(),
                created,
                label="attack",
                group="slow_drip",
                onset=onset,
                payment_fp=self.harvest.payments.next(),
            )
            self.plans.append((acct, start, rng.uniform(*interval_s), net.host(rng), net.asn))
        self.accounts = [p[0] for p in self.plans]

    def streams(self) -> list[Iterator[dict]]:
        return [self._events(i, *p) for i, p in enumerate(self.plans)]

    def _events(self, i: int, acct: Account, start: float, gap: float, ip: str, asn: int) -> Iterator[dict]:
        w = self.world
        rng = w.rng(self.tag, "events", i)
        ua = rng.choice(self.harvest.uas)
        t = start
        while t < w.t1:
            inp, out = harvest_tokens(rng)
            yield make_event(acct, t, ip, asn, ua, "large", inp, out, self.harvest.topics.sample(rng))
            t += gap * rng.uniform(0.5, 1.5)


class Compromised:
    """Old, quiet accounts whose keys leaked, suddenly driven from one datacenter /24 at about
    one request a second each, with a mixed workload (resold access)."""

    def __init__(
        self,
        world: World,
        tag: str,
        *,
        onset: float,
        accounts: int,
        run_min: tuple[float, float] | None = None,
    ) -> None:
        rng = world.rng(tag, "plan")
        self.world, self.tag, self.onset = world, tag, onset
        net = world.internet.net(rng.choice(CLOUD_ASNS))
        self.ips, self.asn = net.hosts(rng, rng.randint(2, 6)), net.asn
        self.ua = rng.choice(TOOL_UAS[2:4] + SDK_UAS[:1])
        self.plans: list[tuple[Account, float, float, float, list[float]]] = []
        for _ in range(accounts):
            acct = Account(
                world.ids.new(),
                world.days_ago(log_uniform(rng, 60.0, 1000.0)),
                label="attack",
                group="compromised",
                onset=onset,
                payment_fp=payment_fp(rng),
            )
            start = onset + rng.uniform(0.0, 180.0)
            end = start + rng.uniform(*run_min) * 60.0 if run_min else world.t1
            # the owner still uses the key now and then before it is stolen
            owner = sorted(rng.uniform(world.t0, onset) for _ in range(rng.choice((0, 0, 0, 1, 2))))
            self.plans.append((acct, start, min(end, world.t1), rng.uniform(0.7, 1.4), owner))
        self.home_nets = [world.internet.net(rng.choice(RESIDENTIAL_ASNS)) for _ in range(len(self.plans))]
        self.accounts = [p[0] for p in self.plans]

    def streams(self) -> list[Iterator[dict]]:
        return [self._events(i, *p) for i, p in enumerate(self.plans)]

    def _events(
        self, i: int, acct: Account, start: float, end: float, gap: float, owner: list[float]
    ) -> Iterator[dict]:
        rng = self.world.rng(self.tag, "events", i)
        home = self.home_nets[i]
        owner_ua = human_ua(rng)
        for t in owner:
            inp, out = human_tokens(rng)
            yield make_event(
                acct, t, home.host(rng), home.asn, owner_ua, pick_model(rng), inp, out, to_hex(random_fp(rng))
            )
        t = start
        while t < end:
            inp, out = lognormal_int(rng, 800.0, 0.8, 10, 20000), lognormal_int(rng, 600.0, 1.0, 1, 4096)
            yield make_event(
                acct,
                t,
                rng.choice(self.ips),
                self.asn,
                self.ua,
                pick_model(rng),
                inp,
                out,
                to_hex(random_fp(rng)),
            )
            t += gap * rng.uniform(0.5, 1.5)


class Burst:
    """Old accounts that jump from near zero to 10-25 requests a second for a few minutes.

    Each account's onset is the start of its own burst; its few earlier requests are
    the owner's ordinary use.
    """

    def __init__(self, world: World, tag: str, *, onset: float, accounts: int) -> None:
        rng = world.rng(tag, "plan")
        self.world, self.tag = world, tag
        self.plans: list[tuple[Account, float, float, float, list[float], str, int, str]] = []
        for _ in range(accounts):
            length = rng.uniform(2.0, 10.0) * 60.0
            latest = max(onset, world.t1 - length)
            start = rng.uniform(onset, onset + 0.5 * (latest - onset))
            acct = Account(
                world.ids.new(),
                world.days_ago(log_uniform(rng, 30.0, 1200.0)),
                label="attack",
                group="burst",
                onset=round(start, 3),
                payment_fp=payment_fp(rng),
            )
            cloud = rng.random() < 0.4
            net = world.internet.net(rng.choice(CLOUD_ASNS if cloud else RESIDENTIAL_ASNS))
            quiet = sorted(rng.uniform(world.t0, start) for _ in range(rng.randint(0, 4)))
            ua = rng.choice(SDK_UAS + TOOL_UAS) if cloud else human_ua(rng)
            self.plans.append(
                (acct, start, start + length, rng.uniform(10.0, 25.0), quiet, net.host(rng), net.asn, ua)
            )
        self.accounts = [p[0] for p in self.plans]

    def streams(self) -> list[Iterator[dict]]:
        return [self._events(i, *p) for i, p in enumerate(self.plans)]

    def _events(
        self,
        i: int,
        acct: Account,
        start: float,
        end: float,
        rate: float,
        quiet: list[float],
        ip: str,
        asn: int,
        ua: str,
    ) -> Iterator[dict]:
        w = self.world
        rng = w.rng(self.tag, "events", i)
        model = pick_model(rng)
        for t in quiet:
            inp, out = human_tokens(rng)
            yield make_event(acct, t, ip, asn, ua, model, inp, out, to_hex(random_fp(rng)))
        t, end = start, min(end, w.t1)
        while t < end:
            inp, out = human_tokens(rng)
            yield make_event(acct, t, ip, asn, ua, model, inp, out, to_hex(random_fp(rng)))
            t += rng.uniform(0.5, 1.5) / rate
