"""Credentials: secret-free reprs, encryption at rest, tenant isolation, OAuth2 refresh."""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from connector._credential_crypto import SECRET_KEY_ENV, CredentialCipher, Sealed, generate_key
from connector._credential_manager import CredentialManager, Refresher
from connector._credentials import AuthMethod, CredentialInfo, Credentials, CredentialStore
from connector._credstore_memory import MemoryCredentialStore
from connector._credstore_sqlite import SqliteCredentialStore
from connector._errors import (
    ConfigError,
    CredentialRefreshFailed,
    CredentialsExpired,
    CredentialsNotFound,
)

API_KEY = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
ACCESS_TOKEN = "ya29.a0AfH6SMBx-old-access-token"
REFRESH_TOKEN = "1//0gRefreshTokenValue-XYZ"
NEW_TOKEN = "ya29.a0AfH6SMBx-new-access-token"
NOW = 1_700_000_000.0


def oauth2(token: str = ACCESS_TOKEN, *, expires_at: float | None = NOW + 3600) -> Credentials:
    return Credentials(
        auth_method=AuthMethod.OAUTH2,
        data={"access_token": token, "client_id": "client-1234"},
        expires_at=expires_at,
        refresh_token=REFRESH_TOKEN,
    )


def api_key(value: str = API_KEY) -> Credentials:
    return Credentials(auth_method=AuthMethod.API_KEY, data={"api_key": value})


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingRefresher:
    """Counts calls; returns a fresh token, or raises ``error`` (quoting the secret)."""

    def __init__(self, clock: Clock, *, error: Exception | None = None) -> None:
        self.clock = clock
        self.error = error
        self.calls = 0
        self.release = anyio.Event()
        self.release.set()

    async def __call__(self, credentials: Credentials) -> Credentials:
        self.calls += 1
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return Credentials(
            auth_method=AuthMethod.OAUTH2,
            data={**credentials.data, "access_token": f"{NEW_TOKEN}-{self.calls}"},
            expires_at=self.clock.now + 3600,
        )


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "credentials.db"


@pytest.fixture
async def sqlite_store(sqlite_path: Path) -> AsyncIterator[SqliteCredentialStore]:
    async with SqliteCredentialStore(sqlite_path, clock=Clock(), key=generate_key()) as store:
        yield store


# -- Credentials ----------------------------------------------------------------


def test_repr_str_and_rich_repr_hide_secrets_but_name_them() -> None:
    credentials = oauth2()
    for text in (repr(credentials), str(credentials), f"{credentials}", repr([credentials])):
        assert ACCESS_TOKEN not in text
        assert REFRESH_TOKEN not in text
        assert "client-1234" not in text
        assert "'access_token': '***'" in text
        assert "refresh_token='***'" in text
    rich = dict(credentials.__rich_repr__())
    assert ACCESS_TOKEN not in repr(rich)
    assert REFRESH_TOKEN not in repr(rich)


@given(
    secrets=st.dictionaries(
        st.sampled_from(["api_key", "password", "access_token", "secret"]),
        st.text(min_size=8),
        min_size=1,
    ),
    refresh=st.text(min_size=8),
)
def test_repr_never_contains_a_secret(secrets: dict[str, str], refresh: str) -> None:
    credentials = Credentials(
        auth_method=AuthMethod.OAUTH2, data=secrets, refresh_token=refresh, expires_at=NOW
    )
    skeleton = repr(Credentials(auth_method=AuthMethod.OAUTH2, data=dict.fromkeys(secrets, "")))
    text = repr(credentials)
    for secret in [*secrets.values(), refresh]:
        assume(secret not in skeleton + "Nonetrue1700000000.0")
        assert secret not in text


def test_invalid_fields_raise_config_error_without_the_secret() -> None:
    with pytest.raises(ConfigError, match="auth_method"):
        Credentials(auth_method="password", data={})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"data\['api_key'\].*must be a str, not int") as info:
        Credentials(auth_method=AuthMethod.API_KEY, data={"api_key": 123456789})  # type: ignore[dict-item]
    assert "123456789" not in str(info.value)
    with pytest.raises(ConfigError, match="expires_at"):
        Credentials(auth_method=AuthMethod.API_KEY, expires_at=float("nan"))
    with pytest.raises(ConfigError, match="refresh_token") as info:
        Credentials(auth_method=AuthMethod.OAUTH2, refresh_token=b"raw-refresh-token")  # type: ignore[arg-type]
    assert "raw-refresh-token" not in str(info.value)


