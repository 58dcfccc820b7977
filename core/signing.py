"""Ed25519 keys for signing chain records and export manifests.

A signature covers a record's 32-byte hash (or a manifest's digest), never
the text it came from, so the verifier needs no canonical form of its own to
check one. A key is named by key_id: the first 16 hex digits of the sha256 of
the raw 32-byte public key, short enough to print and long enough that two
keys of one operator never share it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from simtrail.errors import ConfigError


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    def sign(self, digest: bytes) -> bytes:
        return self.private.sign(digest)


def public_path(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".pub")


def generate(out: Path) -> tuple[Path, Path, str]:
    """Write a new key pair: OUT (private, PKCS#8 PEM, mode 0600) and OUT.pub.

    Refuses when either file exists: overwriting a private key would orphan
    every signature made with it.
    """
    pub = public_path(out)
    for path in (out, pub):
        if path.exists() or path.is_symlink():
            raise ConfigError(f"{path} exists; refusing to overwrite a key file")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent} is not a directory")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: a file appearing between the check and the write is not
    # overwritten, and the key is never readable by others, not even briefly.
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public = private.public_key()
    with open(pub, "xb") as handle:
        handle.write(
            public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return out, pub, key_id(public)


def _read_key(path: Path, what: str, load: Callable[[bytes], object]) -> object:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return load(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not {_PEM_KIND[what]}: {exc}") from None


_PEM_KIND = {"signing key": "an unencrypted PEM private key", "public key": "a PEM public key"}


def load_signer(path: Path) -> Signer:
    key = _read_key(
        path, "signing key", lambda data: serialization.load_pem_private_key(data, password=None)
    )
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} holds a private key that is not Ed25519")
    return Signer(key)


def load_public(path: Path) -> Ed25519PublicKey:
    key = _read_key(path, "public key", serialization.load_pem_public_key)
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} holds a public key that is not Ed25519")
    return key


def verify(public: Ed25519PublicKey, signature: bytes, digest: bytes) -> bool:
    try:
        public.verify(signature, digest)
    except InvalidSignature:
        return False
    return True
