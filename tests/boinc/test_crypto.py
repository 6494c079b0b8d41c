"""Tests for boinc_ext.boinc.crypto, cross-checked against openssl and libboinc_crypt."""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from boinc_ext.boinc import crypto
from boinc_ext.boinc.crypto import libcrypto
from boinc_ext.boinc.crypto import (
    KeyFormatError,
    PrivateKey,
    PublicKey,
    SignatureFormatError,
)

# Worked example from shared/reference/client-interop/notes.md section 4:
# accepted by a real boinc-client 7.20.5.
KNOWN_PUBLIC_KEY = """1024
b61678cd69db7c1649a5fd4ba3b009bcad612683a03f9b82cc9540d64e7410b8
dcb5cf54a37921027bb6478ab034ef561b472390de96d497b966ec2a52fa4c2a
b2d65872034330c7f95c158891a8c5f963fa53b340da76e6b8d38b4e5872ac05
6b435e83fa8d107f9cf0717f1cafb580b8572fb03e21efc38452f14abf4289b5
0000000000000000000000000000000000000000000000000000000000000000
0000000000000000000000000000000000000000000000000000000000000000
0000000000000000000000000000000000000000000000000000000000000000
0000000000000000000000000000000000000000000000000000000000010001
.
"""
KNOWN_MD5 = "be3936b44e9ca1cc4a13653ea013d501"
KNOWN_SIGNATURE = """764b92d607e7d02a5afc667b5fbf808d2a4eb2eeec6908ff1d7812e4ae273c61
fb9eb4b82e9be39b53cb09654a2491cfacca3bbbff7fe59b824312cac8c4fb44
fc97efe5cb0be5ac4be850dfe6f81d095949421638042cab190a5968f4ab7390
cd0855947c465a84ee6c8ce554cf6f67a99db77608a51c5d6d9964acecd2a90f
.
"""

LIBBOINC_CRYPT = Path("/usr/lib/x86_64-linux-gnu/libboinc_crypt.so.7")


# --- fixtures --------------------------------------------------------------


@pytest.fixture(scope="module")
def key_pair() -> tuple[PrivateKey, PublicKey]:
    return crypto.generate_key_pair()


@pytest.fixture(scope="module")
def other_key_pair() -> tuple[PrivateKey, PublicKey]:
    return crypto.generate_key_pair()


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    path = tmp_path / "app_1.00_x86_64-pc-linux-gnu"
    path.write_bytes(b"#!/bin/sh\necho hello\n" + bytes(range(256)) * 50)
    return path


# --- 1. key round trip and text layout -------------------------------------


def _assert_hex_block_layout(text: str, hex_lines: int) -> None:
    assert "\r" not in text and text.endswith(".\n")
    lines = text.splitlines()
    assert len(lines) == 1 + hex_lines + 1
    assert lines[0] == "1024"
    assert lines[-1] == "."
    for line in lines[1:-1]:
        assert len(line) == 64
        assert line == line.lower()
        int(line, 16)


def test_key_round_trip_through_files(tmp_path, key_pair):
    private, public = key_pair
    crypto.write_key(tmp_path / "priv", private)
    crypto.write_key(tmp_path / "pub", public)

    assert crypto.read_private_key(tmp_path / "priv") == private
    assert crypto.read_public_key(tmp_path / "pub") == public
    assert private.public_key == public
    assert (tmp_path / "priv").read_text() == private.to_text()
    assert (tmp_path / "pub").read_text() == public.to_text()


def test_key_text_layout(key_pair):
    private, public = key_pair
    _assert_hex_block_layout(public.to_text(), 8)
    _assert_hex_block_layout(private.to_text(), 22)
    assert public.to_text().splitlines()[8] == "0" * 58 + "010001"


def test_private_key_file_mode_is_0600(tmp_path, key_pair):
    private, _ = key_pair
    path = tmp_path / "priv"
    path.write_text("old")
    path.chmod(0o644)
    crypto.write_key(path, private)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_generated_keys_are_boinc_shaped(key_pair):
    private, public = key_pair
    assert public.e == 65537
    assert public.n.bit_length() == 1024
    assert private.iqmp * private.q % private.p == 1


