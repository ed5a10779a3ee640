"""`CredentialManager`: usable credentials for each attempt, OAuth2 refreshed in single flight.

An OAuth2 credential is refreshed once it is within ``margin`` seconds of its
expiry, and once after the provider rejected it (HTTP 401). However many
callers need a refresh of one (service, tenant) at once, one refresh runs and
all of them get its result, or its failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import anyio
import msgspec

from . import _validate as check
from ._credentials import AuthMethod, Credentials, CredentialStore, check_key
from ._errors import (
    CredentialRefreshFailed,
    CredentialsExpired,
    CredentialsNotFound,
    VendorError,
)

__all__ = ["DEFAULT_REFRESH_MARGIN", "CredentialManager", "Refresher"]

DEFAULT_REFRESH_MARGIN = 300.0  # refresh 5 minutes before expiry

Refresher = Callable[[Credentials], Awaitable[Credentials]]
"""Exchanges an OAuth2 credential (its ``refresh_token``) for a fresh one.

To say why it failed, raise `CredentialRefreshFailed` with a reason free of
secrets; any other exception is reported by its type alone.
"""


class _Flight:
    """One refresh in progress; callers that arrive meanwhile wait for its outcome."""

    __slots__ = ("done", "failure", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: Credentials | None = None
        self.failure: str | None = None


class CredentialManager:
    """Reads credentials from ``store`` and keeps OAuth2 ones fresh with ``refreshers``.

    ``refreshers`` maps a service to its `Refresher`. ``clock`` returns the Unix
    time that ``expires_at`` is compared with; it is the manager's only clock.
    ``margin`` must be shorter than the tokens' lifetime, or every call refreshes.
    """

    def __init__(
        self,
        store: CredentialStore,
        refreshers: Mapping[str, Refresher],
        clock: Callable[[], float],
        margin: float = DEFAULT_REFRESH_MARGIN,
    ) -> None:
        self._store = store
        self._refreshers = dict(refreshers)
        self._clock = clock
        self._margin = check.non_negative("margin", margin)
        self._flights: dict[tuple[str, str | None], _Flight] = {}

    async def get(self, service: str, tenant_id: str | None) -> Credentials:
        """The active credentials of (service, tenant_id), refreshed first if due.

        Raises `CredentialsNotFound` when there are none (or they are inactive),
        `CredentialsExpired` when they expired and cannot be refreshed, and
        `CredentialRefreshFailed` when the refresh failed.
        """
        return await self._usable(service, tenant_id, None)

    async def refresh_after_unauthorized(
        self, service: str, tenant_id: str | None, rejected: Credentials
    ) -> Credentials:
        """Fresh credentials after the provider rejected ``rejected`` (an HTTP 401).

        If the stored credentials already differ from ``rejected`` (another
        caller refreshed them meanwhile), they are returned without a refresh.
        Credentials that cannot be refreshed raise `CredentialRefreshFailed`.
        """
        return await self._usable(service, tenant_id, rejected)

    async def _usable(
        self, service: str, tenant_id: str | None, rejected: Credentials | None
    ) -> Credentials:
        check_key(service, tenant_id)
        key = (service, tenant_id)
        while True:
            flight = self._flights.get(key)
            if flight is None:
                # Fast path, no flight: most reads need no refresh.
                current = await self._active(service, tenant_id)
                if not self._must_refresh(service, tenant_id, current, rejected):
                    return current
                flight = self._flights.get(key)
            if flight is None:
                return await self._lead(service, tenant_id, rejected)
            await flight.done.wait()
            if flight.failure is not None:
                raise CredentialRefreshFailed(service, tenant_id, flight.failure)
            if flight.result is not None and flight.result != rejected:
                return flight.result
            # The flight's caller was cancelled or failed before refreshing, or
            # it found the very credentials this caller saw rejected: look again.

    async def _lead(
        self, service: str, tenant_id: str | None, rejected: Credentials | None
    ) -> Credentials:
        key = (service, tenant_id)
        flight = self._flights[key] = _Flight()
        try:
            # Read again inside the flight: a caller whose first read predates a
            # refresh that has just finished must find it, not refresh again.
            current = await self._active(service, tenant_id)
            if self._must_refresh(service, tenant_id, current, rejected):
                try:
                    current = await self._refresh(service, tenant_id, current)
                except CredentialRefreshFailed as error:
                    flight.failure = error.reason
                    raise
            flight.result = current
        finally:
            del self._flights[key]
            flight.done.set()
        return current

    async def _active(self, service: str, tenant_id: str | None) -> Credentials:
        credentials = await self._store.get(service, tenant_id)
        if credentials is None or not credentials.is_active:
            raise CredentialsNotFound(service, tenant_id)
        return credentials

    def _must_refresh(
        self,
        service: str,
        tenant_id: str | None,
        current: Credentials,
        rejected: Credentials | None,
    ) -> bool:
        """Whether to refresh ``current``; raises when it must be and cannot."""
        now = self._clock()
        unrefreshable = self._unrefreshable(service, current)
        if rejected is not None and current == rejected:
            if unrefreshable is not None:
                raise CredentialRefreshFailed(
                    service, tenant_id, f"the provider rejected them and {unrefreshable}"
                )
            return True
        if not current.expires_within(self._margin, now):
            return False
        if unrefreshable is None:
            return True
        if current.is_expired(now):
            raise CredentialsExpired(service, tenant_id, unrefreshable)
        return False  # still valid for a while, and nothing to renew it with

    def _unrefreshable(self, service: str, credentials: Credentials) -> str | None:
        """Why ``credentials`` cannot be refreshed, or None if they can."""
        if credentials.auth_method != AuthMethod.OAUTH2:
            return f"auth method '{credentials.auth_method}' has no refresh"
        if credentials.refresh_token is None:
            return "they have no refresh token"
        if service not in self._refreshers:
            return f"no refresher is registered for service '{service}'"
        return None

    async def _refresh(
        self, service: str, tenant_id: str | None, current: Credentials
    ) -> Credentials:
        """Run the refresher and store its result; any failure leaves the store unchanged."""
        try:
            fresh = await self._refreshers[service](current)
        except CredentialRefreshFailed as error:
            raise CredentialRefreshFailed(service, tenant_id, error.reason) from None
        except Exception as error:
            # Not chained: the cause's message may quote a token or a response body.
            raise CredentialRefreshFailed(
                service, tenant_id, f"the refresher raised {_describe(error)}"
            ) from None
        if not isinstance(fresh, Credentials):
            raise CredentialRefreshFailed(
                service,
                tenant_id,
                f"the refresher returned {type(fresh).__name__}, not Credentials",
            )
        if not fresh.is_active or fresh.is_expired(self._clock()):
            raise CredentialRefreshFailed(
                service, tenant_id, "the refresher returned inactive or already expired credentials"
            )
        if fresh.refresh_token is None:
            # RFC 6749 section 6: without a new refresh token, the old one stays valid.
            fresh = msgspec.structs.replace(fresh, refresh_token=current.refresh_token)
        try:
            await self._store.put(service, tenant_id, fresh)
        except Exception as error:
            raise CredentialRefreshFailed(
                service, tenant_id, f"storing the refreshed credentials failed: {_describe(error)}"
            ) from error
        return fresh


def _describe(error: Exception) -> str:
    """An exception's type (and HTTP status), never its message, which may quote a secret."""
    if isinstance(error, VendorError):
        return f"{type(error).__name__} (HTTP {error.status})"
    return type(error).__name__
