"""Draw `example_flower.jpg`: a photo-like sunflower that is in no dataset.

The picture is generated here from a fixed seed (no photograph is involved), so
the project may use and redistribute it freely. Re-create it with::

    python flowerlib/data/make_example_flower.py

It carries an EXIF orientation tag (the pixels are stored rotated), so
`flowerlib.predict` has to apply `ImageOps.exif_transpose` to see it upright.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 320
SUPERSAMPLE = 3


def draw(seed: int = 7) -> Image.Image:
    """Return the upright RGB picture."""
    rng = np.random.default_rng(seed)
    s = SIZE * SUPERSAMPLE
    # Background: out-of-focus foliage and sky (vertical gradient + soft blobs).
    ramp = np.linspace(0.0, 1.0, s)[:, None, None]
    sky, grass = np.array([150, 185, 215]), np.array([55, 105, 45])
    base = sky * (1 - ramp**0.7) + grass * ramp**0.7
    image = Image.fromarray(np.broadcast_to(base, (s, s, 3)).astype(np.uint8).copy(), "RGB")
    blobs = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = rng.uniform(0, s, 2)
        r = rng.uniform(0.03, 0.12) * s
        g = rng.uniform(70, 160)
        blobs.ellipse((x - r, y - r, x + r, y + r), fill=(int(g * 0.45), int(g), int(g * 0.35)))
    image = image.filter(ImageFilter.GaussianBlur(s * 0.03))
    d = ImageDraw.Draw(image)
    cx, cy = 0.52 * s, 0.45 * s
    # Stem and a leaf.
    d.line((cx, cy, cx + 0.05 * s, s), fill=(60, 120, 40), width=int(0.035 * s))
    d.ellipse((cx + 0.06 * s, 0.72 * s, cx + 0.32 * s, 0.84 * s), fill=(50, 115, 35))
    # Petals: two rings of pointed, shaded yellow petals.
    disc = 0.14 * s
    for ring, (count, length, shade) in enumerate(((21, 0.25 * s, 0.85), (21, 0.27 * s, 1.0))):
        for k in range(count):
            a = 2 * math.pi * (k + 0.5 * ring) / count + rng.normal(0, 0.04)
            ln = length * rng.uniform(0.88, 1.08)
            w = 0.055 * s * rng.uniform(0.85, 1.15)
            steps = 12
            for i in range(steps, 0, -1):  # draw from tip to base, darker at the base
                t = i / steps
                colour = np.array([250, 200 - 50 * (1 - t), 20 + 30 * t]) * shade * rng.uniform(0.95, 1.02)
                pts = []
                for u, v in ((0.0, 0.0), (0.45 * t, 1.0), (t, 0.0), (0.45 * t, -1.0)):
                    r = disc * 0.8 + u * ln
                    px = cx + r * math.cos(a) - v * w * t * math.sin(a)
                    py = cy + r * math.sin(a) + v * w * t * math.cos(a)
                    pts.append((px, py))
                d.polygon(pts, fill=tuple(int(c) for c in np.clip(colour, 0, 255)))
    # The disc: dark brown with a Fibonacci pattern of seeds.
    d.ellipse((cx - disc, cy - disc, cx + disc, cy + disc), fill=(70, 40, 15))
    golden = math.pi * (3 - math.sqrt(5))
    for n in range(420):
        r = disc * 0.97 * math.sqrt(n / 420)
        x, y = cx + r * math.cos(n * golden), cy + r * math.sin(n * golden)
        seed_r = 0.006 * s * (0.6 + 0.6 * r / disc)
        tone = 25 + 50 * (r / disc) + rng.uniform(-8, 8)
        d.ellipse((x - seed_r, y - seed_r, x + seed_r, y + seed_r), fill=(int(tone * 1.6), int(tone), 10))
    image = image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    noisy = np.asarray(image, np.float32) + rng.normal(0, 3.0, (SIZE, SIZE, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def save(path: Path) -> None:
    """Save with the pixels rotated and an EXIF tag (orientation 6) that rotates them back."""
    upright = draw()
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # 90 degrees counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    stored.save(path, "JPEG", quality=85, optimize=True, exif=exif.tobytes())


if __name__ == "__main__":
    save(Path(__file__).with_name("example_flower.jpg"))
