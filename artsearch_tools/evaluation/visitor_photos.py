"""Seeded visitor photos of a painting: the photos a museum-guide app really receives.

`photo_variants` imitates one fault at a time; the kinds here imitate whole photos, each the way a visitor
takes it, with every parameter drawn from a seeded generator (the same photos on every machine and run):

* ``gallery_wall`` -- the painting hanging on a wall in a frame (gilt, black, wood, white, silver; 2-9 % of
  the photo's width, bevelled, sometimes with a mat), the painting itself 40-55 % of the photo's width, a
  mild perspective and roll, a wall of some colour with plaster texture, the frame's shadow, a spotlight
  from above, vignetting, a warm or cool white balance, sometimes a label card and a neighbour's frame edge;
* ``gallery_neighbours`` -- the same wall photo with the paintings hung beside it in view: one or two other
  paintings of the collection in their frames, as tall as it or smaller, cut by the photo's side or not;
* ``grey_print`` -- a black-and-white print of it, 0-8 % cut off each side, on tinted paper, with grain,
  lit unevenly;
* ``tiny_detail`` -- 3-7 % of the painting's area, enlarged to a phone's picture and blurred;
* ``occlusion`` -- a visitor's head and shoulders, out of focus, in front of the painting;
* ``glare`` -- a specular glare spot (a lamp reflected in the varnish or the glass);
* ``sideways`` -- a phone photo that arrives turned by 90 degrees;
* ``phone`` -- `photo_variants.phone_photo`: perspective, light, blur, noise, JPEG (clean);
* ``crop`` -- `photo_variants.crop` saved as a phone JPEG (clean);
* ``screen`` -- a photo of the painting on a monitor: bezel, sub-pixel grid resampled into moiré, a blue
  cast and a reflection (clean);
* ``book`` -- a reproduction in a printed book: CMYK halftone, page margins, caption lines, the gutter's
  shadow and curvature (clean).

What it cannot imitate: real optics (lens distortion, depth of field over a scene, motion blur paths),
real lighting on a canvas's relief, real people and rooms, printers' colour management, and paintings
other than the ones it is given (the neighbours on the wall are the collection's other paintings). See
docs/evaluation.md ("Finding the artwork in a visitor's photo").

Seed sets: `DEVELOPMENT_SEEDS` are for tuning; `REPORT_SEEDS` are used only for the published numbers.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from artsearch_tools.evaluation import photo_variants as basic
from services.encoder.images import to_rgb

# Tune on these; never on REPORT_SEEDS, which only the published numbers use.
DEVELOPMENT_SEEDS: tuple[int, ...] = (0, 1, 2)
REPORT_SEEDS: tuple[int, ...] = (90001, 90002, 90003)

GALLERY_WIDTH_FRACTION = (0.40, 0.55)  # the painting's share of the photo's width
DETAIL_AREA_FRACTION = (0.03, 0.07)  # the detail's share of the painting's area


@dataclass(frozen=True)
class Shot:
    """A generated photo and the facts of how it was made (what the tests check)."""

    image: Image.Image  # RGB
    facts: dict[str, float | str] = field(default_factory=dict)


@dataclass(frozen=True)
class VisitorPhoto:
    kind: str
    seed: int
    image: Image.Image  # RGB
    facts: dict[str, float | str]


Generator = Callable[[Image.Image, np.random.Generator], Shot]
# A kind that shows other paintings beside the one photographed: given the collection's others.
NeighbourGenerator = Callable[[Image.Image, np.random.Generator, Sequence[Image.Image]], Shot]


# ---------------------------------------------------------------- shared pieces of a camera


def _to_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1] of shape (height, width): a coarse random grid upscaled smoothly."""
    width, height = size
    grid_w = max(2, cells)
    grid_h = max(2, round(cells * height / max(width, 1)))
    coarse = rng.uniform(0, 255, size=(grid_h, grid_w)).astype(np.uint8)
    smooth = Image.fromarray(coarse, "L").resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(smooth, dtype=np.float32) / 127.5 - 1.0


def _camera(
    image: Image.Image, rng: np.random.Generator, *, noise: tuple[float, float] = (2.0, 6.0)
) -> Image.Image:
    """A phone's last steps: slight softness, sensor noise, JPEG at quality 70-92."""
    soft = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.1)))
    pixels = _pixels(soft)
    pixels = pixels + _noise(rng, pixels.shape, rng.uniform(*noise))
    return _jpeg(_to_image(pixels), int(rng.integers(70, 93)))


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def _white_balance(rng: np.random.Generator, warm: tuple[float, float]) -> np.ndarray:
    """Channel gains: positive warmth is tungsten (red up, blue down), negative is daylight/LED."""
    warmth = rng.uniform(*warm)
    tint = rng.uniform(-0.03, 0.03)
    return np.array([1 + warmth, 1 + tint, 1 - warmth], dtype=np.float32)


