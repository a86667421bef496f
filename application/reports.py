"""Internal-audit reports (R6.1), computed from the event log over a window.

Each report reads the log's rows from the first position up to the window's last
(`position_at(until)`), never beyond: a report over a past window gives the same
answer tomorrow, whatever happened since. Time-dependent judgements (dormant,
training current) are taken at the window's end (`until`, or the last row's time
when the window is open-ended), never at "now". Rows are opened the way the audit
trail opens them (application/audit_trail.py): access records and changes, with the
acting context from the part sealed under the system key.

No personal data: staff ids, usernames, role names, portfolio codes, customer ids
(counts, in fact), field names, times, outcomes. Free text (purposes, break-glass
reasons, alert notes) stays in the audit trail, where only auditors read it.

Reports (`REPORTS`):

* `access-review` — each account as of the window's end: roles, portfolios, status,
  last login, MFA enrolled, training (last completion, current), dormant (no login in
  the 90 days before the window's end; never signed in counts from enrolment).
* `privileged-actions` — staff-account changes (enrol, roles, portfolios, disable,
  enable, second-factor reset, unlock, training), approvals, key-management and
  recertification events, break-glass and audit exports in the window: who, what, when.
* `reveals-exports` — per actor: reveals and exports allowed, and refused, with the
  number of distinct customers and the fields revealed.
* `failed-logins` — every failed login and step-up in the window (stage, reason, the
  account when one was named), lockouts (the failure that set the lock) and unlocks.
* `break-glass` — each grant: who, portfolio, minutes, until; and how many accesses
  were flagged inside a window.
* `backups-drills` — each backup (target, id, position) and drill (RPO, RTO, pass/fail).
* `chain-verification` — each recorded verification run (`GET /api/v1/audit/verify`):
  who, when, intact or not. `strongroom audit verify` records nothing: it may run
  without the KEK, and must not change the store it examines.
* `alerts` — each alert raised in the window and its acknowledgement (who, when),
  as of the window's end.
* `recertification` — each campaign with an event in the window, as of the window's
  end: items, decisions, by whom, escalations, overdue alerts.

* `data-subject-requests` — each request received in the window, or with a step in
  it, or still open at the window's end (so an overdue request received earlier is not
  hidden), as of the window's end: ids, kind, jurisdiction, received, deadline,
  extended, status, completed or rejected when, and overdue at the window's end.
  Reasons, verification notes and rectified values are not in it (R5.3).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from application.audit_trail import AUDIT_TRAIL_ROLES, AuditFilter, AuditTrailDenied
from application.errors import ApplicationError, SubjectErased, ValidationFailed
from application.policy import Policy
from application.ports import AuditedApplication
from application.security import Actor, Permission

DORMANT_AFTER = timedelta(days=90)
LOCKOUT_THRESHOLD = 10  # R2.3 / PCI DSS 8.3.4; the failure that reaches it sets the lock
FORMATS = ("json", "csv")
_PAGE = 500

_STAFF = "domain.staff:StaffMember."
_ACCESS = "domain.audit:AccessRecord."
_ALERT = "domain.alerts:Alert."
_RECOVERY = "domain.operations:RecoveryLog."
_CAMPAIGN = "domain.recertification:RecertificationCampaign."
_REQUEST = "domain.privacy_requests:PrivacyRequest."


class UnknownReport(ApplicationError):
    """No report by that name (404)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no report named {name!r}; the reports are: {', '.join(REPORTS)}")


@dataclass(frozen=True)
class Row:
    """One opened row of the log."""

    position: int
    recorded_at: datetime
    topic: str
    stream_id: str
    meta: Mapping[str, Any]
    attributes: Mapping[str, Any]

    @property
    def event(self) -> str:
        return self.topic.partition(":")[2]

    @property
    def actor(self) -> str | None:
        value = self.meta.get("actor_id")
        return None if value is None else str(value)

    def access(self, kind: str) -> bool:
        return self.topic.startswith(_ACCESS) and self.attributes.get("kind") == kind

    @property
    def details(self) -> dict[str, Any]:
        return dict(self.attributes.get("details") or {})


