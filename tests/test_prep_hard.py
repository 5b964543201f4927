"""The hard cases of real footage, on synthetic clips with known truth (``reconstruction_helpers.hard_case``):
a panning and tilting camera, bystanders walking through, a subject off the frame's centre."""

import numpy as np
import pytest
import torch
from reconstruction_helpers import closed_loop_scores, hard_case

from reconstruction import extract_people
from reconstruction.camera_motion import rotation_angle_deg
from reconstruction.video import CAMERA_ROTATION
from render.camera import Camera


@pytest.fixture(scope="module")
def estimator():
    from reconstruction.pose import PoseEstimator

    with PoseEstimator(key_frames=2) as est:
        yield est


@pytest.fixture(scope="module")
def default_estimator():
    """As ``amg.prep`` builds it: three key frames with tiled proposals."""
    from reconstruction.pose import PoseEstimator

    with PoseEstimator() as est:
        yield est


def _level(case):
    """The true intrinsics with a level camera at the origin: what a user with a calibrated camera gives."""
    cams = case["cameras"]
    return Camera(case["camera"].K, CAMERA_ROTATION, torch.zeros(3), cams.width, cams.height)


def test_panning_camera_is_recovered_and_the_feet_land_on_the_floor(body, estimator):
    case = hard_case("pan_tilt", body, frames=6, num_gaussians=3000)
    res = extract_people(case["frames"], 8.0, camera=_level(case), body=body, estimator=estimator,
                         camera_motion=True, ground=True)
    assert res.usable and len(res.motions) == 1
    est = (res.cameras.R @ res.cameras.R[0].T).numpy()
    err = rotation_angle_deg(np.einsum("fji,fjk->fik", est, case["rotations"].numpy()))
    assert rotation_angle_deg(case["rotations"][-1].numpy()) > 2.5 and err.max() < 1.0, err
    m = res.motions[0]
    out = body(betas=m.betas[None].expand(6, -1), global_orient=m.global_orient, body_pose=m.body_pose,
               transl=m.transl)
    soles = out.vertices[..., 1].min(-1).values
    assert soles.abs().median() < 0.05 and res.floor["tilt_deg"] < 20
    score = closed_loop_scores(res, case["subjects"], case["cameras"])[0]
    assert score["joints_px"] < 0.1 * 180 and score["switches"] == 0


def test_off_centre_subject_is_kept_inside_the_subjects_crop(body, estimator):
    from reconstruction.extract import extract_clip
    from reconstruction.video import prepare_clips

    case = hard_case("off_centre", body, frames=4, num_gaussians=3000, photo="chelsea")
    clip = prepare_clips(case["frames"], fps=8.0, camera=_level(case), length=4, size=96, crop="subjects")[0]
    truth = case["subject_boxes"][0]
    x0c = clip.crop_box[0]
    assert (truth[:, 2] > x0c + clip.crop_box[2]).any()  # the centre crop cuts the subject
    res = extract_clip(clip, body=body, estimator=estimator)
    x0, y0, side, _ = res.crop_box
    assert res.usable and (truth[:, 0] >= x0 - 2).all() and (truth[:, 2] <= x0 + side + 2).all()
    score = closed_loop_scores(res, case["subjects"], case["cameras"].crop(x0, y0, side, side).resize(96, 96))[0]
    assert score["joints_px"] < 0.1 * 96


def test_bystanders_are_masked_not_fitted_and_never_drop_the_clip(body, estimator):
    case = hard_case("bystanders", body, frames=6, num_gaussians=3000, photo="chelsea")
    res = extract_people(case["frames"], 8.0, camera=_level(case), body=body, estimator=estimator)
    assert res.usable
    roles = {int(k): v["role"] for k, v in res.people.items()}
    assert sorted(res.track_ids) == sorted(k for k, r in roles.items() if r == "subject") and len(res.track_ids) == 1
    score = closed_loop_scores(res, case["subjects"], case["cameras"])[0]
    assert score["joints_px"] < 0.1 * 180
    bystanders = [k for k, r in roles.items() if r == "bystander"]
    assert bystanders, "no passer-by was tracked"
    assert all((res.masks == k).any() for k in bystanders)
    assert all(res.people[str(k)]["reason"].startswith("bystander (") for k in bystanders)


