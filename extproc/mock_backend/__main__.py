import sys

from extproc.mock_backend.runner import main

sys.exit(main())
