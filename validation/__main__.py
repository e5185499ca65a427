import sys

from validation.runner import main

sys.exit(main())
