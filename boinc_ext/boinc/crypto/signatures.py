"""BOINC signatures: md5 of files and strings, signing and checking them.

Gives the same signatures as ``sign_executable`` / ``generate_signature`` and
checks them the way the BOINC client and upload handler do: the signed
payload is the 32 lowercase ASCII hex characters of the MD5 digest. Signature
text is a hex block (four lines of 64 characters, then a ``.`` line).

The ``verify_*`` functions return False for any signature that does not check
out, malformed signature text included (it usually comes from the network);
:func:`parse_signature` raises :class:`SignatureFormatError` for callers who
want to know why.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from .hexblock import format_hex_block, int_to_field, parse_hex_lines
from .keys import MODULUS_LEN, PrivateKey, PublicKey
from .libcrypto import private_key_sign, type1_block

MD5_CHUNK = 1 << 20

_MD5_HEX = re.compile(r"[0-9a-f]{32}")


class SignatureFormatError(ValueError):
    """Signature text that is not 128 bytes of hex followed by a '.' line."""


# --- md5 ---------------------------------------------------------------------


def md5_file(path: str | os.PathLike) -> str:
    """Lowercase hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(MD5_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _md5_text(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _check_md5_hex(md5_hex: str) -> None:
    if not isinstance(md5_hex, str) or not _MD5_HEX.fullmatch(md5_hex):
        raise ValueError(f"not a lowercase 32-digit md5 hex string: {md5_hex!r}")


def _check_c_string(text: str) -> None:
    # BOINC signs strlen(text) bytes, so an embedded NUL cannot round-trip.
    if "\x00" in text:
        raise ValueError("text contains a NUL character")


# --- signature text ------------------------------------------------------------


def format_signature(signature: bytes) -> str:
    """Signature text: 4 lines of 64 hex characters, then a '.' line."""
    if len(signature) != MODULUS_LEN:
        raise SignatureFormatError(
            f"signature is {len(signature)} bytes, expected {MODULUS_LEN}"
        )
    return format_hex_block(signature)


def parse_signature(text: str) -> bytes:
    """The 128 signature bytes of signature text.

    Surrounding whitespace is ignored, as the client trims it; the hex may
    be split over lines but must total 128 bytes and end with a '.' line.
    """
    if not isinstance(text, str):
        raise SignatureFormatError("signature text must be a str")
    data = parse_hex_lines(text.strip().splitlines(), SignatureFormatError)
    if len(data) != MODULUS_LEN:
        raise SignatureFormatError(
            f"signature is {len(data)} bytes, expected {MODULUS_LEN}"
        )
    return data


# --- signing -----------------------------------------------------------------


def sign_md5(md5_hex: str, key: PrivateKey) -> str:
    """Signature text over an md5 hex string (what sign_executable prints)."""
    _check_md5_hex(md5_hex)
    return format_signature(private_key_sign(md5_hex.encode("ascii"), key))


def sign_file(path: str | os.PathLike, key: PrivateKey) -> str:
    return sign_md5(md5_file(path), key)


def sign_string(text: str, key: PrivateKey) -> str:
    """Signature text over md5_hex(text), as generate_signature makes it."""
    _check_c_string(text)
    return sign_md5(_md5_text(text), key)


# --- verifying ---------------------------------------------------------------


def verify_md5(md5_hex: str, signature_text: str, key: PublicKey) -> bool:
    """True iff the signature decrypts to exactly the padded md5 hex."""
    _check_md5_hex(md5_hex)
    try:
        signature = int.from_bytes(parse_signature(signature_text), "big")
    except SignatureFormatError:
        return False
    if signature >= key.n:
        return False
    recovered = int_to_field(pow(signature, key.e, key.n), MODULUS_LEN)
    expected = type1_block(md5_hex.encode("ascii"))
    return hmac.compare_digest(recovered, expected)


def verify_file(path: str | os.PathLike, signature_text: str, key: PublicKey) -> bool:
    return verify_md5(md5_file(path), signature_text, key)


def verify_string(text: str, signature_text: str, key: PublicKey) -> bool:
    if "\x00" in text:
        return False
    return verify_md5(_md5_text(text), signature_text, key)
