"""Checks the built site in headless Chromium (`make docs-check`).

Builds the site (mkdocs, strict) into a temporary directory, or takes a built one (--site), serves
it on localhost with http.server (mkdocs-material's search runs in a web worker that fetches
search/search_index.json: it works over http://, not file://), and in Chromium, driven by
Playwright:

- every page (site/**/*.html but 404.html) loads without a console error, a page error, a failed
  request or a response >= 400;
- every <img> is loaded (naturalWidth > 0);
- math: every `.arithmatex` element (what pymdownx.arithmatex marks) holds a `.katex` element
  (typeset by KaTeX) and no `.katex-error`, and the API's layer pages (those under API reference >
  Layers in the nav) hold at least one between them;
- the nav: the home page's nav links to Start here and to the API reference; each of its links,
  clicked in turn (each in the nav of the page the last click landed on), lands on its page, whose
  nav marks that link active and whose h1 matches the link: Start here's is "Start here"; the others
  name at least half the words of the link's label (a word matching its longer form: norm,
  normalization), or of the label of its section (an overview page), or, on the home page, the
  site's name;
- the search: typing a layer's name in the search box gives a result that links to the heading
  `#keras_norms.<name>`, and that heading is on the page the result links to;
- offline: no page requests anything from another host (the site serves its own math, fonts and
  scripts); such requests are answered empty, never fetched, and each host is a problem.

Prints a summary and exits 1 with every problem found. Chromium is Debian's (/usr/bin/chromium, or
--chromium or $CHROMIUM): Playwright's own browser download is not needed. Run from the repository root:

    python docs/_check/browser.py                  # build the site, then check it
    python docs/_check/browser.py --site site      # check a built site
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
SEARCHES = ("GroupNormalization", "RMSNormalization", "SPADE")
START_HERE = "Start here"
API_SECTION = "API reference"
LAYERS_SECTION = "Layers"  # under API reference in the nav: the API's layer pages
TIMEOUT_MS = 10_000

# The primary nav, as links: label, href (resolved), and the labels of the sections above it.
NAV_LINKS = "nav.md-nav--primary a.md-nav__link[href]:not(nav.md-nav--secondary a)"  # not a page's toc
NAV_JS = """() => [...document.querySelectorAll('NAV_LINKS')]
  .map(a => ({
    label: a.textContent.replace(/\\s+/g, ' ').trim(),
    href: a.href,
    sections: [...(function* (e) {
      for (let li = e.closest('li.md-nav__item--nested'); li;
           li = li.parentElement.closest('li.md-nav__item--nested')) {
        const l = li.querySelector(':scope > label.md-nav__link, :scope > div > label.md-nav__link');
        if (l) yield l.textContent.replace(/\\s+/g, ' ').trim();
      }
    })(a)].reverse(),
  }))""".replace("NAV_LINKS", NAV_LINKS)

# The toggle of the outermost collapsed nav section above a link (null if none): what a reader clicks.
CLOSED_JS = """a => { let id = null;
  for (let li = a.closest('li.md-nav__item--nested'); li;
       li = li.parentElement.closest('li.md-nav__item--nested')) {
    const nav = li.querySelector(':scope > nav'), toggle = li.querySelector(':scope > input.md-nav__toggle');
    if (nav && toggle && !nav.checkVisibility({visibilityProperty: true})) id = toggle.id;
  }
  return id; }"""

# What a page shows once loaded: its images, its math, its h1 and the nav link marked active.
PAGE_JS = """() => ({
  images: [...document.images].map(i => ({src: i.currentSrc || i.src, complete: i.complete,
                                          width: i.naturalWidth})),
  math: [...document.querySelectorAll('.arithmatex')].map(m => ({
    rendered: m.querySelector('.katex') !== null,
    error: m.querySelector('.katex-error') !== null,
    text: m.textContent.trim().slice(0, 60),
  })),
  h1: (document.querySelector('article h1') || {innerText: ''}).innerText.replace(/\\u00b6/g, '').trim(),
  site: (document.querySelector('.md-header__topic') || {innerText: ''}).innerText.trim(),
  active: [...document.querySelectorAll('nav.md-nav--primary a.md-nav__link--active')]
    .map(a => a.textContent.replace(/\\s+/g, ' ').trim()),
})"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def build(site: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the site does not build (mkdocs build --strict):\n{done.stdout}{done.stderr}")


def matches(h1: str, label: str) -> bool:
    """Whether the h1 names at least half the words of the label, a word matching its longer form."""
    words, named = re.findall(r"\w+", label.lower()), re.findall(r"\w+", h1.lower())
    found = sum(any(n.startswith(w) or w.startswith(n) for n in named) for w in words)
    return bool(words) and 2 * found >= len(words)


