"""Logging staff in, for tests that drive the API through Flask's client.

`login(client, app, ...)` walks the whole first-login path a new member of staff
takes: an operator creates the account (one-time password), the member signs in
with it, enrols TOTP with the URI they are shown, and changes the password. The
result is the `Authorization` header to send, carrying what a test may need later
(the TOTP generator for step-up, ids, the password, the recovery codes).

`quick_login` gives the same result for tests that only need a signed-in actor:
the account is stored already enrolled, with a password hashed once per process,
and the member signs in through /auth/login and /auth/mfa (one argon2 check
instead of four).

Codes follow the identity service's clock (tests may move it) and never reuse a
TOTP time-step (each code is accepted once, R2.2): `next_code()` is the code for
the first step not yet used, which the ±1 step window accepts.
"""

from __future__ import annotations

import itertools

import uuid
from collections.abc import Iterable
from typing import Any

import pyotp

from application.context import RequestContext, acting_as
from application.policy import OPERATOR_ROLE
from application.security import Actor
from domain.staff import StaffMember
from infrastructure.passwords import new_recovery_codes

PASSWORD = "plum-coloured tractor honks at dawn"  # 12+ characters, not a common password
OPERATOR = RequestContext(actor_id="operator:tests", via="cli", purpose="test setup")

_HASHES: dict[str, str] = {}


class AuthHeaders(dict[str, str]):
    """`{"Authorization": "Bearer ..."}`, plus who it is and their second factor."""

    def __init__(self, token: str, *, app: Any, staff_id: str, username: str, password: str,
                 totp: pyotp.TOTP, last_step: int, session_id: str,
                 recovery_codes: list[str] | None = None) -> None:
        super().__init__({"Authorization": f"Bearer {token}"})
        self.token = token
        self.app = app
        self.staff_id = staff_id
        self.username = username
        self.password = password
        self.totp = totp
        self.last_step = last_step
        self.session_id = session_id
        self.recovery_codes = recovery_codes or []

    def next_code(self) -> str:
        """A TOTP code for a step later than any used so far (accepted once)."""
        now_step = current_step(self.app)
        step = max(now_step, self.last_step + 1)
        if step > now_step + 1:
            raise RuntimeError("no fresh TOTP code until the clock moves on a step (30 s): "
                               "install a MovableClock with use_clock() and advance it")
        self.last_step = step
        return self.totp.generate_otp(step)

    def with_purpose(self, purpose: str) -> dict[str, str]:
        return {**self, "X-Purpose": purpose}


def components(app: Any) -> Any:
    return app.extensions["strongroom"]


def current_step(app: Any) -> int:
    return int(components(app).identity.now().timestamp()) // 30


def create_staff(app: Any, username: str | None = None, roles: Iterable[str] = ("agent",),
                 portfolios: Iterable[str] = ("retail",)) -> tuple[str, str, str]:
    """An account made the way an operator makes one: (staff id, username, one-time password)."""
    with acting_as(OPERATOR):
        created = components(app).staff_admin.add_staff_as_operator(
            username=username or f"staff-{uuid.uuid4().hex[:10]}", display_name="Test Staff",
            roles=list(roles), portfolios=list(portfolios),
        )
    return created.staff_id, created.username, created.one_time_password


def record_training(app: Any, staff_id: str, completed_at: Any = None) -> None:
    """A completed security training for `staff_id`, recorded by the operator (R6.4):
    without one, a member of staff reveals and exports nothing. `completed_at`
    defaults to now on the identity's clock."""
    operator = Actor(staff_id=OPERATOR.actor_id, username="tests", roles=frozenset({OPERATOR_ROLE}),
                     portfolios=frozenset())
    with acting_as(OPERATOR):
        components(app).training.record(
            operator, staff_id, course="security-awareness", course_version="2026.1",
            completed_at=completed_at or components(app).identity.now(), evidence_ref="LMS-TEST-0001",
        )


def sign_in(client: Any, app: Any, username: str, password: str, totp: pyotp.TOTP | None = None,
            last_step: int = -1) -> tuple[dict[str, Any], pyotp.TOTP, int]:
    """/auth/login then /auth/mfa; enrols TOTP when asked to. Returns (mfa body, totp, step used)."""
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.get_json()
    started = response.get_json()
    if started["status"] == "mfa_enrollment_required":
        totp = pyotp.TOTP(pyotp.parse_uri(started["totp_uri"]).secret)
    assert totp is not None, "account is enrolled: pass its TOTP"
    step = max(current_step(app), last_step + 1)
    response = client.post("/api/v1/auth/mfa", json={"challenge": started["challenge"],
                                                     "code": totp.generate_otp(step)})
    assert response.status_code == 200, response.get_json()
    return response.get_json(), totp, step