def _vignette(size: tuple[int, int], strength: float) -> np.ndarray:
    """A (height, width) gain falling from 1 in the middle to 1-strength in the corners."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = ((xs / width - 0.5) ** 2 + (ys / height - 0.5) ** 2) / 0.5
    return 1.0 - strength * radius**1.5


def _homography(points_from: np.ndarray, points_to: np.ndarray) -> np.ndarray:
    """The 3x3 matrix mapping 4 points onto 4 points."""
    rows, targets = [], []
    for (x, y), (u, v) in zip(points_from, points_to, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        targets.extend([u, v])
    h = np.linalg.solve(np.array(rows, dtype=np.float64), np.array(targets, dtype=np.float64))
    return np.append(h, 1.0).reshape(3, 3)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    ones = np.ones((len(points), 1))
    mapped = np.hstack([points, ones]) @ matrix.T
    return mapped[:, :2] / mapped[:, 2:3]


def _warp(
    image: Image.Image, scene_to_photo: np.ndarray, size: tuple[int, int], fill: tuple[int, ...]
) -> Image.Image:
    """Renders `image` seen through the homography scene->photo (PIL wants photo->scene coefficients)."""
    inverse = np.linalg.inv(scene_to_photo)
    inverse = inverse / inverse[2, 2]
    return image.transform(
        size,
        Image.Transform.PERSPECTIVE,
        tuple(inverse.flatten()[:8]),
        Image.Resampling.BICUBIC,
        fillcolor=fill,
    )


def _mild_view(size: tuple[int, int], rng: np.random.Generator, recede: tuple[float, float]) -> np.ndarray:
    """A homography of the photo plane onto itself: one vertical edge recedes, a small roll, a little zoom."""
    width, height = size
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    far = rng.uniform(*recede) * height / 2
    moved = corners.copy()
    side = 1 if rng.integers(0, 2) else 0  # which vertical edge is the far one
    far_corners = (1, 2) if side else (0, 3)
    moved[far_corners[0], 1] += far
    moved[far_corners[1], 1] -= far
    roll = math.radians(rng.uniform(-2.5, 2.5))
    centre = np.array([width / 2, height / 2])
    rotation = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    # Zoomed in a little so that the photo never shows an empty corner beyond the scene.
    zoom = 1.0 + 2 * far / height + 2.2 * abs(roll)
    moved = (moved - centre) @ rotation.T * zoom + centre
    return _homography(corners, moved)


# ---------------------------------------------------------------- gallery wall

# (name, base RGB, how much the bevel light/dark varies it); gilt gets a gradient, wood a grain.
_FRAMES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("gilt", (184, 148, 72)),
    ("black", (28, 26, 24)),
    ("dark_wood", (92, 58, 34)),
    ("light_wood", (176, 136, 92)),
    ("white", (232, 230, 224)),
    ("silver", (170, 172, 176)),
)
_WALLS: tuple[tuple[int, int, int], ...] = (
    (236, 234, 228),  # gallery white
    (214, 210, 200),  # warm grey
    (168, 170, 172),  # mid grey
    (120, 38, 42),  # museum red
    (38, 56, 84),  # navy
    (52, 78, 64),  # dark green
    (196, 182, 150),  # ochre-beige
)


def gallery_wall(painting: Image.Image, rng: np.random.Generator) -> Shot:
    """The painting on a wall in its frame, filling 40-55 % of the photo's width, lit unevenly."""
    layout = _gallery_layout(painting.size, rng)
    scene = _gallery_scene(painting, layout, rng)
    return _wall_shot(
        scene,
        layout,
        rng,
        frame_fraction=float(layout["frame_px"] / layout["photo_size"][0]),
        mat=float(layout["mat_px"] > 0),
    )


def _wall_shot(scene: Image.Image, layout: dict, rng: np.random.Generator, **facts: float | str) -> Shot:
    """The wall seen through the view, under the gallery's light, through a phone's last steps."""
    photo = _warp(scene, layout["view"], layout["photo_size"], fill=(0, 0, 0))
    photo = _gallery_light(photo, rng)
    return Shot(
        _camera(photo, rng),
        {"width_fraction": float(layout["width_fraction"]), "frame": layout["frame_name"], **facts},
    )


def _gallery_layout(painting_size: tuple[int, int], rng: np.random.Generator) -> dict:
    """Where everything goes: photo size, painting size and place, frame, and the view's homography.

    The painting's width *as seen in the photo* (after the view's perspective and zoom) is drawn in
    40-55 %; its width on the wall is solved for that by a few fixed-point steps."""
    photo_w = int(rng.integers(960, 1441))
    seen_target = rng.uniform(GALLERY_WIDTH_FRACTION[0] + 0.003, GALLERY_WIDTH_FRACTION[1] - 0.003)
    frame_px = rng.uniform(0.02, 0.09) * photo_w
    mat_px = rng.uniform(0.02, 0.06) * photo_w if rng.random() < 0.3 else 0.0
    aspect = painting_size[1] / painting_size[0]
    framed_h = seen_target * photo_w * aspect + 2 * (frame_px + mat_px)
    heights = [h for h in (photo_w * 3 / 4, photo_w * 4 / 3, photo_w * 16 / 9) if framed_h <= 0.8 * h]
    # Mostly the squarest photo the framed painting fits (landscape for a landscape), at times a taller one.
    if not heights:
        photo_h = int(framed_h / 0.75)
    else:
        photo_h = int(heights[0] if rng.random() < 0.7 else rng.choice(heights))
    centre_x = rng.uniform(0.38, 0.62)
    centre_y = rng.uniform(0.4, 0.6)
    view = _mild_view((photo_w, photo_h), rng, recede=(0.0, 0.08))
    fraction = seen_target
    for _ in range(6):
        paint_w, paint_h = fraction * photo_w, fraction * photo_w * aspect
        left = centre_x * photo_w - paint_w / 2
        top = centre_y * photo_h - paint_h / 2
        corners = np.array(
            [[left, top], [left + paint_w, top], [left + paint_w, top + paint_h], [left, top + paint_h]]
        )
        seen = _apply(view, corners)
        seen_fraction = (seen[:, 0].max() - seen[:, 0].min()) / photo_w
        fraction *= seen_target / seen_fraction
    frame_name, _ = _FRAMES[int(rng.integers(0, len(_FRAMES)))]
    return {
        "photo_size": (photo_w, photo_h),
        "paint_box": (left, top, paint_w, paint_h),
        "frame_px": frame_px,
        "mat_px": mat_px,
        "view": view,
        "frame_name": frame_name,
        "width_fraction": seen_fraction,
    }


