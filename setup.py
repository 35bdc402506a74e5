"""The optional native engine (merkle_backup/archive/_engine.c); everything else is in
pyproject.toml.

Built wherever a C compiler and the Python headers exist. If the build fails, the install still
succeeds and the pure-Python path runs (``merkle_backup.archive.ENGINE == "pure"``);
``MERKLE_BACKUP_NO_NATIVE=1`` at install time skips the build on purpose.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if os.environ.get("MERKLE_BACKUP_NO_NATIVE", "") in ("", "0"):
    ext_modules.append(Extension(
        "merkle_backup.archive._engine",
        sources=["merkle_backup/archive/_engine.c"],
        extra_compile_args=["-O2", "-std=c11"],
        optional=True,  # a build failure skips the extension, never the install
    ))

setup(ext_modules=ext_modules)