def login(client: Any, app: Any, username: str | None = None, roles: Iterable[str] = ("agent",),
          portfolios: Iterable[str] = ("retail",), password: str = PASSWORD, *, trained: bool = True) -> AuthHeaders:
    """A new member of staff, through the whole first-login path; returns their headers.
    `trained`: with a security training recorded (R6.4), as staff who reveal need."""
    staff_id, name, one_time = create_staff(app, username, roles, portfolios)
    if trained:
        record_training(app, staff_id)
    opened, totp, step = sign_in(client, app, name, one_time)
    headers = {"Authorization": f"Bearer {opened['token']}"}
    response = client.post("/api/v1/auth/password", headers=headers,
                           json={"current_password": one_time, "new_password": password})
    assert response.status_code == 200, response.get_json()
    return AuthHeaders(opened["token"], app=app, staff_id=staff_id, username=name, password=password,
                       totp=totp, last_step=step, session_id=opened["session_id"],
                       recovery_codes=opened.get("recovery_codes"))


def activate(client: Any, app: Any, username: str, code: str, password: str = PASSWORD,
             *, trained: bool = True) -> AuthHeaders:
    """An account made through the API, first signed in by its person (R2.9): the mailed
    activation code and a new password at /auth/activate, then TOTP enrolment at /auth/mfa."""
    response = client.post("/api/v1/auth/activate", json={"username": username, "code": code,
                                                           "new_password": password})
    assert response.status_code == 200, response.get_json()
    started = response.get_json()
    assert started["status"] == "mfa_enrollment_required", started
    totp = pyotp.TOTP(pyotp.parse_uri(started["totp_uri"]).secret)
    step = current_step(app)
    response = client.post("/api/v1/auth/mfa", json={"challenge": started["challenge"],
                                                     "code": totp.generate_otp(step)})
    assert response.status_code == 200, response.get_json()
    opened = response.get_json()
    staff_id = components(app).identity.directory.staff_id_for(username)
    if trained:
        record_training(app, str(staff_id))
    return AuthHeaders(opened["token"], app=app, staff_id=staff_id, username=username, password=password,
                       totp=totp, last_step=step, session_id=opened["session_id"],
                       recovery_codes=opened.get("recovery_codes"))


def quick_login(client: Any, app: Any, username: str | None = None, roles: Iterable[str] = ("agent",),
                portfolios: Iterable[str] = ("retail",), *, stepped_up: bool = False,
                trained: bool = True) -> AuthHeaders:
    """Like `login`, with the account stored already enrolled and its password set;
    `stepped_up` for what needs a step-up within 5 minutes (R2.7, R2.11); `trained`
    with a security training completed now (R6.4)."""
    built = components(app)
    hasher = built.identity.hasher
    if PASSWORD not in _HASHES:
        _HASHES[PASSWORD] = hasher.hash(PASSWORD)
    secret = pyotp.random_base32()
    _codes, hashes = new_recovery_codes()
    member = StaffMember.enrol(
        username=username or f"staff-{uuid.uuid4().hex[:10]}", display_name="Test Staff",
        roles=list(roles), portfolios=list(portfolios), password_hash=_HASHES[PASSWORD],
        must_change_password=False,
    )
    member.enrol_totp(secret, hashes)
    if trained:
        member.record_training(course="security-awareness", course_version="2026.1",
                               completed_at=built.identity.now().isoformat(), evidence_ref="LMS-TEST-0001",
                               recorded_by=OPERATOR.actor_id)
    with acting_as(OPERATOR):
        built.app._save(member)
    built.identity.directory.reserve_username(member.username, str(member.id), built.identity.now())
    opened, totp, step = sign_in(client, app, member.username, PASSWORD, pyotp.TOTP(secret))
    headers = AuthHeaders(opened["token"], app=app, staff_id=str(member.id), username=member.username,
                          password=PASSWORD, totp=totp, last_step=step, session_id=opened["session_id"])
    if stepped_up:
        step_up(client, headers)
    return headers


def step_up(client: Any, headers: AuthHeaders) -> None:
    """Step up the session: for 5 minutes, reveals, break-glass, approvals, role changes
    and a password change are allowed (R2.7, R2.11)."""
    response = client.post("/api/v1/auth/step-up", headers=headers, json={"code": headers.next_code()})
    assert response.status_code == 200, response.get_json()


class MovableClock:
    """A clock tests move by hand; install with `use_clock(app, clock)`."""

    def __init__(self, start: Any = None) -> None:
        from datetime import UTC, datetime

        self.now = start or datetime.now(UTC)

    def __call__(self) -> Any:
        return self.now

    def advance(self, **delta: float) -> None:
        from datetime import timedelta

        self.now = self.now + timedelta(**delta)


def use_clock(app: Any, clock: Any) -> None:
    """Every identity decision (sessions, lockout, TOTP, break-glass) reads this clock."""
    components(app).identity.clock = clock


_ADDRESSES = (f"198.18.{n // 250}.{n % 250 + 1}" for n in itertools.count())


def from_a_new_address() -> dict[str, str]:
    """`environ_base` for a request from an address no other request used: attacks
    spread over many addresses, since one address is throttled after 5 failed logins
    (R2.11, tests/web/test_throttling.py)."""
    return {"REMOTE_ADDR": next(_ADDRESSES)}
