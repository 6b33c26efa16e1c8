"""Attention maps: the student's object saliency, a face cue and a centre prior, fused.

The pure-numpy reference of the ``attention_v1`` and ``attention_v2`` graphs
(scripts/build_attention_model.py builds the ONNX graphs from these same definitions;
tests/test_attention.py holds them together), and :class:`Components`, which runs the two
registry models separately so that the parameters can be fitted without rebuilding a graph.

``attention_v1`` fuses the student's *output* (an object map) with the face and centre cues by
hand-fitted weights. ``attention_v2`` reads the student's *features* instead: a linear readout of
seven of its tensors (:data:`READOUT_TENSORS`), fitted to human fixations as a log-density, plus
a log centre prior and the face map (:class:`Readout`, :func:`readout_map`).

Maps are [N,H,W] float32 at the working size (default 112x112: the student's 224x224 map
average-pooled 2x2; the pipeline resizes maps to the frame); coordinates are normalised to [0,1]
across the image, pixel centres at (j+0.5)/W and (i+0.5)/H.

The face cue: MediaPipe BlazeFace short-range (registry id ``blazeface_short``) on the same
normalised 224x224 input the student gets, resized to 128x128 (bilinear, half-pixel, as ONNX
Resize does it). No non-maximum suppression: the K best anchors are each drawn as an
axis-aligned Gaussian centred on its box with sigma = k * box size, weighted by its score where
the score exceeds the threshold (0 otherwise), and the map is their maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SIZE = 224  # the input size (the student's input and output)
WORK = 112  # the default working (output) size
FACE_SIZE = 128  # BlazeFace short-range input
TOP_K = 16


@dataclass(frozen=True)
class Params:
    """The fusion's parameters: A = (w_s*blur(S) + w_c) * C + w_f*F, then A / max(A).

    The object cue is gated by the centre prior, on a floor w_c where nothing stands out; faces
    are added outside the gate (they draw the eye wherever they are). The defaults are the fit on
    the NUS Scene gaze data's train split (scripts/fit_attention.py)."""

    w_s: float = 1.0
    w_f: float = 0.5
    w_c: float = 0.2
    centre_sx: float = 0.2  # centre prior sigma, fraction of the width
    centre_sy: float = 0.15  # ... of the height
    blur: float = 0.02  # student blur sigma, fraction of each side (0: none)
    face_k: float = 0.5  # face Gaussian sigma = face_k * box width / height
    face_threshold: float = 0.5
    top_k: int = TOP_K
    size: int = WORK  # working (output) size, a divisor of 224: the student map is average-pooled to it


# -- BlazeFace decoding ------------------------------------------------------------------
def anchors() -> np.ndarray:
    """[896, 2] anchor centres (x, y) of MediaPipe's SSD anchor config for the short-range model:
    strides 8, 16, 16, 16 on 128x128; layers of equal stride share a grid, 2 anchors per cell
    per layer (16x16x2 = 512, then 8x8x6 = 384); fixed anchor size 1."""
    out = []
    for fm, per_cell in ((16, 2), (8, 6)):
        for y in range(fm):
            for x in range(fm):
                out.extend([((x + 0.5) / fm, (y + 0.5) / fm)] * per_cell)
    return np.asarray(out, dtype=np.float32)


