"""What the Redis store keeps in a token's value, and the Lua scripts that read or replace one inside Redis.

Plain (no `store.encryption_key`): the token entry as JSON (`token_entry`), one format with the file
store. Encrypted: `{"obtained_at": <number or null>, "encrypted": "<Fernet token>"}`, where the
Fernet token (`stores.crypto`) holds `{"key": <store key>, "token": <entry>}`. Only `obtained_at`
stays readable, because WRITE_BACK runs inside Redis, which has no key, and must compare it to know
whether Redis holds a newer token than the one being written back; a timestamp is not a secret. The
store key sealed inside ties an entry to its key: one copied to another key is refused.

An encrypting store reads a plain entry (written before the key was set), as the file store reads a
plain file, and replaces it with its encrypted form at once (REPLACE_IF: only while it is unchanged,
so a token another process saved meanwhile is never overwritten). Encryption keeps the tokens secret
from whoever reads Redis, its dumps and backups; it does not stop whoever can write to Redis from
deleting or replacing an entry: protect Redis itself (password or ACL, TLS, a private network).

A store without the key, or with a wrong one, raises UnreadableEntry saying what to set or delete,
never a crash and never the key.
"""

from __future__ import annotations

import json
from typing import Any

from authproxy.credentials.tokens import Token, token_entry, token_from_entry
from authproxy.stores.crypto import CannotDecrypt, decrypt, encrypt

# KEYS[1] token key; ARGV[1] entry JSON, ARGV[2] its obtained_at: write back unless Redis has a newer token.
WRITE_BACK = """
local current = redis.call('get', KEYS[1])
if current then
  local ok, entry = pcall(cjson.decode, current)
  if ok and type(entry) == 'table' and tonumber(entry['obtained_at']) and
     tonumber(entry['obtained_at']) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('set', KEYS[1], ARGV[1])
return 1
"""
# KEYS[1] token key; ARGV[1] the value read, ARGV[2] its replacement: replace only what is still there.
REPLACE_IF = "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[1], ARGV[2]) return 1 end return 0"


class UnreadableEntry(OSError):
    """A token's Redis value cannot be read: not authproxy's, encrypted with another key, or without one."""


def encode(key: str, token: Token, cipher: Any | None) -> str:
    """The value stored under `key` for `token`: plain JSON, or the encrypted envelope with `cipher`."""
    entry = token_entry(token)
    if cipher is None:
        return json.dumps(entry)
    sealed = encrypt(cipher, json.dumps({"key": key, "token": entry}).encode())
    return json.dumps({"obtained_at": entry["obtained_at"], "encrypted": sealed})


def decode(key: str, raw: bytes, cipher: Any | None, name: str) -> tuple[Token, bool]:
    """(the token in `raw`, whether it was stored unencrypted); UnreadableEntry naming what to do.

    `name` is the Redis key holding it, for the advice to delete it.
    """
    fix = f"or delete the entry (redis-cli DEL {name}) and log in again"
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        doc = None
    plain = not (isinstance(doc, dict) and "encrypted" in doc)
    if not plain:
        if cipher is None:
            raise UnreadableEntry(
                f"the Redis entry for {key!r} is encrypted; set store.encryption_key (or encryption_key_file) "
                f"to the key it was written with, {fix}"
            )
        try:
            inner = json.loads(decrypt(cipher, doc["encrypted"]))
        except CannotDecrypt:
            raise UnreadableEntry(
                f"the Redis entry for {key!r} cannot be decrypted with the configured store.encryption_key "
                f"(wrong key?); set the key it was written with, {fix}"
            ) from None
        except (ValueError, UnicodeDecodeError):
            inner = None
        if not isinstance(inner, dict) or inner.get("key") != key:
            raise UnreadableEntry(f"the Redis entry for {key!r} was not encrypted for this key (copied?); {fix}")
        doc = inner.get("token")
    try:
        return token_from_entry(doc), plain
    except TypeError:
        raise UnreadableEntry(f"the Redis entry for {key!r} is not a token written by authproxy; {fix}") from None
