"""Every code block of README.md and docs/ runs, page by page, top to bottom, as written.

Each page runs in a process of its own, in a scratch directory that links the repository's files
(so `python examples/...` and `make docs` work and nothing is written into the repository):
`python` blocks share one namespace, `bash` blocks run with the virtual environment first on PATH.
`text` blocks are output and are not run. A block that cannot run on one machine (a SLURM or
Kubernetes submission, a second host, `make test` itself) says so in an HTML comment on the line
above it, `<!-- not run: why -->`; those are listed and kept few.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
FENCE = re.compile(r"(?P<marker>^<!-- not run: (?P<why>[^>]*?) -->\n)?"
                   r"^```(?P<lang>[\w-]*)\n(?P<code>.*?)^```$", flags=re.M | re.S)
RUN = {"python", "bash"}
OUTPUT = {"text"}
MAX_NOT_RUN = 8


def blocks(page: Path) -> list[dict]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start("code"))
        found.append({"lang": match["lang"], "code": match["code"], "why": match["why"],
                      "where": f"{page.relative_to(ROOT)}:{line}"})
    return found


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


@pytest.mark.parametrize("page", [p for p in PAGES if any(b["lang"] in RUN and b["why"] is None
                                                           for b in blocks(p))], ids=_id)
def test_page_runs_top_to_bottom(page, tmp_path):
    runnable = [b for b in blocks(page) if b["lang"] in RUN and b["why"] is None]
    work = tmp_path / "repo"
    work.mkdir()
    _scratch(work)
    listing = tmp_path / "blocks.json"
    listing.write_text(json.dumps(runnable))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               KERAS_NORMS_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run([sys.executable, str(ROOT / "tests/_run_page.py"), str(listing)], cwd=work,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{_id(page)} failed:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"


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
