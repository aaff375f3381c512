"""Per-account online statistics and the account-level signals built on them.

One small record per account (``__slots__``, a few floats), updated in event
time: request rates over 2 s, 10 s, 60 s and 30 min half-lives, a lagged peak
of the account's own 60 s rate, output/input tokens, how often its requests
change network, and how regular its timing is. Idle accounts expire, and the
table is capped, so memory is bounded under any number of keys.
"""

from __future__ import annotations

import math

from detectors.config import AccountConfig
from detectors.rates import LN2

EPISODE_GAP_S = 30.0
H_SHORT, H_10, H_MID, H_LONG, H_TOKENS, H_PEAK = 2.0, 10.0, 60.0, 1800.0, 900.0, 6 * 3600.0
_K_SHORT, _K_10, _K_MID, _K_LONG, _K_TOK, _K_PEAK = (LN2 / h for h in (H_SHORT, H_10, H_MID, H_LONG, H_TOKENS, H_PEAK))


class AccountState:
    """Compact online state of one account (about 20 numbers).

    >>> s = AccountState(first_ts=0.0, created=-86400.0 * 400)
    >>> for i in range(40):                     # 10 requests/s for 4 s
    ...     s.update(i / 10, net=1, out_tok=100, in_tok=50, learn=True)
    >>> round(s.rate_short(), 1) > 5, round(s.harvest_ratio(), 1)
    (True, 2.0)
    """

    __slots__ = (
        "first_ts", "last_ts", "created", "n", "c_short", "c_10", "c_mid", "c_long", "peak_mid",
        "out_tok", "in_tok", "last_net", "switches", "nets", "ia_mean", "ia_var", "flagged_until",
        "scored_ts", "ep_start", "ep_n", "mid_lag", "mid_lag_ts",
    )

    def __init__(self, first_ts: float, created: float | None):
        self.first_ts = first_ts
        self.last_ts = first_ts
        self.created = math.nan if created is None else created
        self.n = 0
        self.c_short = self.c_10 = self.c_mid = self.c_long = 0.0
        self.peak_mid = 0.0
        self.out_tok = self.in_tok = 0.0
        self.last_net = 0
        self.switches = 0
        self.nets = 0  # distinct networks seen, counted up to a few (a tiny bitmap of net hashes)
        self.ia_mean = 0.0
        self.ia_var = 0.0
        self.flagged_until = 0.0
        self.scored_ts = 0.0
        # The current episode: requests since the last silence of EPISODE_GAP_S, and when it began.
        self.ep_start = first_ts
        self.ep_n = 0
        # The 60 s rate as it was at mid_lag_ts: the peak learns only rates at least a minute old.
        self.mid_lag = 0.0
        self.mid_lag_ts = first_ts

    def update(self, ts: float, net: int, out_tok: int, in_tok: int, learn: bool) -> None:
        """Count one request; ``learn`` False freezes the baseline while the account is enforced."""
        dt = ts - self.last_ts
        if dt > EPISODE_GAP_S or self.n == 0:
            self.ep_start = ts
            self.ep_n = 0
        self.ep_n += 1
        if dt > 0.0:
            self.c_short = self.c_short * math.exp(-dt * _K_SHORT) + 1.0
            self.c_10 = self.c_10 * math.exp(-dt * _K_10) + 1.0
            self.c_mid = self.c_mid * math.exp(-dt * _K_MID) + 1.0
            f_tok = math.exp(-dt * _K_TOK)
            self.out_tok = self.out_tok * f_tok + out_tok
            self.in_tok = self.in_tok * f_tok + in_tok
            if learn:
                self.c_long = self.c_long * math.exp(-dt * _K_LONG) + 1.0
                self.peak_mid *= math.exp(-dt * _K_PEAK)
                # The peak takes the 60 s rate of a minute ago: a burst cannot raise its own baseline in time.
                if ts - self.mid_lag_ts >= H_MID:
                    if self.mid_lag > self.peak_mid:
                        self.peak_mid = self.mid_lag
                    self.mid_lag = self.c_mid * _K_MID
                    self.mid_lag_ts = ts
            lg = math.log(dt + 0.05)
            d = lg - self.ia_mean
            self.ia_mean += 0.2 * d
            self.ia_var = 0.8 * (self.ia_var + 0.2 * d * d)
            self.last_ts = ts
        else:  # same instant or late: count it, decay nothing
            self.c_short += 1.0
            self.c_10 += 1.0
            self.c_mid += 1.0
            self.out_tok += out_tok
            self.in_tok += in_tok
            if learn:
                self.c_long += 1.0
        if self.n and net != self.last_net:
            self.switches += 1
        self.nets |= 1 << (net & 63)
        self.last_net = net
        self.n += 1

    def rate_short(self) -> float:
        return self.c_short * _K_SHORT

    def episode_rate(self) -> float:
        """Requests per second since the account last woke up: exact from the first second of a burst."""
        return self.ep_n / max(self.last_ts - self.ep_start, 0.5)

    def rate_10(self) -> float:
        return self.c_10 * _K_10

    def rate_mid(self) -> float:
        return self.c_mid * _K_MID

    def long_rate(self, observed_s: float) -> float:
        """The account's long-run rate, bias-corrected for how long it has been watched."""
        r = self.c_long * _K_LONG
        if observed_s > 0.0:
            seen = 1.0 - math.exp(-observed_s * _K_LONG)
            r = r / seen if seen > 1e-9 else self.rate_mid()
        return r

    def baseline(self, observed_s: float) -> float:
        """The account's own normal rate: its long-run rate or its earlier peak, whichever is higher."""
        return max(self.long_rate(observed_s), self.peak_mid)

    def harvest_ratio(self) -> float:
        """Output over input tokens: distillation harvests long answers to short prompts."""
        return self.out_tok / (self.in_tok + 50.0)

    def switch_share(self) -> float:
        return self.switches / (self.n - 1) if self.n > 1 else 0.0

    def distinct_networks(self) -> int:
        return self.nets.bit_count()

    def timing_cv(self) -> float:
        """Spread of log inter-arrival times: scripts are regular, people are not."""
        return math.sqrt(max(self.ia_var, 0.0))

    def age(self, ts: float) -> float:
        return ts - self.created if self.created == self.created else math.inf


