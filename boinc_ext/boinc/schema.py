"""BOINC's own tables, as stock BOINC names and types them, and nothing more.

Only the tables that BOINC's scheduler, daemons and account RPCs use (the forum, profile
and badge tables of the PHP site are left out). Each table is written in a compact column
notation that `table_ddl` expands:

    name:type[?][=default]

type is one of the keys of _TYPES; `?` makes the column nullable (BOINC's blobs and a few
varchars are), `=x` gives a default. `id` columns are auto-increment primary keys.
The result is checked column by column and index by index against stock BOINC's schema
(tests/data/stock_schema_columns.json) in tests/boinc/test_boinc_schema.py, in every run.
"""
from __future__ import annotations

_TYPES = {
    "id": "integer not null auto_increment",
    "serial": "bigint unsigned not null auto_increment",
    "int": "integer",
    "uint": "integer unsigned",
    "bigint": "bigint",
    "small": "smallint",
    "tiny": "tinyint",
    "double": "double",
    "vc63": "varchar(63)",
    "vc128": "varchar(128)",
    "vc191": "varchar(191)",
    "vc254": "varchar(254)",
    "vc255": "varchar(255)",
    "char32": "char(32)",
    "text": "text",
    "mtext": "mediumtext",
    "blob": "blob",
    "mblob": "mediumblob",
    "stamp": "timestamp",
}
_NUMERIC_TYPES = {"int", "uint", "bigint", "small", "tiny", "double"}

