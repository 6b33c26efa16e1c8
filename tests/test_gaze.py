"""The gaze file format and its loader (vmaf_roi.gaze), the measures on cases worked out by hand,
the CLI's one-line refusal of a bad gaze file, and the converters of the development sets."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vmaf_roi import gaze
from vmaf_roi.errors import InputError
from vmaf_roi.synth import make_clip

REPO = Path(__file__).resolve().parents[1]
W, H = 64, 48


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# -- good files ----------------------------------------------------------------------------------
def test_frame_form_with_comments_viewers_and_duration(tmp_path):
    p = _write(tmp_path / "g.csv",
               "# recorded on a 24-inch screen\n"
               "\n"
               "frame,x,y,viewer,duration\n"
               "2,10.5,7.5,s02,0.25\n"
               "0,1,2,s01,0.3\n"
               "   # a comment in the middle, indented\n"
               "0,64,48,s02,0.1\n"  # the far corner itself is inside the picture
               "2, 0 , 0 , s01 ,9\n")
    rec = gaze.load_gaze(p, width=W, height=H)
    assert len(rec) == 4 and rec.source == str(p)
    assert rec.frames().tolist() == [0, 2] and rec.frames().dtype == np.int64
    xs, ys = rec.points(0)
    assert xs.tolist() == [1.0, 64.0] and ys.tolist() == [2.0, 48.0]  # file order within a frame
    xs, ys = rec.points(2)
    assert xs.tolist() == [10.5, 0.0] and ys.tolist() == [7.5, 0.0]
    assert [a.size for a in rec.points(1)] == [0, 0]  # a frame without points
    assert rec.viewers_known and rec.viewer_names == ("s01", "s02")  # names stripped, sorted
    assert rec.viewers(0) == 2 and rec.viewers(2) == 2 and rec.viewers(1) == 0
    assert rec.viewer.tolist() == [1, 0, 1, 0]
    # the duration column is read and ignored: the same file without it gives the same recording
    q = _write(tmp_path / "q.csv", "frame,x,y,viewer\n2,10.5,7.5,s02\n0,1,2,s01\n0,64,48,s02\n2,0,0,s01\n")
    rq = gaze.load_gaze(q, width=W, height=H)
    for a in ("frame", "x", "y", "viewer"):
        assert getattr(rq, a).tolist() == getattr(rec, a).tolist()


def test_no_viewer_column(tmp_path):
    p = _write(tmp_path / "g.csv", "x,y,frame\n3,4,1\n5,6,1\n7,8,3\n")  # columns in any order
    rec = gaze.load_gaze(p, width=W, height=H)
    assert not rec.viewers_known and rec.viewer_names == ()
    assert rec.viewer.tolist() == [-1, -1, -1]
    assert rec.frames().tolist() == [1, 3] and rec.viewers(1) == 0
    assert rec.points(1)[0].tolist() == [3.0, 5.0] and rec.points(1)[1].tolist() == [4.0, 6.0]
    assert math.isnan(gaze.inter_observer_nss(rec, 1))  # no viewers: no ceiling


def test_time_form_bom_and_crlf(tmp_path):
    # frames at 24 fps start at k/24 s: 1/24 = 0.041666...; a time belongs to the frame shown then
    text = "T,X,Y\r\n0,1,1\r\n0.0416,2,2\r\n0.0417,3,3\r\n1.0,4,4\r\n0.5,5,5\r\n"
    p = _write(tmp_path / "g.csv", b"\xef\xbb\xbf" + text.encode())
    rec = gaze.load_gaze(p, width=W, height=H, fps=Fraction(24), frame_count=25)
    assert rec.frame.tolist() == [0, 0, 1, 24, 12]
    assert rec.x.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    # NTSC rate: 1 s is frame floor(30000/1001) = 29
    rec = gaze.load_gaze(p, width=W, height=H, fps=Fraction(30000, 1001))
    assert rec.frame.tolist()[3] == 29


def test_frame_written_as_a_whole_float(tmp_path):
    rec = gaze.load_gaze(_write(tmp_path / "g.csv", "frame,x,y\n3.0,1,1\n"), width=W, height=H)
    assert rec.frame.tolist() == [3]


# -- bad files -----------------------------------------------------------------------------------
BAD = [
    # (id, file contents, load_gaze keywords, words in the message, line named or None)
    ("empty", "", {}, "empty gaze file", None),
    ("only-comments", "# nothing\n\n   \n", {}, "empty gaze file", None),
    ("header-only", "frame,x,y,viewer\n", {}, "a header but no point", None),
    ("unknown-column", "# c\nframe,x,y,pupil\n0,1,1,3\n", {}, "unknown column 'pupil'", 2),
    ("column-twice", "frame,x,y,x\n0,1,1,1\n", {}, "named twice", 1),
    ("no-x", "frame,y,viewer\n0,1,a\n", {}, "no 'x' column", 1),
    ("no-y", "frame,x\n0,1\n", {}, "no 'y' column", 1),
    ("frame-and-t", "frame,t,x,y\n0,0,1,1\n", {}, "exactly one of 'frame'", 1),
    ("neither-frame-nor-t", "x,y\n1,1\n", {}, "exactly one of 'frame'", 1),
    ("t-without-fps", "t,x,y\n0.5,1,1\n", {}, "frame rate", None),
    ("not-numbers", "frame,x,y\n0,1,1\n\n# c\n0,abc,3\n", {}, "not a point", 5),
    ("negative-frame", "frame,x,y\n0,1,1\n-1,1,1\n", {}, "not a point", 3),
    ("fractional-frame", "frame,x,y\n1.5,1,1\n", {}, "not a point", 2),
    ("negative-t", "t,x,y\n-0.1,1,1\n", {"fps": 24}, "not a point", 2),
    ("x-outside", "frame,x,y\n0,1,1\n0,64.01,3\n", {}, "outside the 64x48 picture", 3),
    ("y-negative", "frame,x,y\n0,1,-0.5\n", {}, "outside the 64x48 picture", 2),
    ("x-nan", "frame,x,y\n0,nan,1\n", {}, "outside the 64x48 picture", 2),
    ("frame-past-end", "frame,x,y\n3,1,1\n4,1,1\n", {"frame_count": 4}, "the video has 4 frames", 3),
    ("t-past-end", "t,x,y\n0.2,1,1\n", {"fps": 10, "frame_count": 2}, "time 0.2 s is frame 2", 2),
    ("too-few-values", "frame,x,y,viewer\n0,1,1,a\n0,1,1\n", {}, "3 values where the header has 4", 3),
    ("too-many-values", "frame,x,y\n0,1,1,7\n", {}, "4 values where the header has 3", 2),
    ("empty-viewer", "frame,x,y,viewer\n0,1,1,a\n0,2,2, \n0,3,3,\n", {}, "empty viewer (2 points", 3),
    ("not-utf8", "frame,x,y\n0,1,1\n".encode("utf-16"), {}, "not UTF-8", None),
]


@pytest.mark.parametrize("text,kw,words,line", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_file_is_one_line_naming_file_and_line(tmp_path, text, kw, words, line):
    p = _write(tmp_path / "bad.csv", text)
    with pytest.raises(InputError) as ei:
        gaze.load_gaze(p, width=W, height=H, **kw)
    msg = str(ei.value)
    assert ei.value.exit_code == 3
    assert "\n" not in msg and msg.startswith(f"{p}:"), msg
    assert words in msg, msg
    if line is not None:
        assert msg.startswith(f"{p}:{line}: "), msg


def test_missing_file_and_directory(tmp_path):
    for path, words in ((tmp_path / "none.csv", "gaze file not found"), (tmp_path, "not a regular file")):
        with pytest.raises(InputError) as ei:
            gaze.load_gaze(path, width=W, height=H)
        assert str(ei.value) == f"{path}: {words}" and ei.value.exit_code == 3


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("gazecli")
    ref = make_clip(d / "ref.mp4", width=W, height=H, frames=4, fps=24, seed=3)
    dist = make_clip(d / "dist.mp4", width=W, height=H, frames=4, fps=24, seed=3, crf=40)
    return d, ref.path, dist.path


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("vmaf-roi")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "vmaf_roi"]


@pytest.mark.parametrize("text,words,line", [
    ("frame,x,y,viewer\n0,10,10,a\n1,65,10,a\n", "outside the 64x48 picture", 3),
    ("frame,x,y\n0,10,10\n4,10,10\n", "the video has 4 frames", 3),
    ("frame,x,y,gaze_depth\n0,10,10,1\n", "unknown column 'gaze_depth'", 1),
    (None, "not found", None),
], ids=["outside", "past-the-end", "unknown-column", "missing"])
def test_cli_score_refuses_a_bad_gaze_file_in_one_line(clips, tmp_path, text, words, line):
    d, ref, dist = clips
    g = tmp_path / "bad.csv"
    if text is not None:
        g.write_text(text)
    out = tmp_path / "s.json"
    r = subprocess.run([*_cli(), "score", str(ref), str(dist), "--gaze", str(g), "--json", "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1, r.stderr
    assert err[0].startswith("vmaf-roi: error: ") and str(g) in err[0] and words in err[0], err[0]
    if line is not None:
        assert f"{g}:{line}: " in err[0]
    assert "Traceback" not in r.stderr and not out.exists()


# -- densities -------------------------------------------------------------------------------------
def test_density_sums_to_one_and_peaks_at_the_fixation():
    d = gaze.points_density([10.5], [7.5], W, H, 2.5)
    assert d.shape == (H, W) and d.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.unravel_index(np.argmax(d), d.shape) == (7, 10)
    # symmetric about the fixation's pixel (the point is its centre)
    assert d[7, 9] == pytest.approx(d[7, 11]) and d[6, 10] == pytest.approx(d[8, 10])
    # the recording's density: the default sigma is one degree, width / 30
    p = gaze.GazeRecording(width=W, height=H, frame=np.array([5]), x=np.array([40.5]), y=np.array([20.5]),
                           viewer=np.array([-1]))
    assert gaze.default_sigma(W, H) == pytest.approx(W / 30)
    dd = p.density(5)
    assert dd.sum() == pytest.approx(1.0) and np.unravel_index(np.argmax(dd), dd.shape) == (20, 40)
    assert np.allclose(dd, gaze.points_density([40.5], [20.5], W, H, W / 30))
    assert not p.density(4).any() and p.density(4).shape == (H, W)  # no point: all zeros


def test_a_point_at_the_edge_weighs_as_much_as_one_in_the_middle():
    w, h, s = 100, 80, 3.0
    d = gaze.points_density([0.0, 70.5], [0.0, 50.5], w, h, s)
    # each point's Gaussian is normalised inside the frame: half the mass near each point
    assert d[:20, :20].sum() == pytest.approx(0.5, abs=1e-6)
    assert d[35:66, 55:86].sum() == pytest.approx(0.5, abs=1e-6)


def test_sigma_zero_puts_all_mass_on_the_pixel():
    d = gaze.points_density([10.2], [3.9], W, H, 0)
    assert d[3, 10] == 1.0 and d.sum() == 1.0
    # two points, one on the far corner (which belongs to the last pixel): half each
    d = gaze.points_density([10.2, 64.0], [3.9, 48.0], W, H, 0)
    assert d[3, 10] == 0.5 and d[47, 63] == 0.5 and d.sum() == 1.0


def test_tiny_sigma_keeps_every_point():
    # a sigma far below a pixel: the Gaussian of a point on a pixel edge underflows everywhere;
    # the point keeps its mass on its own pixel rather than vanishing (or turning the map NaN)
    d = gaze.points_density([3.0], [2.0], 16, 8, 0.005)
    assert d[2, 3] == pytest.approx(1.0) and d.sum() == pytest.approx(1.0)
    d = gaze.points_density([3.0, 8.5], [2.0, 4.5], 16, 8, 0.005)
    assert d[2, 3] == pytest.approx(0.5) and d[4, 8] == pytest.approx(0.5)


# -- measures --------------------------------------------------------------------------------------
def test_nss_of_the_fixation_indicator():
    # a map that is 1 on k distinct fixated pixels and 0 on the other N - k: mean p = k/N,
    # std sqrt(p(1-p)) (population std), so NSS = (1 - p) / sqrt(p(1-p)) = sqrt((N - k) / k)
    rng = np.random.default_rng(1)
    pix = rng.choice(W * H, 7, replace=False)
    ys, xs = np.divmod(pix, W)
    m = np.zeros((H, W))
    m[ys, xs] = 1
    fx, fy = xs + rng.uniform(0, 1, xs.size), ys + rng.uniform(0, 1, ys.size)  # anywhere inside the pixel
    assert gaze.nss(m, fx, fy) == pytest.approx(math.sqrt((W * H - 7) / 7), rel=1e-12)
    # a fixation looked at twice counts twice; one on an unfixated pixel scores -p/std
    p = 7 / (W * H)
    lo = -p / math.sqrt(p * (1 - p))
    hi = (1 - p) / math.sqrt(p * (1 - p))
    free = np.setdiff1d(np.arange(W * H), pix)[0]
    fy2, fx2 = np.divmod(free, W)
    got = gaze.nss(m, [xs[0] + 0.5, xs[0] + 0.5, fx2 + 0.5], [ys[0] + 0.5, ys[0] + 0.5, fy2 + 0.5])
    assert got == pytest.approx((2 * hi + lo) / 3, rel=1e-12)


def test_nss_affine_invariance_and_nan_cases():
    rng = np.random.default_rng(2)
    m = rng.random((H, W))
    xs, ys = rng.uniform(0, W, 20), rng.uniform(0, H, 20)
    base = gaze.nss(m, xs, ys)
    assert gaze.nss(3.7 * m - 11.0, xs, ys) == pytest.approx(base, rel=1e-10)
    assert gaze.nss(-2.0 * m + 5.0, xs, ys) == pytest.approx(-base, rel=1e-10)
    assert math.isnan(gaze.nss(np.full((H, W), 4.0), xs, ys))  # a flat map says nothing
    assert math.isnan(gaze.nss(m, [], []))


def test_cc():
    rng = np.random.default_rng(3)
    a = rng.random((H, W))
    assert gaze.cc(a, a) == pytest.approx(1.0, abs=1e-12)
    assert gaze.cc(a, -a) == pytest.approx(-1.0, abs=1e-12)
    assert gaze.cc(a, 0.01 * a + 3) == pytest.approx(1.0, abs=1e-12)
    # hand case: (0,1,2,3) against (0,1,0,1): centred (-1.5,-.5,.5,1.5) and (-.5,.5,-.5,.5):
    # sum of products 1, norms sqrt(5) and 1 -> 1/sqrt(5)
    assert gaze.cc(np.array([[0, 1], [2, 3]]), np.array([[0, 1], [0, 1]])) == pytest.approx(1 / math.sqrt(5))
    assert math.isnan(gaze.cc(np.ones((H, W)), a))
    with pytest.raises(ValueError):
        gaze.cc(a, a[:-1])


def test_auc_by_hand():
    assert gaze.auc([5, 5, 5], [5, 5]) == 0.5  # all tied
    assert gaze.auc([2, 3, 4], [0, 1]) == 1.0
    assert gaze.auc([0, 1], [2, 3, 4]) == 0.0
    # pairs (p, n): (2,1) 1, (2,2) 1/2, (3,1) 1, (3,2) 1 -> 3.5 / 4
    assert gaze.auc([2, 3], [1, 2]) == pytest.approx(0.875)
    # a map flat over the pixels a viewer looked at and elsewhere: chance
    flat = np.full((H, W), 0.3)
    assert gaze.sauc(flat, [1, 30, 60], [2, 20, 40], [5, 6], [7, 8]) == 0.5
    assert math.isnan(gaze.auc([], [1.0]))


def test_sauc_of_a_centre_map_against_centre_biased_negatives_is_chance():
    # fixations and the other frames' fixations come from the same centre-biased distribution,
    # unrelated to this frame: a map of the centre predicts the fixations (plain AUC against
    # every pixel is high) but not better than the other frames' fixations (sAUC ~ 0.5)
    w, h = 160, 120
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    centre = np.exp(-0.5 * (((xx - w / 2) / (0.2 * w)) ** 2 + ((yy - h / 2) / (0.2 * h)) ** 2))
    rng = np.random.default_rng(4)

    def biased(n):
        return (np.clip(rng.normal(w / 2, 0.15 * w, n), 0, w), np.clip(rng.normal(h / 2, 0.15 * h, n), 0, h))

    xs, ys = biased(3000)
    ox, oy = biased(3000)
    s = gaze.sauc(centre, xs, ys, ox, oy)
    assert abs(s - 0.5) < 0.03, s
    plain = gaze.auc(centre[gaze.pixel(ys, h), gaze.pixel(xs, w)], centre.ravel())
    assert plain > 0.75, plain
    # a map of where these fixations actually are beats the centre prior under sAUC
    own = gaze.points_density(xs[:1500], ys[:1500], w, h, 4)
    assert gaze.sauc(own, xs[1500:], ys[1500:], ox, oy) > 0.5


def test_inter_observer_nss():
    one = gaze.GazeRecording(width=W, height=H, frame=np.array([0, 0]), x=np.array([10.5, 20.5]),
                             y=np.array([5.5, 6.5]), viewer=np.array([0, 0]), viewer_names=("a",))
    assert math.isnan(gaze.inter_observer_nss(one, 0))  # one viewer: no one to predict them
    assert math.isnan(gaze.inter_observer_nss(one, 1))  # no points on that frame
    # two viewers: each viewer's points against the other's density alone
    xa, ya, xb, yb = [10.5, 12.5], [5.5, 6.5], [11.5, 40.5], [5.5, 30.5]
    two = gaze.GazeRecording(width=W, height=H, frame=np.zeros(4, np.int64), x=np.array(xa + xb),
                             y=np.array(ya + yb), viewer=np.array([0, 0, 1, 1]), viewer_names=("a", "b"))
    s = gaze.default_sigma(W, H)
    want = (gaze.nss(gaze.points_density(xb, yb, W, H, s), xa, ya)
            + gaze.nss(gaze.points_density(xa, ya, W, H, s), xb, yb)) / 2
    assert gaze.inter_observer_nss(two, 0) == pytest.approx(want, rel=1e-12)
    assert want > 0  # they looked at nearby points
    assert two.density(0, exclude_viewer=0).sum() == pytest.approx(1.0)
    assert np.allclose(two.density(0, exclude_viewer=0), two.density(0, only_viewer=1))


# -- the development sets' converters ----------------------------------------------------------------
def _gaze_dir() -> Path:
    env = os.environ.get("VMAF_ROI_GAZE_DIR")
    d = Path(env) if env else REPO.parent / "shared" / "gaze"
    if not d.is_dir():
        pytest.skip(f"the development gaze data is not at {d} (set VMAF_ROI_GAZE_DIR to its folder)")
    return d


def _convert(*args: str) -> None:
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gaze_convert.py"), *args],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_nus_converter_files_load(tmp_path):
    root = _gaze_dir() / "nus-scene"
    if not (root / "tidy" / "fixations.mat").is_file():
        pytest.skip(f"{root}/tidy/fixations.mat is not there")
    sio = pytest.importorskip("scipy.io")
    from PIL import Image

    _convert("nus", str(root), str(tmp_path))
    fix = sio.loadmat(root / "tidy" / "fixations.mat")["fixations"]
    for i in (1, 2, 77, 200, 350):
        with Image.open(root / "stimuli" / f"{i:03d}.jpg") as im:
            w, h = im.size  # the photo's own size, not the converter's source of it
        cells = [fix[i - 1, v] for v in range(fix.shape[1]) if fix[i - 1, v].size]
        rec = gaze.load_gaze(tmp_path / f"{i:03d}.csv", width=w, height=h, frame_count=1)
        assert len(rec) == sum(c.shape[0] for c in cells)
        assert rec.frames().tolist() == [0] and rec.viewers(0) == len(cells)
        # (row, column) 1-based -> x = column - 0.5, y = row - 0.5 (kept inside the picture)
        rows = np.concatenate([c[:, 0] for c in cells])
        cols = np.concatenate([c[:, 1] for c in cells])
        assert np.allclose(np.sort(rec.x), np.sort(np.clip(cols - 0.5, 0, w)), atol=0.006)
        assert np.allclose(np.sort(rec.y), np.sort(np.clip(rows - 0.5, 0, h)), atol=0.006)


def test_ucf_converter_files_load(tmp_path):
    root = _gaze_dir() / "ucf-sports-diving"
    if not (root / "fixation").is_dir():
        pytest.skip(f"{root}/fixation is not there")
    import av
    from PIL import Image

    _convert("ucf", str(root), str(tmp_path))
    pngs = sorted((root / "fixation").glob("*.png"), key=lambda p: p.stem)
    counts = []
    for p in pngs:
        a = np.asarray(Image.open(p))
        counts.append(int(((a[..., 0] if a.ndim == 3 else a) == 255).sum()))
        size = a.shape[1], a.shape[0]
    with av.open(str(tmp_path / "diving.mkv")) as c:
        s = c.streams.video[0]
        frames = sum(1 for _ in c.decode(s))
        assert (s.codec_context.width, s.codec_context.height) == size
    assert frames == len(pngs)
    rec = gaze.load_gaze(tmp_path / "diving.csv", width=size[0], height=size[1], frame_count=frames)
    assert len(rec) == sum(counts)
    assert not rec.viewers_known
    assert rec.frames().tolist() == [k for k, n in enumerate(counts) if n]
    assert [rec.points(k)[0].size for k in range(len(pngs))] == counts
