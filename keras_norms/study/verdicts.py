"""The paper's claims, decided from paired differences over seeds with 95% confidence intervals.

Every claim compares two sets of runs that share their seeds (the same seed
gives the same initial weights and the same data order), so each seed gives
one paired difference; the claim is decided by the t-interval of their mean
(scipy): "Yes" when the whole 95% interval is on the claimed side of zero, "No"
when it is all on the other side, and "Not resolved with N seeds" when it
contains zero (or when there are fewer than 2 pairs). The interval is printed
with every verdict. Pairing by seed makes the answer independent of the order
in which the seeds ran.

Claims compare the plain registry names (`batch`, `group`, ...) at the grid's
first learning rate, batch norm momentum and group count, unless the claim is
about that very setting; norm variants such as `batch(renorm=True)` are
compared with plain batch norm in their own claim. They also hold the
transformer's placement, QK-norm and the learning-rate warm-up at the grid's
first value, unless the claim is about that very setting.

"Does DyT (Derf) match layer norm?" is an equivalence question: "Yes" when
the whole 95% interval of the difference lies within +/- `MATCH_MARGIN`
test accuracy, "No" when it lies entirely beyond the margin on one side (the
verdict says which norm is clearly ahead), "Not resolved" otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence

from keras_norms.study.grid import TRANSFORMER_DEPTH

#: Claims are decided at this confidence.
CONFIDENCE = 0.95
#: "Does DyT match layer norm?": two norms match when the whole interval of their difference in test
#: accuracy lies within +/- this margin (0.02: 2 points).
MATCH_MARGIN = 0.02


@dataclasses.dataclass(frozen=True)
class Paired:
    """The paired differences `a - b` of one claim, one per seed, and their confidence interval."""

    differences: tuple[float, ...]

    @property
    def pairs(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.differences)

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% t-interval of the mean difference; None with fewer than 2 pairs."""
        if self.pairs < 2:
            return None
        from scipy import stats

        spread = statistics.stdev(self.differences) / math.sqrt(self.pairs)
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, self.pairs - 1)) * spread
        return self.mean - half, self.mean + half

    def answer(self) -> str:
        """"Yes" (the interval is above zero), "No" (below) or "Not resolved with N seeds"."""
        interval = self.interval
        if interval is not None and interval[0] > 0:
            return "Yes"
        if interval is not None and interval[1] < 0:
            return "No"
        return f"Not resolved with {self.pairs} seed{'s' if self.pairs != 1 else ''}"

    def matches(self, margin: float = MATCH_MARGIN) -> str:
        """An equivalence answer: "Yes" (the interval lies within +/- `margin`), "Worse" (all below
        `-margin`), "Better" (all above `margin`) or "Not resolved with N seeds"."""
        interval = self.interval
        if interval is not None and -margin < interval[0] and interval[1] < margin:
            return "Yes"
        if interval is not None and interval[1] < -margin:
            return "Worse"
        if interval is not None and interval[0] > margin:
            return "Better"
        return f"Not resolved with {self.pairs} seed{'s' if self.pairs != 1 else ''}"

    def describe(self, digits: int = 3, of: str = "") -> str:
        """The mean difference and its interval; `of` names it, e.g. `"dyt minus layer"`."""
        interval = self.interval
        name = f"difference {of} " if of else "difference "
        if interval is None:
            return f"{name}{self.mean:+.{digits}f}, one seed: no interval"
        return (f"{name}{self.mean:+.{digits}f}, {int(100 * CONFIDENCE)}% interval "
                f"[{interval[0]:+.{digits}f}, {interval[1]:+.{digits}f}] over {self.pairs} seeds")


def base_norm(label: str) -> str:
    """The registry name of a norm label: `"batch(renorm=True)"` -> `"batch"`."""
    return label.split("(", 1)[0]


#: Settings whose None is a value of its own, read with their default for rows that predate them.
_SETTING_DEFAULTS = {"qk_norm": "none", "warmup_epochs": 0}


