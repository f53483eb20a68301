"""One deployment secret, one key per purpose; old secrets stay readable until rotation re-seals."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from ops.adapters.media_urls import media_signing_secret, media_verification_secrets
from ops.adapters.secrets_box import SecretsBox, UnreadableSecret
from ops.config.secret_keys import CURSORS, MARKETPLACE_TOKENS, MEDIA_URLS, derive_key
from ops.config.settings import Settings

SECRET = "a-deployment-secret-" + "s" * 30


def test_each_purpose_gets_its_own_key_and_none_is_the_secret() -> None:
    keys = {purpose: derive_key(SECRET, purpose) for purpose in (MARKETPLACE_TOKENS, MEDIA_URLS, CURSORS)}
    assert len(set(keys.values())) == 3
    assert all(len(key) == 32 and SECRET.encode() not in key for key in keys.values())
    settings = Settings(stoflow_secret_key=SecretStr(SECRET))
    assert media_signing_secret(settings) == keys[MEDIA_URLS]
    assert media_signing_secret(settings) != SECRET.encode()


def test_the_key_ring_reads_old_seals_and_writes_with_the_current_secret() -> None:
    old, new = SecretsBox("old-" + SECRET), SecretsBox(["new-" + SECRET, "old-" + SECRET])
    sealed_by_old = old.seal({"refresh_token": "r"})
    assert new.open(sealed_by_old) == {"refresh_token": "r"}
    resealed = new.reseal(sealed_by_old)
    assert SecretsBox("new-" + SECRET).open(resealed) == {"refresh_token": "r"}
    with pytest.raises(UnreadableSecret, match="STOFLOW_SECRET_KEY"):
        old.open(resealed)


def test_old_media_signatures_verify_during_a_rotation() -> None:
    settings = Settings(
        stoflow_secret_key=SecretStr("new-" + SECRET), stoflow_old_secret_keys=SecretStr("old-" + SECRET)
    )
    secrets = media_verification_secrets(settings)
    assert secrets[0] == media_signing_secret(settings)
    assert derive_key("old-" + SECRET, MEDIA_URLS) in secrets
