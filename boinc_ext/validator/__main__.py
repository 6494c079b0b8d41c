"""`python -m boinc_ext.validator`: the validator daemon (see daemon.py)."""
import sys

from boinc_ext.daemons.base import main_for
from boinc_ext.validator.daemon import Validator

sys.exit(main_for(Validator))
