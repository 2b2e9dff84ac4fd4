"""The Markdown of ``climd report``: compact tables a person reads; every number is also in the CSVs.

Per reference: one table for the primary metric (macro-F1) with Δ [95 % CI], the t-test p (corrected
or ordinary, as stated above the table), the Wilcoxon p and the Holm-adjusted t p; then one table with
every metric as Δ [95 % CI] (Holm p).
"""
from __future__ import annotations

import math

from stages.core import metrics
from stages.report import decision, stats

METRICS = metrics.HEADLINE
PRIMARY = "f1_macro"
SHORT = {"accuracy": "ACC", "f1_weighted": "wF1", "f1_macro": "mF1", "balanced_accuracy": "bACC", "auc_macro": "AUC",
         "sensitivity": "sens", "specificity": "spec"}
NAMES = {"accuracy": "accuracy", "f1_weighted": "weighted F1", "f1_macro": "macro-F1",
         "balanced_accuracy": "balanced accuracy", "auc_macro": "AUC", "sensitivity": "sensitivity",
         "specificity": "specificity"}


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pm(mean, std, scale: float = 100.0) -> str:
    if _nan(mean):
        return "n/a"
    if _nan(std):
        return f"{mean * scale:.1f}"
    return f"{mean * scale:.1f} ± {std * scale:.1f}"


def p(value) -> str:
    return "–" if _nan(value) else (f"{value:.3f}" if value >= 0.001 else f"{value:.1e}")


def delta_ci(r, m: str) -> str:
    d, lo, hi = r.get(f"d_{m}"), r.get(f"ci_low_{m}"), r.get(f"ci_high_{m}")
    if _nan(d):
        return "n/a"
    return f"{d * 100:+.1f}" + ("" if _nan(lo) else f" [{lo * 100:+.1f}, {hi * 100:+.1f}]")


def recall_columns(frame) -> list[str]:
    """Per-class recall columns, in class order (``recall_<class>`` in runs, ``..._mean`` in tables)."""
    return [c.removesuffix("_mean") for c in frame.columns
            if c.startswith("recall_") and not c.endswith("_std")]


def metric_columns(frame) -> list[str]:
    """The headline metrics, plus sensitivity and specificity when the frame has them (two classes)."""
    return METRICS + [c for c in ("sensitivity", "specificity") if c in frame.columns or f"{c}_mean" in frame.columns]


def positive_sentence(pos: dict) -> str:
    counts = pos.get("train_counts", {})
    why = ("the minority class of the training split" if pos.get("source") == "minority" else "set by --positive-class")
    shown = ", ".join(f"{n} {c}" for n, c in counts.items())
    runs = pos.get("runs", 1)
    shown += f" per run, the mean over {runs} runs" if runs > 1 else ""
    return (f"Two classes: the positive class is **{pos['positive']}** ({why}; training counts {shown}). "
            f"Sensitivity = recall of {pos['positive']}, specificity = recall of {pos['negative']}.")


def test_sentence(comp) -> str:
    tests = set(comp.test)
    if tests == {stats.NADEAU_BENGIO}:
        ratio = comp.n_test_over_n_train.mean()
        mixed = bool(((comp.runs > 1) & (comp.n_pairs > comp.runs)).any()) if "runs" in comp else False
        return ("Replicates are resplits of the same data: Nadeau–Bengio corrected resampled t-test, variance "
                f"× (1/J + n_test/n_train) with n_test/n_train = {ratio:.3f}, J − 1 df; the CI uses the same "
                "corrected standard error." + (" Some runs hold several seeds: the differences are averaged over "
                                               "the seeds of each run first (J = runs)." if mixed else ""))
    if tests == {stats.PAIRED_T}:
        return ("All pairs come from one split (seeds of one run): ordinary paired t-test; its variance covers "
                "training randomness only, not the choice of split.")
    return "The t-test differs by row (column *test*): corrected where the pairs span several runs."


