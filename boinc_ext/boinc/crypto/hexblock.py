"""BOINC's hex block text, shared by key files and signatures.

Lowercase hex, 32 bytes (64 characters) per line, ending with a line
holding ``.`` (BOINC's print_hex_data / scan_hex_data).
"""

from __future__ import annotations

import re

HEX_BYTES_PER_LINE = 32

_HEX = re.compile(r"[0-9a-fA-F]*")
_WHITESPACE = re.compile(r"\s+")


def format_hex_block(data: bytes) -> str:
    """Lowercase hex, 32 bytes per line, then a '.' line (print_hex_data)."""
    lines = [
        data[i : i + HEX_BYTES_PER_LINE].hex()
        for i in range(0, len(data), HEX_BYTES_PER_LINE)
    ]
    return "\n".join(lines) + "\n.\n"


def parse_hex_lines(lines: list[str], error: type[ValueError]) -> bytes:
    """Decode hex lines that must end with a '.' line; whitespace is ignored."""
    if not lines or lines[-1].strip() != ".":
        raise error("missing the final '.' line")
    digits = _WHITESPACE.sub("", "".join(lines[:-1]))
    if not _HEX.fullmatch(digits):
        raise error("non-hex characters in hex data")
    if len(digits) % 2:
        raise error("odd number of hex digits")
    return bytes.fromhex(digits)


def int_to_field(value: int, length: int) -> bytes:
    """Big-endian, zero-padded on the left to the fixed field length."""
    return value.to_bytes(length, "big")


def split_fields(data: bytes, lengths: tuple[int, ...]) -> list[int]:
    """Big-endian integers of consecutive fixed-length fields."""
    values, offset = [], 0
    for length in lengths:
        values.append(int.from_bytes(data[offset : offset + length], "big"))
        offset += length
    return values
