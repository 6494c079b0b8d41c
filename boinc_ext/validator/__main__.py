"""`python -m boinc_ext.validator`: the validator daemon (see daemon.py)."""
import sys

from ..daemon import main_for
from .daemon import Validator

sys.exit(main_for(Validator))
