"""BOINC-compatible RSA keys and signatures.

Produces the same key files as ``crypt_prog -genkey 1024`` and the same
signatures as ``sign_executable`` / ``generate_signature``, and checks
signatures the way the BOINC client and upload handler do.

Scheme: RSA-1024, e = 65537.  A signature is the PKCS#1 v1.5 type-1
padded block ``00 01 FF..FF 00 || md5_hex`` raised to d mod n, where
md5_hex is the 32 lowercase ASCII hex characters of the MD5 digest (there
is no DigestInfo).  Keys and signatures are written as lowercase hex, 64
characters per line, ending with a line holding ``.``.

Error handling: malformed keys raise :class:`KeyFormatError`.  The
``verify_*`` functions return False for any signature that does not check
out, malformed signature text included (it usually comes from the
network); :func:`parse_signature` raises :class:`SignatureFormatError` for
callers who want to know why.

Speed: the private-key operation runs in the system's libcrypto (OpenSSL 3,
through ctypes; about 85 us per signature here, against 1.4 ms in Python's
own pow). Where libcrypto cannot be loaded it falls back to pure Python,
which gives the same bytes (RSA signatures are deterministic).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import hmac
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "KEY_BITS",
    "PUBLIC_EXPONENT",
    "KeyFormatError",
    "SignatureFormatError",
    "PublicKey",
    "PrivateKey",
    "generate_key_pair",
    "read_private_key",
    "read_public_key",
    "write_key",
    "generate_project_keys",
    "PROJECT_KEY_FILES",
    "md5_file",
    "parse_signature",
    "format_signature",
    "sign_md5",
    "sign_file",
    "sign_string",
    "verify_md5",
    "verify_file",
    "verify_string",
    "upload_certificate_text",
    "sign_upload_certificate",
    "verify_upload_certificate",
    "private_key_backend",
]

KEY_BITS = 1024
PUBLIC_EXPONENT = 65537
MODULUS_LEN = KEY_BITS // 8  # 128: BOINC's MAX_RSA_MODULUS_LEN
PRIME_LEN = MODULUS_LEN // 2  # 64: BOINC's MAX_RSA_PRIME_LEN
HEX_BYTES_PER_LINE = 32
MIN_PADDING_LEN = 8  # PKCS#1 v1.5 requires at least 8 padding bytes
MD5_CHUNK = 1 << 20

PUBLIC_KEY_FILE_MODE = 0o644
PRIVATE_KEY_FILE_MODE = 0o600

# Names make_project gives the two key pairs in the project's keys/ dir.
PROJECT_KEY_FILES = (
    ("code_sign_private", "code_sign_public"),
    ("upload_private", "upload_public"),
)

_MD5_HEX = re.compile(r"[0-9a-f]{32}")
_HEX = re.compile(r"[0-9a-fA-F]*")
_WHITESPACE = re.compile(r"\s+")


class KeyFormatError(ValueError):
    """Key text or numbers that BOINC could not use."""


class SignatureFormatError(ValueError):
    """Signature text that is not 128 bytes of hex followed by a '.' line."""


# --- hex block text (shared by keys and signatures) -----------------------


def _format_hex_block(data: bytes) -> str:
    """Lowercase hex, 32 bytes per line, then a '.' line (print_hex_data)."""
    lines = [
        data[i : i + HEX_BYTES_PER_LINE].hex()
        for i in range(0, len(data), HEX_BYTES_PER_LINE)
    ]
    return "\n".join(lines) + "\n.\n"


def _parse_hex_lines(lines: list[str], error: type[ValueError]) -> bytes:
    """Decode hex lines that must end with a '.' line; whitespace is ignored."""
    if not lines or lines[-1].strip() != ".":
        raise error("missing the final '.' line")
    digits = _WHITESPACE.sub("", "".join(lines[:-1]))
    if not _HEX.fullmatch(digits):
        raise error("non-hex characters in hex data")
    if len(digits) % 2:
        raise error("odd number of hex digits")
    return bytes.fromhex(digits)


def _int_to_field(value: int, length: int) -> bytes:
    """Big-endian, zero-padded on the left to the fixed field length."""
    return value.to_bytes(length, "big")


def _split_fields(data: bytes, lengths: tuple[int, ...]) -> list[int]:
    values, offset = [], 0
    for length in lengths:
        values.append(int.from_bytes(data[offset : offset + length], "big"))
        offset += length
    return values


# --- keys ------------------------------------------------------------------

_PUBLIC_FIELDS = (MODULUS_LEN, MODULUS_LEN)
# n, e, d, prime[0]=p, prime[1]=q, primeExponent[0..1], coefficient = q^-1 mod p
_PRIVATE_FIELDS = (MODULUS_LEN,) * 3 + (PRIME_LEN,) * 5


def _key_text(fields: list[int], lengths: tuple[int, ...]) -> str:
    data = b"".join(_int_to_field(v, n) for v, n in zip(fields, lengths))
    return f"{KEY_BITS}\n" + _format_hex_block(data)


def _key_fields(text: str, lengths: tuple[int, ...]) -> list[int]:
    """Parse BOINC key text into its integer fields, checking every size."""
    lines = text.strip().splitlines()
    if not lines:
        raise KeyFormatError("empty key text")
    bits = lines[0].strip()
    if bits != str(KEY_BITS):
        raise KeyFormatError(f"key size line is {bits!r}, expected '{KEY_BITS}'")
    data = _parse_hex_lines(lines[1:], KeyFormatError)
    if len(data) != sum(lengths):
        raise KeyFormatError(
            f"key data is {len(data)} bytes, expected {sum(lengths)}"
        )
    return _split_fields(data, lengths)


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


# --- hashing ---------------------------------------------------------------


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


# --- signatures ------------------------------------------------------------


def format_signature(signature: bytes) -> str:
    """Signature text: 4 lines of 64 hex characters, then a '.' line."""
    if len(signature) != MODULUS_LEN:
        raise SignatureFormatError(
            f"signature is {len(signature)} bytes, expected {MODULUS_LEN}"
        )
    return _format_hex_block(signature)


def parse_signature(text: str) -> bytes:
    """The 128 signature bytes of signature text.

    Surrounding whitespace is ignored, as the client trims it; the hex may
    be split over lines but must total 128 bytes and end with a '.' line.
    """
    if not isinstance(text, str):
        raise SignatureFormatError("signature text must be a str")
    data = _parse_hex_lines(text.strip().splitlines(), SignatureFormatError)
    if len(data) != MODULUS_LEN:
        raise SignatureFormatError(
            f"signature is {len(data)} bytes, expected {MODULUS_LEN}"
        )
    return data


def _type1_block(payload: bytes) -> bytes:
    """PKCS#1 v1.5 type-1 encoding: 00 01 FF..FF 00 || payload."""
    padding_len = MODULUS_LEN - 3 - len(payload)
    if padding_len < MIN_PADDING_LEN:
        raise ValueError("payload too long for a 1024-bit RSA block")
    return b"\x00\x01" + b"\xff" * padding_len + b"\x00" + payload


