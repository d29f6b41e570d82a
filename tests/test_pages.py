"""Every code block of README.md and docs/ runs, page by page, top to bottom, as written, and prints
what the page shows it prints.

Each page runs in a process of its own, in a scratch directory that links the repository's files
(so `python examples/...` and `make docs` work and nothing is written into the repository):
`python` blocks share one namespace, `bash` blocks run with the virtual environment first on PATH.
`text` blocks are output and are not run. A block that cannot run on one machine (a SLURM or
Kubernetes submission, a second host, `make test` itself) says so in an HTML comment on the line
above it, `<!-- not run: why -->`; those are listed and kept few.

A `text` block right after a code block (nothing but blank lines between them) is that block's
output: what the block writes to standard output (not stderr, where warnings, TensorFlow's start-up
lines and the study's progress lines go) must match it (`outputs_match`), and a block that writes to
standard output must be followed by one (but the few in `OUTPUT_NOT_SHOWN`, and the pages in
`OUTPUTS_NOT_CHECKED`). The match:

- line by line, with the numbers taken out: the text around them must be the same, except that any
  run of whitespace matches any other (or none), and trailing whitespace and blank lines at the
  ends are ignored;
- `...` in a line matches any text within the line, and a line of just `...` any number of lines
  (for lines that differ from machine to machine, such as timings or versions);
- the numbers: an integer (no decimal point, no exponent) must be equal; a float within
  0.02 + 0.05 * max(|a|, |b|), loose enough for a short training run on another CPU (with or without
  oneDNN) and tight enough to catch a wrong result; but a float written with an exponent and below
  1e-4 in magnitude on the page (a float32 rounding error, such as 3.28e-07) matches any float below
  1e-4, and only those;
- a block can loosen that in an HTML comment on the line above the `text` block:
  `<!-- output: numbers within 0.1 -->` (floats within 0.1 + 0.1 * max(|a|, |b|)) and/or
  `<!-- output: errors below 1e-2 -->` (the page's floats below 1e-2 match any below 1e-2), separated
  by `;`; `<!-- output: any numbers -->` compares the text around the numbers only (timings).

To write a block's output on a page, run the page (`pytest tests/test_pages.py -k PAGE`): a mismatch
shows what the block printed.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
FENCE = re.compile(r"(?P<marker>^<!-- (?:not run: (?P<why>[^>]*?)|output: (?P<directive>[^>]*?)) -->\n)?"
                   r"^```(?P<lang>[\w-]*)\n(?P<code>.*?)^```$", flags=re.M | re.S)
RUN = {"python", "bash"}
OUTPUT = {"text"}
MAX_NOT_RUN = 8

#: Blocks that print without showing what on the page, by page and a line of the block, with why: kept
#: few (a long log, an output that is only an example's by-product).
OUTPUT_NOT_SHOWN: dict[tuple[str, str], str] = {}

#: Pages whose outputs are not checked, with why (none: every page's are).
OUTPUTS_NOT_CHECKED: dict[str, str] = {}

#: The default tolerances of `outputs_match` (see the module's docstring).
ABSOLUTE, RELATIVE, ERRORS_BELOW = 0.02, 0.05, 1e-4


def blocks(page: Path) -> list[dict]:
    """The fenced blocks of `page`, in order; a code block's `output` is the text block right after it."""
    text = page.read_text()
    found = []
    previous, previous_end = None, 0
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start("code"))
        block = {"lang": match["lang"], "code": match["code"], "why": match["why"],
                 "directive": match["directive"], "where": f"{page.relative_to(ROOT)}:{line}",
                 "output": None}
        if (previous is not None and previous["lang"] in RUN and block["lang"] in OUTPUT and
                not text[previous_end:match.start()].strip()):
            previous["output"] = block
        found.append(block)
        previous, previous_end = block, match.end()
    return found


# A number: not glued to a word or to another number's dot (so `int8`, `conv2d_1` and `2.18.0` are text),
# but a ratio's `x` may follow it (`4.32x`).
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?=x(?!\w)|(?![\w.]))"
                    r"|(?:nan|inf)(?!\w))")


def parse_directive(directive: str | None) -> dict:
    """The tolerances of an `<!-- output: ... -->` comment. Raises ValueError for anything else."""
    options = {"absolute": ABSOLUTE, "relative": RELATIVE, "errors_below": ERRORS_BELOW}
    for part in filter(None, (p.strip() for p in (directive or "").split(";"))):
        if part == "any numbers":
            options.update(absolute=math.inf, errors_below=0.0)
        elif match := re.fullmatch(r"numbers within (\S+)", part):
            options.update(absolute=float(match[1]), relative=float(match[1]))
        elif match := re.fullmatch(r"errors below (\S+)", part):
            options["errors_below"] = float(match[1])
        else:
            raise ValueError(f"unknown output option {part!r}: 'numbers within X', 'errors below X' or "
                             "'any numbers'")
    return options


