"""The transitioner (for projects without a stock one): decision.py decides, daemon.py locks and writes, penalties.py punishes timeouts."""