def test_expiry_and_margin_boundaries() -> None:
    credentials = oauth2(expires_at=1000.0)
    assert not credentials.is_expired(999.9)
    assert credentials.is_expired(1000.0)
    assert not credentials.expires_within(300, 699.9)
    assert credentials.expires_within(300, 700.0)
    never = api_key()
    assert not never.is_expired(1e18)
    assert not never.expires_within(300, 1e18)


def test_credentials_expired_is_a_credentials_not_found_and_pickles() -> None:
    error = CredentialsExpired("stripe", "acme", "they have no refresh token")
    assert isinstance(error, CredentialsNotFound)
    assert str(error) == (
        "Credentials for service 'stripe' and tenant 'acme' have expired: "
        "they have no refresh token"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.reason, copy.tenant_id) == (
        CredentialsExpired,
        str(error),
        error.reason,
        "acme",
    )


# -- encryption -----------------------------------------------------------------


@given(
    plaintext=st.binary(),
    service=st.text(min_size=1),
    tenant_id=st.none() | st.text(min_size=1),
)
def test_encrypt_decrypt_round_trip(plaintext: bytes, service: str, tenant_id: str | None) -> None:
    cipher = CredentialCipher(generate_key())
    sealed = cipher.encrypt(plaintext, service, tenant_id)
    assert sealed.key_id == cipher.key_id
    assert len(sealed.nonce) == 12
    assert cipher.decrypt(sealed, service, tenant_id) == plaintext


@given(secret=st.text(min_size=8))
def test_ciphertext_never_contains_the_secret(secret: str) -> None:
    cipher = CredentialCipher(generate_key())
    plaintext = secret.encode()
    sealed = cipher.encrypt(plaintext, "svc", "tenant")
    assert plaintext not in sealed.ciphertext
    assert cipher.encrypt(plaintext, "svc", "tenant").nonce != sealed.nonce


def test_value_sealed_for_one_tenant_does_not_open_for_another() -> None:
    cipher = CredentialCipher(generate_key())
    sealed = cipher.encrypt(b"secret", "stripe", "A")
    for service, tenant in (("stripe", "B"), ("stripe", None), ("paypal", "A")):
        with pytest.raises(ConfigError, match="altered, or copied from another"):
            cipher.decrypt(sealed, service, tenant)
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    tampered = Sealed(flipped, sealed.nonce, sealed.key_id)
    with pytest.raises(ConfigError, match="fails authentication"):
        cipher.decrypt(tampered, "stripe", "A")


def test_wrong_key_is_a_clear_error_naming_the_variable() -> None:
    sealed = CredentialCipher(generate_key()).encrypt(b"secret", "stripe", "A")
    other = generate_key()
    with pytest.raises(ConfigError, match=f"{SECRET_KEY_ENV}.*does not decrypt") as info:
        CredentialCipher(other).decrypt(sealed, "stripe", "A")
    assert other not in str(info.value)


@pytest.mark.parametrize(
    "key",
    ["", "too-short", generate_key()[:-8], "!" * 44, b"\x00" * 31, b"\x00" * 33],
)
def test_malformed_keys_are_rejected_without_being_shown(key: str | bytes) -> None:
    with pytest.raises(ConfigError, match="must be 32 bytes") as info:
        CredentialCipher(key)
    if key:
        assert repr(key) not in str(info.value)


def test_keys_are_32_bytes_in_urlsafe_base64_with_or_without_padding() -> None:
    key = generate_key()
    assert len(key) == 44
    assert CredentialCipher(key).key_id == CredentialCipher(key.rstrip("=")).key_id
    assert CredentialCipher(key).key_id != CredentialCipher(generate_key()).key_id
    assert CredentialCipher(b"k" * 32).key_id == CredentialCipher(b"k" * 32).key_id


def test_key_from_environment() -> None:
    key = generate_key()
    cipher = CredentialCipher.from_env({SECRET_KEY_ENV: key})
    assert cipher is not None
    assert cipher.key_id == CredentialCipher(key).key_id
    assert CredentialCipher.from_env({}) is None
    with pytest.raises(ConfigError, match=SECRET_KEY_ENV) as info:
        CredentialCipher.from_env({SECRET_KEY_ENV: "not a key at all"})
    assert "not a key at all" not in str(info.value)
    assert key not in repr(cipher)


