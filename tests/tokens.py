"""
Keys and tokens for the authorization tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

SECRET = b"a shared secret of thirty-two bytes or more"


@cache
def private_key(algorithm: str) -> Any:
    """
    @return: A private key for C{algorithm} (one per algorithm per run).
    """
    if algorithm.startswith(("RS", "PS")):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(algorithm)


def public_pem(algorithm: str) -> bytes:
    """
    @return: The PEM public key that verifies C{algorithm}'s tokens.
    """
    key = private_key(algorithm).public_key()
    pem: bytes = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


def token(
    claims: dict[str, Any],
    algorithm: str = "HS256",
    key: Any = None,
    headers: dict[str, Any] | None = None,
) -> str:
    """
    @return: C{claims} signed with C{algorithm}, by default with L{SECRET}
        or the algorithm's L{private_key}.
    """
    if key is None:
        key = SECRET if algorithm.startswith("HS") else private_key(algorithm)
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def grants(subscribe: list[str] = (), publish: list[str] = (), **more: Any) -> str:  # type: ignore[assignment]
    """
    @return: An HS256 token with these C{sse} patterns and other claims.
    """
    claims = {"sse": {"subscribe": list(subscribe), "publish": list(publish)}, **more}
    return token(claims)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hand_made(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """
    @return: A token put together by hand, HMAC-SHA256 signed with any
        bytes at all (PyJWT would refuse a PEM key as an HMAC secret), or
        unsigned when C{header} says C{alg: none}.
    """
    signing_input = (
        _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    )
    signature = b""
    if header.get("alg") != "none":
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)
