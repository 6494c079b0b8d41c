"""Upload certificates: the signed <xml_signature> of an output file.

The transitioner signs ``<name>..</name><max_nbytes>..</max_nbytes>`` with
the project's upload key; the upload handler checks it before accepting a
file.
"""

from __future__ import annotations

from .keys import PrivateKey, PublicKey
from .signatures import sign_string, verify_string


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
