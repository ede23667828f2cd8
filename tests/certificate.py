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
