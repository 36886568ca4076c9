"""Seeded "photographed badly" copies of a painting: what a visitor's phone makes of it in a gallery.

Each kind imitates one way a photo goes wrong, with its strength drawn from a seeded generator, so a
variant set is the same on every machine and every run:

* ``perspective`` -- shot from the side: the canvas becomes a quadrilateral on a wall-coloured background;
* ``crop`` -- only part of the painting is in the frame (40-70 % of its area);
* ``light`` -- exposure, contrast, gamma and a colour cast (tungsten or daylight white balance);
* ``blur`` -- out of focus or shaken (Gaussian, relative to the picture's size);
* ``jpeg`` -- downscaled and saved at JPEG quality ~30 (messaging apps);
* ``grey_print`` -- a greyscale print: low contrast, lifted blacks, paper grain;
* ``phone_photo`` -- perspective + light + mild blur + sensor noise + JPEG;
* ``bad_photo`` -- crop + colour cast + blur + noise + strong JPEG.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from services.encoder.images import to_rgb

Transform = Callable[[Image.Image, np.random.Generator], Image.Image]


@dataclass(frozen=True)
class PhotoVariant:
    kind: str
    image: Image.Image  # RGB


def perspective(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The canvas seen from one side, on a wall: the far vertical edge shrinks by 6-18 % of the height, the
    picture foreshortens horizontally, and every corner wobbles a little."""
    width, height = image.size
    margin = 0.06
    out_w, out_h = round(width * (1 + 2 * margin)), round(height * (1 + 2 * margin))
    recede = rng.uniform(0.06, 0.18)
    lo, hi = margin, 1 - margin
    # Corners TL, TR, BR, BL as fractions of the output, with the right edge as the far one.
    corners = np.array(
        [[lo, lo], [hi - recede / 2, lo + recede / 2], [hi - recede / 2, hi - recede / 2], [lo, hi]]
    )
    if rng.integers(0, 2):  # the left edge is the far one instead: mirror left-right
        corners = np.array([[1 - x, y] for x, y in corners[[1, 0, 3, 2]]])
    corners = (corners + rng.uniform(-0.02, 0.02, size=(4, 2))) * [out_w, out_h]
    source = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    # Gallery walls: light, nearly neutral (a grey level plus a slight tint).
    wall = tuple(int(c) for c in np.clip(rng.integers(140, 236) + rng.integers(-12, 13, 3), 0, 255))
    return image.convert("RGB").transform(
        (out_w, out_h),
        Image.Transform.PERSPECTIVE,
        _perspective_coefficients(corners, source),
        Image.Resampling.BICUBIC,
        fillcolor=wall,
    )


