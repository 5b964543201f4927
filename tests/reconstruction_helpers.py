"""Shared fixtures of the reconstruction tests: a tiny stick body and synthetic landmark observations."""

import numpy as np
import torch

from avatars.body import BodyModel, SMPL_PARENTS

JOINTS = np.array([
    (0, 0.93, 0), (0.09, 0.85, 0), (-0.09, 0.85, 0), (0, 1.03, -0.01), (0.10, 0.48, 0.01), (-0.10, 0.48, 0.01),
    (0, 1.16, 0), (0.10, 0.08, -0.02), (-0.10, 0.08, -0.02), (0, 1.22, 0.01), (0.11, 0.02, 0.11),
    (-0.11, 0.02, 0.11), (0, 1.45, -0.01), (0.07, 1.37, 0), (-0.07, 1.37, 0), (0, 1.55, 0.02),
    (0.17, 1.40, -0.01), (-0.17, 1.40, -0.01), (0.43, 1.40, -0.02), (-0.43, 1.40, -0.02),
    (0.68, 1.40, -0.01), (-0.68, 1.40, -0.01), (0.76, 1.40, -0.01), (-0.76, 1.40, -0.01)], dtype=np.float64)
MARKERS = {"nose": ((0, 1.58, 0.11), 15), "leye": ((0.03, 1.62, 0.09), 15), "reye": ((-0.03, 1.62, 0.09), 15),
           "lear": ((0.075, 1.58, 0.0), 15), "rear": ((-0.075, 1.58, 0.0), 15),
           "LHeel": ((0.10, 0.02, -0.06), 7), "RHeel": ((-0.10, 0.02, -0.06), 8),
           "LBigToe": ((0.10, 0.01, 0.19), 10), "RBigToe": ((-0.10, 0.01, 0.19), 11)}

def stick_body(num_betas=4, seed=0, posedirs=False):
    """A 33-vertex SMPL-layout body: the 24 joints plus the keypoint vertices the landmark targets name."""
    names = list(MARKERS)
    v = np.concatenate([JOINTS, np.array([MARKERS[n][0] for n in names])])
    V = len(v)
    W = np.zeros((V, 24)); W[np.arange(24), np.arange(24)] = 1
    for i, n in enumerate(names): W[24 + i, MARKERS[n][1]] = 1
    Jr = np.zeros((24, V)); Jr[np.arange(24), np.arange(24)] = 1
    sd = np.zeros((V, 3, num_betas))
    sd[:, :, 0] = 0.05 * v  # overall size
    sd[:, 0, 1] = 0.05 * v[:, 0]  # width
    legs = v[:, 1] < 0.9
    sd[legs, 1, 2] = 0.05 * (v[legs, 1] - 0.9)
    sd[:, :, 3] = np.random.default_rng(seed).normal(0, 0.005, (V, 3))
    faces = np.array([[0, 1, 2], [0, 3, 1]])
    pd = np.random.default_rng(seed + 1).normal(0, 0.002, (207, V * 3)) if posedirs else np.zeros((207, V * 3))
    return BodyModel(v, sd, pd, Jr, W, faces, SMPL_PARENTS,
                     vertex_ids={n: 24 + i for i, n in enumerate(names)}, name="stick")


def walking_pose(F=16):
    """A smooth walk-like motion: swinging hips and knees, arms down with bending elbows, turning."""
    t = torch.linspace(0, 1, F)
    ph = 2 * np.pi * t
    pose = torch.zeros(F, 23, 3)
    pose[:, 0, 0], pose[:, 1, 0] = 0.5 * torch.sin(ph), -0.5 * torch.sin(ph)
    pose[:, 3, 0], pose[:, 4, 0] = 0.3 * (1 + torch.sin(ph)), 0.3 * (1 - torch.sin(ph))
    pose[:, 15, 2], pose[:, 16, 2] = -1.2, 1.2
    pose[:, 17, 1], pose[:, 18, 1] = -0.5 * (1 + torch.cos(ph)), 0.4
    go = torch.zeros(F, 3)
    go[:, 1] = 0.6 + 0.3 * t
    transl = torch.stack([0.3 * t - 0.1, torch.full((F,), -0.9), -3.5 + 0.2 * t], -1)
    return go, pose, transl


