"""`python -m boinc_ext.assimilator`: the assimilator daemon with BOINC's flags."""
import sys

from boinc_ext.daemons.base import main_for
from boinc_ext.assimilator.daemon import Assimilator

if __name__ == "__main__":
    sys.exit(main_for(Assimilator))
