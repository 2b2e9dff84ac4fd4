"""Data sets as climd reads them: the in-memory :class:`~stages.data.dataset.Dataset`, the adapters
that read each supported layout, and the encoded feature file."""
