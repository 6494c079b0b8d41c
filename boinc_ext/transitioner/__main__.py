"""`python -m boinc_ext.transitioner`: the transitioner daemon with BOINC's flags."""
import sys

from boinc_ext.daemons.base import main_for
from boinc_ext.transitioner.daemon import Transitioner

sys.exit(main_for(Transitioner))
