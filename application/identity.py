"""Staff identity (R2.1-R2.4): login with a password and a second factor, sessions,
step-up, password change, logout. One method per use case (STYLE 2).

The password step hands out a *challenge*, not a session: only a TOTP code (or a
recovery code) turns it into a session. Every failure, whatever its cause, raises
the same `InvalidCredentials`, so an unknown user, a wrong password and a locked
account look alike to the caller (R2.3); the access log says which it was.

Tokens, challenges and codes are compared only through their digests or through
`hmac.compare_digest`; none is ever stored, logged or put in an event. Time comes
from an injected clock so that tests can move it (idle and absolute timeouts,
lockout expiry, TOTP steps).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pyotp
from eventsourcing.application import AggregateNotFoundError

from application.clock import Clock, utc_now
from application.context import RequestContext, acting_as, current_context
from application.customers import Strongroom
from application.errors import ApplicationError, SubjectErased, ValidationFailed, VersionConflict
from application.password_rules import weakness
from application.policy import STEP_UP_WINDOW, Policy
from application.principals import PrincipalCache
from application.ports import (
    BreakGlassStore,
    ChallengeStore,
    LoginChallenge,
    LoginThrottle,
    PasswordHasher,
    SessionRecord,
    SessionStore,
    StaffDirectory,
    TotpSteps,
)
from application.security import Actor, Permission
from application.throttle import RateLimited, Throttle
from domain.errors import DomainError
from domain.staff import StaffMember, normalise_username

UNAUTHENTICATED = "unauthenticated"  # the actor of access records for failed logins
ISSUER = "Strongroom"
_ENROLMENT_KEY = b"strongroom/totp-enrolment/v1"


def _text(value: str) -> str:
    """`value`, or a stand-in if it cannot be UTF-8 (a lone surrogate from JSON): such
    input can match no stored secret, and must cost the same and fail the same way
    rather than break the hash function."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def token_digest(token: str) -> str:
    """SHA-256 of a bearer token or challenge: what the stores keep instead of it.

    The tokens carry 256 random bits, so a fast hash is enough: a stolen table
    cannot be turned back into tokens, and lookup by digest compares no secret
    byte by byte.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class IdentityRules:
    """The figures of R2.1-R2.4, in one place."""

    password_min: int = 12  # R2.1 / NIST SP 800-63B
    password_max: int = 128  # R2.1 asks for at least 64
    challenge_ttl: timedelta = timedelta(minutes=5)
    idle_timeout: timedelta = timedelta(minutes=15)  # PCI DSS 8.2.8
    absolute_timeout: timedelta = timedelta(hours=12)
    lockout_threshold: int = 10  # PCI DSS 8.3.4
    lockout_duration: timedelta = timedelta(minutes=30)  # PCI DSS 8.3.4
    # Failures further apart than this are not consecutive (the lockout counter reset
    # of CIS benchmarks); the per-address throttle spaces one address's failures wider
    # than this, so one address alone never locks an account (issue 10, item 8).
    failure_window: timedelta = timedelta(minutes=30)
    totp_interval: int = 30  # RFC 6238
    totp_window: int = 1  # one step either side
    touch_every: timedelta = timedelta(seconds=30)  # idle clock resolution, to spare writes


# -- errors -----------------------------------------------------------------------------------


class IdentityError(ApplicationError):
    """Base of the identity use cases' refusals."""


class InvalidCredentials(IdentityError):
    """Login or second factor refused. Deliberately says nothing more (R2.3)."""

    def __init__(self) -> None:
        super().__init__("invalid credentials")


class NotAuthenticated(IdentityError):
    """No live session for this token (absent, ended, idle or past its limit)."""

    def __init__(self) -> None:
        super().__init__("authentication required")


class PasswordChangeRequired(IdentityError):
    """The account still has its one-time password: change it before anything else."""

    def __init__(self) -> None:
        super().__init__("the one-time password must be changed first (POST /api/v1/auth/password)")


class StepUpFailed(IdentityError):
    """The code given for step-up was not a fresh, valid TOTP code."""

    def __init__(self) -> None:
        super().__init__("the code was not accepted")


class SessionNotFound(IdentityError):
    """No such live session that the caller may end (others' look absent, R2.6 style)."""

    def __init__(self, session_id: object) -> None:
        super().__init__(f"session {session_id} not found")