def _wall(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A painted wall: a colour, plaster texture (low-frequency) and grain."""
    width, height = size
    colour = np.array(_WALLS[int(rng.integers(0, len(_WALLS)))], dtype=np.float32)
    colour = colour + rng.integers(-10, 11, size=3)
    plaster = _smooth_noise(rng, size, int(rng.integers(6, 20)))[..., None] * rng.uniform(3, 9)
    grain = _noise(rng, (height, width, 1), rng.uniform(1.0, 3.0))
    return np.broadcast_to(colour, (height, width, 3)) + plaster + grain


def _frame_texture(name: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    base = np.array(dict(_FRAMES)[name], dtype=np.float32) + rng.integers(-14, 15, size=3)
    width, height = size
    texture = np.broadcast_to(base, (height, width, 3)).copy()
    if name in ("dark_wood", "light_wood"):  # grain along the moulding
        texture *= 1 + 0.12 * _smooth_noise(rng, (width, height), 60)[..., None]
    if name in ("gilt", "silver"):  # metallic: strong low-frequency highlights
        texture *= 1 + 0.28 * _smooth_noise(rng, (width, height), 12)[..., None]
    return texture


def _gallery_scene(painting: Image.Image, layout: dict, rng: np.random.Generator) -> Image.Image:
    """The wall seen flat: neighbour frame, shadow, the frame with bevels, mat, painting, label card."""
    scene, outer = _shadowed_wall(layout, rng)
    if rng.random() < 0.5:
        _neighbour_frame(scene, outer, rng)
    _hang(scene, painting, layout, outer, rng)
    if rng.random() < 0.6:
        _label_card(scene, outer, rng)
    return scene


def _shadowed_wall(layout: dict, rng: np.random.Generator) -> tuple[Image.Image, tuple[float, ...]]:
    """The wall with the frame's shadow on it, and the frame's outer box (scene pixels)."""
    photo_w, photo_h = layout["photo_size"]
    left, top, paint_w, paint_h = layout["paint_box"]
    frame_px, mat_px = layout["frame_px"], layout["mat_px"]
    wall = _wall((photo_w, photo_h), rng)
    outer = (
        left - frame_px - mat_px,
        top - frame_px - mat_px,
        left + paint_w + frame_px + mat_px,
        top + paint_h + frame_px + mat_px,
    )
    return _to_image(_drop_shadow(wall, outer, rng)), outer


def _hang(
    scene: Image.Image,
    painting: Image.Image,
    layout: dict,
    outer: tuple[float, ...],
    rng: np.random.Generator,
) -> None:
    """The frame with its bevels, the mat, and the painting in it."""
    left, top, paint_w, paint_h = layout["paint_box"]
    frame_px, mat_px = layout["frame_px"], layout["mat_px"]
    box = tuple(round(v) for v in outer)
    frame = _frame_texture(layout["frame_name"], (box[2] - box[0], box[3] - box[1]), rng)
    scene.paste(_to_image(frame), box[:2])
    _bevels(scene, outer, frame_px, rng)
    if mat_px:
        mat_box = (outer[0] + frame_px, outer[1] + frame_px, outer[2] - frame_px, outer[3] - frame_px)
        tone = int(rng.integers(225, 250))
        ImageDraw.Draw(scene).rectangle([round(v) for v in mat_box], fill=(tone, tone, int(tone * 0.97)))
    canvas = painting.resize((max(1, round(paint_w)), max(1, round(paint_h))), Image.Resampling.LANCZOS)
    scene.paste(canvas, (round(left), round(top)))


def _drop_shadow(wall: np.ndarray, outer: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """The frame's shadow on the wall, cast down and to one side by the spotlight."""
    height, width = wall.shape[:2]
    mask = Image.new("L", (width, height), 0)
    dx, dy = rng.uniform(-0.015, 0.015) * width, rng.uniform(0.005, 0.03) * height
    ImageDraw.Draw(mask).rectangle([outer[0] + dx, outer[1] + dy, outer[2] + dx, outer[3] + dy], fill=255)
    soft = mask.filter(ImageFilter.GaussianBlur(rng.uniform(0.006, 0.02) * width))
    darkness = rng.uniform(0.25, 0.55) * np.asarray(soft, dtype=np.float32)[..., None] / 255.0
    return wall * (1 - darkness)


def _bevels(scene: Image.Image, outer: tuple[float, ...], frame_px: float, rng: np.random.Generator) -> None:
    """The moulding: a lit top/left band, a shaded bottom/right band, a dark inner lip."""
    draw = ImageDraw.Draw(scene, "RGBA")
    x0, y0, x1, y1 = outer
    steps = int(rng.integers(2, 5))
    for step in range(steps):
        inset = frame_px * step / steps
        band = max(1, round(frame_px / steps / 2))
        light = int(rng.integers(30, 90))
        dark = int(rng.integers(40, 110))
        draw.line(
            [(x0 + inset, y1 - inset), (x0 + inset, y0 + inset), (x1 - inset, y0 + inset)],
            fill=(255, 250, 235, light),
            width=band,
        )
        draw.line(
            [(x1 - inset, y0 + inset), (x1 - inset, y1 - inset), (x0 + inset, y1 - inset)],
            fill=(0, 0, 0, dark),
            width=band,
        )
    lip = max(1, round(frame_px * 0.08))
    inner = [x0 + frame_px, y0 + frame_px, x1 - frame_px, y1 - frame_px]
    draw.rectangle(inner, outline=(0, 0, 0, 140), width=lip)


def _label_card(scene: Image.Image, outer: tuple[float, ...], rng: np.random.Generator) -> None:
    """A small white card beside the frame with lines of 'text'."""
    width, _height = scene.size
    card_w, card_h = rng.uniform(0.06, 0.1) * width, rng.uniform(0.04, 0.07) * width
    gap = rng.uniform(0.02, 0.05) * width
    x = outer[2] + gap if rng.random() < 0.7 else outer[0] - gap - card_w
    y = outer[3] - card_h - rng.uniform(0, 0.3) * (outer[3] - outer[1])
    if x < 0 or x + card_w > width:
        return
    draw = ImageDraw.Draw(scene)
    tone = int(rng.integers(225, 252))
    draw.rectangle([x, y, x + card_w, y + card_h], fill=(tone, tone, tone - 4))
    lines = int(rng.integers(3, 6))
    for line in range(lines):
        line_y = y + card_h * (0.2 + 0.6 * line / max(lines - 1, 1))
        length = card_w * rng.uniform(0.4, 0.85)
        draw.line(
            [(x + card_w * 0.08, line_y), (x + card_w * 0.08 + length, line_y)],
            fill=(60, 60, 60),
            width=max(1, round(card_h * 0.06)),
        )


def _neighbour_frame(scene: Image.Image, outer: tuple[float, ...], rng: np.random.Generator) -> None:
    """The edge of the next picture on the wall, cut by the photo's side."""
    width = scene.width
    gap = rng.uniform(0.04, 0.12) * width
    on_right = rng.random() < 0.5
    if on_right:
        x0, x1 = outer[2] + gap, width + 50
    else:
        x0, x1 = -50, outer[0] - gap
    if x1 - x0 < 60 or (on_right and x0 >= width) or (not on_right and x1 <= 0):
        return
    y0 = outer[1] + rng.uniform(-0.1, 0.2) * (outer[3] - outer[1])
    y1 = outer[3] + rng.uniform(-0.2, 0.1) * (outer[3] - outer[1])
    border = rng.uniform(0.015, 0.05) * width
    name, _ = _FRAMES[int(rng.integers(0, len(_FRAMES)))]
    box = tuple(round(v) for v in (max(x0, 0), y0, min(x1, width), y1))
    frame = _frame_texture(name, (box[2] - box[0], box[3] - box[1]), rng)
    scene.paste(_to_image(frame), box[:2])
    inner = (
        round(max(x0 + border, 0)),
        round(y0 + border),
        round(min(x1 - border, width)),
        round(y1 - border),
    )
    if inner[2] - inner[0] > 2 and inner[3] - inner[1] > 2:
        colours = rng.uniform(30, 220, size=(3, 3)).astype(np.float32)
        size = (inner[2] - inner[0], inner[3] - inner[1])
        mix = np.stack([(_smooth_noise(rng, size, 5) + 1) / 2 for _ in range(3)], axis=-1)
        picture = mix @ colours / mix.sum(axis=-1, keepdims=True).clip(1e-3)
        scene.paste(_to_image(picture), inner[:2])


def gallery_neighbours(
    painting: Image.Image, rng: np.random.Generator, neighbours: Sequence[Image.Image]
) -> Shot:
    """`gallery_wall` with the paintings hung beside it in view: on each side, most of the time, another
    painting of the collection (`neighbours`) in its frame, 55-100 % as tall, 4-10 % of the photo's width
    away; the photo's side cuts it or not. The painting photographed is the one in the middle."""
    if not neighbours:
        raise ValueError("gallery_neighbours needs the collection's other paintings to hang beside it")
    layout = _gallery_layout(painting.size, rng)
    scene, outer = _shadowed_wall(layout, rng)
    sides = [side for side in (-1, 1) if rng.random() < 0.75] or [1 if rng.random() < 0.5 else -1]
    visible = [
        _hung_neighbour(scene, neighbours[int(rng.integers(0, len(neighbours)))], outer, side, rng)
        for side in sides
    ]
    _hang(scene, painting, layout, outer, rng)
    return _wall_shot(
        scene,
        layout,
        rng,
        neighbours=float(sum(share > 0 for share in visible)),
        neighbour_visible=float(max(visible)),
    )


def _hung_neighbour(
    scene: Image.Image, other: Image.Image, outer: tuple[float, ...], side: int, rng: np.random.Generator
) -> float:
    """Hangs `other`, framed, on the `side` (-1 left, 1 right) of the frame `outer`; returns the share of its
    canvas's width the photo shows (0 when only its frame, or nothing of it, is in view)."""
    width = scene.width
    framed_h = (outer[3] - outer[1]) * rng.uniform(0.55, 1.0)
    border = rng.uniform(0.02, 0.07) * width
    inner_h = framed_h - 2 * border
    inner_w = inner_h * other.width / other.height
    framed_w = inner_w + 2 * border
    gap = rng.uniform(0.04, 0.10) * width
    x0 = outer[2] + gap if side > 0 else outer[0] - gap - framed_w
    y0 = (outer[1] + outer[3] - framed_h) / 2 + rng.uniform(-0.08, 0.08) * (outer[3] - outer[1])
    name, _ = _FRAMES[int(rng.integers(0, len(_FRAMES)))]
    box = tuple(round(v) for v in (x0, y0, x0 + framed_w, y0 + framed_h))
    scene.paste(_to_image(_frame_texture(name, (box[2] - box[0], box[3] - box[1]), rng)), box[:2])
    canvas = to_rgb(other).resize((max(1, round(inner_w)), max(1, round(inner_h))), Image.Resampling.LANCZOS)
    scene.paste(canvas, (round(x0 + border), round(y0 + border)))
    left, right = x0 + border, x0 + border + inner_w
    return max(0.0, min(right, width) - max(left, 0.0)) / inner_w


def _gallery_light(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A spotlight from above (bright top, falling off), vignetting, exposure and white balance."""
    width, height = photo.size
    pixels = _pixels(photo)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    spot_x, spot_y = rng.uniform(0.3, 0.7) * width, rng.uniform(-0.2, 0.35) * height
    spread = rng.uniform(0.5, 1.1) * max(width, height)
    spot = np.exp(-((xs - spot_x) ** 2 + (ys - spot_y) ** 2) / (2 * spread**2))
    strength = rng.uniform(0.25, 0.6)
    gain = (1 - strength) + strength * spot / spot.max()
    gain = gain * _vignette((width, height), rng.uniform(0.15, 0.45))
    exposure = rng.uniform(0.85, 1.35)
    pixels = pixels * (gain * exposure)[..., None] * _white_balance(rng, (-0.06, 0.14))
    gamma = rng.uniform(0.85, 1.15)
    pixels = 255.0 * (np.clip(pixels, 0, 255) / 255.0) ** gamma
    return _to_image(pixels)


# ---------------------------------------------------------------- grey print, tiny detail


def grey_print(painting: Image.Image, rng: np.random.Generator) -> Shot:
    """A black-and-white print: cut 0-8 % per side, tonal curve, tinted paper, grain, uneven light."""
    width, height = painting.size
    cuts = rng.uniform(0.0, 0.08, size=4)
    box = (
        round(cuts[0] * width),
        round(cuts[1] * height),
        round(width * (1 - cuts[2])),
        round(height * (1 - cuts[3])),
    )
    grey = np.asarray(painting.crop(box).convert("L"), dtype=np.float32) / 255.0
    grey = grey ** rng.uniform(0.8, 1.25)
    black, white = rng.uniform(15, 60), rng.uniform(200, 248)
    printed = black + grey * (white - black)
    scale = rng.uniform(1.0, 2.0)
    size = (max(8, round(printed.shape[1] * scale)), max(8, round(printed.shape[0] * scale)))
    printed = np.asarray(
        Image.fromarray(np.clip(printed, 0, 255).astype(np.uint8), "L").resize(
            size, Image.Resampling.BICUBIC
        ),
        dtype=np.float32,
    )
    printed = printed + _noise(rng, printed.shape, rng.uniform(2.0, 7.0))
    printed = printed * (1 + rng.uniform(0.05, 0.2) * _smooth_noise(rng, size, 3))
    # Paper tint: cream to cool white, a few levels of chroma at most (the print is grey, its paper is not).
    tint = np.array([1.0, 1.0 - rng.uniform(0, 0.025), 1.0 - rng.uniform(-0.01, 0.05)], dtype=np.float32)
    return Shot(
        _camera(_to_image(printed[..., None] * tint), rng, noise=(1.0, 3.0)), {"cut": float(cuts.max())}
    )


def tiny_detail(painting: Image.Image, rng: np.random.Generator) -> Shot:
    """3-7 % of the painting's area anywhere in it, enlarged to 600-1000 px and blurred."""
    width, height = painting.size
    area = rng.uniform(*DETAIL_AREA_FRACTION) * width * height
    aspect = rng.uniform(0.7, 1.45)  # detail width / height
    crop_w = min(width, max(4, round(math.sqrt(area * aspect))))
    crop_h = min(height, max(4, round(area / crop_w)))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    detail = painting.crop((left, top, left + crop_w, top + crop_h))
    longer = int(rng.integers(600, 1001))
    scale = longer / max(crop_w, crop_h)
    enlarged = detail.resize((round(crop_w * scale), round(crop_h * scale)), Image.Resampling.BICUBIC)
    enlarged = enlarged.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.2) * scale / 2))
    pixels = _pixels(enlarged) * _white_balance(rng, (-0.05, 0.08)) * rng.uniform(0.85, 1.2)
    return Shot(_camera(_to_image(pixels), rng), {"area_fraction": crop_w * crop_h / (width * height)})


