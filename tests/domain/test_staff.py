"""Stories of a staff account: enrolment, second factor, roles, disabling."""

from __future__ import annotations

import pytest

from domain.errors import (
    InvalidField,
    MfaAlreadyEnrolled,
    RecoveryCodeNotAccepted,
    StaffDisabled,
    StaffNotDisabled,
    UnknownRole,
)
from domain.staff import DEFAULT_ROLES, PRIVILEGED_ROLES, StaffMember
from tests.domain.examples import enrol_alice

CODES = [f"$argon2id$recovery-code-hash-{n}" for n in range(10)]


@pytest.mark.controls("PCI-DSS-8.3.5")
def test_a_new_account_must_change_its_one_time_password_and_has_no_second_factor_yet() -> None:
    alice = enrol_alice(username="  Alice.Agent ")
    record = alice.to_record()
    assert record["username"] == "alice.agent"
    assert record["status"] == "active"
    assert record["must_change_password"] is True
    assert record["mfa_enrolled"] is False
    assert alice.id.version == 4


def test_the_account_view_holds_no_secret() -> None:
    alice = enrol_alice()
    alice.enrol_totp("JBSWY3DPEHPK3PXP", CODES)
    shown = repr(alice.to_record())
    for secret in [alice.password_hash, "JBSWY3DPEHPK3PXP", *CODES]:
        assert secret not in shown


@pytest.mark.parametrize("username", ["al", "a" * 65, "alice smith", "alice@example", "ålice"])
def test_a_username_outside_the_rules_is_refused(username: str) -> None:
    with pytest.raises(InvalidField) as refused:
        enrol_alice(username=username)
    assert refused.value.field == "username"


def test_the_password_is_changed_and_the_change_requirement_cleared() -> None:
    alice = enrol_alice()
    alice.change_password("$argon2id$new-hash")
    assert alice.password_hash == "$argon2id$new-hash"
    assert alice.must_change_password is False

    alice.change_password("$argon2id$reset-by-admin", must_change_password=True)
    assert alice.must_change_password is True


def test_attack_a_second_totp_enrolment_cannot_replace_the_first() -> None:
    alice = enrol_alice()
    alice.enrol_totp("JBSWY3DPEHPK3PXP", CODES)
    with pytest.raises(MfaAlreadyEnrolled):
        alice.enrol_totp("ATTACKERSSECRET2")
    assert alice.totp_secret == "JBSWY3DPEHPK3PXP"

    alice.reset_totp("lost phone, identity checked in person")
    assert alice.totp_secret is None and alice.recovery_codes == []
    alice.enrol_totp("NEWSECRETNEWSECR")
    alice.replace_recovery_codes(CODES)
    assert alice.to_record()["recovery_codes_left"] == 10


def test_attack_a_recovery_code_works_once() -> None:
    alice = enrol_alice()
    alice.enrol_totp("JBSWY3DPEHPK3PXP", CODES)
    alice.use_recovery_code(CODES[3])
    assert CODES[3] not in alice.recovery_codes and len(alice.recovery_codes) == 9
    with pytest.raises(RecoveryCodeNotAccepted):
        alice.use_recovery_code(CODES[3])


def test_roles_are_granted_and_revoked_and_only_changes_are_recorded() -> None:
    alice = enrol_alice()
    alice.change_roles(grant=["supervisor"], revoke=["agent"])
    assert alice.roles == ["supervisor"]
    events_before = len(alice.pending_events)
    alice.change_roles(grant=["supervisor"], revoke=["auditor"])  # nothing changes
    assert len(alice.pending_events) == events_before
    (roles_changed,) = [e for e in alice.pending_events if isinstance(e, StaffMember.RolesChanged)]
    assert (roles_changed.grant, roles_changed.revoke) == (["supervisor"], ["agent"])


def test_an_unknown_role_is_refused_without_echoing_it() -> None:
    alice = enrol_alice()
    with pytest.raises(UnknownRole) as refused:
        alice.change_roles(grant=["superuser-ada-lovelace"])
    assert "superuser-ada-lovelace" not in str(refused.value)
    with pytest.raises(UnknownRole):
        enrol_alice(roles=["root"])


def test_a_role_cannot_be_granted_and_revoked_at_once() -> None:
    with pytest.raises(InvalidField):
        enrol_alice().change_roles(grant=["auditor"], revoke=["auditor"])


def test_the_role_vocabulary_is_the_specified_one() -> None:
    assert set(DEFAULT_ROLES) == {
        "agent", "supervisor", "compliance_officer", "dpo", "security_officer", "auditor", "admin",
    }
    assert set(PRIVILEGED_ROLES) == set(DEFAULT_ROLES) - {"agent", "supervisor"}
    assert enrol_alice(roles=["auditor"]).holds_privileged_role
    assert not enrol_alice().holds_privileged_role


def test_portfolios_are_set_as_a_whole() -> None:
    alice = enrol_alice()
    alice.change_portfolios(["uk-private", "uk-retail", "uk-private"])
    assert alice.portfolios == ["uk-private", "uk-retail"]


def test_a_disabled_account_cannot_sign_in_again_or_gain_roles_but_can_lose_them() -> None:
    alice = enrol_alice(roles=["agent", "supervisor"])
    alice.disable("left the company")
    assert alice.to_record()["status"] == "disabled"
    with pytest.raises(StaffDisabled):
        alice.change_password("$argon2id$x")
    with pytest.raises(StaffDisabled):
        alice.enrol_totp("JBSWY3DPEHPK3PXP")
    with pytest.raises(StaffDisabled):
        alice.change_roles(grant=["admin"])
    with pytest.raises(StaffDisabled):
        alice.disable("twice")
    alice.change_roles(revoke=["supervisor"])
    assert alice.roles == ["agent"]

    alice.enable("returned from leave")
    assert alice.status == "active"
    with pytest.raises(StaffNotDisabled):
        alice.enable("again")
