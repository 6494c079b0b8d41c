"""Reads an .rds file into serialized bytes that are safe to hand to R's unserialize().

Volunteers are not trusted, and R before 4.4.0 unserializes promises (CVE-2024-27322): a
crafted .rds can run code on the server as soon as the value is touched. Active bindings
do the same when an environment is listed. So before R sees a volunteer's file, this module
decompresses it (within a size limit) and walks the whole serialization stream (R's XDR
format, versions 2 and 3, as saveRDS writes it by default). It refuses what would run
code when touched: a promise whose value is not yet computed and whose code is a call or
byte code, a `...` object, an active binding; and persistent references and anything
malformed. Promises that are forced, or whose code is a constant or a symbol, are let
through: glm objects, for one, keep `link = "logit"` as such a promise, and evaluating a
constant or looking a symbol up runs nothing (the bindings found are checked in turn).
The caller then unserializes exactly the bytes that were checked, so the file cannot change
in between.

The walk follows the layout described in "R Internals", section "Serialization formats";
it only skips over data and never builds R objects.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import struct
from pathlib import Path

from boinc_ext.validator.errors import PermanentValidationError, classify_os_error

DEFAULT_MAX_BYTES = 1 << 30

# SEXP type codes of the serialization format
NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
SPECIALSXP, BUILTINSXP, CHARSXP, LGLSXP = 7, 8, 9, 10
INTSXP, REALSXP, CPLXSXP, STRSXP, DOTSXP = 13, 14, 15, 16, 17
VECSXP, EXPRSXP, BCODESXP, EXTPTRSXP, WEAKREFSXP, RAWSXP, S4SXP = 19, 20, 21, 22, 23, 24, 25
# pseudo types used only in streams
REFSXP, NILVALUE_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP, MISSINGARG_SXP = 255, 254, 253, 252, 251
BASENAMESPACE_SXP, NAMESPACESXP, PACKAGESXP, PERSISTSXP = 250, 249, 248, 247
CLASSREFSXP, GENERICREFSXP, BCREPDEF, BCREPREF = 246, 245, 244, 243
EMPTYENV_SXP, BASEENV_SXP, ATTRLANGSXP, ATTRLISTSXP, ALTREP_SXP = 242, 241, 240, 239, 238

_SINGLETONS = {NILVALUE_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP, MISSINGARG_SXP, BASENAMESPACE_SXP,
               EMPTYENV_SXP, BASEENV_SXP}
_ELEMENT_SIZE = {LGLSXP: 4, INTSXP: 4, REALSXP: 8, CPLXSXP: 16, RAWSXP: 1}
_REFUSED = {DOTSXP: "a '...' object",
            PERSISTSXP: "a persistent reference", CLASSREFSXP: "a class reference",
            GENERICREFSXP: "a generic reference"}
_IS_OBJECT, _HAS_ATTR, _HAS_TAG = 1 << 8, 1 << 9, 1 << 10
_ACTIVE_BINDING = 1 << 15  # in the gp "levels" bits of a pairlist cell

# Work items of the walk (an explicit stack, so that deep objects cannot exhaust Python's)
_ITEM, _BC_CODE, _BC_CONSTS, _BC_CONST, _BC_LANG, _PROMISE_VALUE, _INERT_CODE = range(7)
_INT = struct.Struct(">i")
_UINT = struct.Struct(">I")


class UnsafeRds(PermanentValidationError):
    """The file is not a plain, well-formed R value this validator is willing to load."""


def read_rds_bytes(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The file's serialized (decompressed) bytes, checked safe for unserialize()."""
    data = decompress_rds(path, max_bytes)
    check_serialized(data, str(path))
    return data


def decompress_rds(path: Path, max_bytes: int) -> bytes:
    """Like readRDS: gzip, bzip2, xz or uncompressed, told apart by their magic bytes."""
    what = f"{path}"
    try:
        with open(path, "rb") as raw:
            magic = raw.read(6)
            raw.seek(0)
            stream = _decompressor(magic, raw)
            data = stream.read(max_bytes + 1)
    except (EOFError, lzma.LZMAError, ValueError) as exc:
        raise UnsafeRds(f"{what}: corrupt compressed data ({exc})") from None
    except OSError as exc:
        if exc.errno is None:  # gzip/bz2 report bad data as OSError without an errno
            raise UnsafeRds(f"{what}: corrupt compressed data ({exc})") from None
        raise classify_os_error(exc, what) from None
    if len(data) > max_bytes:
        raise UnsafeRds(f"{what}: more than {max_bytes} bytes once decompressed (the rds policy's "
                        f"max_bytes option)")
    return data