@dataclass(frozen=True)
class Window:
    since: datetime | None
    until: datetime | None
    first: int
    last: int
    as_of: datetime | None  # the window's end in time

    def as_json(self) -> dict[str, Any]:
        return {"since": _iso(self.since), "until": _iso(self.until), "first_position": self.first,
                "last_position": self.last, "as_of": _iso(self.as_of)}


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


class Reports:
    """R6.1's reports; see the module text. Auditors and compliance officers read them
    (reports:read with one of those roles), through the API and the command line."""

    def __init__(self, app: AuditedApplication, policy: Policy,
                 training_validity: timedelta = timedelta(days=365)) -> None:
        self.app = app
        self.log = app.recorder
        self.mapper = app.mapper
        self.policy = policy
        self.training_validity = training_validity

    # -- use cases ---------------------------------------------------------------------

    def report(self, actor: Actor | None, name: str, *, since: datetime | None = None,
               until: datetime | None = None) -> dict[str, Any]:
        """The report `name` over [since, until]; `actor` None is the operator (the
        command line and `audit export`). The read is recorded like any of the trail."""
        if actor is not None:
            self.policy.require(actor, Permission.REPORTS_READ, operation=f"report:{name}",
                                roles=AUDIT_TRAIL_ROLES, denied=AuditTrailDenied)
        build = REPORTS.get(name)
        if build is None:
            raise UnknownReport(name)
        AuditFilter(since=since, until=until)  # the audit trail's own checks of the window
        window = self.window(since, until)
        rows = build(self, window, list(self._rows(window.last)))
        self.app.access_log.record(kind="audit_read", details={
            "operation": f"report:{name}", "rows": str(len(rows)),
            "first_position": str(window.first), "last_position": str(window.last)})
        return {"report": name, "window": window.as_json(), "rows": rows}

    def all_reports(self, since: datetime | None, until: datetime | None, *,
                    positions: tuple[int, int] | None = None) -> dict[str, dict[str, Any]]:
        """Every report over one window, for an evidence bundle (not recorded one by one:
        the export is recorded as such); `positions` pins the window to the bundle's own
        (first, last), so the reports count exactly the rows the bundle carries."""
        AuditFilter(since=since, until=until)
        window = self.window(since, until, positions)
        rows = list(self._rows(window.last))
        return {name: {"report": name, "window": window.as_json(), "rows": build(self, window, rows)}
                for name, build in REPORTS.items()}

    # -- the window and the rows -------------------------------------------------------

    def window(self, since: datetime | None, until: datetime | None,
               positions: tuple[int, int] | None = None) -> Window:
        if positions is not None:
            first, last = positions
        else:
            first = 1 if since is None else self.log.position_at(since - timedelta(microseconds=1)) + 1
            head = self.log.max_notification_id() or 0
            last = head if until is None else min(head, self.log.position_at(until))
        as_of = until
        if as_of is None and last:
            page = self.log.select_timed_notifications(last, 1, last)
            as_of = page[0].recorded_at if page else None
        return Window(since, until, first, last, as_of)

    def _rows(self, last: int) -> Iterator[Row]:
        start = 1
        while start <= last:
            page = self.log.select_timed_notifications(start, _PAGE, last)
            if not page:
                return
            for note in page:
                topic = note.topic
                if not topic.startswith((_STAFF, _ACCESS, _ALERT, _RECOVERY, _CAMPAIGN, _REQUEST)):
                    continue  # customers' own changes: not what these reports read
                try:
                    attributes = {k: v for k, v in vars(self.mapper.to_domain_event(note)).items()
                                  if not k.startswith("_")}
                except SubjectErased:
                    attributes = dict(self.mapper.system_attributes(note))
                yield Row(note.id, note.recorded_at, topic, str(note.originator_id),
                          self.mapper.metadata(note), attributes)
            start = page[-1].id + 1


# -- the reports ---------------------------------------------------------------------------


def _in(window: Window, row: Row) -> bool:
    return window.first <= row.position <= window.last


