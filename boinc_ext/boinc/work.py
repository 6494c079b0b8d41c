"""Work creation: what BOINC's create_work does, as a Python API.

Inputs are staged into the download hierarchy at the path stock BOINC computes, with
`.md5` files; the workunit row gets the xml_doc stock BOINC would write and
transition_time = now so that the transitioner picks it up. A batch goes in one
transaction. Any failure leaves nothing behind: no row, no staged file.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.db import Database, DuplicateKeyError
from boinc_ext.boinc.hierarchy import (BadFileName, check_file_name, copy_with_md5, hier_path, hier_url, md5_file,
                        read_md5_info, subdir_for, write_md5_info)
from boinc_ext.boinc.templates import (XML_DOC_LIMIT, InputFile, InputTemplate, OutputTemplate, TemplateError, WorkParams,
                        render_workunit_xml)

log = logging.getLogger("boinc_ext.boinc.work")

INT_MAX = 2147483647
ANALYZE_AFTER_ROWS = 1000
_NAME_CHUNK = 1000
# Per-workunit columns first; the rest are the same for every workunit of a batch.
_WU_COLUMNS = (
    "name", "xml_doc", "priority", "opaque", "keywords",
    "create_time", "appid", "batch", "rsc_fpops_est", "rsc_fpops_bound",
    "rsc_memory_bound", "rsc_disk_bound", "need_validate", "canonical_resultid", "canonical_credit",
    "transition_time", "delay_bound", "error_mask", "file_delete_state", "assimilate_state", "hr_class",
    "min_quorum", "target_nresults", "max_error_results", "max_total_results",
    "max_success_results", "result_template_file", "rsc_bandwidth_bound", "fileset_id",
    "app_version_id", "transitioner_flags", "size_class", "app_version_num",
)
_INSERT_WU = f"insert into workunit ({', '.join(_WU_COLUMNS)})"


class WorkError(ValueError):
    """A workunit cannot be created as asked; the message names the bad input."""


@dataclass(frozen=True)
class WorkunitRequest:
    """One workunit. Inputs: a Path is a local file to stage; a str is a file name already in
    the download hierarchy (or at the top of download/, which is then staged, as stock does).
    open_names, when given, are the names the app opens `inputs` by (one each), in place of
    the open names the template gives its variable inputs."""

    name: str
    inputs: Sequence[Path | str] = ()
    open_names: Sequence[str] | None = None
    command_line: str | None = None
    params: dict = field(default_factory=dict)
    priority: int = 0
    opaque: float = 0.0
    additional_xml: str | None = None
    keywords: str = ""


class Stager:
    """Stages input files; remembers what it created so that a failure can undo it.
    Paths are plain strings here: this runs once per input of every workunit."""

    def __init__(self, config: ProjectConfig, link: bool = False):
        self.config = config
        self.link = link
        self.created: list[str] = []
        self._download_dir = str(config.download_dir)
        self._known_dirs: set[str] = set()
        self._seen: dict[str, InputFile] = {}

    def stage(self, source: Path | str) -> InputFile:
        if isinstance(source, Path):
            return self._stage_local(source)
        return self._staged_name(source)

    def rollback(self) -> None:
        for path in reversed(self.created):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.created.clear()

    def commit(self) -> None:
        self.created.clear()

    def _target(self, name: str) -> str:
        fanout = self.config.uldl_dir_fanout
        directory = os.path.join(self._download_dir, subdir_for(name, fanout)) if fanout else self._download_dir
        if directory not in self._known_dirs:
            os.makedirs(directory, exist_ok=True)
            self._known_dirs.add(directory)
        return os.path.join(directory, name)

    def _stage_local(self, source: Path) -> InputFile:
        name = check_file_name(source.name, "input file name")
        if name in self._seen:
            return self._seen[name]
        if not source.is_file():
            raise WorkError(f"input file {source}: no such file")
        target = self._target(name)
        if os.path.exists(target):
            md5, nbytes = md5_file(source)
            if self._info_of_staged(target)[0] != md5:
                raise WorkError(f"input file {name}: a different file of that name is already staged "
                                f"at {target}; staged files are immutable, use a new name")
        else:
            md5, nbytes = self._copy_in(str(source), target)
            self._write_md5_info(target, md5, nbytes)
        return self._remember(name, md5, nbytes)

    def _copy_in(self, source: str, target: str) -> tuple[str, int]:
        """Places a file in the hierarchy (whole or not at all) and returns its md5 and size.
        A hard link where asked for and possible, else a copy; a file another process staged
        under the same name meanwhile is never replaced: it is accepted if identical."""
        if self.link:
            try:
                return self._link_in(source, target)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                # another filesystem: copy instead
        tmp = os.path.join(os.path.dirname(target),
                           f".{os.path.basename(target)}.{os.getpid()}.{secrets.token_hex(4)}.part")
        try:
            md5_and_size = copy_with_md5(source, tmp)
            return self._link_in(tmp, target, md5_and_size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _link_in(self, path: str, target: str, md5_and_size: tuple[str, int] | None = None) -> tuple[str, int]:
        """Hard-links `path` as `target` (never replacing a file there) and returns its md5 and size."""
        try:
            os.link(path, target)
        except FileExistsError:
            return self._same_as_staged(path, target, md5_and_size)
        self.created.append(target)
        return md5_and_size or md5_file(Path(target))

    def _same_as_staged(self, path: str, target: str, md5_and_size: tuple[str, int] | None) -> tuple[str, int]:
        """The md5 and size of `path`, if the file already staged as `target` has the same content."""
        md5, nbytes = md5_and_size or md5_file(Path(path))
        if md5_file(Path(target))[0] != md5:
            raise WorkError(f"input file {os.path.basename(target)}: a different file of that name is "
                            f"already staged at {target}; staged files are immutable, use a new name")
        return md5, nbytes

    def _staged_name(self, name: str) -> InputFile:
        check_file_name(name, "input file name")
        if name in self._seen:
            return self._seen[name]
        target = self._target(name)
        cached = read_md5_info(target) if self.config.cache_md5_info else None
        if cached is None:
            if not os.path.exists(target):
                top = os.path.join(self._download_dir, name)
                if not os.path.isfile(top):
                    raise WorkError(f"input file {name}: not in the download hierarchy ({target}) "
                                    f"nor in {self._download_dir}")
                self._copy_in(top, target)
            cached = self._info_of_staged(target)
        return self._remember(name, *cached)

    def _info_of_staged(self, path: str) -> tuple[str, int]:
        cached = read_md5_info(path) if self.config.cache_md5_info else None
        if cached:
            return cached
        md5, nbytes = md5_file(Path(path))
        if self.config.cache_md5_info:
            self._write_md5_info(path, md5, nbytes)
        return md5, nbytes

    def _write_md5_info(self, path: str, md5: str, nbytes: int) -> None:
        """Writes `<path>.md5`; only one this stager created is removed by rollback()."""
        if not os.path.exists(path + ".md5"):
            self.created.append(path + ".md5")
        write_md5_info(Path(path), md5, nbytes)

    def _remember(self, name: str, md5: str, nbytes: int) -> InputFile:
        url = hier_url(name, self.config.download_url, self.config.uldl_dir_fanout)
        info = InputFile(name, url, md5, nbytes)
        self._seen[name] = info
        return info


class WorkCreator:
    """Creates workunits of one app from one pair of templates."""

    def __init__(self, config: ProjectConfig, db: Database, app_name: str, wu_template: str | Path,
                 result_template: str | Path, *, link_inputs: bool = False, defaults: dict | None = None):
        self.config = config
        self.db = db
        self.link_inputs = link_inputs
        self.app_id = self._app_id(app_name)
        self.app_name = app_name
        self.input_template = InputTemplate.load(self._template_path(wu_template))
        result_path = self._template_path(result_template)
        OutputTemplate.load(result_path)
        self.result_template_file = self._relative_to_project(result_path)
        self.base_params = WorkParams().overridden(**self.input_template.params).overridden(**(defaults or {}))
        self._constant_files: dict[int, InputFile] | None = None
        self._checked_base: WorkParams | None = None
        self._consecutive_ids = db.consecutive_autoinc()

    def create(self, request: WorkunitRequest) -> int:
        """Creates one workunit in its own transaction; returns its id."""
        return self.create_many([request])[0]

    def create_many(self, requests: Sequence[WorkunitRequest]) -> list[int]:
        """Creates every workunit or none (one transaction); returns their ids in order."""
        if not requests:
            return []
        self._check_names(requests)
        self._batch_time = int(time.time())
        self._shared: dict[WorkParams, bytes] = {}
        stager = Stager(self.config, link=self.link_inputs)
        try:
            rows = (self._row(request, stager) for request in requests)
            with self.db.transaction():
                ids = self.db.insert_rows(_INSERT_WU, rows)
                if not self._consecutive_ids:
                    ids = self._ids_of([r.name for r in requests])
        except DuplicateKeyError:
            stager.rollback()
            raise WorkError("a workunit of that name already exists (created meanwhile)") from None
        except BaseException:
            stager.rollback()
            raise
        stager.commit()
        if len(requests) >= ANALYZE_AFTER_ROWS:
            self.refresh_statistics()
        if len(requests) == 1:
            log.info("[WU#%d %s] created", ids[0], requests[0].name)
        else:
            log.info("created %d workunits (%s .. %s)", len(ids), requests[0].name, requests[-1].name)
        return ids

    def refresh_statistics(self) -> None:
        """After bulk inserts InnoDB's sampled statistics go stale and the daemons' queries
        (transitioner, feeder) can pick a full scan; stock BOINC projects hit minutes-long
        queries until ANALYZE TABLE. Refreshing costs milliseconds."""
        self.db.query("analyze table workunit")

    # --- per workunit ----------------------------------------------------------------------
    def _row(self, request: WorkunitRequest, stager: Stager) -> bytes:
        """The workunit's row as SQL literal text, ready for a multi-row INSERT."""
        what = f"workunit {request.name}"
        template = self._template_for(request, what)
        params = self._params(request, what)
        xml_doc = self._xml_doc(request, template, stager, what)
        literal = self.db.literal
        return b"(" + b",".join((literal(request.name), literal(xml_doc), literal(request.priority),
                                 literal(float(request.opaque)), literal(request.keywords),
                                 self._shared_columns(params))) + b")"

    def _template_for(self, request: WorkunitRequest, what: str) -> InputTemplate:
        """The input template, with the request's open names if it brings its own."""
        template = self.input_template
        if len(request.inputs) != template.n_variable_inputs:
            raise WorkError(f"{what}: {len(request.inputs)} input files given, but the template "
                            f"has {template.n_variable_inputs}")
        if request.command_line is not None and template.command_line is not None:
            raise WorkError(f"{what}: a command line is given, but the template already has one")
        if request.open_names is None:
            return template
        return with_open_names(template, _checked_open_names(request, what))

    def _xml_doc(self, request: WorkunitRequest, template: InputTemplate, stager: Stager, what: str) -> bytes:
        variable = [stager.stage(source) for source in request.inputs]
        command_line = request.command_line if request.command_line is not None else template.command_line
        xml_doc = render_workunit_xml(template, variable, self._constants(stager), command_line,
                                      request.additional_xml).encode()
        if len(xml_doc) > XML_DOC_LIMIT:
            raise WorkError(f"{what}: xml_doc is {len(xml_doc)} bytes; BOINC's limit is {XML_DOC_LIMIT}")
        return xml_doc

    def _shared_columns(self, params: WorkParams) -> bytes:
        """The literal text of the columns every workunit with these params shares."""
        cached = self._shared.get(params)
        if cached is None:
            now = self._batch_time
            values = (now, self.app_id, params.batch, float(params.rsc_fpops_est),
                      float(params.rsc_fpops_bound), float(params.rsc_memory_bound),
                      float(params.rsc_disk_bound), 0, 0, 0.0, now, params.delay_bound, 0, 0, 0, 0,
                      params.min_quorum, params.target_nresults, params.max_error_results,
                      params.max_total_results, params.max_success_results, self.result_template_file,
                      float(params.rsc_bandwidth_bound), 0, 0, 0, params.size_class, 0)
            cached = self._shared[params] = b",".join(map(self.db.literal, values))
        return cached

    def _params(self, request: WorkunitRequest, what: str) -> WorkParams:
        try:
            if request.params:
                return self.base_params.overridden(**request.params).checked(what)
            if self._checked_base is None:
                self._checked_base = self.base_params.checked(what)
            return self._checked_base
        except TemplateError as exc:
            raise WorkError(str(exc)) from None
        except TypeError as exc:  # a parameter WorkParams does not have
            raise WorkError(f"{what}: {exc}") from None

    def _constants(self, stager: Stager) -> dict[int, InputFile]:
        """Constant files (<physical_name>) must already be staged with their .md5 file."""
        if self._constant_files is None:
            constants = {}
            for index, info in enumerate(self.input_template.file_infos):
                if info.physical_name:
                    path = hier_path(info.physical_name, self.config.download_dir, self.config.uldl_dir_fanout)
                    cached = read_md5_info(path)
                    if cached is None:
                        raise WorkError(f"constant input {info.physical_name}: missing, or no .md5 file at {path}")
                    url = hier_url(info.physical_name, self.config.download_url, self.config.uldl_dir_fanout)
                    constants[index] = InputFile(info.physical_name, url, *cached)
            self._constant_files = constants
        return self._constant_files

    # --- checks ----------------------------------------------------------------------------
    def _check_names(self, requests: Sequence[WorkunitRequest]) -> None:
        names = [r.name for r in requests]
        for name in names:
            try:
                check_file_name(name, "workunit name")
            except BadFileName as exc:
                raise WorkError(str(exc)) from None
        duplicates = {n for n, count in Counter(names).items() if count > 1}
        if duplicates:
            raise WorkError(f"workunit names repeated in the batch: {', '.join(sorted(duplicates)[:5])}")
        taken = self._existing_names(names)
        if taken:
            raise WorkError(f"workunit name already exists: {', '.join(sorted(taken)[:5])}"
                            + (f" and {len(taken) - 5} more" if len(taken) > 5 else ""))

    def _existing_names(self, names: list[str]) -> set[str]:
        return set(self._ids_by_name(names))

    def _ids_of(self, names: list[str]) -> list[int]:
        by_name = self._ids_by_name(names)
        return [by_name[name] for name in names]

    def _ids_by_name(self, names: list[str]) -> dict[str, int]:
        """{name: id} of the workunits among `names` that exist, queried in bounded chunks."""
        by_name: dict[str, int] = {}
        for start in range(0, len(names), _NAME_CHUNK):
            chunk = names[start:start + _NAME_CHUNK]
            placeholders = ", ".join(["%s"] * len(chunk))
            for row in self.db.query(f"select id, name from workunit where name in ({placeholders})", chunk):
                by_name[row["name"]] = row["id"]
        return by_name

    def _app_id(self, app_name: str) -> int:
        row = self.db.query_one("select id from app where name = %s and deprecated = 0", (app_name,))
        if row is None:
            raise WorkError(f"unknown app {app_name!r} (not in the app table, or deprecated)")
        return row["id"]

    def _template_path(self, template: str | Path) -> Path:
        path = Path(template)
        if path.is_absolute():
            candidates = [path]
        else:
            candidates = [self.config.project_dir / path, Path.cwd() / path]
        for candidate in candidates:
            if candidate.is_file():
                return candidate.resolve()
        raise WorkError(f"template {template}: no such file (looked in {', '.join(str(c) for c in candidates)})")

    def _relative_to_project(self, path: Path) -> str:
        try:
            relative = str(path.relative_to(self.config.project_dir))
        except ValueError:
            raise WorkError(f"result template {path}: must be inside the project directory "
                            f"({self.config.project_dir}), since workunits store its relative path") from None
        if len(relative) > 63:
            raise WorkError(f"result template path {relative!r}: longer than BOINC's 63 characters")
        return relative


def _checked_open_names(request: WorkunitRequest, what: str) -> Sequence[str]:
    if len(request.open_names) != len(request.inputs):
        raise WorkError(f"{what}: {len(request.open_names)} open names for {len(request.inputs)} input files")
    for name in request.open_names:
        try:
            check_file_name(name, f"{what}: open name")
        except BadFileName as exc:
            raise WorkError(str(exc)) from None
    return request.open_names


def with_open_names(template: InputTemplate, open_names: Sequence[str]) -> InputTemplate:
    """`template` with its variable inputs opened under `open_names` (file_ref n belongs to
    file_info n); everything else in it is kept."""
    variable = [n for n, info in enumerate(template.file_infos) if info.is_variable]
    ref_positions = [p for p, (kind, _) in enumerate(template.workunit_items) if kind == "file_ref"]
    items = list(template.workunit_items)
    for n, open_name in zip(variable, open_names, strict=True):
        position = ref_positions[n]
        items[position] = ("file_ref", replace(items[position][1], open_name=open_name))
    return replace(template, workunit_items=tuple(items))
