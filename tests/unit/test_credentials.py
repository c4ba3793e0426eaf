"""Typed credentials at rest: tagged JSON in the secret box, old rows still readable, secrets never in a repr."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage.secrets import SecretBox, UndecryptableSecret, generate_key
from sync import credentials
from sync.providers.base import AppPassword, Credentials, ExchangedAccount, GrantRevoked, OAuthTokens, TokenCache

PASSWORD = AppPassword("john@icloud.example", "abcd-efgh-ijkl-mnop")
TOKENS = OAuthTokens("ya29.access-secret", "1//refresh-secret", datetime(2030, 1, 7, 9, tzinfo=UTC),
                     ("https://www.googleapis.com/auth/calendar",))
CACHE = TokenCache('{"RefreshToken": {"k": {"secret": "M.R3_refresh-secret"}}}', "uid.utid")


@pytest.mark.parametrize("login", [PASSWORD, TOKENS, CACHE], ids=["app_password", "oauth", "msal_cache"])
def test_credentials_round_trip_encrypted_as_their_own_type(login: Credentials) -> None:
    box = SecretBox(generate_key())
    sealed = credentials.seal(box, login)
    assert credentials.unseal(box, sealed) == login
    assert box.open(sealed)["kind"] in ("app_password", "oauth", "msal_cache")
    for secret in ("abcd-efgh", "access-secret", "refresh-secret"):
        assert secret.encode() not in sealed


def test_rows_written_before_the_tag_read_as_an_app_password() -> None:
    box = SecretBox(generate_key())
    legacy = box.seal({"username": "john@icloud.example", "password": "abcd-efgh-ijkl-mnop"})
    assert credentials.unseal(box, legacy) == PASSWORD


@pytest.mark.parametrize("document", [{"kind": "kerberos"}, {"kind": "oauth", "access_token": "a"}, {}])
def test_a_document_of_no_known_kind_is_undecryptable_not_a_crash(document: dict[str, str]) -> None:
    box = SecretBox(generate_key())
    with pytest.raises(UndecryptableSecret):
        credentials.unseal(box, box.seal(document))


def test_reprs_never_show_a_secret() -> None:
    shown = (repr(PASSWORD) + repr(TOKENS) + repr(ExchangedAccount("john@gmail.example", TOKENS)) + str(GrantRevoked())
             + repr(CACHE))
    assert "john@icloud.example" in shown and "2030" in shown and "john@gmail.example" in shown
    assert not any(secret in shown for secret in ("abcd-efgh", "access-secret", "refresh-secret"))

