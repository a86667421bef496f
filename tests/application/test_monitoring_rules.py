"""The monitor's rules as pure logic (R3.6): observations in, findings out, no store.

Each test feeds the rows an attack leaves in the log and checks what the engine finds
(and, as importantly, what it does not: one alert per burst, not one per row).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from application.monitoring import (
    DEFAULT_RULES,
    RULE_IDS,
    BusinessHours,
    Observation,
    RuleEngine,
    RuleError,
    rules_from,
)

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # a Wednesday, 10:00 UTC
AGENT = "0b5c3c4e-1111-4c1e-9a0e-000000000001"
ALWAYS = BusinessHours(time(0, 0), time(23, 59, 59), ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))


class Addresses:
    def __init__(self, known: dict[str, set[str]] | None = None) -> None:
        self.book = known or {}

    def known(self, staff_id: str, client_addr: str) -> bool:
        return client_addr in self.book.get(staff_id, set())

    def any_known(self, staff_id: str) -> bool:
        return bool(self.book.get(staff_id))


def engine(overrides=None, hours=ALWAYS, addresses=None):
    return RuleEngine(rules_from(overrides), hours, addresses or Addresses())


def rows(kind, n, *, start=1, every=1.0, **fields):
    return [Observation(position=start + i, at=T0 + timedelta(seconds=i * every), kind=kind, **fields)
            for i in range(n)]


def feed(eng, observations, *, raising=True):
    found = []
    for obs in observations:
        found.extend(eng.observe(obs, raising=raising))
    return found


def test_the_search_oracle_is_one_finding_per_ten_empty_searches_with_its_positions():
    found = feed(engine(), rows("search", 25, actor_id=AGENT, session_id="s1", client_addr="192.0.2.1",
                                details={"count": "0", "by": "pan"}))
    oracle = [f for f in found if f.rule.id == "searches_empty"]
    assert [f.key for f in oracle] == [f"actor:{AGENT}@10", f"actor:{AGENT}@20"]
    assert oracle[0].positions == tuple(range(1, 11)) and oracle[0].target_staff_id == AGENT
    assert "end_sessions" in oracle[0].rule.responses


def test_searches_that_find_something_are_not_an_oracle():
    found = feed(engine(), rows("search", 12, actor_id=AGENT, details={"count": "1"}))
    assert [f.rule.id for f in found] == []


def test_a_slow_trickle_below_the_window_is_not_a_burst():
    found = feed(engine(), rows("search", 30, actor_id=AGENT, every=7.0, details={"count": "0"}))
    assert [f for f in found if f.rule.id == "searches_empty"] == []  # 10 in 63 s > the 60 s window


def test_failed_logins_per_account_and_per_address():
    account = rows("login_failed", 5, actor_id="unauthenticated", client_addr="203.0.113.5",
                   outcome="failed", details={"staff_id": AGENT, "reason": "wrong_password"})
    found = feed(engine(), account)
    assert [f.rule.id for f in found] == ["login_failures_account"]
    assert found[0].target_staff_id == AGENT
    spray = [Observation(position=100 + i, at=T0 + timedelta(seconds=i), kind="login_failed",
                         actor_id="unauthenticated", client_addr="203.0.113.9", outcome="failed",
                         details={"staff_id": f"staff-{i}"}) for i in range(10)]
    found = feed(engine(), spray)
    assert [f.rule.id for f in found] == ["login_failures_address"]
    assert found[0].client_addr == "203.0.113.9" and found[0].target_staff_id is None


def test_many_distinct_customers_counts_customers_not_reads():
    eng = engine({"distinct_customers": {"threshold": 5}})
    same = rows("view", 20, actor_id=AGENT, customer_ids=("c-1",))
    assert [f for f in feed(eng, same) if f.rule.id == "distinct_customers"] == []
    many = [Observation(position=50 + i, at=T0 + timedelta(seconds=30 + i), kind="view", actor_id=AGENT,
                        customer_ids=(f"c-{i}",)) for i in range(2, 7)]
    [finding] = [f for f in feed(eng, many) if f.rule.id == "distinct_customers"]
    assert set(finding.customer_ids) >= {"c-2", "c-3", "c-4", "c-5"}


def test_reveals_exports_and_refusals_per_actor():
    eng = engine({"reveals_per_actor": {"threshold": 3}, "exports_per_actor": {"threshold": 2},
                  "out_of_scope": {"threshold": 2}})
    found = feed(eng, rows("reveal", 3, actor_id=AGENT) + rows("export", 2, start=10, actor_id=AGENT)
                 + rows("denied", 2, start=20, actor_id=AGENT, outcome="not_found"))
    assert [f.rule.id for f in found] == ["reveals_per_actor", "exports_per_actor", "out_of_scope"]
    assert "step_up" in found[0].rule.responses


def test_outside_business_hours_one_finding_per_person_per_day():
    office = BusinessHours(time(9, 0), time(17, 0), ("mon", "tue", "wed", "thu", "fri"), "Europe/Paris")
    night = datetime(2026, 12, 2, 22, 30, tzinfo=UTC)  # 23:30 in Paris
    eng = engine(hours=office)
    reads = [Observation(position=i, at=night + timedelta(minutes=i), kind="view", actor_id=AGENT)
             for i in range(1, 4)]
    [finding] = feed(eng, reads)
    assert finding.rule.id == "off_hours" and finding.key == f"actor:{AGENT}@2026-12-02"
    day = [Observation(position=9, at=datetime(2026, 12, 3, 9, 30, tzinfo=UTC), kind="view", actor_id=AGENT)]
    assert feed(eng, day) == []  # 10:30 in Paris on a Thursday


def test_a_new_address_is_news_only_against_known_ones():
    eng = engine(addresses=Addresses({AGENT: {"192.0.2.1"}}))
    login = {"kind": "login", "actor_id": AGENT, "outcome": "succeeded", "session_id": "s2"}
    assert feed(eng, [Observation(position=1, at=T0, client_addr="192.0.2.1", **login)]) == []
    [finding] = feed(eng, [Observation(position=2, at=T0, client_addr="198.51.100.4", **login)])
    assert finding.rule.id == "new_address" and finding.client_addr == "198.51.100.4"
    assert eng.new_addresses == [(AGENT, "198.51.100.4")]
    first = engine()  # an account's first address is its baseline, not news
    assert feed(first, [Observation(position=1, at=T0, client_addr="192.0.2.1", **login)]) == []


def test_two_sessions_from_two_addresses_at_once():
    eng = engine()
    a = Observation(position=1, at=T0, kind="view", actor_id=AGENT, session_id="s1", client_addr="192.0.2.1")
    b = Observation(position=2, at=T0 + timedelta(seconds=5), kind="view", actor_id=AGENT, session_id="s2",
                    client_addr="198.51.100.4")
    later = Observation(position=3, at=T0 + timedelta(hours=2), kind="view", actor_id=AGENT, session_id="s3",
                        client_addr="192.0.2.1")
    assert feed(eng, [a]) == []
    [finding] = feed(eng, [b])
    assert finding.rule.id == "concurrent_addresses" and finding.key == f"actor:{AGENT}|s1,s2"
    assert feed(eng, [later]) == []  # the others have gone quiet past the window


def test_break_glass_privileges_chain_and_drills_each_raise_at_once():
    found = feed(engine(), [
        Observation(position=1, at=T0, kind="break_glass", actor_id=AGENT, outcome="allowed",
                    details={"portfolio": "private", "minutes": "15", "grant_id": "g-1"}),
        Observation(position=2, at=T0, kind="view", actor_id=AGENT, customer_ids=("c-9",),
                    details={"break_glass": "true"}),
        Observation(position=3, at=T0, kind="StaffMember.RolesChanged", actor_id=AGENT, access=False,
                    details={"grant": ["admin"], "revoke": [], "staff_id": "s-7"}),
        Observation(position=4, at=T0, kind="audit_read", actor_id="operator:x@y",
                    details={"operation": "audit:verify", "intact": "false", "problems": "2"}),
        Observation(position=5, at=T0, kind="RecoveryLog.Drilled", actor_id="operator:x@y", access=False,
                    details={"outcome": "failed", "target": "local"}),
        Observation(position=6, at=T0, kind="RecoveryLog.Drilled", actor_id="operator:x@y", access=False,
                    details={"outcome": "succeeded", "target": "local"}),
    ])
    assert [f.rule.id for f in found] == ["break_glass_opened", "break_glass_access", "privilege_change",
                                          "chain_verification_failed", "drill_failed"]
    assert found[2].summary == "roles changed: granted admin"
    assert [f.key for f in found] == ["1", "2", "3", "4", "5"]


def test_overdue_backups_by_the_clock_one_finding_per_missed_period():
    eng = engine()
    assert eng.overdue(T0, (T0 - timedelta(hours=2), 40), T0 - timedelta(days=9)) == []
    [late] = eng.overdue(T0, (T0 - timedelta(hours=30), 40), T0 - timedelta(days=9))
    assert late.key == "after:40" and late.summary.startswith("no complete backup for 30 h")
    [never] = eng.overdue(T0, None, T0 - timedelta(days=2))
    assert never.key == "never"
    assert eng.overdue(T0, None, T0 - timedelta(hours=1)) == []  # a new install has time


def test_rebuilding_the_windows_raises_nothing_and_keeps_the_count():
    # A monitor restarted after six rows of a burst: fed again without raising, the
    # next four complete the burst, as they would have without the restart.
    burst = rows("search", 10, actor_id=AGENT, details={"count": "0"})
    again = engine()
    assert feed(again, burst[:6], raising=False) == []
    assert [f.key for f in feed(again, burst[6:]) if f.rule.id == "searches_empty"] == [f"actor:{AGENT}@10"]


def test_the_operator_and_the_monitor_are_not_staff_to_act_on():
    found = feed(engine({"searches_empty": {"threshold": 1}}),
                 rows("search", 3, actor_id="operator:root@host", details={"count": "0"}))
    assert found == []


def test_rule_settings_override_defaults_and_refuse_mistakes():
    rules = {r.id: r for r in rules_from('{"searches_empty": {"threshold": 3, "window_seconds": 10,'
                                         ' "responses": ["lock_account"], "severity": "high"},'
                                         ' "off_hours": {"enabled": false}}')}
    assert rules["searches_empty"].threshold == 3 and rules["searches_empty"].window_seconds == 10
    assert rules["searches_empty"].responses == ("alert", "lock_account")  # an alert is always kept
    assert not rules["off_hours"].enabled and set(rules) == set(RULE_IDS)
    assert rules_from(None) == DEFAULT_RULES
    for bad in ('{"searches_emtpy": {}}', '{"searches_empty": {"threshold": 0}}',
                '{"searches_empty": {"responses": ["email"]}}', '{"searches_empty": {"severity": "dire"}}',
                '{"searches_empty": {"thresold": 3}}', "[1]", "not json"):
        with pytest.raises(RuleError):
            rules_from(bad)


def test_business_hours_settings_are_checked():
    hours = BusinessHours.parse("08:30-17:00", "mon,tue", "America/New_York")
    assert hours.as_json() == {"start": "08:30", "end": "17:00", "days": ["mon", "tue"],
                               "time_zone": "America/New_York"}
    for args in (("17:00-08:00", "mon", "UTC"), ("9-5", "mon", "UTC"), ("08:00-17:00", "funday", "UTC"),
                 ("08:00-17:00", "mon", "Mars/Olympus")):
        with pytest.raises(RuleError):
            BusinessHours.parse(*args)
