"""Encryption at rest for the file and Redis stores: one Fernet key (`store.encryption_key`), one code path.

Fernet (AES-128-CBC + HMAC-SHA256, from the optional `cryptography` package, the `encrypt` extra)
authenticates as well as encrypts, so a wrong key or a tampered value is an error, never garbage
read as a token. Errors never repeat the key.
"""

from __future__ import annotations

from typing import Any

ENCRYPT_HINT = "install the encrypt extra: pip install 'authproxy[encrypt]'"
KEYGEN_HINT = (
    "generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


class CannotDecrypt(ValueError):
    """The value was not encrypted with this key (a wrong key, or it was altered)."""


def make_cipher(key: str) -> Any:
    """A Fernet cipher for `key`; ValueError (with what to do) for a missing extra or a bad key."""
    try:
        from cryptography.fernet import Fernet  # optional extra: only when encryption is configured
    except ImportError:
        raise ValueError(f"encrypting the token store needs the cryptography package; {ENCRYPT_HINT}") from None
    try:
        return Fernet(key.strip().encode())
    except (ValueError, TypeError):
        raise ValueError(f"not a Fernet key (44 characters of url-safe base64); {KEYGEN_HINT}") from None


def encrypt(cipher: Any, plain: bytes) -> str:
    """`plain` encrypted and authenticated, as ASCII text (it goes into JSON)."""
    return str(cipher.encrypt(plain).decode("ascii"))


def decrypt(cipher: Any, data: object) -> bytes:
    """The plain bytes of what `encrypt` wrote; CannotDecrypt for anything else."""
    from cryptography.fernet import InvalidToken

    if not isinstance(data, str):
        raise CannotDecrypt("not an encrypted value")
    try:
        return bytes(cipher.decrypt(data.encode()))
    except (InvalidToken, ValueError, TypeError, UnicodeEncodeError):
        raise CannotDecrypt("cannot be decrypted with this key") from None
