"""Honest traffic a detector must leave alone: people, app back-ends, enterprises, cron jobs, NATs,
hackathons and proxy users. People's prompts follow the shared catalog's popularity curve
(`prompts.py`); the look-alikes of attack signals live in `lookalikes.py` and `tenants.py`.

Every actor has `accounts` (known when it is built) and `streams()`, fresh
generators of event dicts in ts order. A plan (who, where, when sessions start)
is drawn at build time from one rng; request details are drawn while streaming
from another, so labels never depend on iterating events.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

from .accounts import Account, make_event
from .addresses import BUSINESS_ASNS, CLOUD_ASNS, RESIDENTIAL_ASNS, UNIVERSITY_ASNS, ExitPool, Net
from .clients import BACKEND_UAS, BROWSER_UAS, SDK_UAS, TOOL_UAS, human_tokens, human_ua, pick_model
from .draws import geometric_count, log_uniform, lognormal, lognormal_int
from .fingerprints import Topics, flip, payment_fp, random_fp, to_hex, up_to
from .world import World

Place = Callable[[random.Random], tuple[str, int]]
Prompt = Callable[[random.Random], str]
Tokens = Callable[[random.Random], tuple[int, int]]

# people already in a session at t0 keep going, so a scenario does not start cold
WARM_UP_S = 900.0


def random_prompt(rng: random.Random) -> str:
    return to_hex(random_fp(rng))


def plan_sessions(
    rng: random.Random,
    world: World,
    per_hour: float,
    curve: Callable[[float], float],
    curve_max: float,
    start: float | None = None,
    end: float | None = None,
) -> list[float]:
    """Session start times: a Poisson process of per_hour sessions an hour, thinned by curve(ts).

    >>> w = World(seed=1, t0=0.0, duration=36000.0)
    >>> s = plan_sessions(random.Random(1), w, 2.0, lambda t: 1.0, 1.0, start=0.0)
    >>> 10 < len(s) < 35, s == sorted(s)
    (True, True)
    """
    t = world.t0 - WARM_UP_S if start is None else start
    end = world.t1 if end is None else end
    out: list[float] = []
    lam = per_hour / 3600.0 * curve_max
    while True:
        t += rng.expovariate(lam)
        if t >= end:
            return out
        if rng.random() * curve_max < curve(t):
            out.append(t)


def customer(world: World, rng: random.Random, group: str | None, age_days: tuple[float, float]) -> Account:
    """An honest customer's account, created log-uniform age_days before t0, with a card of its own."""
    return Account(
        world.ids.new(), world.days_ago(log_uniform(rng, *age_days)), group=group, payment_fp=payment_fp(rng)
    )


class Human:
    """One account driven by a person: sessions of a few to tens of requests at human pace.

    place gives the (address, ASN) of a request; with sticky it is drawn once per
    session (a home line, a proxy's sticky session), else per request. first is
    (n, prompt, tokens) for the account's first n requests (a tutorial, an app's
    onboarding), after which prompt and tokens take over. When the world has a model
    release, the person starts asking for the new model at their own adoption time.
    """

    def __init__(
        self,
        world: World,
        tag: str,
        account: Account,
        *,
        sessions: list[float],
        place: Place,
        ua: str,
        session_len: float,
        gap_median: float,
        sticky: bool = True,
        prompt: Prompt = random_prompt,
        tokens: Tokens = human_tokens,
        gap_bounds: tuple[float, float] = (4.0, 600.0),
        first: tuple[int, Prompt, Tokens] | None = None,
    ) -> None:
        self.world, self.tag, self.accounts = world, tag, [account]
        self.sessions, self.place, self.ua, self.sticky = sessions, place, ua, sticky
        self.session_len, self.gap_median, self.gap_bounds = session_len, gap_median, gap_bounds
        self.prompt, self.tokens = prompt, tokens
        self.first = first or (0, prompt, tokens)

    def streams(self) -> list[Iterator[dict]]:
        return [self._events()]

    def _events(self) -> Iterator[dict]:
        w, acct = self.world, self.accounts[0]
        rng = w.rng(self.tag, "events")
        t0, t1, surge = w.t0, w.t1, w.rhythm.surge
        lo, hi = self.gap_bounds
        model = pick_model(rng)
        release = w.release
        adopt, new_model = (release.adoption(rng), release.model) if release else (math.inf, "")
        first_n, first_prompt, first_tokens = self.first
        n = 0
        last = float("-inf")
        for start in self.sessions:
            t = max(start, last + 1.0)
            ip, asn = self.place(rng)
            for _ in range(geometric_count(rng, self.session_len)):
                if t >= t1:
                    return
                if not self.sticky:
                    ip, asn = self.place(rng)
                if t >= t0:
                    onboarding = n < first_n
                    inp, out = (first_tokens if onboarding else self.tokens)(rng)
                    if rng.random() < 0.1:
                        model = pick_model(rng)
                    m = new_model if t >= adopt and rng.random() < 0.8 else model
                    fp = (first_prompt if onboarding else self.prompt)(rng)
                    yield make_event(acct, t, ip, asn, self.ua, m, inp, out, fp)
                n += 1
                last = t
                t += lognormal(rng, self.gap_median, 0.6, lo, hi) / surge(t)


