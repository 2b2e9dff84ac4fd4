"""Which replicas of a call train together as one vectorised program (:mod:`stages.engine.loop`)."""
from __future__ import annotations

import json

from stages.engine import dsrmc
from stages.engine.replicas import Replica, batch_size, epoch_steps

MAX_GROUP = 64


def signature(rep: Replica, model_cls) -> tuple:
    """Replicas with equal signatures train in one program: same model and inputs, same number and
    sizes of steps in every epoch, same selection, same start epoch."""
    o = rep.opts
    plan = tuple(tuple(epoch_steps(rep, e, model_cls.batching)) for e in range(rep.start_epoch, rep.total_epochs + 1))
    shared = (o.model, json.dumps(o.model_options, sort_keys=True), tuple(sorted(rep.unit.shapes.items())),
              len(rep.unit.class_names), plan, o.select, o.select_metric, rep.start_epoch, o.device)
    shared += dsrmc.signature(rep, batch_size(rep, rep.unit.n)) if o.curriculum == dsrmc.NAME else ()
    return shared if model_cls.vectorised else shared + (rep.name,)


def group(replicas: list[Replica]) -> list[list[Replica]]:
    from stages import models

    registry = models.registry()
    by_sig: dict[tuple, list[Replica]] = {}
    for rep in replicas:
        by_sig.setdefault(signature(rep, registry[rep.opts.model]), []).append(rep)
    out = []
    for members in by_sig.values():
        members.sort(key=lambda r: (r.opts.lr, r.opts.weight_decay, r.store.run, r.variant, r.seed))
        out += [members[i:i + MAX_GROUP] for i in range(0, len(members), MAX_GROUP)]
    return out
