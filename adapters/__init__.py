"""Vendor adapters (SendGrid, Mailgun, Twilio, Stripe, PayPal) over the runtime.

Each implements its protocol (`connector.EmailService`, `SmsService`,
`PaymentGateway`) over an `HttpService`, so every vendor call gets the
breaker, rate limit, retries, credentials and an integration log record.
"""

from ._mailgun import MAILGUN_EU_URL, MAILGUN_URL, MailgunEmail
from ._sendgrid import SENDGRID_EU_URL, SENDGRID_URL, SendGridEmail
from ._stripe import DEFAULT_STRIPE_API_VERSION, StripePaymentGateway
from ._twilio import TwilioSms

__all__ = [
    "DEFAULT_STRIPE_API_VERSION",
    "MAILGUN_EU_URL",
    "MAILGUN_URL",
    "SENDGRID_EU_URL",
    "SENDGRID_URL",
    "MailgunEmail",
    "SendGridEmail",
    "StripePaymentGateway",
    "TwilioSms",
]
