"""Render report sections into one self-contained HTML page (figures embedded as PNG).

The page needs no server and no internet: styles are inline, figures are data URIs, links
point at the MLflow UI. Everything user-provided is HTML-escaped (jinja2 autoescape).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import yaml
from markupsafe import Markup

from genevae.reporting.sections import ReportSection, figure_to_base64

__all__ = ["figure_to_base64", "render_report", "table_to_html"]


def format_number(value: Any) -> str:
    """Three significant digits for floats, thousands separators for integers, '–' for NaN."""
    if (
        value is None
        or value is pd.NA
        or (isinstance(value, float | np.floating) and not np.isfinite(value))
    ):
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{float(value):.3g}"
    return str(value)


def table_to_html(table: pd.DataFrame, max_rows: int | None = 40) -> Markup:
    """An escaped HTML table with formatted numbers; long tables say how many rows are hidden."""
    shown = table if max_rows is None else table.head(max_rows)
    html = shown.map(format_number).to_html(index=False, escape=True, border=0, classes="data")
    hidden = len(table) - len(shown)
    if hidden > 0:
        html += f'<p class="more">… {hidden:,} more rows in the parquet/JSON outputs.</p>'
    return Markup(html)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1150px; padding: 1.5em; color: #222; line-height: 1.45; }
h1 { border-bottom: 3px solid #34495e; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #bbb; margin-top: 2.2em; padding-bottom: .2em; }
h3 { margin-top: 1.6em; color: #34495e; }
table.data { border-collapse: collapse; font-size: .86em; margin: .5em 0 1em; }
table.data th, table.data td { border: 1px solid #d5d8dc; padding: .25em .6em; text-align: left; }
table.data th { background: #eef1f4; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .caption, .more { color: #555; font-size: .88em; }
.missing { background: #fdf2e9; border-left: 4px solid #e67e22; padding: .6em 1em; }
.notes li { margin-bottom: .3em; }
nav ul { columns: 2; }
code, pre { background: #f4f6f7; font-size: .85em; }
pre { padding: .8em; overflow-x: auto; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p>Generated {{ generated_at }}{% if run %} by MLflow run
{% if run.url %}<a href="{{ run.url }}">{{ run.run_id }}</a>{% else %}{{ run.run_id }}{% endif %}
{% endif %}.</p>
{% if intro %}<p>{{ intro }}</p>{% endif %}
{% if headline %}<section id="headline"><h2>Headline</h2><ul>
{% for line in headline %}<li>{{ line }}</li>{% endfor %}</ul></section>{% endif %}
<nav><strong>Contents</strong><ul>
{% if comparison is not none %}<li><a href="#overview">Overview: all models</a></li>{% endif %}
{% for section in sections %}<li><a href="#{{ section.key }}">{{ section.title }}</a>
{% if not section.available %}(not run){% endif %}</li>{% endfor %}
<li><a href="#provenance">Provenance and parameters</a></li>
</ul></nav>
{% if comparison is not none %}
<h2 id="overview">Overview: all models</h2>
<p class="caption">Each model's headline scores (<em>score</em>) beside its baselines (rows:
metric and subset; each section has the full tables). pca: the first 50 principal components
(fewer on small data); chance: the largest label's share; gene_mean: every cell predicted by
the mean profile; paper: the published value. Models are evaluated on their own data sets, so
compare a model with its baselines first; across models only the same metric on the same kind
of label is comparable.</p>
{{ comparison }}
{% endif %}
{% for section in sections %}
<h2 id="{{ section.key }}">{{ section.title }}</h2>
{% if not section.available %}<div class="missing">{{ section.summary }}</div>{% else %}
{% for paragraph in section.summary.split("\\n\\n") if paragraph %}<p>{{ paragraph }}</p>{% endfor %}
{% endif %}
{% if section.notes %}<ul class="notes">{% for note in section.notes %}<li>{{ note }}</li>{% endfor %}</ul>{% endif %}
{% for block in section.blocks %}
{% if block.png_base64 is defined %}
<figure><img alt="{{ block.title }}" src="data:image/png;base64,{{ block.png_base64 }}">
<figcaption><strong>{{ block.title }}.</strong> {{ block.caption }}</figcaption></figure>
{% else %}
<h3>{{ block.title }}</h3>
{% if block.caption %}<p class="caption">{{ block.caption }}</p>{% endif %}
{% if block.collapsed %}<details><summary>show {{ block.table | length }} rows</summary>
{{ render_table(block.table, block.max_rows) }}</details>
{% else %}{{ render_table(block.table, block.max_rows) }}{% endif %}
{% endif %}
{% endfor %}
{% if section.computed_at %}<p class="more">Computed {{ section.computed_at }}{% if section.run %}
by MLflow run {% if section.run.url %}<a href="{{ section.run.url }}">{{ section.run.run_id }}</a>
{% else %}{{ section.run.run_id }}{% endif %}{% endif %}.</p>{% endif %}
{% endfor %}
<h2 id="provenance">Provenance and parameters</h2>
<p class="caption">Every input this report read, with the version it loaded and the MLflow run
that wrote that version (links open the MLflow UI; start it with <code>make mlflow-ui</code>).</p>
{% if lineage %}<table class="data"><tr><th>section</th><th>dataset</th><th>version</th>
<th>written by MLflow run</th></tr>
{% for row in lineage %}<tr><td>{{ row.section }}</td><td>{{ row.dataset }}</td>
<td>{{ row.version or "unversioned" }}</td><td>{% if row.run_url %}<a href="{{ row.run_url }}">
{{ row.run_name or "run" }} {{ row.run_id }}</a>{% elif row.run_id %}{{ row.run_id }}{% else %}–{% endif %}
</td></tr>{% endfor %}</table>{% else %}<p>No versioned inputs were read.</p>{% endif %}
<h3>Parameters of this {{ run_label }}</h3>
<details><summary>show</summary><pre>{{ parameters }}</pre></details>
</body>
</html>
"""


def render_report(
    title: str,
    sections: Sequence[ReportSection],
    *,
    generated_at: str,
    comparison: pd.DataFrame | None = None,
    parameters: Mapping[str, Any] | None = None,
    run: Mapping[str, str] | None = None,
    intro: str = "",
    extra_lineage: Sequence[Mapping[str, Any]] = (),
    headline: Sequence[str] = (),
    run_label: str = "evaluation run",
) -> str:
    """The full HTML page: overview table, one chapter per section, provenance, parameters.

    ``run`` (``{"run_id", "url"}``) names the MLflow run that produced the report; each
    section's ``lineage`` rows (``dataset``, ``version``, ``run_id``, ``run_name``,
    ``run_url``) and ``extra_lineage`` (inputs read by the report's own run, with a
    ``section`` label) are listed in the provenance table.
    """
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = environment.from_string(_TEMPLATE)
    empty = {"run_url": None, "run_id": None, "run_name": None, "version": None}
    lineage = [
        empty | {"section": section.title} | dict(row)
        for section in sections
        for row in section.lineage
    ] + [empty | {"section": f"this {run_label}"} | dict(row) for row in extra_lineage]
    return template.render(
        title=title,
        generated_at=generated_at,
        intro=intro,
        run=run,
        sections=sections,
        comparison=None if comparison is None else table_to_html(comparison, max_rows=None),
        lineage=lineage,
        parameters=yaml.safe_dump(dict(parameters or {}), sort_keys=False, allow_unicode=True),
        render_table=table_to_html,
        headline=list(headline),
        run_label=run_label,
    )
