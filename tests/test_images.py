"""Photo files are decoded by a pool of threads: the same pixels, in the same order, as one by one."""

import numpy as np
from PIL import Image

from pipeline.data.images import ImageFiles
from pipeline.teacher.inputs import TeacherInputs, pixels_key


def photos(root, n=24):
    rng = np.random.default_rng(0)
    names = []
    for k in range(n):
        h, w = 30 + k, 50 - k
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"{k}.png")
        names.append(f"{k}.png")
    boxes = np.full((n, 4), np.nan)
    boxes[3] = [2, 3, 20, 25]  # a query's crop applies at decoding
    return ImageFiles(root, tuple(names), boxes)


def test_parallel_decoding_keeps_pixels_and_order(tmp_path):
    files = photos(tmp_path)
    one_by_one = [np.asarray(files.load(i)) for i in range(len(files))]
    squares = files.to_arrays(16)
    assert squares.shape == (24, 16, 16, 3)
    for k, image in enumerate(one_by_one):
        assert np.array_equal(squares[k], np.asarray(Image.fromarray(image).resize((16, 16), Image.BILINEAR)))
    inputs = TeacherInputs(files, list(files.paths))
    assert inputs.keys() == [pixels_key(a) for a in one_by_one]
    batch = inputs.batch([5, 3, 20])
    assert all(np.array_equal(b, one_by_one[i]) for b, i in zip(batch, [5, 3, 20]))
    assert batch[1].shape == (22, 18, 3)  # cropped to its box