def test_only_1024_bit_keys():
    with pytest.raises(ValueError):
        crypto.generate_key_pair(2048)


def test_private_key_repr_hides_secrets(key_pair):
    private, _ = key_pair
    assert str(private.d) not in repr(private)
    assert str(private.p) not in repr(private)


def test_public_key_text_tolerates_surrounding_whitespace_and_crlf():
    text = "\n  " + KNOWN_PUBLIC_KEY.replace("\n", "\r\n") + "  \n"
    assert PublicKey.from_text(text) == PublicKey.from_text(KNOWN_PUBLIC_KEY)


# --- 2. openssl as an independent implementation ---------------------------


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl command not installed")
    return path


def _cryptography_private(key: PrivateKey) -> rsa.RSAPrivateKey:
    public = rsa.RSAPublicNumbers(key.e, key.n)
    return rsa.RSAPrivateNumbers(
        key.p, key.q, key.d, key.dmp1, key.dmq1, key.iqmp, public
    ).private_key()


def _write_pem_pair(key: PrivateKey, directory: Path) -> tuple[Path, Path]:
    private = _cryptography_private(key)
    priv_pem = directory / "priv.pem"
    pub_pem = directory / "pub.pem"
    priv_pem.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub_pem.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )
    return priv_pem, pub_pem


def _public_pem(key: PublicKey, path: Path) -> Path:
    path.write_bytes(
        rsa.RSAPublicNumbers(key.e, key.n)
        .public_key()
        .public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )
    return path


def _openssl_recover(openssl: str, pub_pem: Path, sig_bin: Path) -> bytes:
    return subprocess.run(
        [openssl, "pkeyutl", "-verifyrecover", "-pubin", "-inkey", str(pub_pem),
         "-pkeyopt", "rsa_padding_mode:pkcs1", "-in", str(sig_bin)],
        check=True, capture_output=True, timeout=30,
    ).stdout


def test_openssl_recovers_md5_from_our_signature(tmp_path, key_pair, app_file):
    openssl = _openssl()
    private, _ = key_pair
    _, pub_pem = _write_pem_pair(private, tmp_path)
    sig_bin = tmp_path / "sig.bin"
    sig_bin.write_bytes(crypto.parse_signature(crypto.sign_file(app_file, private)))

    recovered = _openssl_recover(openssl, pub_pem, sig_bin)
    assert recovered == crypto.md5_file(app_file).encode("ascii")


def test_openssl_signature_equals_ours(tmp_path, key_pair, app_file):
    openssl = _openssl()
    private, _ = key_pair
    priv_pem, _ = _write_pem_pair(private, tmp_path)
    md5_txt = tmp_path / "md5.txt"
    md5_txt.write_bytes(crypto.md5_file(app_file).encode("ascii"))

    theirs = subprocess.run(
        [openssl, "pkeyutl", "-sign", "-inkey", str(priv_pem),
         "-pkeyopt", "rsa_padding_mode:pkcs1", "-in", str(md5_txt)],
        check=True, capture_output=True, timeout=30,
    ).stdout
    assert len(theirs) == 128
    assert crypto.format_signature(theirs) == crypto.sign_file(app_file, private)


def test_md5_file_matches_md5sum(app_file):
    md5sum = shutil.which("md5sum")
    if md5sum is None:
        pytest.skip("md5sum not installed")
    out = subprocess.run([md5sum, str(app_file)], check=True, capture_output=True,
                         text=True, timeout=30).stdout
    assert crypto.md5_file(app_file) == out.split()[0]


def test_openssl_recovers_known_answer(tmp_path):
    openssl = _openssl()
    pub_pem = _public_pem(PublicKey.from_text(KNOWN_PUBLIC_KEY), tmp_path / "pub.pem")
    sig_bin = tmp_path / "sig.bin"
    sig_bin.write_bytes(crypto.parse_signature(KNOWN_SIGNATURE))
    assert _openssl_recover(openssl, pub_pem, sig_bin) == KNOWN_MD5.encode("ascii")


