"""Upload-handler request bodies and replies, laid out as BOINC clients write and read them."""
from __future__ import annotations

import re
from xml.sax.saxutils import unescape

from boinc_ext.boinc import crypto


def upload_body(name: str, data: bytes, key: crypto.PrivateKey | None, *, nbytes: int | None = None,
                offset: int = 0, max_nbytes: int = 100000, signed_max: int | None = None) -> bytes:
    """A body laid out byte for byte as the client writes it (facts §6.2)."""
    signature = ""
    if key is not None:
        signature = crypto.sign_upload_certificate(name, signed_max or max_nbytes, key).rstrip("\n")
    nbytes = len(data) + offset if nbytes is None else nbytes
    header = ("<data_server_request>\n"
              "    <core_client_major_version>7</core_client_major_version>\n"
              "    <core_client_minor_version>20</core_client_minor_version>\n"
              "    <core_client_release>5</core_client_release>\n"
              "<file_upload>\n<file_info>\n"
              f"<name>{name}</name>\n<xml_signature>\n{signature}</xml_signature>\n"
              f"<max_nbytes>{max_nbytes}</max_nbytes>\n</file_info>\n"
              f"<nbytes>{nbytes}</nbytes>\n<md5_cksum>0123456789abcdef0123456789abcdef</md5_cksum>\n"
              f"<offset>{offset}</offset>\n<data>\n")
    return header.encode("latin-1") + data


def size_query(name: str) -> bytes:
    return ("<data_server_request>\n    <core_client_major_version>7</core_client_major_version>\n"
            "    <core_client_minor_version>20</core_client_minor_version>\n"
            "    <core_client_release>5</core_client_release>\n"
            f"<get_file_size>{name}</get_file_size>\n</data_server_request>\n").encode()


def parse_reply(text: str) -> tuple[int, str | None, int | None]:
    status = int(re.search(r"<status>(-?\d+)</status>", text).group(1))
    message = re.search(r"<message>(.*?)</message>", text, re.DOTALL)
    size = re.search(r"<file_size>(\d+)</file_size>", text)
    return status, message and unescape(message.group(1)), size and int(size.group(1))