def test_people_read_into_the_photograph_are_rejected(body, estimator):
    """BlazePose reads a person into the coffee photograph's spoon and cup handle with confident landmarks;
    their world landmarks have no human proportions, so every detection left is the subject."""
    from reconstruction.pose import box_iou

    case = hard_case("off_centre", body, frames=4, num_gaussians=3000, photo="coffee")
    dets = estimator.video(case["frames"])
    truth = case["subject_boxes"][0]
    assert all(len(d) >= 1 for d in dets)
    assert all(float(box_iou(d.box, b)[0, 0]) > 0.3 for found, b in zip(dets, truth) for d in found), \
        [[d.box.round().tolist() for d in found] for found in dets]


def test_a_second_framing_finds_the_walker_where_the_first_misses(body):
    """The side-on walker of the panning case is missed in some frames by the whole-frame detector and by
    a crop of 2x its size; the crop's second framing (1.5x) finds them in every frame."""
    from reconstruction.pose import PoseEstimator, box_iou

    case = hard_case("pan_tilt", body, frames=8, num_gaussians=3000)
    with PoseEstimator(key_frames=2) as est:
        dets = est.video(case["frames"])
    best = [max((float(box_iou(d.box, b)[0, 0]) for d in found), default=0.0)
            for found, b in zip(dets, case["subject_boxes"][0])]
    assert min(best) > 0.4, best


def test_prep_at_1280x720_keeps_the_clip_with_the_walker_inside_the_crop(body, tmp_path):
    """``amg.prep`` on a 1280x720 street: a walker in the right foreground, six people crossing behind,
    a slow pan. The clip is kept, the walker is its one subject and inside the crop in every frame, and the
    people found are only people (no track follows the photograph)."""
    import json

    from hydra import compose, initialize_config_dir
    from prep_helpers import CONF
    from reconstruction_helpers import street_video

    from amg.prep import run
    from render.video import write_video

    case = street_video(body, frames=16)
    assert case["frames"].shape == (16, 720, 1280, 3)
    video = write_video(tmp_path / "street.mp4", case["frames"], fps=8.0)
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose(config_name="prep", overrides=[
            f"video={video}", f"out_dir={tmp_path / 'out'}", "clips.size=128", "clips.max_clips=1",
            "avatar.num_gaussians=2000", "conditions=[avatar]", "progress=false"])
    summary = run(cfg, "street")
    assert summary["clips_kept"] == 1, summary
    meta = json.loads(next((tmp_path / "out").rglob("tracks/meta.json")).read_text())
    subjects = [k for k, v in meta["people"].items() if v["role"] == "subject"]
    assert len(subjects) == 1, meta["people"]
    x0, y0, side, _ = meta["crop_box"]
    walker = case["subject_boxes"][0]
    assert (walker[:, 0] >= x0 - 4).all() and (walker[:, 2] <= x0 + side + 4).all(), (meta["crop_box"], walker)
    assert (walker[:, 1] >= y0 - 4).all() and (walker[:, 3] <= y0 + side + 4).all(), (meta["crop_box"], walker)