def synthetic_observations(body_kp, betas, go, pose, transl, path, conf=0.9):
    """Landmarks ``(F,33,3)`` projected through ``path`` and hip-centred camera-axis world landmarks."""
    F = go.shape[0]
    joints, pts = body_kp(betas, go, pose, transl)
    uv, _ = path.project(pts.double())
    idx = body_kp.landmark_index.numpy()
    kp = np.zeros((F, 33, 3), np.float32)
    kp[:, idx, :2] = uv.numpy()
    kp[:, idx, 2] = conf
    pc = (pts.double() @ path.R.transpose(-1, -2) + path.t[:, None]).numpy()
    world = np.zeros((F, 33, 3), np.float32)
    world[:, idx] = pc
    world -= 0.5 * (world[:, 23:24] + world[:, 24:25])
    return kp, world, joints


# ---- closed loop: Gaussian avatars with known motions, rendered and extracted again -------------------

#: azimuth and elevation in degrees of the static closed-loop cameras about the motion's centre
CLOSED_LOOP_CAMERAS = {"front": (0.0, 5.0), "side45": (45.0, 5.0), "raised": (20.0, 35.0)}
#: further static cameras for held-out checks (``benchmarks/closed_loop.py --held-out``)
HELD_OUT_CAMERAS = {"left30": (-30.0, 0.0), "right70": (70.0, 15.0), "back": (180.0, 10.0)}
CLOSED_LOOP_APPEARANCES = ("a man wearing a red shirt and blue jeans",
                           "a woman wearing a green shirt and black trousers")


def closed_loop_motions(name, frames=16, fps=8.0):
    """The library motion ``name`` as a list of Motions; the walk heads across the front camera's view."""
    from avatars import motion_library

    m = motion_library.make(name, seconds=frames / fps, fps=fps, direction=90.0 if name == "walk" else 0.0)
    return m if isinstance(m, list) else [m]


def closed_loop_camera(motions, camera, frames=16, fps=8.0, size=256, radius=4.2):
    """A ``CameraPath`` filming ``motions`` from ``camera``: a name of :data:`CLOSED_LOOP_CAMERAS` (static)
    or ``"orbit"`` (half a circle at 10 degrees elevation, so a pair side by side swaps sides: a crossing).
    The cameras look at the mean root position at 0.9 m height."""
    import math

    from render.camera import Camera, CameraPath

    centre = torch.stack([m.transl for m in motions]).float().mean((0, 1))
    target = (float(centre[0]), 0.9, float(centre[2]))
    if camera == "orbit":
        return CameraPath.orbit(frames, degrees=180.0, radius=radius, elevation_deg=10.0, target=target,
                                start_deg=-60.0, fov_deg=50.0, width=size, height=size, fps=fps)
    az, el = (math.radians(a) for a in {**CLOSED_LOOP_CAMERAS, **HELD_OUT_CAMERAS}[camera])
    eye = (target[0] + radius * math.sin(az) * math.cos(el), target[1] + radius * math.sin(el),
           target[2] + radius * math.cos(az) * math.cos(el))
    return CameraPath.static(Camera.look_at(eye, target, fov_deg=50.0, width=size, height=size), frames, fps)


def closed_loop_render(body, motions, cameras, num_gaussians=12000, seed=0):
    """Render default-body Gaussian avatars (one appearance per person) doing ``motions``.

    Returns ``frames (F,H,W,3) uint8`` and the true joints, one ``(F,24,3)`` array per person.
    """
    from avatars.gaussians import GaussianAvatar
    from avatars.scene import Person, render_scene

    people = [Person(GaussianAvatar.from_body(body, CLOSED_LOOP_APPEARANCES[i % 2], num_gaussians=num_gaussians,
                                              seed=seed + i), m) for i, m in enumerate(motions)]
    r = render_scene(people, cameras, conditions=("avatar",), background=(0.45, 0.5, 0.55), progress=False)
    return r.rgb, [np.asarray(j) for j in r.joints]


