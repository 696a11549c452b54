"""Model stages on window rows (docs/CONTRACTS.md): Ray Data callable classes that are also plain Python.

Each stage loads its model once per actor, lazily (``setup()``), takes a batch in Ray's numpy format
(ragged columns arrive as object arrays of arrays) and returns the batch with its columns added.
A row that fails gets an ``error`` string ("stage: Type: message") and empty outputs instead of
failing the batch; rows that arrive with an error pass through untouched.
What each stage reads, writes and drops, and its resources in each layout, are declared in
``exvad_ray.pipeline.stages`` (the stage ``name`` here is the declaration's, so errors rows name it).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from exvad_ray.errors import ExvadError
from exvad_ray.models._util import (
    as_images, column, error_text, num_rows, object_column, prior_errors, to_str_list,
)
from exvad_ray.models.profiles import Profile, load_profile
from exvad_ray.models.prompts import build_explanation_messages

log = logging.getLogger(__name__)
Batch = dict[str, Any]


class _Stage:
    name: ClassVar[str] = "stage"
    spec_field: ClassVar[str] = "clip"  # which profile entry holds this stage's model

    def __init__(self, profile: Profile | str = "tiny"):
        self._profile_ref = profile
        self._profile: Profile | None = profile if isinstance(profile, Profile) else None
        self._model: Any = None

    @property
    def profile(self) -> Profile:
        if self._profile is None:
            self._profile = load_profile(self._profile_ref)
        return self._profile

    def setup(self) -> None:
        """Load the model (once per actor)."""
        if self._model is None:
            self._model = self._load()

    def _load(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def model(self) -> Any:
        self.setup()
        return self._model

    def __call__(self, batch: Batch) -> Batch:
        self.setup()
        out = dict(batch)
        errors = prior_errors(batch)
        self._process(batch, out, errors)
        out["error"] = object_column(errors)
        return out

    def _process(self, batch: Batch, out: Batch, errors: list[str | None]) -> None:  # pragma: no cover
        raise NotImplementedError


def _embed_rows(embed: Any, dim: int, rows: list[Any], errors: list[str | None], stage: str,
                allow_empty: bool) -> list[Any]:
    """Embed each row's images with as few model calls as possible: rows of one image size go to
    ``embed`` (a list of per-row arrays -> a list of per-row features) together."""
    feats: list[Any] = [None] * len(rows)
    groups: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {}
    for i, imgs in enumerate(rows):
        if errors[i] is not None:
            continue
        try:
            arr = np.asarray(imgs) if imgs is not None else np.zeros((0, 1, 1, 3), np.uint8)
            if allow_empty and arr.ndim == 4 and arr.shape[0] == 0:
                feats[i] = np.zeros((0, dim), np.float32)
                continue
            arr = as_images(arr)
            groups.setdefault(arr.shape[1:3], []).append((i, arr))
        except ExvadError as exc:
            errors[i] = error_text(stage, exc)
    for items in groups.values():
        try:
            per_row = embed([a for _, a in items])
        except Exception as exc:  # noqa: BLE001 - a model failure marks these rows, not the job
            for i, _ in items:
                errors[i] = error_text(stage, exc)
            continue
        for (i, _), f in zip(items, per_row):
            feats[i] = f
    return feats


class ClipImageStage(_Stage):
    """frames -> visual_embedding (n_snippets, snippet_dim: encoders.embed_snippets over the window's
    snippets in order); keyframes -> keyframe_embedding (n_kf, image_dim). Adds visual_model.

    `keyframes=False` (runs without captions, whose cleaning is the only user of keyframe features)
    skips embedding them.
    """

    name = "visual"
    spec_field = "clip"

    def __init__(self, profile: Profile | str = "tiny", drop_frames: bool = False, keyframes: bool = True):
        super().__init__(profile)
        self.drop_frames = drop_frames
        self.keyframes = keyframes

    def _load(self) -> Any:
        from exvad_ray.models.encoders import load_encoders

        return load_encoders(self.profile.clip)

    def _process(self, batch: Batch, out: Batch, errors: list[str | None]) -> None:
        from exvad_ray.models.encoders import frame_snippets

        clip = self.model
        empty = np.zeros((0, clip.snippet_dim), np.float32)
        frames = _embed_rows(clip.embed_snippets, clip.snippet_dim, column(batch, "frames"), errors, self.name,
                             allow_empty=False)
        out["visual_embedding"] = object_column([f if f is not None and errors[i] is None else empty
                                              for i, f in enumerate(frames)])
        if self.keyframes and "keyframes" in batch:
            empty = np.zeros((0, clip.image_dim), np.float32)
            kf = _embed_rows(lambda rows: frame_snippets(clip, rows), clip.image_dim, column(batch, "keyframes"),
                             errors, self.name, allow_empty=True)
            out["keyframe_embedding"] = object_column([f if f is not None and errors[i] is None else empty
                                                      for i, f in enumerate(kf)])
        out["visual_model"] = object_column([clip.model_id] * num_rows(batch))
        if self.drop_frames:
            out.pop("frames", None)


class CaptionStage(_Stage):
    """keyframes -> captions (list[str], one per keyframe), batched across rows. Adds caption_model."""

    name = "caption"
    spec_field = "captioner"

    def _load(self) -> Any:
        from exvad_ray.models.tag_captioner import build_captioner

        return build_captioner(self.profile)

    def _process(self, batch: Batch, out: Batch, errors: list[str | None]) -> None:
        cap = self.model
        rows = column(batch, "keyframes")
        captions: list[list[str]] = [[] for _ in rows]
        todo: list[tuple[int, np.ndarray]] = []
        for i, imgs in enumerate(rows):
            if errors[i] is not None:
                continue
            arr = np.asarray(imgs) if imgs is not None else np.zeros((0,))
            if arr.ndim == 4 and arr.shape[0] == 0:
                continue  # no keyframes in this window: no captions
            try:
                todo.append((i, as_images(arr, "keyframes")))
            except ExvadError as exc:
                errors[i] = error_text(self.name, exc)
        by_shape: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
        for i, arr in todo:
            by_shape.setdefault(arr.shape[1:], []).append((i, arr))
        for items in by_shape.values():
            try:
                texts = cap.caption(np.concatenate([a for _, a in items]))
            except Exception as exc:  # noqa: BLE001
                for i, _ in items:
                    errors[i] = error_text(self.name, exc)
                continue
            start = 0
            for i, a in items:
                captions[i] = texts[start:start + len(a)]
                start += len(a)
        out["captions"] = object_column(captions)
        out["caption_model"] = object_column([cap.model_id] * len(rows))


class CaptionCleaningStage(_Stage):
    """captions + keyframe_embedding -> clean_captions: with aligned encoders each keyframe's caption becomes
    the caption (of the same row) whose CLIP text embedding is closest to the keyframe's CLIP image
    embedding; otherwise the tag rule of ``cleaning.clean_tag_captions``."""

    name = "clean"
    spec_field = "clip"

    def _load(self) -> Any:
        from exvad_ray.models.encoders import load_encoders

        return load_encoders(self.profile.clip)

    def _process(self, batch: Batch, out: Batch, errors: list[str | None]) -> None:
        from exvad_ray.models.cleaning import row_cleaner

        clip = self.model
        caps = [to_str_list(c) for c in column(batch, "captions")]
        feats = column(batch, "keyframe_embedding")
        clean = row_cleaner(clip, [cs for i, cs in enumerate(caps) if errors[i] is None], self.profile.captioner)
        cleaned: list[list[str]] = [[] for _ in caps]
        for i, cs in enumerate(caps):
            if errors[i] is not None or not cs:
                continue
            try:
                img = np.asarray(list(feats[i]) if isinstance(feats[i], np.ndarray) and feats[i].dtype == object
                                 else feats[i], dtype=np.float32).reshape(-1, clip.image_dim)
                if len(img) != len(cs):
                    raise ExvadError(f"{len(cs)} captions but {len(img)} keyframe features")
                cleaned[i] = clean(img, cs)
            except Exception as exc:  # noqa: BLE001
                errors[i] = error_text(self.name, exc)
        out["clean_captions"] = object_column(cleaned)


def _as_floats(value: Any) -> np.ndarray:
    return np.asarray(value if value is not None else [], dtype=np.float64).reshape(-1)


def explanation_messages_for_row(row: dict[str, Any]) -> list[dict[str, str]]:
    """The explanation prompt of one window row: its time-stamped cleaned captions (``captions`` when not
    cleaned). Video-level for a video's only window; per-window (with the window's span) otherwise, i.e.
    when ``window_index > 0`` or an ``n_windows`` column says the video has several."""
    caps = to_str_list(row.get("clean_captions") if row.get("clean_captions") is not None else row.get("captions"))
    times = _as_floats(row.get("keyframe_s"))
    if len(times) != len(caps):
        raise ExvadError(f"{len(caps)} captions but {len(times)} keyframe times")
    window = None
    multi = int(row.get("window_index") or 0) > 0 or int(row.get("n_windows") or 1) > 1
    if multi:
        start, end = _as_floats(row.get("start_s")), _as_floats(row.get("end_s"))
        window = (float(start[0]) if len(start) else float(times[0]) if len(times) else 0.0,
                  float(end[-1]) if len(end) else float(times[-1]) if len(times) else 0.0)
    return build_explanation_messages(list(zip(times.tolist(), caps)), window=window)


def _rows(batch: Batch, names: tuple[str, ...]) -> list[dict[str, Any]]:
    cols = {n: column(batch, n) for n in names if n in batch}
    return [{n: cols[n][i] for n in cols} for i in range(num_rows(batch))]


_PROMPT_COLUMNS = ("clean_captions", "captions", "keyframe_s", "window_index", "n_windows", "start_s", "end_s")


class ExplanationPromptStage:
    """Adds the ``messages`` column for the vLLM backend (``build_vllm_explainer``); CPU only, no model."""

    name = "explain_prompt"

    def __call__(self, batch: Batch) -> Batch:
        out = dict(batch)
        errors = prior_errors(batch)
        messages: list[Any] = []
        for i, row in enumerate(_rows(batch, _PROMPT_COLUMNS)):
            try:
                messages.append(explanation_messages_for_row(row) if errors[i] is None else [])
            except Exception as exc:  # noqa: BLE001
                errors[i] = error_text(self.name, exc)
                messages.append([])
        out["messages"] = object_column(messages)
        out["error"] = object_column(errors)
        return out


class ExplanationStage(_Stage):
    """clean_captions + keyframe_s -> explanation (transformers backend). Sets explanation_model and, when
    absent, caption_model. A window without captions gets an empty explanation (no LLM call)."""

    name = "explain"
    spec_field = "explainer"

    def _load(self) -> Any:
        from exvad_ray.models.explainer import build_explainer

        return build_explainer(self.profile.explainer)

    def _process(self, batch: Batch, out: Batch, errors: list[str | None]) -> None:
        llm = self.model
        n = num_rows(batch)
        explanations: list[str] = [""] * n
        todo: list[tuple[int, list[dict[str, str]]]] = []
        for i, row in enumerate(_rows(batch, _PROMPT_COLUMNS)):
            if errors[i] is not None:
                continue
            try:
                if len(to_str_list(row.get("clean_captions", row.get("captions")))) == 0:
                    continue
                todo.append((i, explanation_messages_for_row(row)))
            except Exception as exc:  # noqa: BLE001
                errors[i] = error_text(self.name, exc)
        if todo:
            try:
                texts = llm.explain([m for _, m in todo])
                for (i, _), t in zip(todo, texts):
                    explanations[i] = t
            except Exception as exc:  # noqa: BLE001
                for i, _ in todo:
                    errors[i] = error_text(self.name, exc)
        out["explanation"] = object_column(explanations)
        out["explanation_model"] = object_column([llm.model_id] * n)
        if "caption_model" not in batch:
            from exvad_ray.models.profiles import model_id

            out["caption_model"] = object_column([model_id(self.profile.captioner.model)] * n)


class TextEmbeddingStage(_Stage):
    """explanation -> explanation_embedding (D,) float32 with the CLIP text tower (zeros for error rows)."""

    name = "embed_text"
    spec_field = "clip"

    def __init__(self, profile: Profile | str = "tiny", text_column: str = "explanation",
                 output_column: str = "explanation_embedding"):
        super().__init__(profile)
        self.text_column, self.output_column = text_column, output_column

    def _load(self) -> Any:
        from exvad_ray.models.encoders import load_encoders

        return load_encoders(self.profile.clip)

    def _process(self, batch: Batch, out: Batch, errors: list[str | None]) -> None:
        clip = self.model
        texts = [str(t) if t is not None else "" for t in column(batch, self.text_column)]
        feats = np.zeros((len(texts), clip.text_dim), np.float32)
        ok = [i for i in range(len(texts)) if errors[i] is None]
        if ok:
            try:
                feats[ok] = clip.embed_texts([texts[i] for i in ok])
            except Exception as exc:  # noqa: BLE001
                for i in ok:
                    errors[i] = error_text(self.name, exc)
        out[self.output_column] = feats