def _access_review(self: Reports, window: Window, rows: list[Row]) -> list[dict[str, Any]]:
    accounts: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.topic.startswith(_STAFF):
            a = row.attributes
            name = row.event.rpartition(".")[2]
            if name == "Enrolled":
                accounts[row.stream_id] = {
                    "staff_id": row.stream_id, "username": a.get("username"), "roles": list(a.get("roles", [])),
                    "portfolios": list(a.get("portfolios", [])), "status": "active", "mfa_enrolled": False,
                    "enrolled_at": row.recorded_at, "last_login": None, "last_training_at": None}
                continue
            account = accounts.get(row.stream_id)
            if account is None:
                continue
            if name == "RolesChanged":
                account["roles"] = sorted((set(account["roles"]) | set(a.get("grant", []))) - set(a.get("revoke", [])))
            elif name == "PortfoliosChanged":
                account["portfolios"] = list(a.get("portfolios", []))
            elif name == "TotpEnrolled":
                account["mfa_enrolled"] = True
            elif name == "TotpReset":
                account["mfa_enrolled"] = False
            elif name in ("Disabled", "Enabled"):
                account["status"] = "disabled" if name == "Disabled" else "active"
            elif name == "TrainingCompleted":
                done = datetime.fromisoformat(str(a.get("completed_at")))
                last = account["last_training_at"]
                account["last_training_at"] = done if last is None or done > last else last
        elif row.access("login") and row.actor in accounts and row.details.get("stage") == "mfa":
            accounts[row.actor]["last_login"] = row.recorded_at
    as_of = window.as_of
    listed = []
    for account in sorted(accounts.values(), key=lambda acc: str(acc["username"])):
        trained = account["last_training_at"]
        seen = account["last_login"] or account["enrolled_at"]
        listed.append({
            "staff_id": account["staff_id"], "username": account["username"], "roles": account["roles"],
            "portfolios": account["portfolios"], "status": account["status"],
            "mfa_enrolled": account["mfa_enrolled"], "last_login": _iso(account["last_login"]),
            "training_completed_at": _iso(trained),
            "training_current": bool(trained is not None and as_of is not None
                                     and trained <= as_of < trained + self.training_validity),
            "dormant": bool(as_of is not None and as_of - seen > DORMANT_AFTER),
        })
    return listed


_PRIVILEGED_STAFF_EVENTS = ("Enrolled", "RolesChanged", "PortfoliosChanged", "Disabled", "Enabled", "TotpReset",
                            "Unlocked", "TrainingCompleted")
_PRIVILEGED_ACCESS = ("approval", "break_glass", "activation_sent")


def _privileged_actions(self: Reports, window: Window, rows: list[Row]) -> list[dict[str, Any]]:
    listed = []
    for row in rows:
        if not _in(window, row):
            continue
        what: dict[str, Any] | None = None
        short = row.event.rpartition(".")[2]
        name = row.event  # "StaffMember.RolesChanged", or the access record's kind below
        if row.topic.startswith(_STAFF) and short in _PRIVILEGED_STAFF_EVENTS:
            a = row.attributes
            what = {"subject": row.stream_id, "grant": list(a.get("grant", [])), "revoke": list(a.get("revoke", [])),
                    "roles": list(a.get("roles", [])) if short == "Enrolled" else [],
                    "portfolios": list(a.get("portfolios", [])) if short in ("Enrolled", "PortfoliosChanged") else []}
        elif row.topic.startswith(_CAMPAIGN) and short in ("Started", "Decided"):
            a = row.attributes
            what = {"subject": str(a.get("staff_id") or row.stream_id), "grant": [],
                    "revoke": list(a.get("revoked_roles", [])), "roles": [],
                    "portfolios": list(a.get("revoked_portfolios", []))}
        elif row.topic.startswith(_ACCESS):
            kind = str(row.attributes.get("kind"))
            operation = str(row.details.get("operation", ""))
            if kind in _PRIVILEGED_ACCESS or operation in ("audit:export",) or operation.startswith("keys:"):
                what = {"subject": str(row.details.get("subject_staff_id") or row.details.get("staff_id") or ""),
                        "grant": [], "revoke": [], "roles": [], "portfolios": []}
                name = kind if not operation else f"{kind}:{operation}"
                if kind == "approval":
                    name = f"approval:{row.details.get('decision')}:{row.details.get('request')}"
        if what is not None:
            listed.append({"position": row.position, "recorded_at": _iso(row.recorded_at), "actor_id": row.actor,
                           "via": row.meta.get("via"), "action": name, **what})
    return listed