def _decompressor(magic: bytes, raw):
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)
    if magic[:3] == b"BZh":
        return bz2.BZ2File(raw)
    if magic == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(raw)
    return raw


def check_serialized(data: bytes, what: str) -> None:
    """Walks a serialization stream; raises UnsafeRds unless it is complete and harmless."""
    walker = _Walker(data, what)
    walker.header()
    walker.walk()
    if walker.pos != len(data):
        raise UnsafeRds(f"{what}: {len(data) - walker.pos} bytes of trailing data after the R value")


class _Walker:
    def __init__(self, data: bytes, what: str):
        self.data = memoryview(data)
        self.pos = 0
        self.what = what
        self.stack: list[int] = []

    # --- primitives --------------------------------------------------------------------
    def fail(self, message: str) -> UnsafeRds:
        return UnsafeRds(f"{self.what}: {message} (at byte {self.pos})")

    def int(self) -> int:
        if self.pos + 4 > len(self.data):
            raise self.fail("truncated serialization stream")
        value = _INT.unpack_from(self.data, self.pos)[0]
        self.pos += 4
        return value

    def skip(self, nbytes: int) -> None:
        if nbytes < 0 or self.pos + nbytes > len(self.data):
            raise self.fail("truncated serialization stream")
        self.pos += nbytes

    def length(self) -> int:
        n = self.int()
        if n == -1:  # a long vector: upper and lower 32 bits follow
            upper = self.int()
            if self.pos + 4 > len(self.data):
                raise self.fail("truncated serialization stream")
            n = (upper << 32) + _UINT.unpack_from(self.data, self.pos)[0]
            self.pos += 4
        if n < 0:
            raise self.fail(f"negative length {n}")
        return n

    def push_items(self, count: int) -> None:
        if count * 4 > len(self.data) - self.pos:  # every item takes at least 4 bytes
            raise self.fail(f"{count} elements cannot fit in what is left of the stream")
        self.stack.extend([_ITEM] * count)

    # --- the stream ------------------------------------------------------------------------
    def header(self) -> None:
        if bytes(self.data[:2]) != b"X\n":
            kind = {b"A\n": "ASCII", b"B\n": "native binary"}.get(bytes(self.data[:2]))
            raise UnsafeRds(f"{self.what}: " + (f"{kind} serialization is not accepted; save with "
                            f"saveRDS()'s default (XDR binary)" if kind else "not an R serialization stream"))
        self.pos = 2
        version = self.int()
        self.int()  # the writer's R version
        self.int()  # the oldest R version that can read it
        if version == 3:
            self.skip(self.int())  # native encoding name
        elif version != 2:
            raise self.fail(f"serialization format version {version} is not supported")

    def walk(self) -> None:
        self.stack = [_ITEM]
        handlers = {_ITEM: self.item, _BC_CODE: self.bc_code, _BC_CONSTS: self.bc_consts,
                    _BC_CONST: self.bc_const, _BC_LANG: lambda: self.bc_lang(self.int()),
                    _PROMISE_VALUE: self.promise_value, _INERT_CODE: self.inert_code}
        while self.stack:
            handlers[self.stack.pop()]()

    def item(self) -> None:
        flags = self.int()
        sexp_type = flags & 0xFF
        has_attr = bool(flags & _HAS_ATTR)
        if sexp_type in _SINGLETONS:
            return
        if sexp_type in _REFUSED:
            raise self.fail(f"refused: the value contains {_REFUSED[sexp_type]}")
        if sexp_type == REFSXP:
            if flags >> 8 == 0:
                self.int()
        elif sexp_type == SYMSXP:
            self.stack.append(_ITEM)
        elif sexp_type in (PACKAGESXP, NAMESPACESXP):
            self.string_vector()
        elif sexp_type == ENVSXP:
            self.int()  # locked
            self.push_items(4)  # enclosure, frame, hash table, attributes
        elif sexp_type in (LISTSXP, LANGSXP, CLOSXP):
            if sexp_type == LISTSXP and (flags >> 12) & _ACTIVE_BINDING:
                raise self.fail("refused: the value contains an active binding")
            # read order: attributes, tag, car, cdr (pushed in reverse)
            self.stack += [_ITEM, _ITEM] + [_ITEM] * bool(flags & _HAS_TAG) + [_ITEM] * has_attr
        elif sexp_type == PROMSXP:
            # read order: attributes, environment (the tag), value, code
            self.stack += [_ITEM, _PROMISE_VALUE] + [_ITEM] * bool(flags & _HAS_TAG) + [_ITEM] * has_attr
        elif sexp_type == ALTREP_SXP:
            self.push_items(3)  # class info, state, attributes
        else:
            self.vector_like(sexp_type, has_attr)

    def next_type(self) -> int:
        if self.pos + 4 > len(self.data):
            raise self.fail("truncated serialization stream")
        return _INT.unpack_from(self.data, self.pos)[0] & 0xFF

    def promise_value(self) -> None:
        if self.next_type() == UNBOUNDVALUE_SXP:  # not yet evaluated: its code runs when touched
            self.stack[-1] = _INERT_CODE          # the code item, read right after the value
        self.item()

    def inert_code(self) -> None:
        if self.next_type() in (LANGSXP, BCODESXP):
            raise self.fail("refused: the value contains an unevaluated promise of a call")
        self.item()

    def vector_like(self, sexp_type: int, has_attr: bool) -> None:
        """Types whose attributes (if any) follow their own data."""
        if has_attr:
            self.stack.append(_ITEM)
        if sexp_type in _ELEMENT_SIZE:
            self.skip(self.length() * _ELEMENT_SIZE[sexp_type])
        elif sexp_type == STRSXP:
            self.strings(self.length())
        elif sexp_type in (VECSXP, EXPRSXP):
            self.push_items(self.length())
        elif sexp_type == CHARSXP:
            self.charsxp_body()
        elif sexp_type in (SPECIALSXP, BUILTINSXP):
            self.skip(self.int())
        elif sexp_type == EXTPTRSXP:
            self.push_items(2)  # protected value, tag
        elif sexp_type in (WEAKREFSXP, S4SXP):
            pass
        elif sexp_type == BCODESXP:
            self.int()  # number of shared language cells
            self.stack.append(_BC_CODE)
        else:
            raise self.fail(f"unknown or misplaced type code {sexp_type}")

    def charsxp_body(self) -> None:
        n = self.int()
        if n != -1:  # -1 is NA_character_
            self.skip(n)

    def strings(self, count: int) -> None:
        """A character vector's elements, each a CHARSXP without attributes, read inline."""
        for _ in range(count):
            flags = self.int()
            if flags & 0xFF != CHARSXP or flags & _HAS_ATTR:
                raise self.fail("a character vector element is not a plain string")
            self.charsxp_body()

    def string_vector(self) -> None:
        if self.int() != 0:
            raise self.fail("malformed package or namespace reference")
        self.push_items(self.length())

    # --- byte code (closures compiled by R's JIT) --------------------------------------------
    def bc_code(self) -> None:
        self.stack += [_BC_CONSTS, _ITEM]  # the code vector, then the constant pool

    def bc_consts(self) -> None:
        count = self.int()
        if count < 0 or count * 4 > len(self.data) - self.pos:
            raise self.fail(f"{count} byte-code constants cannot fit in what is left of the stream")
        self.stack.extend([_BC_CONST] * count)

    def bc_const(self) -> None:
        kind = self.int()
        if kind == BCODESXP:
            self.stack.append(_BC_CODE)
        elif kind in (LANGSXP, LISTSXP, BCREPDEF, BCREPREF, ATTRLANGSXP, ATTRLISTSXP):
            self.bc_lang(kind)
        else:
            self.stack.append(_ITEM)

    def bc_lang(self, kind: int) -> None:
        if kind == BCREPREF:
            self.int()
            return
        if kind == BCREPDEF:
            self.int()  # position in the shared-cell table
            kind = self.int()
        if kind in (LANGSXP, LISTSXP, ATTRLANGSXP, ATTRLISTSXP):
            # read order: attributes (ATTR* only), tag, car, cdr (pushed in reverse)
            self.stack += [_BC_LANG, _BC_LANG, _ITEM] + [_ITEM] * (kind in (ATTRLANGSXP, ATTRLISTSXP))
        else:
            self.stack.append(_ITEM)
