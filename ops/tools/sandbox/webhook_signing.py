"""Webhook signatures as the fake marketplaces send them: eBay's ECDSA header, Etsy's Standard Webhooks HMAC.

The schemes are the ones eBay's Notification API and Etsy's webhooks document (the gateway's
`webhook_signatures` module is the checking side, written apart from this one). The sandbox keeps its own eBay
key pair and serves the public half at `/commerce/notification/v1/public_key/{kid}`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def new_ebay_key_pair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A key pair as the sandbox's own eBay key: the private key and the public key's PEM."""
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


def sign_ebay(private_key: ec.EllipticCurvePrivateKey, kid: str, body: bytes) -> str:
    """The `x-ebay-signature` header eBay would send with this body."""
    signature = private_key.sign(body, ec.ECDSA(hashes.SHA1()))  # noqa: S303 - eBay's scheme
    fields = {"alg": "ecdsa", "kid": kid, "signature": base64.b64encode(signature).decode(), "digest": "SHA1"}
    return base64.b64encode(json.dumps(fields).encode()).decode()


def sign_etsy(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value Etsy would send with this delivery (`secret` is `whsec_…`)."""
    encoded = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        key = encoded.encode()
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
