#!/usr/bin/env python3
"""Build the attention graph: ONE ONNX model fusing the student's object saliency, a face cue and
a centre prior, with salstudent_v1's input contract.

    input         float32 [N,3,224,224], RGB x/255 then ImageNet mean/std (as salstudent_v1)
    saliency_map  float32 [N,1,S,S] in [0,1], S the working size (--size, default 112)

Inside (src/vmaf_roi/attention.py is the numpy reference of every step; tests/test_attention.py
holds the two together):

    S = minmax(avgpool(salstudent_v1(input)))               pooled to SxS, per sample to [0,1]
    x_f = resize_128(input * 2 std + (2 mean - 1))          back to RGB in [-1,1], Resize
                                                            (linear, half-pixel)
    boxes, scores = decode(blazeface_short(x_f))            896 anchors, no NMS
    F = max over the top-K anchors of score * [score > t] * Gaussian(box centre, k * box size)
    C = Gaussian(image centre, sigma sx * W, sy * H)        a constant
    A = (w_s * blur(S) + w_c) * C + w_f * F                 blur: separable Conv, reflected edges
    saliency_map = A / max(max(A), 1e-8)

The batch dimension stays dynamic (the face detector's batch-1 Reshapes are rewritten to copy
the batch dimension). Both source models are read through the registry (sha256 checked).

    .venv/bin/python scripts/build_attention_model.py                      # model/attention_v1.onnx
    .venv/bin/python scripts/build_attention_model.py --w-f 3 --face-k 0.8 -o /tmp/a.onnx
    .venv/bin/python scripts/build_attention_model.py --components -o /tmp/att_parts.onnx

--components adds the outputs student_map ([N,1,S,S] S, unblurred), face_map ([N,1,S,S] F),
face_boxes ([N,896,4] cx, cy, w, h normalised) and face_scores ([N,896]).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vmaf_roi import attention as att  # noqa: E402
from vmaf_roi.registry import get_spec, load_verified  # noqa: E402
from vmaf_roi.saliency import BATCH_DENOTATION  # noqa: E402

OPSET = 17
IR_VERSION = 8  # as salstudent_v1; ONNX Runtime 1.2x reads it


def _prefixed(model: onnx.ModelProto, prefix: str, keep: dict[str, str]) -> tuple[list, list]:
    """The graph's nodes and initializers with every tensor and node name prefixed, except the
    names in ``keep`` (old -> new)."""
    g = model.graph

    def ren(name: str) -> str:
        if not name:
            return name
        return keep.get(name, prefix + name)

    nodes = []
    for n in g.node:
        m = onnx.NodeProto()
        m.CopyFrom(n)
        m.name = prefix + (n.name or n.output[0])
        m.input[:] = [ren(i) for i in n.input]
        m.output[:] = [ren(o) for o in n.output]
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
            raise SystemExit(f"{n.op_type} with a subgraph: not supported")
        nodes.append(m)
    inits = []
    for t in g.initializer:
        u = onnx.TensorProto()
        u.CopyFrom(t)
        u.name = ren(t.name)
        inits.append(u)
    return nodes, inits


def _live(nodes: list, outputs: list[str]) -> list:
    """The nodes the outputs depend on, in their order (attention_v2 reads the student's inner
    tensors, not its upsampled, sigmoid output: those nodes are dropped)."""
    need, keep = set(outputs), []
    for n in reversed(nodes):
        if any(o in need for o in n.output):
            keep.append(n)
            need.update(i for i in n.input if i)
    return keep[::-1]


def _dynamic_batch_reshapes(nodes: list, inits: list) -> None:
    """Reshape targets with a literal batch of 1 -> 0 (copy the input's batch dimension)."""
    by_name = {t.name: t for t in inits}
    for n in nodes:
        if n.op_type != "Reshape":
            continue
        t = by_name[n.input[1]]
        name = t.name + "/batch"
        if name not in by_name:
            shape = numpy_helper.to_array(t).copy()
            if shape[0] != 1:
                raise SystemExit(f"Reshape {n.name}: target {shape.tolist()} does not start with the batch 1")
            shape[0] = 0
            by_name[name] = numpy_helper.from_array(shape.astype(np.int64), name)
            inits.append(by_name[name])
        n.input[1] = name
    used = {i for n in nodes for i in n.input}
    inits[:] = [t for t in inits if t.name in used]


def build(p: att.Params | att.Readout, components: bool = False) -> onnx.ModelProto:
    """attention_v1's graph for :class:`Params`, attention_v2's for :class:`Readout`."""
    if components and isinstance(p, att.Readout):
        raise SystemExit("--components: only for the attention_v1 fusion")
    h = w = p.size
    if att.SIZE % p.size:
        raise SystemExit(f"working size {p.size} does not divide {att.SIZE}")
    student = onnx.load_from_string(load_verified(get_spec("salstudent_v1")))
    face = onnx.load_from_string(load_verified(get_spec("blazeface_short")))
    mirror = isinstance(p, att.Readout) and p.mirror
    # with the mirror image, the student runs once on a batch of 2N: the pictures, then the same
    # pictures flipped left to right (one pass instead of two: the same numbers, fewer kernels)
    s_nodes, s_inits = _prefixed(student, "student/", {"input": "student/input2" if mirror else "input",
                                                       "saliency_map": "student/raw"})
    if mirror:
        s_nodes[:0] = [
            helper.make_node("Slice", ["input", "mirror/start", "mirror/end", "mirror/axis", "mirror/step"],
                             ["mirror/flipped"], name="mirror/flip"),
            helper.make_node("Concat", ["input", "mirror/flipped"], ["student/input2"], axis=0, name="mirror/batch"),
        ]
        s_inits += [numpy_helper.from_array(np.asarray(v, dtype=np.int64), n) for n, v in (
            ("mirror/start", [-1]), ("mirror/end", [-(2 ** 63)]), ("mirror/axis", [3]), ("mirror/step", [-1]))]
    f_nodes, f_inits = _prefixed(face, "face/", {"input": "face/input", "regressors": "face/regressors",
                                                 "classificators": "face/classificators"})
    _dynamic_batch_reshapes(f_nodes, f_inits)

    consts: list[onnx.TensorProto] = []

    def c(name: str, value, dtype=np.float32) -> str:
        consts.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    N = helper.make_node
    nodes: list[onnx.NodeProto] = []
    # -- face detector input: undo the ImageNet normalisation to [-1,1], resize to 128 --------
    nodes += [
        N("Mul", ["input", c("pre/scale", (2.0 * att.STD).reshape(1, 3, 1, 1))], ["pre/scaled"], name="pre/mul"),
        N("Add", ["pre/scaled", c("pre/shift", (2.0 * att.MEAN - 1.0).reshape(1, 3, 1, 1))], ["pre/rgb"], name="pre/add"),
        N("Shape", ["input"], ["pre/shape"], end=2, name="pre/shape"),
        N("Concat", ["pre/shape", c("pre/hw", [att.FACE_SIZE, att.FACE_SIZE], np.int64)], ["pre/sizes"], axis=0,
          name="pre/sizes"),
        N("Resize", ["pre/rgb", "", "", "pre/sizes"], ["face/input"], mode="linear",
          coordinate_transformation_mode="half_pixel", name="pre/resize"),
    ]
    # -- decode: scores [N,896], boxes [N,896] x 4 ----------------------------------------
    a = att.anchors()
    nodes += [
        N("Squeeze", ["face/classificators", c("dec/axis2", [2], np.int64)], ["dec/logit"], name="dec/squeeze"),
        N("Clip", ["dec/logit", c("dec/lo", -100.0), c("dec/hi", 100.0)], ["dec/logit_c"], name="dec/clip"),
        N("Sigmoid", ["dec/logit_c"], ["dec/scores"], name="dec/sigmoid"),
    ]
    for j, part in enumerate(("cx", "cy", "bw", "bh")):
        nodes.append(N("Gather", ["face/regressors", c(f"dec/i{j}", j, np.int64)], [f"dec/r{j}"], axis=2,
                       name=f"dec/gather{j}"))
        nodes.append(N("Div", [f"dec/r{j}", c(f"dec/d{j}", float(att.FACE_SIZE))],
                       [f"dec/{part}" if j >= 2 else f"dec/o{j}"], name=f"dec/div{j}"))
        if j < 2:
            nodes.append(N("Add", [c(f"dec/anchor{j}", a[:, j]), f"dec/o{j}"], [f"dec/{part}"], name=f"dec/add{j}"))
    # -- face map: top K anchors, Gaussians, max -------------------------------------------
    nodes += [
        N("TopK", ["dec/scores", c("fm/k", [p.top_k], np.int64)], ["fm/s", "fm/idx"], axis=1, largest=1, sorted=1,
          name="fm/topk"),
        N("Greater", ["fm/s", c("fm/thr", p.face_threshold)], ["fm/on"], name="fm/greater"),
        N("Cast", ["fm/on"], ["fm/onf"], to=TensorProto.FLOAT, name="fm/cast"),
        N("Mul", ["fm/s", "fm/onf"], ["fm/wt2"], name="fm/weight"),
        N("Unsqueeze", ["fm/wt2", c("fm/axes23", [2, 3], np.int64)], ["fm/wt"], name="fm/unsq_w"),
    ]
    for part in ("cx", "cy", "bw", "bh"):
        nodes += [
            N("GatherElements", [f"dec/{part}", "fm/idx"], [f"fm/{part}2"], axis=1, name=f"fm/gather_{part}"),
            N("Unsqueeze", [f"fm/{part}2", "fm/axes23"], [f"fm/{part}"], name=f"fm/unsq_{part}"),
        ]
    grid_x = att._grid(w).reshape(1, 1, 1, w)
    grid_y = att._grid(h).reshape(1, 1, h, 1)
    for ax, ctr, size, grid in (("x", "cx", "bw", grid_x), ("y", "cy", "bh", grid_y)):
        nodes += [
            N("Abs", [f"fm/{size}"], [f"fm/{ax}abs"], name=f"fm/{ax}abs"),
            N("Mul", [f"fm/{ax}abs", c(f"fm/{ax}k", p.face_k)], [f"fm/{ax}ks"], name=f"fm/{ax}k"),
            N("Max", [f"fm/{ax}ks", c(f"fm/{ax}eps", 1e-4)], [f"fm/{ax}sig"], name=f"fm/{ax}sig"),
            N("Sub", [c(f"fm/grid_{ax}", grid), f"fm/{ctr}"], [f"fm/{ax}diff"], name=f"fm/{ax}sub"),
            N("Div", [f"fm/{ax}diff", f"fm/{ax}sig"], [f"fm/{ax}d"], name=f"fm/{ax}div"),
            N("Mul", [f"fm/{ax}d", f"fm/{ax}d"], [f"fm/{ax}d2"], name=f"fm/{ax}sq"),
            N("Mul", [f"fm/{ax}d2", c(f"fm/{ax}half", -0.5)], [f"fm/{ax}e"], name=f"fm/{ax}half"),
            N("Exp", [f"fm/{ax}e"], [f"fm/g{ax}"], name=f"fm/{ax}exp"),
        ]
    nodes += [
        N("Mul", ["fm/gx", "fm/gy"], ["fm/g"], name="fm/gxy"),
        N("Mul", ["fm/g", "fm/wt"], ["fm/gw"], name="fm/gw"),
        N("ReduceMax", ["fm/gw"], ["face_map"], axes=[1], keepdims=1, name="fm/max"),
    ]
    if isinstance(p, att.Readout):
        nodes += _readout_nodes(p, c, h, w)
    else:
        nodes += _fusion_nodes(p, c, h, w)

    outputs = [helper.make_tensor_value_info("saliency_map", TensorProto.FLOAT, ["N", 1, h, w])]
    if components:
        nodes += [
            N("Unsqueeze", [f"dec/{part}", c("cp/axis2", [2], np.int64) if part == "cx" else "cp/axis2"],
              [f"cp/{part}"], name=f"cp/unsq_{part}")
            for part in ("cx", "cy", "bw", "bh")
        ]
        nodes.append(N("Concat", [f"cp/{part}" for part in ("cx", "cy", "bw", "bh")], ["face_boxes"], axis=2,
                       name="cp/boxes"))
        nodes.append(N("Identity", ["dec/scores"], ["face_scores"], name="cp/scores"))
        outputs += [
            helper.make_tensor_value_info("student_map", TensorProto.FLOAT, ["N", 1, h, w]),
            helper.make_tensor_value_info("face_map", TensorProto.FLOAT, ["N", 1, h, w]),
            helper.make_tensor_value_info("face_boxes", TensorProto.FLOAT, ["N", 896, 4]),
            helper.make_tensor_value_info("face_scores", TensorProto.FLOAT, ["N", 896]),
        ]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, att.SIZE, att.SIZE])
    if isinstance(p, att.Readout):
        # the batch dimension denoted DATA_BATCH: a session that runs one frame at a time fixes
        # it to 1 (ONNX Runtime's free dimension override by denotation; the salroi filter and
        # the encode do), and the shapes that follow from it fold into constants
        for v in [inp] + outputs:
            v.type.tensor_type.shape.dim[0].denotation = BATCH_DENOTATION
    all_nodes = _live(s_nodes + nodes[:5] + f_nodes + nodes[5:], [o.name for o in outputs])
    used = {i for n in all_nodes for i in n.input}
    graph = helper.make_graph(all_nodes, "attention", [inp], outputs,
                              [t for t in s_inits + f_inits + consts if t.name in used])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="vmaf-roi scripts/build_attention_model.py")
    model.doc_string = (f"attention: salstudent_v1 + blazeface_short + centre prior; {p}" if isinstance(p, att.Params)
                        else "attention_v2: a fixation readout of salstudent_v1's features + log centre prior + "
                             "blazeface_short faces (scripts/attention_v2_readout.json)")
    onnx.checker.check_model(model, full_check=True)
    return model