# ---------------------------------------------------------------- occlusion, glare, sideways


def _phone_framing(painting: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The painting filling most of a phone photo: a mild view, a little wall around it, light."""
    width, height = painting.size
    scale = rng.uniform(1.4, 2.2)
    margin = rng.uniform(0.02, 0.08)
    photo_w, photo_h = round(width * scale * (1 + 2 * margin)), round(height * scale * (1 + 2 * margin))
    scene = Image.new("RGB", (photo_w, photo_h))
    scene.paste(_to_image(_wall((photo_w, photo_h), rng)))
    scene.paste(
        painting.resize((round(width * scale), round(height * scale)), Image.Resampling.BICUBIC),
        (round(photo_w * margin / (1 + 2 * margin)), round(photo_h * margin / (1 + 2 * margin))),
    )
    photo = _warp(
        scene, _mild_view((photo_w, photo_h), rng, recede=(0.0, 0.06)), (photo_w, photo_h), fill=(0, 0, 0)
    )
    pixels = _pixels(photo) * _vignette((photo_w, photo_h), rng.uniform(0.05, 0.3))[..., None]
    return _to_image(pixels * _white_balance(rng, (-0.05, 0.1)) * rng.uniform(0.9, 1.2))


def occlusion(painting: Image.Image, rng: np.random.Generator) -> Shot:
    """A visitor's head and shoulders in front (out of focus), covering 12-30 % of the photo."""
    photo = _phone_framing(painting, rng)
    width, height = photo.size
    target = rng.uniform(0.12, 0.30)
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    for _ in range(8):
        layer = _visitor(width, height, rng)
        covered = np.asarray(layer.getchannel("A"), dtype=np.float32).mean() / 255.0
        if covered >= target * 0.8:
            break
    layer = layer.filter(ImageFilter.GaussianBlur(rng.uniform(0.004, 0.012) * width))
    photo = Image.alpha_composite(photo.convert("RGBA"), layer).convert("RGB")
    covered = np.asarray(layer.getchannel("A"), dtype=np.float32).mean() / 255.0
    return Shot(_camera(photo, rng), {"covered_fraction": float(covered)})


def _visitor(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A silhouette from below the photo's bottom edge: shoulders (a rounded trapezoid), neck and head."""
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    scale = rng.uniform(0.55, 0.95) * min(width, height)
    cx = rng.uniform(0.2, 0.8) * width
    shoulder_top = height - rng.uniform(0.18, 0.32) * scale * 1.3
    head_r = scale * rng.uniform(0.16, 0.22)
    clothing = (*tuple(int(c) for c in rng.integers(10, 200, size=3)), 255)
    hair = [(22, 18, 16), (70, 45, 28), (150, 120, 80), (110, 110, 110), (40, 30, 25)][
        int(rng.integers(0, 5))
    ]
    skin = [(224, 188, 160), (180, 130, 100), (120, 84, 60), (90, 60, 45)][int(rng.integers(0, 4))]
    half = scale * rng.uniform(0.55, 0.8)
    draw.rounded_rectangle(
        [cx - half, shoulder_top, cx + half, height + scale], radius=round(scale * 0.25), fill=clothing
    )
    neck_w = head_r * 0.55
    head_cy = shoulder_top - head_r * 1.05
    draw.rectangle([cx - neck_w, head_cy, cx + neck_w, shoulder_top + 2], fill=(*skin, 255))
    draw.ellipse(
        [cx - head_r, head_cy - head_r * 1.2, cx + head_r, head_cy + head_r * 1.2], fill=(*hair, 255)
    )
    return layer


def glare(painting: Image.Image, rng: np.random.Generator) -> Shot:
    """A specular reflection of a lamp: a saturated core with a soft halo, 2-8 % of the photo."""
    photo = _phone_framing(painting, rng)
    width, height = photo.size
    pixels = _pixels(photo)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.15, 0.75) * height
    area = rng.uniform(0.02, 0.08) * width * height
    elongation = rng.uniform(1.0, 2.5)
    ry = math.sqrt(area / (math.pi * elongation))
    rx = ry * elongation
    angle = rng.uniform(0, math.pi)
    u = (xs - cx) * math.cos(angle) + (ys - cy) * math.sin(angle)
    v = -(xs - cx) * math.sin(angle) + (ys - cy) * math.cos(angle)
    distance = (u / rx) ** 2 + (v / ry) ** 2
    core = np.clip(1.6 - distance, 0, 1)  # flat white where distance < 0.6
    halo = 0.5 * np.exp(-distance / 3.0)
    light = np.clip(core + halo, 0, 1)[..., None]
    lamp = np.array([255, 250, 238], dtype=np.float32)
    pixels = pixels * (1 - light) + lamp * light
    return Shot(_camera(_to_image(pixels), rng), {"glare_fraction": float((distance < 1).mean())})


def sideways(painting: Image.Image, rng: np.random.Generator) -> Shot:
    """A phone photo that arrives turned by 90 degrees (the orientation tag lost on the way)."""
    photo = _phone_framing(painting, rng)
    turn = Image.Transpose.ROTATE_90 if rng.random() < 0.5 else Image.Transpose.ROTATE_270
    return Shot(
        _camera(photo.transpose(turn), rng), {"turn": "90" if turn == Image.Transpose.ROTATE_90 else "270"}
    )


# ---------------------------------------------------------------- clean kinds


def phone(painting: Image.Image, rng: np.random.Generator) -> Shot:
    return Shot(basic.phone_photo(painting, rng))


def crop(painting: Image.Image, rng: np.random.Generator) -> Shot:
    part = basic.crop(painting, rng)
    return Shot(_camera(part.resize((part.width * 2, part.height * 2), Image.Resampling.BICUBIC), rng))


def screen(painting: Image.Image, rng: np.random.Generator) -> Shot:
    """The painting on a monitor, photographed: bezel, sub-pixel stripes resampled into moiré, blue cast,
    a window's reflection."""
    pixel = int(rng.integers(3, 5))  # screen pixels of 3-4 scene pixels: RGB stripes + a dark gap
    # Shown 350-550 screen pixels wide: its sub-pixel columns then outnumber the camera's pixels.
    width = int(rng.integers(350, 551))
    height = max(1, round(width * painting.height / painting.width))
    shown = painting.resize((width, height), Image.Resampling.BILINEAR)
    big = np.repeat(np.repeat(_pixels(shown), pixel, axis=0), pixel, axis=1)
    stripes = np.zeros((pixel, pixel, 3), dtype=np.float32)
    for channel in range(3):
        stripes[: pixel - 1, channel * pixel // 3 : (channel + 1) * pixel // 3, channel] = 3.0
    stripes = 0.25 + 0.75 * stripes / 3.0 * 1.0
    big = big * np.tile(stripes, (height, width, 1)) * 1.6
    bezel = round(rng.uniform(0.03, 0.08) * big.shape[1])
    panel_w, panel_h = big.shape[1] + 2 * bezel, big.shape[0] + 2 * bezel
    monitor = np.full((panel_h, panel_w, 3), rng.uniform(10, 40), dtype=np.float32)
    monitor[bezel : bezel + big.shape[0], bezel : bezel + big.shape[1]] = big
    room = round(rng.uniform(0.04, 0.15) * panel_w)
    scene_w, scene_h = panel_w + 2 * room, panel_h + 2 * room
    scene = np.broadcast_to(rng.uniform(60, 200, size=3).astype(np.float32), (scene_h, scene_w, 3)).copy()
    scene[room : room + panel_h, room : room + panel_w] = monitor
    reflection = (_smooth_noise(rng, (scene_w, scene_h), 4)[..., None] + 1) * rng.uniform(5, 25)
    scene = scene + reflection
    photo = _to_image(scene * _white_balance(rng, (-0.12, -0.02)))
    view = _mild_view(photo.size, rng, recede=(0.0, 0.06))
    # The camera's sensor samples the stripes below their pitch (one warp straight to the camera's picture
    # size): the aliasing is the moiré. The lens blurs first (about half a camera pixel), which keeps the
    # moiré as faint as in real photos of a screen; point-sampling the sharp grid made psychedelic bands.
    target = int(rng.integers(900, 1300))
    factor = target / max(photo.size)
    photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(0.45, 0.8) / factor))
    size = (round(photo.width * factor), round(photo.height * factor))
    camera = np.diag([factor, factor, 1.0]) @ view
    inverse = np.linalg.inv(camera)
    inverse = inverse / inverse[2, 2]
    photo = photo.transform(
        size,
        Image.Transform.PERSPECTIVE,
        tuple(inverse.flatten()[:8]),
        Image.Resampling.BILINEAR,
        fillcolor=(30, 30, 30),
    )
    return Shot(_camera(photo, rng), {"screen_pixel": float(pixel)})


