"""Vendor adapters (SendGrid, Mailgun, Twilio, Stripe, PayPal) over the runtime.

Each implements its protocol (`connector.EmailService`, `SmsService`,
`PaymentGateway`) over an `HttpService`, so every vendor call gets the
breaker, rate limit, retries, credentials and an integration log record.
"""

from ._mailgun import MAILGUN_EU_URL, MAILGUN_URL, MailgunEmail
from ._paypal import (
    CLIENT_CREDENTIALS,
    PAYPAL_LIVE_URL,
    PAYPAL_SANDBOX_URL,
    PayPalPaymentGateway,
    PayPalTokenRefresher,
    paypal_credentials,
)
from ._sendgrid import SENDGRID_EU_URL, SENDGRID_URL, SendGridEmail
from ._stripe import DEFAULT_STRIPE_API_VERSION, StripePaymentGateway
from ._twilio import TwilioSms

__all__ = [
    "CLIENT_CREDENTIALS",
    "DEFAULT_STRIPE_API_VERSION",
    "MAILGUN_EU_URL",
    "MAILGUN_URL",
    "PAYPAL_LIVE_URL",
    "PAYPAL_SANDBOX_URL",
    "SENDGRID_EU_URL",
    "SENDGRID_URL",
    "MailgunEmail",
    "PayPalPaymentGateway",
    "PayPalTokenRefresher",
    "SendGridEmail",
    "StripePaymentGateway",
    "TwilioSms",
    "paypal_credentials",
]
