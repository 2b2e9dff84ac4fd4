"""What ``climd inspect`` shows: provenance plus a per-stage content summary, as plain tables
(title, columns, rows) that the CLI renders with rich or prints as JSON."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from stages.errors import MissingArtifactError
from stages.store.artifacts import META, Artifact, RunStore


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list]
    text: str = ""            # optional preformatted block shown under the table (bar charts)

    def as_dict(self) -> dict:
        return {"title": self.title, "columns": self.columns, "rows": self.rows,
                **({"text": self.text} if self.text else {})}


@dataclass
class View:
    artifact: Artifact
    tables: list[Table] = field(default_factory=list)
    fresh: str = "fresh"


CONTENT: dict[str, Callable[[Artifact], list[Table]]] = {}


def content(stage: str):
    def register(fn):
        CONTENT[stage] = fn
        return fn
    return register


def resolve(target: str, store: RunStore | None) -> tuple[Artifact, RunStore]:
    """An artifact from a path (the directory, or any file in it) or a name inside ``--run``."""
    path = Path(target)
    if not path.exists() and store is not None and store.path(target).exists():
        path = store.path(target)
    if not path.exists():
        raise MissingArtifactError(f"no artifact at {target}",
                                   fix="give an artifact directory/file, or a stage name with --run")
    path = path.resolve()
    directory = path if path.is_dir() else path.parent
    while not (directory / META).exists() and directory != directory.parent:
        directory = directory.parent
    if not (directory / META).exists():
        raise MissingArtifactError(f"{target} is not inside an artifact (no {META} above it)")
    # The run root is the first ancestor whose child is a stage directory.
    run_root = directory
    name_parts = []
    while run_root.parent != run_root:
        name_parts.insert(0, run_root.name)
        run_root = run_root.parent
        if (run_root / "encode" / META).exists() or len(name_parts) >= 3:
            break
    run_store = RunStore(run_root.parent, run_root.name)
    return run_store.read("/".join(name_parts)), run_store


def view(target: str, store: RunStore | None) -> View:
    if store is not None and "/" not in target and not Path(target).exists():
        listing = stage_listing(store, target)
        if listing is not None:
            return listing
    artifact, run_store = resolve(target, store)
    v = View(artifact, [provenance(artifact)])
    try:
        run_store.check_fresh(artifact)
        artifact.verify_outputs()
    except Exception as exc:  # shown, not raised: inspecting a broken artifact is the point
        v.fresh = f"NOT USABLE: {exc}"
    summarise = CONTENT.get(artifact.stage)
    if summarise:
        v.tables += summarise(artifact)
    return v


def provenance(a: Artifact) -> Table:
    m = a.meta
    rows = [["stage", a.stage], ["path", str(a.path)], ["key", a.key], ["command", m.get("command", "")],
            ["started", m.get("started")], ["duration_s", m.get("duration_s")], ["host", m.get("host")]]
    rows += [[f"param {k}", _short(v)] for k, v in m.get("params", {}).items()]
    for role, rec in m.get("inputs", {}).items():
        rows.append([f"input {role}", rec.get("artifact") or rec.get("path", "")])
        rows.append([f"  key/fingerprint", (rec.get("key") or rec.get("fingerprint", ""))[:16]])
    rows += [[f"output {k}", f"{v['bytes']} bytes sha256 {v['sha256'][:12]}"] for k, v in list(m.get("outputs", {}).items())[:8]]
    if len(m.get("outputs", {})) > 8:
        rows.append(["outputs", f"... {len(m['outputs'])} files in all"])
    rows += [[f"version {k}", v] for k, v in m.get("versions", {}).items()]
    return Table("provenance", ["field", "value"], rows)


def _short(value, limit: int = 100) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


@content("encode")
def _encode(a: Artifact) -> list[Table]:
    s = a.summary
    rows = [[name, m["kind"], " x ".join(map(str, m["shape"])), m.get("encoder", "")]
            for name, m in s.get("modalities", {}).items()]
    counts = [[name, n] for name, n in zip(s.get("class_names", []), s.get("train_class_counts", []))]
    return [Table(f"{s.get('dataset')}: {s.get('n')} samples, splits {s.get('split_counts')}",
                  ["modality", "kind", "shape", "encoder"], rows),
            Table("training class counts", ["class", "n"], counts)]


@content("score")
def _score(a: Artifact) -> list[Table]:
    s = a.summary
    rows = [["training samples", s["n_train"]], ["folds", f"{s['folds']} ({s['probe_accuracy_is']})"],
            ["measure / combine / easy end", f"{s['measure']} / {s['combine']} / r {s['easy']} = easy"],
            ["spearman(r, phi)", s["spearman_r_phi"]], ["spearman(r, mean psi)", s["spearman_r_psi"]],
            ["probe accuracy", s["probe_accuracy"]]]
    rows += [[f"{k} min / max / std", f"{v['min']:.4g} / {v['max']:.4g} / {v['std']:.3g}"] for k, v in s["stats"].items()]
    rows += [[f"mean r, class {k}", v] for k, v in s["mean_r_by_class"].items()]
    return [Table("difficulty scores", ["field", "value"], rows)]


@content("fit-dist")
def _fit_dist(a: Artifact) -> list[Table]:
    from stages.pipeline.fit_dist import load

    d = load(a)
    rows = [[r["rank"], r["class"], r["count"], f"{r['observed_share']:.4f}",
             "-" if r["power_law_share"] is None else f"{r['power_law_share']:.4f}"] for r in d["fit_by_rank"]]
    alpha = "undefined" if d["alpha_T"] is None else f"{d['alpha_T']:.4g}"
    title = f"gamma {d['gamma']}, n_min {d['n_min']}, alpha(T) = {alpha} ({d['status']})"
    t = Table(title, ["rank", "class", "count", "observed share", "power-law share at T"], rows)
    t.text = d["message"]
    return [t]


@content("schedule")
def _schedule(a: Artifact) -> list[Table]:
    from stages.pipeline.schedule import load

    d = load(a)
    names, epochs = d["classes"], d["per_epoch"]
    shown = _sample_epochs(len(epochs), 20)
    rows = []
    for i in shown:
        e = epochs[i]
        rows.append([e["t"], e["size"], *[e["counts"][c] for c in names],
                     "-" if e.get("alpha_t") is None else f"{e['alpha_t']:.3g}"])
    table = Table(f"class mix per epoch ({d['pacing']}, T = {d['epochs']}, order {d['order']})",
                  ["epoch", "size", *names, "alpha(t)"], rows)
    table.text = bar_chart(names, [epochs[i] for i in shown], sum(d["class_counts"]))
    return [table]


@content("train")
def _train(a: Artifact) -> list[Table]:
    s = a.summary
    keys = ("final_loss", "epochs", "finish_epochs", "optimizer_steps", "samples_seen", "selected_epoch",
            "selected_valid_score", "train_class_counts", "class_names", "seconds", "device", "threads",
            "replicas_in_program", "gpu_peak_mb")
    rows = [[k, s[k]] for k in keys if s.get(k) is not None]
    rows += [[k, _short(v)] for k, v in s.items() if k not in keys and v is not None]
    return [Table("training", ["field", "value"], rows)]


@content("evaluate")
def _evaluate(a: Artifact) -> list[Table]:
    s = a.summary
    rows = [[k, v] for k, v in s.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n"]
    return [Table(f"metrics on {s.get('split', '?')} ({s.get('n', '?')} samples)", ["metric", "value"], rows)]


def stage_listing(store: RunStore, stage: str) -> View | None:
    """``climd inspect STAGE --run R`` for a stage with many artifacts (train, evaluate, eval-test):
    one row per artifact under that folder, with its state and its headline numbers."""
    from stages.store.status import artifact_row

    tops = sorted(store.root.glob("eval-*")) if stage == "evaluate" else [store.root / stage]
    tops = [t for t in tops if t.is_dir() and not (t / META).exists()]
    if not tops:
        return None
    names = sorted(p.parent.relative_to(store.root).as_posix() for t in tops for p in t.glob("*/*/" + META))
    names += sorted(p.parent.relative_to(store.root).as_posix() for t in tops for p in t.glob("*/*/checkpoint.json")
                    if not (p.parent / META).exists())
    if not names:
        return None
    rows = []
    for name in names:
        row = artifact_row(store, name)
        try:
            s = store.read(name).summary
        except Exception:             # shown as its state: listing a broken artifact is the point
            s = {}
        headline = (f"final loss {s['final_loss']:.4g}, {s.get('optimizer_steps')} steps" if "final_loss" in s else
                    ", ".join(f"{k} {s[k]:.4g}" for k in ("accuracy", "f1_macro", "auc_macro") if isinstance(s.get(k), float)))
        rows.append([name, row["state"], headline])
    listing = View(Listing(store.root if stage == "evaluate" else store.root / stage, stage), [Table(f"{stage} artifacts of run {store.run}: {len(rows)}",
                                                             ["artifact", "state", "summary"], rows)])
    return listing


@dataclass
class Listing:
    """Stands in for an artifact when ``inspect`` lists a stage folder (path, stage, meta)."""
    path: Path
    stage: str
    meta: dict = field(default_factory=dict)
    listing: bool = True


def _sample_epochs(n: int, most: int) -> list[int]:
    if n <= most:
        return list(range(n))
    step = (n - 1) / (most - 1)
    return sorted({round(i * step) for i in range(most)})


def bar_chart(names: list[str], epochs: list[dict], n_total: int, width: int = 60) -> str:
    """One text bar per epoch: each class a run of its own symbol, length proportional to its count."""
    symbols = "#=+*o%@x~-"
    legend = "  ".join(f"'{symbols[i % len(symbols)]}' = class {n}" for i, n in enumerate(names))
    lines = [f"legend: {legend}   (full bar = {n_total} samples)"]
    for e in epochs:
        bar = "".join(symbols[i % len(symbols)] * round(e["counts"][n] / n_total * width)
                      for i, n in enumerate(names))
        lines.append(f"t={e['t']:>4} |{bar:<{width}}| {e['size']}")
    return "\n".join(lines)
