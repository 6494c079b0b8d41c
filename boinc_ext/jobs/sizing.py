"""The resource bounds and replication limits of an R job's workunit.

A job says nothing about how much it computes, so the estimates are for a typical job on a
typical volunteer core; the bounds are generous, because a bound that is too tight kills a
good job on the volunteer's machine (the client aborts a task past rsc_fpops_bound or
rsc_disk_bound), while one that is too loose only screens out small hosts.
"""
from __future__ import annotations

from boinc_ext.boinc.templates import WorkParams

GIB = 1 << 30
MIB = 1 << 20

RESULT_MAX_NBYTES = 64 * MIB        # result.rds
STDOUT_MAX_NBYTES = 16 * MIB        # stdout.txt

REFERENCE_FLOPS = 5e9               # a volunteer core's benchmark, roughly
ESTIMATED_SECONDS = 3600            # what the scheduler assumes a job takes on that core
MIN_BOUND_FACTOR = 10               # the client's time limit: at least 10 estimates ...
BASE_MEMORY = 1 * GIB               # R inside its virtual machine
MEMORY_PER_INPUT_BYTE = 3           # R objects take several times their file's size
BASE_DISK = 2 * GIB                 # the VM's overlay image and the checkpoints
DISK_PER_INPUT_BYTE = 2             # the staged input and the slot's copy


def workunit_params(replication: int, delay_bound: int, input_bytes: int) -> dict:
    """WorkParams fields for one job; min_quorum = target_nresults = replication."""
    est = ESTIMATED_SECONDS * REFERENCE_FLOPS
    params = WorkParams(
        rsc_fpops_est=est,
        # ... or as long as the deadline lets the job run on the reference core.
        rsc_fpops_bound=max(MIN_BOUND_FACTOR * est, delay_bound * REFERENCE_FLOPS),
        rsc_memory_bound=float(BASE_MEMORY + MEMORY_PER_INPUT_BYTE * input_bytes),
        rsc_disk_bound=float(BASE_DISK + DISK_PER_INPUT_BYTE * input_bytes
                             + RESULT_MAX_NBYTES + STDOUT_MAX_NBYTES),
        delay_bound=delay_bound,
        min_quorum=replication,
        target_nresults=replication,
        max_error_results=replication,   # an R error on two hosts is the script, not the host
        # Twice the quorum in successes without agreement means the job is not reproducible.
        max_success_results=2 * replication + 2,
        max_total_results=2 * replication + 4,
    )
    params.checked("r_job workunit")
    return {name: getattr(params, name) for name in (
        "rsc_fpops_est", "rsc_fpops_bound", "rsc_memory_bound", "rsc_disk_bound", "delay_bound",
        "min_quorum", "target_nresults", "max_error_results", "max_success_results", "max_total_results")}
