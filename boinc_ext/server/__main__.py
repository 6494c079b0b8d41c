import sys

from boinc_ext.server.serve import main

sys.exit(main())