def _fusion_nodes(p: att.Params, c, h: int, w: int) -> list:
    """attention_v1: the student's output pooled, min-max normalised, blurred, gated by the
    centre prior on a floor, plus the weighted face map, divided by its maximum."""
    N = helper.make_node
    nodes: list[onnx.NodeProto] = []
    # -- student: pooled to the working size, min-max per sample, blur -----------------------
    raw = "student/raw"
    if p.size != att.SIZE:
        f = att.SIZE // p.size
        nodes.append(N("AveragePool", [raw], ["st/pooled"], kernel_shape=[f, f], strides=[f, f], name="st/pool"))
        raw = "st/pooled"
    nodes += [
        N("ReduceMin", [raw], ["st/lo"], axes=[1, 2, 3], keepdims=1, name="st/min"),
        N("ReduceMax", [raw], ["st/hi"], axes=[1, 2, 3], keepdims=1, name="st/max"),
        N("Sub", ["st/hi", "st/lo"], ["st/rng0"], name="st/rng0"),
        N("Max", ["st/rng0", c("st/eps", 1e-8)], ["st/rng"], name="st/rng"),
        N("Sub", [raw, "st/lo"], ["st/num"], name="st/num"),
        N("Div", ["st/num", "st/rng"], ["student_map"], name="st/norm"),
    ]
    blurred = "student_map"
    if p.blur > 0:
        nodes += _blur_nodes("student_map", "st/blurred", p.blur, h, w, c, "st")
        blurred = "st/blurred"
    # -- fusion -------------------------------------------------------------------------
    nodes += [
        N("Mul", [blurred, c("fu/ws", p.w_s)], ["fu/s"], name="fu/ws"),
        N("Add", ["fu/s", c("fu/wc", p.w_c)], ["fu/floor"], name="fu/wc"),
        N("Mul", ["fu/floor", c("fu/centre", att.centre_prior(h, w, p.centre_sx, p.centre_sy).reshape(1, 1, h, w))],
          ["fu/gated"], name="fu/gate"),
        N("Mul", ["face_map", c("fu/wf", p.w_f)], ["fu/f"], name="fu/wf"),
        N("Add", ["fu/gated", "fu/f"], ["fu/a"], name="fu/add_f"),
        N("ReduceMax", ["fu/a"], ["fu/amax0"], axes=[1, 2, 3], keepdims=1, name="fu/max"),
        N("Max", ["fu/amax0", c("fu/eps", 1e-8)], ["fu/amax"], name="fu/guard"),
        N("Div", ["fu/a", "fu/amax"], ["saliency_map"], name="fu/norm"),
    ]
    return nodes