class AccountTracker:
    """All account states, with idle expiry and a hard cap (evicting the stalest).

    >>> from detectors.config import AccountConfig
    >>> t = AccountTracker(AccountConfig(max_accounts=1000, idle_expiry_s=60))
    >>> t.get_or_create("a", ts=0.0, created=None).n
    0
    >>> t.expire(now=100.0), len(t)
    (1, 0)
    """

    def __init__(self, cfg: AccountConfig):
        self.cfg = cfg
        self.states: dict[str, AccountState] = {}
        self.evicted = 0
        self.expired = 0
        self.track_dirty = False
        self.dirty: set[str] = set()
        self.removed: list[str] = []

    def __len__(self) -> int:
        return len(self.states)

    def get_or_create(self, account: str, ts: float, created: float | None) -> AccountState:
        s = self.states.get(account)
        if s is None:
            if len(self.states) >= self.cfg.max_accounts:
                self._evict()
            s = self.states[account] = AccountState(ts, created)
        elif created is not None and s.created != s.created:
            s.created = created
        if self.track_dirty:
            self.dirty.add(account)
        return s

    def expire(self, now: float) -> int:
        """Drop accounts idle longer than the configured expiry; returns how many."""
        horizon = now - self.cfg.idle_expiry_s
        stale = [k for k, s in self.states.items() if s.last_ts < horizon and s.flagged_until < now]
        for k in stale:
            del self.states[k]
        if self.track_dirty:
            self.removed.extend(stale)
        self.expired += len(stale)
        return len(stale)

    def _evict(self) -> None:
        # Dicts keep insertion order: the first tenth holds the accounts created earliest;
        # of those, drop the stalest half. Cheap, and never touches active ones first.
        n = max(1, len(self.states) // 10)
        head = []
        for i, (k, s) in enumerate(self.states.items()):
            if i >= n:
                break
            head.append((s.last_ts, k))
        head.sort()
        for _, k in head[: max(1, n // 2)]:
            del self.states[k]
        self.evicted += max(1, n // 2)