def sign_md5(md5_hex: str, key: PrivateKey) -> str:
    """Signature text over an md5 hex string (what sign_executable prints)."""
    _check_md5_hex(md5_hex)
    payload = md5_hex.encode("ascii")
    signer = _openssl_signer(key)
    signature = signer.sign(payload) if signer is not None else _python_sign(payload, key)
    return format_signature(signature)


def private_key_backend() -> str:
    """Which code does the RSA private-key operation: "openssl" or "python"."""
    return "openssl" if _libcrypto() is not None else "python"


def _python_sign(payload: bytes, key: PrivateKey) -> bytes:
    block = int.from_bytes(_type1_block(payload), "big")
    return _int_to_field(_private_op(block, key), MODULUS_LEN)


def _private_op(block: int, key: PrivateKey) -> int:
    """block^d mod n through the CRT values (about 3x faster than pow(block, d, n))."""
    m1 = pow(block, key.dmp1, key.p)
    m2 = pow(block, key.dmq1, key.q)
    return m2 + (key.iqmp * (m1 - m2) % key.p) * key.q


# --- the private-key operation in libcrypto ---------------------------------

_RSA_PKCS1_PADDING = 1
_LIBCRYPTO_NAMES = ("libcrypto.so.3",)


@functools.cache
def _libcrypto() -> ctypes.CDLL | None:
    """OpenSSL 3's libcrypto with the functions we call declared, or None if absent."""
    names = (*_LIBCRYPTO_NAMES, ctypes.util.find_library("crypto"))
    for name in filter(None, names):
        try:
            return _declare_libcrypto(ctypes.CDLL(name))
        except (OSError, AttributeError):  # missing, or an OpenSSL without these functions
            continue
    return None


