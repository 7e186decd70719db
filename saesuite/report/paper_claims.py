"""The paper's claims: sentences whose wording is chosen from the result they speak of.

A claim becomes a ``\\Claim<Name>`` macro (:mod:`saesuite.report.paper`). "Overlaps more than
chance" is written only when the score's interval lies above its chance level, the opposite wording
otherwise (:func:`chance_claim`); the notice that a run supports no conclusion (random weights, a
synthetic fixture) is chosen from the run's config (:func:`run_notice`). :func:`claims` gathers
every claim of the paper.
"""

from __future__ import annotations

from saesuite.compare.chance import p_text
from saesuite.report.latex import escape, fmt


def chance_verdict(record: dict) -> str | None:
    """Where a score's interval lies against its chance level: ``"above"``, ``"below"``, ``"chance"``
    (the interval contains it), or None (no interval or no chance level: nothing can be said)."""
    interval, chance = record.get("interval") or {}, record.get("chance")
    low, high = interval.get("low"), interval.get("high")
    if chance is None or low is None or high is None:
        return None
    if low > chance:
        return "above"
    if high < chance:
        return "below"
    return "chance"


def _evidence(record: dict, where: str) -> str:
    interval = record["interval"]
    return (f"the score's {fmt(100 * interval['level'])}\\% interval, {fmt(interval['low'])} to "
            f"{fmt(interval['high'])}, {where} its chance level {fmt(record['chance'])} "
            f"(${p_text(record, latex=True)}$)")


def chance_claim(record: dict, above: str, below: str, same: str, missing: str) -> str:
    """``above``/``below``/``same`` (the interval contains chance) or ``missing`` (no interval), as
    :func:`chance_verdict` finds, followed by the evidence: the interval, the chance level and p."""
    verdict = chance_verdict(record)
    if verdict is None:
        return missing
    where = {"above": "lies above", "below": "lies below", "chance": "contains"}[verdict]
    return {"above": above, "below": below, "chance": same}[verdict] + ": " + _evidence(record, where)


# (comparison key, subject, what is compared) of the scores whose chance verdict the paper states
CHANCE_CLAIMS = {
    "topk_overlap": ("OverlapAboveChance", r"\ModelA{} features", r"\ModelB{} features", "top-$k$ image overlap"),
    "topk_overlap_b_to_a": ("OverlapBToAAboveChance", r"\ModelB{} features", r"\ModelA{} features", "top-$k$ image overlap"),
    "overlap_pairing": ("OverlapPairingAboveChance", None, None, "one-to-one pairing on top-$k$ overlap"),
    "correlation_pairing": ("CorrelationPairingAboveChance", None, None, "one-to-one pairing on activation correlation"),
    "debiased_cka": ("DebiasedCkaAboveChance", None, None, "debiased linear CKA of the activations"),
    "debiased_cka_codes": ("DebiasedCkaCodesAboveChance", None, None, "debiased linear CKA of the SAE codes"),
    "mutual_knn": ("MutualKnnAboveChance", None, None, "mutual $k$-NN alignment of the activations"),
    "mutual_knn_codes": ("MutualKnnCodesAboveChance", None, None, "mutual $k$-NN alignment of the SAE codes"),
}