# -- stores ---------------------------------------------------------------------


async def check_store_contract(store: CredentialStore) -> None:
    assert await store.get("stripe", "A") is None
    await store.put("stripe", "A", oauth2())
    await store.put("stripe", "B", api_key("sk_tenant_b_secret_value"))
    await store.put("sendgrid", "A", api_key())
    await store.put("stripe", None, api_key("sk_default_tenant_value"))

    assert await store.get("stripe", "A") == oauth2()
    stored_b = await store.get("stripe", "B")
    assert stored_b is not None
    assert stored_b.data == {"api_key": "sk_tenant_b_secret_value"}
    assert await store.get("stripe", "C") is None
    assert await store.get("sendgrid", "B") is None
    default = await store.get("stripe", None)
    assert default is not None
    assert default.data == {"api_key": "sk_default_tenant_value"}

    infos = await store.list(tenant_id="A")
    assert infos == [
        CredentialInfo(
            service="sendgrid",
            tenant_id="A",
            auth_method=AuthMethod.API_KEY,
            expires_at=None,
            is_active=True,
        ),
        CredentialInfo(
            service="stripe",
            tenant_id="A",
            auth_method=AuthMethod.OAUTH2,
            expires_at=NOW + 3600,
            is_active=True,
        ),
    ]
    assert CredentialInfo.__struct_fields__ == (
        "service",
        "tenant_id",
        "auth_method",
        "expires_at",
        "is_active",
    )
    every = await store.list()
    assert {(info.service, info.tenant_id) for info in every} == {
        ("stripe", "A"),
        ("stripe", "B"),
        ("sendgrid", "A"),
        ("stripe", None),
    }
    assert await store.list(tenant_id="nobody") == []

    replaced = oauth2("replaced-access-token", expires_at=NOW + 60)
    await store.put("stripe", "A", replaced)
    assert await store.get("stripe", "A") == replaced
    inactive = Credentials(auth_method=AuthMethod.HMAC, data={"secret": "x"}, is_active=False)
    await store.put("hmac-svc", "A", inactive)
    assert await store.get("hmac-svc", "A") == inactive

    assert await store.delete("stripe", "B") is True
    assert await store.delete("stripe", "B") is False
    assert await store.get("stripe", "B") is None
    assert await store.get("stripe", "A") == replaced

    with pytest.raises(ConfigError, match="tenant_id"):
        await store.get("stripe", "")
    with pytest.raises(ConfigError, match="service"):
        await store.put("", "A", api_key())
    with pytest.raises(ConfigError, match="credentials"):
        await store.put("stripe", "A", {"api_key": API_KEY})  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_memory_store_contract() -> None:
    async with MemoryCredentialStore() as store:
        await check_store_contract(store)


@pytest.mark.anyio
async def test_memory_store_copies_in_and_out() -> None:
    store = MemoryCredentialStore()
    data = {"api_key": API_KEY}
    await store.put("stripe", "A", Credentials(auth_method=AuthMethod.API_KEY, data=data))
    data["api_key"] = "mutated"
    got = await store.get("stripe", "A")
    assert got is not None
    got.data["api_key"] = "mutated too"  # type: ignore[index]
    again = await store.get("stripe", "A")
    assert again is not None
    assert again.data == {"api_key": API_KEY}
    assert await store.rotate_key(generate_key()) == 0
    with pytest.raises(ConfigError, match="new_key"):
        await store.rotate_key("short")


@pytest.mark.anyio
async def test_sqlite_store_contract(sqlite_store: SqliteCredentialStore) -> None:
    await check_store_contract(sqlite_store)


@pytest.mark.anyio
async def test_sqlite_file_holds_no_plaintext_secret(sqlite_path: Path) -> None:
    key = generate_key()
    async with SqliteCredentialStore(sqlite_path, clock=Clock(), key=key) as store:
        await store.put("stripe", "A", oauth2())
        await store.put("sendgrid", "A", api_key())
        await store.put("sendgrid", "A", api_key("sk_second_version_of_key"))
    raw = await anyio.Path(sqlite_path).read_bytes()
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN, API_KEY, "sk_second_version_of_key", key):
        assert secret.encode() not in raw
    assert b"stripe" in raw  # the metadata is stored, in the clear
    async with SqliteCredentialStore(sqlite_path, clock=Clock(), key=key) as store:
        assert await store.get("stripe", "A") == oauth2()


