"""``connector.toml``: `load_config`'s checks and `Runtime.from_config`'s wiring.

Every file here is a real TOML file in a temporary directory. A bad file must
fail with one `ConfigFileError` whose message names the file and the dotted
key path, and never quotes a secret. A good file must wire services that
reach the fake vendor servers over loopback HTTP with the credentials the
environment holds, on the stores the file names.
"""

from __future__ import annotations

import math
import random
import shutil
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector import (
    Auth,
    AuthMethod,
    Breaker,
    ConfigError,
    Credentials,
    EmailMessage,
    Endpoint,
    RateLimit,
    Retry,
    Runtime,
    SmsMessage,
    generate_key,
)
from connector._config import (
    ConfigFileError,
    HealthProbe,
    HttpServiceConfig,
    MailgunConfig,
    StripeConfig,
    load_config,
)
from connector._configured import ConfiguredRuntime
from connector._credstore_sqlite import SqliteCredentialStore
from connector._logrecord import LogStatus
from connector._logstore_sqlite import SqliteLogStore
from connector._payments import ChargeRequest, Money
from connector._redaction import is_secret_key
from connector._shared_state import MemorySharedState
from connector.adapters import (
    MailgunEmail,
    PayPalPaymentGateway,
    SendGridEmail,
    StripePaymentGateway,
    TwilioSms,
)
from connector.testing import (
    FakeJsonApi,
    FakeMailgun,
    FakePayPal,
    FakeSendGrid,
    FakeStripe,
    FakeTwilio,
    serve_asgi,
)

EXAMPLE = Path(__file__).parent / "data" / "connector.toml"
STRIPE_KEY = "sk_test_51ConfigFileTESTkey0123456789"
SENDGRID_KEY = "SG.config-file-test-key"
MAILGUN_KEY = "key-config-file-test"
PAYPAL_ID = "AcL1ent-config-file"
PAYPAL_SECRET = "EsecretCONFIGfileTESTS0123456789"
FAST_RETRY = "retry = { attempts = 2, initial_delay = 0.01, max_delay = 0.02 }"
SECRET_VALUE = "hunter2-very-secret-value"


