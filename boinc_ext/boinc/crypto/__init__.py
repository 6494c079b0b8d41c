"""BOINC-compatible RSA keys and signatures.

Produces the same key files as ``crypt_prog -genkey 1024`` and the same
signatures as ``sign_executable`` / ``generate_signature``, and checks
signatures the way the BOINC client and upload handler do.

Scheme: RSA-1024, e = 65537.  A signature is the PKCS#1 v1.5 type-1
padded block ``00 01 FF..FF 00 || md5_hex`` raised to d mod n, where
md5_hex is the 32 lowercase ASCII hex characters of the MD5 digest (there
is no DigestInfo).  Keys and signatures are written as lowercase hex, 64
characters per line, ending with a line holding ``.``.

Modules: :mod:`.keys` (key dataclasses, key text, generation, key files),
:mod:`.signatures` (md5, sign/verify, signature text), :mod:`.libcrypto`
(the private-key operation in OpenSSL's libcrypto, with a pure-Python
fallback), :mod:`.certificates` (upload certificates), :mod:`.hexblock`
(the hex text both keys and signatures use).
"""

from .certificates import (
    sign_upload_certificate,
    upload_certificate_text,
    verify_upload_certificate,
)
from .keys import (
    KEY_BITS,
    PROJECT_KEY_FILES,
    PUBLIC_EXPONENT,
    KeyFormatError,
    PrivateKey,
    PublicKey,
    generate_key_pair,
    generate_project_keys,
    read_private_key,
    read_public_key,
    write_key,
)
from .libcrypto import private_key_backend
from .signatures import (
    SignatureFormatError,
    format_signature,
    md5_file,
    parse_signature,
    sign_file,
    sign_md5,
    sign_string,
    verify_file,
    verify_md5,
    verify_string,
)

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
