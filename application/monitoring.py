"""Monitoring (R3.6, R2.8): misuse read from the event log, within two seconds, acted on.

The monitor is no second pipeline: it reads the chained log the audit trail reads
(access records, staff changes, the recovery log), decoded by the audit trail's own
reader (`AuditTrail.entry`), so actor, session, address and purpose come from the
metadata sealed under the system key exactly as `audit replay` shows them.

This module is the pure part: the rules as data (`Rule`, `DEFAULT_RULES`, overridden
by the `monitor_rules` setting), and `RuleEngine`, which turns a stream of
`Observation`s (one per log row) into `Finding`s. It keeps only sliding windows in
memory; `infrastructure/monitor.py` follows the log, rebuilds those windows after a
restart by feeding the rows before its tracked position with `raising=False`, saves
each finding as an `Alert` (domain/alerts.py, whose id is derived from the rule and
the finding's key, so a finding stored twice collides) together with its responses
and its tracked position, in one transaction.

Each rule names the attack it catches (docs/threat-model.md, docs/monitoring.md).
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from application.audit_trail import AuditEntry
from application.ports import InTransactionHook
from domain.alerts import RESPONSES, SEVERITIES

MONITOR_ACTOR = "monitor"  # the actor of everything the monitor writes (R3.1)
UNAUTHENTICATED = "unauthenticated"  # application/identity.py's actor of failed logins

# Kinds of access record that read customer data (view, search, export ...).
DATA_KINDS = frozenset({"view", "search", "list", "reveal", "export", "history", "interactions", "as_of"})
LOGIN_FAILURES = frozenset({"login_failed", "mfa_failed"})
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class RuleError(ValueError):
    """A `monitor_rules` or business-hours setting that cannot work (start-up refuses it)."""


@dataclass(frozen=True)
class Rule:
    """One rule: what it counts, how many (`threshold`) within `window_seconds`,
    how bad (`severity`) and what is done (`responses`, see domain.alerts.RESPONSES)."""

    id: str
    severity: str
    threshold: int
    window_seconds: float
    responses: tuple[str, ...]
    catches: str  # the attack, in a few words (shown by `strongroom monitor rules`)
    enabled: bool = True

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "severity": self.severity, "threshold": self.threshold,
                "window_seconds": self.window_seconds, "responses": list(self.responses),
                "enabled": self.enabled, "catches": self.catches}


_ALERT = ("alert", "webhook")
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("login_failures_account", "high", 5, 60, _ALERT, "password guessing against one account"),
    Rule("login_failures_address", "high", 10, 60, _ALERT, "password spray from one address"),
    Rule("searches_per_actor", "medium", 30, 60, (*_ALERT, "step_up"), "bulk harvesting through search"),
    Rule("searches_empty", "critical", 10, 60, (*_ALERT, "end_sessions"),
         "search oracle: guessing a value by searches that find nothing"),
    Rule("reveals_per_actor", "high", 20, 300, (*_ALERT, "step_up"), "mass reveal of masked fields"),
    Rule("exports_per_actor", "high", 5, 300, (*_ALERT, "step_up"), "bulk export"),
    Rule("distinct_customers", "high", 50, 300, (*_ALERT, "end_sessions"), "browsing many customers quickly"),
    Rule("off_hours", "medium", 1, 86_400, ("alert",), "access outside business hours"),
    Rule("out_of_scope", "high", 5, 300, _ALERT, "probing customers beyond one's portfolios"),
    Rule("new_address", "medium", 1, 0, ("alert",), "a session from a client address never seen for the user"),
    Rule("privilege_change", "high", 1, 0, _ALERT, "privilege grab: roles granted or revoked"),
    Rule("break_glass_opened", "critical", 1, 0, _ALERT, "emergency access opened (R2.8)"),
    Rule("break_glass_access", "medium", 1, 0, ("alert",), "each access made under break-glass"),
    Rule("chain_verification_failed", "critical", 1, 0, _ALERT, "tampering with the audit trail"),
    Rule("backup_overdue", "high", 1, 26 * 3600, _ALERT, "no recent backup: an outage becomes a loss"),
    Rule("drill_failed", "high", 1, 0, _ALERT, "backups that do not restore"),
    Rule("concurrent_addresses", "high", 2, 900, (*_ALERT, "step_up"),
         "a stolen session: one user active from two addresses at once"),
)
RULE_IDS = tuple(rule.id for rule in DEFAULT_RULES)
_OVERRIDABLE = frozenset({"severity", "threshold", "window_seconds", "responses", "enabled"})


@dataclass(frozen=True)
class BusinessHours:
    """When staff work: access outside these hours (in `zone`) raises `off_hours`."""

    start: time = time(7, 0)
    end: time = time(19, 0)
    days: tuple[str, ...] = WEEKDAYS[:5]
    zone: str = "UTC"

    def tz(self) -> tzinfo:
        return ZoneInfo(self.zone)

    def contains(self, when: datetime) -> bool:
        local = when.astimezone(self.tz())
        return WEEKDAYS[local.weekday()] in self.days and self.start <= local.time() < self.end

    def local_date(self, when: datetime) -> str:
        return when.astimezone(self.tz()).date().isoformat()

    def as_json(self) -> dict[str, Any]:
        return {"start": self.start.strftime("%H:%M"), "end": self.end.strftime("%H:%M"),
                "days": list(self.days), "time_zone": self.zone}

    @classmethod
    def parse(cls, hours: str, days: str, zone: str) -> BusinessHours:
        """From settings: `"07:00-19:00"`, `"mon,tue,wed,thu,fri"`, an IANA zone name."""
        try:
            start_text, end_text = hours.split("-")
            start, end = time.fromisoformat(start_text.strip()), time.fromisoformat(end_text.strip())
        except ValueError:
            raise RuleError("monitor_business_hours must look like 07:00-19:00") from None
        if start >= end:
            raise RuleError("monitor_business_hours must start before it ends")
        chosen = tuple(d.strip().lower() for d in days.split(",") if d.strip())
        if not chosen or any(d not in WEEKDAYS for d in chosen):
            raise RuleError(f"monitor_business_days must be a comma-separated list of {', '.join(WEEKDAYS)}")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise RuleError("monitor_time_zone must be an IANA time zone, e.g. Europe/Paris") from None
        return cls(start, end, chosen, zone)


def rules_from(overrides: str | Mapping[str, Any] | None) -> tuple[Rule, ...]:
    """The default rules with the `monitor_rules` setting applied: a JSON object of
    rule id -> {threshold, window_seconds, severity, responses, enabled}. An unknown
    rule or key is refused: a misspelt rule must not leave a default silently in force."""
    if overrides is None or overrides == "":
        return DEFAULT_RULES
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides)
        except ValueError:
            raise RuleError("monitor_rules must be a JSON object") from None
    if not isinstance(overrides, Mapping):
        raise RuleError("monitor_rules must be a JSON object of rule id -> settings")
    unknown = sorted(set(overrides) - set(RULE_IDS))
    if unknown:
        raise RuleError(f"monitor_rules names unknown rules: {', '.join(unknown)}")
    rules = []
    for rule in DEFAULT_RULES:
        change = overrides.get(rule.id)
        if change is None:
            rules.append(rule)
            continue
        if not isinstance(change, Mapping) or set(change) - _OVERRIDABLE:
            raise RuleError(f"monitor_rules.{rule.id} may set only {', '.join(sorted(_OVERRIDABLE))}")
        rules.append(_changed(rule, change))
    return tuple(rules)


def alerts_only() -> str:
    """A `monitor_rules` value under which every rule only records its alert: for load
    generators and fuzzers whose synthetic traffic looks like misuse by design (the
    benchmarks, a schemathesis run), which must not have their sessions ended."""
    return json.dumps({rule.id: {"responses": ["alert"]} for rule in DEFAULT_RULES}, sort_keys=True)


def _changed(rule: Rule, change: Mapping[str, Any]) -> Rule:
    where = f"monitor_rules.{rule.id}"
    threshold = change.get("threshold", rule.threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise RuleError(f"{where}.threshold must be a whole number of at least 1")
    window = change.get("window_seconds", rule.window_seconds)
    if isinstance(window, bool) or not isinstance(window, (int, float)) or window < 0:
        raise RuleError(f"{where}.window_seconds must be a number of seconds, 0 or more")
    severity = change.get("severity", rule.severity)
    if severity not in SEVERITIES:
        raise RuleError(f"{where}.severity must be one of {', '.join(SEVERITIES)}")
    responses = change.get("responses", list(rule.responses))
    if not isinstance(responses, list) or any(r not in RESPONSES for r in responses):
        raise RuleError(f"{where}.responses must be a list drawn from {', '.join(RESPONSES)}")
    if "alert" not in responses:
        responses = ["alert", *responses]  # an alert is always recorded: the others hang on it
    enabled = change.get("enabled", rule.enabled)
    if not isinstance(enabled, bool):
        raise RuleError(f"{where}.enabled must be true or false")
    return replace(rule, threshold=threshold, window_seconds=float(window), severity=severity,
                   responses=tuple(dict.fromkeys(responses)), enabled=enabled)


@dataclass(frozen=True)
class Observation:
    """One log row as the rules see it (built from an `AuditEntry`)."""

    position: int
    at: datetime
    kind: str  # an access kind ("login_failed", "search" ...) or a change ("StaffMember.RolesChanged")
    actor_id: str | None = None
    session_id: str | None = None
    client_addr: str | None = None
    outcome: str | None = None
    customer_ids: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    access: bool = True  # an access record (else a change to an aggregate)


@dataclass(frozen=True)
class Finding:
    """What a rule found; stored as an `Alert` with id `alert_id(rule.id, key)`."""

    rule: Rule
    key: str
    summary: str
    actor_id: str | None = None
    client_addr: str | None = None
    customer_ids: tuple[str, ...] = ()
    positions: tuple[int, ...] = ()
    details: Mapping[str, str] = field(default_factory=dict)
    target_staff_id: str | None = None  # whose sessions / account the responses act on


class AddressBook(Protocol):
    """The client addresses each staff member has signed in from (kept as keyed
    digests by `infrastructure/monitor.py`, never in clear)."""

    def known(self, staff_id: str, client_addr: str) -> bool:
        """Whether the member signed in from this address before."""

    def any_known(self, staff_id: str) -> bool:
        """Whether the member has signed in from any address before (a first login is
        no "new address": there is nothing to compare it with)."""


class MonitorResponses(Protocol):
    """The responses a rule may ask for, each an in-transaction hook so it commits with
    the alert that records it (or not at all). `infrastructure/identity_store.py`."""

    def lapsing_step_ups(self, staff_id: str) -> InTransactionHook:
        """Every live session of the member needs a fresh TOTP before its next sensitive call."""

    def ending_sessions(self, staff_id: str, at: datetime, reason: str) -> InTransactionHook:
        """End every live session of the member."""

    def locking(self, staff_id: str, at: datetime) -> InTransactionHook:
        """Lock the account until a security officer unlocks it (application/lockout.py)."""


def is_staff(actor_id: str | None) -> bool:
    """A staff member's id (a UUID), not the operator, the monitor or nobody."""
    return bool(actor_id) and actor_id not in (UNAUTHENTICATED, MONITOR_ACTOR) and ":" not in str(actor_id)