def write(directory: Path, text: str, name: str = "connector.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def refused(path: Path) -> ConfigFileError:
    with pytest.raises(ConfigFileError) as caught:
        load_config(path)
    return caught.value


STRIPE = '[services.s]\nadapter = "stripe"\ncredentials = { env = { token = "STRIPE_KEY" } }\n'

# (the file's text, the key path its error must name, words the reason must hold)
BAD_FILES: list[tuple[str, str, str]] = [
    ("colour = 1", "colour", "unknown key (expected one of: runtime, stores, services)"),
    (STRIPE + "domain = 'mg.example.com'", "services.s.domain", "unknown key"),
    (STRIPE + "[services.s.policy]\ntimeot = 3", "services.s.policy.timeot", "timeout"),
    (
        STRIPE + "[services.s.policy.breaker]\nthreshold = 3",
        "services.s.policy.breaker.threshold",
        "failure_threshold",
    ),
    (
        STRIPE + '[services.s.policy.retry]\nattempts = "3"',
        "services.s.policy.retry.attempts",
        "expected an integer, got a string",
    ),
    (
        STRIPE + "[services.s.policy.retry]\nattempts = 0",
        "services.s.policy.retry.attempts",
        "must be >= 1 (got 0)",
    ),
    (
        STRIPE + '[services.s.policy.retry]\nretryable_statuses = [503, "429"]',
        "services.s.policy.retry.retryable_statuses[1]",
        "expected an integer",
    ),
    (
        STRIPE + '[services.s.policy.retry]\njitter = "lots"',
        "services.s.policy.retry.jitter",
        "expected one of: decorrelated, equal, full, none",
    ),
    (STRIPE + "[services.s.policy]\ntimeout = -1", "services.s.policy.timeout", "must be > 0"),
    (
        STRIPE + "[services.s.policy.rate_limit]\nburst = 3",
        "services.s.policy.rate_limit.rate",
        "is required",
    ),
    (STRIPE + 'key_by = "user"', "services.s.key_by", "expected one of: endpoint, tenant"),
    (
        STRIPE + 'key_by = "tenant"\n[services.s.policy]\nkey_by = "tenant"',
        "services.s.key_by",
        "set it once",
    ),
    ('[services.x]\nadapter = "smtp"', "services.x.adapter", "expected one of: http, sendgrid"),
    ('[services.x]\nbase_url = "http://a"', "services.x.adapter", "is required"),
    ("services.x = 3", "services.x", "expected a table, got an integer"),
    ('[services."a.b"]\nadapter = "stripe"', "services.a.b", "letters, digits"),
    (
        '[services.m]\nadapter = "mailgun"\n'
        'credentials = { data = { username = "api" }, env = { password = "K" } }',
        "services.m.domain",
        "is required",
    ),
    ('[services.s]\nadapter = "stripe"', "services.s.credentials", "is required"),
    (
        '[services.s]\nadapter = "stripe"\ncredentials = { store = true }',
        "services.s.credentials.store",
        "stores.credentials",
    ),
    (
        '[services.t]\nadapter = "twilio"\ncredentials = { env = { password = "TOKEN" } }',
        "services.t.credentials.env.username",
        "is required",
    ),
    (
        '[services.s]\nadapter = "stripe"\ncredentials = { env = { token = "1-KEY" } }',
        "services.s.credentials.env.token",
        "the name of an environment variable",
    ),
    (
        '[services.s]\nadapter = "stripe"\ncredentials = { method = "magic", env = { t = "K" } }',
        "services.s.credentials.method",
        "expected one of: api_key, bearer_token",
    ),
    (
        '[services.h]\nadapter = "http"\nbase_url = "http://a"\nauth = {}',
        "services.h.auth",
        "needs credentials",
    ),
    (
        '[services.h]\nadapter = "http"\nbase_url = "http://a"\n[services.h.health]\npath = "up"',
        "services.h.health.path",
        "must start with /",
    ),
    ('[stores]\nlog = "redis://cache:6379/0"', "stores.log", "not redis://"),
    ('[stores]\nlog = "sqlite://relative.db"', "stores.log", "sqlite:///relative.db"),
    ('[stores]\nlog = "connector.db"', "stores.log", "must be a URL"),
    ('[stores]\nstate = { environment = "X" }', "stores.state.environment", "unknown key"),
    ('[stores]\nshared_state_fallback = "maybe"', "stores.shared_state_fallback", "fail_open"),
    ("[runtime]\nshutdown_timeout = -1", "runtime.shutdown_timeout", "must be >= 0"),
]

# Secrets written into the file, each refused under its own key.
INLINE_SECRETS: list[tuple[str, str]] = [
    (STRIPE + f'api_key = "{SECRET_VALUE}"', "services.s.api_key"),
    (
        '[services.s]\nadapter = "stripe"\n'
        f'credentials = {{ env = {{ token = "K" }}, data = {{ password = "{SECRET_VALUE}" }} }}',
        "services.s.credentials.data.password",
    ),
    (
        f'[services.h]\nadapter = "http"\nbase_url = "http://a"\n'
        f'headers = {{ Authorization = "Bearer {SECRET_VALUE}" }}',
        "services.h.headers.Authorization",
    ),
    (f'[stores]\nlog = "postgresql://app:{SECRET_VALUE}@db/logs"', "stores.log"),
    (
        f'[services.h]\nadapter = "http"\nbase_url = "https://u:{SECRET_VALUE}@api.example.com"',
        "services.h.base_url",
    ),
    (f'[runtime]\nsecret = "{SECRET_VALUE}"', "runtime.secret"),
]


@pytest.mark.parametrize(("text", "key", "reason"), BAD_FILES)
def test_a_bad_file_is_one_error_naming_the_file_and_the_key(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = write(tmp_path, text)
    error = refused(path)
    assert isinstance(error, ConfigError)
    assert (error.file, error.key) == (str(path), key)
    assert str(error).startswith(f"{path}: {key}: ")
    assert reason in str(error)
    assert "\n" not in str(error)


@pytest.mark.parametrize(("text", "key"), INLINE_SECRETS)
def test_a_secret_written_in_the_file_is_refused_without_showing_it(
    tmp_path: Path, text: str, key: str
) -> None:
    error = refused(write(tmp_path, text))
    assert error.key == key
    assert "secrets only by reference" in str(error)
    assert SECRET_VALUE not in str(error)
    assert SECRET_VALUE not in repr(error.__dict__)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(["password", "api_key", "X-Api-Key", "accessToken", "client_secret"]),
    # Marked, so that it cannot be a word the message holds anyway ("services").
    value=st.text(string.ascii_letters + string.digits + "-_.+/", max_size=40).map(
        "s3cr3t!".__add__
    ),
    where=st.sampled_from(["services.s", "services.s.policy", "stores", "runtime"]),
)
def test_no_secret_named_key_takes_a_value_anywhere(
    tmp_path: Path, key: str, value: str, where: str
) -> None:
    assert is_secret_key(key)
    # The service's own table is STRIPE's: a key goes on at its end.
    head = STRIPE if where.startswith("services") else ""
    table = "" if where == "services.s" else f"[{where}]\n"
    path = write(tmp_path, f'{head}{table}"{key}" = "{value}"\n')
    error = refused(path)
    assert error.key == f"{where}.{key}"
    assert value not in str(error)


# Each Retry field with values of the right TOML type, valid or not.
RETRY_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "attempts": st.integers(-3, 12),
    "initial_delay": st.floats(-5, 100, allow_nan=False) | st.just(math.inf),
    "multiplier": st.floats(-1, 5, allow_nan=False),
    "max_delay": st.floats(-5, 100, allow_nan=False),
    "deadline": st.floats(-1, 100, allow_nan=False),
}


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), field=st.sampled_from(sorted(RETRY_VALUES)))
def test_a_policy_value_loads_exactly_as_python_builds_it_or_fails_naming_its_key(
    tmp_path: Path, data: st.DataObject, field: str
) -> None:
    value = data.draw(RETRY_VALUES[field])
    toml = repr(value) if not math.isinf(value) else "inf"
    path = write(tmp_path, STRIPE + f"[services.s.policy.retry]\n{field} = {toml}\n")
    expected = built_in_python(field, value)
    if isinstance(expected, ConfigError):
        failure = refused(path)
        # The field Python's check names: the value's own, or the one it conflicts with.
        assert failure.key == f"services.s.policy.retry.{expected.field}"
        assert expected.reason in failure.reason
    else:
        assert load_config(path).services["s"].policy == {"retry": expected}


