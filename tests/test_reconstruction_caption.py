import warnings

import cv2
import numpy as np
import pytest

from reconstruction.caption import (Q_A, Q_S, AttributeCaptioner, LlavaCaptioner, clip_token_count, colour_name,
                                    draw_box, key_frame)
from render.errors import AmgError


def _figure(top, trousers, shoes, background=(40, 160, 60), size=128):
    """A frontal stick figure painted with known colours and its 33 landmarks (pixels, confidence)."""
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = background
    kp = np.zeros((33, 3), np.float32)
    s = size / 128
    pts = {0: (64, 20), 11: (76, 34), 12: (52, 34), 23: (72, 70), 24: (56, 70), 25: (73, 92), 26: (55, 92),
           27: (74, 112), 28: (54, 112), 29: (74, 116), 30: (54, 116), 31: (80, 118), 32: (48, 118)}
    for i, (x, y) in pts.items():
        kp[i] = (x * s, y * s, 1.0)
    P = lambda *ids: np.round(np.array([kp[i, :2] for i in ids])).astype(np.int32)
    cv2.fillPoly(img, [P(11, 12, 24, 23)], top)
    for a, b in ((23, 25), (25, 27), (24, 26), (26, 28)):
        cv2.line(img, tuple(P(a)[0]), tuple(P(b)[0]), trousers, int(9 * s))
    for a, b in ((27, 31), (28, 32)):
        cv2.line(img, tuple(P(a)[0]), tuple(P(b)[0]), shoes, int(7 * s))
    cv2.circle(img, tuple(P(0)[0]), int(8 * s), (230, 190, 160), -1)
    return img, kp


@pytest.mark.parametrize("rgb,name", [((220, 30, 30), "red"), ((30, 60, 200), "blue"), ((30, 170, 40), "green"),
                                      ((240, 220, 30), "yellow"), ((250, 250, 250), "white"), ((10, 10, 10), "black"),
                                      ((128, 128, 128), "grey"), ((120, 70, 30), "brown"), ((240, 130, 20), "orange"),
                                      ((130, 40, 170), "purple"), ((250, 160, 190), "pink")])
def test_colour_names(rgb, name):
    assert colour_name(np.array([rgb] * 5, np.uint8)) == name


def test_attribute_captioner_names_the_painted_colours():
    cap = AttributeCaptioner()
    img, kp = _figure(top=(200, 20, 20), trousers=(20, 40, 180), shoes=(15, 15, 15))
    frames = np.stack([img, img])
    faint = kp.copy()
    faint[:, 2] = 0.1
    text = cap.appearance(frames, np.stack([faint, kp]))
    assert text == "a person wearing a red top, blue trousers and black shoes"
    img2, kp2 = _figure(top=(250, 250, 250), trousers=(240, 220, 30), shoes=(120, 70, 30))
    assert cap.appearance(img2[None], kp2[None]) == "a person wearing a white top, yellow trousers and brown shoes"
    # a mask that excludes the legs leaves only what it covers
    mask = np.zeros((1, 128, 128), bool)
    mask[0, :64] = True
    assert cap.appearance(img2[None], kp2[None], mask) == "a person wearing a white top"
    assert cap.appearance(img2[None], np.zeros((1, 33, 3), np.float32)) == "a person"
    assert cap.appearance(img2[None], kp2[None]) == cap.appearance(img2[None], kp2[None])  # deterministic


def test_attribute_scene_phrases():
    cap = AttributeCaptioner()
    dark = np.full((3, 32, 32, 3), 15, np.uint8)
    assert cap.scene(dark) == "a dark scene with black tones"
    outdoor = np.zeros((1, 64, 64, 3), np.uint8)
    outdoor[0, :40] = (80, 150, 240)
    outdoor[0, 40:] = (60, 200, 70)
    assert cap.scene(outdoor) == "a bright scene with blue and green tones under a blue sky"


def test_key_frame_prefers_many_landmarks_and_a_big_box():
    _, kp = _figure((0, 0, 0), (0, 0, 0), (0, 0, 0))
    small = kp.copy()
    small[:, :2] = 40 + 0.3 * (kp[:, :2] - 40)
    hidden = kp.copy()
    hidden[11:, 2] = 0.0
    assert key_frame(np.stack([small, hidden, kp, small]), 128, 128) == 2


