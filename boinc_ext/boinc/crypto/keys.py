"""BOINC-compatible RSA keys: the key dataclasses, BOINC's key text, key
generation and key files.

Produces the same key files as ``crypt_prog -genkey 1024``: RSA-1024,
e = 65537, the fields of R_RSA_PUBLIC_KEY / R_RSA_PRIVATE_KEY as fixed-size
big-endian numbers written as a hex block (see :mod:`.hexblock`) after a
line holding the key size. Malformed keys raise :class:`KeyFormatError`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from .hexblock import format_hex_block, int_to_field, parse_hex_lines, split_fields

KEY_BITS = 1024
PUBLIC_EXPONENT = 65537
MODULUS_LEN = KEY_BITS // 8  # 128: BOINC's MAX_RSA_MODULUS_LEN
PRIME_LEN = MODULUS_LEN // 2  # 64: BOINC's MAX_RSA_PRIME_LEN

PUBLIC_KEY_FILE_MODE = 0o644
PRIVATE_KEY_FILE_MODE = 0o600

# Names make_project gives the two key pairs in the project's keys/ dir.
PROJECT_KEY_FILES = (
    ("code_sign_private", "code_sign_public"),
    ("upload_private", "upload_public"),
)


class KeyFormatError(ValueError):
    """Key text or numbers that BOINC could not use."""


_PUBLIC_FIELDS = (MODULUS_LEN, MODULUS_LEN)
# n, e, d, prime[0]=p, prime[1]=q, primeExponent[0..1], coefficient = q^-1 mod p
_PRIVATE_FIELDS = (MODULUS_LEN,) * 3 + (PRIME_LEN,) * 5


def _key_text(fields: list[int], lengths: tuple[int, ...]) -> str:
    data = b"".join(int_to_field(v, n) for v, n in zip(fields, lengths))
    return f"{KEY_BITS}\n" + format_hex_block(data)


def _key_fields(text: str, lengths: tuple[int, ...]) -> list[int]:
    """Parse BOINC key text into its integer fields, checking every size."""
    lines = text.strip().splitlines()
    if not lines:
        raise KeyFormatError("empty key text")
    bits = lines[0].strip()
    if bits != str(KEY_BITS):
        raise KeyFormatError(f"key size line is {bits!r}, expected '{KEY_BITS}'")
    data = parse_hex_lines(lines[1:], KeyFormatError)
    if len(data) != sum(lengths):
        raise KeyFormatError(
            f"key data is {len(data)} bytes, expected {sum(lengths)}"
        )
    return split_fields(data, lengths)


def _check_public_numbers(n: int, e: int) -> None:
    if n.bit_length() != KEY_BITS:
        raise KeyFormatError(
            f"modulus is {n.bit_length()} bits; BOINC needs exactly {KEY_BITS}"
        )
    if e < 3 or e % 2 == 0 or e >= n:
        raise KeyFormatError(f"bad public exponent {e}")


@dataclass(frozen=True)
class PublicKey:
    """RSA public key in BOINC's R_RSA_PUBLIC_KEY layout."""

    n: int
    e: int

    def __post_init__(self) -> None:
        _check_public_numbers(self.n, self.e)

    def to_text(self) -> str:
        """BOINC key file text (also the content of <code_sign_key>)."""
        return _key_text([self.n, self.e], _PUBLIC_FIELDS)

    @classmethod
    def from_text(cls, text: str) -> PublicKey:
        n, e = _key_fields(text, _PUBLIC_FIELDS)
        return cls(n, e)