@pytest.mark.anyio
async def test_sqlite_wrong_key_fails_at_open_with_a_clear_error(sqlite_path: Path) -> None:
    async with SqliteCredentialStore(sqlite_path, clock=Clock(), key=generate_key()) as store:
        await store.put("stripe", "A", oauth2())
    wrong = generate_key()
    with pytest.raises(ConfigError, match=f"{SECRET_KEY_ENV}.*does not decrypt") as info:
        await SqliteCredentialStore(sqlite_path, clock=Clock(), key=wrong).open()
    assert wrong not in str(info.value)
    assert info.value.__cause__ is None


@pytest.mark.anyio
async def test_sqlite_missing_key(sqlite_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    async with SqliteCredentialStore(sqlite_path, clock=Clock()) as store:
        assert await store.list() == []  # an empty store opens without a key
        with pytest.raises(ConfigError, match=f"{SECRET_KEY_ENV}.*is not set"):
            await store.put("stripe", "A", oauth2())
    key = generate_key()
    monkeypatch.setenv(SECRET_KEY_ENV, key)
    async with SqliteCredentialStore(sqlite_path, clock=Clock()) as store:
        await store.put("stripe", "A", oauth2())
    monkeypatch.delenv(SECRET_KEY_ENV)
    with pytest.raises(ConfigError, match=f"{SECRET_KEY_ENV}.*not set.*holds 1 encrypted") as info:
        await SqliteCredentialStore(sqlite_path, clock=Clock()).open()
    assert key not in str(info.value)


@pytest.mark.anyio
async def test_sqlite_key_rotation_re_encrypts_every_row(sqlite_path: Path) -> None:
    old, new = generate_key(), generate_key()
    async with SqliteCredentialStore(sqlite_path, clock=Clock(), key=old) as store:
        await store.put("stripe", "A", oauth2())
        await store.put("stripe", None, api_key())
        before = await anyio.Path(sqlite_path).read_bytes()
        assert await store.rotate_key(new) == 2
        assert await store.get("stripe", "A") == oauth2()
    with sqlite3.connect(sqlite_path) as db:
        key_ids = {row[0] for row in db.execute("SELECT key_id FROM credentials")}
        current = [row[0] for row in db.execute("SELECT ciphertext FROM credentials")]
    assert key_ids == {CredentialCipher(new).key_id}
    raw = await anyio.Path(sqlite_path).read_bytes()
    assert raw != before
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN, API_KEY):
        assert secret.encode() not in raw
    for ciphertext in current:
        assert ciphertext in raw
    with pytest.raises(ConfigError, match="does not decrypt"):
        await SqliteCredentialStore(sqlite_path, clock=Clock(), key=old).open()
    async with SqliteCredentialStore(sqlite_path, clock=Clock(), key=new) as store:
        assert await store.get("stripe", None) == api_key()


@pytest.mark.anyio
async def test_sqlite_rotation_leaves_no_old_ciphertext(sqlite_path: Path) -> None:
    async with SqliteCredentialStore(sqlite_path, clock=Clock(), key=generate_key()) as store:
        await store.put("stripe", "A", oauth2())
        with sqlite3.connect(sqlite_path) as db:
            (before,) = db.execute("SELECT ciphertext FROM credentials").fetchone()
        await store.rotate_key(generate_key())
    assert before not in await anyio.Path(sqlite_path).read_bytes()


@pytest.mark.anyio
async def test_sqlite_deleted_credentials_leave_no_ciphertext(sqlite_path: Path) -> None:
    async with SqliteCredentialStore(sqlite_path, clock=Clock(), key=generate_key()) as store:
        await store.put("stripe", "A", oauth2())
        await store.put("stripe", "B", api_key())
        with sqlite3.connect(sqlite_path) as db:
            (deleted,) = db.execute(
                "SELECT ciphertext FROM credentials WHERE tenant_id = 'A'"
            ).fetchone()
        assert await store.delete("stripe", "A")
    # Still decryptable with the current key, so it must not linger in free space.
    assert deleted not in await anyio.Path(sqlite_path).read_bytes()


