"""The validator daemon (daemon.py) and its output-comparison policies (policy.py)."""