@dataclass(frozen=True)
class PrivateKey:
    """RSA private key in BOINC's R_RSA_PRIVATE_KEY layout (OpenSSL's CRT form)."""

    n: int
    e: int
    d: int = field(repr=False)
    p: int = field(repr=False)
    q: int = field(repr=False)
    dmp1: int = field(repr=False)
    dmq1: int = field(repr=False)
    iqmp: int = field(repr=False)

    def __post_init__(self) -> None:
        _check_public_numbers(self.n, self.e)
        self._check_private_numbers()

    def _check_private_numbers(self) -> None:
        # libboinc_crypt hands these to OpenSSL, which signs with the CRT
        # values; an inconsistent set would give signatures nobody accepts.
        p, q = self.p, self.q
        if max(p.bit_length(), q.bit_length()) > PRIME_LEN * 8 or p * q != self.n:
            raise KeyFormatError("primes do not fit 64 bytes or do not multiply to n")
        if self.d >= self.n or (self.e * self.d) % math.lcm(p - 1, q - 1) != 1:
            raise KeyFormatError("private exponent does not match e")
        if self.dmp1 != self.d % (p - 1) or self.dmq1 != self.d % (q - 1):
            raise KeyFormatError("CRT exponents do not match d")
        if (self.iqmp * q) % p != 1:
            raise KeyFormatError("CRT coefficient is not q^-1 mod p")

    @property
    def public_key(self) -> PublicKey:
        return PublicKey(self.n, self.e)

    def to_text(self) -> str:
        """BOINC private key file text, as crypt_prog -genkey writes it."""
        return _key_text(self._fields(), _PRIVATE_FIELDS)

    @classmethod
    def from_text(cls, text: str) -> PrivateKey:
        return cls(*_key_fields(text, _PRIVATE_FIELDS))

    def _fields(self) -> list[int]:
        return [self.n, self.e, self.d, self.p, self.q, self.dmp1, self.dmq1, self.iqmp]


def generate_key_pair(bits: int = KEY_BITS) -> tuple[PrivateKey, PublicKey]:
    """A fresh RSA-1024 key pair with e = 65537."""
    if bits != KEY_BITS:
        raise ValueError(f"BOINC keys must be exactly {KEY_BITS} bits, not {bits}")
    numbers = rsa.generate_private_key(
        public_exponent=PUBLIC_EXPONENT, key_size=bits
    ).private_numbers()
    public = numbers.public_numbers
    private = PrivateKey(
        n=public.n,
        e=public.e,
        d=numbers.d,
        p=numbers.p,
        q=numbers.q,
        dmp1=numbers.dmp1,
        dmq1=numbers.dmq1,
        iqmp=numbers.iqmp,
    )
    return private, private.public_key


# --- key files -------------------------------------------------------------


def _read_key_text(path: str | os.PathLike) -> str:
    try:
        return Path(path).read_bytes().decode("ascii")
    except UnicodeDecodeError as exc:
        raise KeyFormatError(f"{path}: key file is not ASCII") from exc


def read_private_key(path: str | os.PathLike) -> PrivateKey:
    return PrivateKey.from_text(_read_key_text(path))


def read_public_key(path: str | os.PathLike) -> PublicKey:
    return PublicKey.from_text(_read_key_text(path))


def _key_file_mode(key: PublicKey | PrivateKey) -> int:
    return PRIVATE_KEY_FILE_MODE if isinstance(key, PrivateKey) else PUBLIC_KEY_FILE_MODE


def _write_key_file(
    path: str | os.PathLike, key: PublicKey | PrivateKey, exclusive: bool
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    mode = _key_file_mode(key)
    fd = os.open(path, flags, mode)
    with open(fd, "w", encoding="ascii", newline="\n") as f:
        if isinstance(key, PrivateKey):
            # An existing file keeps its old mode through O_TRUNC.
            os.fchmod(fd, mode)
        f.write(key.to_text())


def write_key(path: str | os.PathLike, key: PublicKey | PrivateKey) -> None:
    """Write a key file; private keys get mode 0600."""
    _write_key_file(path, key, exclusive=False)


def generate_project_keys(key_dir: str | os.PathLike) -> None:
    """Create the code-signing and upload key pairs as make_project does.

    Raises FileExistsError if any of the four files exists: a project's
    keys must never be replaced (clients pin the first code-sign key).
    """
    key_dir = Path(key_dir)
    names = [name for pair in PROJECT_KEY_FILES for name in pair]
    existing = [name for name in names if (key_dir / name).exists()]
    if existing:
        raise FileExistsError(
            f"refusing to overwrite project keys in {key_dir}: {', '.join(existing)}"
        )
    key_dir.mkdir(parents=True, exist_ok=True)
    for private_name, public_name in PROJECT_KEY_FILES:
        private, public = generate_key_pair()
        _write_key_file(key_dir / private_name, private, exclusive=True)
        _write_key_file(key_dir / public_name, public, exclusive=True)