_COLUMNS: dict[str, str] = {
    "platform": """id:id create_time:int name:vc191 user_friendly_name:vc254 deprecated:tiny=0""",
    "app": """id:id create_time:int name:vc191 min_version:int=0 deprecated:small=0
        user_friendly_name:vc254 homogeneous_redundancy:small=0 weight:double=1 beta:small=0
        target_nresults:small=0 min_avg_pfc:double=1 host_scale_check:tiny=0
        homogeneous_app_version:tiny=0 non_cpu_intensive:tiny=0 locality_scheduling:int=0
        n_size_classes:small=0 fraction_done_exact:tiny=0""",
    "app_version": """id:id create_time:int appid:int version_num:int platformid:int xml_doc:mblob?
        min_core_version:int=0 max_core_version:int=0 deprecated:tiny=0 plan_class:vc128=''
        pfc_n:double=0 pfc_avg:double=0 pfc_scale:double=0 expavg_credit:double=0
        expavg_time:double=0 beta:tiny=0""",
    "user": """id:id create_time:int email_addr:vc191 name:vc191? authenticator:vc191?
        country:vc254? postal_code:vc254? total_credit:double expavg_credit:double
        expavg_time:double global_prefs:blob? project_prefs:blob? teamid:int venue:vc254
        url:vc254? send_email:small show_hosts:small posts:small seti_id:int seti_nresults:int
        seti_last_result_time:int seti_total_cpu:double signature:vc254? has_profile:small
        cross_project_id:vc254 passwd_hash:vc254 email_validated:small donated:small
        login_token:char32='' login_token_time:double=0 previous_email_addr:vc254=''
        email_addr_change_time:double=0""",
    "team": """id:id create_time:int userid:int name:vc191 name_lc:vc254? url:vc254? type:int
        name_html:vc254? description:text? nusers:int country:vc254? total_credit:double=0
        expavg_credit:double=0 expavg_time:double seti_id:int=0 ping_user:int=0 ping_time:uint=0
        joinable:tiny=1 mod_time:stamp""",
    "host": """id:id create_time:int userid:int rpc_seqno:int rpc_time:int total_credit:double
        expavg_credit:double expavg_time:double timezone:int domain_name:vc254? serialnum:vc254?
        last_ip_addr:vc254? nsame_ip_addr:int on_frac:double connected_frac:double
        active_frac:double cpu_efficiency:double duration_correction_factor:double p_ncpus:int
        p_vendor:vc254? p_model:vc254? p_fpops:double p_iops:double p_membw:double
        os_name:vc254? os_version:vc254? m_nbytes:double m_cache:double m_swap:double
        d_total:double d_free:double d_boinc_used_total:double d_boinc_used_project:double
        d_boinc_max:double n_bwup:double n_bwdown:double credit_per_cpu_sec:double venue:vc254
        nresults_today:int avg_turnaround:double host_cpid:vc254? external_ip_addr:vc254?
        max_results_day:int error_rate:double=0 product_name:vc254 gpu_active_frac:double
        p_ngpus:int p_gpu_fpops:double misc:text=''""",
    "host_app_version": """host_id:int app_version_id:int pfc_n:double pfc_avg:double et_n:double
        et_avg:double et_var:double et_q:double max_jobs_per_day:int n_jobs_today:int
        turnaround_n:double turnaround_avg:double turnaround_var:double turnaround_q:double
        consecutive_valid:int""",
    "workunit": """id:id create_time:int appid:int name:vc191 xml_doc:blob? batch:int
        rsc_fpops_est:double rsc_fpops_bound:double rsc_memory_bound:double rsc_disk_bound:double
        need_validate:small canonical_resultid:int canonical_credit:double transition_time:int
        delay_bound:int error_mask:int file_delete_state:int assimilate_state:int hr_class:int
        opaque:double min_quorum:int target_nresults:int max_error_results:int
        max_total_results:int max_success_results:int result_template_file:vc63 priority:int
        mod_time:stamp rsc_bandwidth_bound:double fileset_id:int app_version_id:int
        transitioner_flags:tiny size_class:small=-1 keywords:vc254 app_version_num:int""",
    "result": """id:id create_time:int workunitid:int server_state:int outcome:int client_state:int
        hostid:int userid:int report_deadline:int sent_time:int received_time:int name:vc191
        cpu_time:double xml_doc_in:blob? xml_doc_out:blob? stderr_out:blob? batch:int
        file_delete_state:int validate_state:int claimed_credit:double granted_credit:double
        opaque:double random:int app_version_num:int appid:int exit_status:int teamid:int
        priority:int mod_time:stamp elapsed_time:double flops_estimate:double app_version_id:int
        runtime_outlier:tiny size_class:small=-1 peak_working_set_size:double
        peak_swap_size:double peak_disk_usage:double""",
    "batch": """id:serial user_id:int create_time:int logical_start_time:double
        logical_end_time:double est_completion_time:double njobs:int fraction_done:double
        nerror_jobs:int state:int completion_time:double credit_estimate:double
        credit_canonical:double credit_total:double name:vc255 app_id:int project_state:int
        description:vc255 expire_time:double""",
    "user_submit": """user_id:int quota:double logical_start_time:double submit_all:tiny
        manage_all:tiny max_jobs_in_progress:int""",
    "user_submit_app": """user_id:int app_id:int manage:tiny""",
    "job_file": """id:id name:vc191 create_time:double delete_time:double""",
    "msg_from_host": """id:id create_time:int hostid:int variety:vc254 handled:small xml:mtext?""",
    "msg_to_host": """id:id create_time:int hostid:int variety:vc254 handled:small xml:mtext?""",
    "assignment": """id:id create_time:int target_id:int target_type:int multi:tiny workunitid:int
        resultid:int""",
    "credited_job": """userid:int workunitid:bigint""",
}

# Primary keys other than `id`.
_PRIMARY_KEYS = {
    "user_submit": "user_id",
    "user_submit_app": "user_id, app_id",
}

