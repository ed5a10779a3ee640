"""Redaction: no secret survives `redact` or `redact_text`, and nothing else is touched."""

from __future__ import annotations

import base64
import copy
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector._redaction import REDACTED, is_secret_key, redact, redact_text

# Text that can trip no pattern: no ":", "=", "@" or "/" for pairs, user info
# or URLs, and no "b" for "Bearer"/"Basic".
SAFE_ALPHABET = "".join(c for c in string.ascii_letters + string.digits + " -_." if c not in "bB")
safe_text = st.text(SAFE_ALPHABET, max_size=20)
safe_keys = st.one_of(safe_text, st.integers(), st.booleans(), st.none()).filter(
    lambda key: not is_secret_key(key)
)
leaves = st.one_of(safe_text, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none())


def json_like(keys: st.SearchStrategy[Any], leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.tuples(children, children),
            st.dictionaries(keys, children, max_size=4),
        ),
        max_leaves=20,
    )


SECRET_PARTS = ["password", "token", "api_key", "secret", "authorization", "credit_card"]


@st.composite
def secret_keys(draw: st.DrawFn) -> str:
    """A secret word in any case, with any separators, inside any other name."""
    part = draw(st.sampled_from(SECRET_PARTS))
    spelled = "".join(
        char.upper() if draw(st.booleans()) else char.lower()
        for char in part.replace("_", draw(st.sampled_from(["_", "-", "", " "])))
    )
    return draw(safe_text) + spelled + draw(safe_text)


# Every secret value carries "§", which no safe text contains: finding "§"
# anywhere after redaction means a secret leaked.
secret_values = st.builds(lambda n, v: f"§{n}§{v}", st.integers(0, 10**6), safe_text)


@st.composite
def trees_with_secrets(draw: st.DrawFn) -> Any:
    """Safe trees with secret-named keys, holding secrets of any shape, spliced in at any depth."""
    secret_subtree = json_like(safe_keys, st.one_of(secret_values, leaves))

    def splice(node: Any) -> Any:
        if isinstance(node, dict):
            node = {key: splice(value) for key, value in node.items()}
            for _ in range(draw(st.integers(0, 2))):
                node[draw(secret_keys())] = draw(secret_subtree)
            return node
        if isinstance(node, list):
            return [splice(value) for value in node]
        if isinstance(node, tuple):
            return tuple(splice(value) for value in node)
        return node

    root = draw(st.dictionaries(safe_keys, json_like(safe_keys, leaves), max_size=4))
    return splice(root)


@given(trees_with_secrets())
def test_no_secret_survives_at_any_depth(tree: Any) -> None:
    assert "§" not in repr(redact(tree))


@given(trees_with_secrets())
def test_redaction_does_not_mutate_its_input(tree: Any) -> None:
    before = copy.deepcopy(tree)
    redact(tree)
    assert tree == before


@given(json_like(safe_keys, leaves))
def test_data_without_secrets_comes_back_equal(tree: Any) -> None:
    assert redact(tree) == tree


@st.composite
def trees_quoting_known_secrets(draw: st.DrawFn) -> tuple[Any, list[str]]:
    """Safe-keyed trees whose strings quote credential values the caller knows."""
    secrets = draw(st.lists(secret_values, min_size=1, max_size=3))
    quoting = st.builds(
        lambda before, secret, after: before + secret + after,
        safe_text,
        st.sampled_from(secrets),
        safe_text,
    )
    return draw(json_like(safe_keys, st.one_of(leaves, quoting))), secrets


@given(trees_quoting_known_secrets())
def test_known_secret_values_are_removed_from_strings_anywhere(
    case: tuple[Any, list[str]],
) -> None:
    tree, secrets = case
    assert "§" not in repr(redact(tree, secrets))


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "user_password",
        "Authorization",
        "Proxy-Authorization",
        "X-Api-Key",
        "x_api_key",
        "apiKey",
        "access_token",
        "refreshToken",
        "client_secret",
        "credit_card",
        "CreditCard",
        "card[number]",
        "cvc",
        "Set-Cookie",
        b"password",
    ],
)
def test_secret_key_names_in_any_spelling(key: Any) -> None:
    assert is_secret_key(key)
    assert redact({key: {"deep": ["value"]}}) == {key: REDACTED}