def _blur_nodes(src: str, dst: str, sigma: float, h: int, w: int, c, prefix: str) -> list:
    """Separable Gaussian blur (sigma a fraction of each side), reflected edges."""
    N = helper.make_node
    kx, ky = att.gaussian_kernel(sigma * w), att.gaussian_kernel(sigma * h)
    rx, ry = len(kx) // 2, len(ky) // 2
    return [
        N("Pad", [src, c(f"{prefix}/pads", [0, 0, ry, rx, 0, 0, ry, rx], np.int64)], [f"{prefix}/padded"],
          mode="reflect", name=f"{prefix}/pad"),
        N("Conv", [f"{prefix}/padded", c(f"{prefix}/kx", kx.reshape(1, 1, 1, -1))], [f"{prefix}/bx"],
          name=f"{prefix}/blur_x"),
        N("Conv", [f"{prefix}/bx", c(f"{prefix}/ky", ky.reshape(1, 1, -1, 1))], [dst], name=f"{prefix}/blur_y"),
    ]


def _readout_nodes(r: att.Readout, c, h: int, w: int) -> list:
    """attention_v2: a 1x1 projection of each of the student's READOUT_TENSORS, resized to the
    working size and summed, plus the bias, blurred, plus the log centre prior and the weighted
    face map: L; then exp(L - max L).

    Everything up to the blur is linear, so it is computed as such. The tensors of one size are
    projected and summed (three sizes, not seven terms); with the mirror image, its half of the
    batch is flipped back and added there. Each side's resize, blur and the mirror mean are one
    matrix (:func:`attention.resize_matrix`, :func:`attention.blur_matrix`): per size
    ``Ry @ z @ Rx.T``, the three sizes' rows stacked so that one MatMul sums them, and the blurred
    bias a constant added with the log centre prior. The same map as resizing every term and
    blurring their sum, to float rounding."""
    N = helper.make_node
    nodes: list[onnx.NodeProto] = []
    groups: dict[int, list[str]] = {}
    for k in att.READOUT_TENSORS:
        groups.setdefault(att.READOUT_SCALE[k], []).append(k)
    if r.mirror:
        nodes += [
            N("Shape", ["input"], ["rd/n"], start=0, end=1, name="rd/n"),
            N("Concat", ["rd/n", c("rd/m1", [-1], np.int64)], ["rd/mstart"], axis=0, name="rd/mstart"),
        ]
    bx, by = att.blur_matrix(w, r.blur), att.blur_matrix(h, r.blur)
    half = 0.5 if r.mirror else 1.0
    cols, rows = [], []
    for scale, ks in sorted(groups.items()):
        g, s = f"rd/s{scale}", att.SIZE // scale
        for k in ks:
            wk = c(f"rd/{k}/w", np.asarray(r.weights[k], dtype=np.float32).reshape(1, -1, 1, 1))
            nodes.append(N("Conv", ["student/" + att.READOUT_TENSORS[k], wk], [f"rd/{k}/z"], name=f"rd/{k}/proj"))
        nodes.append(N("Sum", [f"rd/{k}/z" for k in ks], [f"{g}/z"], name=f"{g}/sum"))
        z = f"{g}/z"
        if r.mirror:  # [2N,1,s,s]: the pictures' half plus the mirror images' half flipped back
            nodes += [
                N("Slice", [z, c(f"{g}/zero", [0], np.int64), "rd/n", c(f"{g}/axis0", [0], np.int64)], [f"{g}/a"],
                  name=f"{g}/pictures"),
                N("Slice", [z, "rd/mstart", c(f"{g}/mend", [2 ** 63 - 1, -(2 ** 63)], np.int64),
                            c(f"{g}/maxes", [0, 3], np.int64), c(f"{g}/msteps", [1, -1], np.int64)], [f"{g}/b"],
                  name=f"{g}/mirrored"),
                N("Add", [f"{g}/a", f"{g}/b"], [f"{g}/ab"], name=f"{g}/add_mirror"),
            ]
            z = f"{g}/ab"
        # the columns: resize to w, blur, the mirror mean; [N,1,s,s] -> [N,1,s,w]
        mx = half * bx @ att.resize_matrix(w, s).astype(np.float64)
        nodes.append(N("MatMul", [z, c(f"{g}/mx", mx.T.astype(np.float32))], [f"{g}/cols"], name=f"{g}/cols"))
        cols.append(f"{g}/cols")
        rows.append(by @ att.resize_matrix(h, s).astype(np.float64))
    # the rows of all sizes at once: [h, sum of s] @ [N,1,sum of s,w] -> [N,1,h,w]
    nodes += [
        N("Concat", cols, ["rd/cols"], axis=2, name="rd/cols"),
        N("MatMul", [c("rd/my", np.concatenate(rows, axis=1).astype(np.float32)), "rd/cols"], ["rd/blurred"],
          name="rd/rows"),
    ]
    # the blurred bias (the blur's weights sum to 1 but for float rounding) and the log centre prior
    const = r.bias * np.outer(by.sum(axis=1), bx.sum(axis=1)) + att.log_centre(h, w, r.centre_sx, r.centre_sy)
    nodes += [
        N("Add", ["rd/blurred", c("rd/logc", const.astype(np.float32).reshape(1, 1, h, w))], ["rd/centred"],
          name="rd/centre"),
        N("Mul", ["face_map", c("rd/wf", r.w_f)], ["rd/f"], name="rd/wf"),
        N("Add", ["rd/centred", "rd/f"], ["rd/logits"], name="rd/add_f"),
        N("ReduceMax", ["rd/logits"], ["rd/max"], axes=[1, 2, 3], keepdims=1, name="rd/max"),
        N("Sub", ["rd/logits", "rd/max"], ["rd/shifted"], name="rd/shift"),
        N("Exp", ["rd/shifted"], ["saliency_map"], name="rd/exp"),
    ]
    return nodes


