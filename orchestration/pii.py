"""Keyed hashing of direct identifiers, so raw phone numbers never enter the warehouse."""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import lru_cache

_NON_DIGITS = re.compile(r"[\s\-()]")
# Used by SQL (regexp_replace) to mask phone numbers in quarantined raw text.
PHONE_IN_TEXT_SQL_PATTERN = r"(\+?86[ -]?)?1[3-9][0-9]{9}"


def normalise_phone(raw: str) -> str:
    """One spelling per number: '+86 138-0013-8000' and '13800138000' must hash alike."""
    digits = _NON_DIGITS.sub("", raw.strip())
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            return digits[len(prefix) :]
    if digits.startswith("86") and len(digits) == 13:
        return digits[2:]
    return digits


@lru_cache(maxsize=1_000_000)
def hash_phone(raw: str, salt: str) -> str:
    """HMAC-SHA-256 of the normalised number: joinable across sources, useless without the key."""
    return hmac.new(salt.encode(), normalise_phone(raw).encode(), hashlib.sha256).hexdigest()

