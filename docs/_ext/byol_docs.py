"""Local Sphinx extension of the BYOL examples' site.

- ``.. byol-variant:: NAME`` writes a tab of the BYOL page for examples/NAME/byol.py, in the order a reader
  needs it: the command that runs the script; the first paragraph of the directive's content (the tab's
  intro); the Colab badge (when the site has a repository address), the downloads and the script's
  gallery page, all on the tab's first screen; the rest of the content; the script's BYOL core (the
  loss, the training step, the target update), included from the script itself; for a script that is
  another one plus a few changes, the diff against it; and the whole script with line numbers. A script
  that does not exist yet gets a note instead.
- On the scripts' gallery pages, a ``::`` block of a docstring or comment (the commands that run the
  script) is highlighted as bash: sphinx-gallery would lex it as Python, before Sphinx gives it the
  site's highlight language.
- ``:script:`NAME:OBJECT``` links to the lines of examples/NAME/byol.py that define OBJECT (a function,
  class or method: ``BYOL.forward``), and ``:script:`NAME:OBJECT:TEXT``` to the line of OBJECT that holds
  TEXT. The lines are found in the code at build time, so the links follow the code when it changes.
- After an HTML build: each whole-script listing of the BYOL page gets an anchor per line (NAME-L12),
  which those links point at, and the notebooks are copied to notebooks/NAME/byol.ipynb, a path that does
  not change between builds (the Colab badges point there on the published site, see conf.py)."""

import ast
import difflib
import re
import shutil
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.directives.code import container_wrapper
from sphinx.util.docutils import SphinxDirective, SphinxRole

COLAB = "https://colab.research.google.com/github/"
PAGE = "byol"  # the page that holds the tabs and their listings
PAGE_CSS = "byol-page.css"  # in _static: that page's own layout


def script_path(srcdir: str | Path, variant: str) -> Path:
    return Path(srcdir).parent / "examples" / variant / "byol.py"


def object_lines(path: Path, name: str, text: str | None = None) -> tuple[int, int]:
    """The first and last line of a top-level function or class, or of a method (``Class.method``), in
    a script; with text, the one line of that object that holds it."""
    lines = path.read_text().splitlines()
    body = ast.parse("\n".join(lines)).body
    for part in name.split("."):  # a function, class or method, or a top-level name's assignment
        found = [node for node in body if part in {getattr(node, "name", None), *assigned(node)}]
        if not found:
            raise ValueError(f"{path}: no {name}")
        node, body = found[0], getattr(found[0], "body", [])
    start = min([node.lineno, *(decorator.lineno for decorator in getattr(node, "decorator_list", []))])
    if text is None:
        return start, node.end_lineno
    matches = [number for number in range(start, node.end_lineno + 1) if text in lines[number - 1]]
    if not matches:
        raise ValueError(f"{path}: no line of {name} holds {text!r}")
    return matches[0], matches[0]


def assigned(node: ast.AST) -> list[str]:
    """The names that an assignment binds: ``A = ...`` and ``A, B = ...``."""
    targets = [*getattr(node, "targets", [])]
    targets += [element for target in targets if isinstance(target, ast.Tuple) for element in target.elts]
    return [target.id for target in targets if isinstance(target, ast.Name)]


class VariantDirective(SphinxDirective):
    required_arguments = 1
    has_content = True

    def run(self) -> list[nodes.Node]:
        variant = self.arguments[0]
        config = self.env.config
        if variant not in config.byol_variants:
            raise self.error(f"unknown variant {variant!r}: expected one of {list(config.byol_variants)}")
        settings, script = config.byol_variants[variant], script_path(self.env.srcdir, variant)
        if not script.exists():
            return self.parse_text_to_nodes(
                f".. note::\n\n   ``examples/{variant}/byol.py`` is not written yet.\n"
            )
        self.env.note_dependency(str(script))
        include = f".. literalinclude:: /../examples/{variant}/byol.py"
        command = self.parse_text_to_nodes(f".. code-block:: bash\n\n   {settings['command']}\n")
        prose = self.parse_content_to_nodes()
        intro, rest = (
            (prose[:1], prose[1:]) if prose and isinstance(prose[0], nodes.paragraph) else ([], prose)
        )
        lines = []
        if config.byol_repository_url:  # no badge to an address that is not set
            colab = f"{COLAB}{config.byol_repository_url.removeprefix('https://github.com/')}"
            lines += [
                ".. image:: /_static/colab-badge.svg",
                "   :alt: Open in Colab",
                "   :class: colab-badge",
            ]
            lines += [f"   :target: {colab}/blob/gh-pages/notebooks/{variant}/byol.ipynb", ""]
        lines += [
            f"Download: :download:`notebook (byol.ipynb) </gallery/{variant}/byol.ipynb>` |"
            f" :download:`script (byol.py) </../examples/{variant}/byol.py>` |"
            f" :ref:`the script as a web page, with its notebook <sphx_glr_gallery_{variant}_byol.py>`",
            "",
        ]
        downloads = self.parse_text_to_nodes("\n".join(lines))
        lines = []
        for name in settings["core"]:  # the BYOL core, with the script's own line numbers
            start, end = object_lines(script, name)
            lines += [include, "   :language: python", f"   :pyobject: {name}", "   :lineno-match:"]
            lines += [f"   :caption: {name}, lines {start}-{end}", "   :class: byol-core", ""]
        core = self.parse_text_to_nodes("\n".join(lines))
        diff = []
        if "diff" in settings:  # made here, not by literalinclude's :diff:, which names the files' full paths
            base = f"examples/{settings['diff']}/byol.py"
            self.env.note_dependency(str(script_path(self.env.srcdir, settings["diff"])))
            before = script_path(self.env.srcdir, settings["diff"]).read_text().splitlines(keepends=True)
            after = script.read_text().splitlines(keepends=True)
            text = "".join(difflib.unified_diff(before, after, base, f"examples/{variant}/byol.py"))
            block = nodes.literal_block(text, text, language="diff", classes=["byol-diff"])
            diff = [container_wrapper(self, block, f"what it adds to {base} (a unified diff)")]
        lines = [include, "   :language: python", "   :linenos:", f"   :caption: examples/{variant}/byol.py"]
        lines += [f"   :class: byol-script byol-script-{variant}", ""]
        whole = self.parse_text_to_nodes("\n".join(lines))
        return [*command, *intro, *downloads, *rest, *core, *diff, *whole]


