"""Vendor adapters (SendGrid, Mailgun, Twilio, Stripe, PayPal) over the runtime."""

__all__: list[str] = []
