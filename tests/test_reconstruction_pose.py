import zipfile

import numpy as np
import pytest

from reconstruction.pose import DEFAULT_MODEL, Detection, PoseEstimator, box_iou
from render.errors import AmgError


@pytest.fixture(scope="module")
def estimator():
    with PoseEstimator(num_poses=3) as est:
        yield est


def test_bundle_carries_the_normalisation_metadata():
    from mediapipe.tasks.metadata import metadata_schema_py_generated as md
    from mediapipe.tasks.metadata import schema_py_generated as fb

    expected = {"pose_detector.tflite": (127.5, 127.5), "pose_landmarks_detector.tflite": (0.0, 255.0)}
    with zipfile.ZipFile(DEFAULT_MODEL) as z:
        assert sorted(z.namelist()) == sorted(expected)
        for name, (mean, std) in expected.items():
            data = z.read(name)
            model = fb.Model.GetRootAs(data, 0)
            entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
            buf = model.Buffers(entries["TFLITE_METADATA"]).DataAsNumpy().tobytes()
            meta = md.ModelMetadata.GetRootAs(buf, 0)
            tensor = meta.SubgraphMetadata(0).InputTensorMetadata(0)
            norm = md.NormalizationOptions()
            norm.Init(tensor.ProcessUnits(0).Options().Bytes, tensor.ProcessUnits(0).Options().Pos)
            assert (norm.Mean(0), norm.Std(0)) == (mean, std)


def test_astronaut_one_person_with_landmarks_on_the_figure(estimator):
    import skimage.data

    image = skimage.data.astronaut()
    people = estimator(image)
    assert len(people) == 1
    p = people[0]
    assert p.keypoints.shape == (33, 3) and p.world.shape == (33, 3) and p.mask.shape == image.shape[:2]
    nose, l_sh, r_sh = p.keypoints[0], p.keypoints[11], p.keypoints[12]
    assert 170 < nose[0] < 280 and 60 < nose[1] < 200 and nose[2] > 0.9  # the astronaut's face
    assert l_sh[0] > r_sh[0] and l_sh[1] > nose[1]  # facing the camera, shoulders below the face
    assert p.mask[int(nose[1]), int(nose[0])] > 0.5 and p.mask[20, 500] < 0.5  # on the face, not the sky
    x0, y0, x1, y1 = p.box
    assert x0 < nose[0] < x1 and y0 < nose[1] < y1 and 0 <= x0 and x1 <= 512
    hip_centre = 0.5 * (p.world[23] + p.world[24])
    assert np.abs(hip_centre).max() < 0.05 and 0.2 < np.linalg.norm(p.world[11] - p.world[23]) < 0.8  # metres


