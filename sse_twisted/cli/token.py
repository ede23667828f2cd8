"""
C{ssedemo token}: mint a JWT with the claim layout the server reads, for
tests and for operators.

For C{HS*} the key file is the server's C{--jwt-key} file itself, read as
the server reads it; for the other algorithms it is the PEM private key
whose public half the server's C{--jwt-key} holds.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from twisted.python import usage

from sse_twisted.auth.jwt import ALGORITHMS, BadKey, load_key, short_key_warning
from sse_twisted.cli._common import VerbOptions

DEFAULT_TTL = 3600
"""Seconds a token is valid for, unless C{--ttl} says otherwise."""


class Options(VerbOptions):
    """
    The options of C{ssedemo token}.
    """

    synopsis = "--key-file FILE [options]"
    longdesc = (
        "Print a JWT that a server started with the same --jwt-key (and"
        " --jwt-algorithm) accepts, with iat and exp. Give --subscribe,"
        " --publish or both; each takes one topic pattern (a topic, a prefix"
        " ending in .*, or *) and may be repeated."
    )
    optParameters = [
        [
            "key-file",
            None,
            None,
            "HS*: the server's --jwt-key file (its text without the trailing"
            " newline is the secret). RS*, PS*, ES*, EdDSA: the PEM private key"
            " whose public key the server's --jwt-key holds. Required.",
        ],
        ["algorithm", None, "HS256", f"One of {', '.join(ALGORITHMS)}."],
        ["ttl", None, DEFAULT_TTL, "Seconds until the token expires.", float],
        ["audience", None, None, "The aud claim (the server's --jwt-audience)."],
        ["issuer", None, None, "The iss claim (the server's --jwt-issuer)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["subscribe"] = []
        self["publish"] = []

    def opt_subscribe(self, pattern: str) -> None:
        """
        A topic pattern the token may subscribe to (repeatable).
        """
        self["subscribe"].append(pattern)

    def opt_publish(self, pattern: str) -> None:
        """
        A topic pattern the token may publish to (repeatable).
        """
        self["publish"].append(pattern)

    def postOptions(self) -> None:
        if self["key-file"] is None:
            raise usage.UsageError("--key-file is required")
        if self["algorithm"] not in ALGORITHMS:
            known = ", ".join(ALGORITHMS)
            raise usage.UsageError(f"--algorithm must be one of {known}")
        if not (self["subscribe"] or self["publish"]):
            raise usage.UsageError(
                "give --subscribe PATTERN, --publish PATTERN or both"
            )
        if not 0 < self["ttl"] <= 10 * 365 * 86400:
            raise usage.UsageError("--ttl must be a positive number of seconds")


def signing_key(text: bytes, algorithm: str) -> Any:
    """
    Read the key that signs tokens of C{algorithm}.

    @param text: The key file's contents.
    @param algorithm: One of L{ALGORITHMS}.
    @return: The key, ready for C{jwt.encode}.
    @raise BadKey: If C{text} is no such key.
    """
    if algorithm.startswith("HS"):
        return load_key(text, algorithm)  # exactly as the server reads it
    try:
        key = load_pem_private_key(text, password=None)
        return jwt.get_algorithm_by_name(algorithm).prepare_key(key)
    except (ValueError, TypeError, jwt.InvalidKeyError) as e:
        raise BadKey(
            f"not a PEM private key for {algorithm}: {str(e) or type(e).__name__}"
        ) from None


def mint(
    key: Any,
    algorithm: str,
    subscribe: Sequence[str],
    publish: Sequence[str],
    *,
    now: float,
    ttl: float = DEFAULT_TTL,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """
    @param key: From L{signing_key}.
    @param now: The time it is issued at, in seconds since the epoch.
    @return: A token granting C{subscribe} and C{publish}, with C{iat} and
        C{exp}, and C{aud} and C{iss} when given.
    """
    claims: dict[str, Any] = {
        "sse": {"subscribe": list(subscribe), "publish": list(publish)},
        "iat": int(now),
        "exp": int(now + ttl),
    }
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short key is reported by run()
        return jwt.encode(claims, key, algorithm=algorithm)


def run(options: Options, out: TextIO, err: TextIO, now: float | None = None) -> int:
    """
    Print the token the options describe.

    @return: The exit status.
    """
    algorithm = options["algorithm"]
    try:
        text = Path(options["key-file"]).read_bytes()
        key = signing_key(text, algorithm)
    except (OSError, BadKey) as e:
        err.write(f"ssedemo token: --key-file: {e}\n")
        return 1
    if algorithm.startswith("HS"):
        short = short_key_warning(key, algorithm)
        if short:
            err.write(f"ssedemo token: warning: {short}\n")
    out.write(
        mint(
            key,
            algorithm,
            options["subscribe"],
            options["publish"],
            now=time.time() if now is None else now,
            ttl=options["ttl"],
            audience=options["audience"],
            issuer=options["issuer"],
        )
        + "\n"
    )
    return 0
