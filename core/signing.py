"""Ed25519 signatures over model manifests, and the file digest they vouch for.

The server signs; devices get the public key at enrolment and refuse any manifest that does
not verify, so a compromised network path cannot hand them a different model.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.errors import ShopfloorError


class SignatureError(ShopfloorError):
    """A manifest's signature does not verify with the enrolled public key."""


def file_sha256(path: Path) -> str:
    """The sha256 a manifest vouches for, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical(payload: dict) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The server's signing key, created (mode 600) on first use."""
    if path.exists():
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    return key


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, payload: dict) -> dict:
    """`payload` plus `signature` (base64 Ed25519 over its canonical JSON)."""
    return payload | {"signature": base64.b64encode(key.sign(canonical(payload))).decode()}


def verify(public_key_pem: bytes, signed: dict) -> dict:
    """The payload without its signature; raises SignatureError when it does not verify."""
    payload = {k: v for k, v in signed.items() if k != "signature"}
    try:
        public = serialization.load_pem_public_key(public_key_pem)
        assert isinstance(public, Ed25519PublicKey), "enrolled key is not Ed25519"
        public.verify(base64.b64decode(signed.get("signature", "")), canonical(payload))
    except (InvalidSignature, ValueError, TypeError) as err:
        raise SignatureError(
            f"manifest signature does not verify for {payload.get('model')} v{payload.get('version')}"
        ) from err
    return payload
