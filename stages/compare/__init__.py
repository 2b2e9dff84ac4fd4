"""``climd compare``: the whole protocol from a data set to the verdict. The panel (:mod:`.panel`), the
plan and its execution (:mod:`.protocol`), the verdict report (:mod:`.verdict`) and the same work as
SLURM job arrays (:mod:`.slurm`). The top layer: it drives :mod:`stages.sweep` and :mod:`stages.report`."""