def _reveals_exports(self: Reports, window: Window, rows: list[Row]) -> list[dict[str, Any]]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    customers: dict[str, set[str]] = defaultdict(set)
    fields: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if not _in(window, row) or not row.topic.startswith(_ACCESS):
            continue
        kind = str(row.attributes.get("kind"))
        operation = str(row.details.get("operation", ""))
        actor = row.actor or "unknown"
        if kind in ("reveal", "export"):
            counts[actor][kind] += 1
            customers[actor].update(str(c) for c in row.attributes.get("customer_ids", []))
            fields[actor].update(str(f) for f in row.attributes.get("fields", []))
        elif kind == "denied" and operation in ("reveal", "customers:export", "export"):
            counts[actor][f"{'reveal' if operation == 'reveal' else 'export'}_refused"] += 1
    return [{"actor_id": actor, "reveals": c["reveal"], "exports": c["export"],
             "reveals_refused": c["reveal_refused"], "exports_refused": c["export_refused"],
             "customers": len(customers[actor]), "fields": sorted(fields[actor])}
            for actor, c in sorted(counts.items())]


def _failed_logins(self: Reports, window: Window, rows: list[Row]) -> list[dict[str, Any]]:
    listed = []
    for row in rows:
        if not _in(window, row):
            continue
        if row.topic.startswith(_ACCESS) and row.attributes.get("kind") in ("login_failed", "step_up") \
                and row.attributes.get("outcome") == "failed":
            d = row.details
            failures = str(d.get("consecutive_failures", ""))
            listed.append({"position": row.position, "recorded_at": _iso(row.recorded_at),
                           "event": "lockout" if failures == str(LOCKOUT_THRESHOLD) else str(row.attributes["kind"]),
                           "staff_id": str(d.get("staff_id") or (row.actor if row.actor != "unauthenticated" else "")),
                           "stage": str(d.get("stage", "")), "reason": str(d.get("reason", "")),
                           "consecutive_failures": failures})
        elif row.topic.startswith(_STAFF) and row.event.endswith(".Unlocked"):
            listed.append({"position": row.position, "recorded_at": _iso(row.recorded_at), "event": "unlock",
                           "staff_id": row.stream_id, "stage": "", "reason": f"by {row.actor}",
                           "consecutive_failures": ""})
    return listed


def _break_glass(self: Reports, window: Window, rows: list[Row]) -> list[dict[str, Any]]:
    grants: list[dict[str, Any]] = []
    flagged: Counter[str] = Counter()
    for row in rows:
        if not _in(window, row) or not row.topic.startswith(_ACCESS):
            continue
        if row.attributes.get("kind") == "break_glass":
            d = row.details
            grants.append({"position": row.position, "recorded_at": _iso(row.recorded_at), "actor_id": row.actor,
                           "grant_id": str(d.get("grant_id", "")), "portfolio": str(d.get("portfolio", "")),
                           "minutes": str(d.get("minutes", "")), "expires_at": str(d.get("expires_at", ""))})
        elif row.details.get("break_glass") in (True, "true"):
            flagged[str(row.actor)] += 1
    for grant in grants:
        grant["flagged_accesses_by_actor"] = flagged[str(grant["actor_id"])]
    return grants


def _backups_drills(self: Reports, window: Window, rows: list[Row]) -> list[dict[str, Any]]:
    listed = []
    for row in rows:
        if not _in(window, row) or not row.topic.startswith(_RECOVERY):
            continue
        a = row.attributes
        name = row.event.rpartition(".")[2]
        if name == "BackupTaken":
            listed.append({"position": row.position, "recorded_at": _iso(row.recorded_at), "event": "backup",
                           "target": a.get("target"), "backup_id": a.get("backup_id"), "log_position": a.get("position"),
                           "rpo_seconds": None, "rto_seconds": None, "outcome": "succeeded", "actor_id": row.actor})
        elif name == "Drilled":
            listed.append({"position": row.position, "recorded_at": _iso(row.recorded_at), "event": "drill",
                           "target": a.get("target"), "backup_id": a.get("backup_id"), "log_position": a.get("position"),
                           "rpo_seconds": a.get("rpo_seconds"), "rto_seconds": a.get("rto_seconds"),
                           "outcome": a.get("outcome"), "actor_id": row.actor})
    return listed