# --- 3. BOINC's own libboinc_crypt (Debian libboinc7 7.20.5) ---------------
# The 7.20.5 C-style API (lib/crypt.h at that tag):
#   int check_file_signature2(const char* md5, const char* sig, const char* key, bool&)
#   int check_string_signature2(const char* text, const char* sig, const char* key, bool&)
#   int read_key_file(const char* path, R_RSA_PRIVATE_KEY&)
#   int sign_file(const char* path, R_RSA_PRIVATE_KEY&, DATA_BLOCK& signature)
#   int generate_signature(char* text, char* signature_hex, R_RSA_PRIVATE_KEY&)
#   int sprint_hex_data(char* out, DATA_BLOCK&)
#   int sscan_key_hex(const char* text, KEY*, int size)
#   int print_key_hex(FILE*, KEY*, int size)


class RsaPublicKeyStruct(ctypes.Structure):
    """R_RSA_PUBLIC_KEY: unsigned short bits, modulus[128], exponent[128]."""

    _fields_ = [
        ("bits", ctypes.c_ushort),
        ("modulus", ctypes.c_ubyte * 128),
        ("exponent", ctypes.c_ubyte * 128),
    ]


class RsaPrivateKeyStruct(ctypes.Structure):
    """R_RSA_PRIVATE_KEY: bits; n, e, d (128 bytes each);
    prime[2], primeExponent[2], coefficient (64 bytes each)."""

    _fields_ = [
        ("bits", ctypes.c_ushort),
        ("modulus", ctypes.c_ubyte * 128),
        ("publicExponent", ctypes.c_ubyte * 128),
        ("exponent", ctypes.c_ubyte * 128),
        ("prime", (ctypes.c_ubyte * 64) * 2),
        ("primeExponent", (ctypes.c_ubyte * 64) * 2),
        ("coefficient", ctypes.c_ubyte * 64),
    ]


class DataBlock(ctypes.Structure):
    """DATA_BLOCK: unsigned char* data, unsigned int len."""

    _fields_ = [("data", ctypes.POINTER(ctypes.c_ubyte)), ("len", ctypes.c_uint)]


def _bind(lib: ctypes.CDLL, mangled: str, argtypes: list) -> ctypes._CFuncPtr:
    function = getattr(lib, mangled)
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function


