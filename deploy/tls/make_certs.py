"""The compose stack's internal TLS: a private CA, roster-api's certificate for the name the gateway uses,
and the gateway's trust bundle (the public CAs it needs for Clever, plus this CA).

Run once by the `tls-certs` service before the TLS proxy and the gateway start:

    python make_certs.py --out /certs --host roster-api-tls

Idempotent: the CA is kept; the certificate is issued again only when it is missing, names another host,
or expires within 30 days. Writes ca.crt, ca.key (0600), roster-api.crt, roster-api.key (0600) and
trust-bundle.pem. Needs `cryptography` and `certifi` (both in the sso-gateway image).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
CERT_DAYS = 397
RENEW_BEFORE = dt.timedelta(days=30)
CA_CERT, CA_KEY = "ca.crt", "ca.key"
CERT, KEY = "roster-api.crt", "roster-api.key"
BUNDLE = "trust-bundle.pem"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    temp = path.with_suffix(path.suffix + ".tmp")
    temp.write_bytes(data)
    temp.chmod(mode)
    os.replace(temp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ca(out: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if (out / CA_CERT).exists() and (out / CA_KEY).exists():
        cert = x509.load_pem_x509_certificate((out / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((out / CA_KEY).read_bytes(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey) and cert.not_valid_after_utc - _now() > RENEW_BEFORE:
            return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "roster internal CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(out / CA_KEY, _key_pem(key), 0o600)
    _write(out / CA_CERT, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    (out / CERT).unlink(missing_ok=True)  # issued by the previous CA
    return cert, key


def _current(out: Path, host: str, ca: x509.Certificate) -> bool:
    if not (out / CERT).exists() or not (out / KEY).exists():
        return False
    cert = x509.load_pem_x509_certificate((out / CERT).read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        cert.issuer == ca.subject
        and names.get_values_for_type(x509.DNSName) == [host]
        and cert.not_valid_after_utc - _now() > RENEW_BEFORE
    )


def _issue(out: Path, host: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(out / KEY, _key_pem(key), 0o600)
    _write(out / CERT, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def make(out: Path, host: str) -> bool:
    """Returns True when a new certificate was issued."""
    out.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ca(out)
    issued = not _current(out, host, ca)
    if issued:
        _issue(out, host, ca, ca_key)
    public = Path(certifi.where()).read_bytes()
    _write(out / BUNDLE, public.rstrip(b"\n") + b"\n" + ca.public_bytes(serialization.Encoding.PEM), 0o644)
    return issued


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="folder for the keys and certificates")
    parser.add_argument("--host", required=True, help="the name the gateway connects to (the SAN)")
    args = parser.parse_args(argv)
    issued = make(args.out, args.host)
    print(f"{'issued' if issued else 'kept'} {args.out / CERT} for {args.host}; CA {args.out / CA_CERT}")


if __name__ == "__main__":
    main()
