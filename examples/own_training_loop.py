"""A model that is not in climd, trained in a plain PyTorch loop on a climd schedule.

    climd encode --run demo && climd score --run demo && climd fit-dist --run demo
    climd schedule --run demo --epochs 100
    python examples/own_training_loop.py --run demo [--cache-dir D] [--dump ids.json]
"""
import argparse
import json

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stages.data import features
from stages.sampler import CurriculumSampler
from stages.store.artifacts import RunStore

p = argparse.ArgumentParser(description="Train a late-fusion model on a climd schedule.")
p.add_argument("--run", required=True)
p.add_argument("--cache-dir", default=None)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--dump", help="write the ids trained on, per epoch, to this JSON file")
args = p.parse_args()

# "Your own data": every sample of the run (train and test), in your order, with your ids.
feats = features.read(RunStore(args.cache_dir, args.run).load("encode").file(features.FILE))
views = [torch.as_tensor(feats.modalities[m], dtype=torch.float32) for m in sorted(feats.modalities)]
data = TensorDataset(torch.arange(len(feats.ids)), torch.as_tensor(feats.labels), *views)

# The schedule's epochs, as positions in *your* dataset (ids=), in climd's seeded batch order.
sampler = CurriculumSampler.from_run(args.run, cache_dir=args.cache_dir, seed=args.seed, ids=feats.ids)
loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler)

# Not a climd model: one linear head per modality, logits averaged (late fusion).
torch.manual_seed(args.seed)
heads = nn.ModuleList(nn.Linear(v.shape[1], feats.n_classes) for v in views)
optim = torch.optim.Adam(heads.parameters(), lr=args.lr)
seen = {}
for epoch in range(1, sampler.epochs_ + 1):
    sampler.set_epoch(epoch)
    seen[epoch] = []
    for idx, y, *xs in loader:
        loss = nn.functional.cross_entropy(sum(h(x) for h, x in zip(heads, xs)) / len(xs), y)
        optim.zero_grad()
        loss.backward()
        optim.step()
        seen[epoch] += feats.ids[idx.numpy()].tolist()
    print(f"epoch {epoch}: {len(seen[epoch])} samples, last loss {loss.item():.4f}")

test = feats.indices("test")
with torch.no_grad():
    pred = sum(h(v[test]) for h, v in zip(heads, views)).argmax(1).numpy()
print(f"test accuracy {np.mean(pred == feats.labels[test]):.3f}")
if args.dump:
    with open(args.dump, "w") as f:
        json.dump(seen, f)