def home_line(net: Net, rng: random.Random) -> Place:
    """A home line: one or two fixed IPv4 addresses, or a fresh privacy address in the /48 each session."""
    if net.version == 6:
        return lambda r: (net.host(r), net.asn)
    ips = net.hosts(rng, rng.choice((1, 1, 1, 2)))
    asn = net.asn
    return lambda r: (r.choice(ips), asn)


def people(world: World, n: int, *, v6_share: float = 0.0) -> list[Human]:
    """Plain people on residential networks, mostly old accounts, each with their own card."""
    out = []
    for i in range(n):
        tag = f"person/{i}"
        rng = world.rng(tag, "plan")
        net = world.internet.net(rng.choice(RESIDENTIAL_ASNS), v6=rng.random() < v6_share)
        young = rng.random() < 0.1
        created = world.days_ago(log_uniform(rng, 0.5, 14.0) if young else log_uniform(rng, 30.0, 1100.0))
        acct = Account(world.ids.new(), created, payment_fp=payment_fp(rng))
        r = world.rhythm
        sessions = plan_sessions(rng, world, log_uniform(rng, 0.25, 2.0), r.people, r.max_people)
        if sessions:
            out.append(
                Human(
                    world,
                    tag,
                    acct,
                    sessions=sessions,
                    place=home_line(net, rng),
                    ua=human_ua(rng),
                    session_len=rng.uniform(3.0, 18.0),
                    gap_median=log_uniform(rng, 15.0, 70.0),
                    prompt=world.catalog.habit(rng),
                )
            )
    return out


def corp_nat(world: World, n: int) -> list[Human]:
    """Office workers behind a corporate NAT: n accounts on two addresses of one /24, day-time."""
    rng = world.rng("corp_nat", "plan")
    net = world.internet.net(rng.choice(BUSINESS_ASNS))
    ips = net.hosts(rng, 2)
    asn = net.asn
    out = []
    for i in range(n):
        tag = f"corp_nat/{i}"
        prng = world.rng(tag, "plan")
        new_hire = prng.random() < 0.05
        created = world.days_ago(
            log_uniform(prng, 1.0, 20.0) if new_hire else log_uniform(prng, 40.0, 1500.0)
        )
        acct = Account(world.ids.new(), created, group="corp_nat", payment_fp=payment_fp(prng))
        r = world.rhythm
        sessions = plan_sessions(prng, world, log_uniform(prng, 0.3, 2.0), r.workers, r.max_workers)
        x = prng.random()
        ua = prng.choice(BROWSER_UAS if x < 0.7 else SDK_UAS if x < 0.9 else TOOL_UAS)
        ip = prng.choice(ips)
        if sessions:
            # the NAT maps each worker's flows to one of its two addresses, occasionally the other
            def place(r: random.Random, ip: str = ip) -> tuple[str, int]:
                return (ip if r.random() < 0.8 else r.choice(ips)), asn

            out.append(
                Human(
                    world,
                    tag,
                    acct,
                    sessions=sessions,
                    place=place,
                    ua=ua,
                    session_len=prng.uniform(3.0, 15.0),
                    gap_median=log_uniform(prng, 20.0, 80.0),
                    prompt=world.catalog.habit(prng),
                )
            )
    return out