def _tiny_llava(path, vocab_words):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    words = ["<unk>", "<s>", "</s>", "<pad>", "<image>", "USER:", "ASSISTANT:"] + vocab_words
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    images = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=16,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=32, patch_size=16),
        text_config=LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256),
        image_token_id=vocab["<image>"], vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)


def test_llava_captioner_with_a_tiny_random_model(tmp_path):
    words = (Q_A + " " + Q_S).lower().replace("?", " ").split() + ["a", "red", "top"]
    _tiny_llava(tmp_path / "llava", words)
    cap = LlavaCaptioner(tmp_path / "llava", max_new_tokens=6)
    img, kp = _figure((200, 20, 20), (20, 40, 180), (15, 15, 15), size=64)
    frames = np.stack([img] * 3)
    kps = np.stack([kp] * 3)
    text = cap.appearance(frames, kps)
    assert isinstance(text, str) and len(text.split()) <= 6
    assert isinstance(cap.scene(frames), str)

    asked = []
    real_ask = cap.ask
    cap.ask = lambda image, question: asked.append((image, question)) or real_ask(image, question)
    cap.appearance(frames, kps)
    cap.scene(frames)
    assert [q for _, q in asked] == [Q_A, Q_S]
    assert (asked[0][0] != frames[0]).any() and (asked[0][0][:, :, 0] == 255).sum() > 20  # the red box is drawn
    assert (asked[1][0] == frames[1]).all()  # the middle frame, untouched

    cap.token_counter = lambda text: 100
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        cap.scene(frames)
    assert any("77" in str(x.message) for x in w)
    with pytest.raises(AmgError, match="config.json"):
        LlavaCaptioner(tmp_path / "nowhere")


def test_clip_token_count_is_a_lower_bound_shape():
    assert clip_token_count("a person") == 4
    assert clip_token_count("It's 2024, isn't it?") == 2 + len(["it", "'s", "2", "0", "2", "4", ",", "isn", "'t", "it", "?"])
    long = " ".join(["word"] * 80)
    assert clip_token_count(long) > 77
    box = draw_box(np.zeros((20, 20, 3), np.uint8), (2, 3, 10, 12), thickness=1)
    assert box[3, 2:11, 0].min() == 255 and box[7, 6, 0] == 0


@pytest.mark.parametrize("text,expect", [
    ("a man wearing a blue shirt with short sleeves and green shorts",
     {"top": "blue", "bottom": "green", "sleeves": "short", "legs": "shorts"}),
    ("a woman wearing a yellow top with long sleeves and black trousers",
     {"top": "yellow", "bottom": "black", "sleeves": "long", "legs": "trousers"}),
])
def test_garments_from_body_parts_ignore_a_strongly_coloured_floor(text, expect):
    """An avatar dressed from ``text`` walks in front of a red floor: colours and lengths come from the
    pixels its body parts cover (projected from the body, cut to its mask), not from the floor."""
    import torch

    from avatars import motion_library
    from avatars.body import BodyModel
    from avatars.gaussians import GaussianAvatar
    from avatars.scene import Person, render_scene
    from reconstruction.parts import part_index, part_labels
    from render.camera import Camera, CameraPath

    body = BodyModel.load("default")
    m = motion_library.make("walk", seconds=0.5, fps=8, direction=30.0)
    path = CameraPath.static(Camera.look_at((0, 1.0, 3.2), (0, 0.85, 0), fov_deg=50, width=128, height=128),
                             len(m.transl), 8)
    r = render_scene([Person(GaussianAvatar.from_body(body, text, num_gaussians=6000, seed=0), m)], path,
                     conditions=("avatar",), progress=False)
    bg = np.zeros((128, 128, 3), np.float32)
    bg[:] = (60, 90, 160)
    bg[64:] = (200, 30, 30)  # the red carpet behind the legs
    frames = np.clip(r.rgb + (1 - r.alpha[..., None]) * bg, 0, 255).astype(np.uint8)
    parts = part_labels(body, m, path, r.mask == 1)
    assert (parts[r.mask == 0] == 0).all() and (parts == part_index("torso")).any()
    cap = AttributeCaptioner()
    got = cap.garments(frames, parts)
    assert {k: got.get(k) for k in expect} == expect
    text_out = cap.appearance(frames, np.zeros((len(frames), 33, 3), np.float32), r.mask == 1, parts=parts)
    assert f"{expect['bottom']} {expect['legs']}" in text_out and "red" not in text_out
    assert torch.is_tensor(m.transl)
