"""The activation channel over SMTP (R2.9): a new account's code goes to the person's
own work address, never to the requester or the approver.

The standard library's `smtplib`, one connection per message (activations are rare),
with STARTTLS when configured, verified against the system's trust store (or the
`smtp_ca_file` given). Any failure to hand the message over (refused connection,
timeout, TLS or SMTP error) becomes `ActivationUnavailable`, so the API answers 503
and nothing is created; the code itself never reaches a log or an error message.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from application.activation import ActivationUnavailable
from application.ports import ActivationMessage


@dataclass(frozen=True)
class SmtpActivationChannel:
    """Sends activation codes through one SMTP relay."""

    host: str
    port: int
    sender: str
    starttls: bool = False
    timeout: float = 10.0
    ca_file: Path | None = None

    def _message(self, message: ActivationMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = "Your Strongroom account: activation code"
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        mail.set_content(
            f"A Strongroom account was made for you: {message.username}\n\n"
            f"Activation code: {message.code}\n\n"
            f"It works once, until {message.expires_at:%Y-%m-%d %H:%M} UTC. Sign in to Strongroom with your\n"
            "username and this code (POST /api/v1/auth/activate), choose your password and enrol your\n"
            "authenticator. Nobody else has this code: do not pass it on, not even to the person who\n"
            "asked for or approved your account. If you did not expect it, tell your security officer.\n"
        )
        return mail

    def send_activation(self, message: ActivationMessage) -> None:
        mail = self._message(message)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
                    smtp.starttls(context=context)
                smtp.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            # By type only: an SMTP reply may quote the recipient's address.
            raise ActivationUnavailable(type(exc).__name__) from None
