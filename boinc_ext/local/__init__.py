"""The single-machine harness: a private MariaDB, local volunteers (real BOINC clients), the local grid, the demo."""
