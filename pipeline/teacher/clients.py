"""Teacher clients: one call = one batch of images (uint8 pixels) in, one descriptor per image out.

- ``LocalTeacher``: weights built on this machine (the trained default, or published weights),
  run in-process behind the same gate as any service;
- ``MlflowTeacher``: a model served by ``mlflow models serve`` (MLflow's scoring protocol);
- ``KServeTeacher``: the Open Inference Protocol (``/v2/models/<name>/infer``) of Triton, KServe,
  MLServer, TorchServe;
- ``CommandTeacher``: any program that reads a folder of PNG images and writes their descriptors.

Each reports a failed call as one of :mod:`pipeline.teacher.outcomes`, so that the gate can record
whether it may have been billed. Pixels travel losslessly (JSON integers, PNG files), so a served
teacher receives exactly the bytes the answer is keyed by.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pipeline.errors import TeacherError
from pipeline.io import file_sha256
from pipeline.teacher.http import CallInvalid, HttpEndpoint
from pipeline.teacher.outcomes import CallError, CallFailed, CallNeverSent


def _one_array(pixels) -> np.ndarray:
    """A batch as one uint8 array: same-size images as they are, a photo (always alone) with a batch axis."""
    if isinstance(pixels, np.ndarray):
        return pixels
    if len(pixels) != 1:
        raise ValueError("images of different sizes are sent one per call")
    return pixels[0][None]


class LocalTeacher:
    remote = False

    def __init__(self, weights: Path, device, batch_size: int):
        from pipeline.checkpoint import load_model

        self.endpoint = f"{weights} (in-process)"
        self.model = load_model(weights, device)
        self.device, self.batch_size = device, batch_size

    def __call__(self, pixels) -> np.ndarray:
        if self.model.preprocess is not None:  # a published teacher: its own resolution, scales, normalisation
            from pipeline.teacher.pretrained import describe_images

            return describe_images(self.model, list(pixels), self.model.preprocess, self.device)
        from pipeline.models.inference import describe

        return describe(self.model, pixels, self.batch_size, self.device)


class MlflowTeacher:
    """``POST <url>/invocations`` with ``{"inputs": <uint8 tensor>}``; answers ``{"predictions": [...]}``."""

    remote = True

    def __init__(self, url: str, http: HttpEndpoint):
        self.url, self.http = url.rstrip("/"), http
        self.endpoint = f"{self.url}/invocations"

    def check(self) -> None:
        """Reachable and serving (``GET /ping``): not a teacher call."""
        try:
            self.http.request("GET", "/ping", expect_json=False)
        except CallError as exc:
            raise TeacherError(
                f"no MLflow scoring server answers at {self.url} ({exc.detail}); start one with "
                "`derd serve-teacher` (or `mlflow models serve -m <model> --host 127.0.0.1 --port "
                "<port>`) and set teacher.url to its address"
            ) from None

    def __call__(self, pixels) -> np.ndarray:
        body = self.http.request("POST", "/invocations", {"inputs": _one_array(pixels).tolist()})
        if not isinstance(body, dict) or "predictions" not in body:
            what = f"keys: {sorted(map(str, body))[:5]}" if isinstance(body, dict) else f"a JSON {type(body).__name__}"
            raise CallInvalid(
                f"answered without 'predictions' ({self.http.scrub(what)}); MLflow's scoring server "
                'answers {"predictions": [[...], ...]}: is teacher.kind mlflow right for this service?'
            )
        return _descriptor_array(body["predictions"], "'predictions'")


class KServeTeacher:
    """Open Inference Protocol v2: ``POST <url>/v2/models/<model>/infer`` with one UINT8 tensor."""

    remote = True

    def __init__(self, url: str, model: str, http: HttpEndpoint):
        self.url, self.model, self.http = url.rstrip("/"), model, http
        self.endpoint = f"{self.url}/v2/models/{model}/infer"
        self.input_name = "images"

    def check(self) -> None:
        """The model's metadata (``GET /v2/models/<model>``): it exists, and the name of its input."""
        try:
            meta = self.http.request("GET", f"/v2/models/{self.model}")
        except CallError as exc:
            hint = (
                f"check teacher.model (the served models: {self._served()})"
                if "HTTP 404" in exc.detail
                else "is the server running, and is teacher.url its address?"
            )
            raise TeacherError(
                f"the Open Inference Protocol server at {self.url} has no usable model "
                f"{self.model!r} ({exc.detail}); {hint}"
            ) from None
        inputs = meta.get("inputs") if isinstance(meta, dict) else None
        if (
            not isinstance(meta, dict)
            or not isinstance(inputs or [], list)
            or not all(isinstance(i, dict) for i in inputs or [])
        ):
            raise TeacherError(
                f"the Open Inference Protocol server at {self.url} answered GET /v2/models/{self.model} "
                f"with a JSON {type(meta).__name__} that is not the model's metadata (an object whose "
                "'inputs' is a list of tensors); is teacher.url that server's base address and "
                "teacher.kind kserve-v2 its protocol?"
            )
        if inputs:
            self.input_name = str(inputs[0].get("name", self.input_name))

    def _served(self) -> str:
        try:
            index = self.http.request("POST", "/v2/repository/index", {})
            return self.http.scrub(", ".join(str(m.get("name", "?")) for m in index)) or "none"
        except (CallError, AttributeError, TypeError):
            return "not listed by this server"

    def __call__(self, pixels) -> np.ndarray:
        a = _one_array(pixels)
        body = {
            "inputs": [
                {"name": self.input_name, "shape": list(a.shape), "datatype": "UINT8", "data": a.ravel().tolist()}
            ]
        }
        answer = self.http.request("POST", f"/v2/models/{self.model}/infer", body)
        try:
            out = answer["outputs"][0]
            data, shape = out["data"], [int(n) for n in out["shape"]]
        except (KeyError, IndexError, TypeError, ValueError, OverflowError) as exc:  # its text may echo the key
            raise CallInvalid(
                f"answered without a usable 'outputs' tensor ({type(exc).__name__}: "
                f"{self.http.scrub(str(exc))[:200]}); the Open "
                'Inference Protocol answers {"outputs": [{"shape": [n, dim], "data": [...]}]}: '
                "is teacher.kind kserve-v2 right for this service?"
            ) from None
        a = _descriptor_array(data, "'outputs'")
        if a.ndim != 1 or a.size != int(np.prod(shape)) or min(shape, default=1) < 0:
            raise CallInvalid(
                f"answered an 'outputs' tensor whose data ({a.size} values) does not fill its shape "
                f"{shape}; the service must send flat data of that shape"
            )
        return a.reshape(shape)


