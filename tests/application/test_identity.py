"""Staff identity use cases (R2.1-R2.4), on SQLite and again on PostgreSQL.

Stories told against the wired application: a new member of staff signs in with a
one-time password, enrols TOTP, is issued recovery codes, opens sessions that time
out, steps up, changes the password, and is locked out by a guesser. Time is an
injected clock that the tests move.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from application.context import RequestContext, acting_as
from application.identity import (
    UNAUTHENTICATED,
    CurrentPasswordWrong,
    InvalidCredentials,
    NotAuthenticated,
    SessionNotFound,
    StepUpFailed,
    WeakPassword,
    token_digest,
)
from domain.audit import AccessRecord
from domain.staff import StaffMember
from tests.application.conftest import stepped_up
from tests.web.helpers import MovableClock

NEW_PASSWORD = "violet submarine under the bridge"


@pytest.fixture
def clock(components):
    moving = MovableClock(datetime(2026, 11, 30, 9, 0, 10, tzinfo=UTC))
    components.identity.clock = moving
    return moving


@pytest.fixture
def identity(components, clock):
    return components.identity


def new_account(components, roles=("agent",), portfolios=("retail",)):
    return components.staff_admin.add_staff_as_operator(
        username=f"user-{uuid.uuid4().hex[:8]}", display_name="Test Person", roles=list(roles),
        portfolios=list(portfolios),
    )


def enrol(identity, created, clock):
    """First login: password, then the code for the proposed secret."""
    started = identity.login(created.username, created.one_time_password)
    totp = pyotp.TOTP(pyotp.parse_uri(started.totp_uri).secret)
    opened = identity.complete_mfa(started.challenge, totp.at(clock.now))
    return opened, totp


def access_records(app, kind=None):
    found = []
    for notification in app.recorder.select_notifications(start=1, limit=100_000):
        event = app.mapper.to_domain_event(notification)
        if isinstance(event, AccessRecord.Event) and (kind is None or event.kind == kind):
            found.append((event, app.mapper.metadata(notification)))
    return found


# -- first login and enrolment (R2.1, R2.2) ----------------------------------------------------------


@pytest.mark.controls("PCI-DSS-8.4.2")
def test_first_login_proposes_a_totp_secret_and_enrols_it_only_when_a_code_comes_back(components, identity, clock):
    created = new_account(components)
    started = identity.login(created.username, created.one_time_password)
    assert started.status == "mfa_enrollment_required"
    assert started.totp_uri.startswith("otpauth://totp/Strongroom:")
    assert identity.staff(created.staff_id).totp_secret is None  # proposed, not committed
    totp = pyotp.TOTP(pyotp.parse_uri(started.totp_uri).secret)
    opened = identity.complete_mfa(started.challenge, totp.at(clock.now))
    member = identity.staff(created.staff_id)
    assert member.totp_secret == totp.secret
    # Ten one-time recovery codes, shown once, stored only hashed (R2.2).
    assert len(opened.recovery_codes) == 10 and len(set(opened.recovery_codes)) == 10
    assert len(member.recovery_codes) == 10
    assert not set(opened.recovery_codes) & set(member.recovery_codes)
    assert opened.must_change_password is True
    assert opened.expires_at == clock.now + timedelta(hours=12)


def test_the_enrolment_secret_is_not_stored_before_it_is_confirmed(components, identity, clock):
    created = new_account(components)
    started = identity.login(created.username, created.one_time_password)
    secret = pyotp.parse_uri(started.totp_uri).secret
    with components.events_db.transaction(write=False) as cur:
        cur.execute("SELECT challenge_hash, staff_id FROM auth_challenges")
        rows = cur.fetchall()
    assert rows == [(token_digest(started.challenge), created.staff_id)]
    assert secret not in repr(rows) and started.challenge not in repr(rows)


def test_a_wrong_enrolment_code_enrols_nothing_and_spends_the_challenge(components, identity, clock):
    created = new_account(components)
    started = identity.login(created.username, created.one_time_password)
    with pytest.raises(InvalidCredentials):
        identity.complete_mfa(started.challenge, "000000")
    totp = pyotp.TOTP(pyotp.parse_uri(started.totp_uri).secret)
    with pytest.raises(InvalidCredentials):  # single use: the right code now comes too late
        identity.complete_mfa(started.challenge, totp.at(clock.now))
    assert identity.staff(created.staff_id).totp_secret is None


@pytest.mark.controls("PCI-DSS-8.3.1")
def test_an_enrolled_account_is_asked_for_a_code_and_shown_no_secret(components, identity, clock):
    created = new_account(components)
    _opened, totp = enrol(identity, created, clock)
    clock.advance(seconds=30)
    started = identity.login(created.username, created.one_time_password)
    assert started.status == "mfa_required" and started.totp_uri is None
    opened = identity.complete_mfa(started.challenge, totp.at(clock.now))
    assert opened.recovery_codes is None


def test_a_challenge_expires_after_five_minutes(components, identity, clock):
    created = new_account(components)
    _opened, totp = enrol(identity, created, clock)
    clock.advance(seconds=30)
    started = identity.login(created.username, created.one_time_password)
    clock.advance(minutes=5)
    with pytest.raises(InvalidCredentials):
        identity.complete_mfa(started.challenge, totp.at(clock.now))


@pytest.mark.controls("PCI-DSS-8.5.1")
def test_each_totp_code_is_accepted_once(components, identity, clock):
    """R2.2 replay: the same code (the same time-step) never opens a second session."""
    created = new_account(components)
    _opened, totp = enrol(identity, created, clock)  # uses the current step
    started = identity.login(created.username, created.one_time_password)
    with pytest.raises(InvalidCredentials):
        identity.complete_mfa(started.challenge, totp.at(clock.now))
    # An earlier step is refused too, even inside the +/-1 window.
    started = identity.login(created.username, created.one_time_password)
    with pytest.raises(InvalidCredentials):
        identity.complete_mfa(started.challenge, totp.at(clock.now - timedelta(seconds=30)))
    # The next step is fresh.
    started = identity.login(created.username, created.one_time_password)
    assert identity.complete_mfa(started.challenge, totp.at(clock.now + timedelta(seconds=30))).token


def test_codes_one_step_either_side_are_accepted_and_two_steps_are_not(components, identity, clock):
    created = new_account(components)
    _opened, totp = enrol(identity, created, clock)
    clock.advance(minutes=2)
    started = identity.login(created.username, created.one_time_password)
    with pytest.raises(InvalidCredentials):
        identity.complete_mfa(started.challenge, totp.at(clock.now - timedelta(seconds=60)))
    started = identity.login(created.username, created.one_time_password)
    assert identity.complete_mfa(started.challenge, totp.at(clock.now - timedelta(seconds=30))).token


def test_a_recovery_code_stands_in_for_a_totp_code_once(components, identity, clock):
    created = new_account(components)
    opened, _totp = enrol(identity, created, clock)
    code = opened.recovery_codes[3]
    started = identity.login(created.username, created.one_time_password)
    assert identity.complete_mfa(started.challenge, code.upper()).token  # case does not matter
    assert len(identity.staff(created.staff_id).recovery_codes) == 9
    started = identity.login(created.username, created.one_time_password)
    with pytest.raises(InvalidCredentials):
        identity.complete_mfa(started.challenge, code)


# -- failures look alike; lockout (R2.3) --------------------------------------------------------------


def test_unknown_user_wrong_password_and_locked_account_raise_the_same_error(components, identity, clock):
    created = new_account(components)
    errors = []
    for username, password in [("nobody-here", "whatever it is"), (created.username, "wrong password!")]:
        with pytest.raises(InvalidCredentials) as caught:
            identity.login(username, password)
        errors.append(str(caught.value))
    for _ in range(9):
        with pytest.raises(InvalidCredentials):
            identity.login(created.username, "wrong password!")
    with pytest.raises(InvalidCredentials) as caught:  # locked: even the right password
        identity.login(created.username, created.one_time_password)
    errors.append(str(caught.value))
    assert len(set(errors)) == 1


@pytest.mark.controls("PCI-DSS-8.3.4")
def test_ten_consecutive_failures_lock_the_account_for_thirty_minutes(components, identity, clock):
    created = new_account(components)
    for _ in range(10):
        with pytest.raises(InvalidCredentials):
            identity.login(created.username, "not the password")
    assert identity.throttle.locked_until(created.staff_id, clock.now) == clock.now + timedelta(minutes=30)
    clock.advance(minutes=29, seconds=59)
    with pytest.raises(InvalidCredentials):
        identity.login(created.username, created.one_time_password)
    clock.advance(seconds=1)
    assert identity.login(created.username, created.one_time_password).challenge


def test_mfa_failures_count_towards_the_lockout_and_a_right_password_does_not_reset_it(components, identity, clock):
    created = new_account(components)
    _opened, totp = enrol(identity, created, clock)
    for _ in range(10):
        clock.advance(seconds=1)
        started = identity.login(created.username, created.one_time_password)  # right password
        with pytest.raises(InvalidCredentials):
            identity.complete_mfa(started.challenge, "123456" if totp.at(clock.now) != "123456" else "654321")
    assert identity.throttle.locked_until(created.staff_id, clock.now) is not None
    with pytest.raises(InvalidCredentials):
        identity.login(created.username, created.one_time_password)


def test_a_complete_login_clears_the_count(components, identity, clock):
    created = new_account(components)
    _opened, totp = enrol(identity, created, clock)
    for _ in range(9):
        with pytest.raises(InvalidCredentials):
            identity.login(created.username, "not the password")
    clock.advance(seconds=30)
    started = identity.login(created.username, created.one_time_password)
    identity.complete_mfa(started.challenge, totp.at(clock.now))
    with pytest.raises(InvalidCredentials):
        identity.login(created.username, "not the password")
    assert identity.login(created.username, created.one_time_password).challenge  # one failure, not ten


@pytest.mark.controls("PCI-DSS-10.2.1.4")
def test_failed_logins_are_recorded_with_the_reason_and_no_credentials(components, identity, clock, app):
    created = new_account(components)
    with pytest.raises(InvalidCredentials):
        identity.login("no-such-user", "typed-secret-password")
    with pytest.raises(InvalidCredentials):
        identity.login(created.username, "typed-secret-password")
    failed = access_records(app, "login_failed")
    assert [e.details["reason"] for e, _ in failed] == ["unknown_account", "wrong_password"]
    assert all(meta["actor_id"] == UNAUTHENTICATED for _, meta in failed)
    assert failed[1][0].details["staff_id"] == created.staff_id
    for event, meta in failed:
        assert "no-such-user" not in repr(event.details) + repr(meta)
        assert "typed-secret-password" not in repr(event.details) + repr(meta)


# -- sessions (R2.4) -------------------------------------------------------------------------------------


@pytest.mark.controls("PCI-DSS-8.3.2")
def test_a_session_token_is_stored_only_as_its_hash(components, identity, clock):
    created = new_account(components)
    opened, _totp = enrol(identity, created, clock)
    assert len(opened.token) >= 43  # 256 random bits, URL-safe
    with components.events_db.transaction(write=False) as cur:
        cur.execute("SELECT token_hash, client_addr FROM auth_sessions")
        rows = cur.fetchall()
    assert [row[0] for row in rows] == [token_digest(opened.token)]
    assert opened.token not in repr(rows)


def test_each_login_gets_a_new_token(components, identity, clock):
    created = new_account(components)
    first, totp = enrol(identity, created, clock)
    clock.advance(seconds=30)
    started = identity.login(created.username, created.one_time_password)
    second = identity.complete_mfa(started.challenge, totp.at(clock.now))
    assert first.token != second.token and first.session_id != second.session_id


@pytest.mark.controls("PCI-DSS-8.2.8")
def test_a_session_ends_after_fifteen_idle_minutes(components, identity, clock):
    created = new_account(components)
    opened, _totp = enrol(identity, created, clock)
    clock.advance(minutes=14, seconds=59)
    assert identity.authenticate(opened.token).actor.staff_id == created.staff_id
    clock.advance(minutes=14, seconds=59)  # activity moved the idle clock on
    identity.authenticate(opened.token)
    clock.advance(minutes=15)
    with pytest.raises(NotAuthenticated):
        identity.authenticate(opened.token)
    assert identity.sessions.session(opened.session_id).end_reason == "idle_timeout"


def test_a_session_ends_after_twelve_hours_however_busy(components, identity, clock):
    created = new_account(components)
    opened, _totp = enrol(identity, created, clock)
    for _ in range(71):
        clock.advance(minutes=10)
        identity.authenticate(opened.token)
    clock.advance(minutes=10)  # 12 hours
    with pytest.raises(NotAuthenticated):
        identity.authenticate(opened.token)
    assert identity.sessions.session(opened.session_id).end_reason == "absolute_timeout"


def test_logout_ends_the_session(components, identity, clock):
    created = new_account(components)
    opened, _totp = enrol(identity, created, clock)
    actor = identity.authenticate(opened.token).actor
    identity.logout(actor)
    with pytest.raises(NotAuthenticated):
        identity.authenticate(opened.token)


def test_the_actor_reflects_the_account_as_it_is_now(components, identity, clock):
    created = new_account(components, roles=("agent", "supervisor"), portfolios=("retail", "sme"))
    opened, _totp = enrol(identity, created, clock)
    actor = identity.authenticate(opened.token).actor
    assert actor.roles == {"agent", "supervisor"} and actor.portfolios == {"retail", "sme"}
    assert actor.session_id == opened.session_id and actor.username == created.username
    member = identity.staff(created.staff_id)
    member.change_roles(revoke=["supervisor"])
    components.app._save(member)
    assert identity.authenticate(opened.token).actor.roles == {"agent"}  # the very next request


def test_staff_list_and_end_their_own_sessions_and_a_security_officer_anyones(components, identity, clock):
    alice = new_account(components)
    bob = new_account(components)
    officer = new_account(components, roles=("security_officer",), portfolios=())
    a1, a_totp = enrol(identity, alice, clock)
    clock.advance(seconds=30)
    started = identity.login(alice.username, alice.one_time_password)
    a2 = identity.complete_mfa(started.challenge, a_totp.at(clock.now))
    b1, _ = enrol(identity, bob, clock)
    o1, _ = enrol(identity, officer, clock)
    alice_actor = identity.authenticate(a1.token).actor
    listed = identity.list_sessions(alice_actor)
    assert {s["id"] for s in listed} == {a1.session_id, a2.session_id}
    assert [s["current"] for s in listed] == [True, False]
    assert not any(k in s for s in listed for k in ("token", "token_hash"))
    with pytest.raises(SessionNotFound):  # Bob's sessions look absent to Alice
        identity.end_session(alice_actor, b1.session_id)
    with pytest.raises(SessionNotFound):
        identity.list_sessions(alice_actor, bob.staff_id)
    identity.end_session(alice_actor, a2.session_id)
    with pytest.raises(NotAuthenticated):
        identity.authenticate(a2.token)
    officer_actor = identity.authenticate(o1.token).actor
    assert [s["id"] for s in identity.list_sessions(officer_actor, bob.staff_id)] == [b1.session_id]
    identity.end_session(officer_actor, b1.session_id)
    with pytest.raises(NotAuthenticated):
        identity.authenticate(b1.token)


def test_reaching_for_someone_elses_sessions_looks_absent_but_is_recorded(components, identity, clock):
    """Attack: session hijacking by enumeration. Alice lists or ends Bob's sessions
    (to learn when he works, or to knock him out and act in his name). She sees
    exactly what an absent session looks like; the access log, read only through
    the audit trail, keeps each attempt under her name."""
    alice, bob = new_account(components), new_account(components)
    a1, _ = enrol(identity, alice, clock)
    b1, _ = enrol(identity, bob, clock)
    alice_actor = identity.authenticate(a1.token).actor
    with acting_as(RequestContext(actor_id=alice_actor.staff_id, via="api", session_id=a1.session_id)):
        with pytest.raises(SessionNotFound):
            identity.list_sessions(alice_actor, bob.staff_id)
        with pytest.raises(SessionNotFound):
            identity.end_session(alice_actor, b1.session_id)
    denied = [(e.details["operation"], e.details["reason"], meta["actor_id"])
              for e, meta in access_records(components.app, "denied")]
    assert denied == [("sessions:list", "permission", alice_actor.staff_id),
                      ("sessions:end", "permission", alice_actor.staff_id)]
    assert identity.authenticate(b1.token).actor.staff_id == bob.staff_id  # Bob's session lives on


# -- step-up (R2.7) --------------------------------------------------------------------------------------


def test_step_up_lasts_five_minutes_and_needs_a_fresh_code(components, identity, clock):
    created = new_account(components)
    opened, totp = enrol(identity, created, clock)
    actor = identity.authenticate(opened.token).actor
    assert actor.stepped_up_at is None
    with pytest.raises(StepUpFailed):  # the code used to log in: a replay
        identity.step_up(actor, totp.at(clock.now))
    clock.advance(seconds=30)
    until = identity.step_up(actor, totp.at(clock.now))
    assert until == clock.now + timedelta(minutes=5)
    assert identity.authenticate(opened.token).actor.stepped_up_at == clock.now
    clock.advance(minutes=5, seconds=1)
    assert identity.authenticate(opened.token).actor.stepped_up_at is None


# -- passwords (R2.1) ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("password", "reason"), [
    ("short pass1", "at least 12"),
    ("x" * 129, "at most 128"),
    ("password1234", "commonly used"),
    ("PassWord1234", "commonly used"),  # case-insensitive
    ("qwertyuiopasdfghjkl", "commonly used"),
    ("iloveyou2024", "commonly used"),
])
@pytest.mark.controls("PCI-DSS-8.3.6")
def test_weak_passwords_are_refused(components, identity, clock, password, reason):
    with pytest.raises(WeakPassword) as caught:
        identity.check_password_rules(password)
    assert reason in caught.value.errors["new_password"][0]


def test_a_long_unusual_password_without_composition_rules_is_fine(identity):
    identity.check_password_rules("all lower case words here")
    identity.check_password_rules("x" * 12 + "é" * 116)  # 128 characters, any script


@pytest.mark.controls("ASVS-V7")
def test_changing_the_password_lifts_the_gate_and_ends_other_sessions(components, identity, clock):
    created = new_account(components)
    first, totp = enrol(identity, created, clock)
    clock.advance(seconds=30)
    started = identity.login(created.username, created.one_time_password)
    second = identity.complete_mfa(started.challenge, totp.at(clock.now))
    stepped_up(identity, second.token, totp, clock)  # R2.11
    authenticated = identity.authenticate(second.token)
    assert authenticated.must_change_password
    with pytest.raises(CurrentPasswordWrong):
        identity.change_password(authenticated.actor, "not the current one", NEW_PASSWORD)
    with pytest.raises(WeakPassword):
        identity.change_password(authenticated.actor, created.one_time_password, "password1234")
    with pytest.raises(WeakPassword):
        identity.change_password(authenticated.actor, created.one_time_password, f"{created.username}-rocks!")
    identity.change_password(authenticated.actor, created.one_time_password, NEW_PASSWORD)
    assert not identity.authenticate(second.token).must_change_password
    with pytest.raises(NotAuthenticated):
        identity.authenticate(first.token)
    with pytest.raises(InvalidCredentials):
        identity.login(created.username, created.one_time_password)
    assert identity.login(created.username, NEW_PASSWORD).status == "mfa_required"


def test_a_password_change_is_an_event_saying_who_and_why(components, identity, clock, app):
    created = new_account(components)
    opened, totp = enrol(identity, created, clock)
    actor = stepped_up(identity, opened.token, totp, clock)
    identity.change_password(actor, created.one_time_password, NEW_PASSWORD)
    notification = app.recorder.select_notifications(start=1, limit=100_000)[-1]
    event = app.mapper.to_domain_event(notification)
    assert isinstance(event, StaffMember.PasswordChanged)
    meta = app.mapper.metadata(notification)
    assert meta["actor_id"] == created.staff_id and meta["session_id"] == opened.session_id
    assert meta["purpose"] == "password change"
    assert NEW_PASSWORD.encode() not in notification.state
