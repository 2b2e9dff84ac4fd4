"""Plain building blocks every layer may use: safe names, hashing and cache keys, small column tables,
metrics. Nothing here imports torch, pandas or another part of climd but :mod:`stages.errors`."""