class CommandTeacher:
    """Runs ``teacher.command`` once per call. ``{input}`` is a folder of ``000000.png``, ``000001.png``,
    ... (greyscale or RGB, in order); ``{output}`` is where the program writes one descriptor per
    image, in that order: a NumPy ``.npy`` array or comma/space-separated text. Without the
    placeholders the two paths are appended as arguments."""

    remote = True

    def __init__(self, command: str, timeout: float):
        try:
            self.argv = shlex.split(command)
        except ValueError as e:  # an unbalanced quote
            raise TeacherError(
                f"teacher.command {command!r} cannot be split into arguments ({e}): quote it as "
                'a shell would, e.g. python "my teacher.py" {input} {output}'
            ) from None
        if not self.argv:
            raise TeacherError("teacher.command is empty")
        if "{input}" not in command and "{output}" not in command:
            self.argv += ["{input}", "{output}"]
        self.command, self.timeout = command, timeout
        self.endpoint = f"command `{command}`"

    def named_files(self) -> dict[str, str]:
        """The content of every file the command names: editing a script makes a new teacher."""
        return {a: file_sha256(Path(a)) for a in self.argv if "{" not in a and Path(a).is_file()}

    def __call__(self, pixels) -> np.ndarray:
        from PIL import Image

        images = list(pixels)
        with tempfile.TemporaryDirectory(prefix="derd-teacher-") as tmp:
            folder, out = Path(tmp) / "images", Path(tmp) / "descriptors.npy"
            folder.mkdir()
            for k, image in enumerate(images):
                Image.fromarray(np.asarray(image, dtype=np.uint8)).save(folder / f"{k:06d}.png")
            argv = [a.replace("{input}", str(folder)).replace("{output}", str(out)) for a in self.argv]
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout)
            except subprocess.TimeoutExpired:
                raise CallFailed(f"did not finish within queries.timeout_s = {self.timeout:g} s") from None
            except OSError as exc:
                raise CallNeverSent(
                    f"cannot start teacher.command `{self.command}` ({exc}); fix teacher.command"
                ) from None
            if proc.returncode != 0:
                raise CallFailed(f"exited with code {proc.returncode}: {proc.stderr.strip()[-300:]}")
            if not out.exists():
                raise CallInvalid(f"wrote no descriptors to {{output}} ({out.name})")
            return _read_descriptors(out)


def _descriptor_array(values, what: str) -> np.ndarray:
    """A service's descriptors as float32, or the reason they are not descriptors (CallInvalid)."""
    rows = values if isinstance(values, list) else []
    if rows and all(isinstance(r, dict) for r in rows) or isinstance(values, dict):
        raise CallInvalid(
            f"answered {what} as records (a DataFrame's rows or columns); the model's predict must "
            "return an array of descriptors (a NumPy array or list of lists), one row per image"
        )
    try:
        return np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError, OverflowError) as exc:
        ragged = "inhomogeneous" in str(exc) or "sequence" in str(exc)
        raise CallInvalid(
            f"answered {what} that "
            + ("are ragged (rows of different lengths)" if ragged else "are not all numbers")
            + "; the service must return one descriptor of teacher.dim "
            "numbers per image"
        ) from None


def _read_descriptors(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        magic = f.read(6)
    try:
        if magic == b"\x93NUMPY":
            return np.load(path, allow_pickle=False).astype(np.float32)
        return np.atleast_2d(
            np.loadtxt(path, delimiter=None if b"," not in path.read_bytes()[:4096] else ",", dtype=np.float32)
        )
    except ValueError as exc:
        raise CallInvalid(f"wrote descriptors that cannot be read as .npy or text ({exc})") from None