def decode(regressors: np.ndarray, classificators: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw outputs [N,896,16], [N,896,1] -> boxes [N,896,4] (cx, cy, w, h, normalised) and
    scores [N,896] = sigmoid(clip(logit, -100, 100))."""
    a = anchors()
    reg = regressors.astype(np.float32)
    cx = a[:, 0] + reg[..., 0] / np.float32(FACE_SIZE)
    cy = a[:, 1] + reg[..., 1] / np.float32(FACE_SIZE)
    w = reg[..., 2] / np.float32(FACE_SIZE)
    h = reg[..., 3] / np.float32(FACE_SIZE)
    logit = np.clip(classificators[..., 0].astype(np.float64), -100, 100)
    scores = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return np.stack([cx, cy, w, h], axis=-1).astype(np.float32), scores


def resize_matrix(n_out: int, n_in: int) -> np.ndarray:
    """[n_out, n_in] weights of ONNX Resize (mode linear, coordinate_transformation_mode
    half_pixel, no antialiasing) as ONNX Runtime computes them: source coordinate
    (o + 0.5) / (n_out / n_in) - 0.5 in float32, clamped to the edges (within 5e-7 of ORT's
    Resize on unit-scale input; with float64 coordinates the difference is up to 1e-4)."""
    scale = np.float32(n_out) / np.float32(n_in)
    m = np.zeros((n_out, n_in), dtype=np.float32)
    for o in range(n_out):
        x = (np.float32(o) + np.float32(0.5)) / scale - np.float32(0.5)
        x = min(max(x, np.float32(0.0)), np.float32(n_in - 1))
        x0 = int(math.floor(x))
        x1 = min(x0 + 1, n_in - 1)
        f = np.float32(x - np.float32(x0))
        m[o, x0] += np.float32(1.0) - f
        m[o, x1] += f
    return m


def face_input(x: np.ndarray) -> np.ndarray:
    """The student's normalised input [N,3,224,224] -> BlazeFace's [N,3,128,128] in [-1,1]
    (ImageNet mean/std undone, *2-1, resized)."""
    scale = (2.0 * STD).reshape(1, 3, 1, 1)
    shift = (2.0 * MEAN - 1.0).reshape(1, 3, 1, 1)
    y = x.astype(np.float32) * scale + shift
    r = resize_matrix(FACE_SIZE, x.shape[2])
    c = resize_matrix(FACE_SIZE, x.shape[3])
    return np.matmul(np.matmul(r, y), c.T).astype(np.float32)


# -- the three cues -----------------------------------------------------------------------
def _grid(n: int) -> np.ndarray:
    return ((np.arange(n, dtype=np.float32) + np.float32(0.5)) / np.float32(n)).astype(np.float32)


def top_faces(boxes: np.ndarray, scores: np.ndarray, top_k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """The top_k anchors by score: boxes [N,K,4], scores [N,K] (ties: the lower index first)."""
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    return np.take_along_axis(boxes, idx[..., None], axis=1), np.take_along_axis(scores, idx, axis=1)


def face_map(boxes: np.ndarray, scores: np.ndarray, h: int = WORK, w: int = WORK, k: float = 1.0,
             threshold: float = 0.5, top_k: int = TOP_K) -> np.ndarray:
    """Boxes [N,A,4] (cx, cy, w, h normalised), scores [N,A] -> [N,h,w] face map in [0,1]: the
    maximum over the top_k anchors of score * [score > threshold] * Gaussian(centre, k * size)."""
    b, s = top_faces(boxes, scores, top_k)
    wt = (s * (s > np.float32(threshold)).astype(np.float32))[:, :, None, None]
    sx = np.maximum(np.abs(b[..., 2]) * np.float32(k), np.float32(1e-4))[:, :, None, None]
    sy = np.maximum(np.abs(b[..., 3]) * np.float32(k), np.float32(1e-4))[:, :, None, None]
    dx = (_grid(w)[None, None, None, :] - b[..., 0][:, :, None, None]) / sx
    dy = (_grid(h)[None, None, :, None] - b[..., 1][:, :, None, None]) / sy
    gx = np.exp(dx * dx * np.float32(-0.5))
    gy = np.exp(dy * dy * np.float32(-0.5))
    return ((gx * gy) * wt).max(axis=1).astype(np.float32)


def centre_prior(h: int, w: int, sx: float, sy: float) -> np.ndarray:
    """[h,w] Gaussian centred on the image, sigma sx of the width and sy of the height (peak 1)."""
    dx = (_grid(w) - np.float32(0.5)) / np.float32(sx)
    dy = (_grid(h) - np.float32(0.5)) / np.float32(sy)
    gx = np.exp(dx * dx * np.float32(-0.5))
    gy = np.exp(dy * dy * np.float32(-0.5))
    return (gy[:, None] * gx[None, :]).astype(np.float32)


def gaussian_kernel(sigma_px: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps, radius ceil(3 sigma)."""
    r = max(1, int(math.ceil(3.0 * sigma_px)))
    t = np.exp(-0.5 * (np.arange(-r, r + 1, dtype=np.float64) / sigma_px) ** 2)
    return (t / t.sum()).astype(np.float32)


def blur(m: np.ndarray, sigma: float) -> np.ndarray:
    """[N,H,W] -> separable Gaussian blur, sigma a fraction of each side, reflected edges
    (numpy 'reflect' = ONNX Pad 'reflect'); sigma 0 returns the map unchanged."""
    if sigma <= 0:
        return m.astype(np.float32)
    kx, ky = gaussian_kernel(sigma * m.shape[2]), gaussian_kernel(sigma * m.shape[1])
    rx, ry = len(kx) // 2, len(ky) // 2
    p = np.pad(m.astype(np.float32), ((0, 0), (ry, ry), (rx, rx)), mode="reflect")
    hh, ww = m.shape[1], m.shape[2]
    t = sum(kx[i] * p[:, :, i:i + ww] for i in range(len(kx)))
    return sum(ky[i] * t[:, i:i + hh, :] for i in range(len(ky))).astype(np.float32)


def blur_matrix(n: int, sigma: float) -> np.ndarray:
    """[n, n] float64 weights of :func:`blur` along one side of n pixels (sigma a fraction of
    the side, reflected edges): ``blur(m)[i] = blur_matrix(...) @ m[i] @ blur_matrix(...).T``
    for one sample; the identity for sigma 0."""
    if sigma <= 0:
        return np.eye(n)
    k = gaussian_kernel(sigma * n).astype(np.float64)
    r = len(k) // 2
    if r >= n:
        raise ValueError(f"blur radius {r} px does not fit a side of {n} px")
    m = np.zeros((n, n))
    for i in range(n):
        for t in range(-r, r + 1):
            j = i + t
            j = -j if j < 0 else 2 * (n - 1) - j if j >= n else j  # numpy/ONNX 'reflect'
            m[i, j] += k[t + r]
    return m


def pool(m: np.ndarray, size: int) -> np.ndarray:
    """[N,224,224] -> [N,size,size] block means (ONNX AveragePool, kernel = stride = 224/size)."""
    n, h, w = m.shape
    if h % size or w % size:
        raise ValueError(f"working size {size} does not divide {h}x{w}")
    fy, fx = h // size, w // size
    if fy == fx == 1:
        return m.astype(np.float32)
    return m.reshape(n, size, fy, size, fx).mean(axis=(2, 4), dtype=np.float32).astype(np.float32)


def student_map(student_raw: np.ndarray, size: int = WORK) -> np.ndarray:
    """The raw student output [N,1,224,224] or [N,224,224] -> [N,size,size]: pooled, then
    min-max normalised per map (the S of the fusion, before its blur)."""
    s = student_raw.reshape(student_raw.shape[0], student_raw.shape[-2], student_raw.shape[-1])
    return minmax(pool(s, size))


def minmax(s: np.ndarray) -> np.ndarray:
    """Per-map min-max to [0,1] ([N,H,W]); a flat map gives 0."""
    lo = s.min(axis=(1, 2), keepdims=True)
    hi = s.max(axis=(1, 2), keepdims=True)
    return ((s - lo) / np.maximum(hi - lo, np.float32(1e-8))).astype(np.float32)


def fuse(student: np.ndarray, face: np.ndarray, centre: np.ndarray, w_s: float, w_f: float, w_c: float,
         blur_sigma: float = 0.0) -> np.ndarray:
    """student [N,H,W] (min-max normalised), face [N,H,W], centre [H,W] -> [N,H,W] in [0,1]:
    A = (w_s*blur(student) + w_c) * centre + w_f*face, divided by its maximum (at least 1e-8)."""
    a = (np.float32(w_s) * blur(student, blur_sigma) + np.float32(w_c)) * centre[None] + np.float32(w_f) * face
    return (a / np.maximum(a.max(axis=(1, 2), keepdims=True), np.float32(1e-8))).astype(np.float32)


def attention(student_raw: np.ndarray, boxes: np.ndarray, scores: np.ndarray, p: Params = Params()) -> np.ndarray:
    """The whole fusion from the raw student output [N,1,224,224] (or [N,224,224]) and the
    decoded faces: what the attention graph computes, [N,size,size]."""
    s = student_map(student_raw, p.size)
    f = face_map(boxes, scores, p.size, p.size, p.face_k, p.face_threshold, p.top_k)
    return fuse(s, f, centre_prior(p.size, p.size, p.centre_sx, p.centre_sy), p.w_s, p.w_f, p.w_c, p.blur)


# -- attention_v2: a fixation readout on the student's features ----------------------------
#: The student's tensors the readout reads (ONNX names in salstudent_v1): encoder stages at
#: 1/4, 1/8 and 1/16 of the input, decoder stages at 1/16, 1/8 and 1/4 (all after their ReLU),
#: and the head's logit at 1/4, before the student's own upsampling and sigmoid.
READOUT_TENSORS = {
    "e1": "/e1/e1.1/e1.1.1/e1.1.1.2/Relu_output_0",  # [N,32,56,56]
    "e2": "/e2/e2.2/e2.2.1/e2.2.1.2/Relu_output_0",  # [N,48,28,28]
    "e3": "/e3/e3.3/e3.3.1/e3.3.1.2/Relu_output_0",  # [N,64,14,14]
    "d3": "/d3/d3.2/Relu_output_0",  # [N,48,14,14]
    "d2": "/d2/d2.1/d2.1.2/Relu_output_0",  # [N,32,28,28]
    "d1": "/d1/d1.1/d1.1.2/Relu_output_0",  # [N,16,56,56]
    "head": "/head/Conv_output_0",  # [N,1,56,56]
}
# their sides as a fraction of the input's: 1/4 (56), 1/8 (28), 1/16 (14)
READOUT_SCALE = {"e1": 4, "e2": 8, "e3": 16, "d3": 16, "d2": 8, "d1": 4, "head": 4}


@dataclass(frozen=True)
class Readout:
    """attention_v2's parameters. With f_k the student's tensors and F the face map:

        R(x) = sum_k up(w_k . f_k(x))
        L = blur(R(x) + bias) + log C + w_f * F                      (mirror False)
        L = blur((R(x) + flip(R(flip(x)))) / 2 + bias) + log C + w_f * F   (mirror True)
        map = exp(L - max(L))

    ``w_k . f_k`` a 1x1 projection to one channel, ``up`` a bilinear (half-pixel) resize to the
    working size, ``blur`` a Gaussian of sigma ``blur`` times the side with reflected edges,
    ``log C = -((x-0.5)/sx)^2/2 - ((y-0.5)/sy)^2/2`` a Gaussian centre prior's logarithm. L is a
    log-density of fixations up to a constant (fitted by maximum likelihood on the NUS Scene
    train split, scripts/fit_readout.py); the map is that density scaled to a peak of 1.
    ``mirror`` averages the readout of the picture and of its mirror image (flipped back): a
    second student pass that makes the map symmetric under mirroring, as the fit's data was;
    chosen on the train split's held-back photos (scripts/fit_readout.py reports both)."""

    weights: dict  # name -> tuple of floats, one per channel of READOUT_TENSORS[name]
    bias: float = 0.0
    blur: float = 0.04
    centre_sx: float = 0.25
    centre_sy: float = 0.2
    w_f: float = 0.0
    face_k: float = 0.5
    face_threshold: float = 0.5
    top_k: int = TOP_K
    size: int = WORK
    mirror: bool = False

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in ("bias", "blur", "centre_sx", "centre_sy", "w_f", "face_k",
                                            "face_threshold", "top_k", "size", "mirror")}
        d["weights"] = {k: [float(v) for v in self.weights[k]] for k in READOUT_TENSORS}
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Readout":
        if set(d.get("weights", {})) != set(READOUT_TENSORS):
            raise ValueError(f"readout weights must name exactly {sorted(READOUT_TENSORS)}")
        kw = {k: d[k] for k in ("bias", "blur", "centre_sx", "centre_sy", "w_f", "face_k", "face_threshold",
                                "top_k", "size", "mirror") if k in d}
        return cls(weights={k: tuple(float(x) for x in d["weights"][k]) for k in READOUT_TENSORS}, **kw)


