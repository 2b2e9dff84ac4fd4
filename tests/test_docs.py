"""The docs still work: every relative link resolves, every `climd` command in a code block parses.

Fast and offline: links are checked against the files of this checkout (and ``#anchors`` against the
target's headings, slugged as GitHub does); commands are parsed by click's own option parser for the
Typer app, so an unknown subcommand, an unknown or misspelt option, an option missing its value or an
extra argument fails here. Option *values* are not converted (paths need not exist, ``$B`` stays as
written), and nothing is run.

Skipped, on purpose (listed by ``test_commands_parse`` with ``-rA``/``-s``): usage synopses rather
than commands, i.e. lines with ``[--opt ...]`` brackets, ``<PLACEHOLDER>`` angle brackets or an
ellipsis (``...``/``…``), whose words are not option values that a shell would pass.
"""
from __future__ import annotations

import re
import shlex
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK_DOCS = sorted({ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "results" / "README.md",
                    *(ROOT / "docs").glob("*.md")})
COMMAND_DOCS = sorted({ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")})
README_MAX_LINES = 250

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
SYNOPSIS = re.compile(r"\[--|<[A-Za-z][^>]*>|\.\.\.|…")
ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SHELL_OPS = {"&&", "||", ";", "|", "&", "(", ")"}
REDIRECTS = {">", ">>", "<", ">&", "&>"}


def _rel(path: Path) -> str:
    path = Path(path)
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def split_fences(text: str) -> tuple[list[tuple[int, str]], list[list[tuple[int, str]]]]:
    """(prose lines, code blocks), each line with its 1-based number."""
    prose, blocks, block, fence = [], [], None, None
    for no, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if block is None:
            if m:
                block, fence = [], m.group(1)
            else:
                prose.append((no, line))
        elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip()[len(m.group(1)):].strip():
            blocks.append(block)
            block = None
        else:
            block.append((no, line))
    if block is not None:
        blocks.append(block)
    return prose, blocks


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)        # links keep their text
    text = text.replace("`", "").replace("*", "")
    out = []
    for ch in text.lower():
        cat = unicodedata.category(ch)
        if ch in "-_" or cat[0] in "LN" or cat == "Mn":
            out.append(ch)
        elif ch == " ":
            out.append("-")
    return "".join(out)


def anchors(path: Path) -> set[str]:
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose:
        m = HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(path: Path):
    """(line number, target) of every Markdown link outside code blocks and inline code."""
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    for no, line in prose:
        for m in LINK.finditer(INLINE_CODE.sub("", line)):
            yield no, m.group(1)


def broken_links(path: Path) -> list[str]:
    problems = []
    for no, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):      # http:, https:, mailto:
            continue
        file_part, _, frag = target.partition("#")
        dest = path if not file_part else (path.parent / file_part).resolve()
        where = f"{_rel(path)}:{no}: {target}"
        if not dest.exists():
            problems.append(f"{where}: {file_part} does not exist")
        elif frag and dest.suffix == ".md" and frag.lower() not in anchors(dest):
            problems.append(f"{where}: no heading #{frag} in {_rel(dest)}")
    return problems


@pytest.mark.parametrize("doc", LINK_DOCS, ids=_rel)
def test_relative_links_resolve(doc):
    assert not broken_links(doc), "\n".join(broken_links(doc))


def test_link_checker_catches_a_broken_link_and_anchor(tmp_path):
    doc = tmp_path / "a.md"
    (tmp_path / "b.md").write_text("# Title here\n\n## `climd status`\n")
    doc.write_text("[ok](b.md#climd-status) [gone](c.md) [bad](b.md#nope) `[code](x.md)`\n\n"
                   "```\n[in code](y.md)\n```\n")
    found = broken_links(doc)
    assert len(found) == 2 and "c.md does not exist" in found[0] and "no heading #nope" in found[1]


def test_github_slugs():
    assert github_slug("Losses (`climd train --loss`)") == "losses-climd-train---loss"
    assert github_slug("The lease protocol (`stages/store/lease.py`)") == "the-lease-protocol-stagesstoreleasepy"
    assert github_slug("Manifest (your own data)") == "manifest-your-own-data"


# -- paths and modules named in the prose ----------------------------------------------------------
REPO_PATH = re.compile(r"(?<![\w./<-])((?:stages|climd_cli|tests|scripts|examples)/[\w./-]*[\w/])")
TEST_FILE = re.compile(r"(?<![\w/])(test_\w+\.py)\b")
MODULE = re.compile(r"(?<![\w./])(stages(?:\.[A-Za-z_]\w*)+)")


