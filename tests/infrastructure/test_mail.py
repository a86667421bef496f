"""The SMTP activation channel (R2.9) against a real SMTP server on loopback that
demands STARTTLS: the code travels encrypted when so configured, and a relay that
refuses (or cannot be reached) is ActivationUnavailable, never a crash or a trace
carrying the address or the code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from application.activation import ActivationUnavailable
from application.ports import ActivationMessage
from infrastructure.composition import Settings
from infrastructure.mail import SmtpActivationChannel
from infrastructure.tls import make_self_signed
from tests.smtp import loopback_smtp, unreachable_smtp

MESSAGE = ActivationMessage(to="nell@bank.example", username="nell", code="0123abcd-0123abcd-0123abcd-0123abcd",
                            expires_at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC))


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_self_signed(cert, key)
    return cert, key


def test_the_code_goes_over_starttls_trusting_the_configured_anchor(certificate, tmp_path):
    cert, _key = certificate
    with loopback_smtp(starttls=certificate) as mailbox:
        settings = Settings.load(tmp_path, {**mailbox.settings, "smtp_starttls": "true", "smtp_ca_file": str(cert)})
        assert settings.smtp_starttls and settings.smtp_ca_file == cert
        SmtpActivationChannel(mailbox.host, mailbox.port, "strongroom@bank.example", starttls=True,
                              ca_file=settings.smtp_ca_file).send_activation(MESSAGE)
        assert mailbox.code_for("nell@bank.example") == MESSAGE.code


def test_a_relay_that_demands_tls_refuses_plain_text_and_we_answer_unavailable(certificate):
    with loopback_smtp(starttls=certificate) as mailbox:
        with pytest.raises(ActivationUnavailable) as refused:
            SmtpActivationChannel(mailbox.host, mailbox.port, "strongroom@bank.example").send_activation(MESSAGE)
        assert mailbox.messages == []
    assert MESSAGE.code not in str(refused.value) and MESSAGE.to not in str(refused.value)


@pytest.mark.controls("ASVS-V12")
def test_an_untrusted_relay_certificate_is_refused(certificate):
    with loopback_smtp(starttls=certificate) as mailbox:
        with pytest.raises(ActivationUnavailable):
            # No anchor given: the system's trust store does not know this certificate.
            SmtpActivationChannel(mailbox.host, mailbox.port, "strongroom@bank.example",
                                  starttls=True).send_activation(MESSAGE)
        assert mailbox.messages == []


def test_an_unreachable_relay_is_unavailable_quickly():
    down = unreachable_smtp()
    with pytest.raises(ActivationUnavailable):
        SmtpActivationChannel(down["smtp_host"], down["smtp_port"], down["smtp_sender"],
                              timeout=2.0).send_activation(MESSAGE)