@pytest.mark.anyio
async def test_sqlite_row_moved_to_another_tenant_does_not_decrypt(sqlite_path: Path) -> None:
    key = generate_key()
    async with SqliteCredentialStore(sqlite_path, clock=Clock(), key=key) as store:
        await store.put("stripe", "A", oauth2())
    with sqlite3.connect(sqlite_path) as db:
        db.execute("UPDATE credentials SET tenant_id = 'B' WHERE tenant_id = 'A'")
    async with SqliteCredentialStore(sqlite_path, clock=Clock(), key=key) as store:
        with pytest.raises(ConfigError, match="copied from another") as info:
            await store.get("stripe", "B")
        assert ACCESS_TOKEN not in str(info.value)
        # A failed row stops the rotation as a whole: nothing changes.
        with pytest.raises(ConfigError):
            await store.rotate_key(generate_key())
    async with SqliteCredentialStore(sqlite_path, clock=Clock(), key=key) as store:
        assert [info.tenant_id for info in await store.list()] == ["B"]


@pytest.mark.anyio
async def test_sqlite_store_stamps_times_from_its_clock(sqlite_path: Path) -> None:
    clock = Clock(100.0)
    async with SqliteCredentialStore(sqlite_path, clock=clock, key=generate_key()) as store:
        await store.put("stripe", "A", oauth2())
        clock.now = 200.0
        await store.put("stripe", "A", oauth2("second-access-token"))
    with sqlite3.connect(sqlite_path) as db:
        assert db.execute("SELECT created_at, updated_at FROM credentials").fetchall() == [
            (100.0, 200.0)
        ]


@pytest.mark.anyio
async def test_sqlite_store_must_be_open(sqlite_path: Path) -> None:
    store = SqliteCredentialStore(sqlite_path, clock=Clock(), key=generate_key())
    with pytest.raises(anyio.ClosedResourceError):
        await store.get("stripe", "A")
    async with store:
        pass
    with pytest.raises(anyio.ClosedResourceError):
        await store.list()


# -- manager: refresh -------------------------------------------------------------


async def manager_with(
    credentials: Credentials | None,
    *,
    refresher: Refresher | None = None,
    clock: Clock | None = None,
    tenant_id: str | None = "A",
) -> tuple[CredentialManager, MemoryCredentialStore]:
    store = MemoryCredentialStore()
    if credentials is not None:
        await store.put("oauth-svc", tenant_id, credentials)
    refreshers = {} if refresher is None else {"oauth-svc": refresher}
    return CredentialManager(store, refreshers, clock or Clock()), store


async def gather(count: int, call: Callable[[], Awaitable[Credentials]]) -> list[object]:
    """Run ``call`` ``count`` times concurrently; each result or exception, in start order."""
    outcomes: list[object] = [None] * count

    async def one(index: int) -> None:
        try:
            outcomes[index] = await call()
        except Exception as error:
            outcomes[index] = error

    async with anyio.create_task_group() as group:
        for index in range(count):
            group.start_soon(one, index)
    return outcomes


@pytest.mark.anyio
async def test_hundred_concurrent_gets_share_one_refresh() -> None:
    clock = Clock()
    refresher = CountingRefresher(clock)
    refresher.release = anyio.Event()
    manager, store = await manager_with(oauth2(expires_at=NOW - 1), refresher=refresher)

    async def release_when_all_wait() -> None:
        await anyio.wait_all_tasks_blocked()
        refresher.release.set()

    async with anyio.create_task_group() as group:
        group.start_soon(release_when_all_wait)
        outcomes = await gather(100, lambda: manager.get("oauth-svc", "A"))
    assert refresher.calls == 1
    fresh = await store.get("oauth-svc", "A")
    assert fresh is not None
    assert fresh.data["access_token"] == f"{NEW_TOKEN}-1"
    assert fresh.refresh_token == REFRESH_TOKEN  # kept: the refresher issued none
    assert all(outcome == fresh for outcome in outcomes)


@pytest.mark.anyio
async def test_single_flight_over_the_sqlite_store(
    sqlite_store: SqliteCredentialStore,
) -> None:
    clock = Clock()
    refresher = CountingRefresher(clock)
    await sqlite_store.put("oauth-svc", "A", oauth2(expires_at=NOW - 1))
    manager = CredentialManager(sqlite_store, {"oauth-svc": refresher}, clock)
    outcomes = await gather(100, lambda: manager.get("oauth-svc", "A"))
    assert refresher.calls == 1
    fresh = await sqlite_store.get("oauth-svc", "A")
    assert fresh is not None
    assert fresh.data["access_token"] == f"{NEW_TOKEN}-1"
    assert all(outcome == fresh for outcome in outcomes)


