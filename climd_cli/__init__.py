"""The ``climd`` command line: thin Typer commands over the :mod:`stages` library."""