def hackathon(world: World, n: int) -> list[Human]:
    """Brand-new accounts at one university address running the same tutorial prompts."""
    rng = world.rng("hackathon", "plan")
    venue = world.internet.net(rng.choice(UNIVERSITY_ASNS))
    ip, asn = venue.host(rng), venue.asn
    start = world.t0 + rng.uniform(0.0, 0.25) * world.duration
    end = start + rng.uniform(1.5, 4.0) * 3600.0
    tutorial = Topics(rng, n=rng.randint(3, 8), max_flips=2)
    out = []
    for i in range(n):
        tag = f"hackathon/{i}"
        prng = world.rng(tag, "plan")
        join = start + prng.uniform(0.0, 900.0)
        created = round(join - prng.uniform(60.0, 2700.0), 3)
        acct = Account(world.ids.new(), created, group="hackathon", payment_fp=payment_fp(prng))
        sessions = [join]
        while sessions[-1] < min(end, world.t1):
            sessions.append(sessions[-1] + prng.expovariate(1.0 / 300.0) + 60.0)
        x = prng.random()
        ua = prng.choice(SDK_UAS[:3]) if x < 0.7 else prng.choice(SDK_UAS[3:5]) if x < 0.9 else "curl/8.5.0"
        out.append(
            Human(
                world,
                tag,
                acct,
                sessions=sessions[:-1],
                place=lambda r: (ip, asn),
                ua=ua,
                session_len=prng.uniform(4.0, 10.0),
                gap_median=prng.uniform(15.0, 45.0),
                prompt=tutorial.sample,
                tokens=lambda r: (
                    lognormal_int(r, 250.0, 0.6, 20, 3000),
                    lognormal_int(r, 300.0, 0.7, 5, 1500),
                ),
            )
        )
    return out


def proxy_customers(world: World, n: int, pool: ExitPool) -> list[Human]:
    """Honest people of any account age who route through the same proxy service as the hydra."""
    out = []
    for i in range(n):
        tag = f"proxy_customer/{i}"
        rng = world.rng(tag, "plan")
        acct = customer(world, rng, "proxy_customer", (0.5, 1500.0))
        r = world.rhythm
        sessions = plan_sessions(rng, world, log_uniform(rng, 0.4, 2.5), r.people, r.max_people)
        if sessions:
            out.append(
                Human(
                    world,
                    tag,
                    acct,
                    sessions=sessions,
                    place=pool.pick,
                    ua=human_ua(rng),
                    sticky=rng.random() < 0.6,
                    session_len=rng.uniform(3.0, 15.0),
                    gap_median=log_uniform(rng, 15.0, 70.0),
                    prompt=world.catalog.habit(rng),
                )
            )
    return out


class Templates:
    """A back-end's prompt templates: each request is one template with its variables filled in."""

    def __init__(self, rng: random.Random, n: int, max_flips: int) -> None:
        self.items = [
            (random_fp(rng), log_uniform(rng, 150.0, 4000.0), log_uniform(rng, 20.0, 1500.0))
            for _ in range(n)
        ]
        self.max_flips = max_flips

    def draw(self, rng: random.Random) -> tuple[str, int, int]:
        items = self.items
        fp, inp, out = items[int(rng.random() * len(items))]
        return (
            to_hex(flip(fp, up_to(rng, self.max_flips), rng)),
            lognormal_int(rng, inp, 0.25, 1, 100000),
            lognormal_int(rng, out, 0.4, 1, 8192),
        )


