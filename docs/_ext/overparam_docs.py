"""What the overparam_jax site generates from the code at every build.

* ``builder-inited``: the notebooks are copied into ``docs/tutorials/`` (outputs exist only
  in the build, never in ``notebooks/``), and one API page per public module is written to
  ``docs/api/``: the module's docstring, a summary table of its ``__all__`` and every name
  that it is the home of. Both folders are generated and ignored by git.
* ``verify-checks``: the registry's checks as a table (claim, regime, threshold) with the
  committed run's figures from ``docs/verify_self_test.json``.
* ``cli-reference``: the ``--help`` of every command and sub-command, from the parser
  that ``overparam-jax`` itself builds.
* ``reproductions``: per experiment of ``overparam-jax reproduce``, its summaries
  (``docs/figures/<name>*_summary.md``) and figures (``docs/figures/<name>_*.png``).
* ``{check}`name```: a link to a check's row of the table; an unknown name is an error.
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import functools
import importlib
import inspect
import json
import os
import pkgutil
import re
import shutil
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective, SphinxRole

logger = logging.getLogger(__name__)

PACKAGE = "overparam_jax"
MAX_VALUE_CHARS = 120  # a constant's value is shown when its repr is at most this long


# ---------------------------------------------------------------- generated sources


def sync_files(sources: list[Path], dest: Path, pattern: str) -> None:
    """Make ``dest``'s files matching ``pattern`` exactly ``sources`` (copied only when changed,
    so unchanged files keep their time stamps and incremental builds stay incremental)."""
    dest.mkdir(exist_ok=True)
    for src in sources:
        target = dest / src.name
        if not target.exists() or target.read_bytes() != src.read_bytes():
            shutil.copyfile(src, target)
    for stale in set(dest.glob(pattern)) - {dest / s.name for s in sources}:
        stale.unlink()


def write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def public_modules() -> dict[str, object]:
    """The package and every submodule with ``__all__`` and no ``_``-prefixed part, by name."""
    root = importlib.import_module(PACKAGE)
    modules = {PACKAGE: root}
    for info in pkgutil.walk_packages(root.__path__, PACKAGE + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            module = importlib.import_module(info.name)
            if hasattr(module, "__all__"):
                modules[info.name] = module
    return modules


def homes(modules: dict[str, object]) -> dict[tuple[str, str], str]:
    """``(module, name) -> home``: where each exported object is documented. The home is the
    module the object says it comes from when that module exports it, else the deepest
    public module exporting the same object under the same name."""
    home = {}
    for mod_name, module in modules.items():
        for name in module.__all__:
            obj = getattr(module, name)
            listed = [m for m, mod in modules.items() if name in mod.__all__ and getattr(mod, name) is obj]
            origin = getattr(obj, "__module__", None)
            home[mod_name, name] = origin if origin in listed else max(listed, key=lambda m: (m.count("."), m))
    return home


def _directive(obj) -> str:
    if inspect.isclass(obj):
        return "autoexception" if issubclass(obj, BaseException) else "autoclass"
    is_alias = hasattr(obj, "__origin__")  # Params = tuple[jax.Array, ...] is callable, yet data
    return "autofunction" if callable(obj) and not is_alias else "autodata"


def api_page(mod_name: str, module, home: dict[tuple[str, str], str]) -> str:
    title = f"``{mod_name}``"
    lines = [title, "=" * len(title), "", f".. automodule:: {mod_name}", ""]
    # Full names in the table: leave the module so that autosummary takes them as given.
    lines += [".. rubric:: Public names", "", ".. py:currentmodule:: None", "", ".. autosummary::", ""]
    lines += [f"   ~{home[mod_name, name]}.{name}" for name in module.__all__]
    lines.append("")
    for name in module.__all__:
        if home[mod_name, name] == mod_name:
            obj = getattr(module, name)
            directive = _directive(obj)
            lines.append(f".. {directive}:: {mod_name}.{name}")
            if inspect.isclass(obj):
                lines.append("   :members:")
            if directive == "autodata" and len(repr(obj)) > MAX_VALUE_CHARS:
                lines.append("   :no-value:")
            lines.append("")
    return "\n".join(lines)


def write_api_pages(srcdir: Path) -> None:
    modules = public_modules()
    home = homes(modules)
    dest = srcdir / "api"
    dest.mkdir(exist_ok=True)
    pages = {dest / f"{name}.rst": api_page(name, module, home) for name, module in modules.items()}
    for path, text in pages.items():
        write_if_changed(path, text)
    for stale in set(dest.glob("*.rst")) - set(pages):
        stale.unlink()


def generate(app) -> None:
    srcdir = Path(app.srcdir)
    notebooks = sorted((srcdir.parent / "notebooks").glob("*.ipynb"))
    sync_files(notebooks, srcdir / "tutorials", "*.ipynb")
    write_api_pages(srcdir)


# ---------------------------------------------------------------- cross-references


@functools.cache
def documented() -> dict[tuple[str, int], str]:
    """``(name, id(object)) -> full name`` of every documented public object."""
    modules = public_modules()
    return {(name, id(getattr(modules[m], name))): f"{home}.{name}" for (m, name), home in homes(modules).items()}


def _lookup(path: str):
    """The object at dotted ``path`` (a module, then attributes; or a builtin), or None."""
    if path in ("None", "True", "False"):
        return True
    if hasattr(builtins, path):
        return getattr(builtins, path)
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part, None)
        return obj
    return None


def resolve_by_object(app, env, node, contnode):
    """Resolve a Python reference through the object it names: ``overparam_jax.sweep`` or a
    bare ``whiten`` inside a module that imports it lead to where the object is documented.
    A reference into the package that names nothing, or any unresolved one on a hand-written
    page, is a warning (an error with -W)."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module = node.get("py:module") or ""
    name = target.rsplit(".", 1)[-1]
    objects = [_lookup(path) for path in filter(None, [f"{module}.{target}" if module else "", target])]
    full = [documented().get((name, id(obj))) for obj in objects if obj is not None]
    if not any(full) and not any(obj is not None for obj in objects) and "." not in target:
        full = [f for (n, _), f in documented().items() if n == name]  # a bare name the module lacks
        full = full if len(set(full)) == 1 else []
    if any(full):
        domain = env.domains["py"]
        return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], next(filter(None, full)),
                                   node, contnode)
    hand_written = not node["refdoc"].startswith("api/")
    names_nothing = not any(obj is not None for obj in objects)
    # Into the package: a dotted overparam_jax.x, or a bare identifier in one of its modules
    # (Napoleon's "ValueError / TypeError" or "A JSON-ready dict" are prose, not names).
    ours = target.startswith(PACKAGE + ".") or (module.startswith(PACKAGE) and target.isidentifier())
    if hand_written or (ours and names_nothing):
        logger.warning(f"unresolved reference {node['reftype']}: {node['reftarget']}", location=node)
    return None