def _declare_libcrypto(lib: ctypes.CDLL) -> ctypes.CDLL:
    vp, sizep = ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)
    signatures = {
        "d2i_AutoPrivateKey": (vp, [vp, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]),
        "EVP_PKEY_free": (None, [vp]),
        "EVP_PKEY_CTX_new": (vp, [vp, vp]),
        "EVP_PKEY_CTX_free": (None, [vp]),
        "EVP_PKEY_sign_init": (ctypes.c_int, [vp]),
        "EVP_PKEY_CTX_set_rsa_padding": (ctypes.c_int, [vp, ctypes.c_int]),
        "EVP_PKEY_sign": (ctypes.c_int, [vp, ctypes.c_char_p, sizep, ctypes.c_char_p, ctypes.c_size_t]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


class _OpenSSLSigner:
    """One key loaded into libcrypto. sign() is PKCS#1 type-1 padding plus the raw private
    operation (EVP_PKEY_sign with no digest set), i.e. exactly what BOINC signs; each call
    gets its own context, so threads may share a signer."""

    def __init__(self, lib: ctypes.CDLL, key: PrivateKey):
        self._lib = lib
        der = _pkcs1_der(key)
        cursor = ctypes.c_char_p(der)
        self._pkey = lib.d2i_AutoPrivateKey(None, ctypes.byref(cursor), len(der))
        if not self._pkey:
            raise ValueError("libcrypto refused the private key")

    def __del__(self) -> None:
        if getattr(self, "_pkey", None):
            self._lib.EVP_PKEY_free(self._pkey)

    def sign(self, payload: bytes) -> bytes:
        lib = self._lib
        ctx = lib.EVP_PKEY_CTX_new(self._pkey, None)
        if not ctx:
            raise MemoryError("EVP_PKEY_CTX_new failed")
        try:
            out = ctypes.create_string_buffer(MODULUS_LEN)
            out_len = ctypes.c_size_t(MODULUS_LEN)
            if (lib.EVP_PKEY_sign_init(ctx) != 1
                    or lib.EVP_PKEY_CTX_set_rsa_padding(ctx, _RSA_PKCS1_PADDING) != 1
                    or lib.EVP_PKEY_sign(ctx, out, ctypes.byref(out_len), payload, len(payload)) != 1
                    or out_len.value != MODULUS_LEN):
                raise ValueError("libcrypto could not sign")
            return out.raw
        finally:
            lib.EVP_PKEY_CTX_free(ctx)


def _pkcs1_der(key: PrivateKey) -> bytes:
    public = rsa.RSAPublicNumbers(key.e, key.n)
    numbers = rsa.RSAPrivateNumbers(key.p, key.q, key.d, key.dmp1, key.dmq1, key.iqmp, public)
    return numbers.private_key().private_bytes(serialization.Encoding.DER,
                                               serialization.PrivateFormat.TraditionalOpenSSL,
                                               serialization.NoEncryption())


@functools.lru_cache(maxsize=8)
def _openssl_signer(key: PrivateKey) -> _OpenSSLSigner | None:
    lib = _libcrypto()
    return None if lib is None else _OpenSSLSigner(lib, key)


def sign_file(path: str | os.PathLike, key: PrivateKey) -> str:
    return sign_md5(md5_file(path), key)


def _check_c_string(text: str) -> None:
    # BOINC signs strlen(text) bytes, so an embedded NUL cannot round-trip.
    if "\x00" in text:
        raise ValueError("text contains a NUL character")


def sign_string(text: str, key: PrivateKey) -> str:
    """Signature text over md5_hex(text), as generate_signature makes it."""
    _check_c_string(text)
    return sign_md5(_md5_text(text), key)


def verify_md5(md5_hex: str, signature_text: str, key: PublicKey) -> bool:
    """True iff the signature decrypts to exactly the padded md5 hex."""
    _check_md5_hex(md5_hex)
    try:
        signature = int.from_bytes(parse_signature(signature_text), "big")
    except SignatureFormatError:
        return False
    if signature >= key.n:
        return False
    recovered = _int_to_field(pow(signature, key.e, key.n), MODULUS_LEN)
    expected = _type1_block(md5_hex.encode("ascii"))
    return hmac.compare_digest(recovered, expected)


def verify_file(path: str | os.PathLike, signature_text: str, key: PublicKey) -> bool:
    return verify_md5(md5_file(path), signature_text, key)


def verify_string(text: str, signature_text: str, key: PublicKey) -> bool:
    if "\x00" in text:
        return False
    return verify_md5(_md5_text(text), signature_text, key)


# --- upload certificates ---------------------------------------------------


def upload_certificate_text(name: str, max_nbytes: float) -> str:
    """The exact text BOINC signs for an output file's <xml_signature>.

    max_nbytes is printed like C's "%.0f" (Python's rounding matches glibc:
    exact value, ties to even).
    """
    return f"<name>{name}</name><max_nbytes>{float(max_nbytes):.0f}</max_nbytes>"


def sign_upload_certificate(name: str, max_nbytes: float, key: PrivateKey) -> str:
    return sign_string(upload_certificate_text(name, max_nbytes), key)


def verify_upload_certificate(
    name: str, max_nbytes: float, signature_text: str, key: PublicKey
) -> bool:
    return verify_string(upload_certificate_text(name, max_nbytes), signature_text, key)
