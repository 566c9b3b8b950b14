"""output/review.html: a contact sheet of every character, location and scene picture.

Made from the three scripts' checkpoints (each picture's entry holds its prompt, seed, size,
settings and passes), so it always shows what was really made, and rewritten at the end of
each script. One self-contained file: inline CSS, pictures linked relatively (open it from
output/ in any browser, offline), every text escaped. It needs no JavaScript; a few lines of
it only flag pictures that fail to load. Ids are shown ready to paste into retake.txt. A scene
picture the identity judge scored (common.pictures.identity) has a badge with its score and the
judge's line per character; the flagged ones (still under the threshold after their retakes)
come first in their section.
"""
from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from common.state.atomic import atomic_write_text
from common.state.checkpoints import Entry, read_entries, state_file

REVIEW_FILE = "review.html"
SECTIONS = (("character", "Characters", "2.character"), ("sheet", "Character sheets", "2.character"),
            ("location", "Locations", "2.location"), ("plate", "Background plates", "3.scene"),
            ("scene", "Scenes", "3.scene"))
# Sections shown only when they have pictures (sheets need input/assets.json, plates KEYFRAME_MODE layered).
_OPTIONAL = ("sheet", "plate")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#15171c;color:#e8e6e1}
header,nav,section{padding:12px 24px}
header p{margin:4px 0;color:#b9b6ae}
h1{margin:8px 0 4px;font-size:1.5em} h2{border-bottom:1px solid #333;padding-bottom:4px}
nav a{color:#9cc4ff;margin-right:16px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:16px}
.grid.tall{grid-template-columns:repeat(auto-fill,minmax(220px,1fr))}
figure{margin:0;background:#1f2229;border-radius:8px;padding:8px;overflow:hidden}
figure img{display:block;width:100%;height:auto;border-radius:4px;background:#000}
figcaption{font-size:13px;line-height:1.4;margin-top:6px}
code{background:#2b2f38;padding:1px 5px;border-radius:3px;user-select:all}
.meta{color:#b9b6ae}
.badge{display:inline-block;background:#6b4f12;color:#ffd98a;border-radius:3px;padding:0 5px;font-size:11px;margin-left:4px}
.badge.ok{background:#1d4d2b;color:#b8f0c6} .badge.flag{background:#7a1f1f;color:#ffd0d0} .badge.none{background:#333;color:#ccc}
figure.flagged{outline:2px solid #c33}
details{margin-top:4px} summary{cursor:pointer;color:#9cc4ff}
pre{white-space:pre-wrap;word-break:break-word;background:#111318;padding:6px;border-radius:4px;margin:4px 0;font-size:12px}
table{border-collapse:collapse;font-size:12px} td{padding:1px 6px;border-bottom:1px solid #2b2f38;vertical-align:top}
.refs{display:flex;gap:4px;margin-top:4px} .refs img{width:auto;max-height:64px}
.empty{color:#b9b6ae;font-style:italic}
#broken{background:#5c1b1b;color:#ffd0d0;padding:8px 24px;margin:0}
img[data-loaded="no"]{outline:3px solid #d33}
"""

# Marks each picture loaded or not, and says at the top which ones failed (the page works without it).
_SCRIPT = """
addEventListener("load", function () {
  var bad = [];
  for (var i = 0; i < document.images.length; i++) {
    var img = document.images[i], ok = img.complete && img.naturalWidth > 0;
    img.setAttribute("data-loaded", ok ? "yes" : "no");
    if (!ok) bad.push(img.getAttribute("src"));
  }
  document.body.setAttribute("data-images", String(document.images.length));
  document.body.setAttribute("data-broken", String(bad.length));
  if (bad.length) {
    var note = document.getElementById("broken");
    note.hidden = false;
    note.textContent = bad.length + " picture(s) failed to load: " + bad.join(", ");
  }
});
"""


def load_entries(pipeline_dir: Path, script: str) -> list[Entry]:
    """The finished picture entries of one script's checkpoint file (passes and unreadable files skipped)."""
    try:
        entries = [Entry.from_json(key, value) for key, value in read_entries(state_file(pipeline_dir, script)).items()]
    except (ValueError, KeyError, TypeError):
        return []
    pictures = [e for e in entries if e.status == "done" and e.files and e.data.get("kind")]
    return sorted(pictures, key=lambda e: (e.data.get("order", 0), e.data.get("variation", 1), e.key))


def _href(pipeline_dir: Path, stored: str) -> str:
    """A link from output/review.html to a file stored relative to the pipeline folder."""
    path = Path(stored)
    if path.is_absolute():
        return path.as_uri()
    parts = path.parts
    if parts and parts[0] == "output":
        return quote("/".join(parts[1:]))
    return quote("../" + "/".join(parts))


def _value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _table(rows: Iterable[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(_value(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>" if cells else ""


def _passes(passes: list[dict[str, Any]]) -> str:
    if not passes:
        return ""
    items = []
    for p in passes:
        loras = ", ".join(f"{l[0]} ({l[1]}/{l[2]})" for l in p.get("loras", [])) or "no LoRA"
        bits = [f"pass {p.get('number')}: {loras}", f"{p.get('steps')} steps", f"from {p.get('input')}"]
        if p.get("denoise") is not None and p.get("input") != "empty latent":
            bits.append(f"denoise {p.get('denoise')}")
        if not p.get("references", True):
            bits.append("no references")
        items.append(f"<li>{html.escape(', '.join(bits))}</li>")
    return f"<ol>{''.join(items)}</ol>"


def _identity(record: Any) -> tuple[str, str]:
    """The identity judge's badge (score, or flagged) and its details: each character's score and reason."""
    if not isinstance(record, dict) or not record:
        return "", ""
    if not record.get("judged"):
        why = record.get("note") or "no identity judge ran for this picture"
        return f'<span class="badge none" title="{html.escape(str(why), quote=True)}">not judged</span>', ""
    score = record.get("score")
    shown = f"{score:.2f}" if isinstance(score, (int, float)) else "?"
    retakes = int(record.get("retakes") or 0)
    tried = record.get("candidates") or []
    words = f"kept candidate {record.get('kept')} of {len(tried)}" + (f" after {retakes} retake(s)" if retakes else "")
    if record.get("flagged"):
        badge = f'<span class="badge flag identity" title="{html.escape(words, quote=True)}">flagged · identity {shown}</span>'
    else:
        badge = f'<span class="badge ok identity" title="{html.escape(words, quote=True)}">identity {shown}</span>'
    rows = "".join(
        f"<tr><td><code>{html.escape(tag)}</code></td><td class=\"score\">{html.escape(_score(v))}</td>"
        f"<td>{html.escape(str(v.get('reason', '')) if isinstance(v, dict) else '')}</td></tr>"
        for tag, v in (record.get("characters") or {}).items())
    seeds = ", ".join(f"{c.get('seed')} ({_score(c)})" for c in tried)
    details = (f"<details{' open' if record.get('flagged') else ''}><summary>identity judge ({html.escape(str(record.get('judge')))}, "
               f"threshold {html.escape(str(record.get('threshold')))})</summary><table>{rows}</table>"
               f"<p class=\"meta\">{html.escape(words)}; candidates' seeds (score): {html.escape(seeds)}</p></details>")
    return badge, details


def _score(value: Any) -> str:
    score = value.get("score") if isinstance(value, dict) else None
    return f"{score:.2f}" if isinstance(score, (int, float)) else "-"


def _figure(pipeline_dir: Path, entry: Entry) -> str:
    data = entry.data
    width, height = int(data.get("width") or 0), int(data.get("height") or 0)
    src = _href(pipeline_dir, entry.files[0])
    size_attrs = f' width="{width}" height="{height}"' if width and height else ""
    identity_badge, identity = _identity(data.get("identity"))
    badge = ('<span class="badge">preview</span>' if entry.preview else "") + identity_badge
    flagged = ' class="flagged"' if isinstance(data.get("identity"), dict) and data["identity"].get("flagged") else ""
    seed = f"seed {data.get('seed')}" + (" (random)" if data.get("random_seed") else "")
    take = f" · take {data['take'] + 1}" if data.get("take") else ""
    meta = f"{seed} · {width}×{height}{take} · {entry.finished_at}"
    refs = ""
    if data.get("references"):
        thumbs = "".join(
            f'<a href="{_href(pipeline_dir, r)}"><img src="{_href(pipeline_dir, r)}" alt="reference {n}"></a>'
            for n, r in enumerate(data["references"], start=1) if (pipeline_dir / r).is_file()
        )
        refs = f'<div class="refs" title="reference pictures given to the model">{thumbs}</div>' if thumbs else ""
    prompt = html.escape(str(data.get("prompt", "")))
    negative = data.get("negative_prompt")
    settings = dict(data.get("settings", {}))
    if data.get("start_image"):
        settings["start image"] = data["start_image"]
    return (
        f'<figure id="{html.escape(entry.key, quote=True)}"{flagged}>'
        f'<a href="{src}"><img src="{src}" alt="{html.escape(entry.key, quote=True)}"{size_attrs}></a>'
        f"<figcaption><code>{html.escape(entry.key)}</code>{badge}<br><span class=\"meta\">{html.escape(meta)}</span>"
        f"{refs}{identity}"
        f"<details><summary>prompt</summary><pre>{prompt}</pre>"
        + (f"<p class=\"meta\">negative:</p><pre>{html.escape(str(negative))}</pre>" if negative else "")
        + f"</details><details><summary>settings and passes</summary>{_table(settings.items())}"
        f"{_passes(list(data.get('passes', [])))}</details></figcaption></figure>"
    )


def render_review(pipeline_dir: Path) -> str:
    pipeline_dir = Path(pipeline_dir)
    sections = []
    counts = []
    preview = False
    shown = []
    flagged = 0
    for kind, title, script in SECTIONS:
        entries = [e for e in load_entries(pipeline_dir, script) if e.data.get("kind") == kind]
        if not entries and kind in _OPTIONAL:
            continue
        # The identity judge's flagged pictures first: they are the ones to look at (sorted() keeps the order otherwise).
        entries = sorted(entries, key=lambda e: not (e.data.get("identity") or {}).get("flagged"))
        flagged += sum(1 for e in entries if (e.data.get("identity") or {}).get("flagged"))
        shown.append((kind, title))
        preview |= any(e.preview for e in entries)
        counts.append(f"{len(entries)} {title.lower()}")
        body = "".join(_figure(pipeline_dir, e) for e in entries) or f'<p class="empty">No {title.lower()} yet: run {script}.py.</p>'
        tall = " tall" if kind == "character" else ""
        sections.append(f'<section id="{kind}s"><h2>{title} ({len(entries)})</h2><div class="grid{tall}">{body}</div></section>')
    engine = "offline previews (storyboard cards)" if preview else "image model (ComfyUI)"
    nav = "".join(f'<a href="#{kind}s">{title}</a>' for kind, title in shown)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>Review: {html.escape(pipeline_dir.name)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>Review: {html.escape(pipeline_dir.name)}</h1>"
        f"<p>{html.escape(', '.join(counts))}; made by {html.escape(engine)}; page written {time.strftime('%Y-%m-%d %H:%M:%S')}.</p>"
        "<p>To redo pictures, put their ids (one a line) into <code>retake.txt</code> beside generate.py, or click "
        "retake on the dailies page (<code>python generate.py --serve</code>): the next run makes them again "
        "(<code>2.character.py</code>, <code>2.location.py</code> or <code>3.scene.py</code> with <code>--retake</code> "
        "makes only them).</p>"
        + (f"<p class=\"flagged-note\">{flagged} picture(s) stayed under the identity judge's threshold after their "
           "retakes: flagged, shown first (scores per character in <code>identity.json</code>).</p>" if flagged else "")
        + "</header><p id=\"broken\" hidden></p>"
        f"<nav>{nav}</nav>{''.join(sections)}<script>{_SCRIPT}</script></body></html>\n"
    )


def write_review(pipeline_dir: Path) -> Path:
    out = Path(pipeline_dir) / "output" / REVIEW_FILE
    atomic_write_text(out, render_review(pipeline_dir))
    return out

