"""Pictures a person looks at: heatmap overlays, ROC curves, the HTML report.

No plotting library: a perceptual colormap (viridis, interpolated from 9
anchors), PNGs via Pillow, ROC curves as inline SVG. Reports are single
self-contained HTML files (images embedded as data URIs).
"""

from __future__ import annotations

import base64
import html
import io
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

# viridis sampled at 0, 1/8, …, 1
_VIRIDIS = np.array([
    [0.267, 0.005, 0.329], [0.283, 0.141, 0.458], [0.229, 0.322, 0.546], [0.173, 0.449, 0.558],
    [0.128, 0.567, 0.551], [0.135, 0.659, 0.518], [0.369, 0.789, 0.383], [0.678, 0.864, 0.190],
    [0.993, 0.906, 0.144],
])


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def colorize(heat, vmin: float, vmax: float) -> np.ndarray:
    """H×W map → H×W×3 uint8 (viridis, clipped to [vmin, vmax])."""
    v = np.clip((_np(heat).astype(np.float64) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    pos = v * (len(_VIRIDIS) - 1)
    i = np.minimum(pos.astype(int), len(_VIRIDIS) - 2)
    frac = (pos - i)[..., None]
    rgb = _VIRIDIS[i] * (1 - frac) + _VIRIDIS[i + 1] * frac
    return (rgb * 255).round().astype(np.uint8)


def to_uint8_image(image) -> np.ndarray:
    """3×H×W in [-1, 1] → H×W×3 uint8."""
    a = _np(image).transpose(1, 2, 0)
    return ((np.clip(a, -1, 1) + 1) * 127.5).round().astype(np.uint8)


def outline(mask) -> np.ndarray:
    """Boundary pixels of a binary H×W mask."""
    m = _np(mask).astype(bool)
    pad = np.pad(m, 1)
    interior = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return m & ~interior


def overlay(image, heat, vmin: float, vmax: float, alpha: float = 0.5, mask=None) -> np.ndarray:
    """Image with the coloured heatmap blended on top; the ground-truth outline in red."""
    img = to_uint8_image(image).astype(np.float64)
    out = (1 - alpha) * img + alpha * colorize(heat, vmin, vmax)
    if mask is not None:
        out[outline(mask)] = (255, 40, 40)
    return out.round().astype(np.uint8)


def mask_image(mask) -> np.ndarray:
    m = (_np(mask).astype(bool) * 255).astype(np.uint8)
    return np.repeat(m[..., None], 3, axis=-1)


def png_bytes(rgb: np.ndarray, scale: int = 1) -> bytes:
    im = Image.fromarray(rgb)
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def data_uri(rgb: np.ndarray, scale: int = 1) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb, scale)).decode()


def roc_svg(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str, size: int = 260) -> str:
    """ROC curves (fpr, tpr) as an inline SVG with a legend."""
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    pad = 30
    w = size - 2 * pad
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size + 20 * len(curves)}" '
             f'font-family="sans-serif" font-size="11">',
             f'<text x="{size / 2}" y="14" text-anchor="middle">{html.escape(title)}</text>',
             f'<rect x="{pad}" y="{pad}" width="{w}" height="{w}" fill="none" stroke="#444"/>',
             f'<line x1="{pad}" y1="{pad + w}" x2="{pad + w}" y2="{pad}" stroke="#bbb" stroke-dasharray="4"/>',
             f'<text x="{size / 2}" y="{size - 6}" text-anchor="middle">false positive rate</text>',
             f'<text x="10" y="{size / 2}" transform="rotate(-90 10 {size / 2})" text-anchor="middle">'
             'true positive rate</text>']
    for k, (name, (fpr, tpr)) in enumerate(curves.items()):
        idx = np.linspace(0, len(fpr) - 1, min(len(fpr), 400)).astype(int)
        pts = " ".join(f"{pad + w * f:.1f},{pad + w * (1 - t):.1f}" for f, t in zip(fpr[idx], tpr[idx]))
        c = colours[k % len(colours)]
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
        y = size + 14 + 20 * k
        parts.append(f'<line x1="{pad}" y1="{y - 4}" x2="{pad + 20}" y2="{y - 4}" stroke="{c}" stroke-width="3"/>'
                     f'<text x="{pad + 26}" y="{y}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def metrics_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    """HTML table; floats in [0, 1] shown as percentages with one decimal."""
    def cell(v):
        if isinstance(v, float):
            return "–" if np.isnan(v) else f"{100 * v:.1f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    def cell(v):
        if isinstance(v, float):
            return "–" if np.isnan(v) else f"{100 * v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


_CSS = """body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f0f0f0}td:first-child,td:nth-child(2){text-align:left}
.grid{display:grid;gap:4px;align-items:center;margin-bottom:18px}.grid img{width:100%;image-rendering:pixelated}
.grid .h{font-size:12px;font-weight:bold;text-align:center}.cap{font-size:11px;color:#555;text-align:center}
.rocs{display:flex;flex-wrap:wrap;gap:12px}.note{color:#555;font-size:13px}"""


def html_page(title: str, sections: Sequence[str]) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>")


def image_grid(rows: Sequence[Sequence[np.ndarray]], headers: Sequence[str], captions: Sequence[str] = (),
               scale: int = 1) -> str:
    """A grid of images: one row per sample, one column per header."""
    cols = len(headers)
    cells = [f"<div class='h'>{html.escape(h)}</div>" for h in headers]
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            cap = captions[r] if c == 0 and r < len(captions) else ""
            cells.append(f"<div><img src='{data_uri(img, scale)}'/>"
                         + (f"<div class='cap'>{html.escape(cap)}</div>" if cap else "") + "</div>")
    return f"<div class='grid' style='grid-template-columns:repeat({cols},1fr)'>{''.join(cells)}</div>"


def grid_png(rows: Sequence[Sequence[np.ndarray]], headers: Sequence[str], captions: Sequence[str] = (),
             scale: int = 1, title: str = "", max_side: int = 0) -> bytes:
    """The same grid as ``image_grid`` as one PNG (for files committed beside a report):
    a header line per column, the caption of each row under its first image. Tiles are
    enlarged ``scale`` times (nearest), or shrunk to ``max_side`` px (area-averaged) when larger."""
    from PIL import ImageDraw

    h, w = rows[0][0].shape[:2]
    h, w = h * scale, w * scale
    if max_side and max(h, w) > max_side:
        h, w = max(1, round(h * max_side / max(h, w))), max(1, round(w * max_side / max(h, w)))
    gap, line = 4, 12
    top = line * (2 if title else 1) + gap
    row_h = h + line + gap
    canvas = Image.new("RGB", (len(headers) * (w + gap) + gap, top + len(rows) * row_h), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap, 0), title, fill=(0, 0, 0))
    for c, name in enumerate(headers):
        draw.text((gap + c * (w + gap), top - line - gap + 2), name, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        y = top + r * row_h
        for c, img in enumerate(row):
            im = Image.fromarray(img)
            if im.size != (w, h):
                im = im.resize((w, h), Image.NEAREST if w >= im.width else Image.BOX)
            canvas.paste(im, (gap + c * (w + gap), y))
        if r < len(captions):
            draw.text((gap, y + h + 1), captions[r], fill=(80, 80, 80))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