class BoincCrypt:
    """ctypes bindings for the libboinc_crypt 7.20.5 functions used here."""

    def __init__(self, lib: ctypes.CDLL):
        c_str, bool_ref = ctypes.c_char_p, ctypes.POINTER(ctypes.c_bool)
        priv_ref = ctypes.POINTER(RsaPrivateKeyStruct)
        block_ref = ctypes.POINTER(DataBlock)
        self._check_file = _bind(
            lib, "_Z21check_file_signature2PKcS0_S0_Rb", [c_str, c_str, c_str, bool_ref])
        self._check_string = _bind(
            lib, "_Z23check_string_signature2PKcS0_S0_Rb", [c_str, c_str, c_str, bool_ref])
        self._read_key_file = _bind(
            lib, "_Z13read_key_filePKcR17R_RSA_PRIVATE_KEY", [c_str, priv_ref])
        self._sign_file = _bind(
            lib, "_Z9sign_filePKcR17R_RSA_PRIVATE_KEYR10DATA_BLOCK",
            [c_str, priv_ref, block_ref])
        self._generate_signature = _bind(
            lib, "_Z18generate_signaturePcS_R17R_RSA_PRIVATE_KEY",
            [ctypes.c_char_p, ctypes.c_char_p, priv_ref])
        self._sprint_hex_data = _bind(
            lib, "_Z15sprint_hex_dataPcR10DATA_BLOCK", [ctypes.c_char_p, block_ref])
        self._sscan_key_hex = _bind(
            lib, "_Z13sscan_key_hexPKcP3KEYi", [c_str, ctypes.c_void_p, ctypes.c_int])
        self._print_key_hex = _bind(
            lib, "_Z13print_key_hexP8_IO_FILEP3KEYi",
            [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int])

    # The checkers return ERR_CRYPTO (-231) when the padding does not decode
    # (e.g. wrong key) and 0 with answer=false on a mismatch; both reject.
    def check_file_signature(self, md5: str, signature: str, key: str) -> bool:
        answer = ctypes.c_bool(False)
        rc = self._check_file(md5.encode(), signature.encode(), key.encode(),
                              ctypes.byref(answer))
        return rc == 0 and answer.value

    def check_string_signature(self, text: str, signature: str, key: str) -> bool:
        answer = ctypes.c_bool(False)
        rc = self._check_string(text.encode(), signature.encode(), key.encode(),
                                ctypes.byref(answer))
        return rc == 0 and answer.value

    def read_key_file(self, path: Path) -> RsaPrivateKeyStruct:
        key = RsaPrivateKeyStruct()
        rc = self._read_key_file(str(path).encode(), ctypes.byref(key))
        assert rc == 0, f"read_key_file returned {rc}"
        return key

    def parse_public_key(self, text: str) -> RsaPublicKeyStruct:
        key = RsaPublicKeyStruct()
        rc = self._sscan_key_hex(text.encode(), ctypes.addressof(key), ctypes.sizeof(key))
        assert rc == 0, f"sscan_key_hex returned {rc}"
        return key

    def sign_file(self, path: Path, key: RsaPrivateKeyStruct) -> str:
        buffer = (ctypes.c_ubyte * 256)()
        block = DataBlock(ctypes.cast(buffer, ctypes.POINTER(ctypes.c_ubyte)), 256)
        rc = self._sign_file(str(path).encode(), ctypes.byref(key), ctypes.byref(block))
        assert rc == 0, f"sign_file returned {rc}"
        assert block.len == 128
        text = ctypes.create_string_buffer(1024)
        assert self._sprint_hex_data(text, ctypes.byref(block)) == 0
        return text.value.decode("ascii")

    def generate_signature(self, text: str, key: RsaPrivateKeyStruct) -> str:
        out = ctypes.create_string_buffer(1024)
        rc = self._generate_signature(
            ctypes.create_string_buffer(text.encode()), out, ctypes.byref(key))
        assert rc == 0, f"generate_signature returned {rc}"
        return out.value.decode("ascii")

    def write_key_file(self, path: Path, key: ctypes.Structure) -> None:
        libc = ctypes.CDLL(None)
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        stream = libc.fopen(str(path).encode(), b"w")
        assert stream, f"fopen({path}) failed"
        try:
            rc = self._print_key_hex(stream, ctypes.addressof(key), ctypes.sizeof(key))
        finally:
            libc.fclose(stream)
        assert rc == 0, f"print_key_hex returned {rc}"


@pytest.fixture(scope="module")
def boinc_crypt() -> BoincCrypt:
    if not LIBBOINC_CRYPT.exists():
        pytest.skip(f"{LIBBOINC_CRYPT} missing (Debian package libboinc7 not installed)")
    return BoincCrypt(ctypes.CDLL(str(LIBBOINC_CRYPT)))


def _private_struct_fields(key: RsaPrivateKeyStruct) -> list[int]:
    raw = [key.modulus, key.publicExponent, key.exponent, key.prime[0], key.prime[1],
           key.primeExponent[0], key.primeExponent[1], key.coefficient]
    return [int.from_bytes(bytes(field), "big") for field in raw]


def test_struct_sizes_match_boinc():
    assert ctypes.sizeof(RsaPublicKeyStruct) == 2 + 256
    assert ctypes.sizeof(RsaPrivateKeyStruct) == 2 + 704


def test_libboinc_checks_our_file_signature(boinc_crypt, key_pair, other_key_pair, app_file):
    private, public = key_pair
    signature = crypto.sign_file(app_file, private)
    md5 = crypto.md5_file(app_file)

    assert boinc_crypt.check_file_signature(md5, signature, public.to_text())
    assert not boinc_crypt.check_file_signature("0" * 32, signature, public.to_text())
    assert not boinc_crypt.check_file_signature(md5, signature, other_key_pair[1].to_text())