def comparison_claims(comparison: dict) -> dict[str, str]:
    """``\\Claim<Name>`` text of every score in :data:`CHANCE_CLAIMS`, and the abstract's summary."""
    out = {}
    verdicts = {}
    for key, (name, subject, other, what) in CHANCE_CLAIMS.items():
        record = comparison.get(key)
        if not isinstance(record, dict):
            continue
        verdicts[key] = chance_verdict(record)
        if subject:  # the overlap of one model's features with the other's
            out[name] = chance_claim(
                record,
                f"{subject} overlap with {other} more than chance",
                f"{subject} overlap with {other} less than chance",
                f"{subject} do not overlap with {other} more than chance",
                f"whether {subject} overlap with {other} more than chance is not stated: the score has no interval")
        else:
            out[name] = chance_claim(
                record,
                f"the two models agree more than chance by {what}",
                f"the two models agree less than chance by {what}",
                f"by {what} the two models cannot be told apart from chance",
                f"{what} has no interval, so nothing is said about chance")
    named = {key: CHANCE_CLAIMS[key][3] for key in verdicts}
    named["topk_overlap"] = r"top-$k$ overlap of \ModelA{} features with \ModelB{}'s"
    named["topk_overlap_b_to_a"] = r"top-$k$ overlap of \ModelB{} features with \ModelA{}'s"
    above = [named[k] for k, v in verdicts.items() if v == "above"]
    other = [named[k] for k, v in verdicts.items() if v in ("below", "chance")]
    if not verdicts:
        out["ComparisonSummary"] = "no comparison score was measured"
    elif not other and above:
        out["ComparisonSummary"] = f"every one of the {len(above)} comparison scores lies above chance by its interval"
    elif not above and other:
        out["ComparisonSummary"] = (f"none of the {len(other)} comparison scores lies above chance by its interval: "
                                    "the two models' features cannot be told apart from unrelated ones")
    else:
        out["ComparisonSummary"] = (f"{len(above)} of {len(above) + len(other)} comparison scores lie above chance by "
                                    f"their intervals ({'; '.join(above)}), while "
                                    f"{'; '.join(other)} {'does' if len(other) == 1 else 'do'} not")
    out["ComparisonAboveCount"] = str(len(above))
    return out


def _matched(l0_a: float, l0_b: float, tolerance: float = 0.1) -> bool:
    return max(l0_a, l0_b) > 0 and abs(l0_a - l0_b) <= tolerance * max(l0_a, l0_b)


def model_claims(role: str, metrics: dict) -> dict[str, str]:
    """Per SAE (``role`` A, B or R): neuron alignment against chance and zero-shot fidelity."""
    out = {}
    name = rf"\Model{role}{{}}"
    align = metrics.get("alignment")
    if not align or align.get("neuron_decoder_fraction_above") is None:
        reason = (metrics.get("skipped") or {}).get("neuron_alignment") or "no neurons to compare with"
        out[f"Alignment{role}"] = f"neuron alignment was not measured for {name} ({escape(reason)})"
    else:
        ours, chance = align["neuron_decoder_fraction_above"], align["chance"]["neuron_fraction_above"]
        verb = "more" if ours > chance else "no more"
        out[f"Alignment{role}"] = (
            f"{fmt(ours)} of the {name} SAE's decoder directions are neuron-aligned ($|\\cos| \\ge "
            f"{fmt(align['threshold'])}$), {verb} than the {fmt(chance)} of "
            f"{fmt(align['chance']['directions'])} random unit directions")
    fid = metrics.get("fidelity")
    if not fid:
        reason = (metrics.get("skipped") or {}).get("fidelity") or "not run"
        out[f"Fidelity{role}"] = f"the zero-shot fidelity test was not run for {name} ({escape(reason)})"
    elif fid["accuracy_clean"] <= fid["chance_accuracy"] + 1e-12:
        out[f"Fidelity{role}"] = (
            f"{name} itself classifies at chance (clean zero-shot accuracy {fmt(fid['accuracy_clean'])}, "
            f"chance {fmt(fid['chance_accuracy'])}), so the splice test cannot show what its SAE loses")
    else:
        rec = fid["fraction_recovered"]
        kept = "keeps" if fid["accuracy_spliced"] >= fid["accuracy_clean"] - 0.01 else "lowers"
        out[f"Fidelity{role}"] = (
            f"splicing the SAE's reconstruction into {name} {kept} zero-shot accuracy "
            f"({fmt(fid['accuracy_spliced'])} against {fmt(fid['accuracy_clean'])} clean and "
            f"{fmt(fid['accuracy_ablated'])} mean-ablated; fraction recovered {fmt(rec)})")
    return out


