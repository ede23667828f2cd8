"""
Throwaway TLS certificates for the tests, made with the C{openssl} command
as docs/operations.md tells users to.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificate:
    """
    A self-signed certificate for C{localhost} and C{127.0.0.1}, and its key.
    """

    key: Path
    cert: Path

    def endpoint(self, port: int = 0) -> str:
        """
        @return: The C{--port} description of a TLS port on 127.0.0.1 that
            serves this certificate.
        """
        return (
            f"ssl:{port}:privateKey={self.key}:certKey={self.cert}:interface=127.0.0.1"
        )


def make_certificate(directory: Path) -> Certificate:
    """
    Make a key (EC P-256) and a self-signed certificate valid for a day.

    @param directory: Where to write C{key.pem} and C{cert.pem}.
    """
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return Certificate(key, cert)


@dataclass(frozen=True)
class CertificateAuthority:
    """
    A throwaway certificate authority that signs certificates for servers
    and clients, as an operator's private CA does.
    """

    key: Path
    cert: Path

    def issue(
        self, directory: Path, name: str, alt_names: str = "DNS:localhost,IP:127.0.0.1"
    ) -> Certificate:
        """
        Make a key and a certificate for C{alt_names}, signed by this CA.

        @param directory: Where to write C{NAME-key.pem} and C{NAME-cert.pem}.
        @param name: The files' prefix and the certificate's CN.
        """
        key, cert = directory / f"{name}-key.pem", directory / f"{name}-cert.pem"
        request = directory / f"{name}.csr"
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(request), "-subj", f"/CN={name}",
        )  # fmt: skip
        extensions = directory / f"{name}.ext"
        extensions.write_text(f"subjectAltName={alt_names}\n")
        _openssl(
            "x509", "-req", "-in", str(request), "-CA", str(self.cert),
            "-CAkey", str(self.key), "-CAcreateserial", "-out", str(cert),
            "-days", "1", "-extfile", str(extensions),
        )  # fmt: skip
        return Certificate(key, cert)


def make_certificate_authority(directory: Path) -> CertificateAuthority:
    """
    Make a CA key and its self-signed certificate, valid for a day.

    @param directory: Where to write C{ca-key.pem} and C{ca.pem}.
    """
    key, cert = directory / "ca-key.pem", directory / "ca.pem"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
        "-subj", "/CN=ssedemo test CA",
    )  # fmt: skip
    return CertificateAuthority(key, cert)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)
