"""What a CORPUS argument names: one file, standard input, every file under a folder, or a glob's files.

Folder and glob corpora are read as one text: the files in sorted path order, each followed by
FILE_SEPARATOR (the ASCII file separator U+001C and a newline), so a model learns where one file ends and
the next begins. A folder is walked recursively, and a glob expanded here by the same walk (`**` crosses
folders; quote the pattern on the command line): hidden files and folders (names starting with a dot:
.git and the like) and empty files are left out, symbolic links to folders are not followed, and a file
reached by two paths is read once. `--include`/`--exclude` patterns are matched against each file's path
relative to the folder (or the glob's fixed leading part) and its name.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from charrnn.errors import BadInput

FILE_SEPARATOR = "\x1c\n"


@dataclass
class CorpusSource:
    """The files behind a corpus, in reading order."""

    kind: str  # "file", "folder", "glob", "stdin", or "stream" (a pipe or device: read once)
    label: str  # how messages name it
    files: list[Path | int]  # for "stdin", [the open descriptor of the stream's spool, which has no name]
    root: Path | None = None  # the folder, or the glob's fixed leading part (for relative names)
    stats: list[tuple[int, int]] = field(default_factory=list)  # (size, mtime_ns) of each file

    @property
    def several(self) -> bool:
        """Folder and glob corpora: files are joined with separators and unreadable ones skipped."""
        return self.kind in ("folder", "glob")

    def relative(self, path: Path) -> str:
        if self.root is None:
            return str(path)
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def identity(self, *settings: object) -> str:
        """Names the corpus whatever its contents: the resolved paths and the settings. A new encoding of
        the same identity replaces the old one in the cache."""
        digest = hashlib.sha256(repr(settings).encode())
        for path in self.files:
            digest.update(f"{path.resolve()}\n".encode())
        return digest.hexdigest()[:32]

    def cache_key(self, *settings: object) -> str:
        """Names the encoded form: the identity (paths and settings) with every file's size and
        modification time; for a single file also a hash of its first and last MiB (a file rewritten
        within the same second with the same size is still told apart)."""
        digest = hashlib.sha256(self.identity(*settings).encode())
        for size, mtime in self.stats:
            digest.update(f"{size}\0{mtime}\n".encode())
        if self.kind == "file":
            try:
                digest.update(_head_and_tail(self.files[0]))
            except PermissionError:
                raise BadInput(f"{self.label}: permission denied; check the file's permissions") from None
            except OSError as e:
                raise BadInput(f"{self.label}: cannot read ({e.strerror})") from None
        return digest.hexdigest()[:32]


def _head_and_tail(path: Path, size: int = 1 << 20) -> bytes:
    with open(path, "rb") as f:
        head = f.read(size)
        end = f.seek(0, os.SEEK_END)
        f.seek(max(len(head), end - size))
        tail = f.read(size)
    return hashlib.blake2b(head + b"\0" + tail, digest_size=16).digest()


def _stat(path: Path, label: str) -> tuple[int, int]:
    try:
        st = path.stat()
    except PermissionError:
        raise BadInput(f"{label}: permission denied; check the file's permissions") from None
    except OSError as e:
        raise BadInput(f"{label}: cannot read ({e.strerror})") from None
    return st.st_size, st.st_mtime_ns


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def _filter(
    files: list[Path], root: Path | None, include: Sequence[str], exclude: Sequence[str]
) -> list[Path]:
    if not include and not exclude:
        return files
    kept = []
    for path in files:
        rel = path.relative_to(root).as_posix() if root is not None else path.as_posix()
        if include and not _matches(rel, include):
            continue
        if exclude and _matches(rel, exclude):
            continue
        kept.append(path)
    return kept


def _walk(folder: Path) -> list[Path]:
    files = []
    for top, dirs, names in os.walk(folder, onerror=None, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files.extend(Path(top) / n for n in names if not n.startswith("."))
    return _unique(sorted((f for f in files if f.is_file()), key=lambda p: p.as_posix()))


def _unique(files: list[Path]) -> list[Path]:
    """Each file once: the first of several paths to it (symbolic links) is kept."""
    seen, kept = set(), []
    for path in files:
        real = path.resolve()
        if real not in seen:
            seen.add(real)
            kept.append(path)
    return kept


def _glob_files(pattern: str) -> list[Path]:
    """The files a glob pattern matches, found by walking from its fixed leading folders without
    following symbolic links to folders (Python's glob follows them, and a link loop such as `up -> ..`
    multiplies the matches without end). `**` matches any number of folders, `*`, `?` and `[...]` stay
    within one name, and hidden files and folders are left out unless the pattern names one."""
    root = glob_root(pattern)
    parts = Path(pattern).parts[len(root.parts) if str(root) != "." else 0 :]
    hidden = any(part.startswith(".") for part in parts)
    deepest = None if "**" in parts else len(parts)  # folders below this depth cannot match
    found = []
    if not root.is_dir():
        return found
    for top, dirs, names in os.walk(root, followlinks=False):
        rel_top = Path(top).relative_to(root).parts
        dirs[:] = [] if deepest is not None and len(rel_top) + 1 >= deepest else dirs
        dirs[:] = [d for d in dirs if hidden or not d.startswith(".")]
        for name in names:
            if (hidden or not name.startswith(".")) and _matches_parts((*rel_top, name), parts):
                found.append(Path(top) / name)
    return _unique(sorted((f for f in found if f.is_file()), key=lambda p: p.as_posix()))


def _matches_parts(names: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Whether a relative path's names match a glob's parts, `**` standing for any number of names."""
    if not parts:
        return not names
    if parts[0] == "**":
        return any(_matches_parts(names[i:], parts[1:]) for i in range(len(names) + 1))
    return bool(names) and fnmatch.fnmatchcase(names[0], parts[0]) and _matches_parts(names[1:], parts[1:])


