"""The dashboard's look: cards in a responsive CSS grid that folds to one column on a phone."""

from __future__ import annotations

import html

import ipywidgets as widgets

SEVERITY_COLOURS = {"high": "#d62728", "medium": "#ff7f0e", "low": "#e6b800"}
STATUS_COLOURS = {"ok": "#2ca02c", "silent": "#7f7f7f", **SEVERITY_COLOURS}

CSS = """
<style>
.wb-dash { width: 100%; max-width: 1600px; margin: 0 auto; box-sizing: border-box; }
.wb-grid { display: grid; gap: 12px; width: 100%; box-sizing: border-box;
  grid-template-columns: repeat(auto-fit, minmax(min(100%, 420px), 1fr)); }
.wb-card { border: 1px solid #ddd; border-radius: 8px; padding: 8px 10px; min-width: 0;
  box-sizing: border-box; background: #fff; overflow: hidden; }
.wb-card h3 { margin: 2px 0 6px 0; font-size: 15px; }
.wb-stats { display: grid; gap: 6px; grid-template-columns: repeat(auto-fit, minmax(130px, 1fr)); }
.wb-stat { background: #f6f8fa; border-radius: 6px; padding: 6px 8px; }
.wb-stat .v { font-size: 18px; font-weight: 600; }
.wb-stat .k { font-size: 11px; color: #555; }
.wb-scroll { max-width: 100%; overflow-x: auto; max-height: 340px; overflow-y: auto; }
.wb-table { border-collapse: collapse; font-size: 12px; width: 100%; }
.wb-table th, .wb-table td { border-bottom: 1px solid #eee; padding: 2px 6px; text-align: left;
  white-space: nowrap; }
.wb-badge { color: #fff; border-radius: 4px; padding: 0 5px; font-size: 11px; }
.wb-note { font-size: 12px; color: #555; }
.wb-download { color: #1f6feb; text-decoration: underline; }
.wb-dash .widget-slider, .wb-dash .widget-dropdown, .wb-dash .widget-text,
.wb-dash .widget-combobox { max-width: 100%; }
.wb-dash .widget-label { min-width: 0; }
.wb-dash .widget-html, .wb-dash .widget-html-content { min-width: 0; max-width: 100%;
  width: 100%; white-space: normal; overflow-wrap: anywhere; }
.wb-dash .bqplot { min-width: 0 !important; }
</style>
"""


def card(title: str, *children: widgets.Widget) -> widgets.VBox:
    """A titled panel."""
    box = widgets.VBox([widgets.HTML(f"<h3>{html.escape(title)}</h3>"), *children])
    box.add_class("wb-card")
    box.layout.min_width = "0"
    return box


def badge(severity: str) -> str:
    colour = SEVERITY_COLOURS.get(severity, "#777")
    return f'<span class="wb-badge" style="background:{colour}">{html.escape(severity)}</span>'


def table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table in a scrolling box; cells must already be escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f'<div class="wb-scroll"><table class="wb-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def full_width(widget: widgets.Widget) -> widgets.Widget:
    widget.layout.width = "100%"
    widget.layout.min_width = "0"
    return widget