class Checker:
    def __init__(self, browser, base: str):
        self.base = base
        self.host = urlsplit(base).netloc
        self.problems: list[str] = []
        self.outside: Counter[str] = Counter()
        self.context = browser.new_context(viewport={"width": 1440, "height": 1000})
        self.context.set_default_timeout(TIMEOUT_MS)
        # Only other hosts' requests are routed (matched in the browser's driver, not here).
        self.context.route(re.compile(rf"^https?://(?!{re.escape(self.host)}/)"), self._outside)

    def _outside(self, route):
        self.outside[urlsplit(route.request.url).netloc] += 1
        kind = {"stylesheet": "text/css", "script": "text/javascript"}.get(
            route.request.resource_type, "text/plain")
        route.fulfill(status=200, content_type=kind, body="")

    def rel(self, url: str) -> str:
        return url[len(self.base):] if url.startswith(self.base) else url

    def open(self, where: str, leaving: bool = False):
        """A new tab whose console errors, page errors and failed requests become problems of `where`.

        leaving: the tab goes on to the next page before this one is done loading (the nav's clicks,
        the search), so requests cut short by that (net::ERR_ABORTED) are not problems; each page's
        own loading is checked, to the end, by `page`.
        """
        page = self.context.new_page()
        at = (lambda: f"{where}, on {self.rel(page.url.split('#')[0])}") if leaving else lambda: where
        page.on("console", lambda m: m.type == "error" and self.problems.append(
            f"{at()}: console error: {m.text} ({self.rel(m.location.get('url', ''))})"))
        page.on("pageerror", lambda e: self.problems.append(f"{at()}: page error: {e}"))
        page.on("requestfailed", lambda r: (leaving and r.failure == "net::ERR_ABORTED")
                or self.problems.append(f"{at()}: request failed: {self.rel(r.url)} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(
            f"{at()}: HTTP {r.status} for {self.rel(r.url)}"))
        return page

    def page(self, path: str) -> dict:
        page = self.open(path)
        page.goto(self.base + path, wait_until="load")
        # Images a browser would load lazily, scrolled to; math rendered once KaTeX has run.
        page.evaluate("() => document.querySelectorAll('img[loading=lazy]').forEach(i => i.scrollIntoView())")
        try:
            page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=5000)
            page.wait_for_function("() => [...document.querySelectorAll('.arithmatex')]"
                                   ".every(m => m.querySelector('.katex'))", timeout=5000)
        except Exception:  # what is missing is reported below, element by element
            pass
        page.wait_for_load_state("networkidle")
        shown = page.evaluate(PAGE_JS)
        page.close()
        for image in shown["images"]:
            if not image["complete"] or image["width"] == 0:
                self.problems.append(f"{path}: image not loaded: {self.rel(image['src'])}")
        for what, bad in (("math not typeset by KaTeX", [m for m in shown["math"] if not m["rendered"]]),
                          ("KaTeX errors", [m for m in shown["math"] if m["rendered"] and m["error"]])):
            if bad:
                more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
                self.problems.append(f"{path}: {what}, {len(bad)} of {len(shown['math'])} .arithmatex: "
                                     + ", ".join(repr(m["text"]) for m in bad[:3]) + more)
        return shown

    def nav(self) -> list[dict]:
        """The home page's nav: its links, each followed. Returns them."""
        home = self.open("nav", leaving=True)
        home.goto(self.base + "index.html", wait_until="load")
        links = home.evaluate(NAV_JS)
        if not links:
            self.problems.append("nav: the home page has no nav links (nav.md-nav--primary a.md-nav__link)")
        starts = [n for n in links if n["label"] == START_HERE and not n["sections"]]
        api = [n for n in links if n["sections"][:1] == [API_SECTION]]
        if not starts:
            self.problems.append(f"nav: no top-level link labelled {START_HERE!r} on the home page")
        if not api:
            self.problems.append(f"nav: no links under the section {API_SECTION!r} on the home page")
        for i, link in enumerate(links):
            # Each link clicked in the nav of the page the last click landed on: the same nav.
            where = " > ".join([*link["sections"], link["label"]])
            target = home.locator(NAV_LINKS).nth(i)
            if target.evaluate("a => a.href") != link["href"]:
                self.problems.append(f"nav: {self.rel(home.url)}'s nav differs from the home page's: "
                                     f"its link {i} is not {where!r}")
                home.goto(self.base + "index.html", wait_until="load")
            try:
                for _ in range(len(link["sections"])):
                    toggle = target.evaluate(CLOSED_JS)
                    if toggle:
                        home.locator(f'label.md-nav__link[for="{toggle}"]').click()
                target.click()
                home.wait_for_load_state("load")
            except Exception as e:  # a problem; the next link from the home page
                self.problems.append(f"nav: {where!r} could not be followed: {str(e).splitlines()[0]}")
                home.goto(self.base + "index.html", wait_until="load")
                continue
            shown = home.evaluate(PAGE_JS)
            landed = home.url.split("#")[0]
            if landed != link["href"].split("#")[0]:
                self.problems.append(f"nav: {where!r} links to {self.rel(link['href'])}, "
                                     f"the click landed on {self.rel(landed)}")
            if link["label"] not in shown["active"]:
                self.problems.append(f"nav: {where!r} lands on {self.rel(landed)}, whose nav marks "
                                     f"{shown['active'] or 'nothing'} active")
            names = [link["label"], *link["sections"][-1:]]
            if landed == self.base or landed == self.base + "index.html":
                names.append(shown["site"])
            exact = starts and link is starts[0]
            if shown["h1"] != START_HERE if exact else not any(matches(shown["h1"], n) for n in names):
                self.problems.append(f"nav: {where!r} lands on {self.rel(landed)}, whose h1 is "
                                     f"{shown['h1']!r}")
        home.close()
        return links

    def search(self, name: str) -> str | None:
        """Types `name` in the search box; returns the result that links to its API heading."""
        anchor = f"#keras_norms.{name}"
        page = self.open(f"search {name!r}", leaving=True)
        page.goto(self.base + "index.html", wait_until="load")
        page.keyboard.press("/")  # mkdocs-material's shortcut to the search box
        box = page.locator("input.md-search__input")
        if not box.evaluate("e => e === document.activeElement"):
            page.locator("label.md-search__icon, label[for=__search]").first.click()
        box.type(name, delay=20)
        result = page.locator(f'.md-search-result a[href$="{anchor}"]')
        try:
            result.first.wait_for(state="attached")
        except Exception:  # reported with what the search did show
            shown = page.locator(".md-search-result__meta").inner_text().strip()
            hrefs = page.eval_on_selector_all(".md-search-result a[href]", "as => as.map(a => a.href)")
            self.problems.append(f"search {name!r}: no result links to {anchor} "
                                 f"({shown!r}; {[self.rel(h) for h in hrefs[:8]]})")
            page.close()
            return None
        href = result.first.evaluate("a => a.href")
        page.goto(href, wait_until="load")
        heading = page.locator(f'[id="{anchor[1:]}"]')
        if heading.count() == 0 or name not in heading.first.inner_text():
            self.problems.append(f"search {name!r}: the result {self.rel(href)} has no heading naming {name}")
        page.close()
        return self.rel(href)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, help="a built site to check (default: build one)")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--search", action="append", metavar="NAME",
                        help=f"a layer to search for (repeatable; default: {', '.join(SEARCHES)})")
    parser.add_argument("--headed", action="store_true", help="show the browser")
    args = parser.parse_args(argv)
    if not Path(args.chromium).is_file():
        sys.exit(f"no Chromium at {args.chromium}: install Debian's (apt-get install chromium) "
                 "or name one with --chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("Playwright is not installed: pip install -e '.[docs-check]'")

    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        site = args.site
        if site is None:
            site = Path(tmp) / "site"
            build(site)
        site = site.resolve()
        pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if p.name != "404.html")
        if not pages:
            sys.exit(f"no pages in {site}")
        server, base = serve(site)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=not args.headed,
                                         args=["--no-sandbox"] if os.geteuid() == 0 else [])
            check = Checker(browser, base)
            links = check.nav()
            layer_pages = {check.rel(n["href"].split("#")[0]) for n in links
                           if n["sections"][:2] == [API_SECTION, LAYERS_SECTION]
                           or n["sections"] == [API_SECTION] and n["label"] == LAYERS_SECTION}
            images = math = 0
            layer_math: dict[str, int] = {}
            for path in pages:
                shown = check.page(path)
                images += len(shown["images"])
                math += len(shown["math"])
                if path in layer_pages:
                    layer_math[path] = len(shown["math"])
            if not layer_pages:
                check.problems.append(f"math: the nav has no {API_SECTION} > {LAYERS_SECTION} pages")
            elif not sum(layer_math.values()):
                check.problems.append("math: no math (.arithmatex) on the API layer pages "
                                      f"({', '.join(sorted(layer_pages))})")
            hits = {name: check.search(name) for name in args.search or SEARCHES}
            version = browser.version
            browser.close()
        server.shutdown()

    print(f"docs-check: Chromium {version}, {base} ({site})")
    print(f"  pages checked: {len(pages)} (console, page errors, requests, images, math)")
    print(f"  images: {images}; math elements: {math}, {sum(layer_math.values())} of them on "
          f"{sum(n > 0 for n in layer_math.values())} of the {len(layer_math)} API layer pages ("
          + ", ".join(f"{Path(p).stem} {n}" for p, n in sorted(layer_math.items()) if n) + ")")
    print(f"  nav: {len(links)} links from the home page followed")
    for name, hit in hits.items():
        print(f"  search {name!r}: {hit or 'no hit'}")
    for host, count in check.outside.most_common():
        check.problems.append(f"offline: {count} request(s) to {host}; the site must serve what it uses")
    print(f"  {time.perf_counter() - began:.1f} s")
    if check.problems:
        problems = list(dict.fromkeys(check.problems))
        print(f"\n{len(problems)} problem(s):")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print("  no problems")
    return 0


if __name__ == "__main__":
    sys.exit(main())
