import sys

from tools.bench.targets import main

sys.exit(main())
