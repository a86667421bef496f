"""The authorisation policy and the actor-aware customer use cases (R2.5-R2.8, R3.2).

Logic-only tests use a list as the access recorder; the use-case stories run against
the embedded store and again against PostgreSQL (the `app` fixture).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from application.context import RequestContext, acting_as
from application.customer_service import CustomerService, decode_cursor, encode_cursor
from application.errors import CustomerNotFound, ValidationFailed, VersionConflict
from application.policy import (
    FIELD_POLICY,
    OPERATIONS,
    OPERATOR_ROLE,
    AccessDenied,
    FieldNotRevealable,
    Operation,
    Policy,
    PortfolioOutOfScope,
    StepUpRequired,
    TrainingLapsed,
    Treatment,
    mask,
    treatment,
)
from application.security import ROLE_PERMISSIONS, Actor, Permission
from domain.audit import AccessRecord
from tests.application.conftest import customer_fields

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
ROLES = tuple(ROLE_PERMISSIONS)


def actor(*roles: str, portfolios=("retail",), **kwargs) -> Actor:
    """Trained a month ago (R6.4) unless `trained_at` says otherwise."""
    kwargs.setdefault("trained_at", NOW - timedelta(days=30))
    return Actor(staff_id=f"staff-{'-'.join(roles)}", username="-".join(roles), roles=frozenset(roles),
                 portfolios=frozenset(portfolios), **kwargs)


class Recorder:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def record(self, **kwargs) -> None:
        self.records.append(kwargs)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def policy(recorder) -> Policy:
    return Policy(recorder, clock=lambda: NOW)


RETAIL = {"id": str(uuid.uuid4()), "portfolio": "retail"}
CORPORATE = {"id": str(uuid.uuid4()), "portfolio": "corporate"}


# -- the default field policy (R2.7), as docs/field-policy.md writes it down --------------------
#
# The page is the specification's table kept inside the repository (R7.7: nothing here
# reads outside it); the code is checked against the page, not against itself.

FIELD_POLICY_PAGE = Path(__file__).resolve().parents[2] / "docs" / "field-policy.md"
TABLE_ROLES = ("agent", "supervisor", "compliance_officer", "dpo", "auditor", "admin")
SPEC_ROWS = {
    # field names in the SPEC's first column -> the record fields they cover
    "id, type, portfolio, status, kyc_status, risk_rating, segment, timestamps": (
        "id", "type", "portfolio", "status", "kyc_status", "risk_rating", "segment", "created_on", "modified_on"),
    "full_name": ("full_name",),
    "email, phone, address, date_of_birth": ("email", "phone", "address", "date_of_birth"),
    "national_id, bank account (IBAN)": ("national_id", "bank_accounts"),
    "PAN": ("cards",),
    "interaction notes": ("notes",),
}
EXPECTED = {
    "full_name": "S S S S M -", "email": "R R R R M -", "phone": "R R R R M -", "address": "R R R R M -",
    "date_of_birth": "R R R R M -", "national_id": "M R R R M -", "bank_accounts": "M R R R M -",
    "cards": "BIN+last4 BIN+last4 BIN+last4 BIN+last4 last4 -", "notes": "S S S S M -", "id": "S S S S S -",
}


def test_the_policy_table_is_the_one_written_down_in_docs():
    rows = [line for line in FIELD_POLICY_PAGE.read_text().splitlines() if line.startswith("| ") and "|---" not in line]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[2:] == list(TABLE_ROLES)
    seen = set()
    for line in rows[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] not in SPEC_ROWS:
            continue
        seen.add(cells[0])
        for field in SPEC_ROWS[cells[0]]:
            rule = FIELD_POLICY[field]
            assert rule.classification == cells[1], field
            for role, cell in zip(TABLE_ROLES, cells[2:], strict=True):
                want = {"—": "-"}.get(cell, cell)
                assert rule.for_role(role) == want, (field, role)
    assert seen == set(SPEC_ROWS)


@pytest.mark.parametrize("field", sorted(EXPECTED))
@pytest.mark.controls("GDPR-25")
def test_each_role_gets_the_treatment_written_down(field):
    for role, expected in zip(TABLE_ROLES, EXPECTED[field].split(), strict=True):
        assert treatment(actor(role), field) == expected, (field, role)
    # The security officer reads no customer data at all; nor does an unknown role.
    assert treatment(actor("security_officer"), field) is Treatment.HIDDEN
    assert treatment(actor("intern"), field) is Treatment.HIDDEN


@pytest.mark.controls("GDPR-25")
def test_a_field_missing_from_the_table_is_never_returned(policy):
    view = policy.view(actor("supervisor"), {"id": "x", "portfolio": "retail", "password_hash": "h", "pan": "4111"})
    assert "password_hash" not in view and "pan" not in view


def test_several_roles_get_the_most_open_treatment_of_each_field():
    both = actor("agent", "auditor")
    assert treatment(both, "email") is Treatment.REVEALABLE
    assert treatment(both, "cards") is Treatment.CARD_BIN_LAST4
    assert treatment(actor("agent", "supervisor"), "national_id") is Treatment.REVEALABLE


# -- masking formats ----------------------------------------------------------------------------


def test_masks_keep_just_enough_to_be_useful():
    assert mask("email", "zoe.planted@example.org") == "z***@example.org"
    assert mask("phone", "+447700900123") == "•••• 0123"
    assert mask("date_of_birth", "1980-02-03") == "****-**-**"
    assert mask("national_id", "QQ123456C") == "•••• •••• 456C"
    assert mask("national_id", "AB12") == "•••• ••••"  # too short to give any of it away
    assert mask("bank_accounts", [{"account_id": "a1", "iban": "GB82WEST12345698765432"}]) == [
        {"account_id": "a1", "iban": "•••• •••• 5432"}]
    assert mask("full_name", "Ada Plantedname") == "A*** P***"
    assert mask("address", {"line1": "1 Planted Street", "line2": None, "city": "London",
                            "postcode": "SW1A 1AA", "country": "GB"}) == {
        "line1": "•••", "line2": None, "city": "London", "postcode": "•••", "country": "GB"}
    assert mask("email", None) is None


@pytest.mark.controls("PCI-DSS-3.4.1")
def test_a_pan_is_bin_and_last_four_to_everyone_and_last_four_to_the_auditor(policy):
    record = {"id": "x", "portfolio": "retail",
              "cards": [{"card_id": "c1", "bin": "411111", "last4": "1111", "expiry_month": "2029-12"}]}
    for role in ("agent", "supervisor", "compliance_officer", "dpo"):
        (card,) = policy.view(actor(role), record)["cards"]
        assert card == {"card_id": "c1", "bin": "411111", "last4": "1111", "expiry_month": "2029-12",
                        "display": "411111••••••1111"}
    (card,) = policy.view(actor("auditor"), record)["cards"]
    assert "bin" not in card and card["display"] == "•••• •••• •••• 1111"


def test_a_view_says_which_fields_are_masked_and_which_may_be_revealed(policy):
    record = {"id": "x", "portfolio": "retail", "full_name": "Ada Plantedname", "email": "ada@example.org",
              "national_id": "QQ123456C", "phone": None}
    agent = policy.view(actor("agent"), record)
    assert agent["full_name"] == "Ada Plantedname" and agent["email"] == "a***@example.org"
    assert agent["masked"] == ["email", "national_id"] and agent["revealable"] == ["email"]
    supervisor = policy.view(actor("supervisor"), record)
    assert supervisor["revealable"] == ["email", "national_id"]
    auditor = policy.view(actor("auditor"), record)
    assert auditor["full_name"] == "A*** P***" and auditor["revealable"] == []
    lapsed = policy.view(actor("supervisor", trained_at=NOW - timedelta(days=366)), record)
    assert lapsed["email"] == "a***@example.org" and lapsed["revealable"] == []


# -- permissions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", list(Operation))
@pytest.mark.controls("PCI-DSS-7.2.1")
def test_every_operation_needs_its_permission(policy, recorder, role, operation):
    someone = actor(role)
    if OPERATIONS[operation] in ROLE_PERMISSIONS[role]:
        policy.require_operation(someone, operation, RETAIL)
        assert recorder.records == []
    else:
        with pytest.raises(AccessDenied):
            policy.require_operation(someone, operation, RETAIL)
        (record,) = recorder.records
        assert record["kind"] == "denied" and record["outcome"] == "denied"
        assert record["details"] == {"operation": str(operation), "reason": "permission"}
        assert record["customer_ids"] == [RETAIL["id"]]


@pytest.mark.controls("PCI-DSS-7.2.2")
def test_admin_and_security_officer_read_no_customer_data_and_the_auditor_never_reveals(policy):
    for role in ("admin", "security_officer"):
        for operation in Operation:
            with pytest.raises(AccessDenied):
                policy.require_operation(actor(role), operation)
    with pytest.raises(AccessDenied):
        policy.require_reveal(actor("auditor", stepped_up_at=NOW), ["email"], "complaint 118")
    policy.require_operation(actor("auditor"), Operation.VIEW, CORPORATE)  # reads, masked


@pytest.mark.parametrize("trained_at", [
    NOW - timedelta(days=365),  # R6.4: a year old is lapsed (12 months, the default)
    None,  # a new member of staff, never trained
    NOW + timedelta(days=30),  # dated ahead: would stretch the validity, counts for nothing
], ids=["lapsed", "never_trained", "dated_in_the_future"])
def test_a_lapsed_or_missing_training_removes_reveal_and_export_only(policy, recorder, trained_at):
    lapsed = actor("supervisor", trained_at=trained_at, stepped_up_at=NOW)
    with pytest.raises(TrainingLapsed):
        policy.require_reveal(lapsed, ["email"], "complaint 118")
    with pytest.raises(TrainingLapsed):
        policy.require(lapsed, Permission.CUSTOMERS_EXPORT)
    policy.require_operation(lapsed, Operation.VIEW, RETAIL)
    assert [r["details"]["reason"] for r in recorder.records] == ["training_lapsed", "training_lapsed"]


def test_training_validity_is_the_policys_setting(recorder):
    """R6.4 "configurable": a 30-day validity lapses a 31-day-old training."""
    strict = Policy(recorder, clock=lambda: NOW, training_validity=timedelta(days=30))
    with pytest.raises(TrainingLapsed):
        strict.require(actor("supervisor", trained_at=NOW - timedelta(days=31)), Permission.CUSTOMERS_EXPORT)
    strict.require(actor("supervisor", trained_at=NOW - timedelta(days=29)), Permission.CUSTOMERS_EXPORT)


def test_training_binds_every_session_but_not_the_operator_at_the_command_line(policy, recorder):
    """R6.4 and the operator (docs/operations.md): at the DPO's desk the command line
    exports as the `dpo` role and is not staff, so no training binds it. The attack:
    an untrained DPO, or a staff member somehow holding the `operator` role, exporting
    through an API session; the exemption is for a `cli` context only, never `api`."""
    desk = actor(OPERATOR_ROLE, "dpo", trained_at=None)
    with acting_as(RequestContext(actor_id="operator:ops@host", via="cli")):
        policy.require(desk, Permission.CUSTOMERS_EXPORT)
    for via in ("api", "worker"):
        with acting_as(RequestContext(actor_id=desk.staff_id, via=via)), pytest.raises(TrainingLapsed):
            policy.require(desk, Permission.CUSTOMERS_EXPORT)
    with acting_as(RequestContext(actor_id="operator:ops@host", via="cli")), pytest.raises(TrainingLapsed):
        policy.require(actor("dpo", trained_at=None), Permission.CUSTOMERS_EXPORT)  # staff, not the operator
    assert [r["details"]["reason"] for r in recorder.records] == ["training_lapsed"] * 3


# -- portfolio scope and break-glass ---------------------------------------------------------------


def test_out_of_scope_is_the_same_error_as_absent_and_is_recorded(policy, recorder):
    agent = actor("agent")
    with pytest.raises(CustomerNotFound) as out_of_scope:
        policy.require_operation(agent, Operation.VIEW, CORPORATE)
    absent = CustomerNotFound(CORPORATE["id"])
    assert type(out_of_scope.value) is type(absent) and str(out_of_scope.value) == str(absent)
    (record,) = recorder.records
    assert record == {"kind": "denied", "outcome": "not_found", "customer_ids": [CORPORATE["id"]],
                      "details": {"operation": "view", "reason": "out_of_scope"}}


@pytest.mark.controls("PCI-DSS-7.2.2")
def test_scope_binds_agents_and_supervisors_only(policy):
    for role in ("agent", "supervisor"):
        with pytest.raises(CustomerNotFound):
            policy.require_operation(actor(role), Operation.VIEW, CORPORATE)
    for role in ("compliance_officer", "dpo", "auditor"):
        policy.require_operation(actor(role, portfolios=()), Operation.VIEW, CORPORATE)


def test_a_new_customer_out_of_scope_is_refused_with_403_not_hidden(policy, recorder):
    with pytest.raises(PortfolioOutOfScope):
        policy.require_operation(actor("agent"), Operation.CREATE, {"portfolio": "corporate"})
    assert recorder.records[-1]["details"]["reason"] == "portfolio_out_of_scope"


def test_a_break_glass_portfolio_is_reached_while_the_window_lasts_and_flagged(policy):
    # Authentication adds the granted portfolio to the actor while the grant lasts.
    live = actor("supervisor", portfolios=("retail", "corporate"), break_glass_until=NOW + timedelta(minutes=30))
    decision = policy.require_operation(live, Operation.VIEW, CORPORATE)
    assert decision.break_glass and decision.details() == {"break_glass": "true"}
    assert policy.portfolios_in_scope(live) == {"retail", "corporate"}
    # Only the granted portfolio: break-glass does not open every other one.
    with pytest.raises(CustomerNotFound):
        policy.require_operation(live, Operation.VIEW, {"id": str(uuid.uuid4()), "portfolio": "private"})
    for until in (None, NOW - timedelta(seconds=1), NOW + timedelta(minutes=61)):
        # No window, an expired one, or one longer than break-glass may ever last (R2.8).
        quiet = actor("supervisor", portfolios=("retail", "corporate"), break_glass_until=until)
        assert not policy.require_operation(quiet, Operation.VIEW, CORPORATE).break_glass
    unscoped = actor("compliance_officer", break_glass_until=NOW + timedelta(minutes=30))
    assert not policy.require_operation(unscoped, Operation.VIEW, CORPORATE).break_glass


# -- reveal ------------------------------------------------------------------------------------------


def test_reveal_needs_a_step_up_within_five_minutes(policy, recorder):
    for stepped_up in (None, NOW - timedelta(minutes=5, seconds=1), NOW + timedelta(minutes=1)):
        with pytest.raises(StepUpRequired):
            policy.require_reveal(actor("agent", stepped_up_at=stepped_up), ["email"], "complaint 118")
    policy.require_reveal(actor("agent", stepped_up_at=NOW - timedelta(minutes=4)), ["email"], "complaint 118")
    assert {r["details"]["reason"] for r in recorder.records} == {"step_up_required"}
    assert StepUpRequired.code == "step_up_required"


@pytest.mark.parametrize("purpose", [None, "", "   ", "x" * 201])
def test_reveal_needs_a_stated_purpose_of_at_most_200_characters(policy, purpose):
    with pytest.raises(ValidationFailed) as refused:
        policy.require_reveal(actor("agent", stepped_up_at=NOW), ["email"], purpose)
    assert "purpose" in refused.value.errors
    policy.require_reveal(actor("agent", stepped_up_at=NOW), ["email"], "x" * 200)


def test_reveal_is_only_for_fields_revealable_to_one_of_the_callers_roles(policy):
    with pytest.raises(FieldNotRevealable) as refused:
        policy.require_reveal(actor("agent", stepped_up_at=NOW), ["email", "national_id"], "KYC call")
    assert refused.value.fields == ["national_id"]
    for field in ("full_name", "cards", "id", "password_hash"):  # shown, never more than BIN+last4, internal, secret
        with pytest.raises(FieldNotRevealable):
            policy.require_reveal(actor("supervisor", stepped_up_at=NOW), [field], "KYC call")
    policy.require_reveal(actor("supervisor", stepped_up_at=NOW), ["national_id", "bank_accounts"], "KYC call")


def test_cursors_are_opaque_and_a_forged_one_is_a_validation_error():
    cid = str(uuid.uuid4())
    assert decode_cursor(encode_cursor(cid)) == cid and cid not in encode_cursor(cid)
    for forged in ("not-base64!", encode_cursor("ada@example.org"), "", "===="):
        with pytest.raises(ValidationFailed):
            decode_cursor(forged)


# -- the use cases, against the real stores --------------------------------------------------------


def access_records(app, since: int) -> list:
    events = [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(start=since + 1, limit=1000)]
    return [e for e in events if isinstance(e, AccessRecord.Event)]


@pytest.fixture
def service(app) -> CustomerService:
    return CustomerService(app)


def test_an_agent_creates_and_reads_a_masked_customer_and_each_response_is_recorded(app, service):
    agent = actor("agent")
    before = app.recorder.max_notification_id() or 0
    created = service.create(agent, customer_fields())
    assert created["email"] == "a***@example.org" and created["national_id"] == "•••• •••• 456C"
    assert created["cards"][0]["display"] == "411111••••••1111" and created["version"] == 1
    read = service.read(agent, created["id"])
    assert read["phone"] == "•••• 0123" and read["date_of_birth"] == "****-**-**"
    assert read["bank_accounts"][0]["iban"] == "•••• •••• 5432"
    assert read["address"]["city"] == "London" and read["address"]["line1"] == "•••"
    records = access_records(app, before)
    assert [(r.kind, r.outcome, r.customer_ids) for r in records] == [
        ("view", "allowed", [created["id"]]), ("view", "allowed", [created["id"]])]
    assert "email" in records[1].fields and "masked" not in records[1].fields


def test_reading_out_of_scope_is_answered_as_absent_and_both_are_recorded(app, service):
    corporate = service.create(actor("agent", portfolios=("corporate",)), customer_fields(portfolio="corporate"))
    absent = str(uuid.uuid4())
    before = app.recorder.max_notification_id() or 0
    errors = []
    for cid in (corporate["id"], absent):
        with pytest.raises(CustomerNotFound) as refused:
            service.read(actor("agent"), cid)
        errors.append(str(refused.value).replace(cid, "ID"))
    assert errors[0] == errors[1]
    records = access_records(app, before)
    assert [(r.kind, r.outcome, r.customer_ids, r.details["reason"]) for r in records] == [
        ("denied", "not_found", [corporate["id"]], "out_of_scope"), ("denied", "not_found", [absent], "absent")]


def test_an_admin_asking_for_a_customer_is_refused_and_recorded(app, service):
    created = service.create(actor("agent"), customer_fields())
    before = app.recorder.max_notification_id() or 0
    with pytest.raises(AccessDenied):
        service.read(actor("admin"), created["id"])
    (record,) = access_records(app, before)
    assert (record.kind, record.outcome, record.customer_ids) == ("denied", "denied", [created["id"]])


def test_an_update_needs_the_current_version_and_may_not_move_a_customer_out_of_scope(app, service):
    agent = actor("agent", portfolios=("retail", "retail-2"))
    created = service.create(agent, customer_fields())
    updated = service.update(agent, created["id"], {"email": "zoe@example.org"}, expected_version=1)
    assert updated["version"] == 2 and updated["email"] == "z***@example.org"
    with pytest.raises(VersionConflict):
        service.update(agent, created["id"], {"risk_rating": "high"}, expected_version=1)
    with pytest.raises(PortfolioOutOfScope):
        service.update(agent, created["id"], {"portfolio": "corporate"}, expected_version=2)
    assert service.update(agent, created["id"], {"portfolio": "retail-2"}, expected_version=2)["portfolio"] == "retail-2"
    with pytest.raises(ValidationFailed):
        service.update(agent, created["id"], {"status": "closed"}, expected_version=3)


def test_reveal_returns_plaintext_and_records_the_purpose(app):
    service = CustomerService(app, clock=lambda: NOW)
    supervisor = actor("supervisor", stepped_up_at=NOW - timedelta(minutes=1))
    created = service.create(supervisor, customer_fields())
    before = app.recorder.max_notification_id() or 0
    revealed = service.reveal(supervisor, created["id"], ["email", "national_id"], "complaint 2026-118")
    assert revealed["fields"] == {"email": "ada.planted@example.org", "national_id": "QQ123456C"}
    (record,) = access_records(app, before)
    assert (record.kind, record.fields) == ("reveal", ["email", "national_id"])
    (notification,) = [n for n in app.recorder.select_notifications(start=before + 1, limit=10)]
    assert app.mapper.metadata(notification)["purpose"] == "complaint 2026-118"
    with pytest.raises(StepUpRequired):
        service.reveal(actor("supervisor"), created["id"], ["email"], "complaint 2026-118")


def test_search_finds_only_in_scope_customers_and_records_the_hidden_match(app, service):
    mine = service.create(actor("agent"), customer_fields(email="shared@example.org"))
    theirs = service.create(actor("agent", portfolios=("corporate",)),
                            customer_fields(email="shared@example.org", portfolio="corporate"))
    before = app.recorder.max_notification_id() or 0
    page = service.search(actor("agent"), field="email", value="Shared@Example.org")
    assert [v["id"] for v in page["items"]] == [mine["id"]] and page["next_cursor"] is None
    records = access_records(app, before)
    # One record, whatever matched (issue 10, item 1); the hidden match is in its details.
    assert [(r.kind, r.outcome, r.customer_ids, r.details["out_of_scope"]) for r in records] == [
        ("search", "allowed", [mine["id"]], theirs["id"])]
    everyone = service.search(actor("compliance_officer", portfolios=()), field="email", value="shared@example.org")
    assert {v["id"] for v in everyone["items"]} == {mine["id"], theirs["id"]}


def test_listing_pages_through_the_callers_portfolios_with_a_cursor(app, service):
    agent = actor("agent", portfolios=("retail", "retail-2"))
    ids = set()
    for portfolio in ("retail", "retail-2", "corporate"):
        for _ in range(3):
            ids.add((portfolio, service.create(actor("agent", portfolios=(portfolio,)),
                                               customer_fields(portfolio=portfolio))["id"]))
    seen, cursor = [], None
    while True:
        page = service.search(agent, limit=2, cursor=cursor)
        seen.extend(v["id"] for v in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(cid for p, cid in ids if p != "corporate")
    assert service.search(agent, portfolio="corporate")["items"] == []  # as if it were empty
    assert len(service.search(agent, portfolio="retail-2")["items"]) == 3
    assert service.search(agent, status="closed")["items"] == []
    with pytest.raises(ValidationFailed):
        service.search(agent, limit=0)


def test_history_names_event_types_times_and_actors_never_values(app, service):
    from application.context import RequestContext, acting_as

    agent = actor("agent")
    created = service.create(agent, customer_fields())
    with acting_as(RequestContext(actor_id="staff-zoe", via="api")):
        service.update(agent, created["id"], {"email": "zoe@example.org"}, expected_version=1)
    history = service.history(agent, created["id"])
    assert [(e["version"], e["type"], e["actor_id"]) for e in history["events"]] == [
        (1, "Registered", "operator:test"), (2, "ContactChanged", "staff-zoe")]
    assert history["events"][1]["fields"] == ["email", "phone"]
    assert datetime.fromisoformat(history["events"][0]["at"]).tzinfo is not None
    assert "zoe@example.org" not in repr(history)


def test_interactions_show_notes_to_agents_and_mask_them_for_the_auditor(app, service):
    agent = actor("agent")
    created = service.create(agent, customer_fields())
    item = service.add_interaction(agent, created["id"], kind="call", channel="phone", notes="Asked about fees")
    assert item["notes"] == "Asked about fees"
    assert service.interactions(agent, created["id"])["items"][0]["notes"] == "Asked about fees"
    assert service.interactions(actor("auditor"), created["id"])["items"][0]["notes"] == "•••"
    with pytest.raises(AccessDenied):
        service.add_interaction(actor("auditor"), created["id"], kind="call", channel="phone", notes="x")


def test_the_operation_table_names_a_permission_that_exists_for_every_operation():
    assert set(OPERATIONS) == set(Operation)
    assert all(isinstance(p, Permission) for p in OPERATIONS.values())
    assert re.fullmatch(r"[a-z_]+:[a-z_]+", str(OPERATIONS[Operation.REVEAL]))


# -- the operator at the command line (issue 11, item 5) -------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_no_staff_role_can_take_the_operators_way_in(policy, recorder, role):
    """Attack: a member of staff (even one holding every role) calls the operator's whole-record
    read to skip masking and step-up. Only the `operator` actor the command line makes may."""
    with pytest.raises(AccessDenied):
        policy.require_operator(actor(*ROLES, role), Operation.VIEW, "a good reason", about=RETAIL["id"])
    assert recorder.records[-1]["kind"] == "denied" and recorder.records[-1]["customer_ids"] == [RETAIL["id"]]


def test_the_operator_reads_and_searches_only_for_a_stated_purpose(policy, recorder):
    operator = Actor(staff_id="operator:ops@host", username="ops", roles=frozenset({OPERATOR_ROLE}),
                     portfolios=frozenset())
    assert policy.require_operator(operator, Operation.SEARCH, "  KYC review  ") == "KYC review"
    for wrong in (Operation.UPDATE, Operation.REVEAL, Operation.REVERT):
        with pytest.raises(AccessDenied):
            policy.require_operator(operator, wrong, "a good reason")
    for purpose in (None, " ", "x" * 201, "why\u202e", "pan 4111111111111111"):
        with pytest.raises(ValidationFailed):
            policy.require_operator(operator, Operation.VIEW, purpose, about=RETAIL["id"])
        assert recorder.records[-1]["details"] == {"operation": "view", "reason": "purpose_missing"}