class WeakPassword(ValidationFailed):
    """The new password breaks R2.1 (too short, too long, common, or the username)."""

    def __init__(self, reason: str) -> None:
        super().__init__({"new_password": [reason]})


class CurrentPasswordWrong(ValidationFailed):
    def __init__(self) -> None:
        super().__init__({"current_password": ["does not match"]})


# -- results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginStarted:
    status: str  # "mfa_required" or "mfa_enrollment_required"
    challenge: str
    expires_at: datetime
    totp_uri: str | None = None


@dataclass(frozen=True)
class SessionOpened:
    token: str
    session_id: str
    expires_at: datetime
    idle_timeout_seconds: int
    must_change_password: bool
    recovery_codes: list[str] | None = None


@dataclass(frozen=True)
class Authenticated:
    """A bearer token resolved: who, on which session, and whether they may act yet."""

    actor: Actor
    session: SessionRecord
    must_change_password: bool


# -- the use cases ----------------------------------------------------------------------------------


class Identity:
    """Login, second factor, sessions, step-up and password change for staff."""

    def __init__(
        self,
        app: Strongroom,
        *,
        sessions: SessionStore,
        challenges: ChallengeStore,
        throttle: LoginThrottle,
        totp_steps: TotpSteps,
        directory: StaffDirectory,
        break_glass: BreakGlassStore,
        hasher: PasswordHasher,
        common_passwords: Callable[[], frozenset[str]],
        new_recovery_codes: Callable[[], tuple[list[str], list[str]]],
        recovery_code_matches: Callable[[str, str], bool],
        recovery_code_outdated: Callable[[str], bool],
        clock: Clock = utc_now,
        rules: IdentityRules | None = None,
        policy: Policy | None = None,
        rate_limits: Throttle | None = None,
    ) -> None:
        self.app = app
        # R2.11: logins per address and per account, in front of the lockout.
        self.rate_limits = rate_limits
        self.sessions = sessions
        self.challenges = challenges
        self.throttle = throttle
        self.totp_steps = totp_steps
        self.directory = directory
        self.break_glass = break_glass
        self.hasher = hasher
        self._common_passwords = common_passwords
        self._new_recovery_codes = new_recovery_codes
        # (code, stored) -> whether they match, in constant time; and whether a stored
        # code is of a format too weak to keep (the whole set is then replaced).
        self._recovery_code_matches = recovery_code_matches
        self._recovery_code_outdated = recovery_code_outdated
        self.clock = clock
        self.rules = rules or IdentityRules()
        # Reading or ending someone else's sessions is an authorisation like any
        # other: decided and, when refused, recorded by the one policy (R2.10).
        self.policy = policy or Policy(app.access_log, clock=self.now)
        self._dummy_hash: str | None = None
        # Issue 15 item 6: the account's replay, reused while its stream version stands.
        self.principals = PrincipalCache(app.recorder, self.staff)

    # -- helpers --------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock()

    def staff(self, staff_id: str) -> StaffMember | None:
        """The account, or None if there is none by that id."""
        try:
            member: Any = self.app.repository.get(UUID(str(staff_id)))
        except (AggregateNotFoundError, ValueError, SubjectErased):
            return None
        return member if isinstance(member, StaffMember) else None

    def _dummy(self) -> str:
        # An unknown user is checked against a real argon2id hash of a random
        # password, so the answer takes as long as for a wrong password (R2.3).
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(24))
        return self._dummy_hash

    @contextmanager
    def acting(self, actor_id: str, *, session_id: str | None = None,
               purpose: str | None = None) -> Iterator[RequestContext]:
        """The caller's context (request id, address, channel) with the acting staff member."""
        base = current_context() or RequestContext(actor_id=actor_id, via="api")
        context = replace(base, actor_id=actor_id, session_id=session_id or base.session_id,
                          purpose=purpose or base.purpose)
        with acting_as(context):
            yield context

    def _record(self, actor_id: str, kind: str, outcome: str, *, session_id: str | None = None,
                **details: str) -> None:
        with self.acting(actor_id, session_id=session_id):
            self.app.access_log.record(kind=kind, outcome=outcome, details=details)

    def _fail(self, kind: str, reason: str, staff_id: str | None, stage: str) -> InvalidCredentials:
        """Count the failure against the account, record it, and return the one error."""
        details = {"reason": reason, "stage": stage}
        if staff_id is not None:
            details["staff_id"] = staff_id
            if reason != "locked":
                count = self._count_failure(staff_id)
                details["consecutive_failures"] = str(count)
        if self.rate_limits is not None:
            self.rate_limits.login_failed(self._client_addr())
        self._record(UNAUTHENTICATED, kind, "failed", **details)
        return InvalidCredentials()

    def _count_failure(self, staff_id: str) -> int:
        return self.throttle.record_failure(
            staff_id, self.now(), threshold=self.rules.lockout_threshold,
            lock_for=self.rules.lockout_duration, forget_after=self.rules.failure_window,
        )

    @staticmethod
    def _client_addr() -> str | None:
        context = current_context()
        return context.client_addr if context else None

    def _throttle_login(self, name: str) -> None:
        """R2.11: 429 before any password is checked when the address has spent its
        failures or the username its attempts; recorded like any refused login."""
        if self.rate_limits is None:
            return
        try:
            self.rate_limits.login_attempt(name, self._client_addr())
        except RateLimited:
            self._record(UNAUTHENTICATED, "login_failed", "failed", reason="throttled", stage="password")
            raise

    def _step(self, when: datetime) -> int:
        return int(when.timestamp()) // self.rules.totp_interval

    def _matching_step(self, secret: str, code: str) -> int | None:
        """The time-step (now +/- the window) whose code equals `code`, if any."""
        if not (len(code) == 6 and code.isascii() and code.isdigit()):
            return None
        totp = pyotp.TOTP(secret, interval=self.rules.totp_interval)
        current = self._step(self.now())
        found = None
        for step in range(current - self.rules.totp_window, current + self.rules.totp_window + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                found = step
        return found

    def _fresh_totp(self, staff_id: str, secret: str, code: str) -> bool:
        """A valid code whose step is later than the last one used (replay refused, R2.2)."""
        step = self._matching_step(secret, code)
        return step is not None and self.totp_steps.claim_totp_step(staff_id, step)

    @staticmethod
    def enrolment_secret(challenge: str) -> str:
        """The TOTP secret proposed to an enrolling account, derived from its challenge.

        Derived rather than stored: only the holder of the challenge can reconstruct
        it, and the database never holds an uncommitted second-factor secret.
        """
        digest = hmac.new(_ENROLMENT_KEY, challenge.encode(), hashlib.sha256).digest()[:20]
        return base64.b32encode(digest).decode()

    def check_password_rules(self, password: str, *, username: str | None = None) -> None:
        """R2.1: length 12-128, not a common password (case-insensitive), not the username
        (in any look-alike spelling), not spaces or one character repeated, not built on
        the service's name or the year (application/password_rules.py). No composition
        rules (NIST SP 800-63B)."""
        if _text(password) != password:
            raise WeakPassword("must be valid Unicode text")
        if len(password) < self.rules.password_min:
            raise WeakPassword(f"must be at least {self.rules.password_min} characters")
        if len(password) > self.rules.password_max:
            raise WeakPassword(f"must be at most {self.rules.password_max} characters")
        folded = password.lower()
        if folded in self._common_passwords():
            raise WeakPassword("is a commonly used password")
        if username is not None and username.lower() in folded:
            raise WeakPassword("must not contain the username")
        # Spaces only, one character repeated, the username in look-alike letters, the
        # service's name or the year as the bulk of it (issue 10, item 10b).
        reason = weakness(password, username=username, minimum=self.rules.password_min,
                          context_words=("strongroom", ISSUER, str(self.now().year)))
        if reason is not None:
            raise WeakPassword(reason)

    def new_one_time_password(self) -> str:
        """A random password (24 URL-safe characters, 144 bits) to be changed at first use."""
        return secrets.token_urlsafe(18)

    def new_recovery_codes(self) -> tuple[list[str], list[str]]:
        """Fresh single-use recovery codes (shown once) and the hashes that are kept."""
        return self._new_recovery_codes()

    # -- login ------------------------------------------------------------------------------------

    def login(self, username: str, password: str) -> LoginStarted:
        """The password step. Raises InvalidCredentials, identically, for every failure."""
        password = _text(password)
        try:
            name: str | None = normalise_username(_text(username))
        except DomainError:
            name = None
        # The username as given when it is not a valid one: it is throttled all the same.
        self._throttle_login(name or _text(username)[:256])
        staff_id = self.directory.staff_id_for(name) if name else None
        member = self.staff(staff_id) if staff_id else None
        # Always one argon2 verification, whoever asks.
        verified = self.hasher.verify(member.password_hash if member else self._dummy(), password)
        if member is None:
            raise self._fail("login_failed", "unknown_account", None, "password")
        if self.throttle.locked_until(str(member.id), self.now()) is not None:
            raise self._fail("login_failed", "locked", str(member.id), "password")
        if member.status != "active":
            raise self._fail("login_failed", "disabled", str(member.id), "password")
        if not verified:
            raise self._fail("login_failed", "wrong_password", str(member.id), "password")
        # A right password does not clear the failure count: only a complete login
        # does, or else someone holding the password could guess TOTP codes forever.
        self._record(str(member.id), "login", "succeeded", stage="password")
        return self.second_factor_challenge(member)

    def second_factor_challenge(self, member: StaffMember) -> LoginStarted:
        """The challenge for /auth/mfa once the first step is proven (a password, or an
        activation code, R2.9): with a TOTP URI to enrol when the account has none."""
        challenge = secrets.token_urlsafe(32)
        enrolling = member.totp_secret is None
        expires = self.now() + self.rules.challenge_ttl
        self.challenges.add_challenge(
            token_digest(challenge), LoginChallenge(staff_id=str(member.id), expires_at=expires, enrolling=enrolling)
        )
        if enrolling:
            uri = pyotp.TOTP(self.enrolment_secret(challenge), interval=self.rules.totp_interval).provisioning_uri(
                name=member.username, issuer_name=ISSUER
            )
            return LoginStarted("mfa_enrollment_required", challenge, expires, uri)
        return LoginStarted("mfa_required", challenge, expires)

    def complete_mfa(self, challenge: str, code: str) -> SessionOpened:
        """The second-factor step: a TOTP code (or a recovery code) turns the challenge
        into a session. The challenge is spent whatever the outcome."""
        challenge, code = _text(challenge), _text(code)
        taken = self.challenges.take_challenge(token_digest(challenge))
        if taken is None or taken.expires_at <= self.now():
            raise self._fail("mfa_failed", "unknown_challenge", None, "mfa")
        staff_id = taken.staff_id
        member = self.staff(staff_id)
        if member is None or member.status != "active":
            raise self._fail("mfa_failed", "disabled", staff_id if member else None, "mfa")
        if self.throttle.locked_until(staff_id, self.now()) is not None:
            raise self._fail("mfa_failed", "locked", staff_id, "mfa")
        code = code.strip()
        recovery_codes: list[str] | None = None
        if taken.enrolling:
            secret = self.enrolment_secret(challenge)
            if member.totp_secret is not None or not self._fresh_totp(staff_id, secret, code):
                raise self._fail("mfa_failed", "wrong_code", staff_id, "enrolment")
            recovery_codes, hashes = self._new_recovery_codes()
            member.enrol_totp(secret, hashes)
            with self.acting(staff_id, purpose="second factor enrolment"):
                self.app._save(member)
            method = "totp_enrolment"
        elif len(code) == 6 and code.isascii() and code.isdigit():
            if member.totp_secret is None or not self._fresh_totp(staff_id, member.totp_secret, code):
                raise self._fail("mfa_failed", "wrong_code", staff_id, "mfa")
            method = "totp"
        else:
            spent = self._spend_recovery_code(member, code)
            if spent is None:
                raise self._fail("mfa_failed", "wrong_recovery_code", staff_id, "mfa")
            recovery_codes = spent or None
            method = "recovery_code"
        self.throttle.clear_failures(staff_id)
        opened = self._open_session(member)
        self._record(staff_id, "login", "succeeded", session_id=opened.session_id, stage="mfa", method=method)
        if recovery_codes is not None:
            opened = replace(opened, recovery_codes=recovery_codes)
        return opened

    def _spend_recovery_code(self, member: StaffMember, code: str) -> list[str] | None:
        """None if `code` is not one of the account's unused codes; else spend it and
        return the codes to show: none, or a whole new set when the one used was of
        the old, weak format (40 bits, unsalted), which cannot be rehashed because only
        the person holds the codes themselves."""
        # Every stored code is checked, matched or not, so the time taken does not say
        # which position matched.
        matches = [stored for stored in member.recovery_codes if self._recovery_code_matches(code, stored)]
        if not matches:
            return None
        fresh: list[str] = []
        try:
            member.use_recovery_code(matches[0])
            if self._recovery_code_outdated(matches[0]):
                fresh, hashes = self._new_recovery_codes()
                member.replace_recovery_codes(hashes)
            with self.acting(str(member.id), purpose="recovery code used"):
                self.app._save(member)
        except (DomainError, VersionConflict):
            # VersionConflict: another request spent a code on this account at the same
            # moment (optimistic concurrency); the code is not accepted twice.
            return None
        return fresh

    def _open_session(self, member: StaffMember) -> SessionOpened:
        # A new token at each login (R2.4): nothing from before the login survives it.
        token = secrets.token_urlsafe(32)
        now = self.now()
        context = current_context()
        session = SessionRecord(
            session_id=str(uuid.uuid4()), staff_id=str(member.id), created_at=now, last_seen_at=now,
            expires_at=now + self.rules.absolute_timeout,
            client_addr=context.client_addr if context else None,
        )
        self.sessions.create_session(session, token_digest(token))
        return SessionOpened(
            token=token, session_id=session.session_id, expires_at=session.expires_at,
            idle_timeout_seconds=int(self.rules.idle_timeout.total_seconds()),
            must_change_password=bool(member.must_change_password),
        )

    # -- sessions -------------------------------------------------------------------------------------

    def _expiry(self, session: SessionRecord, now: datetime) -> str | None:
        if session.ended_at is not None:
            return session.end_reason or "ended"
        if now >= session.expires_at:
            return "absolute_timeout"
        if now - session.last_seen_at >= self.rules.idle_timeout:
            return "idle_timeout"
        return None

    def authenticate(self, token: str) -> Authenticated:
        """Resolve a bearer token to the acting staff member; NotAuthenticated otherwise.

        Roles and portfolios come from the account as it is now, so a revoked role
        is gone from the very next request.
        """
        if not token:
            raise NotAuthenticated()
        now = self.now()
        # The session, its account's lock and break-glass grants, in one look.
        standing = self.sessions.session_standing(token_digest(_text(token)), now)
        if standing is None:
            raise NotAuthenticated()
        session = standing.session
        expired = self._expiry(session, now)
        if expired is not None:
            if session.ended_at is None:
                self.sessions.end_session(session.session_id, now, expired)
                self._record(session.staff_id, "session_ended", "succeeded",
                             session_id=session.session_id, reason=expired)
            raise NotAuthenticated()
        if standing.locked_until is not None:
            # Issue 10 item 7: a lockout (PCI DSS 8.3.4) ends the account's live
            # sessions, whichever path counted the failures: a stolen session must
            # not outlive the lock its owner's guesser (or the thief) set off.
            ended = self.sessions.end_sessions_of(session.staff_id, now, "locked_out")
            if ended:
                self._record(session.staff_id, "session_ended", "succeeded",
                             session_id=session.session_id, reason="locked_out")
            raise NotAuthenticated()
        # The account as it is now: checked against its stream version in the store,
        # so a role revoked by any process is gone from the very next request.
        member = self.principals.get(session.staff_id, version=standing.account_version)
        if member is None or not member.active:
            self.sessions.end_session(session.session_id, now, "account_disabled")
            raise NotAuthenticated()
        if now - session.last_seen_at >= self.rules.touch_every:
            self.sessions.touch_session(session.session_id, now)
        portfolios = set(member.portfolios)
        until: datetime | None = None
        for portfolio, expires_at in standing.break_glass:
            portfolios.add(portfolio)
            until = expires_at if until is None else max(until, expires_at)
        stepped = session.stepped_up_at
        if stepped is not None and now - stepped > STEP_UP_WINDOW:
            stepped = None
        actor = Actor(
            staff_id=session.staff_id, username=member.username, roles=member.roles,
            portfolios=frozenset(portfolios), session_id=session.session_id,
            stepped_up_at=stepped, break_glass_until=until, trained_at=member.trained_at,
        )
        return Authenticated(actor, session, bool(member.must_change_password))

    def logout(self, actor: Actor) -> None:
        """End the caller's session; its token is worthless from now on."""
        if actor.session_id is None:
            raise NotAuthenticated()
        self.sessions.end_session(actor.session_id, self.now(), "logout")
        self._record(actor.staff_id, "logout", "succeeded", session_id=actor.session_id)

    def list_sessions(self, actor: Actor, staff_id: str | None = None) -> list[dict[str, Any]]:
        """The caller's live sessions, or (with sessions:manage) anyone's. Never a token."""
        target = staff_id or actor.staff_id
        if target != actor.staff_id and not self.policy.permits(
            actor, Permission.SESSIONS_MANAGE, operation="sessions:list"
        ):
            raise SessionNotFound(target)
        now = self.now()
        listed = []
        for session in self.sessions.live_sessions_of(target):
            if self._expiry(session, now) is not None:
                continue
            listed.append({
                "id": session.session_id,
                "staff_id": session.staff_id,
                "created_at": session.created_at,
                "last_seen_at": session.last_seen_at,
                "expires_at": min(session.expires_at, session.last_seen_at + self.rules.idle_timeout),
                "client_addr": session.client_addr,
                "current": session.session_id == actor.session_id,
            })
        return listed

    def end_session(self, actor: Actor, session_id: str) -> None:
        """End one session: one's own, or anyone's with sessions:manage (R2.4)."""
        session = self.sessions.session(str(session_id))
        if session is None or session.ended_at is not None or (
            session.staff_id != actor.staff_id
            and not self.policy.permits(actor, Permission.SESSIONS_MANAGE, operation="sessions:end")
        ):
            # Someone else's session looks exactly like one that does not exist (the
            # refusal is in the access log, where only the audit trail reads it).
            raise SessionNotFound(session_id)
        self.sessions.end_session(session.session_id, self.now(), "ended_by_staff")
        self._record(actor.staff_id, "session_ended", "succeeded", session_id=actor.session_id,
                     ended_session_id=session.session_id, owner_staff_id=session.staff_id)

    def end_all_sessions(self, staff_id: str, reason: str) -> int:
        """End every session of an account (a monitoring response, R3.6; a password reset)."""
        return self.sessions.end_sessions_of(staff_id, self.now(), reason)

    # -- step-up and password ---------------------------------------------------------------------------

    def step_up(self, actor: Actor, code: str) -> datetime:
        """A fresh TOTP code proves presence again; reveals are allowed for 5 minutes (R2.7).
        Returns when the step-up lapses. Failures count towards the lockout."""
        member = self.staff(actor.staff_id)
        locked = self.throttle.locked_until(actor.staff_id, self.now()) is not None
        if (member is None or member.totp_secret is None or locked
                or not self._fresh_totp(actor.staff_id, member.totp_secret, _text(code).strip())):
            if not locked:
                self._count_failure(actor.staff_id)
            self._record(actor.staff_id, "step_up", "failed", session_id=actor.session_id,
                         reason="locked" if locked else "wrong_code")
            raise StepUpFailed()
        now = self.now()
        if actor.session_id is None:
            raise NotAuthenticated()
        self.sessions.step_up_session(actor.session_id, now)
        self._record(actor.staff_id, "step_up", "succeeded", session_id=actor.session_id)
        return now + STEP_UP_WINDOW

    def _opened_within_step_up(self, actor: Actor) -> bool:
        session = self.sessions.session(actor.session_id) if actor.session_id else None
        return session is not None and self.now() - session.created_at <= STEP_UP_WINDOW

    def change_password(self, actor: Actor, current_password: str, new_password: str) -> None:
        """Replace the password (the one-time one first of all); other sessions end.

        Needs a fresh TOTP code (R2.11), so that a stolen session cannot lock its owner
        out: a step-up within 5 minutes, or, for replacing a one-time password, the
        login that opened this very session within 5 minutes (a session that can do
        nothing else, opened with a fresh code: the same proof, without asking a new
        member of staff to wait 30 s for a second code).
        """
        member = self.staff(actor.staff_id)
        if member is None:
            raise NotAuthenticated()
        if not (member.must_change_password and self._opened_within_step_up(actor)):
            self.policy.require_step_up(actor, "auth:password_change")
        if not self.hasher.verify(member.password_hash, _text(current_password)):
            # A stolen session must not become a free password-guessing oracle.
            self._count_failure(actor.staff_id)
            self._record(actor.staff_id, "login_failed", "failed", session_id=actor.session_id,
                         reason="wrong_password", stage="password_change")
            raise CurrentPasswordWrong()
        self.check_password_rules(new_password, username=member.username)
        if hmac.compare_digest(_text(current_password).encode(), new_password.encode()):
            raise WeakPassword("must differ from the current password")
        member.change_password(self.hasher.hash(new_password), must_change_password=False)
        with self.acting(actor.staff_id, session_id=actor.session_id, purpose="password change"):
            self.app._save(member)
        # Whoever else held a session on the old password loses it.
        self.sessions.end_sessions_of(actor.staff_id, self.now(), "password_changed", keep=actor.session_id)