def markdown(table, comparisons, title: str, command: str, split: str, extra: str = "", info: dict | None = None,
             chosen=None) -> str:
    info = info or {}
    cols = metric_columns(table)
    lines = [f"## {title}", "", f"{split} split; mean ± std over replicates (run × seed), metrics in %.", ""]
    if info.get("positive_class"):
        lines += [positive_sentence(info["positive_class"]), ""]
    if info.get("incomplete"):
        left = ", ".join(f"{i['variant']} seed {i['seed']} of {i['run']}" for i in info["incomplete"])
        lines += [f"**Incomplete replicates left out** (--allow-incomplete): {left}.", ""]
    lines += ["| variant | n | " + " | ".join(SHORT[m] for m in cols) + " | samples seen | optimizer steps |",
              "|---|---|" + "---|" * (len(cols) + 2)]
    for _, r in table.iterrows():
        cells = [pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in cols]
        lines.append(f"| {r.variant} | {r.n} | " + " | ".join(cells) +
                     f" | {_count(r.samples_seen_mean)} | {_count(r.optimizer_steps_mean)} |")
    lines += _recall(table, info.get("positive_class"))
    if chosen is not None and len(chosen):
        lines += _chosen(chosen, info.get("choose", []))
    if info.get("optimism"):
        lines += _optimism(info["optimism"])
    for comp in comparisons:
        lines += _decisions(comp)
        lines += _paired(comp)
    lines += [extra] if extra else []
    lines += ["", f"Produced by: `{command}`", ""]
    return "\n".join(lines)


def _count(x) -> str:
    return "–" if _nan(x) else f"{x:,.0f}"