def closed_loop_scores(result, truths, true_cameras, gate: float = 0.1):
    """Compare an extraction with the truth it was rendered from.

    Each track is matched to the true person whose projected joints it follows most closely (Hungarian
    over the mean 2D joint distance on the frames it saw).
    Returns a list (per track) of dicts: ``person`` (matched true person), ``pa_mpjpe_mm`` (Procrustes-
    aligned MPJPE of the 24 joints, seen frames), ``reprojection_px`` (the fit's mean landmark reprojection
    error), ``joints_px`` (mean 2D distance between the fitted joints projected through the result's cameras
    and the true joints projected through the true ones), ``switches`` (seen frames in which the track
    follows another true person: its nearest true person is not the matched one and the matched one is
    more than ``gate`` times the frame height away. As in CLEAR-MOT, a correspondence that is still valid
    is kept: where two people overlap, the track may be a pixel nearer the other without having left its
    own).
    """
    from scipy.optimize import linear_sum_assignment

    from reconstruction.fit import mpjpe

    truth_uv = [true_cameras.project(torch.as_tensor(t, dtype=torch.float64))[0] for t in truths]
    tracks = []
    for tid, fit, kp in zip(result.track_ids, result.fits, result.keypoints):
        seen = torch.as_tensor(kp[..., 2].max(-1) > 0)
        uv = result.cameras.project(fit.joints.double())[0]
        dist = torch.stack([(uv - tu).norm(dim=-1).mean(-1) for tu in truth_uv])  # (P,F)
        tracks.append((tid, fit, seen, uv, dist))
    cost = np.array([[float(d[p][s].mean()) for p in range(len(truths))] for _, _, s, _, d in tracks])
    rows, cols = linear_sum_assignment(cost) if len(tracks) else ([], [])
    match = dict(zip(rows, cols))
    out = []
    for i, (tid, fit, seen, uv, dist) in enumerate(tracks):
        p = int(match.get(i, int(np.argmin(cost[i]))))
        truth = torch.as_tensor(truths[p], dtype=torch.float64)
        out.append({
            "track_id": int(tid), "person": p,
            "pa_mpjpe_mm": 1000 * float(mpjpe(fit.joints[seen], truth[seen]).mean()),
            "reprojection_px": float(result.residuals[str(tid)]["reprojection_px"]),
            "joints_px": float(dist[p][seen].mean()),
            "switches": int(((dist[:, seen].argmin(0) != p) & (dist[p][seen] > gate * true_cameras.height)).sum()),
        })
    return out


# ---- hard cases: avatars composited over photographs, moving cameras, bystanders, pairs ------------------

#: the hard-case suite of ``benchmarks/prep_hard.py`` (``hard_case`` builds each; ``street`` is the 1280x720
#: prep case, :func:`street_video`)
HARD_CASES = ("pan_tilt", "bystanders", "off_centre", "crossing", "hug", "far_people")


def relative_rotations(frames, pan_deg, tilt_deg):
    """``(F,3,3)`` camera rotations relative to the first frame (``x_cam_f = R_f x_cam_0``): a pan about the
    camera's y axis, then a tilt about its x axis, growing linearly over the clip."""
    from render.rotations import euler_to_matrix

    t = torch.linspace(0, 1, frames, dtype=torch.float64)
    ang = torch.stack([np.radians(tilt_deg) * t, np.radians(pan_deg) * t, 0 * t], -1)
    return euler_to_matrix(ang, "XYZ")


