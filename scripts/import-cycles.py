#!/usr/bin/env python3
"""Draws the imports between the source files and reports any circle.

Reads every file under src/, takes the paths it names (`use crate::…`, `use super::…`,
`crate::a::b` written inline, and in the binary `gliznet::…` for the library), resolves each
to the file that defines the module, and prints:

  - the circles between files (strongly connected groups of more than one file); a file's
    import of the mod.rs of its own directory (`super::…`, what the module shares with its
    files) is not counted: that mod.rs declares the file and may call into it, and the two
    are one module seen from both sides (listed apart);
  - the circles between top-level modules (src/model/ counted as one, and so on);
  - the layers from src/main.rs down: each file sits one layer above the highest file it
    imports, so a file only imports from the layers below it.

Test code (`#[cfg(test)]` items, `mod tests { … }`) is left out: tests may reach anywhere.
Exit status 1 when a circle between files is found (`--modules` also fails on a circle
between top-level modules), else 0. Needs only Python 3.

    scripts/import-cycles.py            # the report
    scripts/import-cycles.py --edges    # also every file's imports
"""
import argparse
import re
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


RAW_START = re.compile(r'r#*"')
IDENT = re.compile(r"\w")


def strip_comments_and_strings(text):
    """Blanks out comments, string and char literals (keeping line breaks)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and RAW_START.match(text, i) and not (i and IDENT.match(text[i - 1])):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a); only the first is skipped.
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def skip_item(text, start):
    """The end of the item that begins at `start`: after its balanced `{…}` or its `;`."""
    i, n = start, len(text)
    while i < n and text[i] not in "{;":
        i += 1
    if i >= n or text[i] == ";":
        return i + 1
    depth = 0
    while i < n:
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def strip_test_code(text):
    """Removes the items marked `#[cfg(test)]` (the unit tests and their imports)."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]", text)
        if not m:
            return text
        end = skip_item(text, m.end())
        text = text[: m.start()] + text[end:]


