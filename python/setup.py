"""`pip install ./python`: the eplb package (pure Python: ctypes over
libeplb.so; docs/python.md).  Works offline with Debian's
python3-setuptools and python3-wheel: there is no pyproject.toml, so pip
builds with the setuptools it finds instead of fetching one.

The package needs libeplb.so at run time.  At install time this script
looks for it and records its absolute path in the installed
eplb/_config.py:
  1. $EPLB_LIBRARY (a path to libeplb.so);
  2. a build tree beside this directory: ../build/lib/install/libeplb.so.0
     (scripts/build.sh build);
  3. an installed eplb: pkg-config --variable=libdir eplb;
  4. none found: nothing is recorded, and the package uses the loader's
     default (LD_LIBRARY_PATH, ld.so's cache) or $EPLB_LIBRARY at run time.
"""

import os
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
SONAME = "libeplb.so.0"


def version():
    ns = {}
    with open(os.path.join(HERE, "eplb", "_version.py")) as f:
        exec(f.read(), ns)
    return ns["VERSION"]


def find_library():
    env = os.environ.get("EPLB_LIBRARY")
    if env:
        if not os.path.exists(env):
            raise SystemExit("setup.py: EPLB_LIBRARY=%s does not exist" % env)
        return os.path.abspath(env)
    built = os.path.join(os.path.dirname(HERE), "build", "lib", "install", SONAME)
    if os.path.exists(built):
        return built
    try:
        libdir = subprocess.run(["pkg-config", "--variable=libdir", "eplb"],
                                capture_output=True, text=True, timeout=30,
                                check=True).stdout.strip()
        if libdir and os.path.exists(os.path.join(libdir, SONAME)):
            return os.path.join(libdir, SONAME)
    except (OSError, subprocess.SubprocessError):
        pass
    return None


class BuildPy(build_py):
    """Copies the package, then writes its _config.py with the library found."""

    def run(self):
        super().run()
        lib = find_library()
        path = os.path.join(self.build_lib, "eplb", "_config.py")
        with open(path, "w") as f:
            f.write('"""Written by python/setup.py: where this copy of the eplb '
                    'package finds libeplb.so (None: the loader\'s default)."""\n')
            f.write("LIBRARY = %r\n" % lib)
        print("eplb: libeplb: %s" % (lib or "not found; the loader's default "
                                     "or EPLB_LIBRARY at run time"))


setup(
    name="eplb",
    version=version(),
    description="Expert-parallel load balancing for Mixture-of-Experts models "
                "(Python over libeplb)",
    packages=["eplb"],
    package_data={"eplb": ["py.typed"]},
    python_requires=">=3.9",
    install_requires=["numpy"],
    cmdclass={"build_py": BuildPy},
)