def built_in_python(field: str, value: Any) -> Retry | ConfigError:
    try:
        return Retry(**{field: value})
    except ConfigError as error:
        return error


def test_a_file_that_cannot_be_read_or_parsed_says_so_with_the_line(tmp_path: Path) -> None:
    missing = refused(tmp_path / "absent.toml")
    assert str(missing) == f"{tmp_path / 'absent.toml'}: cannot be read: No such file or directory"
    broken = refused(write(tmp_path, '[stores]\nlog = "sqlite:///a.db"\nstate = \n'))
    assert str(broken).startswith(f"{tmp_path / 'connector.toml'}: is not valid TOML: line 3,")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"a = '\xff'\n")
    assert str(refused(binary)) == f"{binary}: is not UTF-8 text"


def test_the_example_file_loads_every_adapter_with_only_the_policies_it_sets() -> None:
    config = load_config(EXAMPLE)
    assert {name: type(service).__name__ for name, service in config.services.items()} == {
        "stripe": "StripeConfig",
        "paypal": "PayPalConfig",
        "sendgrid": "SendGridConfig",
        "mailgun": "MailgunConfig",
        "twilio": "TwilioConfig",
        "billing": "HttpServiceConfig",
    }
    stripe = config.services["stripe"]
    assert stripe.policy == {
        "timeout": 45.0,
        "retry": Retry(
            attempts=4,
            initial_delay=0.5,
            retryable_statuses=frozenset({409, 429, 500, 502, 503, 504}),
        ),
        "breaker": Breaker(failure_threshold=5, open_duration=30.0),
    }
    assert config.services["sendgrid"].policy == {
        "rate_limit": RateLimit(rate=600, period=60),
        "key_by": "tenant",
    }
    assert config.services["twilio"].policy == {"rate_limit": None}  # `false`: off
    assert config.services["paypal"].policy == {}
    billing = config.services["billing"]
    assert isinstance(billing, HttpServiceConfig)
    assert billing.auth == Auth(api_key_header="X-Billing-Key")
    assert billing.health == HealthProbe(path="/healthz", expect_status=204, timeout=2.0)


def test_false_turns_off_only_policies_that_can_be_off(tmp_path: Path) -> None:
    text = STRIPE + "[services.s.policy]\nbreaker = false\nretry_budget = false\nidempotent = false"
    assert load_config(write(tmp_path, text)).services["s"].policy == {
        "breaker": None,
        "retry_budget": None,
        "idempotent": False,
    }
    error = refused(write(tmp_path, STRIPE + "[services.s.policy]\nretry = false"))
    assert error.key == "services.s.policy.retry"