def skip_namedtuple_fields(app, what, name, obj, skip, options):
    """NamedTuple fields are described by their class's Attributes section, not twice."""
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return None


def drop_type_docstring(app, what, name, obj, options, lines):
    """A constant's docstring is its ``#:`` comment; the ``__doc__`` it carries is its type's
    (``dict(**kwargs) ...``, ``Built-in immutable sequence.``) and is dropped."""
    if what == "data" and "\n".join(lines).strip() == inspect.cleandoc(getattr(obj, "__doc__", None) or ""):
        lines.clear()


# ---------------------------------------------------------------- nodes


def _cell(*children) -> nodes.entry:
    para = nodes.paragraph()
    para.extend(child if isinstance(child, nodes.Node) else nodes.Text(child) for child in children)
    return nodes.entry("", para)


def table(header: list[str], rows: list[list[nodes.entry]], widths: list[int]) -> nodes.table:
    group = nodes.tgroup(cols=len(header))
    group.extend(nodes.colspec(colwidth=w) for w in widths)
    group += nodes.thead("", nodes.row("", *[_cell(h) for h in header]))
    group += nodes.tbody("", *[nodes.row("", *cells) for cells in rows])
    return nodes.table("", group)


def doc_link(docname: str, text: str) -> addnodes.pending_xref:
    return addnodes.pending_xref("", nodes.inline(text, text), refdomain="std", reftype="doc",
                                 reftarget="/" + docname, refexplicit=True)


# ---------------------------------------------------------------- verify checks


@functools.cache
def _checks():
    from overparam_jax.verify import all_checks

    return {check.name: check for check in all_checks()}


def _label(check_name: str) -> str:
    return f"check-{check_name}"


