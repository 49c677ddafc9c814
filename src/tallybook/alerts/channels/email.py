"""Email over SMTP (settings TALLYBOOK_SMTP_*): plain text with the figures, STARTTLS, implicit TLS or
none, optional login. Attachments (the monthly finance report's PDF) ride along as files."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from tallybook.alerts.message import DeliveryFailed, Message
from tallybook.config import Settings


def compose(to: list[str], message: Message, settings: Settings,
            attachments: tuple[tuple[str, bytes, str], ...] = ()) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = settings.smtp_from
    mail["To"] = ", ".join(to)
    mail["Subject"] = message.subject
    if message.delivery_id:
        mail["X-Tallybook-Delivery"] = message.delivery_id
    figures = [f"{name}: {value}" for name, value in message.figures.items()]
    mail.set_content(message.plain_text() + ("\n\n" + "\n".join(figures) if figures else "") + "\n")
    for filename, data, mime in attachments:
        maintype, _, subtype = mime.partition("/")
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return mail


def deliver(mail: EmailMessage, settings: Settings) -> None:
    if not settings.smtp_host:
        raise DeliveryFailed("no SMTP server: set TALLYBOOK_SMTP_HOST (and _PORT, _TLS, _USER, _PASSWORD)")
    try:
        if settings.smtp_tls == "ssl":
            server: smtplib.SMTP = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=settings.http_timeout,
                                                    context=ssl.create_default_context())
        else:
            server = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.http_timeout)
        with server:
            if settings.smtp_tls == "starttls":
                server.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                server.login(settings.smtp_user, settings.smtp_password or "")
            server.send_message(mail)
    except (OSError, smtplib.SMTPException) as e:
        raise DeliveryFailed(f"SMTP {settings.smtp_host}:{settings.smtp_port}: {type(e).__name__}: "
                             f"{str(e)[:120]}") from None


def send(config: dict[str, Any], message: Message, settings: Settings,
         attachments: tuple[tuple[str, bytes, str], ...] = ()) -> None:
    deliver(compose(config["to"], message, settings, attachments), settings)
