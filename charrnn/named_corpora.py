"""Named corpora: `charrnn train shakespeare` instead of a path.

Each entry says what the text is, where it comes from and how to check it. Fetched or built files live in
the cache folder (see `charrnn.paths`), never in the project. The human-readable list is corpora/README.md.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import sysconfig
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from charrnn.atomic import atomic_write
from charrnn.errors import BadInput, MissingResource
from charrnn.paths import cache_dir
from charrnn.sources import glob_root, is_glob


@dataclass(frozen=True)
class NamedCorpus:
    name: str
    description: str
    source: str
    licence: str
    filename: str
    size: int | None = None  # bytes, for fixed downloads
    sha256: str | None = None  # for fixed downloads
    build: Callable[[Path], None] | None = None  # for corpora made on this machine


STDLIB_TARGET_BYTES = 1_000_000


def build_python_stdlib(dest: Path) -> None:
    """Concatenate the standard library's own ASCII .py files (sorted, top level first) to ~1 MB.

    Works offline on any machine with Python, like char-rnn's Linux-source demo. The exact text depends on
    the Python version, so it has no fixed checksum; the cache file name carries the version.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("[a-z]*/*.py"))
    skip = ("test", "idlelib", "lib2to3", "site-packages", "turtledemo", "tkinter")
    parts: list[bytes] = []
    total = 0
    for f in files:
        if any(s in f.parts for s in skip) or f.name.startswith("test"):
            continue
        try:
            data = f.read_bytes()
        except OSError:
            continue
        if not data.isascii() or b"\x00" in data or b"\r" in data:
            continue
        header = f"# ---- {f.relative_to(stdlib).as_posix()} ----\n".encode()
        parts.append(header + data.rstrip(b"\n") + b"\n\n")
        total += len(parts[-1])
        if total >= STDLIB_TARGET_BYTES:
            break
    if not parts:
        raise MissingResource(f"could not find the Python standard library's source files in {stdlib}")
    _atomic_write_bytes(dest, b"".join(parts))


# Folders of the standard library that hold its own tests (Lib/test, unittest/test, ctypes/test,
# tkinter/test, sqlite3/test, distutils/tests, lib2to3/tests, idlelib/idle_test).
NAMES_SKIP_DIRS = frozenset({"test", "tests", "idle_test"})

# One pass over a source file's bytes: a string literal or a comment (matched so that nothing inside one
# counts) or a `def`/`class` statement at the start of a line, at any indentation, whose ASCII name is
# captured. Agrees with `ast` on the standard library at a fraction of its cost (parsing it all takes
# seconds).
_STRING = (
    rb"[rRbBuUfF]{0,2}(?:"
    rb"'''[^'\\]*(?:(?:\\.|'(?!''))[^'\\]*)*'''"
    rb'|"""[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*"""'
    rb"|'[^'\\\n]*(?:\\.[^'\\\n]*)*'"
    rb'|"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
    rb")"
)
_DEFINITION = re.compile(
    _STRING + rb"|\#[^\n]*|^[ \t\f]*(?:async[ \t]+)?(?:def|class)[ \t]+([A-Za-z_]\w*)(?![\w\x80-\xff])",
    re.MULTILINE | re.DOTALL,
)


def _public(name: str) -> bool:
    return name.isascii() and name.isidentifier() and not name.startswith("_")


def _defined_names(source: bytes) -> list[str]:
    """The names of the functions, methods and classes a Python source file defines (ASCII names only)."""
    return [n.decode() for n in _DEFINITION.findall(source) if n]


