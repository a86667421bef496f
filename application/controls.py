"""The controls Strongroom claims, as data: the compliance evidence matrix's rows.

Each control names the framework clause, the SPEC requirements (R-numbers) that build
it and the modules that carry it. Which tests prove it is not written here: each test
says so itself with `@pytest.mark.controls("PCI-DSS-3.5.1", ...)`, and
`strongroom compliance evidence` joins the two (issue 14, item 4). A test cannot
drift away from the control it proves without the marker going with it.

Status is stated honestly: `covered` means the product does it and at least one
test would fail without it (the suite checks that every covered control has a test);
`not yet covered` names what the product does not do (yet), with no test pointed at
it for show; `outside the product` is the operator's or the host's part.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Framework(StrEnum):
    PCI_DSS = "PCI DSS v4.0.1"
    GDPR = "GDPR"
    CCPA = "CCPA"
    ASVS = "OWASP ASVS 5.0"


class Coverage(StrEnum):
    COVERED = "covered"
    NOT_YET = "not yet covered"
    OUTSIDE = "outside the product"


@dataclass(frozen=True)
class Control:
    """One claimed control: `id` is what test markers name."""

    id: str
    framework: Framework
    title: str
    requirements: tuple[str, ...]
    code: tuple[str, ...]
    status: Coverage = Coverage.COVERED
    note: str = ""


def _pci(number: str, title: str, requirements: tuple[str, ...], code: tuple[str, ...],
         status: Coverage = Coverage.COVERED, note: str = "") -> Control:
    return Control(f"PCI-DSS-{number}", Framework.PCI_DSS, title, requirements, code, status, note)


def _gdpr(article: str, title: str, requirements: tuple[str, ...], code: tuple[str, ...],
          status: Coverage = Coverage.COVERED, note: str = "") -> Control:
    return Control(f"GDPR-{article}", Framework.GDPR, title, requirements, code, status, note)


def _ccpa(section: str, title: str, requirements: tuple[str, ...], code: tuple[str, ...],
          status: Coverage = Coverage.NOT_YET, note: str = "") -> Control:
    return Control(f"CCPA-{section}", Framework.CCPA, title, requirements, code, status, note)


def _asvs(chapter: str, title: str, requirements: tuple[str, ...], code: tuple[str, ...],
          status: Coverage = Coverage.COVERED, note: str = "") -> Control:
    return Control(f"ASVS-{chapter}", Framework.ASVS, title, requirements, code, status, note)


_REQUESTS = ("application/privacy_requests.py", "domain/privacy_requests.py", "web/privacy_api.py", "cli/requests.py")
_EXPORT = ("application/privacy_export.py", "infrastructure/privacy_export.py")
_CONSENT = ("application/consent.py", "domain/consent.py")
_MONITOR = ("application/monitoring.py", "infrastructure/monitor.py", "application/alerts.py", "domain/alerts.py",
            "infrastructure/webhooks.py", "cli/monitor.py")
_TRAINING = ("application/training.py", "application/policy.py", "web/training_api.py")

CONTROLS: tuple[Control, ...] = (
    # -- PCI DSS v4.0.1 -------------------------------------------------------------------
    _pci("3.3.1", "Sensitive authentication data (CVV, track, PIN) is not retained",
         ("R1.7", "R2.12"), ("domain/values.py", "domain/free_text.py", "web/schemas_customers.py")),
    _pci("3.4.1", "PAN is masked when displayed (BIN and last four at most)",
         ("R1.7", "R2.7"), ("domain/values.py", "application/policy.py")),
    _pci("3.5.1", "PAN is unreadable wherever it is stored (strong cryptography, keyed hash)",
         ("R1.1", "R1.3", "R1.7"), ("infrastructure/crypto/envelope.py", "infrastructure/crypto/blind_index.py",
                                    "infrastructure/readmodel.py", "domain/catalogue.py")),
    _pci("3.6.1", "Keys protecting stored account data are secured (DEKs wrapped by a KEK, KEK in an HSM)",
         ("R1.1", "R1.2", "R1.4", "R4.2"), ("infrastructure/crypto/kek.py", "infrastructure/crypto/keystore.py",
                                            "infrastructure/crypto/pkcs11_token.py", "infrastructure/backup/keys.py")),
    _pci("3.7.4", "Key changes at the end of the cryptoperiod (KEK rotation re-wraps DEKs)",
         ("R1.4",), ("infrastructure/kek_rotation.py", "cli/keys.py")),
    _pci("3.7.5", "Keys are retired and destroyed, never to return",
         ("R5.4", "R4.6"), ("infrastructure/crypto/keystore.py", "domain/erasure.py", "infrastructure/backup/restore.py")),
    _pci("3.7.7", "Unauthorised substitution of keys is prevented (a wrong KEK stops start-up)",
         ("R1.4",), ("infrastructure/crypto/kek.py", "infrastructure/crypto/keyring.py")),
    _pci("6.3.2", "An inventory of bespoke and third-party software components (SBOM)",
         ("R7.5",), ("infrastructure/software_inventory.py", "cli/compliance.py", "infrastructure/audit/bundle.py")),
    _pci("6.3.3", "Components are kept patched: pins compared, known vulnerabilities checked",
         ("R7.5",), ("infrastructure/software_inventory.py", "infrastructure/vulnerability_check.py", "cli/doctor.py")),
    _pci("7.2.1", "An access control model: permissions by role, decided in one policy",
         ("R2.5", "R2.10"), ("application/security.py", "application/policy.py")),
    _pci("7.2.2", "Least privilege by job function and record scope",
         ("R2.5", "R2.6", "R2.7"), ("application/policy.py", "application/security.py")),
    _pci("7.2.4", "User accounts and their privileges are reviewed at least every six months",
         ("R6.2", "R6.1"), ("application/recertification.py", "domain/recertification.py",
                            "web/recertification_api.py", "cli/recert.py", "application/reports.py"),
         note="a campaign every quarter by default; the operator schedules `recert start`"),
    _pci("7.2.5", "Application and system accounts have the least privileges they need",
         ("R3.4",), ("infrastructure/audit/roles.py", "cli/db.py")),
    _pci("8.2.1", "Every user has a unique id",
         ("R2.1",), ("application/staff_admin.py", "domain/staff.py")),
    _pci("8.2.4", "Adding, changing and removing user ids and privileges is authorised (four eyes)",
         ("R2.9",), ("application/staff_admin.py", "application/activation.py")),
    _pci("8.2.6", "Inactive user accounts are removed or disabled within 90 days",
         ("R6.1",), (), Coverage.NOT_YET,
         "dormant accounts (no sign-in for 90 days) are flagged in the access review (R6.1) and their "
         "roles can be revoked in a recertification (R6.2); nothing disables them automatically yet"),
    _pci("8.2.8", "A session idle for 15 minutes needs a new authentication",
         ("R2.4",), ("application/identity.py", "infrastructure/identity_store.py")),
    _pci("8.3.1", "Every sign-in needs a password and a second factor",
         ("R2.1", "R2.2"), ("application/identity.py", "web/auth_api.py")),
    _pci("8.3.2", "Authentication factors are unreadable in storage (hashes, keyed hashes)",
         ("R2.1", "R2.2", "R2.4"), ("infrastructure/passwords.py", "infrastructure/identity_store.py")),
    _pci("8.3.4", "Lockout after at most 10 failed attempts, for at least 30 minutes",
         ("R2.3",), ("application/lockout.py", "application/identity.py")),
    _pci("8.3.5", "A first password is changed at first use",
         ("R2.9",), ("application/identity.py", "domain/staff.py")),
    _pci("8.3.6", "Passwords of at least 12 characters, common ones refused",
         ("R2.1",), ("application/password_rules.py",)),
    _pci("8.4.2", "MFA for all access to cardholder data",
         ("R2.2",), ("application/identity.py", "web/auth.py")),
    _pci("8.5.1", "MFA resists replay and cannot be bypassed",
         ("R2.2",), ("application/identity.py",)),
    _pci("8.6.1", "Interactive use of system accounts is attributed to a person",
         ("R3.2",), ("cli/context.py", "application/context.py")),
    _pci("8.6.2", "Passwords of system accounts are not in scripts or configuration files",
         ("R1.4",), ("infrastructure/crypto/pkcs11_token.py", "infrastructure/composition.py")),
    _pci("10.2.1.1", "Audit logs record every individual access to cardholder data",
         ("R3.2",), ("application/audit.py", "application/customer_service.py")),
    _pci("10.2.1.2", "Audit logs record every action by an administrator",
         ("R3.1",), ("application/staff_admin.py", "application/context.py")),
    _pci("10.2.1.3", "Audit logs record access to the audit logs",
         ("R3.2", "R3.5"), ("application/audit_trail.py",)),
    _pci("10.2.1.4", "Audit logs record invalid access attempts",
         ("R3.2",), ("application/policy.py", "application/identity.py")),
    _pci("10.2.2", "Each record holds who, what, when, where from, the outcome and the resource",
         ("R3.1",), ("application/context.py", "infrastructure/crypto/envelope.py", "infrastructure/audit/metadata.py")),
    _pci("10.3.2", "Audit logs are protected from modification (append-only)",
         ("R3.4",), ("infrastructure/eventstore/postgres_schema.py", "infrastructure/eventstore/sqlite.py",
                     "infrastructure/audit/roles.py")),
    _pci("10.3.3", "Audit logs are backed up promptly to a place hard to alter",
         ("R3.3", "R4.1"), ("infrastructure/backup/create.py", "infrastructure/backup/targets.py")),
    _pci("10.3.4", "Changes to audit logs are detected (hash chain, signed checkpoints)",
         ("R3.3",), ("infrastructure/audit/chain.py", "infrastructure/audit/verify.py",
                     "infrastructure/audit/checkpoints.py")),
    _pci("10.4.1", "Audit logs can be reviewed: who did what, who saw what",
         ("R3.5",), ("application/audit_trail.py", "cli/audit.py", "web/audit_api.py")),
    _pci("10.4.1.1", "Automated mechanisms review the audit logs",
         ("R3.6",), _MONITOR),
    _pci("10.5.1", "Audit log history is kept (at least 12 months), erasure included",
         ("R3.3", "R3.4", "R5.4"), ("infrastructure/audit/chain.py", "infrastructure/eventstore/shared.py")),
    _pci("10.6.1", "System clocks are synchronised",
         ("R4.4",), ("infrastructure/eventstore/shared.py",), Coverage.OUTSIDE,
         "clock synchronisation (NTP) is the host's; the log stamps UTC and never lets a clock "
         "stepping back reorder it"),
    _pci("10.7.2", "Failures of critical security controls are detected and reported",
         ("R3.3", "R3.6", "R7.2"), ("web/health.py", "infrastructure/audit/checkpoints.py",
                                    "infrastructure/audit/verify.py", "application/monitoring.py"),
         note="failed chain verifications, failed drills and overdue backups raise alerts (R3.6)"),
    _pci("12.6.1", "A security awareness programme for all personnel",
         ("R6.4",), _TRAINING,
         note="the product records courses and completions and withholds reveal and export from staff "
              "with none current; the programme's content is the entity's"),
    _pci("12.6.2", "The security awareness programme is reviewed at least every 12 months",
         ("R6.4",), ("application/training.py",), Coverage.OUTSIDE,
         "reviewing the programme is the entity's; each completion records the course version it was"),
    _pci("12.6.3", "Personnel receive training upon hire and at least once every 12 months",
         ("R6.4",), _TRAINING, note="the validity (12 months) is a setting; a lapse shows in the access review"),
    # -- GDPR -------------------------------------------------------------------------------
    _gdpr("5.1.e", "Storage limitation: kept no longer than necessary (key destruction)",
          ("R5.1", "R5.4", "R5.5"), ("domain/catalogue.py", "domain/erasure.py", "application/retention.py",
                                     "application/retention_run.py", "cli/retention.py",
                                     "infrastructure/backup/generations.py"),
          note="the operator schedules `retention run`; key backups expire with their generation key"),
    _gdpr("15", "Right of access (with who accessed the data)", ("R5.3",), (*_REQUESTS, *_EXPORT)),
    _gdpr("16", "Right to rectification", ("R5.3",), (*_REQUESTS, "application/customers.py")),
    _gdpr("17", "Right to erasure (crypto-shredding, certified, never undone by a restore)",
          ("R5.3", "R5.4", "R4.6"), ("application/customers.py", "application/erasure_service.py",
                                     "infrastructure/audit/erasure_certificate.py", "domain/erasure.py",
                                     "infrastructure/crypto/keystore.py", "infrastructure/backup/restore.py",
                                     "infrastructure/backup/generations.py", *_REQUESTS)),
    _gdpr("18", "Right to restriction of processing", ("R5.3", "R5.6"),
          (*_REQUESTS, "domain/customer.py", *_CONSENT)),
    _gdpr("20", "Right to data portability (JSON and CSV, signed)", ("R5.3",), (*_REQUESTS, *_EXPORT)),
    _gdpr("21", "Right to object (direct marketing, profiling)", ("R5.2", "R5.3"), (*_REQUESTS, *_CONSENT)),
    _gdpr("25", "Data protection by design and by default (masked by default, random ids)",
          ("R1.5", "R2.7"), ("application/policy.py", "domain/customer.py")),
    _gdpr("30", "Records of processing activities", ("R5.1",), ("domain/catalogue.py", "cli/compliance.py")),
    _gdpr("32", "Security of processing: encryption, integrity, restore, regular testing",
          ("R1.1", "R1.6", "R4.3", "R4.4"), ("infrastructure/crypto/envelope.py", "infrastructure/backup/drill.py",
                                             "infrastructure/backup/restore.py", "infrastructure/tls.py")),
    _gdpr("33", "Breach notification: what a breach reached (who saw what) can be established",
          ("R3.2", "R3.5"), ("application/audit_trail.py", "cli/audit.py"),
          note="misuse is alerted as it happens (R3.6); notifying the authority is the controller's"),
    # -- CCPA §1798.100-.135 ----------------------------------------------------------------
    _ccpa("1798.100", "Right to know and notice at collection", ("R5.2", "R5.3"), (*_REQUESTS, *_EXPORT, *_CONSENT),
          Coverage.COVERED, "the ledger records the notice version each answer was given under; "
                            "the notice itself is the business's"),
    _ccpa("1798.105", "Right to delete", ("R5.3", "R5.4"), ("application/customers.py", "domain/erasure.py",
                                                            "application/erasure_service.py", *_REQUESTS),
          Coverage.COVERED),
    _ccpa("1798.106", "Right to correct", ("R5.3",), (*_REQUESTS, "application/customers.py"), Coverage.COVERED),
    _ccpa("1798.110", "Right to know what is collected", ("R5.3",), (*_REQUESTS, *_EXPORT), Coverage.COVERED),
    _ccpa("1798.115", "Right to know what is sold or shared", ("R5.3",), (),
          note="a data-sharing run is recorded as an export naming each customer, which the subject's "
               "access export lists; no test proves that, and the third parties are not recorded"),
    _ccpa("1798.120", "Right to opt out of sale or sharing", ("R5.2", "R5.3"), (*_REQUESTS, *_CONSENT),
          Coverage.COVERED),
    _ccpa("1798.121", "Right to limit use of sensitive personal information", ("R5.2", "R5.3"), (),
          note="no request kind limits the use of sensitive data to what the service needs"),
    _ccpa("1798.125", "No discrimination for exercising rights", (), (), Coverage.OUTSIDE,
          "a business practice, not a function of the records system"),
    _ccpa("1798.130", "Verified requests answered within 45 days (extendable once by 45)", ("R5.3",),
          _REQUESTS, Coverage.COVERED,
          "an overdue request raises an alert; how consumers submit requests (a toll-free number, a web "
          "form) is the business's, calling this API"),
    _ccpa("1798.135", "Opt-out links on the business's website", (), (), Coverage.OUTSIDE,
          "the business's web site, which calls this API"),
    # -- OWASP ASVS 5.0 ---------------------------------------------------------------------
    _asvs("V1", "Encoding and Sanitization (logs, replay lines, parameterised SQL)",
          ("R3.5", "R7.3"), ("web/app.py", "cli/audit.py", "infrastructure/sql.py")),
    _asvs("V2", "Validation and Business Logic", ("R2.11", "R2.12"),
          ("web/schemas.py", "domain/free_text.py", "domain/customer.py", "application/throttle.py")),
    _asvs("V3", "Web Frontend Security", (), (), Coverage.OUTSIDE,
          "a JSON API with no browser front end; its headers (HSTS, no-store) are under V12 and V14"),
    _asvs("V4", "API and Web Service", ("R2.10",), ("web/app.py", "web/openapi.py", "web/auth.py")),
    _asvs("V5", "File Handling", (), (), Coverage.OUTSIDE, "the API takes no files"),
    _asvs("V6", "Authentication", ("R2.1", "R2.2", "R2.3"),
          ("application/identity.py", "application/password_rules.py", "application/lockout.py")),
    _asvs("V7", "Session Management", ("R2.4",), ("application/identity.py", "infrastructure/identity_store.py")),
    _asvs("V8", "Authorization", ("R2.5", "R2.6", "R2.10"), ("application/policy.py", "application/security.py")),
    _asvs("V9", "Self-contained Tokens", (), (), Coverage.OUTSIDE, "sessions are opaque tokens kept server-side"),
    _asvs("V10", "OAuth and OIDC", (), (), Coverage.OUTSIDE, "no OAuth or OpenID Connect"),
    _asvs("V11", "Cryptography", ("R1.1", "R1.3"),
          ("infrastructure/crypto/envelope.py", "infrastructure/crypto/blind_index.py", "infrastructure/crypto/kek.py")),
    _asvs("V12", "Secure Communication", ("R1.6",), ("infrastructure/tls.py", "cli/serve.py", "infrastructure/mail.py")),
    _asvs("V13", "Configuration", ("R7.1", "R7.5"), ("infrastructure/composition.py", "cli/doctor.py")),
    _asvs("V14", "Data Protection", ("R1.3", "R7.2"), ("web/headers.py", "web/metrics.py", "infrastructure/logs.py")),
    _asvs("V15", "Secure Coding and Architecture (dependencies inventoried and patched)",
          ("R7.5",), ("infrastructure/software_inventory.py", "infrastructure/vulnerability_check.py")),
    _asvs("V16", "Security Logging and Error Handling", ("R3.1", "R7.3", "R7.6"),
          ("infrastructure/logs.py", "web/errors.py")),
    _asvs("V17", "WebRTC", (), (), Coverage.OUTSIDE, "no WebRTC"),
)

BY_ID: dict[str, Control] = {control.id: control for control in CONTROLS}