def _setting(row: dict, field: str):
    """A row's value of `field`; `qk_norm` None reads "none", and a missing setting its default."""
    if field in _SETTING_DEFAULTS:
        value = row.get(field)
        return _SETTING_DEFAULTS[field] if value is None else value
    return row.get(field)


def _defaults(rows: Sequence[dict]) -> dict:
    """The grid's first value of each setting a claim holds fixed (rows are in grid order)."""
    first = lambda field, norm: next((r[field] for r in rows if base_norm(r["norm"]) == norm), None)
    return {"lr": rows[0]["lr"], "bn_momentum": first("bn_momentum", "batch"),
            "groups": first("groups", "group"), "placement": rows[0].get("placement"),
            "qk_norm": _setting(rows[0], "qk_norm"), "warmup_epochs": _setting(rows[0], "warmup_epochs")}


def _select(rows, norm: str, *, batch_size=None, **fixed) -> list[dict]:
    return [r for r in rows if r["norm"] == norm and (batch_size is None or r["batch_size"] == batch_size)
            and all(_setting(r, k) == v for k, v in fixed.items() if v is not None)]


def _per_seed(rows: Sequence[dict], value: Callable[[dict], float | None]) -> dict[int, float]:
    """One value per seed: the mean over the seed's rows (e.g. over batch sizes)."""
    values: dict[int, list[float]] = {}
    for row in rows:
        v = value(row)
        if v is not None:
            values.setdefault(row["seed"], []).append(v)
    return {seed: statistics.fmean(vs) for seed, vs in values.items()}


def paired(a: dict[int, float], b: dict[int, float]) -> Paired | None:
    """`a[seed] - b[seed]` over the seeds both have, in seed order; None when they share none."""
    seeds = sorted(set(a) & set(b))
    return Paired(tuple(a[s] - b[s] for s in seeds)) if seeds else None


def _field(name: str) -> Callable[[dict], float | None]:
    return lambda row: row.get(name)


_TEST_ACCURACY = _field("test_accuracy")


def _curve_mean(row: dict) -> float | None:
    curve = [v for v in (row.get("curves") or {}).get("val_accuracy", []) if v is not None]
    return statistics.fmean(curve) if curve else None


def _verdict(result: Paired | None, setting: str, sides: tuple[str, str], detail: str = "",
             of: str = "", measured: str = "") -> str:
    """`answer: setting: who is ahead (the difference of `of`, its interval)detail.`

    The question the verdict answers is printed beside it, so the verdict
    states what was measured and not the claim: it reads right whatever the
    answer. `sides` names the two sides of the difference, the claimed one
    first; the verdict says which of them is ahead on average and by how much
    (or, with `measured`, states both sides' means in its words), and names the
    difference "a minus b" unless `of` names it otherwise.
    """
    if result is None:
        return "Not measured: no seed ran both sides of the comparison."
    of = of or f"{sides[0]} minus {sides[1]}"
    return (f"{result.answer()}: {setting}: {measured or _ahead(result, *sides)} "
            f"({result.describe(of=of)}){detail}.")


def _ahead(result: Paired, a: str, b: str, digits: int = 3) -> str:
    """Which of `a` and `b` is ahead on average, by how much (`a - b` is `result`'s difference)."""
    if round(result.mean, digits) == 0:
        return f"{a} and {b} are level on average"
    return f"{a if result.mean > 0 else b} is ahead by {abs(result.mean):.{digits}f} on average"


def _lead(result: Paired, a: str, b: str) -> str:
    """A comparison with no claimed side: who leads (or that it is not resolved), then the numbers."""
    answer = result.answer()
    lead = {"Yes": f"{a} leads", "No": f"{b} leads"}.get(answer, answer[0].lower() + answer[1:])
    return f"{lead}; {_ahead(result, a, b)} ({result.describe(of=f'{a} minus {b}')})"