def test_empty_frames_give_no_people_and_bad_frames_raise(estimator):
    assert estimator(np.zeros((64, 64, 3), np.uint8)) == []
    assert [len(d) for d in estimator.video(np.full((2, 32, 32, 3), 200, np.uint8))] == [0, 0]
    with pytest.raises(AmgError, match="uint8"):
        estimator(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(AmgError, match="not found"):
        PoseEstimator(model_path="/nonexistent/pose.task")


def test_box_iou_against_a_loop():
    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(0, 10, (5, 2, 2)), axis=1).transpose(0, 2, 1).reshape(5, 4)[:, [0, 2, 1, 3]]
    b = np.sort(rng.uniform(0, 10, (4, 2, 2)), axis=1).transpose(0, 2, 1).reshape(4, 4)[:, [0, 2, 1, 3]]
    got = box_iou(a, b)
    for i in range(5):
        for j in range(4):
            w = max(0.0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
            h = max(0.0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
            area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
            assert abs(got[i, j] - w * h / (area(a[i]) + area(b[j]) - w * h)) < 1e-12


def test_further_passes_find_the_people_one_detection_pass_misses():
    """The astronaut beside her mirror image: one BlazePose pass reports a single person; painting the
    found person out and looking again finds the other, without re-finding the first."""
    import skimage.data

    a = skimage.data.astronaut()
    two = np.ascontiguousarray(np.concatenate([a, a[:, ::-1]], axis=1))
    with PoseEstimator(num_poses=2, passes=1) as one_pass:
        assert len(one_pass(two)) == 1
    with PoseEstimator(num_poses=2, passes=3) as est:
        people = est(two)
    assert len(people) == 2
    centres = sorted(float(0.5 * (p.box[0] + p.box[2])) for p in people)
    assert centres[0] < 512 < centres[1]  # one on each half
    # each person's nose lies on their own face: the mirror places it at 1024 - x of the original
    noses = sorted(float(p.keypoints[0, 0]) for p in people)
    assert abs(noses[0] + noses[1] - 1024) < 20
    with PoseEstimator(num_poses=1) as single:
        assert len(single(two)) == 1


def test_plausible_body_rejects_a_reading_fused_from_two_people():
    """Landmarks of a real standing body pass; the same body with its right limbs moved onto a second
    person a body width away (what a merged detection looks like) does not."""
    import torch
    from reconstruction_helpers import stick_body, synthetic_observations, walking_pose

    from reconstruction.fit import BodyKeypoints
    from reconstruction.pose import LANDMARK_NAMES, plausible_body
    from reconstruction.video import default_camera
    from render.camera import CameraPath

    body = stick_body()
    go, pose, tr = walking_pose(4)
    kp, _, _ = synthetic_observations(BodyKeypoints(body), torch.zeros(4), go, pose, tr,
                                      CameraPath.static(default_camera(256, 256), 4))
    kp[..., 2] = np.where(kp[..., 2] > 0, 0.9, 0.0)
    assert all(plausible_body(k) for k in kp)
    fused = kp[0].copy()
    right = [i for i, n in enumerate(LANDMARK_NAMES) if n.startswith("right_")]
    torso = np.linalg.norm(fused[11, :2] - fused[23, :2])
    fused[right, 0] += 2.5 * torso  # the right side read off a neighbour
    assert not plausible_body(fused)
    unseen = fused.copy()
    unseen[[11, 12, 23, 24], 2] = 0.1  # nothing to judge without a seen torso
    assert plausible_body(unseen)


def test_proportion_deviation_tells_a_body_from_a_phantom(estimator):
    """The astronaut's world landmarks have human proportions; the same landmarks with a short forearm, a
    long shin and narrow shoulders (what a person read into texture gets) do not."""
    import skimage.data

    from reconstruction.pose import LANDMARK_INDEX as I
    from reconstruction.pose import proportion_deviation

    world = estimator(skimage.data.astronaut())[0].world
    assert proportion_deviation(world) < 0.2
    odd = world.copy()
    odd[I["left_wrist"]] = odd[I["left_elbow"]] + 0.3 * (odd[I["left_wrist"]] - odd[I["left_elbow"]])
    odd[I["right_ankle"]] = odd[I["right_knee"]] + 2.0 * (odd[I["right_ankle"]] - odd[I["right_knee"]])
    mid = 0.5 * (odd[I["left_shoulder"]] + odd[I["right_shoulder"]])
    for n in ("left_shoulder", "right_shoulder"):
        odd[I[n]] = mid + 0.2 * (odd[I[n]] - mid)
    assert proportion_deviation(odd) > 0.3
    both = proportion_deviation(np.stack([world, odd]))
    assert both.shape == (2,) and abs(both[0] - proportion_deviation(world)) < 1e-12


def test_large_images_are_shown_at_max_side_and_mapped_back():
    """A 1024x1024 astronaut shown at 512 pixels gives landmarks, box and a full-size mask in the image's
    own pixels: twice the landmarks found at 512x512."""
    import cv2
    import skimage.data

    small = skimage.data.astronaut()
    big = cv2.resize(small, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    with PoseEstimator(num_poses=1, max_side=512) as est:
        a = est(small)[0]
        b = est(big)[0]
    assert b.mask.shape == (1024, 1024)
    seen = (a.keypoints[:, 2] > 0.9) & (b.keypoints[:, 2] > 0.9)
    assert seen.sum() >= 5
    err = np.linalg.norm(b.keypoints[seen, :2] - 2 * a.keypoints[seen, :2], axis=-1)
    assert np.median(err) < 5.0 and err.max() < 16.0, err  # a wrong scale would be off by hundreds
    x, y = (int(v) for v in b.keypoints[0, :2])
    assert b.mask[y, x] > 0.5 and b.box[0] < x < b.box[2] and b.box[1] < y < b.box[3]


def test_regions_map_the_model_input_onto_the_body_and_back():
    """A region's square is centred on its centre, ``size`` pixels wide, and turned so the input's up is the
    body's up; the region rebuilt from the alignment points (body centre, a point straight above it) is the
    same region."""
    from reconstruction.landmark_tracking import Roi, roi_from_alignment, roi_matrix

    rng = np.random.default_rng(1)
    for _ in range(20):
        roi = Roi(float(rng.uniform(0, 500)), float(rng.uniform(0, 500)), float(rng.uniform(20, 400)),
                  float(rng.uniform(-np.pi, np.pi)))
        M = roi_matrix(roi)
        centre = M @ np.array([128.0, 128.0, 1.0])
        top = M @ np.array([128.0, 0.0, 1.0])  # the middle of the input's top edge
        assert np.allclose(centre, [roi.cx, roi.cy])
        assert np.allclose(np.linalg.norm(top - centre), roi.size / 2)
        # rotation 0 is upright (top straight above in the image, y down); a quarter turn puts it to the right
        assert np.allclose(top - centre, roi.size / 2 * np.array([np.sin(roi.rotation), -np.cos(roi.rotation)]))
        # MediaPipe's alignment: the circle of radius size / 2.5 around the centre
        back = roi_from_alignment(np.stack([centre, centre + (top - centre) / 1.25]))
        assert np.allclose([back.cx, back.cy, back.size], [roi.cx, roi.cy, roi.size])
        assert abs((back.rotation - roi.rotation + np.pi) % (2 * np.pi) - np.pi) < 1e-9


def test_further_passes_paint_out_people_on_the_image_as_shown(monkeypatch):
    """Between passes the people found are painted out of the image the detector is shown (long side at most
    ``max_side``), not of the full-size frame: a 1024x1024 frame shown at 256 pixels is painted at 256, and
    the second person is still found, in the frame's own pixels."""
    import cv2
    import skimage.data

    import reconstruction.pose as pose

    a = skimage.data.astronaut()
    two = cv2.resize(np.ascontiguousarray(np.concatenate([a, a[:, ::-1]], axis=1)), (1024, 512),
                     interpolation=cv2.INTER_AREA)
    painted = []
    real = pose._paint_out
    monkeypatch.setattr(pose, "_paint_out", lambda frame, people: painted.append(frame.shape) or real(frame, people))
    with PoseEstimator(num_poses=2, passes=3, max_side=512) as est:
        people = est(two)
    assert painted and all(max(s[:2]) <= 512 for s in painted), painted
    assert len(people) == 2 and all(p.mask.shape == (512, 1024) for p in people)
    centres = sorted(float(0.5 * (p.box[0] + p.box[2])) for p in people)
    assert centres[0] < 512 < centres[1]


def test_two_workers_give_what_one_gives():
    """Frames, tiles and crops spread over two detector instances in threads are folded in the order one
    instance takes them: the same people, landmarks and masks in the same order."""
    import skimage.data

    a = skimage.data.astronaut()[::2, ::2]
    frames = np.stack([np.roll(np.concatenate([a, a[:, ::-1]], axis=1), 8 * i, axis=1) for i in range(3)])
    out = {}
    for workers in (1, 2):
        with PoseEstimator(num_poses=3, workers=workers, key_frames=2) as est:
            assert len(est._landmarkers) == workers
            out[workers] = est.video(frames)
    assert [len(f) for f in out[1]] == [len(f) for f in out[2]] and sum(len(f) for f in out[1]) >= 3
    for f1, f2 in zip(out[1], out[2]):
        for d1, d2 in zip(f1, f2):
            assert np.array_equal(d1.keypoints, d2.keypoints) and np.array_equal(d1.mask, d2.mask)


def test_with_following_the_crop_search_looks_only_in_the_frame_after_a_sighting():
    """With the landmark model following missed people, the detector's crop search is spent only on the frame
    right after a sighting (later crops rarely find anyone); without following it still looks 3 frames on."""
    with PoseEstimator(num_poses=1) as est:
        assert est.follow and est.sweep_patience == 0
    with PoseEstimator(num_poses=1, follow=False) as est:
        assert est.sweep_patience == 3


def test_landmark_model_backends_agree():
    """The landmark model read through LiteRT (when installed) gives OpenCV's reading: landmarks within a
    hundredth of a pixel scale, the same presence and mask; an unknown backend is refused."""
    import skimage.data

    from reconstruction.landmark_tracking import LandmarkModel, Roi

    with pytest.raises(AmgError, match="backend"):
        LandmarkModel(backend="tpu")
    pytest.importorskip("ai_edge_litert")
    image = skimage.data.astronaut()
    rois = [Roi(240.0, 300.0, 420.0, 0.0), Roi(250.0, 280.0, 380.0, 0.2)]
    a = LandmarkModel(backend="opencv").read(image, rois)
    b = LandmarkModel(backend="litert").read(image, rois)
    for x, y in zip(a, b):
        assert np.abs(x.keypoints[:, :2] - y.keypoints[:, :2]).max() < 0.05
        assert np.abs(x.keypoints[:, 2] - y.keypoints[:, 2]).max() < 1e-3 and abs(x.presence - y.presence) < 1e-3
        assert np.abs(x.world - y.world).max() < 1e-3 and np.abs(x.mask - y.mask).max() < 1e-2


def test_small_people_are_followed_with_looser_limits_and_stay_one_person_each():
    """Small walkers' readings have wider masks and looser proportions than one large person's: with the
    limits raised for them (``follow_small``) more of the bystanders' true masks are found, and every
    followed reading still lies on one true person (under a quarter of its mask on anyone else)."""
    from avatars.body import BodyModel
    from reconstruction_helpers import hard_case

    case = hard_case("bystanders", BodyModel.load("default"), frames=6, num_gaussians=2000, seed=1)
    truth = case["masks"]
    F = len(truth)

    def found(**kwargs):
        with PoseEstimator(**kwargs) as est:
            dets = est.video(case["frames"])
        hits = 0
        for f in range(F):
            for i in range(2, int(truth.max()) + 1):  # the bystanders (the subject is 1)
                t = truth[f] == i
                if t.sum() >= 20:
                    hits += any(((d.mask > 0.5) & t).sum() >= 0.3 * ((d.mask > 0.5) | t).sum() for d in dets[f])
            for d in dets[f]:
                if d.followed:
                    m = d.mask > 0.5
                    shares = sorted(((m & (truth[f] == i)).sum() / max(m.sum(), 1)
                                     for i in range(1, int(truth.max()) + 1)), reverse=True)
                    assert shares[0] > 0.5 and shares[1] < 0.25
        return hits

    assert found() > found(follow_small=None)
    with PoseEstimator() as est:
        tall = Detection(np.zeros((33, 3), np.float32), np.zeros((33, 3), np.float32), np.zeros(4, np.float32), 1.0)
        tall.keypoints[:, 1] = np.linspace(0, 120, 33)
        assert est._follower().limits(tall, 180) == (est.follow_area, est.follow_deviation)
        small = Detection(tall.keypoints * [1, 0.25, 1], tall.world, tall.box, 1.0)
        assert np.allclose(est._follower().limits(small, 180), est.follow_small[2:])
    with pytest.raises(AmgError, match="follow_small"):
        PoseEstimator(follow_small=(0.25, 0.5, 0.3, 0.15))


def test_a_detection_mapped_to_another_resolution_keeps_its_parting_line():
    """A detection found on the image as shown (``max_side``) and mapped to the frame's pixels keeps the line
    it was read apart along: its point scaled, its direction the unit normal of the scaled line (points on
    the line stay on it)."""
    from reconstruction.pose import _rescaled

    kp = np.zeros((33, 3), np.float32)
    apart = np.array([[10.0, 20.0], [0.6, 0.8]], np.float32)
    d = Detection(kp, kp.copy(), np.array([0, 0, 40, 40], np.float32), 1.0, apart=apart)
    big = _rescaled(d, 100, 50, 200, 150)  # x 2, y 3
    assert np.allclose(big.apart[0], [20.0, 60.0])
    along = np.array([0.8, -0.6])  # a second point of the line, scaled like every pixel
    on_line = (np.array([10.0, 20.0]) + 7.0 * along) * [2, 3]
    assert abs(float((on_line - big.apart[0]) @ big.apart[1])) < 1e-4
    assert abs(float(np.linalg.norm(big.apart[1])) - 1.0) < 1e-6 and float(big.apart[1] @ [0.6, 0.8]) > 0
    assert _rescaled(Detection(kp, kp, d.box, 1.0), 100, 50, 200, 150).apart is None