def build_python_names(dest: Path) -> None:
    """The standard library's public names, one per line: its module names (dotted, as `json.decoder`,
    plus the built-in and extension modules of `sys.stdlib_module_names`) and the names of the functions,
    methods and classes its .py files define at any nesting.

    Skips the test packages, `__pycache__` and `__phello__` (a test package), site-packages and other
    folders that are not packages (not identifiers), and names that are private (leading `_`, or a module
    name with a private part) or not ASCII identifiers; a public name defined in a private module
    (`_pydecimal.Decimal`) counts. Sorted and unique, so the text depends only on the Python installation;
    like python-stdlib, the cache file name carries the version. Holds only the set of names, reading one
    file at a time.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    names = {m for m in getattr(sys, "stdlib_module_names", ()) if _public(m)}
    found_source = False
    for folder, dirs, files in os.walk(stdlib):
        dirs[:] = [
            d for d in dirs if d.isidentifier() and not d.startswith("__") and d not in NAMES_SKIP_DIRS
        ]
        package = Path(folder).relative_to(stdlib).parts
        for file in files:
            stem, dot, ext = file.rpartition(".")
            if not (dot and ext == "py"):
                continue
            try:
                source = (Path(folder) / file).read_bytes()
            except OSError:
                continue
            found_source = True
            module = package if stem == "__init__" else (*package, stem)
            if module and all(_public(part) for part in module):
                names.add(".".join(module))
            names.update(n for n in _defined_names(source) if not n.startswith("_"))
    if not found_source:
        raise MissingResource(f"could not find the Python standard library's source files in {stdlib}")
    _atomic_write_bytes(dest, "".join(f"{n}\n" for n in sorted(names)).encode())


CORPORA: dict[str, NamedCorpus] = {
    c.name: c
    for c in [
        NamedCorpus(
            name="shakespeare",
            description="tiny-shakespeare: ~40,000 lines of Shakespeare's plays, 65 characters",
            source="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
            licence="public domain",
            filename="tinyshakespeare.txt",
            size=1_115_394,
            sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        ),
        NamedCorpus(
            name="python-stdlib",
            description="~1 MB of the Python standard library's own source, built offline on this machine",
            source="this Python installation's standard library (sysconfig 'stdlib' path)",
            licence="Python Software Foundation License",
            filename="python-stdlib-{version}.txt",
            build=build_python_stdlib,
        ),
        NamedCorpus(
            name="python-names",
            description="~8,000 public names of the Python standard library (modules, functions, classes), "
            "one per line, built offline on this machine",
            source="this Python installation's standard library (sysconfig 'stdlib' path)",
            licence="Python Software Foundation License",
            filename="python-names-{version}.txt",
            build=build_python_names,
        ),
    ]
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write_bytes(dest: Path, data: bytes) -> None:
    with atomic_write(dest) as f:
        f.write(data)


def _local_copy(corpus: NamedCorpus) -> Path | None:
    """A verified copy in $CHARRNN_CORPUS_DIR, if the user or CI provides one."""
    folder = os.environ.get("CHARRNN_CORPUS_DIR")
    if not folder:
        return None
    candidate = Path(folder) / corpus.filename
    if candidate.is_file() and sha256_of(candidate) == corpus.sha256:
        return candidate
    return None


def _download(corpus: NamedCorpus, dest: Path) -> None:
    try:
        with urllib.request.urlopen(corpus.source, timeout=30) as response:
            data = response.read()
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", e)
        raise MissingResource(
            f"cannot download corpus {corpus.name!r} from {corpus.source} ({reason}); if offline, fetch "
            f"{corpus.filename} another way and put it at {dest} or in a folder named by $CHARRNN_CORPUS_DIR"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != corpus.sha256:
        raise MissingResource(
            f"downloaded {corpus.name!r} has SHA-256 {digest}, expected {corpus.sha256}; not using it"
        )
    _atomic_write_bytes(dest, data)


def corpus_path(name: str) -> Path:
    """The local file of a named corpus, downloading or building it into the cache on first use."""
    corpus = CORPORA[name]
    if corpus.build is not None:
        version = "{}.{}".format(*sys.version_info[:2])
        dest = cache_dir("corpora") / corpus.filename.format(version=version)
        if not dest.is_file():
            corpus.build(dest)
        return dest
    local = _local_copy(corpus)
    if local is not None:
        return local
    dest = cache_dir("corpora") / corpus.filename
    if dest.is_file() and dest.stat().st_size == corpus.size:
        return dest
    _download(corpus, dest)
    return dest


def resolve(spec: str) -> tuple[str | Path, str]:
    """A CORPUS argument -> (path, glob pattern or '-'; run name). Paths win over names; unknown names are
    an error."""
    if spec == "-":
        return "-", "stdin"
    path = Path(spec)
    if path.exists():
        return path, (path.resolve().name or "corpus") if path.is_dir() else path.stem
    if is_glob(spec):
        return spec, glob_root(spec).resolve().name or "corpus"
    if spec in CORPORA:
        return corpus_path(spec), spec
    names = ", ".join(CORPORA)
    raise BadInput(f"{spec}: no such file, and not a named corpus (named corpora: {names})")