class _Window:
    """Events of one group within a rule's window: (time, position, item), with a
    running count per item so a distinct count costs nothing per row (the monitor
    evaluates every access record)."""

    def __init__(self) -> None:
        self.items: deque[tuple[datetime, int, str]] = deque()
        self._per_item: Counter[str] = Counter()

    def add(self, at: datetime, position: int, item: str, window: float) -> None:
        self.items.append((at, position, item))
        self._per_item[item] += 1
        edge = at - timedelta(seconds=window)
        while self.items and self.items[0][0] <= edge:
            gone = self.items.popleft()[2]
            self._per_item[gone] -= 1
            if not self._per_item[gone]:
                del self._per_item[gone]

    def count(self) -> int:
        return len(self.items)

    def distinct_count(self) -> int:
        return len(self._per_item)

    def distinct(self) -> set[str]:
        return set(self._per_item)

    def positions(self) -> tuple[int, ...]:
        return tuple(p for _, p, _ in self.items)

    def clear(self) -> None:
        self.items.clear()
        self._per_item.clear()


class RuleEngine:
    """Rules over observations, in log order. Deterministic: the same rows give the
    same findings with the same keys, which is what lets a restarted monitor (or two
    racing ones) store each alert once. A burst that crosses a threshold raises one
    finding and starts its count again, so a burst of 3,000 is a handful of alerts,
    not 3,000."""

    def __init__(self, rules: Iterable[Rule] = DEFAULT_RULES, hours: BusinessHours | None = None,
                 addresses: AddressBook | None = None) -> None:
        self.rules = {rule.id: rule for rule in rules if rule.enabled}
        self.hours = hours or BusinessHours()
        self.addresses = addresses
        self._windows: dict[tuple[str, str], _Window] = {}
        self._off_hours_seen: set[str] = set()
        self._learned: dict[str, set[str]] = {}
        self._sessions: dict[str, dict[str, tuple[datetime, str, int]]] = {}
        self.new_addresses: list[tuple[str, str]] = []  # (staff id, address) to remember
        self._local_cache: tuple[int, bool, str] | None = None
        self._whole_seconds = self.hours.start.microsecond == 0 and self.hours.end.microsecond == 0
        self._handlers: Sequence[Callable[[Observation], Iterable[Finding]]] = (
            self._logins, self._data_reads, self._refusals, self._addresses, self._changes,
        )

    # -- feeding -----------------------------------------------------------------------------

    def observe(self, obs: Observation, *, raising: bool = True) -> list[Finding]:
        """The findings this row completes; `raising=False` only rebuilds the windows
        (the rows before the tracked position, after a restart)."""
        found: list[Finding] = []
        for handler in self._handlers:
            found.extend(handler(obs))
        return found if raising else []

    def overdue(self, now: datetime, last_backup: tuple[datetime, int] | None,
                log_started: datetime | None) -> list[Finding]:
        """`backup_overdue`, by the clock: no complete backup for longer than the rule's
        window (counted from the first event when there has never been one). The key is
        the last backup's position, so one missed period raises one alert."""
        rule = self.rules.get("backup_overdue")
        if rule is None:
            return []
        since, key = (last_backup[0], f"after:{last_backup[1]}") if last_backup else (log_started, "never")
        if since is None or (now - since).total_seconds() <= rule.window_seconds:
            return []
        hours = int((now - since).total_seconds() // 3600)
        return [Finding(rule, key, f"no complete backup for {hours} h (limit {rule.window_seconds / 3600:g} h)",
                        details={"since": since.isoformat()})]

    def unreadable(self, position: int, at: datetime) -> list[Finding]:
        """A row of the log failed authentication as the monitor read it: someone
        changed the stored bytes (R3.3). Raised at once, like a failed verification."""
        rule = self.rules.get("chain_verification_failed")
        if rule is None:
            return []
        return [Finding(rule, f"row:{position}", "a log row failed authentication when the monitor read it",
                        positions=(position,), details={"position": str(position)})]

    # -- the rules ---------------------------------------------------------------------------

    def _burst(self, rule_id: str, group: str, obs: Observation, item: str, *, distinct: bool = False,
               summary: str, actor_id: str | None = None, target: str | None = None,
               details: Mapping[str, str] | None = None) -> list[Finding]:
        rule = self.rules.get(rule_id)
        if rule is None:
            return []
        window = self._windows.get((rule_id, group))
        if window is None:
            window = self._windows[(rule_id, group)] = _Window()
        window.add(obs.at, obs.position, item, rule.window_seconds)
        reached = window.distinct_count() if distinct else window.count()
        if reached < rule.threshold:
            return []
        positions = window.positions()
        customers = tuple(sorted(window.distinct())) if distinct else ()
        window.clear()
        return [Finding(
            rule, f"{group}@{obs.position}", summary.format(n=reached, w=f"{rule.window_seconds:g}"),
            actor_id=actor_id, client_addr=obs.client_addr, customer_ids=customers[:100],
            positions=positions, details={"count": str(reached), **(details or {})},
            target_staff_id=target,
        )]

    def _single(self, rule_id: str, obs: Observation, summary: str, *, key: str | None = None,
                details: Mapping[str, str] | None = None, target: str | None = None) -> list[Finding]:
        rule = self.rules.get(rule_id)
        if rule is None:
            return []
        actor = obs.actor_id if is_staff(obs.actor_id) else None
        return [Finding(rule, key or str(obs.position), summary, actor_id=actor or obs.actor_id,
                        client_addr=obs.client_addr, customer_ids=obs.customer_ids[:100],
                        positions=(obs.position,), details=dict(details or {}),
                        target_staff_id=target or actor)]

    def _logins(self, obs: Observation) -> list[Finding]:
        if not obs.access or obs.kind not in LOGIN_FAILURES:
            return []
        found = []
        account = str(obs.details.get("staff_id") or "")
        if account:
            found += self._burst("login_failures_account", f"account:{account}", obs, str(obs.position),
                                 summary="{n} failed logins for one account within {w} s",
                                 actor_id=account, target=account, details={"staff_id": account})
        if obs.client_addr:
            found += self._burst("login_failures_address", f"address:{obs.client_addr}", obs, account or "?",
                                 summary="{n} failed logins from one address within {w} s")
        return found

    def _data_reads(self, obs: Observation) -> list[Finding]:
        if not obs.access or obs.kind not in DATA_KINDS or not is_staff(obs.actor_id):
            return []
        actor = str(obs.actor_id)
        found: list[Finding] = []
        if obs.kind == "search":
            found += self._burst("searches_per_actor", f"actor:{actor}", obs, str(obs.position),
                                 summary="{n} searches by one actor within {w} s", actor_id=actor, target=actor)
            if str(obs.details.get("count", "")) == "0":
                # An exact-match search that found nothing: the shape of an oracle
                # attack (guessing a card number or an email one search at a time).
                found += self._burst("searches_empty", f"actor:{actor}", obs, str(obs.position),
                                     summary="{n} searches that found nothing, by one actor within {w} s",
                                     actor_id=actor, target=actor)
        if obs.kind == "reveal":
            found += self._burst("reveals_per_actor", f"actor:{actor}", obs, str(obs.position),
                                 summary="{n} reveals by one actor within {w} s", actor_id=actor, target=actor)
        if obs.kind == "export":
            found += self._burst("exports_per_actor", f"actor:{actor}", obs, str(obs.position),
                                 summary="{n} exports by one actor within {w} s", actor_id=actor, target=actor)
        for customer in obs.customer_ids:
            found += self._burst("distinct_customers", f"actor:{actor}", obs, customer, distinct=True,
                                 summary="{n} distinct customers read by one actor within {w} s", actor_id=actor, target=actor)
        if str(obs.details.get("break_glass", "")) == "true":
            found += self._single("break_glass_access", obs, f"{obs.kind} under break-glass",
                                  details={"kind": obs.kind})
        found += self._off_hours(obs)
        return found

    def _local(self, at: datetime) -> tuple[bool, str]:
        """(within business hours, local date) of `at`, worked out once per second:
        the zone conversion was a tenth of the rules' cost per row. Exact, because
        the hours' edges are whole seconds (checked) and so are zone transitions."""
        second = int(at.timestamp())
        if self._local_cache is None or self._local_cache[0] != second or not self._whole_seconds:
            self._local_cache = (second, self.hours.contains(at), self.hours.local_date(at))
        return self._local_cache[1], self._local_cache[2]

    def _off_hours(self, obs: Observation) -> list[Finding]:
        if "off_hours" not in self.rules:
            return []
        inside, day = self._local(obs.at)
        if inside:
            return []
        seen = f"{obs.actor_id}|{day}"
        if seen in self._off_hours_seen:
            return []  # one alert per person per day, not one per read
        self._off_hours_seen.add(seen)
        return self._single("off_hours", obs, f"{obs.kind} outside business hours",
                            key=f"actor:{obs.actor_id}@{day}", details={"kind": obs.kind, "local_date": day})

    def _refusals(self, obs: Observation) -> list[Finding]:
        if not obs.access or obs.kind != "denied" or not is_staff(obs.actor_id):
            return []
        actor = str(obs.actor_id)
        return self._burst("out_of_scope", f"actor:{actor}", obs, str(obs.position),
                           summary="{n} refused or out-of-scope attempts by one actor within {w} s",
                           actor_id=actor, target=actor)

    def _addresses(self, obs: Observation) -> list[Finding]:
        if not obs.access or not is_staff(obs.actor_id) or not obs.client_addr:
            return []
        actor, addr = str(obs.actor_id), obs.client_addr
        found: list[Finding] = []
        if obs.kind == "login" and obs.outcome == "succeeded" and obs.session_id:
            found += self._new_address(obs, actor, addr)
        if obs.session_id and obs.kind not in ("logout", "session_ended"):
            found += self._concurrent(obs, actor, addr, obs.session_id)
        if obs.kind in ("logout", "session_ended") and obs.session_id:
            self._sessions.get(actor, {}).pop(obs.session_id, None)
        ended = str(obs.details.get("ended_session_id") or "")
        owner = str(obs.details.get("owner_staff_id") or "")
        if ended and owner:
            self._sessions.get(owner, {}).pop(ended, None)
        return found

    def _new_address(self, obs: Observation, actor: str, addr: str) -> list[Finding]:
        learned = self._learned.setdefault(actor, set())
        if addr in learned or (self.addresses is not None and self.addresses.known(actor, addr)):
            return []
        had_any = bool(learned) or (self.addresses is not None and self.addresses.any_known(actor))
        learned.add(addr)
        self.new_addresses.append((actor, addr))
        if not had_any:
            return []  # the first address of an account is its baseline
        return self._single("new_address", obs, "sign-in from a client address not seen for this user before")

    def _concurrent(self, obs: Observation, actor: str, addr: str, session: str) -> list[Finding]:
        rule = self.rules.get("concurrent_addresses")
        if rule is None:
            return []
        live = self._sessions.setdefault(actor, {})
        edge = obs.at - timedelta(seconds=rule.window_seconds)
        for sid in [s for s, (seen, _, _) in live.items() if seen <= edge]:
            del live[sid]
        live[session] = (obs.at, addr, obs.position)
        others = {sid: (a, p) for sid, (_, a, p) in live.items() if sid != session and a != addr}
        if not others or len({a for a, _ in others.values()} | {addr}) < rule.threshold:
            return []
        pair = sorted([session, *others])
        key = f"actor:{actor}|" + ",".join(pair)
        return [Finding(rule, key, "one user active from two client addresses at once", actor_id=actor,
                        client_addr=addr, positions=tuple(sorted({p for _, p in others.values()} | {obs.position})),
                        details={"sessions": str(len(pair))}, target_staff_id=actor)]

    def _changes(self, obs: Observation) -> list[Finding]:
        if obs.access:
            if obs.kind == "break_glass" and obs.outcome == "allowed":
                return self._single("break_glass_opened", obs, "break-glass opened",
                                    details={k: str(obs.details[k]) for k in ("portfolio", "minutes", "grant_id")
                                             if k in obs.details})
            if (obs.kind == "audit_read" and obs.details.get("operation") == "audit:verify"
                    and str(obs.details.get("intact")) == "false"):
                return self._single("chain_verification_failed", obs, "the audit chain failed verification",
                                    details={"problems": str(obs.details.get("problems", "?"))})
            return []
        if obs.kind == "StaffMember.RolesChanged":
            grant = [str(r) for r in obs.details.get("grant", [])]
            revoke = [str(r) for r in obs.details.get("revoke", [])]
            subject = str(obs.details.get("staff_id", ""))
            summary = "roles changed:" + (f" granted {', '.join(grant)}" if grant else "") + (
                f" revoked {', '.join(revoke)}" if revoke else "")
            changed = {"granted": ",".join(grant), "revoked": ",".join(revoke)}
            return self._single("privilege_change", obs, summary[:300],
                                details={"staff_id": subject, **{k: v for k, v in changed.items() if v}})
        if obs.kind == "RecoveryLog.Drilled" and obs.details.get("outcome") == "failed":
            return self._single("drill_failed", obs, "a restore drill failed",
                                details={"target": str(obs.details.get("target", ""))[:200]})
        return []


def access_observation(position: int, at: datetime, meta: Mapping[str, Any],
                       attributes: Mapping[str, Any]) -> Observation:
    """An access record as the rules see it, straight from its opened parts (the
    acting context `meta` and the record's attributes): what `observation_of` gives
    for its `AuditEntry`, without building the entry (every access record comes
    through here, so the monitor's catch-up is mostly this)."""
    details = attributes.get("details")
    return Observation(
        position=position, at=at, kind=str(attributes.get("kind", "AccessRecord")),
        actor_id=meta.get("actor_id"), session_id=meta.get("session_id"),
        client_addr=meta.get("client_addr"), outcome=attributes.get("outcome"),
        customer_ids=tuple(str(c) for c in attributes.get("customer_ids", ())),
        details=dict(details) if details else {}, access=True,
    )


def observation_of(entry: AuditEntry) -> Observation:
    """An audit-trail entry as the rules see it. A change carries its values (role
    names, a drill's outcome: non-personal by the catalogue) only when the reader was
    asked for them; the subject's id rides along as `staff_id`."""
    if entry.kind == "access":
        return Observation(
            position=entry.position, at=entry.recorded_at, kind=entry.event, actor_id=entry.actor_id,
            session_id=entry.session_id, client_addr=entry.client_addr, outcome=entry.outcome,
            customer_ids=tuple(entry.customer_ids), details=dict(entry.details), access=True,
        )
    values = entry.values if isinstance(entry.values, dict) else {}
    return Observation(
        position=entry.position, at=entry.recorded_at, kind=entry.event, actor_id=entry.actor_id,
        session_id=entry.session_id, client_addr=entry.client_addr,
        details={**values, "staff_id": entry.stream_id}, access=False,
    )
