"""What every page of the report shares: the style sheet, embedded images, YAML dumps and the
page shell (title, one-sentence description, body, versions), so that each folder kind's page
(a results store, an attack folder, an explanation, an explainer evaluation, L2I results, a
run's index) looks and reads the same."""

from __future__ import annotations

import base64
from typing import Any

import yaml

from robustmer.io import versions
from robustmer.report.tables import esc

REPORT_FILE = "report.html"
"""The page every ``robustmer report`` writes into the folder it reports on."""

FIGURES_DIR = "report-figures"
"""The folder beside a page that its figures are also saved to as PNG files."""

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;
color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}
caption{caption-side:bottom;text-align:left;font-size:.85em;color:#555;padding-top:.25rem;
max-width:75rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem}
th{background:#f3f3f3}
th.group{background:#e4ecf7}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
img{max-width:100%}
pre{background:#f7f7f7;padding:.5rem;overflow:auto;max-height:30rem}
.caption{font-size:.9em;color:#555}
.statement{border-left:4px solid #4a7ab5;background:#f4f7fb;padding:.5rem 1rem}
.media{display:flex;flex-wrap:wrap;gap:1rem}
.media figure{border:1px solid #ddd;padding:.5rem;margin:0}
.media figure div{display:flex;align-items:center;gap:.5rem}
.media figure div span{min-width:6rem;font-size:.9em}
.pick figure{margin:0}
nav a{margin-right:1rem}
.warning{border:2px solid #c60;background:#fff4e5;padding:.5rem 1rem;margin:1rem 0}
table.info th{text-align:left}
.wide{overflow-x:auto}
tr th.group{text-align:left}
"""
"""The style sheet of every page."""


def data_uri(png: bytes) -> str:
    """A PNG as a ``data:`` URI (figures are embedded, so a page is one file)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def dump(obj: Any) -> str:
    """A readable YAML rendering of a config (for a ``<pre>`` block)."""
    try:
        return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        return repr(obj)


def versions_html() -> str:
    """The versions the page was generated with, as a small two-column table."""
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>"
                   for k, v in versions().items())
    return (f"<details><summary>Report generated with</summary><table><caption>Versions "
            f"(N = {len(versions())})</caption><tbody>{rows}</tbody></table></details>")


def page(title: str, description: str, body: str, script: str = "") -> str:
    """A complete HTML page: ``<title>robustmer: TITLE</title>``, an ``<h1>`` with the title, the
    one-paragraph ``description`` of what the page is, the ``body``, the versions footer."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>robustmer: {esc(title)}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p class="caption">{description}</p>
{body}
<footer>
{versions_html()}
</footer>
{f"<script>{script}</script>" if script else ""}
</body>
</html>
"""
