"""The batched training engine: every replica of a ``climd train`` call that shares a model
architecture and a step plan (seeds, learning rates, weight decays, losses, curricula whose epochs
have the same sizes, runs with the same feature shapes) trains as one vectorised program.

Each replica keeps its own initialisation, batch order and dropout masks (its own random streams,
:mod:`stages.engine.order`), learning rate, loss, epoch pools and budget; its parameters are one row of a
``[R, P]`` buffer, its inputs one slice of ``[R, B, ...]`` batches. Nothing mixes replicas, so a
replica trained beside nine others ends with the weights it ends with alone (tested). Models that are
not vectorised (:class:`stages.models.adapter.ModuleAdapter` around an ``nn.Module`` plug-in) run
the same loop with one replica per group.

Checkpoints follow a cadence (every ``epochs`` epochs and/or every ``seconds`` seconds, and on
SIGTERM/SIGINT at the end of the current epoch); they hold everything the next epoch depends on, so a
resumed run ends bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np

from stages.engine import checkpoint, dsrmc, losses, order
from stages.errors import InterruptedRun, StaleArtifactError
from stages.engine.support import (Cadence, Signals, batch_inputs, debug_sleep, diverged, empty_epoch, gpu_peak_mb,
                                   record_batches)
from stages.engine.grouping import group
from stages.engine.replicas import Replica, batch_size, finish, pool

log = logging.getLogger("climd")
ROW_ALIGN = 64


def train(replicas: list[Replica], device: str, cadence: Cadence, progress=None) -> tuple[list, list]:
    """Train every replica; returns (finished artifacts, errors of replicas that could not train)."""
    done, errors = [], []
    with Signals() as signals:
        for members in group(replicas):
            try:
                group_ = Group(members, device, cadence, signals, progress)
                done += group_.run()
                errors += group_.failures         # replicas that diverged: named, not saved
            except StaleArtifactError as exc:      # a damaged checkpoint: the other groups still train
                errors.append(exc)
    return done, errors


class Group:
    def __init__(self, members: list[Replica], device: str, cadence: Cadence, signals: Signals, progress):
        import torch

        from stages import models
        from stages.engine.optim import FlatAdam

        self.members, self.device, self.cadence, self.signals = members, device, cadence, signals
        self.progress = progress
        first = members[0]
        self.unit0, self.opts0 = first.unit, first.opts
        spec = models.InputSpec(first.unit.shapes, first.unit.kinds)
        self.model = models.build(first.opts.model, spec, len(first.unit.class_names), first.opts.model_options)
        self.used = self.model.inputs_used()
        R, P = len(members), self.model.size
        self.R, self.P = R, P
        self._stack_data(torch)
        # Rows padded to a multiple of 64 floats: torch's fused Adam works in 16-float units and only a
        # tensor's last numel % 16 elements take its scalar path, so with padded rows every parameter
        # is updated by the same vector code whatever the group size or thread count (bit-identical).
        width = -(-P // ROW_ALIGN) * ROW_ALIGN
        self.flat = torch.zeros(R, width, dtype=torch.float32, device=device)
        self.grads = torch.zeros(R, width, dtype=torch.float32, device=device)
        self.adam = FlatAdam(self.flat, self.grads, [m.opts.lr for m in members],
                             [m.opts.weight_decay for m in members])
        self.rng = [order.streams(m.seed) for m in members]
        self.history: list[list[dict]] = [[] for _ in members]
        self.best = [None] * R                      # (score, epoch) per replica
        self.diverged: dict[int, int] = {}          # replica -> first epoch with a non-finite loss
        self.failures: list = []
        self.best_flat = None
        self._init_or_resume(torch)
        self.params = self.model.bind(self.flat, self.grads)
        self.loss_groups = []
        by_loss: dict = {}
        for r, m in enumerate(members):
            by_loss.setdefault(m.opts.loss_options(), []).append(r)
        for lopts, rows in by_loss.items():
            counts = np.stack([members[r].unit.full_counts for r in rows])
            fn = losses.make_batched(lopts, counts, first.total_epochs, device)
            idx = None if len(rows) == R else torch.as_tensor(rows, device=device)
            self.loss_groups.append((idx, fn, lopts == losses.LossOptions()))
        self._noise_setup()

    # -- setup ------------------------------------------------------------------------------------
    def _stack_data(self, torch) -> None:
        units, index = [], {}
        for m in self.members:
            if id(m.unit) not in index:
                index[id(m.unit)] = len(units)
                units.append(m.unit)
        self.n_max = max(u.n for u in units)
        widths = {k: int(np.prod(self.unit0.shapes[k])) for k in self.used}
        ones = 1 if self.model.ones_column else 0
        self.columns, start = {}, 0
        for k in self.used:
            self.columns[k] = (start, start + widths[k] + ones)
            start += widths[k] + 1                      # every input is followed by a column of ones
        X = np.ones((len(units) * self.n_max, start), dtype=np.float32)
        Y = np.zeros(len(units) * self.n_max, dtype=np.int64)
        for u, unit in enumerate(units):
            rows = slice(u * self.n_max, u * self.n_max + unit.n)
            for k in self.used:
                a = self.columns[k][0]
                X[rows, a:a + widths[k]] = unit.inputs[k].reshape(unit.n, -1)
            Y[rows] = unit.y
        self.X = torch.as_tensor(X, device=self.device)
        self.Y = torch.as_tensor(Y, device=self.device)
        self.offset = np.array([index[id(m.unit)] * self.n_max for m in self.members], dtype=np.int64)

    def _init_or_resume(self, torch) -> None:
        self.start = self.members[0].start_epoch
        rows = []
        for r, m in enumerate(self.members):
            if self.start == 1:
                rows.append(torch.as_tensor(self.model.initial(self.rng[r]["init"])))
                continue
            tensors, state = checkpoint.load(m.path, m.ticket.key)
            if tensors["params"].numel() != self.P:
                raise StaleArtifactError(f"{m.path}: checkpoint holds {tensors['params'].numel()} parameters, "
                                         f"the model has {self.P}", fix="delete the checkpoint files")
            rows.append(tensors["params"].reshape(-1))
            self.adam.exp_avg[r, :self.P] = tensors["exp_avg"].to(self.device)
            self.adam.exp_avg_sq[r, :self.P] = tensors["exp_avg_sq"].to(self.device)
            for name in ("order", "noise"):
                order.set_state(self.rng[r][name], state["rng"][name])
            self.history[r] = state["history"]
            if state.get("best_epoch") is not None:
                self._best_buffer(torch)[r, :self.P] = tensors["best"].to(self.device)
                self.best[r] = (state["best_score"], state["best_epoch"])
            self.model.set_extra_state(r, tensors, state)
            self.adam.set_steps(state["steps"])
        self.flat[:, :self.P] = torch.stack(rows).to(self.device)
        if self.start == 1:
            self.model.seed_extra(self.rng)

    def _best_buffer(self, torch):
        if self.best_flat is None:
            self.best_flat = torch.zeros_like(self.flat)
        return self.best_flat

    def _noise_setup(self) -> None:
        import torch

        sites = self.model.dropouts
        self.sites = [(s.name, sum(t.width for t in sites[:i]), s.width) for i, s in enumerate(sites)]
        self.width = sum(s.width for s in sites)
        p_cols = np.concatenate([np.full(s.width, s.p) for s in sites]) if sites else np.zeros(0)
        # keep a unit when its 32 random bits >= p * 2^32 (p < 1, so the threshold fits in 32 bits)
        self.threshold = np.minimum(np.ceil(p_cols * 2.0 ** 32), 2.0 ** 32 - 1).astype(np.uint32)
        self.scale = torch.as_tensor(1.0 / (1.0 - p_cols), dtype=torch.float32, device=self.device)

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> list:
        """Train the group. It uses min(threads, R) threads: one matrix product per thread, so each
        replica's arithmetic is what it is alone (a lone product split over threads sums in another
        order), and small groups do not pay for idle threads."""
        import torch

        from stages.runtime import threads

        before = torch.get_num_threads()
        torch.set_num_threads(max(1, min(threads.configured(), self.R)))
        try:
            return self._run(torch)
        finally:
            torch.set_num_threads(before)

    def _run(self, torch) -> list:
        first = self.members[0]
        total = first.total_epochs
        t0 = last_ckpt = time.monotonic()
        label = f"train {first.variant}" + (f" x{self.R}" if self.R > 1 else f" seed {first.seed}")
        advance = self.progress(label, total - self.start + 1) if self.progress else None
        for epoch in range(self.start, total + 1):
            records = self._epoch(epoch, torch)
            for r, rec in enumerate(records):
                self.history[r].append(rec)
                if r not in self.diverged and rec["steps"] and not math.isfinite(rec["loss"]):
                    self.diverged[r] = epoch
            debug_sleep()
            if self.opts0.select == "best-valid":
                self._select(epoch, torch)
            if advance:
                advance(1, loss=f"{records[0]['loss']:.4f}")
            if epoch < total and (self.signals.stop or self.cadence.due(epoch, last_ckpt)):
                self._checkpoint(epoch)
                last_ckpt = time.monotonic()
            if self.signals.stop and epoch < total:
                raise InterruptedRun(f"interrupted: {self.R} replica(s) saved at epoch {epoch}",
                                     fix="rerun the same command to resume")
        return self._finish(time.monotonic() - t0)

    def _epoch(self, epoch: int, torch) -> list[dict]:
        members, R = self.members, self.R
        batching = self.model.batching
        pools = [pool(m, epoch) for m in members]
        if not len(pools[0]):                  # the epoch's subset rounds to no sample (tiny data, large T)
            return empty_epoch(members, epoch)
        steps_full = order.steps_per_full_epoch(members[0].unit.n, batch_size(members[0], members[0].unit.n))
        plans = []
        scored = members[0].opts.curriculum == dsrmc.NAME and epoch <= members[0].epochs
        for r, m in enumerate(members):
            bs = batch_size(m, len(pools[r]))
            gen = self.rng[r]["order"]
            if scored:                    # DSRMC: random batches, ordered below by the snapshot's loss
                plans.append(dsrmc.candidates(gen, pools[r], m.unit.y, bs, batching))
            elif batching == "class-balanced":
                n = steps_full if m.opts.budget == "steps" else math.ceil(len(pools[r]) / bs)
                plans.append(order.balanced_batches(gen, pools[r], m.unit.y, bs, n))
            else:
                plans.append(order.epoch_batches(gen, pools[r], bs, steps_full if m.opts.budget == "steps" else None))
        names, notes = members[0].unit.class_names, [{} for _ in members]
        if scored:
            plans, notes, pools = dsrmc.order_epoch(self, plans, epoch, torch)
        pool_counts = np.stack([np.bincount(m.unit.y[pools[r]], minlength=len(names)) for r, m in enumerate(members)])
        for idx, fn, _ in self.loss_groups:               # losses whose prior is the epoch's class mix
            if getattr(fn, "needs_epoch_counts", False):
                fn.set_epoch_counts(pool_counts if idx is None else pool_counts[idx.cpu().numpy()])
        record_batches(epoch, members, plans, notes)
        sizes = [len(b) for b in plans[0]]
        rows = np.stack([np.concatenate(p) for p in plans]) + self.offset[:, None]
        flat_rows = torch.as_tensor(rows.reshape(-1), device=self.device)
        n_rows = rows.shape[1]
        # the whole epoch's batches gathered once; each step takes a slice (no per-step gathers)
        x_epoch = self.X.index_select(0, flat_rows).view(R, n_rows, -1)
        y_epoch = self.Y.index_select(0, flat_rows).view(R, n_rows)
        masks = self._masks(n_rows, torch)
        acc = torch.zeros(R, dtype=torch.float64, device=self.device)
        aux_acc: dict = {}
        self.model.train_mode(True)
        pos = 0
        for size in sizes:
            x = batch_inputs(self, x_epoch[:, pos:pos + size], size)
            y = y_epoch[:, pos:pos + size]
            noise = None
            if masks is not None:
                block = masks[:, pos:pos + size]
                noise = {name: block[:, :, a:a + w] for name, a, w in self.sites}
            total_loss, aux = self._step(x, y, noise, epoch, torch)
            acc += total_loss.detach().double() * size
            for k, v in aux.items():
                aux_acc[k] = aux_acc.get(k, 0) + v.detach().double() * size
            pos += size
        seen = int(sum(sizes))
        losses = (acc / seen).tolist()
        aux_means = {k: (v / seen).tolist() for k, v in aux_acc.items()}
        records = []
        phase = ("curriculum" if scored or (members[0].pools is not None and epoch <= members[0].epochs) else
                 "finish" if epoch > members[0].epochs else "full")
        for r, m in enumerate(members):
            counts = pool_counts[r]
            rec = {"subset_size": int(len(pools[r])), "steps": len(sizes), "samples_seen": seen, "loss": losses[r]}
            rec.update({f"aux_{k}": v[r] for k, v in aux_means.items()})
            rec.update({f"n_{c}": int(n) for c, n in zip(names, counts)})
            rec.update({k: v for k, v in notes[r].items() if k.startswith("dsrmc_")}, epoch=epoch, phase=phase)
            records.append(rec)
        return records

    def _step(self, x: dict, y, noise, epoch: int, torch):
        if self.model.manual_backward:
            with torch.no_grad():
                logits, cache = self.model.forward_train(self.params, x, noise)
            per, dlogits = self._loss_and_grad(logits, y, epoch, torch)
            with torch.no_grad():
                self.model.backward(self.params, cache, dlogits, self.model.grad_views)
            aux = {}
        else:
            self.grads.zero_()
            out = self.model.forward(self.params, x, noise, y)
            per = self.loss(out.logits, y, epoch, torch)
            if out.aux_loss is not None:
                per = per + out.aux_loss
            per.sum().backward()
            aux = out.aux
        with torch.no_grad():
            self.adam.step(self.model.lr_scale(epoch, [m.opts for m in self.members]))
        return per, aux

    def _loss_and_grad(self, logits, y, epoch: int, torch):
        """Each replica's loss [R] and d(sum of losses)/d logits, loss group by loss group: plain
        cross-entropy in closed form, any other loss by autograd on its own slice. The choice is made
        per group, so a replica's arithmetic does not depend on the losses of its neighbours."""
        if len(self.loss_groups) == 1:
            return self._group_loss_and_grad(self.loss_groups[0], logits, y, epoch, torch)
        per = torch.empty(self.R, dtype=logits.dtype, device=logits.device)
        dlogits = torch.empty_like(logits)
        for group in self.loss_groups:
            idx = group[0]
            p, d = self._group_loss_and_grad(group, logits.index_select(0, idx), y.index_select(0, idx), epoch, torch)
            per[idx], dlogits[idx] = p, d
        return per, dlogits

    def _group_loss_and_grad(self, group, logits, y, epoch: int, torch):
        _, fn, plain_ce = group
        if plain_ce:
            with torch.no_grad():
                return losses.ce_value_and_grad(logits, y)
        leaf = logits.detach().requires_grad_(True)
        per = fn(leaf, y, epoch)
        (dlogits,) = torch.autograd.grad(per.sum(), leaf)
        return per.detach(), dlogits

    def loss(self, logits, y, epoch: int, torch):
        """Each replica's training loss [R] of a batch, by its own loss group."""
        if len(self.loss_groups) == 1:
            return self.loss_groups[0][1](logits, y, epoch)
        per = torch.empty(self.R, dtype=logits.dtype, device=logits.device)
        for idx, fn, _ in self.loss_groups:
            per = per.index_put((idx,), fn(logits.index_select(0, idx), y.index_select(0, idx), epoch))
        return per

    def _masks(self, n_rows: int, torch):
        """Scaled dropout keep-masks of this epoch [R, rows, width]: each replica's bits from its own
        noise stream, kept when bits >= p * 2^32, scaled by 1 / (1 - p)."""
        if not self.width:
            return None
        keep = np.empty((self.R, n_rows, self.width), dtype=bool)
        n = n_rows * self.width
        for r in range(self.R):
            bits = self.rng[r]["noise"].bit_generator.random_raw((n + 1) // 2).view(np.uint32)[:n]
            keep[r] = bits.reshape(n_rows, self.width) >= self.threshold
        return torch.as_tensor(keep, device=self.device) * self.scale

    # -- selection, checkpoints, the end ------------------------------------------------------------
    def _select(self, epoch: int, torch) -> None:
        from stages.core import metrics

        self.model.train_mode(False)
        best = self._best_buffer(torch)
        metric = self.opts0.select_metric
        threads = torch.get_num_threads()
        torch.set_num_threads(1)           # one replica at a time: its own arithmetic, as alone
        try:
            self._select_rows(epoch, torch, metrics, best, metric)
        finally:                           # restored even when a metric raises
            torch.set_num_threads(threads)

    def _select_rows(self, epoch: int, torch, metrics, best, metric: str) -> None:
        with torch.no_grad():
            for r, m in enumerate(self.members):
                if r in self.diverged:
                    continue                       # it fails at the end; its scores mean nothing
                xv, yv = m.unit.valid
                inputs = {k: torch.as_tensor(xv[k], device=self.device).unsqueeze(0) for k in self.used}
                logits = self.model.forward(self.model.row(self.params, r), inputs, None).logits[0]
                proba = torch.softmax(logits.double(), dim=1).cpu().numpy()
                value = metrics.compute(yv, proba, m.unit.class_names)[metric]
                value = float("-inf") if value is None else float(value)
                self.history[r][-1][f"valid_{metric}"] = value
                if self.best[r] is None or value > self.best[r][0]:
                    self.best[r] = (value, epoch)
                    best[r].copy_(self.flat[r])

    def _checkpoint(self, epoch: int) -> None:
        for r, m in enumerate(self.members):
            P = self.P
            tensors = {"params": self.flat[r, :P], "exp_avg": self.adam.exp_avg[r, :P],
                       "exp_avg_sq": self.adam.exp_avg_sq[r, :P]}
            state = {"steps": self.adam.step_count, "history": self.history[r],
                     "rng": {k: order.get_state(self.rng[r][k]) for k in ("order", "noise")},
                     "best_epoch": None, "best_score": None}
            if self.best[r] is not None:
                tensors["best"] = self.best_flat[r, :P]
                state["best_score"], state["best_epoch"] = self.best[r]
            self.model.get_extra_state(r, tensors, state)
            checkpoint.save(m.path, m.ticket.key, epoch, tensors, state)

    def _finish(self, seconds: float) -> list:
        from stages.runtime import threads

        out = []
        gpu = gpu_peak_mb(self.device)
        for r, m in enumerate(self.members):
            weights = self.best_flat[r] if self.best[r] is not None else self.flat[r]
            values = weights[:self.P].detach().cpu().numpy()
            if r in self.diverged or not np.isfinite(values).all():
                self.failures.append(diverged(m, self.diverged.get(r), self.history[r]))
                continue
            named = self.model.named_weights(values)
            extra = {"device": self.device, "gpu_peak_mb": gpu, "replicas_in_program": self.R,
                     "threads": threads.configured(),
                     "selected_epoch": self.best[r][1] if self.best[r] else len(self.history[r]),
                     "selected_valid_score": self.best[r][0] if self.best[r] else None}
            out.append(finish(m, self.model, named, self.history[r], seconds, extra))
        return out

