"""Seeded photos of real paintings with known geometry, for the painting locator's tests: a painting in a
bevelled frame on an unevenly lit wall, seen in perspective; a grey print on tinted paper; a screenshot.

The evaluation's generator (artsearch_tools/evaluation/visitor_photos.py) makes richer photos but does not
report where the canvas ends up; these report its corners, so a test can check the quadrilateral found."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FRAME_COLOURS = ((184, 148, 72), (28, 26, 24), (92, 58, 34), (176, 136, 92), (232, 230, 224))
WALL_COLOURS = ((236, 234, 228), (214, 210, 200), (168, 170, 172), (120, 38, 42), (38, 56, 84))


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def _homography(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    rows, values = [], []
    for (x, y), (u, v) in zip(source, target, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values.extend([u, v])
    solved = np.linalg.solve(np.array(rows, dtype=np.float64), np.array(values, dtype=np.float64))
    return np.append(solved, 1.0).reshape(3, 3)


def _mapped(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    homogeneous = np.hstack([points, np.ones((len(points), 1))]) @ matrix.T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def gallery_wall(painting: Image.Image, seed: int) -> tuple[Image.Image, np.ndarray]:
    """The painting in a bevelled frame on a wall, 40-55 % of the photo's width, one side receding, lit
    from one side; returns the photo and the canvas corners (TL, TR, BR, BL) as fractions of its size."""
    rng = np.random.default_rng(seed)
    photo_w = int(rng.integers(900, 1300))
    photo_h = int(photo_w * 3 / 4)
    fraction = rng.uniform(0.40, 0.55)
    paint_w = fraction * photo_w
    paint_h = min(paint_w * painting.height / painting.width, 0.7 * photo_h)
    frame = rng.uniform(0.025, 0.07) * photo_w
    left = rng.uniform(0.35, 0.65) * photo_w - paint_w / 2
    top = rng.uniform(0.45, 0.55) * photo_h - paint_h / 2
    wall_colour = np.array(WALL_COLOURS[int(rng.integers(0, len(WALL_COLOURS)))], dtype=np.float32)
    scene = Image.fromarray(np.broadcast_to(wall_colour, (photo_h, photo_w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(scene)
    frame_colour = np.array(FRAME_COLOURS[int(rng.integers(0, len(FRAME_COLOURS)))])
    outer = [left - frame, top - frame, left + paint_w + frame, top + paint_h + frame]
    draw.rectangle(outer, fill=tuple(int(c) for c in frame_colour))
    for step, shade in ((0.33, 1.15), (0.66, 0.85)):  # bevels: a lighter and a darker moulding step
        inset = frame * step
        tone = tuple(int(c) for c in np.clip(frame_colour * shade + 8, 0, 255))
        draw.rectangle([outer[0] + inset, outer[1] + inset, outer[2] - inset, outer[3] - inset], fill=tone)
    canvas = painting.convert("RGB").resize((round(paint_w), round(paint_h)), Image.Resampling.LANCZOS)
    scene.paste(canvas, (round(left), round(top)))
    # The view: one vertical side recedes by up to 8 % of the height, a small roll.
    corners = np.array([[0, 0], [photo_w, 0], [photo_w, photo_h], [0, photo_h]], dtype=np.float64)
    recede = rng.uniform(0.02, 0.08) * photo_h / 2
    moved = corners.copy()
    far = (1, 2) if rng.integers(0, 2) else (0, 3)
    moved[far[0], 1] += recede
    moved[far[1], 1] -= recede
    view = _homography(corners, moved)
    inverse = np.linalg.inv(view)
    inverse /= inverse[2, 2]
    photo = scene.transform(
        (photo_w, photo_h),
        Image.Transform.PERSPECTIVE,
        tuple(inverse.ravel()[:8]),
        Image.Resampling.BICUBIC,
        fillcolor=tuple(int(c) for c in wall_colour),
    )
    # Uneven light: a horizontal gradient (a spotlight from one side), then softness, noise and JPEG.
    pixels = np.asarray(photo, dtype=np.float32)
    gain = np.linspace(rng.uniform(0.7, 0.9), rng.uniform(1.0, 1.15), photo_w, dtype=np.float32)
    if rng.integers(0, 2):
        gain = gain[::-1]
    pixels = pixels * gain[None, :, None] + rng.normal(0, 3.0, pixels.shape)
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))
    canvas_corners = np.array(
        [[left, top], [left + paint_w, top], [left + paint_w, top + paint_h], [left, top + paint_h]]
    )
    truth = _mapped(view, canvas_corners) / np.array([photo_w, photo_h])
    return _jpeg(photo, int(rng.integers(75, 92))), truth


def grey_print(painting: Image.Image, seed: int) -> Image.Image:
    """A black-and-white print of the painting on tinted paper (cream to cool), slightly cropped, with
    grain and JPEG noise."""
    rng = np.random.default_rng(seed)
    width, height = painting.size
    cut = rng.uniform(0.0, 0.06, size=4) * np.array([width, height, width, height])
    box = (round(cut[0]), round(cut[1]), round(width - cut[2]), round(height - cut[3]))
    grey = np.asarray(painting.convert("L").crop(box), dtype=np.float32)
    black, white = rng.uniform(15, 55), rng.uniform(205, 248)
    printed = black + grey / 255.0 * (white - black) + rng.normal(0, rng.uniform(2, 6), grey.shape)
    tint = np.array([1.0, 1.0 - rng.uniform(0, 0.03), 1.0 - rng.uniform(-0.01, 0.06)], dtype=np.float32)
    pixels = np.clip(printed[..., None] * tint, 0, 255).astype(np.uint8)
    return _jpeg(Image.fromarray(pixels), int(rng.integers(60, 90)))


def screenshot(painting: Image.Image, seed: int) -> Image.Image:
    """The painting shown in an image viewer: a light toolbar above, a dark panel around it."""
    rng = np.random.default_rng(seed)
    width, height = painting.size
    scale = 800 / max(width, height)
    shown = painting.convert("RGB").resize((round(width * scale), round(height * scale)))
    toolbar = 40
    margin = int(rng.integers(10, 40))
    screen = Image.new("RGB", (shown.width + 2 * margin, shown.height + 2 * margin + toolbar), (32, 33, 36))
    draw = ImageDraw.Draw(screen)
    draw.rectangle([0, 0, screen.width, toolbar], fill=(240, 240, 240))
    for index in range(6):  # toolbar buttons
        draw.rectangle([10 + index * 40, 8, 34 + index * 40, 32], fill=(120, 120, 130))
    screen.paste(shown, (margin, toolbar + margin))
    return screen