def book(painting: Image.Image, rng: np.random.Generator) -> Shot:
    """A reproduction on a book page: CMYK halftone, margins, caption lines, the gutter's shadow and bend."""
    scale = rng.uniform(1.3, 1.9)
    printed = painting.resize(
        (round(painting.width * scale), round(painting.height * scale)), Image.Resampling.BICUBIC
    )
    printed = _halftone(_pixels(printed), period=rng.uniform(3.5, 6.0))
    width, height = printed.size
    margin_x, margin_top = round(rng.uniform(0.08, 0.2) * width), round(rng.uniform(0.06, 0.15) * height)
    caption = round(rng.uniform(0.12, 0.25) * height)
    page_w, page_h = width + 2 * margin_x, height + margin_top + caption + margin_top
    paper = np.array([rng.uniform(236, 250), rng.uniform(232, 246), rng.uniform(218, 238)], dtype=np.float32)
    page = _to_image(np.broadcast_to(paper, (page_h, page_w, 3)) + _noise(rng, (page_h, page_w, 1), 2.0))
    page.paste(printed, (margin_x, margin_top))
    draw = ImageDraw.Draw(page)
    for line in range(int(rng.integers(2, 5))):
        y = margin_top + height + caption * (0.2 + 0.2 * line)
        draw.line(
            [(margin_x, y), (margin_x + width * rng.uniform(0.3, 0.95), y)],
            fill=(50, 50, 50),
            width=max(1, round(caption * 0.05)),
        )
    pixels = _pixels(page)
    # The gutter: a shadow darkening towards the spine (left or right) and the page curving into it.
    xs = np.linspace(0, 1, page_w, dtype=np.float32)
    spine_left = rng.random() < 0.5
    to_spine = xs if spine_left else 1 - xs
    depth = rng.uniform(0.3, 0.6)
    shadow = 1 - depth * np.exp(-to_spine / rng.uniform(0.04, 0.1))
    pixels = pixels * shadow[None, :, None]
    curved = _gutter_curve(_to_image(pixels), spine_left, rng.uniform(0.02, 0.05))
    view = _mild_view(curved.size, rng, recede=(0.0, 0.08))
    desk = tuple(int(c) for c in rng.integers(40, 160, size=3))
    photo = _warp(curved, view, curved.size, fill=desk)
    pixels = _pixels(photo) * _white_balance(rng, (-0.03, 0.12)) * rng.uniform(0.85, 1.15)
    return Shot(_camera(_to_image(pixels), rng), {"halftone": 1.0})