# (index name or None for an unnamed unique key, kind, columns) per table.
_INDEXES: dict[str, list[tuple[str | None, str, str]]] = {
    "platform": [(None, "unique", "name")],
    "app": [(None, "unique", "name")],
    "app_version": [("apvp", "unique", "appid, platformid, version_num, plan_class")],
    "user": [(None, "unique", "email_addr"), (None, "unique", "authenticator"),
             ("ind_tid", "index", "teamid"), (None, "unique", "name"),
             ("user_tot", "index", "total_credit desc"), ("user_avg", "index", "expavg_credit desc"),
             ("user_email_time", "index", "email_addr_change_time")],
    "team": [(None, "unique", "name"), ("team_name_desc", "fulltext", "name, description"),
             ("team_avg", "index", "expavg_credit desc"), ("team_tot", "index", "total_credit desc"),
             ("team_userid", "index", "userid")],
    "workunit": [(None, "unique", "name"), ("wu_val", "index", "appid, need_validate"),
                 ("wu_timeout", "index", "transition_time"), ("wu_filedel", "index", "file_delete_state"),
                 ("wu_assim", "index", "appid, assimilate_state"), ("wu_batch", "index", "batch")],
    "result": [(None, "unique", "name"), ("res_wuid", "index", "workunitid"),
               ("ind_res_st", "index", "server_state, priority"),
               ("res_app_state", "index", "appid, server_state"),
               ("res_filedel", "index", "file_delete_state"),
               ("res_userid_id", "index", "userid, id desc"),
               ("res_userid_val", "index", "userid, validate_state"),
               ("res_hostid_id", "index", "hostid, id desc"), ("res_batch", "index", "batch")],
    "msg_from_host": [("message_handled", "index", "handled"), ("message_hostid", "index", "hostid")],
    "msg_to_host": [("msg_to_host", "index", "hostid, handled")],
    "host": [("host_userid_cpid", "index", "userid, host_cpid"),
             ("host_domain_name", "index", "domain_name"),
             ("host_avg", "index", "expavg_credit desc"), ("host_tot", "index", "total_credit desc")],
    "credited_job": [("credited_job_user", "index", "userid"), ("credited_job_wu", "index", "workunitid"),
                     ("credited_job_user_wu", "unique", "userid, workunitid")],
    "host_app_version": [("hap", "unique", "host_id, app_version_id")],
    "assignment": [("asgn_target", "index", "target_type, target_id")],
    "job_file": [("jf_name", "unique", "name")],
}

BOINC_TABLES = tuple(_COLUMNS)


def _column_ddl(spec: str) -> str:
    name, _, rest = spec.partition(":")
    type_code, _, default = rest.partition("=")
    nullable = type_code.endswith("?")
    type_code = type_code.rstrip("?")
    sql = f"`{name}` {_TYPES[type_code]}"
    if type_code == "stamp":
        return sql + " default current_timestamp on update current_timestamp"
    if type_code not in ("id", "serial") and not nullable:
        sql += " not null"
    if default:
        sql += f" default {default}"
    return sql


def table_ddl(table: str) -> str:
    specs = _COLUMNS[table].split()
    lines = [_column_ddl(spec) for spec in specs]
    if specs[0].startswith("id:"):
        lines.append("primary key (`id`)")
    elif table in _PRIMARY_KEYS:
        lines.append(f"primary key ({_PRIMARY_KEYS[table]})")
    body = ",\n    ".join(lines)
    return f"create table `{table}` (\n    {body}\n) engine=InnoDB"


def index_ddl(table: str) -> list[str]:
    statements = []
    for name, kind, columns in _INDEXES.get(table, []):
        keyword = {"unique": "unique", "index": "index", "fulltext": "fulltext index"}[kind]
        label = f" `{name}`" if name else ""
        statements.append(f"alter table `{table}` add {keyword}{label} ({columns})")
    return statements


def create_boinc_tables(db) -> None:
    """Creates every table of BOINC_TABLES with its indexes (DDL commits implicitly)."""
    for table in BOINC_TABLES:
        db.execute(table_ddl(table))
        for statement in index_ddl(table):
            db.execute(statement)


def existing_boinc_tables(db) -> set[str]:
    rows = db.query("select table_name as t from information_schema.tables where table_schema = database()")
    return {row["t"] for row in rows} & set(BOINC_TABLES)


def numeric_columns(table: str) -> frozenset[str]:
    """The columns of `table` declared with an integer or floating-point type (ids included)."""
    if table not in _COLUMNS:
        raise ValueError(f"{table!r} is not one of BOINC's tables")
    names = set()
    for spec in _COLUMNS[table].split():
        name, _, rest = spec.partition(":")
        if rest.partition("=")[0].rstrip("?") in _NUMERIC_TYPES | {"id", "serial"}:
            names.add(name)
    return frozenset(names)


def blank_row(table: str) -> dict[str, object]:
    """Every column a stock INSERT must name, with its "none" value (0 or ''); the id and
    timestamp columns are left to the server. Callers overwrite what they know."""
    row: dict[str, object] = {}
    for spec in _COLUMNS[table].split():
        name, _, rest = spec.partition(":")
        type_code = rest.partition("=")[0].rstrip("?")
        if type_code in ("id", "serial", "stamp"):
            continue
        row[name] = 0 if type_code in _NUMERIC_TYPES else ""
    return row