def replication_claims(metrics: dict, published: dict) -> dict[str, str]:
    """The replication against the baseline's published figures: dead latents and neuron alignment."""
    out = {}
    dead, pub_dead = metrics["dead_fraction"], published.get("dead_fraction")
    if pub_dead is not None:
        if dead <= pub_dead:
            out["ReplicationDead"] = (f"as in the baseline, where no feature was dead, the replication has a dead "
                                      f"fraction of {fmt(dead)} on the evaluation split")
        else:
            out["ReplicationDead"] = (f"unlike the baseline, where no feature was dead, {fmt(dead)} of the "
                                      f"replication's latents never fire on the evaluation split")
    align = metrics.get("alignment") or {}
    pub_unaligned = published.get("unaligned_fraction")
    if pub_unaligned is not None and align.get("neuron_decoder_fraction_above") is not None:
        unaligned = 1 - align["neuron_decoder_fraction_above"]
        close = abs(unaligned - pub_unaligned) <= 0.1
        out["ReplicationAlignment"] = (
            f"{fmt(unaligned)} of the replication's decoder directions are not neuron-aligned, "
            + ("close to" if close else "far from")
            + f" the baseline's ``about a half'' ({fmt(pub_unaligned)}, within 0.1 counted as close)")
    else:
        out["ReplicationAlignment"] = "the replication's neuron alignment was not measured, so it is not compared"
    return out


def sweep_claims(sweep_rows: list[dict], metrics_a: dict, metrics_b: dict) -> dict[str, str]:
    """The main SAEs' L0 match, which reconstructs better at that L0, and how the top-k overlap moves
    with L0 along the sweep entries of matched L0."""
    out = {}
    la, lb = metrics_a["l0"], metrics_b["l0"]
    if _matched(la, lb):
        out["MatchedLzero"] = (f"the two main SAEs are compared at matched sparsity: their $L_0$ on the evaluation "
                               f"split, {fmt(la)} and {fmt(lb)}, differ by no more than 10\\%")
    else:
        out["MatchedLzero"] = (f"the two main SAEs are not matched in sparsity ($L_0$ {fmt(la)} against "
                               f"{fmt(lb)}, more than 10\\% apart), so their comparison mixes architecture with density")
    ea, eb = metrics_a["explained_variance"], metrics_b["explained_variance"]
    more = "more" if ea > eb else "less" if ea < eb else "as much"
    out["FidelityOrder"] = (rf"the \ModelA{{}} SAE explains {more} of its input's variance ({fmt(ea)}) "
                            rf"than the \ModelB{{}} SAE ({fmt(eb)})" if more != "as much" else
                            rf"the \ModelA{{}} and \ModelB{{}} SAEs explain the same variance ({fmt(ea)})")
    rows = [r for r in sweep_rows if r.get("topk_overlap") not in (None, "") and r.get("l0_a") and r.get("l0_b")
            and _matched(float(r["l0_a"]), float(r["l0_b"]))]
    rows.sort(key=lambda r: float(r["l0_a"]))
    if len(rows) < 3:
        out["SweepTrend"] = (f"only {len(rows)} SAE pairs of the sweep are matched in $L_0$, too few to say how the "
                             "overlap moves with density")
    else:
        values = [float(r["topk_overlap"]) for r in rows]
        steps = [b - a for a, b in zip(values, values[1:])]
        trend = ("rises" if all(s > 0 for s in steps) else "falls" if all(s < 0 for s in steps)
                 else "does not move monotonically")
        listed = ", ".join(f"{fmt(v)} at $L_0$ {fmt(float(r['l0_a']))}" for r, v in zip(rows, values))
        out["SweepTrend"] = (rf"over the {len(rows)} sweep pairs of matched $L_0$, the top-$k$ overlap of \ModelA{{}} "
                             f"features with \\ModelB{{}}'s {trend} with $L_0$ ({listed})")
    return out


