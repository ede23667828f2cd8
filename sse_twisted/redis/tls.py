"""
TLS to Redis (C{rediss://}): whom to trust (the system's trust store, or
C{--redis-ca}) and which client certificate to show (C{--redis-cert},
C{--redis-key-file}). The server's certificate must match the host name or
address that ssedemo connects to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from OpenSSL.crypto import FILETYPE_PEM
from OpenSSL.crypto import Error as CryptoError
from twisted.internet.error import VerifyError
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    KeyPair,
    PrivateCertificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)

if TYPE_CHECKING:  # Twisted does not export the interface.
    from twisted.internet._sslverify import IOpenSSLTrustRoot

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL
)


class TLSFileError(ValueError):
    """
    A CA, certificate or key file cannot be read or used.
    """


@dataclass(frozen=True)
class ClientTLS:
    """
    How ssedemo speaks TLS to Redis servers (and sentinels).

    @ivar trust: The certificate authorities that servers' certificates
        must come from.
    @ivar certificate: The client certificate and its key, if any.
    """

    trust: IOpenSSLTrustRoot
    certificate: PrivateCertificate | None = None

    def creator(self, host: str) -> IOpenSSLClientConnectionCreator:
        """
        @param host: The host name or address connected to, which the
            server's certificate must name.
        @return: What starts TLS on a connection to C{host}.
        """
        return optionsForClientTLS(
            host, trustRoot=self.trust, clientCertificate=self.certificate
        )


def load_client_tls(
    ca: str | None = None, cert: str | None = None, key: str | None = None
) -> ClientTLS:
    """
    Read the files of C{--redis-ca}, C{--redis-cert} and C{--redis-key-file}.

    @param ca: PEM file of the certificate authorities to trust (one or
        more); C{None} for the system's trust store.
    @param cert: PEM file of the client certificate (with its key, unless
        C{key} is given).
    @param key: PEM file of the client certificate's private key.
    @return: The settings, checked: the key matches the certificate.
    @raise TLSFileError: If a file cannot be read or used.
    """
    trust: IOpenSSLTrustRoot = platformTrust()
    if ca is not None:
        try:
            authorities = [
                Certificate.loadPEM(block)
                for block in _PEM_CERTIFICATE.findall(_read("--redis-ca", ca))
            ]
        except CryptoError as e:
            raise TLSFileError(f"--redis-ca: a certificate is malformed: {e}") from None
        if not authorities:
            raise TLSFileError(f"--redis-ca: no PEM certificate in {ca}")
        trust = trustRootFromCertificates(authorities)
    client = None
    if cert is not None:
        certificate = _read("--redis-cert", cert)
        private = certificate if key is None else _read("--redis-key-file", key)
        try:
            client = PrivateCertificate.fromCertificateAndKeyPair(
                Certificate.loadPEM(certificate), KeyPair.load(private, FILETYPE_PEM)
            )
        except CryptoError as e:
            raise TLSFileError(
                f"--redis-cert/--redis-key-file: not a PEM certificate and key: {e}"
            ) from None
        except VerifyError:
            raise TLSFileError(
                "--redis-cert/--redis-key-file: the key does not fit the certificate"
            ) from None
    elif key is not None:
        raise TLSFileError("--redis-key-file needs --redis-cert")
    return ClientTLS(trust, client)


def _read(option: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TLSFileError(f"{option}: {e}") from None