class VerifyChecks(SphinxDirective):
    """The registered checks: name, §, claim, regime, threshold, committed measurement."""

    required_arguments = 1  # the committed self-test JSON, relative to this document

    def run(self):
        rel, path = self.env.relfn2path(self.arguments[0], self.env.docname)
        self.env.note_dependency(rel)
        committed = {c["name"]: c for c in json.loads(Path(path).read_text())["checks"]}
        rows = []
        for name, check in _checks().items():
            target = nodes.target("", "", names=[_label(name)])
            self.state.document.note_explicit_target(target)
            run = committed.get(name)
            measured = f"{run['measured']:.3g} ({run['margin']:.3g}× inside)" if run else "not in the committed run"
            label = nodes.literal(name, name)
            if run:  # the committed page (verify.md, written with the JSON) has a section per check
                label = addnodes.pending_xref("", label, refdomain="doc", reftype="myst", reftarget=str(Path(rel).parent / "verify"),
                                              reftargetid=name, refdoc=self.env.docname, refexplicit=True)
            rows.append([_cell(target, label), _cell(check.section), _cell(check.claim),
                         _cell(check.regime), _cell(f"{check.relation} {check.threshold:.3g}"), _cell(measured)])
        header = ["check", "§", "claim", "regime", "pass if", "committed run"]
        return [table(header, rows, [14, 4, 30, 30, 8, 10])]


class CheckRole(SphinxRole):
    """``{check}`name```: a link to the check's row; unknown names fail the build."""

    def run(self):
        name = self.text
        if name not in _checks():
            msg = self.inliner.reporter.error(f"{name!r} is not a check of `overparam-jax verify`", line=self.lineno)
            return [self.inliner.problematic(self.rawtext, self.rawtext, msg)], [msg]
        node = addnodes.pending_xref("", nodes.literal(name, name), refdomain="std", reftype="ref",
                                     reftarget=_label(name), refexplicit=True, refwarn=True)
        return [node], []


# ---------------------------------------------------------------- command line


def _subcommands(parser: argparse.ArgumentParser):
    """``parser`` and its sub-commands, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _subcommands(sub)


class CliReference(SphinxDirective):
    """``--help`` of ``overparam-jax`` and every sub-command, from ``cli._build_parser()``."""

    def run(self):
        from overparam_jax import cli

        out = []
        with _columns(90):
            for parser in _subcommands(cli._build_parser()):
                target = nodes.target("", "", names=[f"cli-{parser.prog.replace(' ', '-')}"])
                self.state.document.note_explicit_target(target)
                out += [target, nodes.rubric(parser.prog, parser.prog)]
                text = parser.format_help()
                out.append(nodes.literal_block(text, text, language="text"))
        return out


@contextlib.contextmanager
def _columns(width: int):
    """argparse wraps help to $COLUMNS; fix it so the page does not depend on the terminal."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


# ---------------------------------------------------------------- reproductions


def readme_captions(readme: Path) -> dict[str, str]:
    """``{figure file name: alt text}`` for every ``![alt](docs/figures/NAME)`` in the README."""
    return {name: alt for alt, name in re.findall(r"!\[([^\]]*)\]\(docs/figures/([^)\s]+)\)", readme.read_text())}


class Reproductions(SphinxDirective):
    """Per experiment of ``overparam-jax reproduce``: its summaries and its figures, found by
    name in the folder given as argument: ``<name>*_summary.md`` and ``<name>_*.png``."""

    required_arguments = 1  # the figures folder, relative to this document

    def run(self):
        from overparam_jax.experiments import EXPERIMENTS, get_experiment

        rel, folder = self.env.relfn2path(self.arguments[0], self.env.docname)
        folder, base = Path(folder), Path(rel)
        captions = readme_captions(Path(self.env.srcdir).parent / "README.md")
        out = []
        for name in EXPERIMENTS:
            section = nodes.section(ids=[f"reproduce-{name}"])
            section += nodes.title("", f"overparam-jax reproduce {name}")
            section += nodes.paragraph("", get_experiment(name).help)
            summaries = sorted(folder.glob(f"{name}*_summary.md"))
            if summaries:
                links = [doc_link(str(base / s.stem), s.name) for s in summaries]
                para = nodes.paragraph("", "Summaries: ")
                for i, link in enumerate(links):
                    para += [nodes.Text(", ")] if i else []
                    para += link
                section += para
            for png in sorted(folder.glob(f"{name}_*.png")):
                caption = captions.get(png.name, png.stem)
                figure = nodes.figure("", nodes.image(uri="/" + str(base / png.name), alt=caption))
                figure += nodes.caption(caption, caption)
                section += figure
            out.append(section)
        return out


def setup(app):
    app.connect("builder-inited", generate)
    app.connect("autodoc-skip-member", skip_namedtuple_fields)
    app.connect("autodoc-process-docstring", drop_type_docstring)
    app.connect("missing-reference", resolve_by_object)
    app.add_directive("verify-checks", VerifyChecks)
    app.add_directive("cli-reference", CliReference)
    app.add_directive("reproductions", Reproductions)
    app.add_role("check", CheckRole())
    return {"parallel_read_safe": True, "parallel_write_safe": True}
