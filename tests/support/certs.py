"""Certificates generated per test run with the openssl command."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """An ECDSA P-256 certificate for ``name`` and its key, valid one day."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name}",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def spki_sha256(cert: Path) -> str:
    """SHA-256 of the certificate's SubjectPublicKeyInfo: TLSA "3 1 1" data."""
    pem = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"], check=True, capture_output=True
    ).stdout
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem, check=True, capture_output=True
    ).stdout
    return hashlib.sha256(der).hexdigest()


def ca_signed(directory: Path, ca_name: str, names: list[str]) -> tuple[Path, Path, Path]:
    """A private CA and an ECDSA end-entity certificate it signed for
    ``names``; returns (CA certificate, chain file, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    if not ca_cert.exists():
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                f"/CN={ca_name}",
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                str(ca_key),
                "-out",
                str(ca_cert),
            ],
            check=True,
            capture_output=True,
        )
    stem = names[0]
    key, csr, cert = (
        directory / f"{stem}.key",
        directory / f"{stem}.csr",
        directory / f"{stem}.crt",
    )
    subprocess.run(
        [
            "openssl",
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            f"/CN={stem}",
            "-keyout",
            str(key),
            "-out",
            str(csr),
        ],
        check=True,
        capture_output=True,
    )
    ext = directory / f"{stem}.ext"
    ext.write_text(
        "subjectAltName="
        + ",".join(f"DNS:{n}" for n in names)
        + "\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    subprocess.run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_cert),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            str(ext),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    chain = directory / f"{stem}.chain.pem"
    chain.write_text(cert.read_text() + ca_cert.read_text())
    return ca_cert, chain, key
