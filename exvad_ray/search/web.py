"""`exvad serve`: a small server-rendered search page (FastAPI + uvicorn + Jinja2, no JavaScript needed).

Safety by construction: every route takes ids (segment, video) or filter values, never a path; the
only files it reads are the index's Parquet and the source video a segment row names (for its clip),
so nothing outside the index and the archive is reachable. It never writes to the index: feedback and
the audit log go to the labels URI. Who may use it and from where (the secret, CSRF, Origin, Host)
is `exvad_ray.search.access`. Templates autoescape everything the index or the user supplies. A
vanished or damaged index file is skipped (the engine), named on the page and in the audit log.

Evidence (issue 22): a segment of a normality scoring says why it was flagged. Its card and its
video page put the nearest normal moment's thumbnail (the index's `snippets` row that the segment's
`nearest_video_id`/`nearest_snippet` name, route `/snippet/<video_id>:<n>.jpg`) beside the flagged
one, and lead with the evidence sentence, before the keyframes' caption text. Rows without evidence
render as before.
"""

from __future__ import annotations

import io
import math
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from fastapi import Form, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response

from exvad_ray.errors import ExvadError
from exvad_ray.search.access import SESSION_COOKIE, Access, allowed_hosts, install, is_loopback, new_token

ID_RE = re.compile(r"^[0-9A-Za-z._-]{1,80}(?::\d{1,9})?$")
LIST_TTL_S = 30.0  # the page relists the index's files at most this often (a run or compaction changed them)

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{{ title }} - exvad search</title>
<style>
body{font-family:sans-serif;margin:1.5em;background:#fafafa;color:#222}
form.search{display:flex;flex-wrap:wrap;gap:.6em;align-items:end;background:#fff;padding:1em;border:1px solid #ddd}
form.search label{display:flex;flex-direction:column;font-size:.8em}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:1em;margin-top:1em}
.card{background:#fff;border:1px solid #ddd;padding:.6em}
.thumb{display:block;aspect-ratio:16/9;background:#222}
.card img,.thumb img{display:block;width:100%;height:100%;object-fit:contain}
.pair{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:.4em}.pair figure{margin:0}
.pair figcaption{font-size:.75em;color:#555;margin-top:.2em;overflow-wrap:anywhere}
.thumb.none{display:flex;align-items:center;justify-content:center;color:#bbb;font-size:.75em;text-align:center}
#evidence{max-width:760px}.why{font-size:.9em;font-weight:600;color:#333;margin:.2em 0}
.meta{font-size:.85em;color:#555}.cls{font-weight:bold}.err{color:#b00;font-weight:bold}.ok{color:#070}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.3em .5em;font-size:.85em}
</style></head><body>
<h1><a href="/">exvad search</a></h1>
{% if unreadable %}<p class="err" id="unreadable">{{ unreadable }} index file{{ '' if unreadable == 1 else 's' }}
could not be read (vanished or damaged) and {{ 'was' if unreadable == 1 else 'were' }} skipped: results may be
incomplete.</p>{% endif %}
{% if error %}<p class="err" id="error">{{ error }}</p>{% endif %}
{% if message %}<p class="ok" id="message">{{ message }}</p>{% endif %}
{{ body }}
</body></html>"""

SEARCH = """<form class="search" method="get" action="/">
<label>Class<select name="cls"><option value="">any</option>
{% for c in classes %}<option value="{{ c }}"{% if c == q.cls %} selected{% endif %}>{{ c }}</option>{% endfor %}
</select></label>
<label>Min score<input name="min_score" size="5" value="{{ q.min_score }}"></label>
<label>Since (UTC)<input name="since" size="18" placeholder="2026-11-24T22:00" value="{{ q.since }}"></label>
<label>Until (UTC)<input name="until" size="18" value="{{ q.until }}"></label>
<label>Camera<select name="camera"><option value="">any</option>
{% for c in cameras %}<option value="{{ c }}"{% if c == q.camera %} selected{% endif %}>{{ c }}</option>{% endfor %}
</select></label>
<label>Text<input name="text" size="30" placeholder="man climbing a fence at night" value="{{ q.text }}"></label>
<label>Like segment<input name="like" size="20" value="{{ q.like }}"></label>
<label>Limit<input name="limit" size="4" value="{{ q.limit or 24 }}"></label>
<button type="submit" id="search">Search</button></form>
{% if results is not none %}<p id="count">{{ results|length }} segment{{ '' if results|length == 1 else 's' }}</p>
<div class="cards">{% for r in results %}<div class="card result">
{% if r.ev %}<div class="pair evidence">{{ pair(r) }}</div>
{% else %}<a class="thumb" href="/video/{{ r.video_id }}?segment={{ r.segment_id|urlencode }}"><img alt="thumbnail"
 src="/thumb/{{ r.segment_id|urlencode }}.jpg"></a>{% endif %}
<div><span class="cls">{{ r.label }}</span> score {{ '%.3f'|format(r.score) }}
{% if r.similarity is not none %} sim {{ '%.3f'|format(r.similarity) }}{% endif %}</div>
<div class="meta">{{ r.camera }} &middot; {{ r.when }}</div>
{% if r.ev %}<div class="why">{{ r.ev.sentence }}</div><div class="meta">{{ r.ev.facts }}</div>
{% if r.ev.rest %}<div class="meta">{{ r.ev.rest }}</div>{% endif %}{% else %}
<div class="meta">{{ r.explanation or '(no explanation)' }}</div>{% endif %}</div>{% endfor %}</div>{% endif %}"""

#: the flagged thumbnail and the nearest normal moment's, side by side (a card and the video page)
PAIR = """{% macro pair(r) %}<figure><a class="thumb" href="/video/{{ r.video_id }}?segment={{ r.segment_id|urlencode }}">
<img class="flagged" alt="flagged segment" src="/thumb/{{ r.segment_id|urlencode }}.jpg"></a>
<figcaption>flagged: {{ r.camera }} at {{ r.ev.flagged_at }}</figcaption></figure>
<figure>{% if r.ev.nearest_src %}<a class="thumb" href="/video/{{ r.ev.nearest_video_id }}"><img class="nearest"
 alt="closest normal moment" src="{{ r.ev.nearest_src }}"></a>{% else %}<div class="thumb none">closest normal moment
 not in this index</div>{% endif %}
<figcaption>closest normal: {{ r.ev.nearest_name }} at {{ r.ev.nearest_at }}{% if r.ev.nearest_camera %}
 ({{ r.ev.nearest_camera }}){% endif %}{% if r.ev.similarity %}, similarity {{ r.ev.similarity }}{% endif %}</figcaption>
</figure>{% endmacro %}"""

VIDEO = """<h2>{{ video.name }}</h2><p class="meta">{{ video.uri }} &middot; camera {{ video.camera }} &middot;
recorded {{ video.recorded_at or 'unknown' }} &middot; {{ '%.1f'|format(video.duration_s or 0) }} s &middot;
video class {{ video.video_class }} ({{ '%.3f'|format(video.video_score or 0) }})</p>
<img id="timeline" alt="score timeline" src="/timeline/{{ video.video_id }}.png">
{% if seg %}<h3>Segment {{ seg.segment_id }}: {{ seg.label }} {{ '%.3f'|format(seg.score) }},
{{ '%.2f'|format(seg.start_s) }}-{{ '%.2f'|format(seg.end_s) }} s</h3>
{% if seg.ev %}<div id="evidence"><div class="pair">{{ pair(seg) }}</div>
<p class="why" id="evidence-sentence">{{ seg.ev.sentence }}</p><p class="meta">{{ seg.ev.facts }}</p></div>
{% if seg.ev.rest %}<p>{{ seg.ev.rest }}</p>{% endif %}{% else %}<p>{{ seg.explanation or '(no explanation)' }}</p>{% endif %}
<video id="clip" controls width="448" src="/clip/{{ seg.segment_id|urlencode }}.mp4"></video>
<p><a id="download" href="/clip/{{ seg.segment_id|urlencode }}.mp4?download=1">download clip</a></p>
<form method="post" action="/feedback" id="feedback">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="segment_id" value="{{ seg.segment_id }}">
<label>Verdict <select name="verdict" id="verdict"><option value="confirmed">confirmed</option>
<option value="false-alarm">false alarm</option></select></label>
<label>Class <select name="cls"><option value="">as flagged ({{ seg.label }})</option>
{% for c in classes %}<option value="{{ c }}">{{ c }}</option>{% endfor %}</select></label>
<label>Your name <input name="author" id="author" size="12"></label>
<button type="submit" id="send">Send feedback</button></form>{% endif %}
<h3>Flagged segments</h3><table><tr><th>segment</th><th>class</th><th>score</th><th>span (s)</th><th>time</th></tr>
{% for s in segments %}<tr><td><a href="/video/{{ video.video_id }}?segment={{ s.segment_id|urlencode }}">{{ s.segment_id }}</a></td>
<td>{{ s.label }}</td><td>{{ '%.3f'|format(s.score) }}</td><td>{{ '%.2f'|format(s.start_s) }}-{{ '%.2f'|format(s.end_s) }}</td>
<td>{{ s.when }}</td></tr>{% endfor %}</table>"""


def timeline_png(snippets: Any, segments: list[dict[str, Any]], class_names: list[str]) -> bytes:
    """Score timeline: anomaly score per snippet, per-class probability curves, flagged segments shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = snippets.to_pylist()
    t = np.array([r["start_s"] for r in rows], float)
    fig, ax = plt.subplots(figsize=(8, 2.4), dpi=100)
    for s in segments:
        ax.axvspan(s["start_s"], s["end_s"], color="tab:red", alpha=0.18, lw=0)
    if rows:
        probs = np.array([r["class_probs"] or [] for r in rows], float)
        for c in range(1, probs.shape[1] if probs.ndim == 2 else 0):
            name = class_names[c] if c < len(class_names) else f"class {c}"
            ax.plot(t, probs[:, c], lw=0.9, alpha=0.8, label=name)
        ax.plot(t, [r["anomaly_score"] for r in rows], color="black", lw=1.8, label="anomaly score")
    ax.set_ylim(0, 1)
    ax.set_xlabel("seconds")
    ax.legend(fontsize=6, loc="upper left", ncol=4, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _clock(seconds: float) -> str:
    """0:42, 12:05, 1:02:05 (a moment in a video, as a player shows it)."""
    s = max(0, int(round(seconds)))
    h, m, sec = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _percent(p: float) -> str:
    """A percentile of normal footage as the evidence sentence writes it (one decimal: 99.7); where
    that would read 100.0 before 1, three decimals rounded down (99.996): anomalies sit there."""
    if p >= 1:
        return "100"
    if round(p * 100, 1) < 100:
        return f"{max(0.0, p) * 100:.1f}"
    return f"{math.floor(p * 100_000) / 1000:.3f}".rstrip("0").rstrip(".")


HALVES = {"appearance": "its appearance", "motion": "its motion", "visual": "the picture as a whole"}


def evidence_view(r: dict[str, Any], names: dict[str, str]) -> dict[str, Any] | None:
    """What the page shows of a row's evidence (None: the row has none, the card is as before).
    `names`: video_id -> name of the index's videos (the nearest moment's thumbnail comes from the
    index only when its video is there)."""
    if r.get("evidence") is None and r.get("normality") is None and r.get("nearest_video_id") is None:
        return None
    vid, n = r.get("nearest_video_id"), r.get("nearest_snippet")
    in_index = bool(vid) and vid in names and n is not None
    uri = r.get("nearest_uri") or ""
    name = names.get(vid or "") or (os.path.splitext(os.path.basename(uri))[0] if uri else (vid or "unknown"))
    at = _clock(r["nearest_start_s"]) if r.get("nearest_start_s") is not None else "?"
    sim = f"{r['nearest_similarity']:.2f}" if r.get("nearest_similarity") is not None else ""
    bank = r.get("normality_bank") or "global"
    where = f"the normal footage of {'the archive' if bank == 'global' else bank}"
    sentence = r.get("evidence") or (f"nothing like this in {where}; closest: {name} at {at}"
                                     + (f", similarity {sim}" if sim else ""))
    facts = []
    if r.get("normality") is not None:
        facts.append(f"more unusual than {_percent(float(r['normality']))} % of normal footage")
    if r.get("unusual_half"):
        facts.append(f"unusual: {HALVES.get(r['unusual_half'], r['unusual_half'])}")
    facts.append(f"normal footage compared: {'the whole archive' if bank == 'global' else bank}")
    rest = (r.get("explanation") or "").strip()
    if rest.startswith(sentence):  # the scoring led the explanation with the sentence (no language model)
        rest = rest[len(sentence):].lstrip(" .;\n")
    return {"sentence": sentence, "facts": " \u00b7 ".join(facts), "rest": rest,
            "nearest_video_id": vid, "nearest_name": name, "nearest_at": at, "similarity": sim,
            "nearest_camera": r.get("nearest_camera"), "flagged_at": _clock(r.get("peak_s") or r.get("start_s") or 0),
            "nearest_src": f"/snippet/{vid}:{int(n)}.jpg" if in_index and ID_RE.match(f"{vid}:{int(n)}") else None}


def _when(r: dict[str, Any]) -> str:
    if r.get("start_at") is not None:
        return r["start_at"].strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{r['start_s']:.1f} s into the video (recording time unknown)"


def create_app(index_uri: str, labels: str, token: str | None = None, profile: str | None = None,
               hosts: Sequence[str] | None = None, list_ttl_s: float = LIST_TTL_S) -> Any:
    """The FastAPI application (also used directly by tests). The page always has a secret: `token`,
    or a random one (`app.state.token`). `hosts`: the Host names requests may carry (default: the
    loopback names). `list_ttl_s`: how old the index's file listing may get before a request relists."""
    import jinja2
    import markupsafe
    from fastapi import FastAPI

    from exvad_ray.search.audit import append_audit, audit_uri
    from exvad_ray.search.engine import SearchError, SegmentIndex, make_query
    from exvad_ray.search.export import cut_clip
    from exvad_ray.search.feedback import give_feedback

    index = SegmentIndex(index_uri, profile=profile, list_ttl_s=list_ttl_s)
    index.files  # noqa: B018 - fail at start-up, not at the first request, when there is no index
    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    page, search_t, video_t = env.from_string(PAGE), env.from_string(PAIR + SEARCH), env.from_string(PAIR + VIDEO)
    lock = threading.Lock()  # DuckDB connections are not for concurrent use
    clips = tempfile.mkdtemp(prefix="exvad-clips-")
    audit = audit_uri(labels)
    access = Access(token or new_token())
    app = FastAPI(title="exvad search", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.token = access.token
    install(app, access, hosts if hosts is not None else allowed_hosts("127.0.0.1"))

    def render(request: Request, title: str, body: str, error: str | None = None, message: str | None = None,
               status: int = 200) -> HTMLResponse:
        return HTMLResponse(page.render(title=title, body=markupsafe.Markup(body), error=error, message=message,
                                        unreadable=len(index.last_unreadable)), status_code=status)

    def check_id(value: str) -> str:
        if not ID_RE.match(value):
            raise SearchError(f"malformed id {value!r}")
        return value

    def with_evidence(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each row with `ev` (evidence_view), the index's video names read only when a row has evidence."""
        names: dict[str, str] | None = None
        for r in rows:
            r["ev"] = None
            if r.get("evidence") is not None or r.get("normality") is not None or r.get("nearest_video_id"):
                if names is None:  # the nearest normal videos' names, read for those videos only
                    near = [x["nearest_video_id"] for x in rows if x.get("nearest_video_id")]
                    v = index.video_rows(near, "video_id, name")
                    names = dict(zip(v.column("video_id").to_pylist(), v.column("name").to_pylist())) \
                        if "name" in v.column_names else {}
                r["ev"] = evidence_view(r, names)
        return rows

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        p = request.query_params
        form = {k: p.get(k, "") for k in ("cls", "min_score", "since", "until", "camera", "text", "like", "limit")}
        results, error = None, None
        with lock:
            index.begin_query()
            classes = index.known_classes()
            cameras = sorted({v.get("camera") for _, v in index.files if v.get("camera")})
            try:
                q = make_query(classes=[form["cls"]] if form["cls"] else [], cameras=[form["camera"]] if form["camera"] else [],
                               min_score=float(form["min_score"]) if form["min_score"] else None,
                               since=form["since"] or None, until=form["until"] or None,
                               text=form["text"] or None, like=form["like"] or None,
                               limit=int(form["limit"]) if form["limit"] else 24)
                table = index.search(q)
                results = with_evidence([{**r, "when": _when(r), "similarity": r.get("similarity")}
                                         for r in table.to_pylist()])
                described = q.describe()
                if index.last_unreadable:  # the audit row says the answer may be incomplete, and why
                    described["unreadable_files"] = sorted(index.last_unreadable)[:50]
                append_audit(audit, "search", described, len(results), who=p.get("user") or "web", via="web",
                             index=index.uri)
            except ValueError as exc:
                error = f"malformed number: {exc}"
            except ExvadError as exc:
                error = str(exc)
            body = search_t.render(q=form, classes=classes, cameras=cameras, results=results)
            return render(request, "search", body, error=error, status=400 if error else 200)

    @app.get("/thumb/{segment_id}.jpg")
    def thumb(segment_id: str) -> Response:
        with lock:
            index.begin_query()
            row = index.segment(check_id(segment_id), columns=["thumbnail_jpeg"])
        return Response(row["thumbnail_jpeg"] or b"", media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/snippet/{snippet_id}.jpg")
    def snippet_thumb(snippet_id: str) -> Response:
        """One snippet's stored thumbnail (`<video_id>:<snippet_index>`): a nearest normal moment."""
        video_id, sep, n = check_id(snippet_id).rpartition(":")
        if not sep:
            raise SearchError(f"malformed snippet id {snippet_id!r}: <video_id>:<snippet index>")
        with lock:
            index.begin_query()
            jpeg = index.snippet_thumbnail(video_id, int(n))
        if jpeg is None:
            raise SearchError(f"unknown snippet {snippet_id!r} (or no thumbnail stored for it)")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/video/{video_id}", response_class=HTMLResponse)
    def video(request: Request, video_id: str, segment: str | None = None, msg: str | None = None) -> HTMLResponse:
        with lock:
            index.begin_query()
            v = index.video(check_id(video_id))
            segs = with_evidence([{**s, "when": _when(s)} for s in
                                  sorted(index.video_segments(video_id).to_pylist(), key=lambda s: s["start_s"])])
            classes = index.known_classes()
            seg = next((s for s in segs if s["segment_id"] == segment), None) if segment else None
            if segment and seg is None:
                raise SearchError(f"unknown segment id {segment!r}")
            body = video_t.render(video=v, segments=segs, seg=seg, classes=classes, csrf=request.state.csrf)
            return render(request, v["name"], body, message=msg)

    @app.get("/timeline/{video_id}.png")
    def timeline(video_id: str) -> Response:
        with lock:
            index.begin_query()
            v = index.video(check_id(video_id))
            snippets = index.snippets(video_id)
            segs = index.video_segments(video_id).to_pylist()
        return Response(timeline_png(snippets, segs, list(v.get("class_names") or [])), media_type="image/png")

    @app.get("/clip/{segment_id}.mp4")
    def clip(segment_id: str, download: int = 0) -> Response:
        from exvad_ray import storage

        with lock:
            index.begin_query()
            row = index.segment(check_id(segment_id), columns=["segment_id", "uri", "start_s", "end_s"])
            v = index.video(segment_id.rsplit(":", 1)[0])
        path = os.path.join(clips, re.sub(r"[^0-9A-Za-z_-]", "_", segment_id) + ".mp4")
        if not os.path.exists(path):
            with storage.local_copy(row["uri"]) as src:
                tmp = path + ".part"
                cut_clip(src, tmp, max(0.0, row["start_s"] - 3.0), min(v.get("duration_s") or 1e9, row["end_s"] + 3.0))
                os.replace(tmp, path)
        headers = {"Content-Disposition": f'attachment; filename="{os.path.basename(path)}"'} if download else None
        return FileResponse(path, media_type="video/mp4", headers=headers)

    @app.post("/feedback")
    def feedback(request: Request, csrf: str = Form(""), segment_id: str = Form(""), verdict: str = Form(""),
                 cls: str = Form(""), author: str = Form("")) -> Response:
        if not access.csrf_ok(request.cookies.get(SESSION_COOKIE), csrf):  # before anything is read or written
            return PlainTextResponse("refused: the form's CSRF token is missing or not this session's; reload the "
                                     "page and send again", status_code=403)
        with lock:
            index.begin_query()
            give_feedback(index, labels, check_id(segment_id), verdict, cls or None, author or None, via="web")
        target = f"/video/{segment_id.rsplit(':', 1)[0]}?" + urlencode(
            {"segment": segment_id, "msg": f"feedback recorded: {verdict}"})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(ExvadError)
    async def user_error(request: Request, exc: ExvadError) -> HTMLResponse:
        return render(request, "error", "", error=str(exc), status=404 if "unknown" in str(exc) else 400)

    return app


def serve(index_uri: str, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          labels: str | None = None, profile: str | None = None, allow_hosts: Sequence[str] = ()) -> None:
    """Run the page with uvicorn until interrupted. Without `token` a random one is made and the URL
    that carries it is printed (open it once: the token then lives in a cookie)."""
    import uvicorn

    from exvad_ray.search.audit import default_labels_uri

    if not is_loopback(host) and not token:
        raise ExvadError(f"refusing to listen on {host} without --token (choose the secret you will share)")
    hosts = allowed_hosts(host, allow_hosts)
    app = create_app(index_uri, labels or default_labels_uri(index_uri), token=token, profile=profile, hosts=hosts)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/?" + urlencode({"token": app.state.token})
    print(f"exvad serve: {url}\n  (index {index_uri}; requests must name one of the hosts {', '.join(hosts)}; "
          "Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