def _chain_verification(self: Reports, window: Window, rows: list[Row]) -> list[dict[str, Any]]:
    return [{"position": row.position, "recorded_at": _iso(row.recorded_at), "actor_id": row.actor,
             "via": row.meta.get("via"), "intact": row.details.get("intact") == "true",
             "scope": str(row.details.get("scope", "chain"))}
            for row in rows if _in(window, row) and row.access("audit_read")
            and row.details.get("operation") == "audit:verify"]


def _alerts(self: Reports, window: Window, rows: list[Row]) -> list[dict[str, Any]]:
    alerts: dict[str, dict[str, Any]] = {}
    for row in rows:
        if not row.topic.startswith(_ALERT):
            continue
        a = row.attributes
        name = row.event.rpartition(".")[2]
        if name == "Raised" and _in(window, row):
            alerts[row.stream_id] = {"alert_id": row.stream_id, "rule_id": a.get("rule_id"),
                                     "severity": a.get("severity"), "raised_at": _iso(row.recorded_at),
                                     "position": row.position, "status": "open", "acknowledged_by": None,
                                     "acknowledged_at": None}
        elif name == "Acknowledged" and row.stream_id in alerts:
            alerts[row.stream_id].update(status="acknowledged", acknowledged_by=a.get("acknowledged_by"),
                                         acknowledged_at=_iso(row.recorded_at))
    return sorted(alerts.values(), key=lambda alert: int(alert["position"]))


def _recertification(self: Reports, window: Window, rows: list[Row]) -> list[dict[str, Any]]:
    items: dict[tuple[str, str], dict[str, Any]] = {}
    touched: set[str] = set()
    for row in rows:
        if not row.topic.startswith(_CAMPAIGN):
            continue
        a = row.attributes
        name = row.event.rpartition(".")[2]
        if _in(window, row):
            touched.add(row.stream_id)
        if name == "Started":
            for item in a.get("items", []):
                items[(row.stream_id, item["staff_id"])] = {
                    "campaign_id": row.stream_id, "started_at": a.get("started_at"), "due_at": a.get("due_at"),
                    "staff_id": item["staff_id"], "username": item["username"], "roles": list(item["roles"]),
                    "portfolios": list(item["portfolios"]), "state": "pending", "decided_by": None,
                    "decided_at": None, "revoked_roles": [], "revoked_portfolios": [], "escalated": False,
                    "overdue_alert": False}
        elif name == "Decided":
            items[(row.stream_id, a["staff_id"])].update(
                state=a.get("decision"), decided_by=a.get("decided_by"), decided_at=a.get("decided_at"),
                revoked_roles=list(a.get("revoked_roles", [])), revoked_portfolios=list(a.get("revoked_portfolios", [])))
        elif name == "Escalated":
            for staff_id in a.get("staff_ids", []):
                items[(row.stream_id, staff_id)]["escalated"] = True
        elif name == "OverdueAlerted":
            for staff_id in a.get("staff_ids", []):
                items[(row.stream_id, staff_id)]["overdue_alert"] = True
    return [item for key, item in sorted(items.items(), key=lambda kv: (kv[1]["started_at"], kv[1]["username"]))
            if key[0] in touched]