class ScriptRole(SphinxRole):
    """``:script:`NAME:OBJECT[:TEXT]```: a link to those lines of a script's listing on the BYOL page."""

    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        variant, name, *text = self.text.split(":", 2)
        script = script_path(self.env.srcdir, variant)
        try:
            start, end = object_lines(script, name, text[0] if text else None)
        except (OSError, ValueError) as error:
            return [], [self.inliner.reporter.error(str(error), line=self.lineno)]
        self.env.note_dependency(str(script))
        uri = self.env.app.builder.get_relative_uri(self.env.docname, PAGE) + f"#{variant}-L{start}"
        label = f"lines {start}-{end}" if end > start else f"line {start}"
        reference = nodes.reference("", label, refuri=uri, classes=["byol-lines"])
        reference["reftitle"] = f"examples/{variant}/byol.py: {name}" + (f" ({text[0]})" if text else "")
        return [reference], []


def anchor_lines(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """On the BYOL page, make each numbered line of code an element of its own, which a link can point at
    and highlight: in the whole-script listings, with an id, NAME-L12. And give the page its own
    stylesheet, which widens its column so that the scripts' lines (110 characters) need not wrap."""
    if pagename != PAGE or "body" not in context:
        return
    app.add_css_file(PAGE_CSS, priority=900)  # on this page only; after custom.css (800)
    html = context["body"]
    blocks = list(re.finditer(r'<div class="(byol-script byol-script-([\w-]+)|byol-core) ', html))
    for block in reversed(blocks):  # from the end: the edits leave the earlier positions as they are
        start = html.index("<pre>", block.start()) + len("<pre>")
        end = html.index("</pre>", start)
        variant = (block.group(2) or "").replace("-", "_")  # HTML classes have hyphens for underscores
        lines = []
        for line in html[start:end].splitlines(keepends=True):  # Pygments closes its spans on each line
            number = re.search(r'<span class="linenos">\s*(\d+)</span>', line)
            anchor = f' id="{variant}-L{number.group(1)}"' if number and variant else ""
            lines.append(f'<span class="line"{anchor}>{line}</span>' if number else line)
        html = html[:start] + "".join(lines) + html[end:]
    context["body"] = html


def gallery_commands_as_bash(app: Sphinx, doctree: nodes.document) -> None:
    """On a script's gallery page, give the ``::`` blocks, which have no language, bash: sphinx-gallery's
    code links (a post-transform that runs before Sphinx applies highlight_language) would take a block
    without one for Python. Those blocks are the docstring's commands; the code blocks name Python."""
    if not app.env.docname.startswith("gallery/"):
        return
    for block in doctree.findall(nodes.literal_block):
        if "language" not in block and block.rawsource == block.astext():  # not a parsed-literal
            block["language"] = "bash"


def copy_notebooks(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for variant in app.config.byol_variants:
        notebook = Path(app.srcdir) / "gallery" / variant / "byol.ipynb"
        if notebook.exists():
            target = Path(app.outdir) / "notebooks" / variant / "byol.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(notebook, target)


def setup(app: Sphinx) -> dict:
    app.add_config_value("byol_variants", {}, "env", types=[dict])
    app.add_config_value("byol_repository_url", "", "env", types=[str])
    app.add_directive("byol-variant", VariantDirective)
    app.add_role("script", ScriptRole())
    app.connect("doctree-read", gallery_commands_as_bash)
    app.connect("html-page-context", anchor_lines)
    app.connect("build-finished", copy_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