class Integration:
    """An app back-end calling the API for its own users: steady rate from a few cloud addresses,
    a handful of prompt templates, an old account.

    With egress, the app runs on a platform whose outbound traffic leaves through
    those shared addresses (a PaaS's static egress); its account's age in days and its
    requests a second are drawn log-uniform from age_days and rate.
    """

    def __init__(
        self,
        world: World,
        tag: str,
        *,
        egress: tuple[list[str], int] | None = None,
        age_days: tuple[float, float] = (60.0, 1200.0),
        rate: tuple[float, float] = (0.01, 1.0),
        group: str = "integration",
    ) -> None:
        rng = world.rng(tag, "plan")
        self.world, self.tag = world, tag
        if egress is None:
            net = world.internet.net(rng.choice(CLOUD_ASNS))
            self.ips, self.asn = net.hosts(rng, rng.randint(1, 4)), net.asn
        else:
            self.ips, self.asn = egress
        self.rate = log_uniform(rng, *rate)
        self.coupling = rng.uniform(0.2, 0.8)
        self.ua, self.model = rng.choice(BACKEND_UAS), pick_model(rng)
        self.templates = Templates(rng, rng.randint(2, 8), 3)
        self.accounts = [customer(world, rng, group, age_days)]

    def streams(self) -> list[Iterator[dict]]:
        return [self._events()]

    def _events(self) -> Iterator[dict]:
        w, acct = self.world, self.accounts[0]
        rng = w.rng(self.tag, "events")
        gap = 1.0 / self.rate
        t = w.t0 + rng.uniform(0.0, gap)
        while t < w.t1:
            fp, inp, out = self.templates.draw(rng)
            yield make_event(acct, t, rng.choice(self.ips), self.asn, self.ua, self.model, inp, out, fp)
            t += gap * rng.uniform(0.5, 1.5) / w.rhythm.machines(t, self.coupling)


class Heavy:
    """An enterprise customer: several requests a second all day from dozens of cloud addresses."""

    def __init__(self, world: World, tag: str) -> None:
        rng = world.rng(tag, "plan")
        self.world, self.tag = world, tag
        asns = rng.sample(CLOUD_ASNS, rng.randint(1, 2))
        nets = [world.internet.net(rng.choice(asns)) for _ in range(rng.randint(3, 6))]
        self.exits = [(ip, n.asn) for n in nets for ip in n.hosts(rng, rng.randint(5, 15))]
        self.rate = rng.uniform(2.0, 8.0)
        self.ua = rng.choice(SDK_UAS)
        self.templates = Templates(rng, rng.randint(20, 60), 6)
        self.accounts = [customer(world, rng, "heavy", (120.0, 1500.0))]

    def streams(self) -> list[Iterator[dict]]:
        return [self._events()]

    def _events(self) -> Iterator[dict]:
        w, acct = self.world, self.accounts[0]
        rng = w.rng(self.tag, "events")
        t = w.t0 + rng.expovariate(self.rate)
        while t < w.t1:
            ip, asn = rng.choice(self.exits)
            if rng.random() < 0.7:
                fp, inp, out = self.templates.draw(rng)
            else:
                fp, (inp, out) = w.catalog.draw(rng), human_tokens(rng)
            yield make_event(acct, t, ip, asn, self.ua, pick_model(rng), inp, out, fp)
            t += rng.expovariate(self.rate * w.rhythm.machines(t, 0.3))


class Batch:
    """A cron job: every 15-60 min, hundreds of requests in a few minutes from one cloud address."""

    def __init__(self, world: World, tag: str) -> None:
        rng = world.rng(tag, "plan")
        self.world, self.tag = world, tag
        net = world.internet.net(rng.choice(CLOUD_ASNS))
        self.ip, self.asn = net.host(rng), net.asn
        self.period = rng.uniform(15.0, 60.0) * 60.0
        self.size = rng.randint(150, 600)
        self.rate = rng.uniform(1.0, 3.0)
        run_s = self.size / self.rate
        # the first run falls inside the window, even in a short scenario
        self.first = world.t0 + rng.uniform(-0.5 * run_s, min(self.period, 0.5 * world.duration))
        self.ua, self.model = rng.choice(BACKEND_UAS), rng.choice(("medium", "small", "large"))
        self.template = Templates(rng, rng.randint(1, 3), 8)
        self.accounts = [customer(world, rng, "batch", (60.0, 1200.0))]

    def streams(self) -> list[Iterator[dict]]:
        return [self._events()]

    def _events(self) -> Iterator[dict]:
        w, acct = self.world, self.accounts[0]
        rng = w.rng(self.tag, "events")
        run = self.first
        while run < w.t1:
            t = run
            for _ in range(int(self.size * rng.uniform(0.8, 1.2))):
                if t >= w.t1:
                    return
                if t >= w.t0:
                    fp, inp, out = self.template.draw(rng)
                    yield make_event(acct, t, self.ip, self.asn, self.ua, self.model, inp, out, fp)
                t += rng.uniform(0.5, 1.5) / self.rate
            run = max(run + self.period * rng.uniform(0.97, 1.03), t + 1.0)
