"""BOINC's state codes for workunit and result rows (db/boinc_db_types.h, lib/common_defs.h).

The values are BOINC's own; stock daemons read and write the same numbers.
"""
from __future__ import annotations

INT_MAX = 2147483647  # workunit.transition_time meaning "never"

# result.server_state
SERVER_STATE_INACTIVE = 1
SERVER_STATE_UNSENT = 2
SERVER_STATE_IN_PROGRESS = 4
SERVER_STATE_OVER = 5

# result.outcome
OUTCOME_INIT = 0
OUTCOME_SUCCESS = 1
OUTCOME_COULDNT_SEND = 2
OUTCOME_CLIENT_ERROR = 3
OUTCOME_NO_REPLY = 4
OUTCOME_DIDNT_NEED = 5
OUTCOME_VALIDATE_ERROR = 6
OUTCOME_CLIENT_DETACHED = 7

# result.validate_state
VALIDATE_STATE_INIT = 0
VALIDATE_STATE_VALID = 1
VALIDATE_STATE_INVALID = 2
VALIDATE_STATE_NO_CHECK = 3
VALIDATE_STATE_INCONCLUSIVE = 4
VALIDATE_STATE_TOO_LATE = 5

# file_delete_state (workunit and result)
FILE_DELETE_INIT = 0
FILE_DELETE_READY = 1
FILE_DELETE_DONE = 2
FILE_DELETE_ERROR = 3

# workunit.assimilate_state
ASSIMILATE_INIT = 0
ASSIMILATE_READY = 1
ASSIMILATE_DONE = 2

# workunit.error_mask bits
WU_ERROR_COULDNT_SEND_RESULT = 1
WU_ERROR_TOO_MANY_ERROR_RESULTS = 2
WU_ERROR_TOO_MANY_SUCCESS_RESULTS = 4
WU_ERROR_TOO_MANY_TOTAL_RESULTS = 8
WU_ERROR_CANCELLED = 16
WU_ERROR_NO_CANONICAL_RESULT = 32

# workunit.transitioner_flags
TRANSITION_NONE = 1
TRANSITION_NO_NEW_RESULTS = 2

# result.exit_status: the user aborted the task in the client's GUI (not counted as an error)
EXIT_ABORTED_VIA_GUI = 203
