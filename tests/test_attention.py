"""attention_v1 and attention_v2: the face cue (blazeface_short), the numpy references and the ONNX graphs."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from skimage import data

from vmaf_roi import attention as att
from vmaf_roi import registry
from vmaf_roi.errors import ModelError
from vmaf_roi.saliency import SaliencyModel

ROOT = Path(__file__).resolve().parents[1]

# Her face in skimage's astronaut (512x512), labelled by eye: chin to hairline, ear to ear,
# as fractions of the width and height (x0, y0, x1, y1).
ASTRONAUT_FACE = (170 / 512, 60 / 512, 280 / 512, 185 / 512)


def _builder():
    spec = importlib.util.spec_from_file_location("build_attention_model", ROOT / "scripts" / "build_attention_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _session(model_bytes: bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def comps():
    return att.Components()


@pytest.fixture(scope="module")
def photos():
    # real photos from scikit-image: one with a face (astronaut), three without (coffee, rocket, a cat)
    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "rocket": data.rocket(),
            "chelsea": data.chelsea()}


def _inside(x: float, y: float, box) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def test_anchors_follow_mediapipes_short_range_config():
    a = att.anchors()
    assert a.shape == (896, 2)
    assert np.allclose(a[0], [0.5 / 16, 0.5 / 16]) and np.allclose(a[1], a[0])  # 2 per cell at stride 8
    assert np.allclose(a[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(a[512], [0.5 / 8, 0.5 / 8]) and np.allclose(a[517], a[512]) and not np.allclose(a[518], a[512])
    assert np.allclose(a[-1], [7.5 / 8, 7.5 / 8])


def test_face_cue_finds_the_face_in_astronaut(comps, photos):
    out = comps([photos["astronaut"]])
    boxes, scores = out["boxes"][0], out["scores"][0]
    best = int(scores.argmax())
    assert scores[best] > 0.5
    cx, cy, w, h = boxes[best]
    assert _inside(cx, cy, ASTRONAUT_FACE)
    fw, fh = ASTRONAUT_FACE[2] - ASTRONAUT_FACE[0], ASTRONAUT_FACE[3] - ASTRONAUT_FACE[1]
    assert 0.5 * fw < w < 1.5 * fw and 0.5 * fh < h < 1.5 * fh, (w, h)
    # every anchor above the threshold is on her face (no NMS, but no second face either)
    for i in np.flatnonzero(scores > 0.5):
        assert _inside(boxes[i, 0], boxes[i, 1], ASTRONAUT_FACE), boxes[i]
    for size in (att.WORK, 56):
        f = att.face_map(out["boxes"], out["scores"], size, size)[0]
        r, c = np.unravel_index(int(f.argmax()), f.shape)
        assert _inside((c + 0.5) / size, (r + 0.5) / size, ASTRONAUT_FACE), (size, r, c)
        assert f.max() > 0.5
        # the map is local (a Gaussian of sigma = the box size): the bottom corners, two to three
        # sigmas away, get under 1% of the peak
        assert f[-1, 0] < 0.01 * f.max() and f[-1, -1] < 0.01 * f.max()


def test_face_cue_finds_nothing_in_faceless_photos(comps, photos):
    out = comps([photos["coffee"], photos["rocket"], photos["chelsea"]])
    assert out["scores"].max() < 0.5, out["scores"].max(axis=1)
    assert not att.face_map(out["boxes"], out["scores"]).any()
    # with the threshold lowered below the best score the same anchors do draw: the gate decides
    low = float(out["scores"].max()) - 0.01
    assert att.face_map(out["boxes"], out["scores"], threshold=low).max() > 0


def test_attention_graph_equals_the_numpy_reference(comps, photos):
    """The bundled attention_v1, one batch of four real photos, against attention.attention()
    with the registry's parameters (the builder's defaults)."""
    spec = registry.get_spec("attention_v1")
    sess = _session(registry.load_verified(spec))
    x = comps.input(list(photos.values()))
    y = sess.run(["saliency_map"], {"input": x})[0]
    assert y.shape == (4, 1, att.WORK, att.WORK)
    c = comps.run(x)
    ref = att.attention(c["student_raw"], c["boxes"], c["scores"], att.Params())
    assert np.abs(y[:, 0] - ref).max() < 1e-4
    assert np.allclose(y.max(axis=(1, 2, 3)), 1.0) and y.min() >= 0
    # the face shows: on the astronaut, the face cue's peak is on her face, and the fused map is
    # higher there than the same fusion without the face cue (faces are added outside the centre gate)
    f = att.face_map(c["boxes"], c["scores"], att.WORK, att.WORK, att.Params().face_k, att.Params().face_threshold)
    r, col = np.unravel_index(int(f[0].argmax()), f.shape[1:])
    assert _inside((col + 0.5) / att.WORK, (r + 0.5) / att.WORK, ASTRONAUT_FACE)
    no_face = att.attention(c["student_raw"], c["boxes"], np.zeros_like(c["scores"]), att.Params())
    assert y[0, 0, r, col] > no_face[0, r, col] + 0.1
    # one at a time gives the same maps as the batch (dynamic batch)
    for i in range(len(x)):
        assert np.abs(sess.run(["saliency_map"], {"input": x[i:i + 1]})[0] - y[i:i + 1]).max() < 1e-5


@pytest.mark.parametrize("p", [
    att.Params(w_s=0.5, w_f=3.0, w_c=0.25, centre_sx=0.3, centre_sy=0.15, blur=0.0, face_k=0.7,
               face_threshold=0.3, top_k=4, size=56),
    att.Params(w_s=1.0, w_f=1.0, w_c=0.0, blur=0.05, face_k=1.5, face_threshold=0.5, top_k=32, size=224),
])
def test_built_graph_with_other_parameters_and_its_components(comps, photos, p):
    model = _builder().build(p, components=True)
    sess = _session(model.SerializeToString())
    x = comps.input([photos["astronaut"], photos["coffee"]])
    names = ["saliency_map", "student_map", "face_map", "face_boxes", "face_scores"]
    y = dict(zip(names, sess.run(names, {"input": x})))
    c = comps.run(x)
    s = att.student_map(c["student_raw"], p.size)
    f = att.face_map(c["boxes"], c["scores"], p.size, p.size, p.face_k, p.face_threshold, p.top_k)
    assert np.abs(y["student_map"][:, 0] - s).max() < 1e-4
    assert np.abs(y["face_map"][:, 0] - f).max() < 1e-4
    assert np.abs(y["face_boxes"] - c["boxes"]).max() < 1e-4 and np.abs(y["face_scores"] - c["scores"]).max() < 1e-4
    ref = att.fuse(s, f, att.centre_prior(p.size, p.size, p.centre_sx, p.centre_sy), p.w_s, p.w_f, p.w_c, p.blur)
    assert np.abs(y["saliency_map"][:, 0] - ref).max() < 1e-4
    assert np.abs(ref - att.attention(c["student_raw"], c["boxes"], c["scores"], p)).max() == 0
    # and the parameters matter: the default parameters at the same size give other maps
    default = att.attention(c["student_raw"], c["boxes"], c["scores"], dataclasses.replace(att.Params(), size=p.size))
    assert np.abs(default - ref).max() > 0.05


def test_builder_reproduces_the_bundled_file():
    data_ = _builder().build(att.Params()).SerializeToString()
    assert registry.sha256_bytes(data_) == registry.get_spec("attention_v1").sha256


def _readout() -> att.Readout:
    return att.Readout.from_json(json.loads((ROOT / "scripts" / "attention_v2_readout.json").read_text())["readout"])


@pytest.fixture(scope="module")
def feature_comps():
    return att.Components(features=True)


def test_attention_v2_graph_equals_the_numpy_reference(feature_comps, photos):
    """The bundled attention_v2, one batch of four real photos, against attention.readout_map()
    with the fitted readout (scripts/attention_v2_readout.json)."""
    sess = _session(registry.load_verified(registry.get_spec("attention_v2")))
    x = feature_comps.input(list(photos.values()))
    y = sess.run(["saliency_map"], {"input": x})[0]
    assert y.shape == (4, 1, att.WORK, att.WORK)
    c = feature_comps.run(x)
    assert {k: v.shape[1] for k, v in c["features"].items()} == {
        "e1": 32, "e2": 48, "e3": 64, "d3": 48, "d2": 32, "d1": 16, "head": 1}
    r = _readout()
    assert r.mirror
    ref = att.readout_map(c["features"], c["boxes"], c["scores"], r, c["features_mirrored"])
    assert np.abs(y[:, 0] - ref).max() < 1e-4
    assert np.allclose(y.max(axis=(1, 2, 3)), 1.0) and y.min() > 0
    # the mirror average: a mirrored picture gives the mirrored readout (the face term aside,
    # which is detected on each picture as it is)
    xm = np.ascontiguousarray(x[..., ::-1])
    cm = feature_comps.run(xm)
    a = att.readout_logits(c["features"], r, c["features_mirrored"])
    b = att.readout_logits(cm["features"], r, cm["features_mirrored"])
    assert np.abs(a - b[:, :, ::-1]).max() < 1e-4
    with pytest.raises(ValueError, match="mirror image"):
        att.readout_map(c["features"], c["boxes"], c["scores"], r)
    # the features' student is the student: its first output is salstudent_v1's own map
    assert np.abs(c["student_raw"] - att.Components().run(x)["student_raw"]).max() < 1e-6
    for i in range(len(x)):  # dynamic batch
        assert np.abs(sess.run(["saliency_map"], {"input": x[i:i + 1]})[0] - y[i:i + 1]).max() < 1e-5
    # the batch dimension is denoted DATA_BATCH: fixed to 1 as the filter and the encode run it,
    # the graph gives the same maps a photo at a time
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.add_free_dimension_override_by_denotation("DATA_BATCH", 1)
    one = ort.InferenceSession(registry.load_verified(registry.get_spec("attention_v2")), so,
                               providers=["CPUExecutionProvider"])
    assert one.get_inputs()[0].shape == [1, 3, att.SIZE, att.SIZE]
    for i in range(len(x)):
        assert np.abs(one.run(["saliency_map"], {"input": x[i:i + 1]})[0] - y[i:i + 1]).max() < 1e-5
    with pytest.raises(Exception, match="[Ii]nvalid|dimension"):
        one.run(["saliency_map"], {"input": x[:2]})


def test_blur_matrix_is_the_blur():
    """The builder computes attention_v2's blur as a matrix on each side: the same as the
    reference's padded convolution (reflected edges), and the identity without a blur."""
    m = np.random.default_rng(3).random((2, 40, 56), dtype=np.float32)
    by, bx = att.blur_matrix(40, 0.04), att.blur_matrix(56, 0.04)
    assert np.abs(np.einsum("ij,njk,lk->nil", by, m, bx) - att.blur(m, 0.04)).max() < 1e-6
    assert np.array_equal(att.blur_matrix(7, 0.0), np.eye(7))
    with pytest.raises(ValueError, match="does not fit"):
        att.blur_matrix(4, 0.5)


