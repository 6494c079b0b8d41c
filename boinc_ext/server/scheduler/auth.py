"""Who is calling: the account from the authenticator, and the host row (found or created).

Stock's rules (handle_request.cpp, authenticate_user): a request naming a hostid gets that
host if it belongs to the account and its rpc_seqno has not gone backwards; otherwise, and
for hostid 0, the account's host with the same host CPID is reused or a new host row is
made. A new hostid goes back in the reply only in that case: sending a different hostid to
a client that has one makes it regenerate its identity.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from boinc_ext.boinc.schema import blank_row
from boinc_ext.boinc.db import Database
from boinc_ext.boinc.states import OUTCOME_CLIENT_DETACHED, SERVER_STATE_IN_PROGRESS, SERVER_STATE_OVER
from boinc_ext.server.scheduler.request import SchedulerRequest

USER_COLUMNS = ("id, create_time, email_addr, name, authenticator, total_credit, expavg_credit, teamid, "
                "global_prefs, cross_project_id, venue")
HOST_COLUMNS = "id, userid, rpc_seqno, create_time, total_credit, expavg_credit, venue, p_ncpus, p_fpops"


class AuthError(Exception):
    """The request names no valid account."""


@dataclass
class Caller:
    user: dict
    host: dict          # HOST_COLUMNS at least, as this RPC left them
    new_host: bool


def authenticate(db: Database, request: SchedulerRequest, remote_addr: str) -> Caller:
    """Finds the account and host, creating the host if needed, and records this RPC."""
    if not request.authenticator:
        raise AuthError("missing account key")
    user = db.query_one(f"select {USER_COLUMNS} from user where authenticator = %s", (request.authenticator,))
    if user is None:
        raise AuthError("invalid account key")
    host = _known_host(db, request, user)
    new_host = host is None
    with db.transaction():
        if host is None:
            host = _reused_host(db, request, user) or _create_host(db, request, user)
        host = {**host, **_update_host(db, host["id"], request, user, remote_addr)}
    return Caller(user=user, host=host, new_host=new_host)


def stored_host_cpid(client_cpid: str, email: str) -> str:
    return hashlib.md5((client_cpid + email).encode()).hexdigest() if client_cpid else ""


def _known_host(db: Database, request: SchedulerRequest, user: dict) -> dict | None:
    if request.hostid <= 0:
        return None
    host = db.query_one(f"select {HOST_COLUMNS} from host where id = %s", (request.hostid,))
    if host is None or host["userid"] != user["id"] or request.rpc_seqno < host["rpc_seqno"]:
        return None
    return host


def _reused_host(db: Database, request: SchedulerRequest, user: dict) -> dict | None:
    """A client that lost its state (re-attached) gets its old host row back; the tasks that
    host had in progress are gone with that state."""
    cpid = stored_host_cpid(request.host_cpid, user["email_addr"])
    if not cpid:
        return None
    host = db.query_one(f"select {HOST_COLUMNS} from host where userid = %s and host_cpid = %s "
                        f"order by id desc limit 1", (user["id"], cpid))
    if host is not None:
        db.execute("update result set server_state = %s, outcome = %s, received_time = %s "
                   "where hostid = %s and server_state = %s",
                   (SERVER_STATE_OVER, OUTCOME_CLIENT_DETACHED, int(time.time()), host["id"],
                    SERVER_STATE_IN_PROGRESS))
        db.execute("update workunit set transition_time = %s where id in "
                   "(select workunitid from result where hostid = %s and outcome = %s)",
                   (int(time.time()), host["id"], OUTCOME_CLIENT_DETACHED))
    return host


def _create_host(db: Database, request: SchedulerRequest, user: dict) -> dict:
    row = blank_row("host")
    row.update(request.host_values)
    row.update(create_time=int(time.time()), userid=user["id"], rpc_seqno=0,
               host_cpid=stored_host_cpid(request.host_cpid, user["email_addr"]),
               venue=user["venue"] or "")
    columns = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    host_id = db.insert(f"insert into host ({columns}) values ({marks})", tuple(row.values()))
    return {**row, "id": host_id}


def _update_host(db: Database, host_id: int, request: SchedulerRequest, user: dict, remote_addr: str) -> dict:
    """Records this RPC in the host row; returns the values it set."""
    values = dict(request.host_values)
    values.update(rpc_seqno=request.rpc_seqno, rpc_time=int(time.time()), external_ip_addr=remote_addr[:254],
                  host_cpid=stored_host_cpid(request.host_cpid, user["email_addr"]))
    assignments = ", ".join(f"{column} = %s" for column in values)
    db.execute(f"update host set {assignments} where id = %s", (*values.values(), host_id))
    return values
