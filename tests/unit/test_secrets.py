"""Credentials at rest: Fernet encryption and key rotation."""

from __future__ import annotations

import pytest

from storage.secrets import SecretBox, SecretKeyError, UndecryptableSecret, generate_key

CREDENTIALS = {"username": "john@example.com", "password": "app-specific-pass-1234"}


def test_sealed_credentials_round_trip_and_hide_the_password() -> None:
    box = SecretBox(generate_key())
    token = box.seal(CREDENTIALS)
    assert b"app-specific-pass-1234" not in token
    assert box.open(token) == CREDENTIALS


def test_rotation_new_key_first_keeps_old_tokens_readable_then_old_key_can_go() -> None:
    old, new = generate_key(), generate_key()
    legacy = SecretBox(old).seal(CREDENTIALS)

    during = SecretBox(f"{new},{old}")
    assert during.open(legacy) == CREDENTIALS
    rotated = during.rotate(legacy)

    after = SecretBox(new)
    assert after.open(rotated) == CREDENTIALS
    with pytest.raises(UndecryptableSecret):
        after.open(legacy)


@pytest.mark.parametrize("keys", ["", " , ", "not-a-fernet-key"])
def test_unusable_keys_are_refused_with_a_clear_error(keys: str) -> None:
    with pytest.raises(SecretKeyError):
        SecretBox(keys)


def test_a_signature_verifies_for_its_purpose_only_and_survives_a_key_rotation() -> None:
    old, new = generate_key(), generate_key()
    signature = SecretBox(old).mac("oauth-state", "abc")
    assert SecretBox(old).verify_mac("oauth-state", "abc", signature)
    assert not SecretBox(old).verify_mac("push-channel", "abc", signature)  # another purpose
    assert not SecretBox(old).verify_mac("oauth-state", "abd", signature)  # another value
    assert SecretBox(f"{new},{old}").verify_mac("oauth-state", "abc", signature)  # during a rotation
    assert not SecretBox(new).verify_mac("oauth-state", "abc", signature)  # the old key dropped