def expand_use_tree(tree):
    """`a::{b, c::{d, e as f}, self}` → [[a, b], [a, c, d], [a, c, e], [a]]."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    paths = []

    def walk(prefix, s):
        # s is one tree: `x::y::{…}`, `x::y`, `*`, `self`.
        brace = s.find("{")
        if brace >= 0:
            head = [p for p in s[:brace].split("::") if p]
            inner = s[brace + 1: s.rfind("}")]
            for part in split_top(inner):
                if part:
                    walk(prefix + head, part)
            return
        segs = [p for p in s.split("::") if p and p not in ("self", "*")]
        paths.append(prefix + segs)

    walk([], tree)
    return paths


def split_top(s):
    parts, depth, cur = [], 0, ""
    for c in s:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    parts.append(cur)
    return parts


class Crate:
    """The library (src/lib.rs) and the binary (src/main.rs and the modules it declares)."""

    def __init__(self):
        # (crate, module path tuple) -> file; crate is "lib" or "bin".
        self.modules = {}
        self.files = {}
        main = strip_comments_and_strings((SRC / "main.rs").read_text())
        bin_modules = set(re.findall(r"\bmod\s+(\w+)\s*;", main))
        for path in sorted(SRC.rglob("*.rs")):
            rel = path.relative_to(SRC)
            parts = list(rel.parts)
            if parts == ["main.rs"]:
                key = ("bin", ())
            elif parts == ["lib.rs"]:
                key = ("lib", ())
            else:
                krate = "bin" if parts[0].removesuffix(".rs") in bin_modules else "lib"
                parts[-1] = parts[-1][:-3]
                if parts[-1] == "mod":
                    parts.pop()
                key = (krate, tuple(parts))
            name = str(path.relative_to(ROOT))
            self.modules[key] = name
            self.files[name] = key

    def resolve(self, krate, segs):
        """The file defining the longest module prefix of `segs` in `krate`."""
        for k in range(len(segs), -1, -1):
            f = self.modules.get((krate, tuple(segs[:k])))
            if f:
                return f
        return None


USE_RE = re.compile(r"\b(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);")


def imports(crate, name):
    """The files that file `name` imports from."""
    krate, module = crate.files[name]
    text = strip_test_code(strip_comments_and_strings((ROOT / name).read_text()))
    found = set()
    # The modules this file declares (`mod x;`) are named by their bare names inside it.
    children = set(re.findall(r"\bmod\s+(\w+)\s*;", text))
    roots = {"crate", "super", "self", "gliznet"} | children

    def absolute(segs):
        # `module` is the file's module path (a mod.rs is its directory's module), so
        # `super` drops its last part.
        base = list(module)
        if segs[0] in children:
            return krate, base + segs
        if segs[0] == "gliznet":
            return "lib", segs[1:]
        if segs[0] == "crate":
            return krate, segs[1:]
        while segs and segs[0] in ("self", "super"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
        return krate, base + segs

    def add(segs):
        if not segs or segs[0] not in roots:
            return
        target = crate.resolve(*absolute(segs))
        if target and target != name:
            found.add(target)

    for m in USE_RE.finditer(text):
        for segs in expand_use_tree(m.group(1)):
            add(segs)
    body = USE_RE.sub(" ", text)
    path_re = re.compile(
        r"(?<![\w:])(" + "|".join(sorted(roots)) + r")((?:::\w+)+)"
    )
    for m in path_re.finditer(body):
        add([m.group(1)] + [s for s in m.group(2).split("::") if s])
    return found


def strongly_connected(graph):
    index, low, on_stack, stack, groups = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            groups.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def witness(graph, group):
    """One way around a circle inside `group`: `a -> b -> … -> a`."""
    members, start = set(group), group[0]
    prev, frontier, seen = {}, [start], {start}
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return " -> ".join(path[::-1] + [start])
                if w in members and w not in seen:
                    seen.add(w)
                    prev[w] = v
                    following.append(w)
        frontier = following
    return " ".join(group)


def top_module(crate, name):
    """src/model/ for any file under it; a file directly under src/ is its own module."""
    _, module = crate.files[name]
    if module and (SRC / module[0]).is_dir():
        return f"src/{module[0]}/"
    return name


def is_face_of(child, face):
    """Whether `face` is the mod.rs of a directory holding `child` (its own module's face)."""
    face_path = Path(face)
    return face_path.name == "mod.rs" and face_path.parent in Path(child).parents


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edges", action="store_true", help="print every file's imports")
    parser.add_argument("--modules", action="store_true",
                        help="also fail on a circle between top-level modules")
    args = parser.parse_args()

    crate = Crate()
    graph = {name: imports(crate, name) for name in crate.files}
    status = 0

    if args.edges:
        print("== imports")
        for name in sorted(graph):
            print(f"{name}: {' '.join(sorted(graph[name])) or '-'}")
        print()

    # A file's `super::…` up to the mod.rs of its own directory names what that module
    # shares with its files; the mod.rs in turn declares them and calls into them. That pair
    # is one module seen from two sides and is reported apart, not as a circle.
    down = {a: {b for b in bs if not is_face_of(a, b)} for a, bs in graph.items()}
    print("== circles between files")
    circles = [g for g in strongly_connected(down) if len(g) > 1]
    if circles:
        status = 1
        for g in circles:
            print(f"  {len(g)} files: {witness(down, g)}")
    else:
        edges = sum(len(v) for v in graph.values())
        print(f"  none ({len(graph)} files, {edges} imports between them)")

    print("== a mod.rs and the files of its own directory using each other (one module)")
    inner = [g for g in strongly_connected(graph) if len(g) > 1 and g not in circles]
    for g in inner:
        faces = sorted(f for f in g if f.endswith("mod.rs"))
        users = sorted(a for a in g for b in graph[a] if b in faces and is_face_of(a, b))
        print(f"  {' '.join(faces)}: used by {' '.join(users)}")
    if not inner:
        print("  none")

    print("== circles between top-level modules (a directory under src/ counted as one)")
    mod_graph = {}
    for name, targets in graph.items():
        a = top_module(crate, name)
        mod_graph.setdefault(a, set())
        mod_graph[a] |= {top_module(crate, t) for t in targets} - {a}
    mod_circles = [g for g in strongly_connected(mod_graph) if len(g) > 1]
    for g in mod_circles:
        if args.modules:
            status = 1
        print(f"  {witness(mod_graph, g)}")
        for a in g:
            for b in sorted(mod_graph[a] & set(g)):
                edges = sorted(
                    f"{f} -> {t}"
                    for f, ts in graph.items()
                    if top_module(crate, f) == a
                    for t in ts
                    if top_module(crate, t) == b
                )
                print(f"    {'; '.join(edges)}")
    if not mod_circles:
        print("  none")

    if circles:
        return status
    # Layer 0: files importing nothing in the crate; any other file sits one layer above the
    # highest file it imports (a mod.rs above the files of its directory).
    level = {}

    def depth(v):
        if v not in level:
            level[v] = 1 + max((depth(w) for w in down[v]), default=-1)
        return level[v]

    for v in sorted(down):
        depth(v)
    print("== layers from src/main.rs down (a file imports only from the layers below it)")
    for n in range(max(level.values()), -1, -1):
        names = sorted(v for v in down if level[v] == n)
        print(f"  {n:2}: {' '.join(names)}")
    return status


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends quietly
    sys.exit(main())