@pytest.mark.anyio
async def test_failed_refresh_fails_every_waiter_and_changes_nothing() -> None:
    clock = Clock()
    # The error quotes the token, as a careless HTTP client might.
    refresher = CountingRefresher(clock, error=RuntimeError(f"bad grant {REFRESH_TOKEN}"))
    refresher.release = anyio.Event()
    stale = oauth2(expires_at=NOW - 1)
    manager, store = await manager_with(stale, refresher=refresher)

    async def release_when_all_wait() -> None:
        await anyio.wait_all_tasks_blocked()
        refresher.release.set()

    async with anyio.create_task_group() as group:
        group.start_soon(release_when_all_wait)
        outcomes = await gather(100, lambda: manager.get("oauth-svc", "A"))
    assert refresher.calls == 1
    assert all(isinstance(outcome, CredentialRefreshFailed) for outcome in outcomes)
    error = outcomes[0]
    assert isinstance(error, CredentialRefreshFailed)
    assert (error.service, error.tenant_id) == ("oauth-svc", "A")
    assert error.reason == "the refresher raised RuntimeError"
    for outcome in outcomes:
        assert isinstance(outcome, CredentialRefreshFailed)
        assert REFRESH_TOKEN not in str(outcome)
        assert outcome.__cause__ is None
    assert await store.get("oauth-svc", "A") == stale

    # The failure is not cached: the next call tries again.
    refresher.error = None
    fresh = await manager.get("oauth-svc", "A")
    assert refresher.calls == 2
    assert fresh.data["access_token"] == f"{NEW_TOKEN}-2"


@pytest.mark.anyio
async def test_refresher_reasons_and_bad_results() -> None:
    clock = Clock()

    async def explains(credentials: Credentials) -> Credentials:
        raise CredentialRefreshFailed("ignored", None, "invalid_grant")

    manager, _ = await manager_with(oauth2(expires_at=NOW - 1), refresher=explains)
    with pytest.raises(CredentialRefreshFailed, match="invalid_grant") as info:
        await manager.get("oauth-svc", "A")
    assert (info.value.service, info.value.tenant_id) == ("oauth-svc", "A")

    async def already_expired(credentials: Credentials) -> Credentials:
        return oauth2(NEW_TOKEN, expires_at=clock.now)

    manager, store = await manager_with(
        oauth2(expires_at=NOW - 1), refresher=already_expired, clock=clock
    )
    with pytest.raises(CredentialRefreshFailed, match="already expired"):
        await manager.get("oauth-svc", "A")
    assert await store.get("oauth-svc", "A") == oauth2(expires_at=NOW - 1)

    async def rotates(credentials: Credentials) -> Credentials:
        return Credentials(
            auth_method=AuthMethod.OAUTH2,
            data={"access_token": NEW_TOKEN},
            expires_at=clock.now + 60,
            refresh_token="rotated-refresh-token",
        )

    manager, store = await manager_with(oauth2(expires_at=NOW - 1), refresher=rotates)
    assert (await manager.get("oauth-svc", "A")).refresh_token == "rotated-refresh-token"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("expires_in", "refreshed"),
    [(3600, False), (301, False), (300.5, False), (300, True), (1, True), (0, True), (-5, True)],
)
async def test_refresh_inside_the_five_minute_margin_only(
    expires_in: float, refreshed: bool
) -> None:
    clock = Clock()
    refresher = CountingRefresher(clock)
    original = oauth2(expires_at=NOW + expires_in)
    manager, _ = await manager_with(original, refresher=refresher, clock=clock)
    got = await manager.get("oauth-svc", "A")
    assert refresher.calls == int(refreshed)
    assert (got != original) is refreshed


@given(
    expires_in=st.floats(-1e6, 1e6, allow_nan=False),
    margin=st.floats(0, 3599, allow_nan=False),  # below the refreshed tokens' lifetime
)
def test_refresh_happens_exactly_when_due(expires_in: float, margin: float) -> None:
    async def run() -> int:
        clock = Clock()
        refresher = CountingRefresher(clock)
        store = MemoryCredentialStore()
        await store.put("oauth-svc", "A", oauth2(expires_at=NOW + expires_in))
        manager = CredentialManager(store, {"oauth-svc": refresher}, clock, margin=margin)
        await manager.get("oauth-svc", "A")
        await manager.get("oauth-svc", "A")
        return refresher.calls

    due = (NOW + expires_in) - margin <= NOW
    assert anyio.run(run) == int(due)


