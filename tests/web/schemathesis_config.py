"""What schemathesis is told about this API: which statuses answer the rules that JSON
Schema cannot state. Shared by the in-process run (tests/web/test_schemathesis.py) and
the run over real TLS against `strongroom serve` (tests/e2e/test_schemathesis_tls.py),
so both hold the API to the same document with the same allowances.
"""

from __future__ import annotations

from typing import Any

# The rules JSON Schema cannot state, per operation: the status that states them may
# answer a request the schema calls valid. Each is documented on the operation.
_VALID_BUT_REFUSED = {
    # Luhn (PAN), mod-97 (IBAN), e-mail and phone syntax, national id shape, a portfolio
    # the caller holds: checked by the domain and the policy on the values.
    "POST /api/v1/customers": ["422"],
    # A KYC transition the domain forbids, the same value rules as above; If-Match naming
    # a version other than the one on file is a state conflict (412), like a 409.
    "PATCH /api/v1/customers/{customer_id}": ["412", "422"],
    # More than one of email/phone/national_id/pan (OpenAPI parameters cannot say "at
    # most one of"), or a cursor this API never gave.
    "GET /api/v1/customers": ["422"],
    # `to` before the customer existed.
    "POST /api/v1/customers/{customer_id}/revert": ["422"],
    # An Idempotency-Key already used for another body (422 `idempotency_key_reused`, R7.6)
    # is a state of the store, like a stale If-Match; so on the other writes above too.
    "POST /api/v1/customers/{customer_id}/interactions": ["422"],
    # `since` after `until`, or a cursor this API never gave.
    "GET /api/v1/audit/events": ["422"],
    # The same for alerts (R3.6); a note of blanks only is refused by the domain.
    "GET /api/v1/alerts": ["422"],
    "POST /api/v1/alerts/{alert_id}/ack": ["422"],
    # The current password, and the password rules (not a common password, not the username).
    "POST /api/v1/auth/password": ["422"],
    # Neither a role to grant nor one to revoke (both lists may be absent or empty, not both).
    "POST /api/v1/staff/{staff_id}/roles": ["422"],
    # The username, role and work e-mail rules (R2.9: the address an activation goes to).
    "POST /api/v1/staff": ["422"],
    # The password rules for the new password (the code is not spent, R2.9).
    "POST /api/v1/auth/activate": ["422"],
    # A reason of blanks only.
    "POST /api/v1/approvals/{approval_id}/reject": ["422"],
    # Issue 13: a channel the purpose does not use (data sharing by phone); a time of receipt
    # in the future; an extension after the deadline; a reason of blanks; rectified values
    # the domain refuses; an export key that is not X25519 or RSA, or both a passphrase and
    # a key; lifting a restriction that is not in force.
    "POST /api/v1/customers/{customer_id}/consents": ["422"],
    "POST /api/v1/requests": ["422"],
    "POST /api/v1/requests/{request_id}/verify": ["422"],
    "POST /api/v1/requests/{request_id}/extend": ["422"],
    "POST /api/v1/requests/{request_id}/reject": ["422"],
    "POST /api/v1/requests/{request_id}/complete": ["422"],
    "POST /api/v1/requests/{request_id}/export": ["422"],
    "POST /api/v1/restrictions/{customer_id}/lift": ["422"],
    # Issue 14: a training completion dated in the future (R6.4); a revoke naming a role
    # or portfolio not under review (R6.2); a report window with `since` after `until` (R6.1).
    "POST /api/v1/staff/{staff_id}/training": ["422"],
    "POST /api/v1/recertifications/{campaign_id}/items/{staff_id}/decision": ["422"],
    "GET /api/v1/reports/{name}": ["422"],
    # Step-up with a code that is not the current TOTP code: 403 step_up_failed.
    # (403 is already among the accepted answers.)
}
_POSITIVE = ["2xx", "3xx", "401", "403", "404", "409", "410", "429", "5xx"]


def config() -> dict[str, Any]:
    """The configuration, as schemathesis' `from_dict` (and its TOML file) take it."""
    operations = [
        {"include-name": name,
         "checks": {"positive_data_acceptance": {"expected-statuses": [*_POSITIVE, *extra]}}}
        for name, extra in _VALID_BUT_REFUSED.items()
    ]
    return {
        # An erased customer (410) is a state, like a missing one (404).
        "checks": {"positive_data_acceptance": {"expected-statuses": _POSITIVE},
                   # A change without If-Match is refused with 428 Precondition Required (RFC 6585).
                   "missing_required_header": {"expected-statuses": ["400", "401", "403", "406", "415", "422",
                                                                     "428"]},
                   # A malformed If-Match fails the precondition (412), as RFC 9110 13.1.1 asks.
                   "negative_data_rejection": {"expected-statuses": [
                       "400", "401", "403", "404", "405", "406", "409", "412", "415", "422", "428", "429",
                       "5xx"]}},
        "operations": operations,
    }
