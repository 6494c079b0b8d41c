"""The rds policy: `.rds` outputs compared as R objects, other outputs bitwise.

Two R values agree when they have the same structure: the same types and classes all the
way down, the same attribute names, the same lengths, character, integer, logical and raw
data identical, NA and NaN in the same places (an NA never matches a NaN). Doubles and
complex numbers are then compared by R's `all.equal(tolerance = rel_tolerance)`, whose
"mean relative difference" semantics R users know. Values near zero are compared
absolutely by it. The default tolerance is all.equal's own, sqrt(.Machine$double.eps)
(about 1.5e-8). That is loose enough for replicas run on CPUs and BLAS builds that
round differently, and tight enough that a result that was not actually computed fails.

Volunteers' files pass rds_guard (decompressed within a size limit, the serialization
stream walked, code-carrying objects refused) before R unserializes the checked bytes.
rpy2 is imported here only, so a validator that uses another policy starts without R.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from boinc_ext.validator.bitwise import file_digest
from boinc_ext.validator.errors import PermanentValidationError
from boinc_ext.validator.output_files import OutputFile
from boinc_ext.validator.policy import ValidationPolicy, compare_by_name
from boinc_ext.validator.rds_guard import DEFAULT_MAX_BYTES, read_rds_bytes

DEFAULT_REL_TOLERANCE = math.sqrt(2.0 ** -52)  # R's sqrt(.Machine$double.eps)
RDS_SUFFIX = ".rds"

# The comparison, in R. `shape` walks both values: types, classes, lengths, attribute
# names and exact data for everything but doubles and complex numbers, whose NA/NaN
# patterns must match; all.equal then compares the numbers within the tolerance.
_R_SAME = r"""
function(a, b, tolerance) {
    bare <- function(x) { attributes(x) <- NULL; x }
    shape <- function(x, y) {
        if (!identical(typeof(x), typeof(y)) || !identical(class(x), class(y))) return(FALSE)
        ax <- attributes(x); ay <- attributes(y)
        if (!identical(sort(names(ax)), sort(names(ay)))) return(FALSE)
        for (n in names(ax)) if (!shape(ax[[n]], ay[[n]])) return(FALSE)
        if (is.atomic(x)) {
            if (length(x) != length(y)) return(FALSE)
            if (is.double(x) || is.complex(x))
                return(identical(bare(is.nan(x)), bare(is.nan(y))) && identical(bare(is.na(x)), bare(is.na(y))))
            return(identical(bare(x), bare(y)))
        }
        if (is.list(x)) {
            if (length(x) != length(y)) return(FALSE)
            for (i in seq_along(x)) if (!shape(x[[i]], y[[i]])) return(FALSE)
        }
        TRUE
    }
    tryCatch(shape(a, b) && isTRUE(all.equal(a, b, tolerance = tolerance)),
             error = function(e) identical(a, b))
}
"""


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError("must be a positive number")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


@dataclass(frozen=True, eq=False)
class RValue:
    """An unserialized R value (an rpy2 object, kept alive while the workunit is decided)."""

    sexp: Any


class RdsPolicy(ValidationPolicy):
    name = "rds"
    settings: ClassVar[Mapping[str, Any]] = {"rel_tolerance": _positive_float, "max_bytes": _positive_int}

    def __init__(self, rel_tolerance: float = DEFAULT_REL_TOLERANCE, max_bytes: int = DEFAULT_MAX_BYTES):
        super().__init__(rel_tolerance=rel_tolerance, max_bytes=max_bytes)
        self.rel_tolerance = rel_tolerance
        self.max_bytes = max_bytes
        self._r = _R.instance()
        self._tolerance = self._r.double(rel_tolerance)

    def prepare(self, files: Sequence[OutputFile]) -> dict[str, RValue | str | None]:
        return {f.open_name: self._load(f) for f in files}

    def _load(self, file: OutputFile) -> RValue | str | None:
        if not file.present:
            return None
        what = f"output {file.open_name} ({file.path})"
        if not file.open_name.lower().endswith(RDS_SUFFIX):
            return file_digest(file.path, what)
        return RValue(self._r.unserialize(read_rds_bytes(file.path, self.max_bytes), what))

    def same(self, a: dict, b: dict) -> bool:
        return compare_by_name(a, b, self._same_value)

    def _same_value(self, x: RValue | str | None, y: RValue | str | None) -> bool:
        if isinstance(x, RValue) and isinstance(y, RValue):
            return self._r.same(x.sexp, y.sexp, self._tolerance)
        return x == y  # digests, or both missing

    def release(self, handle: dict) -> None:
        handle.clear()


class _R:
    """The embedded R session, started once per process."""

    _instance: _R | None = None

    def __init__(self):
        import rpy2.rinterface as ri
        from rpy2.rinterface_lib.embedded import RRuntimeError
        ri.initr_simple()
        self._ri = ri
        self._error = RRuntimeError
        self._unserialize = ri.baseenv["unserialize"]
        self._same = ri.baseenv["eval"](ri.parse(_R_SAME))

    @classmethod
    def instance(cls) -> _R:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def double(self, value: float):
        return self._ri.FloatSexpVector([value])

    def unserialize(self, data: bytes, what: str):
        try:
            return self._unserialize(self._ri.ByteSexpVector(data))
        except self._error as exc:
            raise PermanentValidationError(f"{what}: R cannot load it: {str(exc).strip()}") from None

    def same(self, a, b, tolerance) -> bool:
        answer = self._same(a, b, tolerance)
        return bool(answer[0]) if len(answer) == 1 and answer[0] is not self._ri.NA_Logical else False
