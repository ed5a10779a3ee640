"""Test helpers for applications and for this package: fake providers and servers.

Everything here is real code that runs in-process or over loopback HTTP; none
of it reaches a real vendor.
"""

from ._fake_json_api import FakeJsonApi, Received, Reply
from ._fake_mailgun import FakeMailgun, MailgunFile, MailgunMessage
from ._fake_paypal import FakePayPal
from ._fake_sendgrid import FakeSendGrid, SendGridMail
from ._fake_stripe import FakeStripe
from ._fake_transport import FakeTransport, TransportCall
from ._fake_twilio import FakeTwilio
from ._fakes import (
    FakeCall,
    FakeCloudStorage,
    FakeEmailService,
    FakePaymentGateway,
    FakeShippingProvider,
    FakeSmsService,
)
from ._server import ASGIApp, serve_asgi

__all__: list[str] = [
    "ASGIApp",
    "FakeCall",
    "FakeCloudStorage",
    "FakeEmailService",
    "FakeJsonApi",
    "FakeMailgun",
    "FakePayPal",
    "FakePaymentGateway",
    "FakeSendGrid",
    "FakeShippingProvider",
    "FakeSmsService",
    "FakeStripe",
    "FakeTransport",
    "FakeTwilio",
    "MailgunFile",
    "MailgunMessage",
    "Received",
    "Reply",
    "SendGridMail",
    "TransportCall",
    "serve_asgi",
]