def _module_problem(dotted: str) -> str | None:
    """None when ``stages.a.b[.name]`` is a module of this checkout (and ``name``, if any, a word of
    its source); else what is wrong."""
    parts, here = dotted.split("."), ROOT
    for i, part in enumerate(parts):
        if (here / part).is_dir():
            here = here / part
            continue
        if (here / f"{part}.py").is_file():
            src = (here / f"{part}.py").read_text(encoding="utf-8")
            rest = parts[i + 1:]
            if rest and not re.search(rf"\b{re.escape(rest[0])}\b", src):
                return f"{rest[0]} is not in {_rel(here / f'{part}.py')}"
            return None
        if i >= 2 and (here / "__init__.py").is_file():    # a name re-exported by a package
            src = (here / "__init__.py").read_text(encoding="utf-8")
            return None if re.search(rf"\b{re.escape(part)}\b", src) else f"{part} is not in {_rel(here)}"
        return f"no module {'.'.join(parts[:i + 1])}"
    return None


def stale_paths(path: Path) -> list[str]:
    """Repository paths (``stages/store/atomic.py``), test files and ``stages.x.y`` modules named in
    the prose of ``path`` that this checkout does not have. Names with placeholders are skipped."""
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    tests = {p.name for p in (ROOT / "tests").rglob("test_*.py")}
    problems = []
    for no, line in prose:
        for m in REPO_PATH.finditer(line):
            name = m.group(1).rstrip(".")
            if not any(ch in name for ch in "*{<[") and not (ROOT / name).exists():
                problems.append(f"{_rel(path)}:{no}: {name} does not exist")
        for m in TEST_FILE.finditer(line):
            if m.group(1) not in tests:
                problems.append(f"{_rel(path)}:{no}: no test file {m.group(1)} under tests/")
        for m in MODULE.finditer(line):
            problem = _module_problem(m.group(1).rstrip("."))
            if problem:
                problems.append(f"{_rel(path)}:{no}: {m.group(1)}: {problem}")
    return problems


@pytest.mark.parametrize("doc", LINK_DOCS, ids=_rel)
def test_named_paths_and_modules_exist(doc):
    assert not stale_paths(doc), "\n".join(stale_paths(doc))


def test_path_checker_catches_a_moved_module(tmp_path):
    doc = tmp_path / "a.md"
    doc.write_text("`stages/nowhere.py`, `stages/<pkg>/x.py`, test_nowhere_at_all.py, `stages.nowhere.f`,\n"
                   "`stages.errors.UsageError`, `stages.errors.NoSuchThing`\n")
    found = stale_paths(doc)
    assert len(found) == 4, found
    assert "stages/nowhere.py does not exist" in found[0] and "test_nowhere_at_all.py" in found[1]
    assert "no module stages.nowhere" in found[2] and "NoSuchThing is not in stages/errors.py" in found[3]


# -- commands ---------------------------------------------------------------------------------------
def shell_lines(block: list[tuple[int, str]]):
    """Logical lines of a shell block (backslash continuations joined), with their first line number."""
    buf, start = "", None
    for no, line in block:
        start = no if start is None else start
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        yield start, buf + line
        buf, start = "", None
    if buf:
        yield start, buf


