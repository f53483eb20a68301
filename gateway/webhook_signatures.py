"""Marketplace webhook signatures, the receiving side: the gateway checks what eBay and Etsy send.

eBay Notification API: `x-ebay-signature` is base64 of a JSON `{"alg", "kid", "signature", "digest"}`;
`signature` is a base64 DER ECDSA signature (SHA-1 digest) of the raw body, by the key eBay serves at
`/commerce/notification/v1/public_key/{kid}`. The endpoint-validation challenge answers
`sha256_hex(challenge_code + verification_token + endpoint_url)`.

Etsy (Standard Webhooks): `webhook-id`, `webhook-timestamp` (epoch seconds) and `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, several separated by spaces); the signing
secret is `whsec_<base64 key>`. A timestamp outside the tolerance is refused: a replay.

The sending side is the sandbox's own (`ops.tools.sandbox.webhook_signing`), written apart from this one from
the same published schemes, so the tests that pass a sandbox delivery through this check compare two
readings of the documentation, not one function with itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


class SignatureRefused(Exception):
    """The webhook is unsigned, forged, malformed or too old."""


# --- eBay ----------------------------------------------------------------------------------------------


def ebay_challenge_response(challenge_code: str, verification_token: str, endpoint_url: str) -> str:
    """Answer eBay's endpoint-validation challenge."""
    return hashlib.sha256((challenge_code + verification_token + endpoint_url).encode()).hexdigest()


@dataclass(frozen=True)
class EbaySignatureHeader:
    kid: str
    signature: bytes


def parse_ebay_signature(header: str | None) -> EbaySignatureHeader:
    """Read `x-ebay-signature`; SignatureRefused when absent or malformed."""
    if not header:
        raise SignatureRefused("no x-ebay-signature header")
    try:
        fields = json.loads(base64.b64decode(header, validate=True))
        kid, signature = fields["kid"], fields["signature"]
        if not isinstance(kid, str) or not isinstance(signature, str) or not kid:
            raise SignatureRefused("malformed x-ebay-signature")
        return EbaySignatureHeader(kid=kid, signature=base64.b64decode(signature, validate=True))
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        raise SignatureRefused("malformed x-ebay-signature") from error


def verify_ebay_signature(public_key_pem: str, signature: bytes, body: bytes) -> None:
    """Check the ECDSA signature of the body; SignatureRefused when it does not match."""
    try:
        key = serialization.load_pem_public_key(public_key_pem.encode())
    except ValueError as error:
        raise SignatureRefused("unreadable eBay public key") from error
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SignatureRefused("the eBay key is not an ECDSA key")
    try:
        key.verify(signature, body, ec.ECDSA(hashes.SHA1()))  # noqa: S303 - eBay's scheme signs SHA-1 digests
    except InvalidSignature as error:
        raise SignatureRefused("forged eBay notification") from error


# --- Etsy (Standard Webhooks) ---------------------------------------------------------------------------


def _etsy_key(secret: str) -> bytes:
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return encoded.encode()


def _etsy_signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,…` signature Etsy computes for this delivery."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_etsy_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_etsy_signature(
    secret: str,
    webhook_id: str | None,
    timestamp: str | None,
    signature_header: str | None,
    body: bytes,
    *,
    now: float,
    tolerance_seconds: int,
) -> None:
    """Check an Etsy delivery's HMAC and its age; SignatureRefused otherwise."""
    if not webhook_id or not timestamp or not signature_header:
        raise SignatureRefused("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent_at = int(timestamp)
    except ValueError as error:
        raise SignatureRefused("malformed webhook-timestamp") from error
    if abs(now - sent_at) > tolerance_seconds:
        raise SignatureRefused("webhook-timestamp outside the tolerance: a replay")
    expected = _etsy_signature(secret, webhook_id, sent_at, body)
    offered = signature_header.split()
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise SignatureRefused("forged Etsy delivery")
