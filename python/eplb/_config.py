"""Where this copy of the package finds libeplb.so.

The source tree's copy says nothing (None: the loader's default path).  The
build writes its own into build/python/eplb (the absolute path of
build/lib/install/libeplb.so), `cmake --install` one with the path from the
installed package to the installed library, and `pip install` one with the
library it found (python/setup.py).
"""
LIBRARY = None
