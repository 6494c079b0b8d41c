"""The client-side app of the `r_job` app: what an ordinary BOINC client runs for each task.

It ships as one executable zipapp (see `wrapper.build`) and needs only python3 and R on the
volunteer, so it imports nothing but the standard library and its own modules.
"""

# Bump with every change that ships: BOINC refuses a second file of the same name.
WRAPPER_VERSION = "1.00"

# The BOINC app API protocol this wrapper speaks (shared memory through boinc_mmap_file).
API_VERSION = "7.20.0"
