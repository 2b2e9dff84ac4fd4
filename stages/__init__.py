"""climd library: one module per pipeline stage, importable without the CLI.

    encode -> score -> fit-dist -> schedule -> train -> evaluate -> report
"""
import os

__version__ = "0.1.0"

# HDF5 file locking fails on many cluster file systems (NFS, Lustre, GPFS); our writers are
# guarded by atomic renames instead.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
