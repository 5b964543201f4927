"""2D/3D human pose per frame: MediaPipe PoseLandmarker (Tasks API) on the embedded BlazePose bundle.

Each detected person gives 33 BlazePose landmarks in pixels with a visibility in [0, 1], the same 33
landmarks in metres (MediaPipe's "world" landmarks: origin between the hips, x right, y down, z away from
the camera, the camera's axes up to a small rotation), and a soft segmentation mask of that person.

The bundle ``reconstruction/data/pose_landmarker.task`` is built by ``tools/build_pose_model.py``.

This module is the detector: :class:`PoseEstimator` runs MediaPipe on frames, tiles and crops around people
(several passes, painting out those found). Following people from frame to frame with the landmark model where
the detector missed them, and reading a pair pressed together apart, is :mod:`reconstruction.follow`, which
:meth:`PoseEstimator.video` runs. The landmarks' vocabulary (names, :class:`Detection`, :func:`landmark_box`,
body and appearance checks) lives in :mod:`reconstruction.landmark_tracking`, below both, and is re-exported
here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from render.errors import AmgError
from render.image import video_array

from .follow import Follower, _people_cover, reading_detection
from .motion_proposals import moving_regions, proposal_rois
# the landmarks' vocabulary lives below both this module and following; re-exported here as before
from .landmark_tracking import (BODY_PROPORTIONS, DEFAULT_MODEL, HEAVY_MODEL, LANDMARK_INDEX, LANDMARK_NAMES,
                                NUM_LANDMARKS, Detection, LandmarkModel, _overlaps, appearance_descriptor,
                                appearance_distance, box_iou, landmark_box, plausible_body, proportion_deviation,
                                roi_from_landmarks, torso_axes)

__all__ = ["LANDMARK_NAMES", "LANDMARK_INDEX", "NUM_LANDMARKS", "DEFAULT_MODEL", "HEAVY_MODEL", "Detection", "PoseEstimator",
           "landmark_box", "box_iou", "torso_axes", "appearance_descriptor", "appearance_distance", "plausible_body",
           "proportion_deviation", "BODY_PROPORTIONS"]


class PoseEstimator:
    """MediaPipe PoseLandmarker over single frames (image mode: frames are independent; tracking is ours).

    Args:
        model_path: a ``.task`` bundle; default the embedded BlazePose bundle.
        num_poses: most people reported per frame (6: two subjects and four bystanders; a crowd beyond it
            goes partly unmasked, and each further person costs landmark-model reads).
        min_detection_confidence, min_presence_confidence: MediaPipe's thresholds.
        masks: also return a segmentation mask per person.
        duplicate_iou: detections overlapping a better one by more than this box IoU are dropped (the
            detector sometimes fires twice on one person when ``num_poses > 1``).
        passes: detection passes per frame. BlazePose's detector often reports only the most salient of
            several people, so each further pass paints the people found so far out of the frame (their
            dilated masks, or boxes, filled with the background's median colour) and looks again, until a
            pass finds nobody new or ``num_poses`` are found.
        propagate: in :meth:`video`, a person found in one frame but not in the next (or previous) one is
            looked for again in a crop around their box there (:meth:`detect_in_box`), sweeping forward and
            backward: the detector misses people against busy backgrounds and at small sizes far more
            often than when shown a crop around them (the usual top-down design).
        crop_scale: side of those crops in units of the person's box size; a tuple gives several sides,
            tried in order until the person is found (the detector finds a person at one framing and not
            at another, so a second framing recovers most misses).
        sweep_patience: frames after a person's last sighting in which the propagation still looks for them
            in a crop; default 0 with ``follow`` (only the frame right after a sighting: a person two framings
            missed there is rarely found by a crop a frame later, and the landmark model follows them at a
            fraction of the cost), else 3.
        key_frames: in :meth:`video`, this many evenly spaced frames also get tiled detection
            (:meth:`detect_tiled` at ``tile_scales``), whose finds the propagation carries to the other
            frames; 0 turns tiling off.
        max_proportion_deviation: detections whose world landmarks stray further than this from a human
            body's proportions (:func:`proportion_deviation`) are dropped as phantoms (texture read as a
            person); None keeps them.
        max_side: every image (a frame, a tile, a crop) is shown to the model with its long side at most this
            many pixels (landmarks, boxes and masks mapped back to its own pixels). The detector sees 224
            pixels and the landmark model a 256-pixel crop around the person whatever the input, so larger
            inputs only cost time (MediaPipe resamples and writes each mask at the input's size); small
            people are the tiles' job. None: the image as given.
        follow: in :meth:`video`, a person found in one frame and missed by the detector in the next (or
            previous) one is followed there by the landmark model alone, on the region handed over from the
            frame they were seen in (:mod:`reconstruction.landmark_tracking`): the detector is face-based and
            misses people in profile, from behind or pressed against someone, the landmark model reads them.
            A reading is kept only while it stays a plausible body of the same person
            (:meth:`reconstruction.follow.Follower.accept`).
        follow_presence: least presence probability of a followed reading (MediaPipe's tracking threshold).
        follow_appearance: most appearance distance (:func:`appearance_distance`) of a followed reading from
            the person as last detected: a reading that slid onto someone else looks like them.
        follow_deviation: most :func:`proportion_deviation` of a followed reading, stricter than
            ``max_proportion_deviation``: no detector vouches for it, and a reading that straddles two people
            pressed together keeps nearly human proportions (0.13-0.2 on the hugging pair, against 0.04-0.1
            on one person followed alone).
        follow_area: most mask area of a followed reading, in units of its landmarks' height squared: one
            person's mask covers 0.15-0.23 of it (profile to front, arms down), a mask over two people
            pressed together 0.26 and more.
        follow_small: how the two limits above grow for small people, whose readings the model gives wider
            masks and looser proportions (at a third to a quarter of the frame height one person's mask covers
            0.18-0.30 of the landmarks' height squared and their proportions stray 0.05-0.17; at 0.6 of the
            frame height 0.12-0.17 and 0.04-0.1): ``(tall, short, area, deviation)``: landmarks spanning
            ``tall`` or more of the frame height get ``follow_area`` and ``follow_deviation``, ``short`` or less
            get ``area`` and ``deviation``, linearly in between. None: the same limits at every size.
        follow_patience: frames a person is carried unseen (hidden behind someone crossing) before they are
            no longer looked for.
        follow_overlap: most share of a followed reading's mask (or box) inside another person's found in that
            frame: a reading that drifted onto the neighbour in a hug lies on them.
        workers: detector instances run side by side in threads (MediaPipe waits for its graph without the
            interpreter lock): frames, tiles and the crops of one frame are independent detections. Results
            are folded in the order a single instance would give, so they do not depend on ``workers``.
            Default: 2, or 1 on a single core.
        split_pairs: in :meth:`video`, a detection that may straddle two people pressed side by side (its
            proportions too far from a body's for following, ``follow_deviation``, or a mask wider than one
            person's, ``split_area``) is read again as two people, each with the other side of a line across
            its mask hidden (:func:`reconstruction.proposals.split_reading`); both readings must pass the
            checks of a followed reading, lie ``split_separation`` torso lengths apart (hip centres) and look
            different (``split_appearance``, :func:`appearance_distance`). Following then keeps them apart.
        split_area: mask area, in units of the landmarks' height squared, above which a detection is tried
            as two people (one person upright: 0.10-0.19; two pressed together: 0.19-0.27).
        split_separation: least distance of the two readings' hip centres, in torso lengths of the detection.
        split_appearance: least appearance distance of the two readings (halves of one person look alike).
        motion_proposals: in :meth:`video`, read with the landmark model the person-shaped blobs that move
            against the camera-compensated background where nobody was found or followed
            (:func:`reconstruction.motion_proposals.moving_regions`): walkers too small for the face-based
            detector. Readings are kept with the checks of a followed one.
        second_opinion: a second PoseLandmarker bundle (``"heavy"``: BlazePose's heavy landmark model,
            ``reconstruction/data/pose_landmarker_heavy.task``, built by ``tools/build_pose_model.py --variant
            heavy``), or None. :meth:`second_reading` reads a person again with its landmark model and
            averages the two readings; :func:`reconstruction.extract_people` does so for the people it fits.
            Off by default: it costs about 7x a followed reading per person and frame.
        mirror_reads: :meth:`second_reading` also reads the mirrored region with both models (four readings
            averaged instead of two).
        second_agreement: most median distance, in torso lengths (pixels), of a further reading's landmarks
            from the given ones for it to be averaged in (on the closed-loop renders at most 0.14; in a hug,
            readings that drift onto the other person lie 0.2-0.35 away).
    """

    def __init__(self, model_path: str | Path | None = None, num_poses: int = 6,
                 min_detection_confidence: float = 0.5, min_presence_confidence: float = 0.5,
                 masks: bool = True, duplicate_iou: float = 0.7, passes: int = 3, propagate: bool = True,
                 crop_scale: float | tuple[float, ...] = (2.0, 1.5), key_frames: int = 3,
                 tile_scales: tuple[float, ...] = (1.0, 0.5),
                 max_proportion_deviation: float | None = 0.2, max_side: int | None = 640, follow: bool = True,
                 follow_presence: float = 0.5, follow_appearance: float = 0.45, follow_overlap: float = 0.5,
                 follow_patience: int = 4, follow_deviation: float = 0.12,
                 follow_area: float = 0.25,
                 follow_small: tuple[float, float, float, float] | None = (0.5, 0.25, 0.32, 0.15),
                 sweep_patience: int | None = None, workers: int | None = None,
                 split_pairs: bool = True, split_area: float = 0.2, split_separation: float = 0.45,
                 split_appearance: float = 0.6, motion_proposals: bool = True,
                 second_opinion: str | Path | None = None, mirror_reads: bool = True,
                 second_agreement: float = 0.15) -> None:
        path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        if not path.is_file():
            raise AmgError(f"{path}: pose model bundle not found; build it with tools/build_pose_model.py")
        if num_poses < 1:
            raise AmgError(f"num_poses: expected >= 1, got {num_poses}")
        second = None  # checked before any model is loaded
        if second_opinion is not None:
            second = HEAVY_MODEL if str(second_opinion) == "heavy" else Path(second_opinion)
            if not second.is_file():
                raise AmgError(f"second_opinion: {second}: pose model bundle not found; build it with "
                               f"tools/build_pose_model.py" + (" --variant heavy" if second == HEAVY_MODEL else ""))
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        options = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            num_poses=int(num_poses),
            min_pose_detection_confidence=float(min_detection_confidence),
            min_pose_presence_confidence=float(min_presence_confidence),
            # the masks also say what to paint out before a further detection pass
            output_segmentation_masks=bool(masks) or (passes > 1 and num_poses > 1),
        )
        import os
        import threading

        workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
        try:
            self._landmarkers = [vision.PoseLandmarker.create_from_options(options) for _ in range(workers)]
        except (RuntimeError, ValueError) as e:
            raise AmgError(f"{path}: not a usable PoseLandmarker bundle ({str(e).splitlines()[0]})") from None
        self._landmarker = self._landmarkers[0]
        self._local = threading.local()
        self._pool = None
        self.masks = masks
        self.duplicate_iou = duplicate_iou
        self.num_poses = int(num_poses)
        self.passes = max(1, int(passes)) if num_poses > 1 else 1
        self.propagate = bool(propagate)
        self.crop_scale = tuple(float(v) for v in np.atleast_1d(crop_scale))
        self.key_frames = max(0, int(key_frames))
        self.tile_scales = tuple(float(v) for v in tile_scales)
        self.max_proportion_deviation = None if max_proportion_deviation is None else float(max_proportion_deviation)
        self.max_side = None if max_side is None else max(32, int(max_side))
        self.follow = bool(follow)
        self.follow_presence = float(follow_presence)
        self.follow_appearance = float(follow_appearance)
        self.follow_overlap = float(follow_overlap)
        self.follow_patience = max(1, int(follow_patience))
        self.follow_deviation = float(follow_deviation)
        self.follow_area = float(follow_area)
        if follow_small is not None:
            follow_small = tuple(float(v) for v in follow_small)
            if len(follow_small) != 4 or not 0 < follow_small[1] < follow_small[0]:
                raise AmgError(f"follow_small: expected (tall, short, area, deviation) with 0 < short < tall, "
                               f"got {follow_small}")
        self.follow_small = follow_small
        self.sweep_patience = (0 if self.follow else 3) if sweep_patience is None else max(0, int(sweep_patience))
        self.split_pairs = bool(split_pairs)
        self.split_area = float(split_area)
        self.split_separation = float(split_separation)
        self.split_appearance = float(split_appearance)
        self.motion_proposals = bool(motion_proposals)
        reads = self.follow or self.split_pairs or self.motion_proposals
        self._landmark_model = LandmarkModel(path) if reads else None
        self.reads = {"split": 0, "follow": 0, "motion": 0}  # landmark-model reads spent by the last video()
        self.second_opinion = LandmarkModel(second) if second is not None else None
        self.mirror_reads = bool(mirror_reads)
        self.second_agreement = float(second_agreement)
        self._model_path = path

    def second_reading(self, frame: np.ndarray, keypoints: np.ndarray, world: np.ndarray,
                       hide: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """One person's landmarks averaged with further readings of them: the ``second_opinion`` model's,
        and with ``mirror_reads`` both models' readings of the mirrored region.

        The models read the region the landmarks give (:func:`roi_from_landmarks`, as MediaPipe places it for
        the next frame) with ``hide`` covered; the readings' pixels, visibilities and world landmarks are
        averaged with the given ones (the models' errors are partly independent: on the closed-loop
        benchmark the average is nearer the truth than any one reading). A further reading that sees nobody
        (presence below ``follow_presence``) or disagrees with the given one (the median distance of the
        landmarks both see, visibility 0.5 or more, above ``second_agreement`` torso lengths: in a hug it
        drifts onto the other person) is left out.

        Args:
            frame: ``(H,W,3)`` uint8 RGB; keypoints: ``(33,3)`` pixels and visibility; world: ``(33,3)``
                metres; hide: ``(H,W)`` bool pixels of other people, or None.
        Returns:
            ``(keypoints (33,3) float32, world (33,3) float32)``, or None when the landmarks give no region
            or no further reading was kept.
        """
        if self.second_opinion is None:
            raise AmgError("second_reading: this estimator has no second_opinion model")
        kp = np.asarray(keypoints, np.float32)
        w = np.asarray(world, np.float32)
        if kp.shape != (NUM_LANDMARKS, 3) or w.shape != (NUM_LANDMARKS, 3):
            raise AmgError(f"keypoints, world: expected ({NUM_LANDMARKS},3) each, got {kp.shape} and {w.shape}")
        roi = roi_from_landmarks(kp)
        if roi is None:
            return None
        if self._landmark_model is None:
            self._landmark_model = LandmarkModel(self._model_path)
        reads = [(self.second_opinion, False)]
        if self.mirror_reads:
            reads += [(self._landmark_model, True), (self.second_opinion, True)]
        I = LANDMARK_INDEX
        hips, shoulders = [I["left_hip"], I["right_hip"]], [I["left_shoulder"], I["right_shoulder"]]
        torso = max(float(np.linalg.norm(kp[shoulders, :2].mean(0) - kp[hips, :2].mean(0))), 1.0)
        kps, ws = [kp], [w]
        for model, mirrored in reads:
            r = model.read(frame, [roi], masks=False, hide=hide, mirrored=mirrored)[0]
            both = (kp[:, 2] >= 0.5) & (r.keypoints[:, 2] >= 0.5)
            if r.presence < self.follow_presence or both.sum() < 4:
                continue
            apart = float(np.median(np.linalg.norm(r.keypoints[both, :2] - kp[both, :2], axis=1)))
            if apart <= self.second_agreement * torso:
                kps.append(r.keypoints)
                ws.append(r.world)
        if len(kps) == 1:
            return None
        return np.mean(kps, axis=0).astype(np.float32), np.mean(ws, axis=0).astype(np.float32)

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        """Detect people in one ``(H,W,3)`` uint8 RGB frame; best first."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or min(frame.shape[:2]) < 1:
            raise AmgError(f"frame: expected an (H,W,3) uint8 RGB image, got {frame.dtype} {frame.shape}")
        H, W = frame.shape[:2]
        # every pass (and the painting out between passes) works on the image as the model is shown it
        shown = self._shown(frame)
        people: list[Detection] = []
        phantoms: list[Detection] = []  # rejected readings: painted out too, or the detector finds them again
        work = shown
        for _ in range(self.passes):
            rejected: list[Detection] = []
            found = [d for d in self._detect_shown(work, rejected) if not _overlaps(d, people, self.duplicate_iou)]
            rejected = [d for d in rejected if not _overlaps(d, phantoms, self.duplicate_iou)]
            if not found and not rejected:
                break
            people = _suppress_duplicates(people + found, self.duplicate_iou)[: self.num_poses]
            phantoms += rejected
            if len(people) >= self.num_poses:
                break
            work = _paint_out(shown, people + phantoms)
        people = [_rescaled(d, shown.shape[1], shown.shape[0], W, H) for d in people]
        if not self.masks:
            for d in people:
                d.mask = None
        return people

    def _shown(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` scaled down (area filter) so its long side is at most ``max_side``."""
        import cv2

        H, W = frame.shape[:2]
        if self.max_side is None or max(H, W) <= self.max_side:
            return frame
        s = self.max_side / float(max(H, W))
        return cv2.resize(frame, (max(1, round(W * s)), max(1, round(H * s))), interpolation=cv2.INTER_AREA)

    def _detect(self, frame: np.ndarray, rejected: list[Detection] | None = None) -> list[Detection]:
        """One detector pass: plausible people, best first, in ``frame``'s pixels; implausible readings go to
        ``rejected``."""
        H, W = frame.shape[:2]
        shown = self._shown(frame)
        h, w = shown.shape[:2]
        out = self._detect_shown(shown, rejected)
        if (h, w) != (H, W):
            out = [_rescaled(d, w, h, W, H) for d in out]
            if rejected is not None:
                rejected[:] = [_rescaled(d, w, h, W, H) for d in rejected]
        return out

    def _detect_shown(self, shown: np.ndarray, rejected: list[Detection] | None = None) -> list[Detection]:
        """One detector pass on an image as given (already at most ``max_side``), in its pixels."""
        H, W = shown.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(shown))
        result = getattr(self._local, "landmarker", self._landmarker).detect(image)
        people = []
        masks = result.segmentation_masks or []
        for i, lms in enumerate(result.pose_landmarks):
            kp = np.array([[lm.x * W, lm.y * H, _unit(lm.visibility)] for lm in lms], dtype=np.float32)
            world_lms = result.pose_world_landmarks[i] if i < len(result.pose_world_landmarks) else []
            world = np.array([[lm.x, lm.y, lm.z] for lm in world_lms], dtype=np.float32).reshape(-1, 3)
            if kp.shape != (NUM_LANDMARKS, 3) or world.shape != (NUM_LANDMARKS, 3):
                continue
            mask = None
            if i < len(masks):
                mask = np.asarray(masks[i].numpy_view(), dtype=np.float32).reshape(H, W).copy()
            box = np.clip(landmark_box(kp), 0, [W, H, W, H]).astype(np.float32)
            d = Detection(kp, world, box, float(kp[:, 2].mean()), mask)
            # fused from two people or a limb on someone else, or no human proportions (a person read into
            # the background): no body to fit
            if not plausible_body(kp) or (self.max_proportion_deviation is not None and
                                          proportion_deviation(world) > self.max_proportion_deviation):
                if rejected is not None:
                    rejected.append(d)
                continue
            people.append(d)
        return _suppress_duplicates(people, self.duplicate_iou)

    def _detect_crop(self, frame: np.ndarray, x0: int, y0: int, side: int) -> list[Detection]:
        """Detections in the square ``side`` at ``(x0, y0)`` (edge pixels repeated beyond the frame), in frame
        pixels; masks pasted into full-frame masks."""
        import cv2

        H, W = frame.shape[:2]
        # the part inside the frame, then edge pixels repeated to the square
        a, b = max(x0, 0), max(y0, 0)
        c, e = min(x0 + side, W), min(y0 + side, H)
        if c <= a or e <= b:
            return []
        crop = cv2.copyMakeBorder(np.ascontiguousarray(frame[b:e, a:c]), b - y0, y0 + side - e, a - x0,
                                  x0 + side - c, cv2.BORDER_REPLICATE)
        out = []
        for d in self._detect(crop):
            d.keypoints[:, 0] += x0
            d.keypoints[:, 1] += y0
            d.box = np.clip(d.box + np.array([x0, y0, x0, y0], np.float32), 0, [W, H, W, H]).astype(np.float32)
            if d.mask is not None:
                full = np.zeros((H, W), np.float32)
                full[b:e, a:c] = d.mask[b - y0:e - y0, a - x0:c - x0]
                d.mask = full if self.masks or self.passes > 1 else None
            out.append(d)
        return out

    def detect_in_box(self, frame: np.ndarray, box: np.ndarray, min_iou: float = 0.3,
                      scales: tuple[float, ...] | None = None) -> Detection | None:
        """Look for the person expected at ``box (4,)`` in a square crop around it (``crop_scale`` x its size,
        each of its scales in turn until one finds them).

        The crop is cut at the frame's resolution; the detection overlapping ``box`` best (IoU >= ``min_iou``)
        is returned in frame pixels, or None. ``scales`` replaces ``crop_scale`` for this call.
        """
        b = np.asarray(box, np.float64)
        for scale in self.crop_scale if scales is None else scales:
            side = int(max(64, round(scale * max(b[2] - b[0], b[3] - b[1]))))
            x0 = int(round(0.5 * (b[0] + b[2]) - side / 2))
            y0 = int(round(0.5 * (b[1] + b[3]) - side / 2))
            best, best_iou = None, min_iou
            for d in self._detect_crop(frame, x0, y0, side):
                iou = float(box_iou(d.box, b)[0, 0])
                if iou >= best_iou:
                    best, best_iou = d, iou
            if best is not None:
                return best
        return None

    def detect_tiled(self, frame: np.ndarray, scales: tuple[float, ...] = (1.0,)) -> list[Detection]:
        """People proposals from overlapping square tiles (side ``scale * min(H, W)``, half-side stride).

        The detector sees each tile at its own input resolution, so people too small or too cluttered to be
        found in the whole frame are found in a tile.
        """
        return self._tiled_many([frame], scales)[0]

    def _tiled_many(self, frames: list[np.ndarray], scales: tuple[float, ...]) -> list[list[Detection]]:
        """:meth:`detect_tiled` of each of ``frames``, every tile of every frame one job for :meth:`_map`."""
        jobs = []
        for i, frame in enumerate(frames):
            H, W = frame.shape[:2]
            for scale in scales:
                side = max(32, int(round(scale * min(H, W))))
                step = max(1, side // 2)
                for y0 in sorted({*range(0, max(H - side, 0) + 1, step), max(H - side, 0)}):
                    for x0 in sorted({*range(0, max(W - side, 0) + 1, step), max(W - side, 0)}):
                        jobs.append((i, x0, y0, side))
        results = self._map(lambda j: self._detect_crop(frames[j[0]], *j[1:]), jobs)
        found: list[list[Detection]] = [[] for _ in frames]
        for (i, *_), dets in zip(jobs, results):
            for d in dets:
                if not _overlaps(d, found[i], self.duplicate_iou):
                    found[i].append(d)
        return [_suppress_duplicates(f, self.duplicate_iou) for f in found]

    def video(self, frames: np.ndarray, progress: bool = False) -> list[list[Detection]]:
        """Detect people in each frame of ``(F,H,W,3)`` uint8 frames (with ``propagate``, also around the
        people found in neighbouring frames; with ``follow``, people then read by the landmark model where
        the detector missed them, marked ``followed``)."""
        frames = video_array(frames, name="frames", uint8=False)
        it = frames
        if progress:
            from tqdm import tqdm

            it = tqdm(frames, desc="pose", unit="frame")
        dets = self._map(self, list(it))
        F = len(frames)
        keys = sorted({int(round(v)) for v in np.linspace(0, F - 1, self.key_frames)}) if self.key_frames else []
        for f, tiled in zip(keys, self._tiled_many([frames[f] for f in keys], self.tile_scales)):
            for d in tiled:
                if len(dets[f]) < self.num_poses and not _overlaps(d, dets[f], self.duplicate_iou):
                    dets[f].append(d)
        if self.propagate and len(frames) > 1:
            for order in (range(len(frames)), range(len(frames) - 1, -1, -1)):
                self._sweep(frames, dets, list(order), self.sweep_patience)
        for frame, found in zip(frames, dets):
            for d in found:
                d.appearance = appearance_descriptor(frame, d.keypoints, d.mask)
        self.reads = {"split": 0, "follow": 0, "motion": 0}
        follower = self._follower()
        if self.split_pairs:
            # on the key frames only (every frame of a short clip): following carries a pair read apart to the
            # other frames, and a test costs two to six landmark-model reads
            for f in keys if self.key_frames else range(F):
                dets[f] = follower.split_pairs(frames[f], dets[f])
        if self.follow and len(frames) > 1:
            for order in (range(len(frames)), range(len(frames) - 1, -1, -1)):
                follower.follow(frames, dets, list(order))
        if self.motion_proposals and F > 1:
            # last: only the places nobody found or followed is in are read, so no one is displaced from the
            # ``num_poses`` kept per frame
            self._add_moving(frames, dets, follower)
        return dets

    def _add_moving(self, frames: np.ndarray, dets: list[list[Detection]], follower: Follower) -> None:
        """Read the walkers no detection covers (:func:`reconstruction.motion_proposals.moving_regions`) with the
        landmark model, the people found hidden, and add each reading that passes the checks of a followed one
        (:meth:`reconstruction.follow.Follower.accept`, expected at the moving blob's box) to ``dets`` in place,
        marked ``followed``. It runs after following, so it reads only where nobody found or followed is, and
        displaces no one from the ``num_poses`` kept per frame; its readings are not followed further (each
        frame's blobs are read in that frame). Counts ``motion`` reads."""
        H, W = frames.shape[1:3]
        regions = moving_regions(frames, [[d.box for d in found] for found in dets])
        for f, boxes in enumerate(regions):
            found = dets[f]
            boxes = boxes[: max(0, self.num_poses - len(found))]
            if not boxes:
                continue
            cover = _people_cover(found, H, W) if found else None
            rois = [proposal_rois(b) for b in boxes]
            readings = self._landmark_model.read(frames[f], rois, masks=True, hide=cover)
            self.reads["motion"] += len(boxes)
            for b, r in zip(boxes, readings):
                d = reading_detection(r, W, H)
                if len(found) < self.num_poses and follower.accept(frames[f], d, r.presence, b, None, found) \
                        and not _overlaps(d, found, self.duplicate_iou):
                    d.followed = True
                    d.appearance = appearance_descriptor(frames[f], d.keypoints, d.mask)
                    if not self.masks:
                        d.mask = None
                    found.append(d)

    def _follower(self) -> Follower:
        """A :class:`~reconstruction.follow.Follower` on this estimator's landmark model and current settings,
        counting its reads into ``reads``."""
        return Follower(self._landmark_model, self.reads, num_poses=self.num_poses, masks=self.masks,
                        duplicate_iou=self.duplicate_iou, follow_presence=self.follow_presence,
                        follow_appearance=self.follow_appearance, follow_overlap=self.follow_overlap,
                        follow_patience=self.follow_patience, follow_deviation=self.follow_deviation,
                        follow_area=self.follow_area, follow_small=self.follow_small, split_area=self.split_area,
                        split_separation=self.split_separation, split_appearance=self.split_appearance)

    def _sweep(self, frames: np.ndarray, dets: list[list[Detection]], order: list[int], patience: int = 3) -> None:
        """Carry every person's last box along ``order`` and look for them in a crop where they were missed;
        a box is given up after ``patience`` frames without a find (the person left or is hidden). Every
        framing of ``crop_scale`` is tried in the first frame a person is missed, only the first after that
        (a person who two framings did not find is rarely found by them a frame later: half the time of
        the sweep went there)."""
        active: list[list] = []  # [box, frames since found]
        for f in order:
            found = dets[f]
            # the crops are looked at side by side, then taken in order as one after the other would be
            wanted = [a for a in active if not found or box_iou(a[0], np.stack([e.box for e in found])).max() <= 0.3]
            if len(found) >= self.num_poses:
                wanted = []
            news = self._map(lambda a: self.detect_in_box(frames[f], a[0], scales=None if a[1] == 0 else
                                                          self.crop_scale[:1]), wanted)
            for a, new in zip(wanted, news):
                if found and box_iou(a[0], np.stack([e.box for e in found])).max() > 0.3:
                    continue
                if len(found) >= self.num_poses:
                    break
                if new is not None and not _overlaps(new, found, self.duplicate_iou):
                    found.append(new)
            nxt = []
            for d in found:
                nxt.append([d.box, 0])
            for a in active:
                if not found or box_iou(a[0], np.stack([e.box for e in found])).max() <= 0.3:
                    if a[1] + 1 <= patience:
                        nxt.append([a[0], a[1] + 1])
            active = nxt

    def _map(self, fn, items: list) -> list:
        """``[fn(item) for item in items]``, spread over the ``workers`` detector instances (each thread uses
        its own); in order."""
        items = list(items)
        if len(self._landmarkers) < 2 or len(items) < 2:
            return [fn(x) for x in items]
        if self._pool is None:
            import itertools
            from concurrent.futures import ThreadPoolExecutor

            free = itertools.count()

            def bind():
                self._local.landmarker = self._landmarkers[next(free) % len(self._landmarkers)]

            self._pool = ThreadPoolExecutor(len(self._landmarkers), initializer=bind)
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown()
            self._pool = None
        for lm in getattr(self, "_landmarkers", []):
            lm.close()
        self._landmarkers = []
        self._landmarker = None

    def __enter__(self) -> "PoseEstimator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _unit(v) -> float:
    v = 0.0 if v is None else float(v)
    return min(max(v, 0.0), 1.0)


def _rescaled(d: Detection, w: int, h: int, W: int, H: int) -> Detection:
    """``d`` found in a ``w`` x ``h`` image, in the pixels of the same image at ``W`` x ``H`` (mask resampled)."""
    import cv2

    if (w, h) == (W, H):
        return d
    sx, sy = W / float(w), H / float(h)
    kp = d.keypoints.copy()
    kp[:, 0] *= sx
    kp[:, 1] *= sy
    box = np.clip(d.box * np.array([sx, sy, sx, sy], np.float32), 0, [W, H, W, H]).astype(np.float32)
    mask = None if d.mask is None else cv2.resize(d.mask, (W, H), interpolation=cv2.INTER_LINEAR)
    apart = None
    if d.apart is not None:  # the line's point scales; its unit normal takes the inverse scale, renormalised
        point = np.asarray(d.apart[0], np.float64) * [sx, sy]
        normal = np.asarray(d.apart[1], np.float64) / [sx, sy]
        apart = np.stack([point, normal / max(float(np.linalg.norm(normal)), 1e-12)]).astype(np.float32)
    return Detection(kp, d.world, box, d.score, mask, d.appearance, d.followed, apart)


def _paint_out(frame: np.ndarray, people: list[Detection]) -> np.ndarray:
    """``frame`` with ``people`` covered by the median colour of the rest (masks dilated, or boxes)."""
    import cv2

    H, W = frame.shape[:2]
    cover = np.zeros((H, W), np.uint8)
    for d in people:
        x0, y0, x1, y1 = (int(round(v)) for v in d.box)
        if d.mask is not None:
            r = max(2, int(0.04 * float(max(d.box[2] - d.box[0], d.box[3] - d.box[1]))))
            # the mask's pixels lie around its landmarks' box: dilate that window only, not the whole frame
            ys, xs = np.nonzero(d.mask > 0.3)
            if not len(ys):
                continue
            a, b = max(int(xs.min()) - r, 0), max(int(ys.min()) - r, 0)
            c, e = min(int(xs.max()) + r + 1, W), min(int(ys.max()) + r + 1, H)
            m = (d.mask[b:e, a:c] > 0.3).astype(np.uint8)
            cover[b:e, a:c] |= cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        else:
            cover[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 1
    rest = frame[cover == 0]
    fill = np.median(rest, axis=0) if len(rest) else np.full(3, 127.0)
    out = frame.copy()
    out[cover > 0] = fill.astype(np.uint8)
    return out


def _suppress_duplicates(people: list[Detection], iou: float) -> list[Detection]:
    people = sorted(people, key=lambda d: -d.score)
    kept: list[Detection] = []
    for d in people:
        if kept and box_iou(d.box, np.stack([k.box for k in kept])).max() > iou:
            continue
        kept.append(d)
    return kept
