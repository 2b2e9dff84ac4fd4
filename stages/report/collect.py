"""``climd report``: every evaluated (variant, seed) of one or more runs -> mean ± std per variant,
the training budget of each variant, and paired comparisons against reference variants.

A *replicate* is (run, seed). Evaluation artifacts are read through the store's verified load: every
output is re-hashed and every ancestor checked for freshness, so an edited ``metrics.json`` is refused
(exit 5). A train folder without ``meta.json`` is an *incomplete replicate*: the report stops (exit 5)
naming each one, unless ``allow_incomplete``. Paired statistics are in ``stats``; the Markdown in
``report_md``; per-replicate validation choices in ``choose``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from stages.report import decision
from stages.report import markdown as report_md
from stages.report import stats
from stages.store.atomic import atomic_dir, atomic_write_json
from stages.store import layout
from stages.errors import ClimdError, MissingArtifactError, StaleArtifactError, UsageError
from stages.report.markdown import METRICS, PRIMARY, SHORT, metric_columns, recall_columns  # noqa: F401 (re-exported)
from stages.store.artifacts import META, RunStore
from stages.store.artifacts import expand_runs as store_runs
from stages.report.replicates import find_incomplete, find_missing, replicate_dirs



@dataclass
class Collected:
    rows: pd.DataFrame
    incomplete: list[dict] = field(default_factory=list)   # {run, variant, seed, path, stage, fix}
    unevaluated: list[dict] = field(default_factory=list)  # complete trainings with no evaluation on the split
    encode: dict[str, dict] = field(default_factory=dict)  # run -> encode summary
    missing: list[dict] = field(default_factory=list)      # {run, variant, seed}: neither trained nor evaluated


def expand_runs(cache_dir: Path, patterns: list[str]) -> list[RunStore]:
    """Run names, with shell-style wildcards matched against the cache directory."""
    return [store for pattern in patterns for store in store_runs(cache_dir, pattern)]


def _guard(path, what: str, action, fix: str = "rebuild it with its stage's command and --force"):
    """Run ``action``; a malformed artifact (wrong JSON shape, missing fields) becomes one named error."""
    try:
        return action()
    except ClimdError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise StaleArtifactError(f"{what} {path} is malformed ({type(exc).__name__}: {exc})", fix=fix) from None


def collect(stores: list[RunStore], split: str = "test", allow_incomplete: bool = False, relevant=None,
            require: bool = True) -> Collected:
    """Every evaluated (variant, seed) on ``split``, read through verified loads.

    ``relevant(variant) -> bool`` limits which incomplete replicates matter (default: all)."""
    incomplete = find_incomplete(stores, split, relevant)
    if incomplete and not allow_incomplete:
        lines = "; ".join(f"{i['variant']} seed {i['seed']} of run {i['run']} ({i['stage']}: {i['path']} "
                          + (f"is being written now by {i['live']})" if i.get("live") else f"has no {META})")
                          for i in incomplete)
        raise StaleArtifactError(f"{len(incomplete)} incomplete replicate(s): {lines}",
                                 fix=" | ".join(dict.fromkeys(i["fix"] for i in incomplete)) +
                                 " | or pass --allow-incomplete to report without them")
    skip = {(i["run"], i["variant"], i["seed"]) for i in incomplete}
    rows, encode, unevaluated = [], {}, []
    for store in stores:
        evaluated = set()
        for variant, seed, sdir in replicate_dirs(store, layout.eval_dir(split)):
            if (store.run, variant, seed) in skip:
                continue
            evaluated.add((variant, seed))
            rows.append(_row(store, layout.eval_name(split, variant, seed), variant, seed, split, encode))
        for variant, seed, sdir in replicate_dirs(store, layout.TRAIN):
            if (sdir / META).is_file() and (variant, seed) not in evaluated and (relevant is None or relevant(variant)):
                unevaluated.append({"run": store.run, "variant": variant, "seed": seed,
                                    "fix": f"climd evaluate --run {store.run} --split {split}"})
    if not rows and require:
        raise MissingArtifactError(f"no evaluated models ({split}) in run(s) {[s.run for s in stores]}",
                                   fix=f"run `climd evaluate --run RUN --split {split}` first")
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["run", "variant", "seed", *METRICS])
    return Collected(frame, incomplete, unevaluated, encode, find_missing(stores, split, relevant))


def _row(store: RunStore, name: str, variant: str, seed: int, split: str, encode: dict) -> dict:
    path = store.path(name)
    rebuild = f"rerun `climd evaluate --run {store.run} --split {split} --force`"
    artifact = _guard(f"{path} (or an artifact it was built from)", "artifact", lambda: store.load(name),
                      rebuild)                                                   # re-hash + freshness
    outputs = artifact.meta.get("outputs")
    if not isinstance(outputs, dict) or "metrics.json" not in outputs:
        raise StaleArtifactError(f"artifact {path} is corrupt: its {META} does not record metrics.json",
                                 fix=rebuild)
    m = _guard(path / "metrics.json", "evaluation file",
               lambda: _metrics(json.loads((path / "metrics.json").read_text())), rebuild)
    train_name = _guard(path / META, "artifact metadata", lambda: artifact.meta["inputs"]["train"]["artifact"],
                        rebuild)
    trained = _guard(store.path(train_name) / META, "artifact metadata", lambda: dict(store.read(train_name).summary))
    if store.run not in encode:
        enc = _guard(store.path("encode") / META, "artifact metadata", lambda: store.read("encode"))
        encode[store.run] = {**enc.summary, "split_id": split_identity(enc.meta)}
    counts = encode[store.run].get("split_counts", {}) if isinstance(encode[store.run], dict) else {}
    return {"run": store.run, "variant": variant, "seed": seed, **{k: m[k] for k in METRICS},
            **{f"recall_{c}": v for c, v in m["recall"].items()},
            "samples_seen": trained.get("samples_seen"), "optimizer_steps": trained.get("optimizer_steps"),
            "n_train": counts.get("train", np.nan), "n_test": counts.get(split, np.nan),
            "split_id": encode[store.run].get("split_id") if isinstance(encode[store.run], dict) else None}


# what decides a run's split: its data, split file, test size, seed, carve-out and resplit
SPLIT_PARAMS = ("split_file", "test_size", "split_seed", "val_fraction", "resplit", "task")


def split_identity(meta: dict) -> str | None:
    """What makes two runs' splits the same: the data and split files they read (fingerprints) and
    the split options. None when the encode does not record them (then no run is said to share)."""
    import hashlib

    data = (meta.get("params") or {}).get("data")
    if not isinstance(data, dict):
        return None
    inputs = {k: v.get("fingerprint") for k, v in (meta.get("inputs") or {}).items() if isinstance(v, dict)}
    text = json.dumps({"inputs": inputs, **{k: data.get(k) for k in SPLIT_PARAMS}}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _metrics(m: dict) -> dict:
    for k in METRICS:
        if m[k] is not None and not isinstance(m[k], (int, float)):
            raise ValueError(f"{k} is {m[k]!r}, not a number")
    if not isinstance(m["recall"], dict):
        raise ValueError("recall is not a mapping")
    return {**{k: (np.nan if m[k] is None else float(m[k])) for k in METRICS}, "recall": m["recall"]}


def positive_class(encode: dict[str, dict], requested: str | None = None) -> dict | None:
    """For two classes: which one is 'positive' (sensitivity = its recall, specificity = the other's).
    Default: the minority class of the training split (over all runs; a tie picks the second
    class). ``train_counts``: per run (the mean when the runs differ), never summed over them."""
    summaries = [s for s in encode.values() if isinstance(s, dict) and s.get("class_names")]
    names = summaries[0]["class_names"] if summaries else []
    if len(names) != 2:
        if requested is not None:
            raise UsageError(f"--positive-class applies to two-class data; these runs have classes {names}")
        return None
    if requested is not None and requested not in names:
        raise UsageError(f"unknown --positive-class {requested!r}", fix=f"choose from {', '.join(names)}")
    known = [s["train_class_counts"] for s in summaries if s["class_names"] == names
             and len(s.get("train_class_counts") or []) == 2]
    counts = np.sum(known, axis=0) if known else np.array([0, 0])
    pos = names.index(requested) if requested is not None else (0 if counts[0] < counts[1] else 1)
    # the runs are replicates (resplits) of one data set: per run, not summed over the replicates
    mean = np.mean(known, axis=0) if known else np.array([0, 0])
    return {"positive": names[pos], "negative": names[1 - pos], "source": "--positive-class" if requested else "minority",
            "train_counts": {n: (int(c) if float(c).is_integer() else round(float(c), 1)) for n, c in zip(names, mean)},
            "runs": len(known)}


def add_sensitivity(rows: pd.DataFrame, positive: dict | None) -> pd.DataFrame:
    if positive is None or f"recall_{positive['positive']}" not in rows:
        return rows
    return rows.assign(sensitivity=rows[f"recall_{positive['positive']}"],
                       specificity=rows[f"recall_{positive['negative']}"])


def summarise(rows: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    cols = metric_columns(rows) + ["samples_seen", "optimizer_steps"] + recall_columns(rows)
    grouped = rows.groupby("variant", sort=False)
    table = pd.DataFrame({"n": grouped.size()})
    for col in cols:
        values = rows[col].astype(float).groupby(rows["variant"], sort=False)
        table[f"{col}_mean"] = values.mean()
        table[f"{col}_std"] = values.std(ddof=1)
    table = table.reset_index()
    if order:
        table = table.set_index("variant").loc[[v for v in order if v in set(table.variant)]].reset_index()
    return table


def _shared_splits(g: pd.DataFrame, common) -> str:
    """Runs among the pairs whose splits are the same (the corrected t assumes every run a resplit)."""
    if "split_id" not in g:
        return ""
    ids = g.loc[common, "split_id"].groupby(level="run").first().dropna()
    groups = [sorted(runs) for _, runs in ids.groupby(ids).groups.items() if len(runs) > 1]
    return "; ".join(" = ".join(map(str, runs)) for runs in groups)


def paired(rows: pd.DataFrame, reference: str, variants: list[str] | None = None,
           columns: list[str] | None = None, delta: float | None = None,
           decision_metric: str = PRIMARY) -> pd.DataFrame:
    """Every variant (or ``variants``) against ``reference`` over the replicates both have.

    Replicates from more than one run are resplits of the data: the (run, seed) differences are
    averaged per run (seeds of one split share it), then Nadeau–Bengio corrected t on the J run means
    with n_test/n_train averaged over the runs. All pairs from one run (seeds on one split): the
    ordinary paired t-test over the seeds. Holm adjusts the t p-values across the rows, per metric.
    With ``delta`` (metric scale), ``decision_metric`` also gets the decision of ``decision.decide``,
    TOST (Holm over the rows) and the split/seed variance decomposition."""
    if reference not in set(rows.variant):
        raise UsageError(f"reference variant {reference!r} has no evaluations",
                         fix=f"choose from {sorted(set(rows.variant))}")
    columns = columns or metric_columns(rows)
    out = []
    for variant, g, ref, common in _against(rows, reference, variants):
        dropped = [f"{r}/seed{s} (only {variant})" for r, s in sorted(g.index.difference(ref.index))] + \
                  [f"{r}/seed{s} (only {reference})" for r, s in sorted(ref.index.difference(g.index))]
        ratio = None
        if len({r for r, _ in common}) > 1:
            sizes = g.loc[common, ["n_test", "n_train"]].astype(float) if "n_train" in g else None
            ratio = float((sizes.n_test / sizes.n_train).mean()) if sizes is not None else np.nan
            ratio = None if np.isnan(ratio) else ratio
        shared = _shared_splits(g, common) if ratio is not None else ""
        rec = {"variant": variant, "reference": reference, "n_pairs": len(common), "shared_split": shared,
               "test": stats.PAIRED_T if ratio is None else stats.NADEAU_BENGIO,
               "n_test_over_n_train": np.nan if ratio is None else ratio,
               "runs": len({r for r, _ in common}), "n_dropped": len(dropped), "dropped": "; ".join(dropped)}
        for m in columns:
            d = _per_replicate(_pairs(g, ref, common, m), ratio)
            t, w = stats.t_test(d, ratio), stats.wilcoxon(d)
            rec.update({f"n_{m}": t["n"], f"d_{m}": t["mean"], f"ci_low_{m}": t["ci_low"], f"ci_high_{m}": t["ci_high"],
                        f"se_{m}": t["se"], f"t_{m}": t["t"], f"p_t_{m}": t["p"], f"p_wilcoxon_{m}": w["p"],
                        f"wilcoxon_min_p_{m}": w["min_p"]})
        if delta is not None and decision_metric in columns:
            rec.update(_decision(_pairs(g, ref, common, decision_metric), ratio, delta, decision_metric))
        out.append(rec)
    table = pd.DataFrame(out, columns=list(out[0]) if out else ["variant", "reference", "n_pairs"])
    for m in columns:
        if f"p_t_{m}" in table:
            table[f"p_holm_{m}"] = stats.holm(table[f"p_t_{m}"].to_numpy(dtype=float))
    if "p_tost" in table:
        table["p_tost_holm"] = stats.holm(table["p_tost"].to_numpy(dtype=float))
    return table


def _pairs(g: pd.DataFrame, ref: pd.DataFrame, common, m: str) -> pd.Series:
    """Per (run, seed) differences variant − reference of metric ``m`` (NaN dropped)."""
    return (g.loc[common, m].astype(float) - ref.loc[common, m].astype(float)).dropna()


def _per_replicate(pairs: pd.Series, ratio) -> np.ndarray:
    """The differences the tests use: per seed on one split; averaged over the seeds of each run (the
    replicate) when the pairs span several runs."""
    return pairs.to_numpy() if ratio is None else pairs.groupby(level="run", sort=True).mean().to_numpy()


def _decision(pairs: pd.Series, ratio, delta: float, metric: str) -> dict:
    d = _per_replicate(pairs, ratio)
    b, t = decision.decide(d, delta, ratio or 0.0), decision.tost(d, delta, ratio or 0.0)
    rec = {"decision_metric": metric, **{k: b[k] for k in ("delta", "p_worse", "p_equivalent", "p_better",
                                                           "decision", "gain_ruled_out", "loss_ruled_out")},
           "posterior_df": b["df"], "posterior_scale": b["scale"], **t}
    if ratio is not None:
        two = decision.two_level(pairs.to_numpy(), pairs.index.get_level_values("run").to_numpy(), ratio)
        rec.update({"seeds_per_replicate": two["K"], **{k: two[k] for k in (
            "sigma2_split", "sigma2_seed", "se_two_level", "df_two_level", "ci_low_two_level", "ci_high_two_level")}})
    return rec


def _against(rows: pd.DataFrame, reference: str, variants: list[str] | None):
    """(variant, its rows, the reference's rows, the (run, seed) replicates both have) per variant
    compared with ``reference``: what :func:`paired` and :func:`differences` both pair."""
    ref = rows[rows.variant == reference].set_index(["run", "seed"])
    present = set(rows.variant)
    for variant in [v for v in (variants or list(dict.fromkeys(rows.variant))) if v != reference and v in present]:
        g = rows[rows.variant == variant].set_index(["run", "seed"])
        yield variant, g, ref, g.index.intersection(ref.index).sort_values()


def differences(rows: pd.DataFrame, reference: str, variants: list[str] | None = None,
                metric: str = PRIMARY) -> pd.DataFrame:
    """One row per replicate and comparison (the J differences the decision used), so the posterior
    can be recomputed with ``scipy.stats.t``: replicate, variant, reference, metric, diff (metric
    scale), seeds (how many seeds were averaged), n_train, n_test."""
    out = []
    for variant, g, ref, common in _against(rows, reference, variants):
        pairs = _pairs(g, ref, common, metric)
        sizes = g.loc[pairs.index].reindex(columns=["n_train", "n_test"]).astype(float)
        if len({r for r, _ in pairs.index}) > 1:
            groups = pairs.groupby(level="run", sort=True)
            for (run, d), (_, k), (_, size) in zip(groups.mean().items(), groups.size().items(),
                                                    sizes.groupby(level="run", sort=True).mean().iterrows()):
                out.append({"replicate": run, "variant": variant, "reference": reference, "metric": metric,
                            "diff": d, "seeds": int(k), "n_train": size.n_train, "n_test": size.n_test})
        else:
            for (run, seed), d in pairs.items():
                out.append({"replicate": f"{run}/seed{seed}", "variant": variant, "reference": reference,
                            "metric": metric, "diff": d, "seeds": 1, "n_train": sizes.loc[(run, seed), "n_train"],
                            "n_test": sizes.loc[(run, seed), "n_test"]})
    return pd.DataFrame(out, columns=["replicate", "variant", "reference", "metric", "diff", "seeds", "n_train", "n_test"])


def write(out: Path, rows: pd.DataFrame, table: pd.DataFrame, comparisons: list[pd.DataFrame], title: str,
          command: str, split: str, extra: str = "", info: dict | None = None,
          chosen: pd.DataFrame | None = None, diffs: pd.DataFrame | None = None) -> Path:
    """report.md, report.csv, runs.csv, paired_vs_<ref>.csv, differences.csv, chosen.csv and report.json,
    atomically."""
    info = info or {}
    out = Path(out)
    with atomic_dir(out) as tmp:
        if diffs is not None:
            diffs.to_csv(tmp / "differences.csv", index=False, float_format="%.10g")
        rows.to_csv(tmp / "runs.csv", index=False, float_format="%.10g")
        table.to_csv(tmp / "report.csv", index=False, float_format="%.6g")
        for comp in comparisons:
            comp.to_csv(tmp / f"paired_vs_{comp.reference.iloc[0] if len(comp) else 'ref'}.csv", index=False,
                        float_format="%.6g")
        if chosen is not None and len(chosen):
            chosen.to_csv(tmp / "chosen.csv", index=False, float_format="%.10g")
        (tmp / "report.md").write_text(report_md.markdown(table, comparisons, title, command, split, extra,
                                                          info, chosen))
        atomic_write_json(tmp / "report.json", json_ready({
            "title": title, "command": command, "split": split, "runs": sorted(rows.run.unique().tolist()),
            "replicates": int(len(rows)), **info,
            "chosen": [] if chosen is None else chosen.to_dict(orient="records"),
            "paired": [c.to_dict(orient="records") for c in comparisons]}))
    return out


def json_ready(value):
    """NaN -> None and numpy scalars -> Python, so the JSON is standard (no NaN tokens)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def selections_markdown(path: Path, shown: list[str]) -> str:
    """The validation choices behind the variants shown (from ``climd select --record``)."""
    book = json.loads(Path(path).read_text()) if Path(path).exists() else {}
    lines = []
    for name, e in book.items():
        if e.get("chosen") not in shown:
            continue
        cands = ", ".join(f"{v} {c['mean'] * 100:.1f}" for v, c in e["candidates"].items())
        lines.append(f"| {name} | **{e['chosen']}** | {e['metric']} on {e['split']} of {', '.join(e['runs'])}: {cands} |")
    if not lines:
        return ""
    return "\n".join(["", "Chosen on the mean over replicates of the validation split (never the test set):", "",
                      "| method | chosen | validation mean (%) of every candidate |", "|---|---|---|", *lines, ""])


def record_selection(path: Path, name: str, entry: dict) -> None:
    """Keep every choice made on validation data in one JSON file (read-modify-write, atomic)."""
    path = Path(path)
    book = json.loads(path.read_text()) if path.exists() else {}
    book[name] = entry
    atomic_write_json(path, dict(sorted(book.items())))