def _numbers_agree(expected: str, actual: str, options: dict) -> bool:
    if options["absolute"] == math.inf:
        return True
    if not re.search(r"[.eEna]", expected.lstrip("+-")):   # an integer
        return re.fullmatch(r"[-+]?\d+", actual) is not None and int(expected) == int(actual)
    a, b = float(expected), float(actual)
    if a != a or b != b:
        return a != a and b != b
    if "e" in expected.lower() and abs(a) < options["errors_below"]:   # a rounding error stays one
        return abs(b) < options["errors_below"]
    return abs(a - b) <= options["absolute"] + options["relative"] * max(abs(a), abs(b)) or a == b


@functools.lru_cache(maxsize=4096)
def _line_pattern(expected: str) -> tuple[re.Pattern, tuple[str, ...]]:
    """A regex for one expected line, its numbers as groups, `...` as any text, whitespace optional
    (but between two letters or digits); and the line's numbers."""
    pieces, numbers, last = [], [], 0
    tokens = re.compile(rf"(?P<number>{NUMBER.pattern})|(?P<dots>\.\.\.)|(?P<space>\s+)")
    for match in tokens.finditer(expected):
        pieces.append(re.escape(expected[last:match.start()]))
        last = match.end()
        if match["number"]:
            pieces.append(rf"\s*({NUMBER.pattern})\s*")  # NumPy pads a sign's place: "[ 0." or "[-0."
            numbers.append(match["number"])
        elif match["dots"]:
            pieces.append(r".*?")
        else:
            glued = expected[:match.start()][-1:].isalnum() and expected[match.end():][:1].isalnum()
            pieces.append(r"\s+" if glued else r"\s*")
    pieces.append(re.escape(expected[last:]))
    return re.compile(r"\s*" + "".join(pieces) + r"\s*"), tuple(numbers)


def _line_matches(expected: str, actual: str, options: dict) -> bool:
    pattern, numbers = _line_pattern(expected)
    match = pattern.fullmatch(actual)
    return match is not None and all(_numbers_agree(e, a, options)
                                     for e, a in zip(numbers, match.groups(), strict=True))


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def outputs_match(expected: str, actual: str, directive: str | None = None) -> bool:
    """Whether `actual` (what a block printed) matches `expected` (its text block); see the module's
    docstring for the rule."""
    options = parse_directive(directive)
    want, got = _lines(expected), _lines(actual)

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(want):
            return j == len(got)
        if want[i].strip() == "...":
            return any(match(i + 1, k) for k in range(j, len(got) + 1))
        return j < len(got) and _line_matches(want[i], got[j], options) and match(i + 1, j + 1)

    return match(0, 0)


def _id(page: Path) -> str:
    return str(page.relative_to(ROOT))


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]


def test_every_block_declares_its_language_and_runs_or_says_why_not():
    problems = [f"{b['where']}: a block without a language" for b in ALL_BLOCKS if not b["lang"]]
    problems += [f"{b['where']}: a {b['lang']} block that neither runs nor says why (<!-- not run: ... -->)"
                 for b in ALL_BLOCKS if b["lang"] not in RUN | OUTPUT and b["why"] is None]
    problems += [f"{b['where']}: an empty reason" for b in ALL_BLOCKS if b["why"] is not None and
                 not b["why"].strip()]
    assert not problems, "\n".join(problems)
    not_run = [b["where"] for b in ALL_BLOCKS if b["why"] is not None]
    assert len(not_run) <= MAX_NOT_RUN, f"too many blocks are not run: {not_run}"
    assert sum(b["lang"] == "python" for b in ALL_BLOCKS) >= 20


def test_every_page_is_in_the_site_navigation():
    config = (ROOT / "mkdocs.yml").read_text()
    listed = set(re.findall(r":\s*([\w/.-]+\.md)\s*$", config, flags=re.M))
    pages = {str(page.relative_to(ROOT / "docs")) for page in PAGES if page.parent != ROOT}
    assert pages <= listed, f"pages missing from mkdocs.yml's nav: {sorted(pages - listed)}"


def _scratch(work: Path) -> None:
    """Links in `work` to the repository's entries, except those a page writes."""
    for entry in ROOT.iterdir():
        if entry.name not in {".git", "site", "out", "demo-out"}:
            (work / entry.name).symlink_to(entry)


