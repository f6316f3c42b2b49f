"""Certificates generated per test run with the openssl command."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

_KEY_ARGS = {
    "ec": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
    # RSA: the only key type a server with RSA key exchange can use.
    "rsa": ["-newkey", "rsa:2048"],
}


def self_signed(directory: Path, name: str, key_type: str = "ec") -> tuple[Path, Path]:
    """A certificate for ``name`` (ECDSA P-256 or RSA 2048) and its key,
    valid one day."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            *_KEY_ARGS[key_type],
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


def expired_self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed ECDSA certificate for ``name`` that expired in 2020.
    OpenSSL 3.0's ``req -x509`` cannot backdate; ``ca -selfsign`` can."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key, csr = (directory / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
    (directory / "index.txt").write_text("")
    (directory / "serial").write_text("01\n")
    cnf = directory / "ca.cnf"
    cnf.write_text(
        "[ca]\ndefault_ca = d\n[d]\n"
        f"database = {directory}/index.txt\nnew_certs_dir = {directory}\n"
        f"serial = {directory}/serial\ndefault_md = sha256\npolicy = p\n"
        "copy_extensions = copy\nunique_subject = no\n[p]\ncommonName = supplied\n"
    )
    req = ["openssl", "req", "-new", *_KEY_ARGS["ec"], "-nodes", "-subj", f"/CN={name}"]
    req += ["-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(csr)]
    sign = ["openssl", "ca", "-batch", "-config", str(cnf), "-selfsign", "-keyfile", str(key)]
    sign += ["-in", str(csr), "-out", str(cert), "-notext"]
    sign += ["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"]
    run = [req, sign]
    for argv in run:
        subprocess.run(argv, check=True, capture_output=True)
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


def client_signed(directory: Path, ca_name: str, subject: str) -> tuple[Path, Path, Path]:
    """A client certificate (extendedKeyUsage clientAuth) for `subject`
    (``/CN=ops-bob/O=Example``), signed by the CA `ca_signed` made in
    `directory` (made now if there is none); returns (CA, cert, key)."""
    ca_cert, _, _ = ca_signed(directory, ca_name, ["ca-placeholder.test"])
    stem = subject.strip("/").replace("/", "_").replace("=", "-")
    key, csr, cert = (
        directory / f"{stem}.key",
        directory / f"{stem}.csr",
        directory / f"{stem}.crt",
    )
    subprocess.run(
        [
            *("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-subj", subject, "-keyout", str(key), "-out", str(csr)),
        ],
        check=True,
        capture_output=True,
    )
    ext = directory / f"{stem}.ext"
    ext.write_text("extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    subprocess.run(
        [
            *("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey"),
            *(str(directory / "ca.key"), "-CAcreateserial", "-days", "1", "-extfile", str(ext)),
            *("-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return ca_cert, cert, key
