"""Runs one pytest file for CTest (python/tests/CMakeLists.txt).

Without numpy or pytest the test is skipped (exit 77, which CTest shows as
"Skipped", with the reason printed), so a plain `ctest` in a new clone
stays green; scripts/test.sh installs them and sets EPLB_REQUIRE_PYTHON=1,
and then a missing one fails.  Usage: ctest_pytest.py FILE [pytest args]
"""

import os
import sys


def main():
    for mod in ("numpy", "pytest"):
        try:
            __import__(mod)
        except ImportError as e:
            why = ("%s is not installed for %s (%s): scripts/setup.sh installs "
                   "Debian's python3-%s" % (mod, sys.executable, e, mod))
            if os.environ.get("EPLB_REQUIRE_PYTHON") == "1":
                print("error: " + why + " (EPLB_REQUIRE_PYTHON=1)")
                return 1
            print("skipped: " + why)
            return 77
    import pytest
    return pytest.main(["-q", "-rs", "-p", "no:cacheprovider"] + sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
