"""Avatars coloured from footage (avatars.texture): against avatars of known colours rendered by the
rasterizer (the truth is the colours they were rendered with), with another person passing in front."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from avatars.body import DEFAULT_BODY_PATH
from avatars.gaussians import GaussianAvatar
from avatars.motion_library import make
from avatars.scene import Person, render_scene
from avatars.texture import colour_from_frames, colours_from_frames
from render.camera import Camera, CameraPath

pytestmark = pytest.mark.skipif(not DEFAULT_BODY_PATH.exists(), reason="default body not built")
RED, GREEN, GREY = torch.tensor([0.85, 0.1, 0.1]), torch.tensor([0.1, 0.8, 0.15]), torch.tensor([0.5, 0.5, 0.5])


def _avatar(body, text="a man in a red shirt and blue jeans", n=4000):
    return GaussianAvatar.from_body(body, text, num_gaussians=n, seed=0)


def test_colours_come_back_from_an_orbit_of_renders(body):
    """A known avatar rendered all round: a grey copy coloured from the frames gets its colours back."""
    truth = _avatar(body)
    motion = make("idle", seconds=2.0, fps=8.0)
    cams = CameraPath.orbit(num_frames=16, degrees=360, radius=3.0, width=128, height=128, fps=8.0)
    res = render_scene([Person(truth, motion)], cams, progress=False)
    grey = replace(truth, colors=GREY.expand(len(truth), 3).clone())
    coloured, found = colour_from_frames(grey, motion, cams, res.rgb, res.depth, res.mask)
    assert torch.equal(coloured.colors, found.colors)
    assert found.coverage > 0.85, found.coverage
    err = (found.colors[found.seen] - truth.colors[found.seen]).abs().max(-1).values
    # a pixel mixes the splats around a centre, so garment edges and shading blur; the bulk is exact to 8-bit
    assert err.median() < 0.04 and (err < 0.15).float().mean() > 0.9, (err.median(), (err < 0.15).float().mean())
    assert torch.equal(grey.face_ids, truth.face_ids) and torch.equal(grey.offsets, truth.offsets)


def _two_people(body):
    """A red person standing and a green one walking past in front of them, filmed from the front."""
    red, green = _avatar(body, n=3000), _avatar(body, "a woman", n=3000)
    red.colors = RED.expand(len(red), 3).clone()
    green.colors = GREEN.expand(len(green), 3).clone()
    behind = make("idle", seconds=2.0, fps=8.0)
    behind = behind.copy(transl=behind.transl + torch.tensor([0.0, 0.0, -1.0]))
    front = make("walk", seconds=2.0, fps=8.0, direction=90.0)
    front = front.copy(transl=front.transl - front.transl[8:9] * torch.tensor([1.0, 0.0, 1.0])
                       + torch.tensor([0.0, 0.0, 0.3]))
    cams = CameraPath.static(Camera.look_at((0.0, 1.0, 4.0), (0.0, 0.9, -0.3), width=128, height=128), 16, 8.0)
    return red, behind, green, front, cams


def test_a_person_passing_in_front_does_not_paint_the_one_behind(body):
    red, behind, green, front, cams = _two_people(body)
    res = render_scene([Person(red, behind), Person(green, front)], cams, progress=False)
    covered = ((res.mask == 2).sum(axis=(1, 2)) > 0) & ((res.mask == 1).sum(axis=(1, 2)) > 0)
    assert covered.sum() >= 4  # the walker overlaps the stander in several frames
    grey = replace(red, colors=GREY.expand(len(red), 3).clone())
    found = colours_from_frames(grey, behind, cams, res.rgb, res.depth, res.mask, instance_id=1)
    off = (found.colors[found.seen] - RED).abs().max(-1).values > 0.1
    assert found.coverage > 0.3 and off.float().mean() < 0.01, off.float().mean()
    # without the occlusion tests (every pixel "this person", any depth) the walker's colours leak in
    # (measured: a third of the Gaussians more than 0.1 off red)
    naive = colours_from_frames(grey, behind, cams, res.rgb, res.depth, np.ones_like(res.mask), instance_id=1,
                                depth_tolerance=np.inf)
    assert ((naive.colors[naive.seen] - RED).abs().max(-1).values > 0.1).float().mean() > 0.1


def test_the_footage_mask_keeps_the_background_off_the_avatar(body):
    """A fitted body wider than the real person: pixels outside the footage's person mask are not read."""
    truth = _avatar(body, n=3000)
    truth.colors = RED.expand(len(truth), 3).clone()
    motion = make("idle", seconds=1.0, fps=8.0)
    cams = CameraPath.orbit(num_frames=8, degrees=90, radius=3.0, width=96, height=96, fps=8.0)
    res = render_scene([Person(truth, motion)], cams, progress=False)
    footage = res.rgb.copy()
    real = np.zeros_like(res.mask, dtype=bool)
    real[:, :, 48:] = res.mask[:, :, 48:] == 1  # the real person covers only the right half of the render
    footage[~real] = (0, 0, 255)  # blue background wherever the real person is not
    found = colours_from_frames(truth, motion, cams, footage, res.depth, res.mask, person_mask=real)
    bluish = found.colors[found.seen][:, 2] > found.colors[found.seen][:, 0]
    assert found.seen.any() and bluish.float().mean() < 0.02
    assert found.views.max() <= 8


def test_bad_shapes_are_one_line_errors(body):
    from render.errors import AmgError

    a = _avatar(body, n=500)
    m = make("idle", seconds=0.5, fps=8.0)
    cams = CameraPath.orbit(num_frames=len(m), width=32, height=32, fps=8.0)
    frames = np.zeros((len(m), 32, 32, 3), np.uint8)
    with pytest.raises(AmgError, match="depth"):
        colours_from_frames(a, m, cams, frames, np.zeros((len(m), 16, 16)), np.zeros((len(m), 32, 32), int))
    with pytest.raises(AmgError, match="frames"):
        colours_from_frames(a, m, cams, frames[:1], np.zeros((1, 32, 32)), np.zeros((1, 32, 32), int))