def glob_root(pattern: str) -> Path:
    """The fixed leading folders of a glob pattern ('src/**/*.py' -> 'src')."""
    fixed = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def is_glob(spec: str) -> bool:
    return glob.has_magic(spec) and not Path(spec).exists()


def find_source(spec: str | Path, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> CorpusSource:
    """The files that a corpus argument names (a file, a folder or a glob pattern), in reading order."""
    spec_text = str(spec)
    path = Path(spec)
    if is_glob(spec_text):
        root = glob_root(spec_text)
        found = _glob_files(spec_text)
        files = _filter(found, root, include, exclude)
        source = CorpusSource("glob", repr(spec_text), files, root)
        if not files:
            what = "matches no file" if not found else "matches no file that --include/--exclude keep"
            raise BadInput(f"the pattern {spec_text!r} {what}; check the pattern (quote it in the shell)")
    elif path.is_dir():
        found = _walk(path)
        files = _filter(found, path, include, exclude)
        source = CorpusSource("folder", f"folder {spec_text}", files, path)
        if not files:
            what = "holds no files" if not found else "holds no file that --include/--exclude keep"
            raise BadInput(f"{spec_text} {what}; give a folder with text files in it")
    else:
        if include or exclude:
            raise BadInput(
                "--include and --exclude filter folder and glob corpora; drop them for a single file"
            )
        if not path.exists():
            raise BadInput(f"{spec_text}: no such file")
        if not path.is_file():  # a pipe (`<(...)`) or a device: no size, no seeking
            return CorpusSource("stream", spec_text, [path], stats=[(0, 0)])
        source = CorpusSource("file", spec_text, [path])
    source.stats = [_stat(f, str(f)) for f in source.files]
    if source.several:  # empty files add nothing but a separator
        kept = [(f, st) for f, st in zip(source.files, source.stats, strict=True) if st[0] > 0]
        source.files, source.stats = [f for f, _ in kept], [st for _, st in kept]
        if not source.files:
            raise BadInput(f"{source.label} holds only empty files; give one with text in it")
    return source