def test_libboinc_checks_our_upload_certificate(boinc_crypt, key_pair):
    private, public = key_pair
    signature = crypto.sign_upload_certificate("wu_1_r2_0", 100000.0, private)
    text = crypto.upload_certificate_text("wu_1_r2_0", 100000.0)

    assert boinc_crypt.check_string_signature(text, signature, public.to_text())
    other = crypto.upload_certificate_text("wu_1_r2_1", 100000.0)
    assert not boinc_crypt.check_string_signature(other, signature, public.to_text())


def test_libboinc_accepts_known_answer(boinc_crypt):
    assert boinc_crypt.check_file_signature(KNOWN_MD5, KNOWN_SIGNATURE, KNOWN_PUBLIC_KEY)


def test_libboinc_reads_our_private_key_file(boinc_crypt, tmp_path, key_pair):
    private, _ = key_pair
    crypto.write_key(tmp_path / "priv", private)
    struct = boinc_crypt.read_key_file(tmp_path / "priv")

    assert struct.bits == 1024
    assert _private_struct_fields(struct) == [
        private.n, private.e, private.d, private.p, private.q,
        private.dmp1, private.dmq1, private.iqmp,
    ]


def test_libboinc_parses_our_public_key(boinc_crypt, key_pair):
    _, public = key_pair
    struct = boinc_crypt.parse_public_key(public.to_text())
    assert struct.bits == 1024
    assert int.from_bytes(bytes(struct.modulus), "big") == public.n
    assert int.from_bytes(bytes(struct.exponent), "big") == public.e


def test_libboinc_writes_identical_key_files(boinc_crypt, tmp_path, key_pair):
    private, public = key_pair
    crypto.write_key(tmp_path / "priv", private)
    boinc_crypt.write_key_file(tmp_path / "priv.boinc",
                               boinc_crypt.read_key_file(tmp_path / "priv"))
    boinc_crypt.write_key_file(tmp_path / "pub.boinc",
                               boinc_crypt.parse_public_key(public.to_text()))

    assert (tmp_path / "priv.boinc").read_text() == private.to_text()
    assert (tmp_path / "pub.boinc").read_text() == public.to_text()


def test_libboinc_signs_file_identically(boinc_crypt, tmp_path, key_pair, app_file):
    private, _ = key_pair
    crypto.write_key(tmp_path / "priv", private)
    struct = boinc_crypt.read_key_file(tmp_path / "priv")
    assert boinc_crypt.sign_file(app_file, struct) == crypto.sign_file(app_file, private)


def test_libboinc_signs_string_identically(boinc_crypt, tmp_path, key_pair):
    private, _ = key_pair
    crypto.write_key(tmp_path / "priv", private)
    struct = boinc_crypt.read_key_file(tmp_path / "priv")
    text = crypto.upload_certificate_text("wu_7_r1_0", 2.5e6)
    assert boinc_crypt.generate_signature(text, struct) == crypto.sign_string(text, private)


def test_libboinc_signs_identically_with_the_python_fallback(boinc_crypt, tmp_path, key_pair, monkeypatch):
    private, _ = key_pair
    crypto.write_key(tmp_path / "priv", private)
    struct = boinc_crypt.read_key_file(tmp_path / "priv")
    text = crypto.upload_certificate_text("wu_8_r5_0", 100000)
    monkeypatch.setattr(libcrypto, "_openssl_signer", lambda key: None)
    assert boinc_crypt.generate_signature(text, struct) == crypto.sign_string(text, private)


# --- 3b. the libcrypto private op against the pure-Python one ---------------