def segments(line: str) -> list[list[str]]:
    """The simple commands of a shell line (split at && || ; |), comments dropped."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split, lex.commenters = True, "#"
    out, cur, redirected = [], [], False
    for tok in lex:
        if tok in SHELL_OPS:
            out.append(cur)
            cur, redirected = [], False
        elif tok in REDIRECTS or redirected:          # `> file`, `2> err`: not arguments of the command
            redirected = tok in REDIRECTS
            if cur and tok in REDIRECTS and cur[-1].isdigit():
                cur.pop()                              # the 2 of `2>`
        else:
            cur.append(tok)
    out.append(cur)
    return [s for s in out if s]


def climd_invocations(line: str) -> list[list[str]]:
    """The argument lists (after ``climd``) of every climd call in a shell line, including a
    ``climd ...`` string passed to another program (``sbatch --wrap "climd ..."``)."""
    found = []
    for seg in segments(line.lstrip("$ ").lstrip()):
        words = seg
        while words and ENV_ASSIGN.match(words[0]):
            words = words[1:]
        if words and words[0] in ("srun", "exec", "time"):
            words = words[1:]
        if words and Path(words[0]).name == "climd":
            found.append(words[1:])
        for w in words[1:]:
            if w.startswith("climd "):
                found.extend(climd_invocations(w))
    return found


@pytest.fixture(scope="module")
def climd_group():
    import typer

    from climd_cli.app import app
    return typer.main.get_command(app)


def _usage_error():
    """click's UsageError as the Typer in use raises it (Typer >= 0.17 ships its own copy of click)."""
    import typer
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def parse_problem(group, args: list[str]) -> str | None:
    """Why ``climd ARGS`` would not parse (None when it does): unknown subcommand or option, an
    option without its value, an extra argument. ``group`` is the click command of the Typer app;
    its own parser does the work (a context that is not resilient, so parse errors are raised).
    Values are not converted and nothing runs."""
    usage_error = _usage_error()
    cmd, name, chain = group, "climd", []
    while True:
        ctx = cmd.context_class(cmd, info_name=name, parent=chain[-1] if chain else None)
        try:
            _, rest, _ = cmd.make_parser(ctx).parse_args(list(args))
        except usage_error as exc:
            return f"{' '.join(c.info_name for c in chain + [ctx])}: {exc.format_message()}"
        if hasattr(cmd, "get_command"):
            if not rest:
                return None   # `climd` alone, or `climd -q`: prints help
            sub = cmd.get_command(ctx, rest[0])
            if sub is None:
                return f"no subcommand {rest[0]!r}"
            chain.append(ctx)
            cmd, name, args = sub, rest[0], rest[1:]
            continue
        if rest and not ctx.allow_extra_args:
            return f"{name}: unexpected extra arguments {rest}"
        return None


def doc_commands():
    """(where, line, [args...]) for every climd call in the fenced blocks of the command docs, and
    the synopsis lines skipped (see the module docstring)."""
    calls, skipped = [], []
    for doc in COMMAND_DOCS:
        _, blocks = split_fences(doc.read_text(encoding="utf-8"))
        for block in blocks:
            for no, line in shell_lines(block):
                try:
                    invocations = climd_invocations(line)
                except ValueError:          # not shell (an error message with an odd quote, say)
                    continue
                if invocations and SYNOPSIS.search(line):
                    skipped.append(f"{_rel(doc)}:{no}: {line.strip()}")
                    continue
                calls += [(f"{_rel(doc)}:{no}", line.strip(), args) for args in invocations]
    return calls, skipped


def test_commands_parse(climd_group):
    calls, skipped = doc_commands()
    print("skipped (usage synopses):", *skipped, sep="\n  ")
    assert len(calls) >= 20, f"only {len(calls)} climd commands found in the docs: is the scan broken?"
    problems = [f"{where}: {problem}\n    {line}" for where, line, args in calls
                if (problem := parse_problem(climd_group, args))]
    assert not problems, "\n".join(problems)


def test_every_command_of_the_cli_appears_in_the_docs(climd_group):
    calls, _ = doc_commands()
    used = {args[i] for _, _, args in calls for i in range(len(args)) if args[i] in climd_group.commands}
    assert set(climd_group.commands) <= used, f"never shown in a code block: {set(climd_group.commands) - used}"


@pytest.mark.parametrize("args, expected", [
    (["train", "--run", "r", "--lerning-rate", "1"], "No such option"),
    (["trian", "--run", "r"], "no subcommand"),
    (["score", "--run"], "requires an argument"),
    (["status", "--run", "r", "stray"], "unexpected extra"),
    (["--quiet", "score", "--bogus"], "No such option"),
])
def test_command_checker_catches_mistakes(climd_group, args, expected):
    assert expected in (parse_problem(climd_group, args) or "")


def test_command_checker_accepts_good_lines(climd_group):
    line = ("B=x climd -q train --run 'brca-r{seed}' --seeds 0-9 --lr 5e-5,1e-3 "
            "&& sbatch --wrap \"climd -q train --run r --seed-from-env SLURM_ARRAY_TASK_ID\"  # note")
    invocations = climd_invocations(line)
    assert [a[:2] for a in invocations] == [["-q", "train"], ["-q", "train"]]
    assert all(parse_problem(climd_group, a) is None for a in invocations)


def test_readme_fits_on_a_screen_and_keeps_the_setup_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    _, blocks = split_fences(text)
    lines = [line.split("#")[0].strip() for block in blocks for _, line in block]
    assert "make demo" in lines and "make test" in lines