def run_page(page: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Runs the runnable blocks of `page` in a scratch directory under `tmp_path`; returns the process
    and what each block that ran printed ({"where", "stdout"})."""
    runnable = [{k: b[k] for k in ("lang", "code", "where")} for b in blocks(page)
                if b["lang"] in RUN and b["why"] is None]
    work = tmp_path / "repo"
    work.mkdir()
    _scratch(work)
    listing, outputs = tmp_path / "blocks.json", tmp_path / "outputs.json"
    listing.write_text(json.dumps(runnable))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               KERAS_NORMS_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run([sys.executable, str(ROOT / "tests/_run_page.py"), str(listing), str(outputs)],
                          cwd=work, env=env, capture_output=True, text=True, timeout=900)
    return done, json.loads(outputs.read_text()) if outputs.exists() else []


def output_problems(page: Path, printed: list[dict]) -> list[str]:
    """The blocks of `page` whose output differs from their text block, or that print without one."""
    if _id(page) in OUTPUTS_NOT_CHECKED:
        return []
    by_where = {b["where"]: b for b in blocks(page)}
    problems = []
    for run in printed:
        block, stdout = by_where[run["where"]], run["stdout"]
        shown = block["output"]
        if shown is None:
            exempt = any(p == _id(page) and line in block["code"] for p, line in OUTPUT_NOT_SHOWN)
            if stdout.strip() and not exempt:
                problems.append(f"{run['where']}: prints, but no text block follows it; it printed:\n"
                                f"{stdout}")
        elif not outputs_match(shown["code"], stdout, shown["directive"]):
            problems.append(f"{run['where']}: printed what its text block ({shown['where']}) does not show "
                            f"(tests/test_pages.py says how they are compared); it printed:\n{stdout}"
                            f"and the page shows:\n{shown['code']}")
    return problems


@pytest.mark.parametrize("page", [p for p in PAGES if any(b["lang"] in RUN and b["why"] is None
                                                           for b in blocks(p))], ids=_id)
def test_page_runs_top_to_bottom_and_prints_what_it_shows(page, tmp_path):
    done, printed = run_page(page, tmp_path)
    assert done.returncode == 0, f"{_id(page)} failed:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    problems = output_problems(page, printed)
    assert not problems, "\n\n".join(problems)


def test_output_options_are_known_and_stand_above_an_output():
    problems = []
    for page in PAGES:
        found = blocks(page)
        outputs = {id(b["output"]) for b in found if b["output"] is not None}
        for block in found:
            if block["directive"] is None:
                continue
            if id(block) not in outputs:
                problems.append(f"{block['where']}: an output option above a block that is no code "
                                "block's output")
            try:
                parse_directive(block["directive"])
            except ValueError as error:
                problems.append(f"{block['where']}: {error}")
    problems += [f"OUTPUTS_NOT_CHECKED: no page {page}" for page in OUTPUTS_NOT_CHECKED
                 if not (ROOT / page).exists()]
    for page, line in OUTPUT_NOT_SHOWN:
        if not any(line in b["code"] for b in blocks(ROOT / page) if b["output"] is None):
            problems.append(f"OUTPUT_NOT_SHOWN: no block of {page} without output has the line {line!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("expected", "actual", "directive", "matches"), [
    ("loss 0.412, accuracy 0.958", "loss 0.418, accuracy 0.950", None, True),
    ("loss 0.412, accuracy 0.958", "loss 0.512, accuracy 0.958", None, False),
    ("loss 0.412", "loss 0.512", "numbers within 0.1", True),
    ("1077 training examples", "1078 training examples", None, False),
    ("conv2d_1 int8 2.18.0", "conv2d_1 int8 2.18.0", None, True),
    ("conv2d_1", "conv2d_2", None, False),
    ("TensorFlow 2.18.0", "TensorFlow 2.19.0", None, False),
    ("max abs error 3.28e-07", "max abs error 1.1e-06", None, True),
    ("max abs error 3.28e-07", "max abs error 2.0e-03", None, False),
    ("max abs error 3.28e-07", "max abs error 2.0e-03", "errors below 1e-2", True),
    ("[[ 0.25 -0.5 ]]", "[[-0.25 -0.5 ]]", None, False),
    ("[[ 0.25 -0.5 ]]", "[[ 0.26 -0.51]]", None, True),
    ("file      size\nmodel.tflite  244.5 KiB", "file  size\nmodel.tflite 244.1 KiB  \n\n", None, True),
    ("a\n...\nz", "a\nb\nc\nz", None, True),
    ("a\n...\nz", "a\nz", None, True),
    ("a\n...\nz", "a\nb", None, False),
    ("step ... ms, 3 epochs", "step 12.5 ms, 3 epochs", None, True),
    ("a\nb", "a", None, False),
    ("a b", "ab", None, False),
    ("accuracy 0.8833 (+0.00)", "accuracy 0.8806 (+0.01)", None, True),
    ("fast paths 5.0 ms, plain 9 ms", "fast paths 12.5 ms, plain 3 ms", "any numbers", True),
    ("fast paths 5.0 ms, plain 9 ms", "fast path 12.5 ms, plain 3 ms", "any numbers", False),
])
def test_outputs_match(expected, actual, directive, matches):
    assert outputs_match(expected, actual, directive) is matches


def test_the_site_builds_without_warnings_and_shows_every_public_name(tmp_path):
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-6000:]
    assert "WARNING" not in done.stderr, done.stderr[-6000:]
    html = "".join(page.read_text() for page in (site / "api").glob("*.html"))
    names = set()
    for page in (ROOT / "docs/api").glob("*.md"):
        names |= set(re.findall(r"^::: ([\w.]+)$", page.read_text(), flags=re.M))
    missing = sorted(name for name in names if f'id="{name}"' not in html)
    assert not missing, f"API pages without a section for: {missing}"
    for guide in (ROOT / "docs/guides").glob("*.md"):
        assert (site / "guides" / f"{guide.stem}.html").exists()


@pytest.mark.parametrize(("script", "figure", "inputs"), [
    ("norm_axes.py", "norm-axes.png", []),
    ("speed_ratios.py", "speed-ratios.png", ["BENCHMARKS.json"]),  # the committed run's own numbers
])
def test_the_figures_are_drawn_by_their_scripts(script, figure, inputs, tmp_path):
    # The pictures in docs/img are what the scripts in docs/_figures draw: rerun, they give the same
    # picture (up to font rendering between matplotlib versions).
    import matplotlib.image as image
    import numpy as np

    out = tmp_path / figure
    command = [sys.executable, str(ROOT / "docs/_figures" / script), *(str(ROOT / i) for i in inputs),
               str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    drawn, committed = image.imread(out), image.imread(ROOT / "docs/img" / figure)
    assert drawn.shape == committed.shape
    assert np.abs(drawn - committed).mean() < 0.01


# A documented signature: a table row that opens with `name(arguments)` in backticks, linked to its
# API section (the pages' tables of functions); calls in running text are examples, not signatures.
SIGNATURE = re.compile(r"^\| \[`(?P<name>\w+)\((?P<arguments>[^`]*)\)`\]"
                       r"\([^)]*#(?P<path>keras_norms[\w.]*)\)", flags=re.M)


def _documented_signatures() -> list[tuple[str, str, str]]:
    found = []
    for page in PAGES:
        for match in SIGNATURE.finditer(page.read_text()):
            where = f"{_id(page)}: {match['name']}({match['arguments']})"
            found.append((where, match["path"], match["arguments"]))
    return found


@pytest.mark.parametrize(("where", "path", "arguments"), _documented_signatures(), ids=lambda v: str(v)[:60])
def test_documented_signatures_match_the_code(where, path, arguments):
    # Every argument, in order, with its default: the pages may not drop one (as they once dropped
    # recalibrate_batch_norms' batch_size and verbose).
    import ast
    import importlib
    import inspect

    module_name, _, name = path.rpartition(".")
    target = getattr(importlib.import_module(module_name), name)
    documented = ast.parse(f"def f({arguments}): pass").body[0].args
    actual = inspect.signature(target).parameters.values()
    names = [a.arg for a in documented.posonlyargs + documented.args]
    names += (["*" + documented.vararg.arg] if documented.vararg else ["*"] if documented.kwonlyargs else [])
    names += [a.arg for a in documented.kwonlyargs]
    names += ["**" + documented.kwarg.arg] if documented.kwarg else []
    expected = []
    for p in actual:
        if p.kind is p.KEYWORD_ONLY and "*" not in "".join(expected):
            expected.append("*")
        expected.append({p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name)
    assert names == expected, f"{where}: documented {names}, the code has {expected}"
    defaults = [ast.literal_eval(d) for d in documented.defaults] + [
        ast.literal_eval(d) for d in documented.kw_defaults if d is not None]
    code_defaults = [p.default for p in actual if p.default is not p.empty]
    assert defaults == code_defaults, f"{where}: documented defaults {defaults}, the code has {code_defaults}"
