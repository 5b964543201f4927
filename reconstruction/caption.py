"""Captions: who looks how (appearance, one per person) and what the scene is like (one per clip).

Two captioners share one interface:

- :class:`LlavaCaptioner` asks a local LLaVA (transformers ``LlavaForConditionalGeneration``) the AMG
  paper's questions verbatim: :data:`Q_A` on a key frame with the person's bounding box drawn, :data:`Q_S`
  on the middle frame.
- :class:`AttributeCaptioner`, the embedded default, names the dominant colours of the upper body, lower
  body and feet (regions from the landmarks, intersected with the segmentation mask when given) and
  describes the scene from global brightness and colour statistics. Deterministic, no weights.
"""

from __future__ import annotations

import re
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from render.errors import AmgError
from render.image import video_array

from .pose import LANDMARK_INDEX

__all__ = [
    "Q_A", "Q_S", "CLIP_MAX_TOKENS", "Captioner", "LlavaCaptioner", "AttributeCaptioner", "key_frame",
    "person_box", "draw_box", "colour_name", "clip_token_count",
]

#: The AMG paper's appearance question (asked on a key frame with the person's bounding box drawn).
Q_A = "How would you describe the appearance of the person in the bounding box?"
#: The AMG paper's scene question (asked on the middle frame).
Q_S = ("How does the scene look? How do the humans in the scene interact with each other and the environment? "
       "What is the atmosphere of the image?")
#: Context length of the CLIP text encoder the captions condition.
CLIP_MAX_TOKENS = 77

_L_SH, _R_SH, _L_HIP, _R_HIP, _L_KNEE, _R_KNEE, _L_ANK, _R_ANK = (
    LANDMARK_INDEX[f"{side}_{part}"] for part in ("shoulder", "hip", "knee", "ankle") for side in ("left", "right"))
_FEET = (27, 28, 29, 30, 31, 32)
_CLIP_PATTERN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+", re.IGNORECASE)


def clip_token_count(text: str) -> int:
    """A lower bound on the CLIP tokenizer's length of ``text`` (start and end tokens included).

    CLIP splits words, single digits and punctuation runs before byte-pair encoding; each piece is at
    least one token, so the count here never exceeds the true one.
    """
    return len(_CLIP_PATTERN.findall(text.lower())) + 2