def recipe_claims(cfgs: dict[str, dict]) -> dict[str, str]:
    """Which recipe and architecture each SAE used (``cfg.json``), and whether the two main SAEs share
    one TopK ``k`` (matched L0 by construction)."""
    def describe(cfg: dict) -> str:
        train = cfg.get("training", {})
        arch = train.get("architecture", cfg.get("architecture"))
        setting = f"$k = {cfg['k']}$" if arch == "topk" else f"$\\lambda$ = {fmt(train.get('l1_coefficient'))}"
        return (f"recipe \\texttt{{{escape(train.get('recipe', cfg.get('recipe', 'n/a')))}}}, "
                f"{'TopK' if arch == 'topk' else 'ReLU'} with {setting}, {fmt(cfg.get('d_sae'))} latents")

    names = {"A": r"\ModelA{}", "B": r"\ModelB{}", "R": r"the replication (\ModelR{})"}
    out = {"Recipes": "; ".join(f"{names[role]}: {describe(cfg)}" for role, cfg in cfgs.items())}
    a, b = cfgs.get("A", {}), cfgs.get("B", {})
    if a.get("architecture") == b.get("architecture") == "topk" and a.get("k") == b.get("k"):
        out["SameK"] = (f"both main SAEs are TopK SAEs with the same $k = {a['k']}$, so no input activates more than "
                        f"{a['k']} latents in either and the two are compared at equal $L_0$ by construction")
    else:
        out["SameK"] = ("the two main SAEs do not share one TopK $k$, so their $L_0$ is matched only as far as "
                        "training made it so")
    return out


def plan_recipe_claim(frontiers: dict[str, list[dict]], l1: float = 8e-5) -> dict[str, str]:
    """Whether the research plan's recipe (a ReLU SAE with L1 coefficient ``l1``) is among the SAEs
    each model trained (its sweep, ``sweep/<model>/frontier.csv``)."""
    found = sorted({r["name"] for rows in frontiers.values() for r in rows
                    if r.get("architecture") == "relu" and r.get("l1_coefficient") not in (None, "")
                    and abs(float(r["l1_coefficient"]) - l1) <= 1e-12}
                   & set.intersection(*({r["name"] for r in rows} for rows in frontiers.values())))
    if found:
        return {"PlanRecipe": (f"the plan's own recipe, a ReLU SAE with $\\lambda$ = {fmt(l1)}, is the sweep entry "
                               + ", ".join(f"\\texttt{{{escape(n)}}}" for n in found) + " of both models")}
    return {"PlanRecipe": f"the plan's own recipe, a ReLU SAE with $\\lambda$ = {fmt(l1)}, is not among this run's SAEs"}


def planted_claims(recovery: dict, planted_pairs: dict) -> dict[str, str]:
    """The planted benchmarks: dictionary recovery of the main SAE and two-model pairing quality."""
    out = {}
    main = recovery.get("main")
    if main:
        frac = main["fraction_above_0.9"]
        share = "every one" if frac >= 1 else f"a fraction {fmt(frac)}"
        out["PlantedRecovery"] = (f"the main planted SAE ({escape(main['architecture'])}, $k = {main['k']}$) recovers "
                                  f"{share} of the {fmt(main['n_true'])} planted directions with a decoder row at "
                                  f"cosine above {fmt(main['threshold'])} (mean best cosine "
                                  f"{fmt(main['mean_best_cosine'])})")
    parts = []
    for key, what in (("correlation_pairing", "activation correlation"), ("overlap_pairing", "top-$k$ overlap")):
        q = planted_pairs.get(key)
        if not q:
            continue
        if q["precision"] >= 1 and q["recall"] >= 1:
            parts.append(f"pairing on {what} finds every one of the {q['true']} shared features and nothing else")
        else:
            parts.append(f"pairing on {what} finds {q['correct']} of the {q['true']} shared features "
                         f"(recall {fmt(q['recall'])}) with precision {fmt(q['precision'])}")
    out["PlantedPairing"] = "; ".join(parts) if parts else "the planted pairing benchmark has no result"
    return out


