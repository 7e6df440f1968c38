"""Build the starter model's training text from what a Debian + Python machine has, offline.

    python scripts/base_corpus.py OUT.txt

Sources (each named, with size and licence, in corpora/README.md):
- English fortunes (Debian package `fortunes`, /usr/share/games/fortunes): every cookie, except any that
  mentions Shakespeare, Hamlet or Macbeth, so tiny-shakespeare stays a fair test of fine-tuning;
- the licence texts of /usr/share/common-licenses (Debian `base-files`), each once;
- the US constitution and declaration (Debian `miscfiles`, /usr/share/state);
- the Python documentation as plain text (Debian `python3-doc`, its HTML stripped to the text);
- the Python standard library's own .py source (the running Python's `stdlib`), tests left out.

Left out on purpose: text-editor manuals, translation and localisation files (.po, .mo), other scripts'
fortunes, so evaluations on such text stay fair. Documents (a cookie, a licence, a doc page, a module) are
shuffled with a fixed seed, so the last 10% that training holds out for validation is a mix of all of them.
Each source is capped so prose is about half of the text. The output is the same for the same packages.
"""

from __future__ import annotations

import gzip
import html.parser
import random
import re
import sys
import sysconfig
from pathlib import Path

FORTUNES = Path("/usr/share/games/fortunes")
LICENCES = Path("/usr/share/common-licenses")
STATE = Path("/usr/share/state")
PYTHON_DOCS = Path("/usr/share/doc/python3/html")
SEED = 20261201
CAPS = {"fortunes": 3_000_000, "licences": 600_000, "state": 100_000, "docs": 7_000_000, "stdlib": 5_000_000}
AVOID = re.compile(rb"shakespeare|hamlet|macbeth", re.IGNORECASE)
PACKAGES = "fortunes miscfiles python3-doc"


def fortunes() -> list[bytes]:
    cookies = []
    for f in sorted(FORTUNES.iterdir()):
        if not f.is_file() or f.suffix or f.is_symlink():
            continue
        for cookie in f.read_bytes().split(b"\n%\n"):
            cookie = cookie.strip(b"%\n")
            if cookie and not AVOID.search(cookie):
                cookies.append(cookie + b"\n")
    return cookies


def licences() -> list[bytes]:
    seen: set[Path] = set()
    texts = []
    for f in sorted(LICENCES.iterdir()):
        real = f.resolve()
        if real in seen or not real.is_file() or f.suffix in {".md"}:
            continue
        seen.add(real)
        texts.append(real.read_bytes())
    return texts


def state_papers() -> list[bytes]:
    return [gzip.decompress(f.read_bytes()) for f in sorted(STATE.glob("*.gz"))]


class _Text(html.parser.HTMLParser):
    """The text of a Sphinx page's main part, blocks on their own lines."""

    BLOCKS = {"p", "div", "pre", "li", "h1", "h2", "h3", "h4", "dt", "dd", "tr", "br", "table", "section"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.depth = 0  # inside <div role="main">
        self.skip = 0  # inside <script>/<style>
        self.pre = 0

    def handle_starttag(self, tag, attrs):
        if tag in {"script", "style"}:
            self.skip += 1
        if tag == "div" and ("role", "main") in attrs:
            self.depth = 1
        elif self.depth and tag == "div":
            self.depth += 1
        if tag == "pre":
            self.pre += 1
        if self.depth and tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in {"script", "style"}:
            self.skip = max(0, self.skip - 1)
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if self.depth and tag in self.BLOCKS:
            self.parts.append("\n")
        if self.depth and tag == "div":
            self.depth -= 1

    def handle_data(self, data):
        if self.depth and not self.skip:
            self.parts.append(data if self.pre else re.sub(r"\s+", " ", data))

    def text(self) -> str:
        lines = [line.rstrip() for line in "".join(self.parts).replace("\u00b6", "").splitlines()]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def python_docs() -> list[bytes]:
    pages = []
    for f in sorted(PYTHON_DOCS.rglob("*.html")):
        if f.parent.name in {"_static", "_sources"} or f.name in {"genindex.html", "search.html"}:
            continue
        if f.name.startswith("genindex") or f.parent.name == "whatsnew" and f.name == "changelog.html":
            continue
        parser = _Text()
        parser.feed(f.read_text(encoding="utf-8", errors="replace"))
        text = parser.text()
        if len(text) > 200:
            pages.append(text.encode())
    return pages


def stdlib() -> list[bytes]:
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idle_test", "site-packages", "__pycache__", "lib2to3", "turtledemo"}
    files = []
    for f in sorted(root.rglob("*.py")):
        if skip & set(f.relative_to(root).parts) or f.name.startswith("test_"):
            continue
        data = f.read_bytes()
        if b"\x00" not in data:
            files.append(f"# {f.relative_to(root).as_posix()}\n".encode() + data)
    return files


def capped(docs: list[bytes], cap: int, rng: random.Random) -> list[bytes]:
    """A random selection of whole documents up to `cap` bytes (all of them when they fit)."""
    order = list(range(len(docs)))
    rng.shuffle(order)
    out, total = [], 0
    for i in order:
        if total + len(docs[i]) > cap:
            continue
        out.append(docs[i])
        total += len(docs[i])
    return out


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/base_corpus.py OUT.txt")
    missing = [p for p in (FORTUNES, LICENCES, STATE, PYTHON_DOCS) if not p.is_dir()]
    if missing:
        sys.exit(f"missing {', '.join(map(str, missing))}: apt-get install {PACKAGES}")
    rng = random.Random(SEED)
    sources = {
        "fortunes": fortunes(),
        "licences": licences(),
        "state": state_papers(),
        "docs": python_docs(),
        "stdlib": stdlib(),
    }
    docs: list[bytes] = []
    for name, found in sources.items():
        chosen = capped(found, CAPS[name], rng)
        size = sum(map(len, chosen))
        print(f"{name}: {len(chosen):,} of {len(found):,} documents, {size:,} bytes", file=sys.stderr)
        docs.extend(chosen)
    rng.shuffle(docs)
    out = Path(sys.argv[1])
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(b"\n".join(docs))
    tmp.replace(out)
    print(f"{out}: {out.stat().st_size:,} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
