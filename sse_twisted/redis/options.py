"""
The Redis part of the command line: C{--redis} and the options that go with
it, and their checks.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from twisted.python import usage

from sse_twisted.redis.address import (
    URL_FORMS,
    InvalidRedisURL,
    Login,
    RedisAddress,
    SentinelAddress,
    parse_redis_url,
    with_password,
)
from sse_twisted.redis.tls import TLSFileError, load_client_tls

_MAX_REPLICAS = 1000
_MAX_REPLICA_TIMEOUT = 3600.0
_MIN_REPLICA_TIMEOUT = 0.001

PARAMETERS: list[list[Any]] = [
    [
        "redis",
        None,
        None,
        "Keep the events in a Redis stream, shared by every ssedemo on it:"
        f" {URL_FORMS}. The default port is 6379 (26379 for sentinels), the"
        " default database 0.",
    ],
    [
        "redis-key",
        None,
        "ssedemo",
        "The key of the Redis stream (with --redis).",
    ],
    [
        "redis-password-file",
        None,
        None,
        "File holding the Redis password (its text without the trailing"
        " newline), instead of one in the --redis URL, where the process"
        " list shows it; with USER@ in the URL, that user's password.",
    ],
    [
        "redis-sentinel-password-file",
        None,
        None,
        "File holding the sentinels' own password, if they require one (the"
        " password of --redis or --redis-password-file is the data servers').",
    ],
    [
        "redis-ca",
        None,
        None,
        "PEM file of the certificate authorities that Redis's TLS certificates"
        " (rediss://) must come from; default: the system's trust store.",
    ],
    [
        "redis-cert",
        None,
        None,
        "PEM file of the client certificate shown to Redis over TLS"
        " (with its key, unless --redis-key-file is given).",
    ],
    [
        "redis-key-file",
        None,
        None,
        "PEM file of the private key of --redis-cert.",
    ],
    [
        "redis-replicas",
        None,
        0,
        "Answer a publish with 200 only once this many Redis replicas have"
        " the event (WAIT), else 503; 0: once the master has it.",
        int,
    ],
    [
        "redis-replica-timeout",
        None,
        1.0,
        "Seconds (decimals allowed, more than 0) that a publish waits for"
        " --redis-replicas.",
        float,
    ],
]

_NEEDS_REDIS = (
    "redis-password-file",
    "redis-sentinel-password-file",
    "redis-ca",
    "redis-cert",
    "redis-key-file",
)


def check(options: MutableMapping[str, Any]) -> None:
    """
    Check the Redis options, and replace them with what they describe:
    C{redis} becomes a L{RedisAddress} or L{SentinelAddress} (or stays
    C{None}), with the password of C{--redis-password-file}; C{redis-tls}
    the L{sse_twisted.redis.tls.ClientTLS} of a TLS address;
    C{redis-sentinel-login} the sentinels' L{Login}, if any.

    @raise usage.UsageError: If they are wrong or do not fit together.
    """
    if not options["redis-key"]:
        raise usage.UsageError("--redis-key must not be empty")
    if not 0 <= options["redis-replicas"] <= _MAX_REPLICAS:
        raise usage.UsageError(
            f"--redis-replicas must be between 0 and {_MAX_REPLICAS}"
        )
    timeout = options["redis-replica-timeout"]
    if not _MIN_REPLICA_TIMEOUT <= timeout <= _MAX_REPLICA_TIMEOUT:
        raise usage.UsageError(
            f"--redis-replica-timeout must be between {_MIN_REPLICA_TIMEOUT} and"
            f" {_MAX_REPLICA_TIMEOUT:g} seconds (Redis's WAIT 0 would wait forever)"
        )
    options["redis-tls"] = None
    options["redis-sentinel-login"] = None
    if options["redis"] is None:
        given = [name for name in _NEEDS_REDIS if options[name] is not None]
        if options["redis-replicas"]:
            given.append("redis-replicas")
        if given:
            raise usage.UsageError(f"--{given[0]} needs --redis")
        return
    address = _address(options["redis"])
    if options["redis-password-file"] is not None:
        if address.password is not None:
            raise usage.UsageError(
                "give the Redis password in --redis or in --redis-password-file,"
                " not both"
            )
        password = read_secret("redis-password-file", options["redis-password-file"])
        address = with_password(address, password)
    options["redis"] = address
    _check_tls(options, address)
    sentinel_password = options["redis-sentinel-password-file"]
    if sentinel_password is not None:
        if not isinstance(address, SentinelAddress):
            raise usage.UsageError(
                "--redis-sentinel-password-file needs a redis+sentinel:// URL"
            )
        options["redis-sentinel-login"] = Login(
            password=read_secret("redis-sentinel-password-file", sentinel_password)
        )


def read_secret(option: str, path: str) -> str:
    """
    @return: The text of the file C{path} without its trailing newline.
    @raise usage.UsageError: If it cannot be read, or is empty.
    """
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise usage.UsageError(f"--{option}: {e}") from None
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise usage.UsageError(f"--{option}: {path} is empty")
    return secret


def _address(url: str) -> RedisAddress | SentinelAddress:
    try:
        return parse_redis_url(url)
    except InvalidRedisURL as e:
        raise usage.UsageError(
            f"--redis: {e}; expected redis://HOST:PORT/DB or another of {URL_FORMS}"
        ) from None


def _check_tls(
    options: MutableMapping[str, Any], address: RedisAddress | SentinelAddress
) -> None:
    files = [options["redis-ca"], options["redis-cert"], options["redis-key-file"]]
    if not address.tls:
        if any(f is not None for f in files):
            raise usage.UsageError(
                "--redis-ca, --redis-cert and --redis-key-file need TLS:"
                " a rediss:// or rediss+sentinel:// URL"
            )
        return
    try:
        options["redis-tls"] = load_client_tls(*files)
    except TLSFileError as e:
        raise usage.UsageError(str(e)) from None
