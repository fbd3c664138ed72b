"""The image steps (crates/yunmo-pipeline, vision) reproduce a Python client's preprocessing: Pillow's
bilinear resize of the shorter side to 256, a centre crop of 224 and [-1, 1] scaling, on scikit-learn's two
photos as JPEG and re-encoded as PNG: equal within float rounding. Run through the crate's `prepare` example, which cargo test builds."""
import io
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

import images
from conftest import BINARY

EXAMPLE = os.path.join(os.path.dirname(BINARY), "examples", "prepare")


def pillow(image):
    w, h = image.size
    scale = 256 / min(w, h)
    image = image.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
    w, h = image.size
    left, top = (w - 224) // 2, (h - 224) // 2
    x = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
    return ((x - 0.5) / 0.5).transpose(2, 0, 1)


@pytest.mark.parametrize("name", ["china.jpg", "flower.jpg"])
@pytest.mark.parametrize("encoding", ["JPEG", "PNG"])
def test_image_steps_equal_pillow_and_numpy(tmp_path, name, encoding):
    source = Image.open(images.sample_image_path(name)).convert("RGB")
    path = tmp_path / f"photo.{encoding.lower()}"
    if encoding == "JPEG":
        path.write_bytes(open(images.sample_image_path(name), "rb").read())
    else:
        buffer = io.BytesIO()
        source.save(buffer, "PNG")
        path.write_bytes(buffer.getvalue())
    done = subprocess.run([EXAMPLE, str(path)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    ours = np.frombuffer(done.stdout, dtype="<f4").reshape(3, 224, 224)
    expected = pillow(Image.open(path).convert("RGB"))
    difference = np.abs(ours - expected)
    # Decoding is exact (PNG; JPEG through libjpeg-turbo's decoder, as Pillow's), so the resize must be
    # Pillow's value for value: float rounding only.
    assert difference.max() < 1e-5, (encoding, difference.max(), (difference > 1e-5).mean())