@pytest.mark.skipif(crypto.private_key_backend() != "openssl", reason="no OpenSSL 3 libcrypto here")
def test_openssl_and_python_private_ops_agree(key_pair, other_key_pair):
    payloads = [b"0" * 32, b"f" * 32, os.urandom(16).hex().encode(), b"x", b"\xff" * 117]
    for private, _ in (key_pair, other_key_pair, crypto.generate_key_pair()):
        for payload in payloads:
            assert libcrypto._openssl_signer(private).sign(payload) == libcrypto._python_sign(payload, private)


def test_signer_is_loaded_once_per_key(key_pair):
    private, _ = key_pair
    assert libcrypto._openssl_signer(private) is libcrypto._openssl_signer(PrivateKey.from_text(private.to_text()))


# --- 4. rejections ----------------------------------------------------------


def test_tampered_file_fails(key_pair, app_file):
    private, public = key_pair
    signature = crypto.sign_file(app_file, private)
    data = bytearray(app_file.read_bytes())
    data[100] ^= 0x01
    app_file.write_bytes(bytes(data))
    assert not crypto.verify_file(app_file, signature, public)


def test_wrong_key_fails(key_pair, other_key_pair, app_file):
    signature = crypto.sign_file(app_file, key_pair[0])
    assert crypto.verify_file(app_file, signature, key_pair[1])
    assert not crypto.verify_file(app_file, signature, other_key_pair[1])


def test_signature_text_layout(key_pair, app_file):
    signature = crypto.sign_file(app_file, key_pair[0])
    assert len(signature) == 262
    assert signature.endswith("\n.\n")
    lines = signature.splitlines()
    assert [len(line) for line in lines] == [64, 64, 64, 64, 1]


def _malformed_signatures(good: str) -> dict[str, str]:
    lines = good.splitlines()
    return {
        "short": "\n".join(lines[:3] + ["."]) + "\n",
        "long": "\n".join(lines[:4] + ["00", "."]) + "\n",
        "non-hex": good.replace(good[10], "g", 1),
        "missing dot": "\n".join(lines[:4]) + "\n",
        "empty": "",
        "odd digits": good[1:],
    }


@pytest.mark.parametrize(
    "kind", ["short", "long", "non-hex", "missing dot", "empty", "odd digits"])
def test_malformed_signature_is_false_and_parse_raises(kind, key_pair):
    private, public = key_pair
    md5 = "0123456789abcdef0123456789abcdef"
    bad = _malformed_signatures(crypto.sign_md5(md5, private))[kind]
    assert crypto.verify_md5(md5, bad, public) is False
    with pytest.raises(SignatureFormatError):
        crypto.parse_signature(bad)


def test_signature_not_below_modulus_is_false(key_pair):
    _, public = key_pair
    too_big = crypto.format_signature(b"\xff" * 128)
    assert crypto.verify_md5("0" * 32, too_big, public) is False


def test_signature_whitespace_is_trimmed(key_pair):
    private, public = key_pair
    md5 = "0123456789abcdef0123456789abcdef"
    signature = "\n  " + crypto.sign_md5(md5, private) + "\n\n"
    assert crypto.verify_md5(md5, signature, public)


def test_md5_must_be_lowercase_hex(key_pair):
    private, public = key_pair
    with pytest.raises(ValueError):
        crypto.sign_md5("0123456789ABCDEF0123456789ABCDEF", private)
    with pytest.raises(ValueError):
        crypto.verify_md5("abc", KNOWN_SIGNATURE, public)


def _malformed_public_keys() -> list[str]:
    lines = KNOWN_PUBLIC_KEY.splitlines()
    return [
        "",
        KNOWN_PUBLIC_KEY.replace("1024", "2048", 1),
        "\n".join(lines[:-1]) + "\n",  # no dot
        "\n".join(lines[:8] + ["."]),  # 224 bytes
        "\n".join(lines[:9] + ["00", "."]),  # 257 bytes
        KNOWN_PUBLIC_KEY.replace("b6", "zz", 1),
        "1024\n" + "00" * 256 + "\n.\n",  # modulus of the wrong size
    ]


@pytest.mark.parametrize("text", _malformed_public_keys())
def test_malformed_public_key_raises(text):
    with pytest.raises(KeyFormatError):
        PublicKey.from_text(text)


