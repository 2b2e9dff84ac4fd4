"""The stages, one module each: encode (and its shards), score, fit-dist, schedule, train, evaluate,
predict. Each reads its inputs from the store, calls the method/engine, and writes one artifact."""