@pytest.mark.anyio
async def test_flights_are_cleaned_up_so_a_later_expiry_refreshes_again() -> None:
    clock = Clock()
    refresher = CountingRefresher(clock)
    manager, _ = await manager_with(oauth2(expires_at=NOW - 1), refresher=refresher, clock=clock)
    first = await manager.get("oauth-svc", "A")
    assert await manager.get("oauth-svc", "A") == first
    clock.now += 3600
    second = await manager.get("oauth-svc", "A")
    assert refresher.calls == 2
    assert second.data["access_token"] == f"{NEW_TOKEN}-2"


@pytest.mark.anyio
async def test_a_cancelled_refresh_hands_over_to_a_waiter() -> None:
    clock = Clock()
    refresher = CountingRefresher(clock)
    refresher.release = anyio.Event()
    manager, _ = await manager_with(oauth2(expires_at=NOW - 1), refresher=refresher, clock=clock)
    leader = anyio.CancelScope()
    results: list[Credentials] = []

    async def lead() -> None:
        with leader:
            await manager.get("oauth-svc", "A")

    async def wait() -> None:
        results.append(await manager.get("oauth-svc", "A"))

    async with anyio.create_task_group() as group:
        group.start_soon(lead)
        await anyio.wait_all_tasks_blocked()
        group.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        assert refresher.calls == 1
        leader.cancel()
        await anyio.wait_all_tasks_blocked()
        assert refresher.calls == 2  # the waiter took over
        refresher.release.set()
    assert [credentials.data["access_token"] for credentials in results] == [f"{NEW_TOKEN}-2"]


# -- manager: 401 -----------------------------------------------------------------


@pytest.mark.anyio
async def test_unauthorized_then_refresh_then_success() -> None:
    clock = Clock()
    refresher = CountingRefresher(clock)
    manager, _ = await manager_with(oauth2(), refresher=refresher, clock=clock)
    revoked = {ACCESS_TOKEN}

    async def call_provider(credentials: Credentials) -> int:
        return 401 if credentials.data["access_token"] in revoked else 200

    credentials = await manager.get("oauth-svc", "A")
    assert await call_provider(credentials) == 401
    credentials = await manager.refresh_after_unauthorized("oauth-svc", "A", credentials)
    assert await call_provider(credentials) == 200
    assert refresher.calls == 1
    assert await manager.get("oauth-svc", "A") == credentials


@pytest.mark.anyio
async def test_unauthorized_with_a_stale_token_does_not_refresh_again() -> None:
    clock = Clock()
    refresher = CountingRefresher(clock)
    manager, _ = await manager_with(oauth2(), refresher=refresher, clock=clock)
    rejected = await manager.get("oauth-svc", "A")
    outcomes = await gather(
        100, lambda: manager.refresh_after_unauthorized("oauth-svc", "A", rejected)
    )
    assert refresher.calls == 1
    fresh = await manager.get("oauth-svc", "A")
    assert all(outcome == fresh for outcome in outcomes)
    # A late 401 for the old token: another caller has refreshed already.
    assert await manager.refresh_after_unauthorized("oauth-svc", "A", rejected) == fresh
    assert refresher.calls == 1


class GatedStore(MemoryCredentialStore):
    """Holds the ``blocked_read``-th `get` until ``gate`` is set."""

    def __init__(self, blocked_read: int) -> None:
        super().__init__()
        self.blocked_read = blocked_read
        self.reads = 0
        self.gate = anyio.Event()

    async def get(self, service: str, tenant_id: str | None) -> Credentials | None:
        self.reads += 1
        if self.reads == self.blocked_read:
            await self.gate.wait()
        return await super().get(service, tenant_id)