def test_config_file_errors_pickle_with_their_fields(tmp_path: Path) -> None:
    import pickle

    error = refused(write(tmp_path, "colour = 1"))
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.file, copy.key, str(copy)) == (
        ConfigFileError,
        error.file,
        error.key,
        str(error),
    )


# -- wiring -----------------------------------------------------------------------


class Vendors(msgspec.Struct):
    stripe: FakeStripe
    paypal: FakePayPal
    sendgrid: FakeSendGrid
    mailgun: FakeMailgun
    twilio: FakeTwilio
    api: FakeJsonApi
    urls: dict[str, str]


@pytest.fixture(scope="module")
def vendors() -> Iterator[Vendors]:
    fakes = Vendors(
        stripe=FakeStripe(STRIPE_KEY),
        paypal=FakePayPal(client_id=PAYPAL_ID, client_secret=PAYPAL_SECRET),
        sendgrid=FakeSendGrid([SENDGRID_KEY]),
        mailgun=FakeMailgun([MAILGUN_KEY]),
        twilio=FakeTwilio(),
        api=FakeJsonApi(),
        urls={},
    )
    names = ("stripe", "paypal", "sendgrid", "mailgun", "twilio", "api")
    with (
        serve_asgi(fakes.stripe.app) as stripe,
        serve_asgi(fakes.paypal.app) as paypal,
        serve_asgi(fakes.sendgrid.app) as sendgrid,
        serve_asgi(fakes.mailgun.app) as mailgun,
        serve_asgi(fakes.twilio.app) as twilio,
        serve_asgi(fakes.api.app) as api,
    ):
        fakes.urls = dict(zip(names, (stripe, paypal, sendgrid, mailgun, twilio, api), strict=True))
        yield fakes


def every_adapter(vendors: Vendors, stores: str = "") -> str:
    urls = vendors.urls
    twilio = vendors.twilio
    return f"""
[runtime]
seed = 11
shutdown_timeout = 5

[stores]
{stores}

[services.stripe]
adapter = "stripe"
base_url = "{urls["stripe"]}"
credentials = {{ env = {{ token = "STRIPE_SECRET_KEY" }} }}
policy = {{ timeout = 2, {FAST_RETRY} }}

[services.paypal]
adapter = "paypal"
base_url = "{urls["paypal"]}"
credentials = {{ env = {{ client_id = "PAYPAL_CLIENT_ID", client_secret = "PAYPAL_SECRET" }} }}
policy = {{ timeout = 2 }}

[services.sendgrid]
adapter = "sendgrid"
base_url = "{urls["sendgrid"]}"
sender = "shop@example.com"
credentials = {{ env = {{ token = "SENDGRID_KEY" }} }}

[services.mailgun]
adapter = "mailgun"
base_url = "{urls["mailgun"]}"
domain = "mg.example.com"
sender = "shop@example.com"
credentials = {{ data = {{ username = "api" }}, env = {{ password = "MAILGUN_KEY" }} }}

[services.twilio]
adapter = "twilio"
base_url = "{urls["twilio"]}"
lookup_base_url = "{urls["twilio"]}"
account_sid = "{twilio.account_sid}"
sender = "+15005550006"
credentials = {{ data = {{ username = "{twilio.account_sid}" }}, env = {{ password = "TWILIO" }} }}

[services.api]
adapter = "http"
base_url = "{urls["api"]}"
headers = {{ Accept = "application/json" }}
auth = {{ api_key_header = "X-Key" }}
credentials = {{ method = "api_key", env = {{ api_key = "API_KEY" }} }}
policy = {{ timeout = 2, key_by = "tenant" }}
"""


def environment(vendors: Vendors) -> dict[str, str]:
    return {
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "PAYPAL_CLIENT_ID": PAYPAL_ID,
        "PAYPAL_SECRET": PAYPAL_SECRET,
        "SENDGRID_KEY": SENDGRID_KEY,
        "MAILGUN_KEY": MAILGUN_KEY,
        "TWILIO": vendors.twilio.credentials().data["password"],
        "API_KEY": "api-key-from-env",
    }


