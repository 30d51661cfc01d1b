"""Token signing keys: asymmetric only (RS256 for RSA, ES256 for EC P-256), `kid` = RFC 7638 thumbprint.
The first key signs; every key is published in the JWKS so a rotation does not break live tokens."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from joserfc.jws import extract_compact

from sso_gateway.settings import Settings

DEV_KEY_FILE = "signing-key.pem"


class SigningKeyError(ValueError):
    """A configured key is unusable (not PEM, not RSA/EC P-256, too small)."""


@dataclass(frozen=True)
class SigningKey:
    key: RSAKey | ECKey
    alg: str
    kid: str


def _load(pem: bytes, where: str) -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        private = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{where}: not an unencrypted PEM private key") from exc
    if isinstance(private, rsa.RSAPrivateKey):
        if private.key_size < 2048:
            raise SigningKeyError(f"{where}: RSA keys must be at least 2048 bits")
        rsa_key = RSAKey.import_key(pem)
        return SigningKey(rsa_key, "RS256", rsa_key.thumbprint())
    if isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1):
        ec_key = ECKey.import_key(pem)
        return SigningKey(ec_key, "ES256", ec_key.thumbprint())
    raise SigningKeyError(f"{where}: only RSA (RS256) and EC P-256 (ES256) keys can sign")


class KeyRing:
    def __init__(self, keys: list[SigningKey]) -> None:
        if not keys:
            raise SigningKeyError("no signing key")
        self.keys = keys
        self.active = keys[0]

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        keys: list[SigningKey] = []
        if settings.signing_key is not None:
            keys.append(_load(settings.signing_key.get_secret_value().encode(), "SSO_SIGNING_KEY"))
        for path in settings.signing_key_files:
            try:
                pem = path.read_bytes()
            except OSError as exc:
                raise SigningKeyError(f"SSO_SIGNING_KEY_FILES: cannot read {path}: {exc.strerror}") from exc
            keys.append(_load(pem, str(path)))
        if not keys:
            keys.append(_load(_dev_key(settings.data_dir), "development key"))
        return cls(keys)

    def jwks(self) -> dict[str, Any]:
        out = []
        for k in self.keys:
            public = dict(k.key.as_dict(private=False))
            public.update({"kid": k.kid, "alg": k.alg, "use": "sig"})
            out.append(public)
        return {"keys": out}

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": self.active.alg, "kid": self.active.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.active.key, algorithms=[self.active.alg])

    def verify(self, token: str) -> dict[str, Any]:
        """Signature only (callers check claims). Raises JoseError/ValueError on anything wrong."""
        algs = sorted({k.alg for k in self.keys})
        decoded = jwt.decode(token, self._key_for(token), algorithms=algs)
        return dict(decoded.claims)

    def _key_for(self, token: str) -> RSAKey | ECKey:
        kid = extract_compact(token.encode()).headers().get("kid")
        for k in self.keys:
            if k.kid == kid:
                return k.key
        raise ValueError("unknown kid")


def _dev_key(data_dir: Path) -> bytes:
    """A P-256 key generated once into the data directory (0600), reused across restarts."""
    path = data_dir / DEV_KEY_FILE
    if path.exists():
        return path.read_bytes()
    data_dir.mkdir(parents=True, exist_ok=True)
    pem = ECKey.generate_key("P-256", private=True).as_pem(private=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return pem