def photo_background(cameras, rel, photo="coffee"):
    """``(F,H,W,3)`` uint8: a photograph at infinity seen through cameras turning by ``rel`` (exact
    homographies ``K R K^-1`` of one panorama image, so the background obeys the cameras' rotation)."""
    import cv2
    import skimage.data

    W, H = cameras.width, cameras.height
    img = cv2.resize(getattr(skimage.data, photo)(), (2 * W, 2 * H), interpolation=cv2.INTER_AREA)
    K = cameras.K[0].numpy()
    Kp = K.copy()
    Kp[0, 2], Kp[1, 2] = W, H  # the panorama is centred on the first frame's view
    out = []
    for R in rel.numpy():
        out.append(cv2.warpPerspective(img, K @ R @ np.linalg.inv(Kp), (W, H), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)


def _moved(m, dx=0.0, dz=0.0, frames=None):
    from avatars.motion import Motion

    m = m if frames is None else m[:frames]
    return Motion(fps=m.fps, betas=m.betas, global_orient=m.global_orient, body_pose=m.body_pose,
                  transl=m.transl + torch.tensor([dx, 0.0, dz]), name=m.name)


def hard_case(name, body, frames=16, fps=8.0, width=320, height=180, num_gaussians=5000, seed=0, photo=None):
    """One hard case with known truth.

    Returns a dict: ``frames (F,H,W,3) uint8``, ``camera`` (the true first camera; the path turns by
    ``rotations`` relative to it), ``rotations (F,3,3)``, ``cameras`` (the true path), ``subjects`` (true
    joints ``(F,24,3)`` per subject), ``bystanders`` (count), ``subject_boxes`` (per subject ``(F,4)``).
    """
    from avatars import motion_library
    from avatars.gaussians import GaussianAvatar
    from avatars.scene import Person, render_scene
    from render.camera import Camera, CameraPath

    secs = frames / fps
    walk = lambda d=90.0, speed=1.0: motion_library.make("walk", seconds=secs, fps=fps, direction=d,  # noqa: E731
                                                         speed=speed)
    pan, tilt, default_photo = 0.0, 0.0, "coffee"
    subjects, bystanders = [], []
    if name == "pan_tilt":
        subjects = [_moved(walk(speed=0.6), dx=-0.7, dz=0.0)]
        pan, tilt, default_photo = -6.0, 4.0, "chelsea"
    elif name == "bystanders":
        subjects = [_moved(motion_library.make("wave", seconds=secs, fps=fps), dz=0.5)]
        for i in range(6):  # enter and leave the view behind the subject, on both sides
            d, x0 = (90.0, -5.5 + 1.4 * i) if i % 2 == 0 else (-90.0, 5.5 - 1.4 * i)
            bystanders.append(_moved(walk(d, speed=1.3), dx=x0, dz=-4.0 - 0.6 * i))
        pan = 3.0
    elif name == "off_centre":
        subjects = [_moved(motion_library.make("box", seconds=secs, fps=fps), dx=1.9, dz=0.0)]
    elif name == "crossing":
        a, b = walk(90.0), walk(-90.0)
        subjects = [_moved(a, dx=-1.0, dz=0.4), _moved(b, dx=1.0, dz=-0.4)]
    elif name == "hug":
        pair = motion_library.make("handshake", seconds=secs, fps=fps)
        xs = [float(m.transl[:, 0].mean()) for m in pair]
        gap = 0.38  # shoulder to shoulder: their silhouettes overlap in the image
        sign = 1.0 if xs[0] < xs[1] else -1.0
        mid = 0.5 * (xs[0] + xs[1])
        subjects = [_moved(m, dx=mid - sign * (gap / 2) * (1 if i == 0 else -1) - x)
                    for i, (m, x) in enumerate(zip(pair, xs))]
    elif name == "street":  # a slow walker in the right foreground, a crowd crossing behind
        subjects = [_moved(walk(-90.0, speed=0.3), dx=1.4, dz=1.0)]
        for i in range(6):
            d, x0 = (90.0, -6.0 + 1.5 * i) if i % 2 == 0 else (-90.0, 6.0 - 1.5 * i)
            bystanders.append(_moved(walk(d, speed=1.2), dx=x0, dz=-3.0 - 0.8 * i))
        pan = 2.0
    elif name == "far_people":
        subjects = [_moved(motion_library.make("wave", seconds=secs, fps=fps), dz=0.3)]
        for i in range(4):
            bystanders.append(_moved(motion_library.make("wave", seconds=secs, fps=fps), dx=-3 + 2 * i, dz=-9.0))
    else:
        raise ValueError(f"unknown hard case {name!r}; expected one of {HARD_CASES + ('street',)}")
    f = 0.5 * width / np.tan(np.radians(50.0) / 2)
    fov_v = float(np.degrees(2 * np.arctan(0.5 * height / f)))
    cam = Camera.look_at((0.0, 1.1, 5.0), (0.0, 0.9, 0.0), fov_deg=fov_v, width=width, height=height)
    rel = relative_rotations(frames, pan, tilt)
    R = rel @ cam.R
    path = CameraPath(cam.K.expand(frames, 3, 3), R, -(R @ cam.center[:, None])[..., 0], width, height, fps)
    people = [Person(GaussianAvatar.from_body(body, CLOSED_LOOP_APPEARANCES[i % 2], num_gaussians=num_gaussians,
                                              seed=seed + i), m)
              for i, m in enumerate(subjects + bystanders)]
    r = render_scene(people, path, conditions=("avatar",), background=(0.0, 0.0, 0.0), progress=False)
    bg = photo_background(path, rel, photo or default_photo).astype(np.float32)
    a = r.alpha[..., None]
    out = np.clip(r.rgb.astype(np.float32) + (1 - a) * bg, 0, 255).astype(np.uint8)
    boxes = []
    for i in range(len(subjects)):
        ys, xs = [], []
        for k in range(frames):
            m = r.mask[k] == i + 1
            yy, xx = np.nonzero(m)
            ys.append((yy.min(), yy.max()) if len(yy) else (0, 0))
            xs.append((xx.min(), xx.max()) if len(xx) else (0, 0))
        boxes.append(np.array([[x[0], y[0], x[1], y[1]] for x, y in zip(xs, ys)], np.float32))
    return {"frames": out, "camera": cam, "rotations": rel, "cameras": path,
            "subjects": [np.asarray(j) for j in r.joints[:len(subjects)]], "bystanders": len(bystanders),
            "people": [np.asarray(j) for j in r.joints],
            "subject_boxes": boxes, "masks": r.mask}


def street_video(body, frames=16, fps=8.0, scale=4, num_gaussians=3000, photo="coffee"):
    """The ``street`` hard case rendered at 320x180 and upscaled ``scale`` times (1280x720 by default): what
    a user's footage looks like to ``amg.prep`` (a foreground walker right of centre, a crowd behind, a slow
    pan), at a fraction of the cost of rendering at full size.

    Returns the :func:`hard_case` dict with ``frames (F,180*scale,320*scale,3)``, ``camera``, ``cameras``,
    ``subject_boxes`` and ``masks`` in the upscaled pixels.
    """
    import cv2

    case = hard_case("street", body, frames=frames, fps=fps, num_gaussians=num_gaussians, photo=photo)
    H, W = case["frames"].shape[1:3]
    case["frames"] = np.stack([cv2.resize(f, (W * scale, H * scale), interpolation=cv2.INTER_CUBIC)
                               for f in case["frames"]])
    case["camera"] = case["camera"].resize(W * scale, H * scale)
    case["cameras"] = case["cameras"].resize(W * scale, H * scale)
    case["subject_boxes"] = [b * scale for b in case["subject_boxes"]]
    case["masks"] = np.repeat(np.repeat(case["masks"], scale, axis=1), scale, axis=2)
    return case