def _halftone(rgb: np.ndarray, period: float) -> Image.Image:
    """A four-colour halftone: each of C, M, Y, K printed as dots on its own screen angle."""
    height, width = rgb.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    unit = rgb / 255.0
    k = 1 - unit.max(axis=2)
    cmy = (1 - unit - k[..., None]) / np.clip(1 - k[..., None], 1e-3, None)
    inks = {"c": (cmy[..., 0], 15), "m": (cmy[..., 1], 75), "y": (cmy[..., 2], 0), "k": (k, 45)}
    printed = np.ones((height, width, 3), dtype=np.float32)
    absorb = {"c": (0.85, 0.15, 0.0), "m": (0.1, 0.8, 0.1), "y": (0.0, 0.05, 0.85), "k": (0.9, 0.9, 0.9)}
    for ink, (coverage, degrees) in inks.items():
        angle = math.radians(degrees)
        u = (xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period
        v = (-xs * math.sin(angle) + ys * math.cos(angle)) * 2 * math.pi / period
        screen_level = (np.cos(u) * np.cos(v) + 1) / 2  # 1 at dot centres
        dots = (screen_level > 1 - coverage).astype(np.float32)
        printed = printed * (1 - dots[..., None] * np.array(absorb[ink], dtype=np.float32))
    image = _to_image(printed * 255.0)
    return image.filter(ImageFilter.GaussianBlur(0.6))  # ink spreads into the paper


def _gutter_curve(page: Image.Image, spine_left: bool, bend: float) -> Image.Image:
    """The page bends into the spine: columns near the gutter are squeezed and pulled down."""
    width, height = page.size
    pixels = np.asarray(page, dtype=np.float32)
    xs = np.arange(width, dtype=np.float32) / width
    to_spine = xs if spine_left else 1 - xs
    drop = bend * height * np.exp(-to_spine / 0.12)
    rows = np.arange(height, dtype=np.float32)[:, None]
    source = np.clip(rows - drop[None, :], 0, height - 1).astype(np.intp)
    columns = np.arange(width)[None, :]
    return _to_image(pixels[source, columns])


# ---------------------------------------------------------------- the registry

# Kinds the issue names as hard, then the clean ones it expects to stay at 1.00.
VISITOR_KINDS: dict[str, Generator | NeighbourGenerator] = {
    "gallery_wall": gallery_wall,
    "gallery_neighbours": gallery_neighbours,
    "grey_print": grey_print,
    "tiny_detail": tiny_detail,
    "occlusion": occlusion,
    "glare": glare,
    "sideways": sideways,
    "phone": phone,
    "crop": crop,
    "screen": screen,
    "book": book,
}
HARD_KINDS: tuple[str, ...] = (
    "gallery_wall",
    "gallery_neighbours",
    "grey_print",
    "tiny_detail",
    "occlusion",
    "glare",
    "sideways",
)
# The kinds that hang the collection's other paintings beside the one photographed.
NEIGHBOUR_KINDS: frozenset[str] = frozenset({"gallery_neighbours"})
CLEAN_KINDS: tuple[str, ...] = ("phone", "crop", "screen", "book")


def visitor_photos(
    painting: Image.Image,
    *,
    seed: int,
    key: str,
    kinds: Sequence[str] = tuple(VISITOR_KINDS),
    neighbours: Sequence[Image.Image] = (),
) -> Iterator[VisitorPhoto]:
    """One photo of each kind of `painting`; `neighbours`, the collection's other paintings in a fixed order,
    are what `NEIGHBOUR_KINDS` hang beside it (read only when drawn: a lazy sequence loads two, not all). Each
    photo depends only on (seed, key, kind, neighbours): adding a painting or a kind never changes the photos
    of the others, except the neighbour kinds', whose choice of neighbours is drawn from that list."""
    unknown = [kind for kind in kinds if kind not in VISITOR_KINDS]
    if unknown:
        raise ValueError(f"unknown visitor photo kinds {unknown}; choose from {list(VISITOR_KINDS)}")
    rgb = to_rgb(painting)
    for kind in kinds:
        rng = np.random.default_rng([seed, _stable_hash(key), _stable_hash("visitor:" + kind)])
        generator = VISITOR_KINDS[kind]
        shot = generator(rgb, rng, neighbours) if kind in NEIGHBOUR_KINDS else generator(rgb, rng)
        yield VisitorPhoto(kind=kind, seed=seed, image=shot.image, facts=shot.facts)


def _stable_hash(text: str) -> int:
    return basic._stable_hash(text)