def _data_subject_requests(self: Reports, window: Window, rows: list[Row]) -> list[dict[str, Any]]:
    received: dict[str, dict[str, Any]] = {}
    touched: set[str] = set()
    for row in rows:
        if not row.topic.startswith(_REQUEST):
            continue
        a = row.attributes
        name = row.event.rpartition(".")[2]
        if name == "Received":
            received[row.stream_id] = {
                "request_id": row.stream_id, "customer_id": a.get("customer_id"), "kind": a.get("kind"),
                "jurisdiction": a.get("jurisdiction"), "received_at": a.get("received_at"),
                "deadline": a.get("deadline"), "extended": False, "status": "received",
                "completed_at": None, "rejected_at": None, "position": row.position}
        request = received.get(row.stream_id)
        if request is None:
            continue
        if _in(window, row):
            touched.add(row.stream_id)
        if name == "Verified":
            request["status"] = "verified"
        elif name == "Extended":
            request.update(extended=True, deadline=a.get("deadline"), status="extended")
        elif name == "ExportDelivered":
            request["status"] = "in_progress"
        elif name == "Completed":
            request.update(status="completed", completed_at=(a.get("completion") or {}).get("at"))
        elif name == "Rejected":
            request.update(status="rejected", rejected_at=(a.get("rejection") or {}).get("at"))
    as_of = window.as_of
    listed = []
    for request_id, request in sorted(received.items(), key=lambda kv: int(kv[1]["position"])):
        open_ = request["status"] not in ("completed", "rejected")
        if request_id not in touched and not open_:
            continue
        overdue = bool(open_ and as_of is not None and as_of > datetime.fromisoformat(str(request["deadline"])))
        listed.append({**request, "overdue": overdue})
    return listed


REPORTS: dict[str, Callable[[Reports, Window, list[Row]], list[dict[str, Any]]]] = {
    "access-review": _access_review,
    "privileged-actions": _privileged_actions,
    "reveals-exports": _reveals_exports,
    "failed-logins": _failed_logins,
    "break-glass": _break_glass,
    "backups-drills": _backups_drills,
    "chain-verification": _chain_verification,
    "alerts": _alerts,
    "recertification": _recertification,
    "data-subject-requests": _data_subject_requests,
}


# -- formats -------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    return str(value)


def _safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection, OWASP)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def as_csv(report: Mapping[str, Any]) -> str:
    """A header line (the report's columns, in a fixed order), then one line per row;
    lists joined with ';'. An empty report is its header alone."""
    rows = report["rows"]
    columns = list(_COLUMNS.get(str(report["report"]), ())) or (list(rows[0]) if rows else [])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_safe(_cell(row.get(c))) for c in columns])
    return out.getvalue()


def as_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True, default=str)


def render(report: Mapping[str, Any], output: str) -> str:
    if output not in FORMATS:
        raise ValidationFailed({"format": ["must be json or csv"]})
    return as_csv(report) if output == "csv" else as_json(report)


_COLUMNS: dict[str, tuple[str, ...]] = {
    "access-review": ("staff_id", "username", "roles", "portfolios", "status", "mfa_enrolled", "last_login",
                      "training_completed_at", "training_current", "dormant"),
    "privileged-actions": ("position", "recorded_at", "actor_id", "via", "action", "subject", "grant", "revoke",
                           "roles", "portfolios"),
    "reveals-exports": ("actor_id", "reveals", "exports", "reveals_refused", "exports_refused", "customers", "fields"),
    "failed-logins": ("position", "recorded_at", "event", "staff_id", "stage", "reason", "consecutive_failures"),
    "break-glass": ("position", "recorded_at", "actor_id", "grant_id", "portfolio", "minutes", "expires_at",
                    "flagged_accesses_by_actor"),
    "backups-drills": ("position", "recorded_at", "event", "target", "backup_id", "log_position", "rpo_seconds",
                       "rto_seconds", "outcome", "actor_id"),
    "chain-verification": ("position", "recorded_at", "actor_id", "via", "intact", "scope"),
    "alerts": ("alert_id", "rule_id", "severity", "raised_at", "position", "status", "acknowledged_by",
               "acknowledged_at"),
    "recertification": ("campaign_id", "started_at", "due_at", "staff_id", "username", "roles", "portfolios", "state",
                        "decided_by", "decided_at", "revoked_roles", "revoked_portfolios", "escalated",
                        "overdue_alert"),
    "data-subject-requests": ("request_id", "customer_id", "kind", "jurisdiction", "received_at", "deadline",
                              "extended", "status", "completed_at", "rejected_at", "overdue", "position"),
}
