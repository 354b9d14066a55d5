import sys

from tools.sim.vboard.board import main

sys.exit(main())
