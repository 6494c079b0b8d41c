"""The daemon framework (base.py), start/stop/status (control.py), our daemons' registry and launchers, the file deleter."""