@pytest.mark.anyio
async def test_unauthorized_caller_never_gets_back_the_token_it_saw_rejected() -> None:
    # A get finds an expired token and starts a flight; before its second read,
    # a new token is stored, and the provider rejects that one too. The 401
    # caller waiting on the flight must not be handed the rejected token.
    clock = Clock()
    refresher = CountingRefresher(clock)
    store = GatedStore(blocked_read=2)
    await store.put("oauth-svc", "A", oauth2(expires_at=NOW - 1))
    manager = CredentialManager(store, {"oauth-svc": refresher}, clock)
    replaced = oauth2("replaced-but-revoked-token")
    results: dict[str, Credentials] = {}

    async def get() -> None:
        results["get"] = await manager.get("oauth-svc", "A")

    async def unauthorized() -> None:
        results["401"] = await manager.refresh_after_unauthorized("oauth-svc", "A", replaced)

    async with anyio.create_task_group() as group:
        group.start_soon(get)
        await anyio.wait_all_tasks_blocked()
        await store.put("oauth-svc", "A", replaced)
        group.start_soon(unauthorized)
        await anyio.wait_all_tasks_blocked()
        store.gate.set()
    assert results["get"] == replaced
    assert refresher.calls == 1
    assert results["401"].data["access_token"] == f"{NEW_TOKEN}-1"


@pytest.mark.anyio
async def test_unauthorized_without_a_way_to_refresh() -> None:
    manager, _ = await manager_with(api_key())
    rejected = await manager.get("oauth-svc", "A")
    with pytest.raises(CredentialRefreshFailed, match="rejected them and auth method 'api_key'"):
        await manager.refresh_after_unauthorized("oauth-svc", "A", rejected)


# -- manager: expiry, absence, isolation -------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("credentials", "with_refresher", "reason"),
    [
        (
            Credentials(
                auth_method=AuthMethod.OAUTH2, data={"access_token": "x"}, expires_at=NOW - 1
            ),
            True,
            "they have no refresh token",
        ),
        (oauth2(expires_at=NOW - 1), False, "no refresher is registered for service 'oauth-svc'"),
        (
            Credentials(auth_method=AuthMethod.BEARER_TOKEN, data={"token": "x"}, expires_at=NOW),
            True,
            "auth method 'bearer_token' has no refresh",
        ),
    ],
)
async def test_expired_and_not_refreshable_raises_credentials_expired(
    credentials: Credentials, with_refresher: bool, reason: str
) -> None:
    clock = Clock()
    refresher = CountingRefresher(clock)
    manager, _ = await manager_with(
        credentials, refresher=refresher if with_refresher else None, clock=clock
    )
    with pytest.raises(CredentialsExpired) as info:
        await manager.get("oauth-svc", "A")
    assert info.value.reason == reason
    assert refresher.calls == 0


@pytest.mark.anyio
async def test_not_refreshable_but_still_valid_inside_the_margin_is_returned() -> None:
    credentials = Credentials(
        auth_method=AuthMethod.BEARER_TOKEN, data={"token": "x"}, expires_at=NOW + 10
    )
    manager, _ = await manager_with(credentials)
    assert await manager.get("oauth-svc", "A") == credentials


@pytest.mark.anyio
async def test_missing_or_inactive_credentials_are_not_found() -> None:
    manager, store = await manager_with(None)
    with pytest.raises(CredentialsNotFound) as info:
        await manager.get("oauth-svc", "A")
    assert type(info.value) is CredentialsNotFound
    await store.put("oauth-svc", "A", Credentials(auth_method=AuthMethod.API_KEY, is_active=False))
    with pytest.raises(CredentialsNotFound):
        await manager.get("oauth-svc", "A")


@pytest.mark.anyio
async def test_a_tenant_never_gets_another_tenants_credentials() -> None:
    manager, store = await manager_with(oauth2(), tenant_id="A")
    for tenant in ("B", None):
        with pytest.raises(CredentialsNotFound) as info:
            await manager.get("oauth-svc", tenant)
        assert info.value.tenant_id == tenant
        with pytest.raises(CredentialsNotFound):
            await manager.refresh_after_unauthorized("oauth-svc", tenant, oauth2())
    await store.put("oauth-svc", "B", api_key("tenant-b-api-key"))
    assert (await manager.get("oauth-svc", "A")).data["access_token"] == ACCESS_TOKEN
    assert (await manager.get("oauth-svc", "B")).data == {"api_key": "tenant-b-api-key"}
    assert [info.tenant_id for info in await store.list(tenant_id="B")] == ["B"]


def test_margin_must_be_non_negative() -> None:
    with pytest.raises(ConfigError, match="margin"):
        CredentialManager(MemoryCredentialStore(), {}, Clock(), margin=-1)