@pytest.mark.anyio
async def test_every_adapter_is_wired_and_reaches_its_vendor_with_the_environments_credentials(
    vendors: Vendors, tmp_path: Path
) -> None:
    path = write(tmp_path, every_adapter(vendors, f'log = "sqlite:///{tmp_path}/logs.db"'))
    async with Runtime.from_config(path, environ=environment(vendors)) as app:
        services = app.services
        assert isinstance(services["stripe"], StripePaymentGateway)
        charge = ChargeRequest(amount=Money(500, "EUR"), payment_method="pm_card_visa")
        assert (await services["stripe"].charge(charge)).status == "succeeded"
        vaulted = ChargeRequest(amount=Money(500, "EUR"), payment_method="card:8kk8451t")
        assert (await services["paypal"].charge(vaulted)).status == "succeeded"
        mail = EmailMessage(to=["ada@example.com"], subject="Hi", text="Hello")
        await app.service("sendgrid", SendGridEmail).send_transactional_email(mail)
        await app.service("mailgun", MailgunEmail).send_transactional_email(mail)
        await app.service("twilio", TwilioSms).send(SmsMessage(to="+14155550123", body="Hi"))
        answer = await services["api"].request(Endpoint.create("/orders"), tenant_id="t1")
        assert answer.status == 200
        assert isinstance(services["paypal"], PayPalPaymentGateway)
        # Adapter defaults stay where the file sets nothing: Stripe's limit, not a bare policy.
        assert services["stripe"].policy.rate_limit == RateLimit.per_second(100)
        assert services["stripe"].policy.timeout == 2.0
        assert services["stripe"].policy.retry.attempts == 2
        assert app.runtime.actor("api").policy.key_by == "tenant"
    assert vendors.stripe.received[-1].header("authorization") == f"Bearer {STRIPE_KEY}"
    assert vendors.paypal.requests_to("/v1/oauth2/token")  # the refresher fetched a token
    assert [mail.recipients for mail in vendors.sendgrid.sent][-1] == ["ada@example.com"]
    assert vendors.mailgun.sent[-1].domain == "mg.example.com"
    assert vendors.twilio.messages[-1]["to"] == "+14155550123"
    request = vendors.api.requests_to("/orders")[-1]
    assert request.header("x-key") == "api-key-from-env"
    assert request.header("accept") == "application/json"
    # The log store the file names holds every call, written by the time the block is left.
    async with SqliteLogStore(tmp_path / "logs.db") as logs:
        written = await logs.query(limit=500)
    services_logged = {record.service_name for record in written}
    assert {"stripe", "paypal", "sendgrid", "mailgun", "twilio", "api"} <= services_logged
    assert all(record.status is LogStatus.SUCCESS for record in written)
    assert not any(STRIPE_KEY in msgspec.json.encode(record).decode() for record in written)


@pytest.mark.anyio
async def test_a_missing_environment_variable_is_a_config_error_naming_its_key(
    vendors: Vendors, tmp_path: Path
) -> None:
    path = write(tmp_path, every_adapter(vendors))
    environ = environment(vendors)
    del environ["MAILGUN_KEY"]
    app = Runtime.from_config(path, environ=environ)
    with pytest.raises(ConfigFileError) as caught:
        async with app:
            pytest.fail("entered without its credentials")
    assert caught.value.key == "services.mailgun.credentials.env.password"
    assert str(caught.value) == (
        f"{path}: services.mailgun.credentials.env.password: "
        "environment variable MAILGUN_KEY is not set"
    )
    for secret in environ.values():
        assert secret not in str(caught.value)


@pytest.mark.anyio
async def test_an_adapter_refusing_a_setting_names_its_key(tmp_path: Path) -> None:
    text = (
        '[services.m]\nadapter = "mailgun"\ndomain = "not a domain"\n'
        'credentials = { data = { username = "api" }, env = { password = "K" } }\n'
    )
    path = write(tmp_path, text)
    assert isinstance(load_config(path).services["m"], MailgunConfig)  # the schema allows it
    with pytest.raises(ConfigFileError) as caught:
        async with Runtime.from_config(path, environ={"K": "key"}):
            pytest.fail("entered with a bad domain")
    assert caught.value.key == "services.m.domain"
    assert "domain name" in str(caught.value)


