"""climd library, by concern (layers point down; CONTRIBUTING.md): errors, core, runtime, store, data,
encoders, models, engine, method, pipeline (one module per stage), report, sweep. Importable without the CLI.

    encode -> score -> fit-dist -> schedule -> train -> evaluate -> report
"""
import os

from stages.core.version import __version__  # noqa: F401  (one owner: stages/core/version.py)

# HDF5 file locking fails on many cluster file systems (NFS, Lustre, GPFS); our writers are
# guarded by atomic renames instead.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