def params_from_args(args) -> att.Params:
    return att.Params(w_s=args.w_s, w_f=args.w_f, w_c=args.w_c, centre_sx=args.centre_sx, centre_sy=args.centre_sy,
                      blur=args.blur, face_k=args.face_k, face_threshold=args.face_threshold, top_k=args.top_k,
                      size=args.size)


def main() -> int:
    d = att.Params()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("-o", "--out", type=Path,
                    help="output (default model/attention_v1.onnx, or model/attention_v2.onnx with --readout)")
    ap.add_argument("--readout", type=Path, metavar="JSON",
                    help="build attention_v2 from this fitted readout (scripts/fit_readout.py writes it; "
                         "scripts/attention_v2_readout.json) instead of the v1 fusion; the v1 options are ignored")
    ap.add_argument("--w-s", type=float, default=d.w_s, help="weight of the (blurred) student map")
    ap.add_argument("--w-f", type=float, default=d.w_f, help="weight of the face map")
    ap.add_argument("--w-c", type=float, default=d.w_c, help="the floor under the object cue, before the centre prior gates it")
    ap.add_argument("--centre-sx", type=float, default=d.centre_sx, help="centre prior sigma, fraction of the width")
    ap.add_argument("--centre-sy", type=float, default=d.centre_sy, help="centre prior sigma, fraction of the height")
    ap.add_argument("--blur", type=float, default=d.blur, help="student blur sigma, fraction of the side (0: none)")
    ap.add_argument("--face-k", type=float, default=d.face_k, help="face Gaussian sigma = k * box size")
    ap.add_argument("--face-threshold", type=float, default=d.face_threshold, help="face score threshold")
    ap.add_argument("--top-k", type=int, default=d.top_k, help="anchors drawn into the face map")
    ap.add_argument("--size", type=int, default=d.size, help="working and output size (a divisor of 224)")
    ap.add_argument("--components", action="store_true",
                    help="also output student_map, face_map, face_boxes and face_scores (for fitting)")
    args = ap.parse_args()
    if min(args.w_s, args.w_f, args.w_c) < 0 or args.centre_sx <= 0 or args.centre_sy <= 0 or args.face_k <= 0:
        ap.error("weights must be >= 0, sigmas and --face-k > 0")
    if not 1 <= args.top_k <= 896:
        ap.error("--top-k must be in 1..896")
    if args.readout:
        import json

        p = att.Readout.from_json(json.loads(args.readout.read_text())["readout"])
        args.out = args.out or ROOT / "model" / "attention_v2.onnx"
    else:
        p = params_from_args(args)
        args.out = args.out or ROOT / "model" / "attention_v1.onnx"
    model = build(p, args.components)
    data = model.SerializeToString()
    args.out.write_bytes(data)
    from vmaf_roi.registry import sha256_bytes

    print(f"{args.out}: {len(data)} bytes, sha256 {sha256_bytes(data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