def test_the_landmark_model_reads_a_person_in_the_region_handed_over(body, estimator):
    """The region built from a detection's landmarks shows the landmark model that same person: it reads
    them where the detector did (up to which side a walker in profile is read as left), with their mask;
    a region on the background reads nobody."""
    from reconstruction.landmark_tracking import roi_from_landmarks
    from reconstruction.pose import box_iou, landmark_box, proportion_deviation
    from reconstruction.track import mirror_landmarks

    case = hard_case("pan_tilt", body, frames=2, num_gaussians=3000)
    frame, truth = case["frames"][0], case["subject_boxes"][0][0]
    d = estimator(frame)[0]
    roi = roi_from_landmarks(d.keypoints)
    model = estimator._landmark_model
    height = float(truth[3] - truth[1])

    def error(kp):
        mirrored, _ = mirror_landmarks(kp, np.zeros_like(kp))
        return min(float(np.median(np.linalg.norm(k[:, :2] - d.keypoints[:, :2], axis=-1))) for k in (kp, mirrored))

    r = model.read(frame, [roi])[0]
    assert r.presence > 0.9 and proportion_deviation(r.world) < 0.15
    assert float(box_iou(landmark_box(r.keypoints), truth)[0, 0]) > 0.6
    assert error(r.keypoints) < 0.08 * height
    a, b = r.mask > 0.5, d.mask > 0.5
    assert (a & b).sum() / (a | b).sum() > 0.7
    # the model's own next region lies on the same person
    assert error(model.read(frame, [r.next_roi])[0].keypoints) < 0.08 * height
    empty = roi.shifted(-roi.cx + 0.85 * frame.shape[1], 0.0)  # the right of the frame: the cat, nobody
    assert model.read(frame, [empty])[0].presence < 0.5


def test_walkers_the_detector_misses_in_profile_are_followed_through_their_crossing(body, default_estimator):
    """Two walkers in profile pass each other. The face-based detector finds the woman in one frame (the
    middle key frame's tiles) and loses the man after they cross; followed by the landmark model from the
    frames where they were found, both are found in most frames (not while one is hidden behind the
    other), no reading straddles both, and the clip is kept with both as subjects."""
    from reconstruction.pose import box_iou

    estimator = default_estimator
    case = hard_case("crossing", body, frames=16, num_gaussians=3000)
    dets = estimator.video(case["frames"])
    truth = case["subject_boxes"]
    hits = [sum(any(float(box_iou(d.box, b[f])[0, 0]) > 0.4 for d in dets[f]) for f in range(16)) for b in truth]
    assert min(hits) >= 12, hits
    assert any(d.followed for found in dets for d in found)
    # followed readings carry the person's looks, which tracking weighs against the other walker's
    assert all(d.appearance is not None for found in dets for d in found if d.followed)
    assert not any(min(float(box_iou(d.box, b[f])[0, 0]) for b in truth) > 0.3
                   for f, found in enumerate(dets) for d in found if d.followed)
    res = extract_people(case["frames"], 8.0, camera=_level(case), body=body, estimator=estimator)
    assert res.usable and len(res.motions) == 2, res.flags
    scores = closed_loop_scores(res, case["subjects"], case["cameras"])
    assert sorted(s["person"] for s in scores) == [0, 1]
    assert all(s["joints_px"] < 0.1 * 180 for s in scores), scores


def test_followed_readings_stay_on_one_of_a_hugging_pair(body, default_estimator):
    """Two people pressed together in profile: readings that straddle both keep nearly human proportions, so
    a followed reading must meet stricter ones; each one kept is not a merge in the benchmark's sense (under
    30% of its confident joint landmarks nearest to the other person's true joints: in a hug, one wrist may
    lie nearer the partner's wrist than its own)."""
    from reconstruction.keypoints import LANDMARK_TARGETS

    case = hard_case("hug", body, frames=16, num_gaussians=3000)
    dets = default_estimator.video(case["frames"])
    pairs = [(lm, t[1]) for lm, t in LANDMARK_TARGETS.items() if t[0] == "joint" and t[2] == 1.0]
    lms, joints = [a for a, _ in pairs], [b for _, b in pairs]
    uv = [case["cameras"].project(torch.as_tensor(j, dtype=torch.float64))[0].numpy()[:, joints]
          for j in case["people"]]
    for f, found in enumerate(dets):
        for d in found:
            if not d.followed:
                continue
            ok = d.keypoints[lms, 2] >= 0.5
            dist = np.stack([np.linalg.norm(d.keypoints[lms, :2][ok] - p[f][ok], axis=-1) for p in uv])
            share = np.bincount(dist.argmin(0), minlength=2) / max(ok.sum(), 1)
            assert ok.sum() >= 6 and share.min() < 0.3, (f, share)
