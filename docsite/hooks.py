"""The MkDocs hook (mkdocs.yml ``hooks:``) that adds the generated pages at build time.

- ``reference/*.md``: from the code (docsite/reference.py), never committed, so they cannot drift;
- ``deploy/README.md`` and the example files it links to, from ``deploy/`` (one text, read on
  GitHub beside the files and on the site);
- the benchmark table in ``benchmarks.md``, from the figures ``./run bench --json`` wrote.

Links between docs/ and deploy/ are written as they resolve in the repository (so they work on
GitHub); on the site, deploy/ sits under the docs root, and they are rewritten to match.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # mkdocs loads this file by path; the generators import the code
    sys.path.insert(0, str(ROOT))

from mkdocs.config.defaults import MkDocsConfig  # noqa: E402
from mkdocs.structure.files import File, Files  # noqa: E402
from mkdocs.structure.pages import Page  # noqa: E402

from docsite import benchmarks, reference  # noqa: E402

DEPLOY = ROOT / "deploy"
#: ``<!-- README quickstart:NAME -->`` in a page: the README's block of that name, so that the
#: site shows the very commands the quick-start test runs.
README_BLOCK = re.compile(r"<!-- README quickstart:([\w-]+) -->")
#: The files of deploy/ its README links to, published beside it.
DEPLOY_FILES = ("fleetd.env.example", "nats.conf.example")


def on_config(config: MkDocsConfig, **_: Any) -> MkDocsConfig:
    # mkdocs restores sys.path after loading a hook; the generators import code (bench/) lazily.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return config


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    for src_uri, page in reference.PAGES.items():
        files.append(File.generated(config, src_uri, content=page()))
    files.append(
        File.generated(config, "deploy/README.md", content=(DEPLOY / "README.md").read_text())
    )
    for name in DEPLOY_FILES:
        files.append(File.generated(config, f"deploy/{name}", abs_src_path=str(DEPLOY / name)))
    return files


def on_page_markdown(markdown: str, page: Page, **_: Any) -> str:
    src = page.file.src_uri
    if src.startswith("deploy/"):
        markdown = markdown.replace("](../docs/", "](../")
    elif "/" not in src:
        markdown = markdown.replace("](../deploy/", "](deploy/")
    markdown = README_BLOCK.sub(lambda m: readme_block(m.group(1)), markdown)
    if src == "benchmarks.md":
        markdown = markdown.replace(benchmarks.MARKER, benchmarks.table_markdown())
        markdown = markdown.replace(benchmarks.METHODS_MARKER, benchmarks.methods_markdown())
    return markdown


def readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    start, end = f"<!-- quickstart:{name} -->", f"<!-- /quickstart:{name} -->"
    if start not in text or end not in text:
        raise ValueError(f"README.md has no {start} ... {end} block")
    return text.split(start, 1)[1].split(end, 1)[0].strip()
