"""API key tokens: `fitapi_<prefix>_<secret>`, where the prefix (8 characters) is shown in
listings to tell keys apart and the secret carries 256 random bits. Only the sha256 of the whole
token is stored: a fast hash is enough for a secret of that entropy, and it lets a request find
its key with one indexed lookup."""

from __future__ import annotations

import hashlib
import secrets
import string

SCHEME = "fitapi"
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits


def new_token() -> tuple[str, str]:
    """A new token and its visible prefix."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
    token = f"{SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    return token, f"{SCHEME}_{prefix}"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