def _recall(table, pos) -> list[str]:
    cols = [c for c in recall_columns(table) if table[f"{c}_mean"].notna().any()]
    if not cols:
        return []
    names = [c.removeprefix("recall_") for c in cols]
    if pos and len(cols) == 2:
        names = [f"{n} ({'sensitivity' if n == pos['positive'] else 'specificity'})" for n in names]
    lines = ["", "Per-class recall (%):", "", "| variant | " + " | ".join(names) + " |", "|---|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        lines.append(f"| {r.variant} | " + " | ".join(pm(r[f"{c}_mean"], r[f"{c}_std"]) for c in cols) + " |")
    return lines


def _chosen(chosen, specs: list[dict]) -> list[str]:
    lines = []
    for name, group in chosen.groupby("name", sort=False):
        spec = next((s for s in specs if s["name"] == name), {})
        metric = group.metric.iloc[0]
        lines += ["", f"**{name}**: chosen per replicate on the validation {NAMES.get(metric, metric)} among "
                      f"{', '.join(f'`{c}`' for c in spec.get('candidates', []))} (ties: the earlier); its row above "
                      "holds the chosen models' test metrics.", "",
                  f"| replicate | chosen | validation {SHORT.get(metric, metric)} (%) | eligible |", "|---|---|---|---|"]
        for r in group.itertuples(index=False):
            lines.append(f"| {r.run}/seed{r.seed} | {r.chosen or '–'} | {pm(r.valid_score, None)} | {r.eligible} |")
    return lines


def _paired(comp) -> list[str]:
    if comp.empty:
        return []
    ref, m = comp.reference.iloc[0], PRIMARY
    mixed = len(set(comp.test)) > 1
    tname = "corrected-t p" if set(comp.test) == {stats.NADEAU_BENGIO} else "t p"
    lines = ["", f"### Paired difference vs {ref}", "", f"Variant − {ref}, in points. {test_sentence(comp)} "
             f"Holm adjusts the t p-values over the {len(comp)} rows of this table.", "",
             f"| variant | pairs | Δ{SHORT[m]} [95 % CI] | {tname} | Wilcoxon p | Holm p |" + (" test |" if mixed else ""),
             "|---|---|---|---|---|---|" + ("---|" if mixed else "")]
    for _, r in comp.iterrows():
        lines.append(f"| {r.variant} | {r.n_pairs} | {delta_ci(r, m)} | {p(r[f'p_t_{m}'])} | "
                     f"{p(r[f'p_wilcoxon_{m}'])} | {p(r[f'p_holm_{m}'])} |" + (f" {r.test} |" if mixed else ""))
    floors = sorted({float(x) for x in comp[f"wilcoxon_min_p_{m}"] if not stats.can_reach(float(x))})
    if floors:
        lines += ["", f"Warning: with so few non-zero differences the Wilcoxon test can never reach p < 0.05 "
                      f"(smallest attainable two-sided p = 2/2^n: {', '.join(p(f) for f in floors)})."]
    few = comp[comp.n_pairs < 2].variant.tolist()
    if few:
        lines += ["", f"Fewer than 2 pairs, no test: {', '.join(few)}."]
    for _, r in comp[comp.n_dropped > 0].iterrows():
        lines += ["", f"{r.variant}: replicates dropped (on one side only): {r.dropped}."]
    cols = [c for c in METRICS + ["sensitivity", "specificity"] if f"d_{c}" in comp.columns]
    lines += ["", "All metrics, Δ [95 % CI] (Holm-adjusted t p):", "",
              "| variant | " + " | ".join(f"Δ{SHORT[c]}" for c in cols) + " |", "|---|" + "---|" * len(cols)]
    for _, r in comp.iterrows():
        lines.append(f"| {r.variant} | " + " | ".join(f"{delta_ci(r, c)} ({p(r[f'p_holm_{c}'])})" for c in cols) + " |")
    return lines


def _pts(x, sign: bool = True) -> str:
    return "–" if _nan(x) else (f"{x * 100:+.1f}" if sign else f"{x * 100:.1f}")


def _optimism(rows: list[dict]) -> list[str]:
    lines = ["", "Selection optimism (points): mean validation score of the chosen candidate minus its test score; "
                 "*gap* is the same difference averaged over every candidate (not due to choosing); *excess* = "
                 "optimism − gap, what picking the best of the panel on validation costs.", "",
             "| chosen | candidates | validation size | validation | test | optimism | gap | excess |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = "–" if _nan(r["n_valid"]) else f"{r['n_valid']:.0f}"
        lines.append(f"| {r['name']} | {r['candidates']} | {size} | "
                     f"{_pts(r['valid_mean'], False)} | {_pts(r['test_mean'], False)} | {_pts(r['optimism'])} | "
                     f"{_pts(r['gap_unselected'])} | {_pts(r['excess'])} |")
    return lines


def _decisions(comp) -> list[str]:
    if comp.empty or "decision" not in comp:
        return []
    ref, m = comp.reference.iloc[0], comp.decision_metric.iloc[0]
    delta = comp.delta.iloc[0] * 100
    lines = ["", f"### Decision vs {ref} (margin δ = {delta:g} points of {NAMES.get(m, m)})", "",
             f"Bayesian correlated t-test (posterior of the mean difference: Student-t, J − 1 df, scale² = "
             f"(1/J + n_test/n_train)·s²): P(worse by more than δ), P(within ±δ), P(better by more than δ); "
             f"decided when one reaches 0.95, else inconclusive. *Ruled out*: differences above / below these "
             f"(the 95 % posterior bounds: each side has posterior probability 0.05). TOST: the 90 % interval with the same standard error inside ±δ "
             f"(Holm over the {len(comp)} rows).", "",
             "| variant | J | Δ | P(worse) | P(equiv.) | P(better) | decision | ruled out: above | "
             "ruled out: below | TOST 90 % CI | TOST Holm p |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in comp.iterrows():
        j = r.get(f"n_{m}", r.n_pairs)
        lines.append(f"| {r.variant} | {j} | {_pts(r.get(f'd_{m}'))} | {p(r.p_worse)} | {p(r.p_equivalent)} | "
                     f"{p(r.p_better)} | **{r.decision}** | {_pts(r.gain_ruled_out)} | {_pts(r.loss_ruled_out)} | "
                     f"[{_pts(r.ci90_low)}, {_pts(r.ci90_high)}] | {p(r.p_tost_holm)} |")
    if "sigma2_seed" in comp and comp.sigma2_seed.notna().any():
        lines += ["", "Seeds per replicate: variance of the per-seed differences split into between-split and "
                      "between-seed parts (points²); the two-level interval inflates only the split part by the "
                      "overlap term (docs/statistics.md); the plain corrected interval is the CI above.", "",
                  "| variant | seeds/replicate | σ²_split | σ²_seed | 95 % CI plain | 95 % CI two-level | "
                  "projected half-width K = 1 / 3 / 5, plain; two-level |", "|---|---|---|---|---|---|---|"]
        for _, r in comp.iterrows():
            j, ratio = int(r.get(f"n_{m}", 0) or 0), r.n_test_over_n_train
            proj = "–"
            if j >= 2 and not _nan(r.sigma2_seed) and not _nan(ratio):
                w = [decision.projected_half_width(j, ratio, r.sigma2_split, r.sigma2_seed, k) for k in (1, 3, 5)]
                proj = (" / ".join(f"{a * 100:.1f}" for a, _ in w) + "; " + " / ".join(f"{b * 100:.1f}" for _, b in w))
            lines.append(f"| {r.variant} | {r.seeds_per_replicate:.1f} | {r.sigma2_split * 1e4:.2f} | "
                         f"{r.sigma2_seed * 1e4:.2f} | [{_pts(r.get(f'ci_low_{m}'))}, {_pts(r.get(f'ci_high_{m}'))}] | "
                         f"[{_pts(r.ci_low_two_level)}, {_pts(r.ci_high_two_level)}] | {proj} |")
    return lines