def run_notice(config: dict, manifests: dict[str, dict]) -> str:
    """The first page's warning when the run cannot support a conclusion about CLIP, from the config:
    models with random weights (``pretrained: null``), a synthetic fixture for data, or caches filled
    with synthetic planted rows (a manifest's ``synthetic``, config/rehearsal.yaml); ``""`` otherwise."""
    random = [m for m, spec in config.get("models", {}).items() if spec.get("pretrained") in (None, "none")]
    dataset = config.get("dataset", {})
    fixture = bool(dataset.get("fixture"))
    synthetic = {role: m["synthetic"]["rows"] for role, m in manifests.items() if m.get("synthetic")}
    if not random and not fixture and not synthetic:
        return ""
    causes = []
    if random:
        causes.append(f"{'both models' if len(random) == len(config['models']) else ', '.join(map(escape, random))} "
                      f"({', '.join(escape(m) for m in random)}) have random weights (\\texttt{{pretrained: null}})")
    if fixture:
        n = (config.get("fixture") or {})
        what = ("generated JPEGs of rings" if dataset.get("kind") == "imagenet" else "images of coloured stripes")
        causes.append(f"the images are a synthetic {escape(dataset.get('kind', ''))}-format fixture "
                      f"({fmt(n.get('n_train'))} training and {fmt(n.get('n_test'))} test {what}), "
                      "not the dataset the plan names")
    if synthetic:
        first, n = next(iter(synthetic.values()))
        causes.append(f"the evaluation caches' rows from {fmt(first)} to {fmt(n)} are synthetic planted activations, "
                      "not any model's")
    return ("This paper was generated from the run \\texttt{" + escape(config.get("run", "")) + "}, in which "
            + " and ".join(causes) + ". Its numbers test the pipeline; they support no conclusion about CLIP, "
            "and every claim below speaks only of these stand-ins.")


def preliminary_claim(config: dict, metrics: dict[str, dict], preliminary: dict) -> dict[str, str]:
    """``\\ClaimPreliminary`` for a run on real CIFAR-10 (config/cifar10.yaml, the plan's preliminary
    experiment): the plan's population sparsity beside each main SAE's; nothing for any other run."""
    dataset = config.get("dataset", {})
    if dataset.get("kind") != "cifar10" or dataset.get("fixture") or not preliminary:
        return {}
    ours = " and ".join(f"{fmt(metrics[r]['population_sparsity'])} for {escape(metrics[r]['model'])}" for r in ("A", "B"))
    return {"Preliminary": (
        f"The plan's own preliminary run trained one SAE on {fmt(preliminary['train_fraction'])} of the CIFAR-10 "
        f"training set for {fmt(preliminary['epochs'])} epoch and reported a population sparsity of "
        f"{fmt(preliminary['population_sparsity'])} (and an average loss of {fmt(preliminary['loss'])}, of a loss it "
        f"does not define, so not compared; {escape(preliminary['source'])}). Trained the same way here, the main "
        f"SAEs reach a population sparsity of {ours}.")}


def claims(metrics: dict[str, dict], comparison: dict, published: dict, sweep_rows: list[dict],
           recovery: dict, planted_pairs: dict, cfgs: dict[str, dict] | None = None) -> dict[str, str]:
    """Every ``\\Claim<Name>`` text of the paper, each chosen from the result it speaks of."""
    out = comparison_claims(comparison)
    if cfgs:
        out.update(recipe_claims(cfgs))
    for role, values in metrics.items():
        out.update(model_claims(role, values))
    if "R" in metrics:
        out.update(replication_claims(metrics["R"], published))
    out.update(sweep_claims(sweep_rows, metrics["A"], metrics["B"]))
    out.update(planted_claims(recovery, planted_pairs))
    return out