def _check_video(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    return video_array(frames, name="frames", uint8=False)


def _check_keypoints(keypoints, F: int) -> np.ndarray:
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.ndim == 2:
        kp = kp[None]
    if kp.ndim != 3 or kp.shape[1:] != (33, 3) or kp.shape[0] != F:
        raise AmgError(f"keypoints: expected ({F},33,3) pixels and confidence, got shape {kp.shape}")
    return kp


def person_box(keypoints: np.ndarray, width: int, height: int, min_confidence: float = 0.5) -> np.ndarray | None:
    """Box ``(4,)`` int x0, y0, x1, y1 around one frame's confident landmarks ``(33,3)`` (None if < 2)."""
    from .pose import landmark_box

    kp = np.asarray(keypoints, dtype=np.float32)
    if (kp[:, 2] >= min_confidence).sum() < 2:
        return None
    box = landmark_box(kp, min_visibility=min_confidence)
    box = np.clip(np.round(box), 0, [width - 1, height - 1, width - 1, height - 1]).astype(np.int64)
    return box


def key_frame(keypoints: np.ndarray, width: int, height: int, min_confidence: float = 0.5) -> int:
    """The frame that shows the person best: number of confident landmarks times box area."""
    kp = np.asarray(keypoints, dtype=np.float32)
    scores = []
    for f in range(len(kp)):
        box = person_box(kp[f], width, height, min_confidence)
        if box is None:
            scores.append(-1.0)
            continue
        area = float(max(box[2] - box[0], 0) * max(box[3] - box[1], 0))
        scores.append(float((kp[f, :, 2] >= min_confidence).sum()) * area)
    return int(np.argmax(scores))


def draw_box(image: np.ndarray, box, colour=(255, 0, 0), thickness: int | None = None) -> np.ndarray:
    """A copy of ``image (H,W,3)`` uint8 with the rectangle ``box`` (x0, y0, x1, y1) drawn."""
    out = np.ascontiguousarray(image).copy()
    t = thickness or max(1, round(min(out.shape[:2]) / 128))
    x0, y0, x1, y1 = (int(v) for v in box)
    cv2.rectangle(out, (x0, y0), (x1, y1), tuple(int(c) for c in colour), t)
    return out


class Captioner(ABC):
    """Describes people (appearance) and scenes. ``name`` keys cached results."""

    name = "captioner"

    @abstractmethod
    def appearance(self, frames, keypoints, mask=None, parts=None) -> str:
        """One person's appearance.

        Args:
            frames: ``(F,H,W,3)`` uint8 RGB clip.
            keypoints: ``(F,33,3)`` that person's landmarks (pixels, confidence).
            mask: optional ``(F,H,W)`` bool or probability of that person.
            parts: optional ``(F,H,W)`` uint8 body-part labels of that person's fitted body
                (:func:`reconstruction.parts.part_labels`), already limited to their mask.
        """

    @abstractmethod
    def scene(self, frames) -> str:
        """The scene of a ``(F,H,W,3)`` uint8 clip."""


def _warn_long(text: str, counter: Callable[[str], int], what: str) -> None:
    n = counter(text)
    if n > CLIP_MAX_TOKENS:
        warnings.warn(f"{what} caption has {n} tokens; the text encoder reads only the first {CLIP_MAX_TOKENS}",
                      stacklevel=3)


class LlavaCaptioner(Captioner):
    """LLaVA from a local folder (``save_pretrained`` layout of the model and its processor).

    Args:
        path: folder with the model weights, config and processor files.
        max_new_tokens: longest answer.
        token_counter: counts tokens of the downstream text encoder (default :func:`clip_token_count`);
            answers longer than 77 tokens raise a warning.
    """

    name = "llava"

    def __init__(self, path: str | Path, max_new_tokens: int = 96, device: str = "cpu",
                 token_counter: Callable[[str], int] | None = None) -> None:
        path = Path(path)
        if not (path / "config.json").is_file():
            raise AmgError(f"{path}: no LLaVA model folder (config.json missing); expected a save_pretrained folder")
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        try:
            self.processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
            self.model = LlavaForConditionalGeneration.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise AmgError(f"{path}: cannot load LLaVA ({str(e).splitlines()[0]})") from None
        self.model.to(device).eval()
        self.device = device
        self.max_new_tokens = int(max_new_tokens)
        self.token_counter = token_counter or clip_token_count

    def _prompt(self, question: str) -> str:
        if getattr(self.processor, "chat_template", None):
            conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            return self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        token = getattr(self.processor, "image_token", "<image>")
        return f"USER: {token}\n{question} ASSISTANT:"

    def ask(self, image: np.ndarray, question: str) -> str:
        """LLaVA's greedy answer to ``question`` about ``image (H,W,3)`` uint8."""
        import torch
        from PIL import Image

        inputs = self.processor(images=Image.fromarray(np.ascontiguousarray(image)), text=self._prompt(question),
                                return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new, skip_special_tokens=True)[0].strip()

    def appearance(self, frames, keypoints, mask=None, parts=None) -> str:
        frames = _check_video(frames)
        F, H, W = frames.shape[:3]
        kp = _check_keypoints(keypoints, F)
        f = key_frame(kp, W, H)
        box = person_box(kp[f], W, H)
        image = frames[f] if box is None else draw_box(frames[f], box)
        text = self.ask(image, Q_A)
        _warn_long(text, self.token_counter, "appearance")
        return text

    def scene(self, frames) -> str:
        frames = _check_video(frames)
        text = self.ask(frames[len(frames) // 2], Q_S)
        _warn_long(text, self.token_counter, "scene")
        return text


# ---- colour naming -----------------------------------------------------------------------------------

def _name_pixels(rgb: np.ndarray) -> np.ndarray:
    """Colour name index per pixel of ``(N,3)`` uint8 RGB (into :data:`_COLOUR_NAMES`)."""
    hsv = cv2.cvtColor(rgb.reshape(-1, 1, 3).astype(np.uint8), cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.int32)
    h, s, v = hsv[:, 0] * 2, hsv[:, 1], hsv[:, 2]  # hue in degrees, s and v in 0..255
    idx = np.full(len(rgb), _COLOUR_NAMES.index("grey"))
    chroma = (s >= 60) & (v >= 60)
    hue_names = np.array([_COLOUR_NAMES.index(n) for n in _HUE_NAMES])
    bins = np.searchsorted(_HUE_EDGES, h, side="right") - 1
    idx = np.where(chroma, hue_names[np.clip(bins, 0, len(hue_names) - 1)], idx)
    warm = chroma & ((h < 45) | (h >= 345))
    idx = np.where(warm & (v < 150) & (h >= 10) & (h < 45), _COLOUR_NAMES.index("brown"), idx)
    idx = np.where(chroma & ((h < 15) | (h >= 330)) & (s < 130) & (v >= 170), _COLOUR_NAMES.index("pink"), idx)
    idx = np.where(~chroma & (v >= 200) & (s < 40), _COLOUR_NAMES.index("white"), idx)
    idx = np.where(v < 50, _COLOUR_NAMES.index("black"), idx)
    return idx


_COLOUR_NAMES = ("black", "white", "grey", "red", "orange", "yellow", "green", "teal", "blue", "purple", "pink",
                 "brown")
_HUE_EDGES = np.array([0, 15, 45, 70, 165, 195, 255, 290, 330, 345, 361])
_HUE_NAMES = ("red", "orange", "yellow", "green", "teal", "blue", "purple", "pink", "red", "red")


def colour_name(pixels: np.ndarray) -> str | None:
    """The most frequent colour name among ``(N,3)`` uint8 RGB pixels (None when empty)."""
    pixels = np.asarray(pixels, dtype=np.uint8).reshape(-1, 3)
    if len(pixels) == 0:
        return None
    counts = np.bincount(_name_pixels(pixels), minlength=len(_COLOUR_NAMES))
    return _COLOUR_NAMES[int(np.argmax(counts))]


def _colour_shares(pixels: np.ndarray) -> list[tuple[str, float]]:
    counts = np.bincount(_name_pixels(pixels), minlength=len(_COLOUR_NAMES)).astype(np.float64)
    share = counts / max(counts.sum(), 1.0)
    order = np.argsort(-share, kind="stable")
    return [(_COLOUR_NAMES[i], float(share[i])) for i in order if share[i] > 0]


def _skin_classifier(reference: np.ndarray | None) -> Callable[[np.ndarray], np.ndarray]:
    """A test ``(N,3)`` uint8 RGB -> ``(N,)`` bool for skin: near the person's own face colour (``reference``
    pixels, CIELAB distance) when given, else the usual YCrCb skin range."""

    def lab(px):
        return cv2.cvtColor(np.asarray(px, np.uint8).reshape(-1, 1, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)

    def ycrcb_rule(px):
        y = cv2.cvtColor(np.asarray(px, np.uint8).reshape(-1, 1, 3), cv2.COLOR_RGB2YCrCb).reshape(-1, 3)
        return (y[:, 1] >= 135) & (y[:, 1] <= 180) & (y[:, 2] >= 85) & (y[:, 2] <= 135) & (y[:, 0] >= 60)

    if reference is None or len(reference) == 0:
        return lambda px: ycrcb_rule(px) if len(px) else np.zeros(0, bool)
    ref_lab = lab(reference)
    face = ref_lab[ycrcb_rule(reference)] if ycrcb_rule(reference).sum() >= 8 else ref_lab  # skip hair, eyes
    centre = np.median(face, axis=0)

    def near_face(px):
        if len(px) == 0:
            return np.zeros(0, bool)
        d = np.linalg.norm((lab(px) - centre) * np.array([0.5, 1.0, 1.0], np.float32), axis=1)
        return d < 18.0  # lightness varies with shading more than hue does

    return near_face


class AttributeCaptioner(Captioner):
    """Colour-and-brightness captions from landmarks (and masks): deterministic, no model weights.

    Args:
        min_confidence: landmarks needed for a region must be at least this visible.
        min_pixels: a region with fewer pixels is not described.
    """

    name = "attribute"

    def __init__(self, min_confidence: float = 0.5, min_pixels: int = 12) -> None:
        self.min_confidence = min_confidence
        self.min_pixels = min_pixels

    def regions(self, keypoints: np.ndarray, width: int, height: int) -> dict[str, np.ndarray]:
        """Boolean masks ``(H,W)`` of ``upper`` (torso), ``lower`` (legs) and ``feet`` from ``(33,3)`` landmarks."""
        kp = np.asarray(keypoints, dtype=np.float32)
        ok = kp[:, 2] >= self.min_confidence
        pts = kp[:, :2]
        out = {}
        hip_w = float(np.linalg.norm(pts[_L_HIP] - pts[_R_HIP])) if ok[[_L_HIP, _R_HIP]].all() else 0.0
        sh_w = float(np.linalg.norm(pts[_L_SH] - pts[_R_SH])) if ok[[_L_SH, _R_SH]].all() else 0.0
        if ok[[_L_SH, _R_SH, _L_HIP, _R_HIP]].all():
            quad = pts[[_L_SH, _R_SH, _R_HIP, _L_HIP]]
            c = quad.mean(0)
            quad = c + 0.75 * (quad - c)  # stay inside the torso, off the arms and background
            m = np.zeros((height, width), np.uint8)
            cv2.fillPoly(m, [np.round(quad).astype(np.int32)], 1)
            out["upper"] = m.astype(bool)
        width_px = max(hip_w, 0.6 * sh_w)
        legs = [(a, b) for a, b in ((_L_HIP, _L_KNEE), (_L_KNEE, _L_ANK), (_R_HIP, _R_KNEE), (_R_KNEE, _R_ANK))
                if ok[a] and ok[b]]
        if legs and width_px > 0:
            m = np.zeros((height, width), np.uint8)
            thick = max(1, int(round(0.3 * width_px)))
            for a, b in legs:
                # start a little below the hip joint, where trousers are certain and the top has ended
                pa = pts[a] + (0.25 if a in (_L_HIP, _R_HIP) else 0.0) * (pts[b] - pts[a])
                cv2.line(m, tuple(np.round(pa).astype(int)), tuple(np.round(pts[b]).astype(int)), 1, thick)
            out["lower"] = m.astype(bool)
        feet = [i for i in _FEET if ok[i]]
        if len(feet) >= 2 and width_px > 0:
            m = np.zeros((height, width), np.uint8)
            r = max(1, int(round(0.12 * width_px)))
            for side in ((27, 29, 31), (28, 30, 32)):
                seen = [i for i in side if ok[i]]
                for a, b in zip(seen[:-1], seen[1:]):
                    cv2.line(m, tuple(np.round(pts[a]).astype(int)), tuple(np.round(pts[b]).astype(int)), 1, 2 * r)
                for i in seen[1:]:
                    cv2.circle(m, tuple(np.round(pts[i]).astype(int)), r, 1, -1)
            out["feet"] = m.astype(bool)
        return out

    def colours(self, image: np.ndarray, keypoints: np.ndarray, mask: np.ndarray | None = None) -> dict[str, str]:
        """Dominant colour name per region of one frame (regions too small or unseen are left out)."""
        H, W = image.shape[:2]
        out = {}
        for name, region in self.regions(keypoints, W, H).items():
            if mask is not None:
                region = region & (np.asarray(mask) > 0.5)
            if region.sum() >= self.min_pixels:
                out[name] = colour_name(image[region])
        return out

    def appearance(self, frames, keypoints, mask=None, parts=None) -> str:
        frames = _check_video(frames)
        F, H, W = frames.shape[:3]
        kp = _check_keypoints(keypoints, F)
        if parts is not None:
            text = self.appearance_from_parts(frames, parts)
            if text is not None:
                return text
        f = key_frame(kp, W, H, self.min_confidence)
        m = None if mask is None else np.asarray(mask).reshape(F, H, W)[f]
        c = self.colours(frames[f], kp[f], m)
        parts = []
        if "upper" in c:
            parts.append(f"a {c['upper']} top")
        if "lower" in c:
            parts.append(f"{c['lower']} trousers")
        if "feet" in c:
            parts.append(f"{c['feet']} shoes")
        if not parts:
            return "a person"
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        return f"a person wearing {listed}"

    def garments(self, frames: np.ndarray, parts: np.ndarray) -> dict:
        """Garment colours and lengths from the pixels each body part covers, pooled over the clip.

        Args:
            frames: ``(F,H,W,3)`` uint8; parts: ``(F,H,W)`` labels of :func:`reconstruction.parts.part_labels`.
        Returns:
            ``top``, ``bottom``, ``shoes``: colour names of the non-skin pixels of the torso, thighs and feet
            (absent when too few pixels); ``sleeves``: ``none``/``short``/``long`` and ``legs``:
            ``shorts``/``trousers`` from the share of skin-coloured pixels on upper arms, forearms and shins.
        """
        from .parts import part_index

        frames = _check_video(frames)
        parts = np.asarray(parts)
        if parts.shape != frames.shape[:3]:
            raise AmgError(f"parts: expected {frames.shape[:3]} labels like the frames, got shape {parts.shape}")

        def pixels(*names):
            m = np.isin(parts, [part_index(n) for n in names])
            return frames[m]

        skin_ref = pixels("head")
        is_skin = _skin_classifier(skin_ref if len(skin_ref) >= self.min_pixels else None)
        out = {}
        for key, names in (("top", ("torso",)), ("bottom", ("left_upper_leg", "right_upper_leg")),
                           ("shoes", ("left_foot", "right_foot"))):
            px = pixels(*names)
            cloth = px[~is_skin(px)] if len(px) else px
            if len(cloth) >= self.min_pixels:
                out[key] = colour_name(cloth)
        share = {}
        for key, names in (("upper_arm", ("left_upper_arm", "right_upper_arm")),
                           ("forearm", ("left_lower_arm", "right_lower_arm")),
                           ("shin", ("left_lower_leg", "right_lower_leg"))):
            px = pixels(*names)
            if len(px) >= self.min_pixels:
                share[key] = float(is_skin(px).mean())
        if "forearm" in share:
            out["sleeves"] = ("none" if share["forearm"] > 0.5 and share.get("upper_arm", 0.0) > 0.5
                              else "short" if share["forearm"] > 0.5 else "long")
        if "shin" in share:
            out["legs"] = "shorts" if share["shin"] > 0.5 else "trousers"
        return out

    def appearance_from_parts(self, frames: np.ndarray, parts: np.ndarray) -> str | None:
        """The appearance caption from :meth:`garments`; None when no garment could be seen."""
        g = self.garments(frames, parts)
        items = []
        if "top" in g:
            sleeves = {"none": " without sleeves", "short": " with short sleeves", "long": " with long sleeves"}
            items.append(f"a {g['top']} top{sleeves.get(g.get('sleeves', ''), '')}")
        if "bottom" in g:
            items.append(f"{g['bottom']} {g.get('legs', 'trousers')}")
        if "shoes" in g:
            items.append(f"{g['shoes']} shoes")
        if not items:
            return None
        listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
        return f"a person wearing {listed}"

    def scene(self, frames) -> str:
        frames = _check_video(frames)
        image = frames[len(frames) // 2]
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        brightness = float(hsv[..., 2].mean()) / 255
        light = ("dark" if brightness < 0.25 else "dimly lit" if brightness < 0.45 else
                 "softly lit" if brightness < 0.65 else "bright")
        small = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA).reshape(-1, 3)
        shares = [(n, s) for n, s in _colour_shares(small) if s >= 0.15][:2]
        names = [n for n, _ in shares] or [colour_name(small)]
        tones = names[0] if len(names) == 1 else f"{names[0]} and {names[1]}"
        sky = colour_name(cv2.resize(image[: max(1, image.shape[0] // 4)], (32, 8)).reshape(-1, 3))
        where = " under a blue sky" if sky == "blue" and brightness >= 0.45 else ""
        return f"a {light} scene with {tones} tones{where}"
