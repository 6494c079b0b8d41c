"""The BOINC apps of our projects, one module per app (`r_job`, later `mr_map`, `mr_reduce`).

Each module owns everything about its app: templates, how its version is installed, its
default validation policy and its assimilation handler, gathered in an `AppSpec` that
`registry.APPS` lists.
"""