def test_attention_v2_built_with_other_readouts(feature_comps, photos):
    """Random weights, no blur, other sigmas and a strong face weight: graph == reference, and
    the face weight lifts the astronaut's face."""
    rng = np.random.default_rng(5)
    base = _readout()
    w = {k: tuple(rng.normal(0, 0.05, len(v)).tolist()) for k, v in base.weights.items()}
    r = dataclasses.replace(base, weights=w, blur=0.0, centre_sx=0.4, centre_sy=0.1, w_f=3.0, size=56, mirror=False)
    sess = _session(_builder().build(r).SerializeToString())
    x = feature_comps.input([photos["astronaut"], photos["coffee"]])
    y = sess.run(["saliency_map"], {"input": x})[0][:, 0]
    c = feature_comps.run(x)
    ref = att.readout_map(c["features"], c["boxes"], c["scores"], r)
    assert y.shape == (2, 56, 56) and np.abs(y - ref).max() < 1e-4
    no_face = att.readout_map(c["features"], c["boxes"], np.zeros_like(c["scores"]), r)
    f = att.face_map(c["boxes"], c["scores"], 56, 56, r.face_k, r.face_threshold)
    i, j = np.unravel_index(int(f[0].argmax()), f.shape[1:])
    assert _inside((j + 0.5) / 56, (i + 0.5) / 56, ASTRONAUT_FACE)
    assert ref[0, i, j] > 5 * no_face[0, i, j]
    assert np.abs(ref[1] - no_face[1]).max() == 0  # no face in the coffee: the face term adds nothing