@pytest.mark.parametrize("key", ["user", "email", "amount", "currency", 42, None, (1, 2), 3.5])
def test_ordinary_key_names(key: Any) -> None:
    assert not is_secret_key(key)
    assert redact({key: "value"}) == {key: "value"}


def test_headers_are_redacted_like_any_mapping() -> None:
    headers = {"Authorization": "Bearer sk_1", "X-Api-Key": "k_2", "Content-Type": "json"}
    assert redact(headers) == {
        "Authorization": REDACTED,
        "X-Api-Key": REDACTED,
        "Content-Type": "json",
    }


def test_strings_inside_data_are_scrubbed_too() -> None:
    data = {"url": "https://api.x.com/v1?api_key=k_123&page=2", "note": ["Bearer abc123"]}
    assert redact(data) == {
        "url": f"https://api.x.com/v1?api_key={REDACTED}&page=2",
        "note": [f"Bearer {REDACTED}"],
    }


# ---------------------------------------------------------------- free text

token68 = st.text(string.ascii_letters + string.digits + "-._~+/", min_size=1, max_size=40)


@given(st.sampled_from(["Bearer", "bearer", "BEARER"]), token68, safe_text, safe_text)
def test_bearer_tokens_are_removed(scheme: str, token: str, before: str, after: str) -> None:
    text = f"{before} Authorization: {scheme} {token} {after}"
    result = redact_text(text)
    assert f"{scheme} {token}" not in result
    assert result == f"{before} Authorization: {REDACTED} {after}"
    assert redact_text(f"{before} ({scheme} {token})") == f"{before} ({scheme} {REDACTED})"


@given(st.text(string.ascii_letters + string.digits, min_size=1, max_size=20), safe_text)
def test_basic_credentials_are_removed(user: str, password: str) -> None:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    result = redact_text(f"sent Basic {encoded} to the API")
    assert encoded not in result
    assert result == f"sent Basic {REDACTED} to the API"


def test_basic_followed_by_a_plain_word_is_prose() -> None:
    assert redact_text("Basic authentication required") == "Basic authentication required"


@given(
    st.lists(secret_values, min_size=1, max_size=4),
    st.lists(safe_text, min_size=1, max_size=5),
)
def test_given_secret_values_are_removed(secrets: list[str], words: list[str]) -> None:
    text = " ".join(word + secret for word, secret in zip(words * 4, secrets, strict=False))
    result = redact_text(text, secrets)
    assert "§" not in result
    assert result == redact_text(result, secrets)  # idempotent


def test_url_encoded_secret_values_are_removed() -> None:
    secret = "p@ss word/1"
    text = "GET /v1?pw=p%40ss%20word%2F1 and form p%40ss+word%2F1"
    assert "p%40ss" not in redact_text(text, [secret])


def test_empty_secrets_are_ignored() -> None:
    assert redact_text("nothing to hide", ["", ""]) == "nothing to hide"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /v1?api_key=abc&x=1 failed", f"GET /v1?api_key={REDACTED}&x=1 failed"),
        ("POST /oauth?client_secret=s3&grant=x", f"POST /oauth?client_secret={REDACTED}&grant=x"),
        ("X-Api-Key: k_live_1", f"X-Api-Key: {REDACTED}"),
        ('{"password": "hunter2", "user": "bob"}', f'{{"password": "{REDACTED}", "user": "bob"}}'),
        ("{'token': 'abc', 'n': 1}", f"{{'token': '{REDACTED}', 'n': 1}}"),
        ('{"credit_card": 4242424242424242}', f'{{"credit_card": {REDACTED}}}'),
        ("connect postgresql://app:pw@db/logs", f"connect postgresql://{REDACTED}@db/logs"),
        ("url: https://x.io/cb?token=t1", f"url: https://x.io/cb?token={REDACTED}"),
        ("HTTP 500: Internal Server Error", "HTTP 500: Internal Server Error"),
        ("retry after 3 s; limit=100", "retry after 3 s; limit=100"),
    ],
)
def test_credentials_in_messages(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@given(st.text(max_size=200))
def test_redact_text_is_idempotent_and_total(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once