def test_private_key_text_is_not_a_public_key(key_pair):
    with pytest.raises(KeyFormatError):
        PublicKey.from_text(key_pair[0].to_text())
    with pytest.raises(KeyFormatError):
        PrivateKey.from_text(key_pair[1].to_text())


def test_private_key_with_swapped_primes_is_rejected(key_pair):
    k = key_pair[0]
    with pytest.raises(KeyFormatError):
        PrivateKey(k.n, k.e, k.d, k.q, k.p, k.dmq1, k.dmp1, k.iqmp)


def test_non_ascii_key_file_raises(tmp_path):
    path = tmp_path / "pub"
    path.write_bytes(KNOWN_PUBLIC_KEY.encode().replace(b"b6", b"\xc3\xa9", 1))
    with pytest.raises(KeyFormatError):
        crypto.read_public_key(path)


# --- 5. known answer ----------------------------------------------------------


def test_known_answer_vector():
    public = PublicKey.from_text(KNOWN_PUBLIC_KEY)
    assert public.e == 65537
    assert public.to_text() == KNOWN_PUBLIC_KEY
    assert crypto.verify_md5(KNOWN_MD5, KNOWN_SIGNATURE, public)
    assert not crypto.verify_md5("be3936b44e9ca1cc4a13653ea013d502", KNOWN_SIGNATURE, public)


# --- 6. upload certificates ---------------------------------------------------


@pytest.mark.parametrize(
    ("max_nbytes", "printed"),
    [(100000.0, "100000"), (2.5, "2"), (3.5, "4"), (0.5, "0"), (1e20, "100000000000000000000"),
     (65536, "65536")],
)
def test_upload_certificate_text(max_nbytes, printed):
    assert crypto.upload_certificate_text("wu_1_r2_0", max_nbytes) == (
        f"<name>wu_1_r2_0</name><max_nbytes>{printed}</max_nbytes>"
    )


def test_upload_certificate_round_trip(key_pair, other_key_pair):
    private, public = key_pair
    signature = crypto.sign_upload_certificate("wu_1_r2_0", 100000.0, private)
    assert crypto.verify_upload_certificate("wu_1_r2_0", 100000, signature, public)
    assert not crypto.verify_upload_certificate("wu_1_r2_1", 100000, signature, public)
    assert not crypto.verify_upload_certificate("wu_1_r2_0", 100001, signature, public)
    assert not crypto.verify_upload_certificate(
        "wu_1_r2_0", 100000, signature, other_key_pair[1])


def test_sign_string_rejects_nul(key_pair):
    with pytest.raises(ValueError):
        crypto.sign_string("a\x00b", key_pair[0])
    assert not crypto.verify_string("a\x00b", KNOWN_SIGNATURE, key_pair[1])


# --- 7. project keys ----------------------------------------------------------


def test_generate_project_keys(tmp_path):
    key_dir = tmp_path / "keys"
    crypto.generate_project_keys(key_dir)

    names = {"code_sign_private", "code_sign_public", "upload_private", "upload_public"}
    assert {p.name for p in key_dir.iterdir()} == names
    for kind in ("code_sign", "upload"):
        private = crypto.read_private_key(key_dir / f"{kind}_private")
        assert crypto.read_public_key(key_dir / f"{kind}_public") == private.public_key
        assert stat.S_IMODE((key_dir / f"{kind}_private").stat().st_mode) == 0o600
    assert (crypto.read_private_key(key_dir / "code_sign_private")
            != crypto.read_private_key(key_dir / "upload_private"))


def test_generate_project_keys_refuses_to_overwrite(tmp_path):
    crypto.generate_project_keys(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(FileExistsError):
        crypto.generate_project_keys(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_generate_project_keys_refuses_if_any_key_exists(tmp_path):
    (tmp_path / "upload_public").write_text("keep me")
    with pytest.raises(FileExistsError):
        crypto.generate_project_keys(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["upload_public"]
    assert (tmp_path / "upload_public").read_text() == "keep me"