def test_attention_v2_builder_reproduces_the_bundled_file_and_the_readout_round_trips():
    r = _readout()
    assert registry.sha256_bytes(_builder().build(r).SerializeToString()) == registry.get_spec("attention_v2").sha256
    assert att.Readout.from_json(json.loads(json.dumps(r.to_json()))) == r
    assert sum(len(v) for v in r.weights.values()) == 241
    bad = r.to_json()
    del bad["weights"]["head"]
    with pytest.raises(ValueError, match="readout weights must name exactly"):
        att.Readout.from_json(bad)
    with pytest.raises(SystemExit, match="only for the attention_v1 fusion"):
        _builder().build(r, components=True)


def test_log_centre_is_the_log_of_the_centre_prior():
    assert np.allclose(att.log_centre(9, 15, 0.2, 0.3), np.log(att.centre_prior(9, 15, 0.2, 0.3)), atol=1e-5)


def test_the_fits_torch_model_computes_the_reference(feature_comps, photos):
    """scripts/fit_readout.py fits a torch model; the graph is built from the numpy reference:
    the two compute the same log-density (up to the constant the exponent's shift removes)."""
    torch = pytest.importorskip("torch", reason="torch (the train extra) is not installed")
    spec = importlib.util.spec_from_file_location("fit_readout", ROOT / "scripts" / "fit_readout.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = dataclasses.replace(_readout(), mirror=False)  # the fit sees pictures and mirrors as separate rows
    x = feature_comps.input([photos["astronaut"], photos["chelsea"]])
    c = feature_comps.run(x)
    tf = {k: torch.from_numpy(v.astype(np.float32)) for k, v in c["features"].items()}
    model = mod.make_model(tf, r.face_k, r.face_threshold, r.blur)
    with torch.no_grad():
        for k in att.READOUT_TENSORS:
            model.w[k].copy_(torch.tensor(r.weights[k]))
        model.bias.fill_(r.bias)
        model.lsx.fill_(float(np.log(r.centre_sx)))
        model.lsy.fill_(float(np.log(r.centre_sy)))
        model.w_f.fill_(r.w_f)
        face = torch.from_numpy(att.face_map(c["boxes"], c["scores"], att.WORK, att.WORK, r.face_k, r.face_threshold))
        lg = model(tf, face).numpy()
    got = np.exp(lg - lg.max(axis=(1, 2), keepdims=True))
    assert np.abs(got - att.readout_map(c["features"], c["boxes"], c["scores"], r)).max() < 1e-4


def test_fuse_pieces():
    c = att.centre_prior(9, 15, 0.2, 0.3)
    assert c.shape == (9, 15) and c[4, 7] == c.max() and np.allclose(c, c[::-1, ::-1])
    k = att.gaussian_kernel(2.0)
    assert len(k) == 13 and abs(k.sum() - 1) < 1e-6
    m = np.zeros((1, 20, 20), np.float32)
    m[0, 10, 10] = 1
    b = att.blur(m, 0.1)
    assert abs(b.sum() - 1) < 1e-5 and b[0, 10, 10] == b.max() < 1
    flat = att.fuse(np.zeros((1, 8, 8), np.float32), np.zeros((1, 8, 8), np.float32), np.zeros((8, 8), np.float32),
                    1, 1, 1)
    assert not flat.any() and np.isfinite(flat).all()


def test_registry_entries_verify_and_the_component_is_refused_as_saliency():
    reg = registry.load_registry()
    face, a = reg["blazeface_short"], reg["attention_v1"]
    for spec in (face, a, reg["attention_v2"]):
        assert registry.status(spec) == "ok" and spec.bundled and spec.license == "Apache-2.0"
        assert len(registry.load_verified(spec)) == spec.size_bytes
        for lf in spec.license_files:
            assert (registry._package_model_dir() / lf).is_file(), lf
    assert face.component and not a.component and not a.placeholder
    assert registry.DEFAULT_MODEL == "attention_v2"
    with pytest.raises(ModelError, match="not a saliency model"):
        SaliencyModel("blazeface_short", device="cpu")
    from vmaf_roi.ffmpeg_filter import salroi_options

    with pytest.raises(ModelError, match="not a saliency model"):
        salroi_options(face, face.location())
    m = SaliencyModel("attention_v1", device="cpu", threads=1)
    assert m.batchable and m.input_size == (224, 224)
    maps = m.maps([data.astronaut(), data.coffee()])
    assert maps[0].shape == (512, 512) and maps[1].shape == (400, 600)
    assert all(0 <= mm.min() and mm.max() <= 1 for mm in maps)


def test_face_detector_io_contract():
    spec = registry.get_spec("blazeface_short")
    sess = _session(registry.load_verified(spec))
    (i,) = sess.get_inputs()
    assert i.name == "input" and i.shape == [1, 3, 128, 128]
    assert {o.name: o.shape for o in sess.get_outputs()} == {"regressors": [1, 896, 16], "classificators": [1, 896, 1]}


@pytest.mark.parametrize("model_id", ["attention_v1", "attention_v2"])
def test_salroi_filter_gives_the_same_maps(tmp_path, model_id):
    """The C filter (model mode) runs the attention graphs without changes: on the same RGB
    pixels its 8-bit maps (112x112, not the 224x224 input size) are the package's."""
    import os
    import subprocess

    from PIL import Image

    from vmaf_roi.ffmpeg_filter import ort_library, salroi_options

    ff = os.environ.get("VMAF_ROI_SALROI_FFMPEG")
    if not ff:
        pytest.skip("no salroi FFmpeg ($VMAF_ROI_SALROI_FFMPEG unset; scripts/test.sh sets it)")
    spec = registry.get_spec(model_id)
    frames = [np.asarray(Image.fromarray(im).resize((224, 224), Image.BILINEAR))
              for im in (data.astronaut(), data.coffee(), data.chelsea(), data.rocket())]
    raw, maps = tmp_path / "in.rgb", tmp_path / "maps.gray"
    raw.write_bytes(np.stack(frames).tobytes())
    vf = salroi_options(spec, spec.location(), ort_lib=ort_library()) + f":stride=1:threads=1:maps={maps}"
    r = subprocess.run([ff, "-hide_banner", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                        "-video_size", "224x224", "-framerate", "25", "-i", str(raw), "-vf", vf, "-f", "null", "-"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.fromfile(maps, np.uint8)
    assert got.size == 4 * att.WORK * att.WORK
    model = SaliencyModel(spec, device="cpu", threads=1)
    want = np.rint(model.predict(np.stack(frames)) * 255).astype(np.uint8)
    diff = np.abs(got.reshape(want.shape).astype(int) - want.astype(int))
    assert diff.max() <= 1 and np.mean(diff == 0) >= 0.999