@pytest.mark.anyio
async def test_stored_credentials_and_every_store_come_from_the_file(
    vendors: Vendors, tmp_path: Path
) -> None:
    key = generate_key()
    stores = "\n".join(
        f'{kind} = "sqlite:///{tmp_path}/{kind}.db"'
        for kind in ("log", "state", "credentials", "idempotency")
    )
    text = f"""
[stores]
{stores}
shared_state = "memory://"

[services.stripe]
adapter = "stripe"
base_url = "{vendors.urls["stripe"]}"
credentials = {{ store = true }}
policy = {{ timeout = 2, key_by = "tenant" }}
"""
    async with SqliteCredentialStore(tmp_path / "credentials.db", clock=lambda: 0.0, key=key) as c:
        bearer = Credentials(auth_method=AuthMethod.BEARER_TOKEN, data={"token": STRIPE_KEY})
        await c.put("stripe", "tenant-a", bearer)
    path = write(tmp_path, text)
    charge = ChargeRequest(amount=Money(700, "EUR"), payment_method="pm_card_visa")
    async with Runtime.from_config(path, environ={"CONNECTOR_SECRET_KEY": key}) as app:
        stripe = app.service("stripe", StripePaymentGateway)
        first = await stripe.charge(charge, tenant_id="tenant-a", idempotency_key="order-1")
        again = await stripe.charge(charge, tenant_id="tenant-a", idempotency_key="order-1")
        assert first == again
        assert isinstance(app.runtime.actor("stripe").shared_state, MemorySharedState)
        with pytest.raises(ConfigError, match="StripePaymentGateway, not TwilioSms"):
            app.service("stripe", TwilioSms)
    assert vendors.stripe.received[-1].header("authorization") == f"Bearer {STRIPE_KEY}"
    assert {p.name async for p in anyio.Path(tmp_path).glob("*.db")} == {
        "log.db",
        "state.db",
        "credentials.db",
        "idempotency.db",
    }
    async with SqliteLogStore(tmp_path / "log.db") as logs:
        records = await logs.query(limit=10)
    assert {record.tenant_id for record in records} == {"tenant-a"}


@pytest.mark.anyio
async def test_a_store_url_from_the_environment_may_hold_a_password_the_file_may_not(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '[stores]\nlog = { env = "LOG_URL" }\n')
    with pytest.raises(ConfigFileError) as caught:
        async with Runtime.from_config(path, environ={}):
            pytest.fail("entered without a log store URL")
    assert caught.value.key == "stores.log.env"
    assert "LOG_URL is not set" in str(caught.value)
    with pytest.raises(ConfigFileError) as caught:
        async with Runtime.from_config(path, environ={"LOG_URL": "redis://:pw@cache/0"}):
            pytest.fail("entered with a Redis log store")
    assert "not redis://" in str(caught.value)
    assert "pw" not in str(caught.value)
    url = f"sqlite:///{tmp_path}/from-env.db"
    async with Runtime.from_config(path, environ={"LOG_URL": url}) as app:
        assert app.runtime.log_writer is not None
    assert (tmp_path / "from-env.db").exists()


@pytest.mark.anyio
async def test_the_example_file_wires_with_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # its SQLite stores are relative paths
    shutil.copy(EXAMPLE, tmp_path / "connector.toml")
    environ = {
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "PAYPAL_CLIENT_ID": PAYPAL_ID,
        "PAYPAL_CLIENT_SECRET": PAYPAL_SECRET,
        "MAILGUN_API_KEY": MAILGUN_KEY,
        "TWILIO_AUTH_TOKEN": "twilio-token",
        "BILLING_API_KEY": "billing-key",
        "CONNECTOR_SECRET_KEY": generate_key(),
    }
    async with Runtime.from_config("connector.toml", environ=environ, rng=random.Random(3)) as app:
        assert sorted(app.services) == sorted(load_config(EXAMPLE).services)
        assert app.runtime.actor("twilio").policy.rate_limit is None
        assert app.runtime.actor("billing").policy.max_concurrency == 20
    assert (tmp_path / "connector.sqlite3").exists()


def test_from_config_reads_the_file_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError):
        Runtime.from_config(write(tmp_path, "colour = 1"))
    app = Runtime.from_config(write(tmp_path, ""))
    assert isinstance(app, ConfiguredRuntime)
    assert app.services == {}
    with pytest.raises(RuntimeError, match="async with"):
        _ = app.runtime


def test_the_stripe_config_type_is_what_the_file_decodes_to(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, STRIPE + 'api_version = "2026-06-24.dahlia"'))
    service = config.services["s"]
    assert isinstance(service, StripeConfig)
    assert service.api_version == "2026-06-24.dahlia"
    assert config.file == str(tmp_path / "connector.toml")