def _losses(a: dict[int, float], b: dict[int, float], a_name: str, b_name: str) -> str:
    """How much `a_name` and `b_name` lose on average over the seeds both have (`a`, `b`: losses per seed)."""
    seeds = sorted(set(a) & set(b))
    mean = lambda losses: statistics.fmean(losses[s] for s in seeds)
    word = lambda value: f"loses {value:.3f}" if value >= 0 else f"gains {-value:.3f}"
    return f"{a_name} {word(mean(a))} and {b_name} {word(mean(b))} on average"


def _context(result: Paired | None, of: str) -> str:
    return "no common seed" if result is None else result.describe(of=of)


class Claims:
    """The claims the grid of `rows` can test, each as `(question, verdict)`."""

    def __init__(self, rows: Sequence[dict]):
        self.rows = list(rows)
        self.sizes = sorted({r["batch_size"] for r in self.rows})
        self.norms = list(dict.fromkeys(r["norm"] for r in self.rows))
        self.fixed = _defaults(self.rows) if self.rows else {}

    def _at(self, norm, batch_size=None, value=_TEST_ACCURACY, **changes):
        fixed = {**self.fixed, **changes}
        if base_norm(norm) != "batch":
            fixed["bn_momentum"] = None
        if base_norm(norm) != "group":
            fixed["groups"] = None
        return _per_seed(_select(self.rows, norm, batch_size=batch_size, **fixed), value)

    def batch_norm_leads(self) -> str:
        large = self.sizes[-1]
        others = [n for n in self.norms if n != "batch" and "(" not in n]
        if "batch" not in self.norms or not others:
            return "Not measured: the grid needs batch norm and at least one other norm."
        means = {n: statistics.fmean(v.values()) for n in others if (v := self._at(n, large))}
        rival = max(means, key=means.get)
        return _verdict(paired(self._at("batch", large), self._at(rival, large)),
                        f"test accuracy at batch size {large}, the largest here, against the best other "
                        f"norm, {rival}", sides=("batch", rival))

    def _degradation(self, norm: str) -> dict[int, float]:
        large, small = self._at(norm, self.sizes[-1]), self._at(norm, self.sizes[0])
        return {s: large[s] - small[s] for s in set(large) & set(small)}

    def small_batches_hurt_batch_norm_more(self, rival: str) -> str:
        if len(self.sizes) < 2 or "batch" not in self.norms or rival not in self.norms:
            return f"Not measured: the grid needs two batch sizes, batch norm and {rival} norm."
        losses = self._degradation("batch"), self._degradation(rival)
        return _verdict(paired(*losses), f"test accuracy from batch size {self.sizes[-1]} to {self.sizes[0]}",
                        ("batch norm", f"{rival} norm"), of=f"batch norm's loss minus {rival} norm's",
                        measured=_losses(*losses, "batch norm", f"{rival} norm"))

    def heterogeneous(self) -> str:
        if "group" not in self.norms or "batch" not in self.norms:
            return "Not measured: the grid needs group norm and batch norm."
        value = _field("heterogeneous_accuracy")
        return _verdict(paired(self._at("group", value=value), self._at("batch", value=value)),
                        "accuracy on the heterogeneous test set (mean over batch sizes)",
                        sides=("group", "batch"))

    def converges_faster(self) -> str:
        if "none" not in self.norms or "batch" not in self.norms:
            return "Not measured: the grid needs batch norm and no norm (`none`)."
        return _verdict(paired(self._at("batch", value=_curve_mean), self._at("none", value=_curve_mean)),
                        "validation accuracy averaged over the epochs (the area under the learning curve, "
                        "mean over batch sizes)", sides=("batch", "none"))

    def higher_learning_rate(self) -> str:
        lrs = sorted({r["lr"] for r in self.rows})
        if len(lrs) < 2 or "none" not in self.norms or "batch" not in self.norms:
            return ("Not measured: the grid needs two learning rates (`--lr`), batch norm and no norm.")
        low, high = lrs[0], lrs[-1]

        def drop(norm):
            at_low, at_high = self._at(norm, lr=low), self._at(norm, lr=high)
            return {seed: at_low[seed] - at_high[seed] for seed in set(at_low) & set(at_high)}

        losses = drop("none"), drop("batch")
        return _verdict(paired(*losses), f"test accuracy from the learning rate {low:g} to {high:g} (mean "
                        "over batch sizes)", ("no norm", "batch norm"),
                        of="no norm's loss minus batch norm's",
                        measured=_losses(*losses, "no norm", "batch norm"))

    def layer_norm_for_recurrent(self) -> str:
        if not self.rows or self.rows[0]["model"] != "sequence":
            return ("Not measured: the grid's model is not recurrent "
                    "(`--model sequence --dataset seq-digits`).")
        if "layer" not in self.norms or "batch" not in self.norms:
            return "Not measured: the grid needs layer norm and batch norm."
        small = self.sizes[0]
        return _verdict(paired(self._at("layer", small), self._at("batch", small)),
                        f"test accuracy of the LSTM at batch size {small}, the smallest here",
                        sides=("layer", "batch"))

    def momentum(self) -> str:
        momentums = sorted({r["bn_momentum"] for r in self.rows if r["bn_momentum"] is not None})
        if len(momentums) < 2:
            return "Not measured: the grid needs two batch norm momentum values (`--bn-momentum`)."
        small = self.sizes[0]
        return _verdict(paired(self._at("batch", small, bn_momentum=momentums[-1]),
                               self._at("batch", small, bn_momentum=momentums[0])),
                        f"batch norm's test accuracy at batch size {small}",
                        sides=(f"momentum {momentums[-1]:g}", f"momentum {momentums[0]:g}"))

    def recalibration(self) -> str:
        field = "test_accuracy_recalibrated"
        if "batch" not in self.norms or not any(r.get(field) is not None for r in self.rows):
            return "Not measured: the grid needs batch norm."
        small = self.sizes[0]
        gained = paired(self._at("batch", small, value=_field(field)), self._at("batch", small))
        detail = ""
        if len(self.sizes) > 1 and gained is not None:
            lost = statistics.fmean(self._degradation("batch").values()) if self._degradation("batch") else 0
            if lost > 0:
                share = (f"recalibration recovers {gained.mean / lost:.0%} of it" if gained.mean > 0
                         else "recalibration recovers none of it")
                detail = (f"; batch norm loses {lost:.3f} from batch size {self.sizes[-1]} to {small}, "
                          f"and {share}")
            else:
                detail = f"; batch norm loses nothing from batch size {self.sizes[-1]} to {small} here"
        # Moving averages can lag the weights at any batch size (short runs, high momentum): every size.
        sides, of = ("recalibration", "the moving average"), "recalibrated minus moving averages"
        for size in self.sizes[1:]:
            at = paired(self._at("batch", size, value=_field(field)), self._at("batch", size))
            if at is not None:
                detail += f"; at batch size {size}: {_ahead(at, *sides)} ({_context(at, of)})"
        return _verdict(gained, f"batch norm's test accuracy at batch size {small}, recalibrated population "
                        "statistics against its moving averages", sides, detail, of=of)

    def variants(self) -> str:
        variants = [n for n in self.norms if "(" in n and base_norm(n) in self.norms]
        if not variants:
            return ("Not measured: the grid has no variant of a norm beside it (e.g. "
                    "`--norms batch,batch(renorm=True)`).")
        small = self.sizes[0]
        parts = []
        for variant in variants:
            result = paired(self._at(variant, small), self._at(base_norm(variant), small))
            parts.append(f"{variant} against {base_norm(variant)}: " + (
                "no common seed" if result is None else _lead(result, variant, base_norm(variant))))
        return f"At batch size {small}, the smallest here: " + "; ".join(parts) + "."

    def _values(self, field: str) -> set:
        return {_setting(r, field) for r in self.rows} - {None}

    def _block_norm(self) -> str | None:
        """The norm the transformer's placement claims use: layer norm, else RMS norm."""
        return next((n for n in ("layer", "rms") if n in self.norms), None)

    def _depth(self) -> int:
        return next((r["depth"] for r in self.rows if r.get("depth") is not None), TRANSFORMER_DEPTH)

    def placement(self) -> str:
        if not {"pre", "post"} <= self._values("placement"):
            return "Not measured: the grid needs the transformer with `--placement pre,post`."
        norm = self._block_norm()
        if norm is None:
            return "Not measured: the grid needs layer or RMS norm."
        return _verdict(paired(self._at(norm, placement="pre"), self._at(norm, placement="post")),
                        f"test accuracy with {norm} norm (mean over batch sizes)", sides=("pre", "post"))

    def peri_norm(self) -> str:
        if not {"pre", "peri"} <= self._values("placement"):
            return "Not measured: the grid needs the transformer with `--placement pre,peri`."
        norm = self._block_norm()
        if norm is None:
            return "Not measured: the grid needs layer or RMS norm."
        return _verdict(paired(self._at(norm, placement="peri"), self._at(norm, placement="pre")),
                        f"test accuracy with {norm} norm (mean over batch sizes), peri-norm (a norm before "
                        "and after each sublayer) against pre-norm", sides=("peri", "pre"))

    def matches_layer_norm(self, norm: str) -> str:
        if norm not in self.norms or "layer" not in self.norms:
            return f"Not measured: the grid needs layer norm and {norm} (`--norms layer,{norm}`)."
        result = paired(self._at(norm), self._at("layer"))
        if result is None:
            return "Not measured: no seed ran both sides of the comparison."
        margin = f"the margin of ±{MATCH_MARGIN:.2f} test accuracy ({100 * MATCH_MARGIN:g} points) of a match"
        of = f"{norm} minus layer"
        numbers = f"{_ahead(result, norm, 'layer')} ({result.describe(of=of)})"
        answer = result.matches()
        if answer == "Yes":
            return (f"Yes: {norm} matches layer norm: the whole 95% interval of {of} lies within {margin}; "
                    f"{numbers}.")
        if answer in ("Worse", "Better"):
            side, bound = (("worse", f"below -{MATCH_MARGIN:.2f}") if answer == "Worse"
                           else ("better", f"above +{MATCH_MARGIN:.2f}"))
            return (f"No: {norm} is clearly {side} than layer norm: the whole 95% interval of {of} lies "
                    f"{bound}, outside {margin}; {numbers}.")
        if result.interval is None:
            return f"{answer}: one seed gives no interval of {of} to hold against {margin}; {numbers}."
        return (f"{answer}: the 95% interval of {of} crosses {margin}, so it shows neither a match nor a "
                f"clear difference; {numbers}.")

    def qk_norm_higher_lr(self) -> str:
        lrs = sorted({r["lr"] for r in self.rows})
        qk = next((q for q in ("rms", "layer") if q in self._values("qk_norm")), None)
        if len(lrs) < 2 or qk is None or "none" not in self._values("qk_norm"):
            return ("Not measured: the grid needs the transformer with `--qk-norm none,rms` (or layer) and "
                    "two learning rates (`--lr`).")
        norm = self._block_norm() or self.norms[0]
        low, high = lrs[0], lrs[-1]
        gain = lambda lr: paired(self._at(norm, lr=lr, qk_norm=qk), self._at(norm, lr=lr, qk_norm="none"))
        of = f"{qk} QK-norm minus none"
        return _verdict(gain(high), f"test accuracy at the higher learning rate, {high:g}, with {norm} norm "
                        f"(mean over batch sizes), {qk} QK-norm against none", (f"{qk} QK-norm", "none"),
                        f"; at the lower learning rate, {low:g}: {_context(gain(low), of)}", of=of)

    def post_norm_warmup(self) -> str:
        warmups = sorted(self._values("warmup_epochs"))
        if "post" not in self._values("placement") or 0 not in warmups or len(warmups) < 2:
            return ("Not measured: the grid needs the transformer with `--placement post` (or pre,post) and "
                    "`--warmup 0,1` (with and without warm-up).")
        norm = self._block_norm()
        if norm is None:
            return "Not measured: the grid needs layer or RMS norm."
        warm = warmups[-1]
        cold = self._at(norm, placement="post", warmup_epochs=0)
        detail = ""
        if "pre" in self._values("placement"):
            pre = paired(self._at(norm, placement="pre", warmup_epochs=0), cold)
            detail = f"; without warm-up, pre-norm against post-norm: {_context(pre, 'pre minus post')}"
        return _verdict(paired(self._at(norm, placement="post", warmup_epochs=warm), cold),
                        f"post-norm's test accuracy at depth {self._depth()} ({norm} norm), {warm} "
                        f"epoch{'s' if warm != 1 else ''} of warm-up against none", ("warm-up", "none"),
                        detail)

    def transformer_norms(self) -> str:
        if not self.rows or self.rows[0]["model"] != "transformer":
            return "Not measured: the grid's model is not the transformer (`--model transformer`)."
        parts = []
        for a, b in (("layer", "rms"), ("layer", "none"), ("rms", "none")):
            if a in self.norms and b in self.norms:
                result = paired(self._at(a), self._at(b))
                if result is not None:
                    parts.append(f"{a} against {b}: {_lead(result, a, b)}")
        if not parts:
            return "Not measured: the grid needs two of layer, RMS and no norm."
        return "Mean over batch sizes: " + "; ".join(parts) + "."

    def all(self) -> list[tuple[str, str]]:
        if not self.rows:
            return []
        return [
            ("Does batch norm lead at large batch sizes?", self.batch_norm_leads()),
            ("Do small batches hurt batch norm more than group norm?",
             self.small_batches_hurt_batch_norm_more("group")),
            ("Do small batches hurt batch norm more than layer norm?",
             self.small_batches_hurt_batch_norm_more("layer")),
            ("Does recalibration recover batch norm's small-batch loss?", self.recalibration()),
            ("Do the batch norm variants help at small batch sizes?", self.variants()),
            ("Does batch norm converge faster than no norm?", self.converges_faster()),
            ("Does batch norm tolerate a higher learning rate?", self.higher_learning_rate()),
            ("What does batch norm momentum change?", self.momentum()),
            ("Is layer norm the better choice for the recurrent model at small batch?",
             self.layer_norm_for_recurrent()),
            ("Does group norm help on heterogeneous data?", self.heterogeneous()),
            ("Pre-norm or post-norm in the transformer?", self.placement()),
            ("Does peri-norm beat pre-norm?", self.peri_norm()),
            ("Layer, RMS or no norm in the transformer?", self.transformer_norms()),
            ("Does DyT match layer norm?", self.matches_layer_norm("dyt")),
            ("Does Derf match layer norm?", self.matches_layer_norm("derf")),
            ("Does QK-norm let a higher learning rate train?", self.qk_norm_higher_lr()),
            ("Does post-norm fail without warm-up at depth?", self.post_norm_warmup()),
        ]


def verdicts(rows: Sequence[dict], *, measured_only: bool = True) -> list[tuple[str, str]]:
    """`(question, verdict)` for each claim; with `measured_only`, the claims this grid can test.

    Examples:
        >>> rows = [{"norm": n, "batch_size": 8, "seed": s, "lr": 1e-3, "bn_momentum": None, "groups": None,
        ...          "model": "lenet", "test_accuracy": acc + 0.01 * s}
        ...         for s in range(3) for n, acc in (("batch", 0.95), ("layer", 0.90))]
        >>> verdicts(rows)[0][1].split(":")[0]
        'Yes'
    """
    found = Claims(rows).all()
    return [(q, v) for q, v in found if not (measured_only and v.startswith("Not measured"))]