def log_centre(h: int, w: int, sx: float, sy: float) -> np.ndarray:
    """[h,w] the logarithm of :func:`centre_prior` (0 at the centre)."""
    dx = (_grid(w) - np.float32(0.5)) / np.float32(sx)
    dy = (_grid(h) - np.float32(0.5)) / np.float32(sy)
    return ((dy * dy)[:, None] * np.float32(-0.5) + (dx * dx)[None, :] * np.float32(-0.5)).astype(np.float32)


def readout_sum(features: dict[str, np.ndarray], r: Readout) -> np.ndarray:
    """R: the student's tensors (READOUT_TENSORS names -> [N,C,h,w]) -> [N,S,S], the sum of the
    upsampled projections."""
    n, size = next(iter(features.values())).shape[0], r.size
    y = np.zeros((n, size, size), dtype=np.float32)
    for name in READOUT_TENSORS:
        f = features[name].astype(np.float32)
        z = np.einsum("nchw,c->nhw", f, np.asarray(r.weights[name], dtype=np.float32)).astype(np.float32)
        ry, rx = resize_matrix(size, z.shape[1]), resize_matrix(size, z.shape[2])
        y += np.matmul(np.matmul(ry, z), rx.T)
    return y


def readout_logits(features: dict[str, np.ndarray], r: Readout,
                   mirrored: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """L before the centre and face terms: blur(R + bias), or with ``r.mirror`` the mean of R and
    the mirror image's R flipped back (``mirrored``: the student's tensors of the flipped input)."""
    y = readout_sum(features, r)
    if r.mirror:
        if mirrored is None:
            raise ValueError("this readout averages the mirror image: pass its features (Components(features=True))")
        y = (y + readout_sum(mirrored, r)[:, :, ::-1]) * np.float32(0.5)
    return blur(y + np.float32(r.bias), r.blur)


def readout_map(features: dict[str, np.ndarray], boxes: np.ndarray, scores: np.ndarray, r: Readout,
                mirrored: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """What the attention_v2 graph computes: [N,S,S] in (0,1], peak 1 (``mirrored``: the
    features of the flipped input, needed when ``r.mirror``)."""
    size = r.size
    y = readout_logits(features, r, mirrored) + log_centre(size, size, r.centre_sx, r.centre_sy)[None]
    y = y + np.float32(r.w_f) * face_map(boxes, scores, size, size, r.face_k, r.face_threshold, r.top_k)
    return np.exp(y - y.max(axis=(1, 2), keepdims=True)).astype(np.float32)


def with_outputs(model_bytes: bytes, names) -> bytes:
    """An ONNX model (bytes) with these inner tensors added as float outputs."""
    import onnx

    m = onnx.load_from_string(model_bytes)
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return m.SerializeToString()


# -- the components, for fitting ----------------------------------------------------------
class Components:
    """Runs ``salstudent_v1`` and ``blazeface_short`` (both verified through the registry) on
    frames and returns the unfused cues, so the fusion parameters can be fitted in numpy::

        c = Components()           # size=112: the working size of the graph to reproduce
        out = c(frames)            # HxWx3 uint8 RGB arrays (any size) or av.VideoFrames
        out["student"]             # [N,112,112] S: pooled, min-max normalised, unblurred
        out["student_raw"]         # [N,224,224] the student's own output
        out["boxes"], out["scores"]  # [N,896,4] (cx, cy, w, h), [N,896]: every anchor
        F = face_map(out["boxes"], out["scores"], 112, 112, k=1.0, threshold=0.5)
        m = fuse(out["student"], F, centre_prior(112, 112, 0.22, 0.22), 1, 2, 1, blur_sigma=0.03)
        # m == attention(out["student_raw"], out["boxes"], out["scores"], Params())

    Frames are resized to 224x224 as the pipeline does (SaliencyModel.model_input, swscale).
    """

    def __init__(self, cache_dir: Path | None = None, threads: int | None = 1, size: int = WORK,
                 features: bool = False) -> None:
        self.size = size
        from .registry import get_spec, load_verified
        from .saliency import SaliencyModel, _import_ort

        self.student = SaliencyModel("salstudent_v1", device="cpu", cache_dir=cache_dir, threads=threads)
        ort = _import_ort()
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        self.face = ort.InferenceSession(load_verified(get_spec("blazeface_short"), cache_dir), so,
                                         providers=["CPUExecutionProvider"])
        self.features = None
        if features:  # the student again, with its inner tensors as outputs (for attention_v2)
            data = with_outputs(load_verified(get_spec("salstudent_v1"), cache_dir), READOUT_TENSORS.values())
            self.features = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Normalised input [N,3,224,224] (as the student gets it) -> the components (and, with
        ``features=True``, ``out["features"]``: READOUT_TENSORS name -> [N,C,h,w], and
        ``out["features_mirrored"]``, the same of the input flipped left to right)."""
        names = ["saliency_map"] + (list(READOUT_TENSORS.values()) if self.features is not None else [])
        sess = self.features if self.features is not None else self.student.session
        runs = [sess.run(names, {"input": x[i:i + 1]}) for i in range(len(x))]
        s = np.concatenate([r[0] for r in runs])
        boxes, scores = self.faces(x)
        out = {"student_raw": s[:, 0], "student": student_map(s, self.size), "boxes": boxes, "scores": scores}
        if self.features is not None:
            out["features"] = {k: np.concatenate([r[1 + j] for r in runs]) for j, k in enumerate(READOUT_TENSORS)}
            xm = np.ascontiguousarray(x[..., ::-1])
            mruns = [self.features.run(names[1:], {"input": xm[i:i + 1]}) for i in range(len(x))]
            out["features_mirrored"] = {k: np.concatenate([r[j] for r in mruns]) for j, k in enumerate(READOUT_TENSORS)}
        return out

    def faces(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The face detector alone on the normalised input: boxes [N,896,4] and scores [N,896]."""
        fi = face_input(x)
        reg, cls = zip(*(self.face.run(["regressors", "classificators"], {"input": fi[i:i + 1]})
                         for i in range(len(x))))
        return decode(np.concatenate(reg), np.concatenate(cls))

    def input(self, frames) -> np.ndarray:
        return self.student.preprocess(np.stack([self.student.model_input(f) for f in frames]))

    def __call__(self, frames) -> dict[str, np.ndarray]:
        return self.run(self.input(frames))