def _perspective_coefficients(output_points: np.ndarray, input_points: np.ndarray) -> tuple[float, ...]:
    """PIL's 8 coefficients mapping output pixel (x, y) to input pixel: solved from 4 point pairs."""
    rows = []
    targets = []
    for (x, y), (u, v) in zip(output_points, input_points, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        targets.extend([u, v])
    solution = np.linalg.solve(np.array(rows, dtype=np.float64), np.array(targets, dtype=np.float64))
    return tuple(float(c) for c in solution)


def crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A part of the painting: each side keeps 60-85 % (40-70 % of the area), anywhere in the frame."""
    width, height = image.size
    keep_w, keep_h = rng.uniform(0.6, 0.85, size=2)
    crop_w, crop_h = max(8, round(width * keep_w)), max(8, round(height * keep_h))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    return image.crop((left, top, left + crop_w, top + crop_h))


def light(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Exposure x0.6-1.4, contrast x0.65-1.3, gamma 0.75-1.35 and a white-balance cast of up to ±15 %."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    gamma = rng.uniform(0.75, 1.35)
    pixels = pixels**gamma
    contrast = rng.uniform(0.65, 1.3)
    pixels = (pixels - 0.5) * contrast + 0.5
    pixels = pixels * rng.uniform(0.6, 1.4)
    pixels = pixels * _white_balance_cast(rng, 0.15)
    return _to_image(pixels * 255.0)


def _white_balance_cast(rng: np.random.Generator, strength: float) -> np.ndarray:
    """Per-channel gains along the warm-cool axis (tungsten: red up, blue down), a little green-magenta."""
    warm = rng.uniform(-strength, strength)
    tint = rng.uniform(-strength / 3, strength / 3)
    return np.array([1 + warm, 1 + tint, 1 - warm], dtype=np.float32)


def blur(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Gaussian blur with a radius of 0.4-0.9 % of the longer side (2.4-5.4 px on a 600 px picture)."""
    radius = rng.uniform(0.004, 0.009) * max(image.size)
    return image.convert("RGB").filter(ImageFilter.GaussianBlur(radius))


def jpeg(image: Image.Image, rng: np.random.Generator, quality: int | None = None) -> Image.Image:
    """Downscaled to 60-90 % and saved as JPEG at quality 25-35 (4:2:0 chroma subsampling)."""
    scale = rng.uniform(0.6, 0.9)
    width, height = image.size
    small = image.convert("RGB").resize(
        (max(8, round(width * scale)), max(8, round(height * scale))), Image.Resampling.BILINEAR
    )
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=quality if quality is not None else int(rng.integers(25, 36)))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def grey_print(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A greyscale print on paper: blacks lifted to 25-55, whites to 215-245, paper grain."""
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    black, white = rng.uniform(25, 55), rng.uniform(215, 245)
    printed = black + grey * (white - black)
    printed = printed + rng.normal(0.0, rng.uniform(2.0, 6.0), size=printed.shape)
    return _to_image(np.repeat(printed[..., None], 3, axis=2))


def sensor_noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Per-pixel Gaussian noise with sigma 3-8 (of 255): a phone in a dim room."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    return _to_image(pixels + rng.normal(0.0, rng.uniform(3.0, 8.0), size=pixels.shape))


def phone_photo(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    shot = perspective(image, rng)
    shot = light(shot, rng)
    shot = shot.filter(ImageFilter.GaussianBlur(rng.uniform(0.002, 0.004) * max(shot.size)))
    return jpeg(sensor_noise(shot, rng), rng)


def bad_photo(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    shot = crop(image, rng)
    pixels = np.asarray(shot.convert("RGB"), dtype=np.float32) * _white_balance_cast(rng, 0.2)
    shot = blur(_to_image(pixels), rng)
    return jpeg(sensor_noise(shot, rng), rng, quality=int(rng.integers(20, 31)))


def _to_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


VARIANT_KINDS: dict[str, Transform] = {
    "perspective": perspective,
    "crop": crop,
    "light": light,
    "blur": blur,
    "jpeg": jpeg,
    "grey_print": grey_print,
    "phone_photo": phone_photo,
    "bad_photo": bad_photo,
}


def photo_variants(
    image: Image.Image, *, seed: int, key: str, kinds: Sequence[str] = tuple(VARIANT_KINDS)
) -> Iterator[PhotoVariant]:
    """One variant of each kind of `image`. The randomness of each depends only on (seed, key, kind), so
    adding a painting or a kind never changes the variants of the others."""
    unknown = [kind for kind in kinds if kind not in VARIANT_KINDS]
    if unknown:
        raise ValueError(f"unknown variant kinds {unknown}; choose from {list(VARIANT_KINDS)}")
    rgb = to_rgb(image)
    for kind in kinds:
        rng = np.random.default_rng([seed, _stable_hash(key), _stable_hash(kind)])
        yield PhotoVariant(kind=kind, image=VARIANT_KINDS[kind](rgb, rng))


def _stable_hash(text: str) -> int:
    """A process-independent 32-bit hash (Python's str hash is salted per process)."""
    value = 2166136261
    for byte in text.encode("utf-8"):
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return value
