"""Reading evaluated artifacts back: reports and their statistics, choosing on validation, markdown,
plots and ``climd inspect``."""
