"""nst video: synthetic clips (a textured photo panned by known whole-pixel shifts, sensor noise, a sine audio
track), a tiny random johnson network; flow against the known shift, masks, flicker, resume, refusals."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from conftest import error_after_notes, gradient_image, one_error_line  # noqa: E402

from nst.core.johnson import TransformerNet, save_model  # noqa: E402
from nst.plugins.video import flow as fl  # noqa: E402
from nst.plugins.video.engine import stylize_video, work_folder  # noqa: E402
from nst.plugins.video.temporal import flicker  # noqa: E402

ASSET = Path(__file__).resolve().parents[1] / "assets" / "content.jpg"
SHIFT = (2, 1)  # pixels per frame (dx, dy): the scene moves left and up by this much


def panorama(w: int, h: int, frames: int, shift=SHIFT) -> np.ndarray:
    """The photo, large enough to crop FRAMES views of (w, h) moved by SHIFT each."""
    size = (w + frames * shift[0] + 8, h + frames * shift[1] + 8)
    return np.asarray(Image.open(ASSET).convert("RGB").resize(size, Image.Resampling.BICUBIC))


def views(w: int = 96, h: int = 64, frames: int = 8, noise: float = 6.0, seed: int = 0) -> list[np.ndarray]:
    """Frame i is the crop at (4 + i dx, 4 + i dy), plus Gaussian sensor noise of NOISE levels (as real footage)."""
    big = panorama(w, h, frames)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(frames):
        x, y = 4 + i * SHIFT[0], 4 + i * SHIFT[1]
        crop = big[y:y + h, x:x + w].astype(np.float32) + rng.normal(0, noise, (h, w, 3))
        out.append(np.clip(crop + 0.5, 0, 255).astype(np.uint8))
    return out


def make_video(path: Path, frames: list[np.ndarray], fps: int = 12, audio: bool = True) -> Path:
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt, s.options = w, h, "yuv420p", {"crf": "8"}
        a = c.add_stream("aac", rate=16000, layout="mono") if audio else None
        for array in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
        if a is not None:
            t = np.arange(int(16000 * len(frames) / fps)) / 16000
            signal = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for k in range(0, signal.shape[1], 1024):
                f = av.AudioFrame.from_ndarray(np.ascontiguousarray(signal[:, k:k + 1024]), format="fltp", layout="mono")
                f.sample_rate = 16000
                for p in a.encode(f):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)
    return path


def probe(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        return {"frames": frames, "fps": v.average_rate, "size": (v.codec_context.width, v.codec_context.height),
                "audio": [s.codec_context.name for s in c.streams.audio],
                "audio_seconds": float(c.streams.audio[0].duration * c.streams.audio[0].time_base) if c.streams.audio else 0}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", views())


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    torch.manual_seed(3)
    net = TransformerNet(width=8, blocks=1).eval()
    return save_model(net, tmp_path_factory.mktemp("model") / "tiny.safetensors", {"style": "random.png"})


def quiet(_msg: str) -> None:
    pass


# --- flow, masks, warping -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["dis", "farneback"])
def test_flow_matches_the_known_shift(name):
    """Frame 1 is frame 0 moved by SHIFT: the flow 1 -> 0 is +SHIFT everywhere (within 0.15 px, median 0.1 px,
    away from the 8 px border)."""
    a, b = views(noise=0)[:2]
    back = fl.estimator(name)(b, a)[8:-8, 8:-8]
    error = (back - torch.tensor(SHIFT, dtype=torch.float32)).norm(dim=-1)
    assert error.median() < 0.1 and error.mean() < 0.15, (name, error.median(), error.mean())


def test_mask_marks_the_disoccluded_border_and_keeps_the_rest():
    """The last SHIFT columns / rows of frame 1 came in from outside frame 0: masked; the rest is kept (>= 90%)."""
    a, b = views(noise=0)[:2]
    back, mask = fl.flow_pair(fl.estimator("dis"), a, b)
    assert mask[:, -SHIFT[0]:].max() == 0 and mask[-SHIFT[1]:, :].max() == 0
    assert mask[:-8, :-8].mean() > 0.9


def test_mask_marks_an_occlusion():
    """A square moving right over a still background: the background it uncovers is masked in frame 1."""
    bg = np.asarray(gradient_image(96, 64, seed=4)).copy()
    rng = np.random.default_rng(1)
    square = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
    a, b = bg.copy(), bg.copy()
    a[20:40, 30:50] = square
    b[20:40, 36:56] = square
    back = torch.zeros(64, 96, 2)
    back[20:40, 36:56, 0] = -6  # the true flow 1 -> 0
    forward = torch.zeros(64, 96, 2)
    forward[20:40, 30:50, 0] = 6
    mask = fl.consistency_mask(back, forward)
    assert mask[22:38, 31:35].max() == 0  # uncovered background: its forward flow moved away
    assert mask[22:38, 40:52].min() == 1 and mask[:, 60:].min() == 1


def test_warp_with_the_true_flow_reproduces_the_frame():
    a, b = views(noise=0)[:2]
    to_t = lambda x: torch.tensor(x).permute(2, 0, 1)[None].float()  # noqa: E731
    flow = torch.zeros(64, 96, 2) + torch.tensor(SHIFT, dtype=torch.float32)
    warped = fl.warp(to_t(a), flow)
    assert (warped - to_t(b))[..., :-SHIFT[1], :-SHIFT[0]].abs().max() < 1e-3


# --- whole videos -------------------------------------------------------------------------------------

def test_video_keeps_frames_fps_size_and_audio(clip, tiny_model, tmp_path, run_cli):
    out = tmp_path / "out.mp4"
    code, stdout, err = run_cli("video", clip, "-o", out, "--method", "johnson", "--model", tiny_model, "-q")
    assert code == 0, err
    got, want = probe(out), probe(clip)
    assert len(got["frames"]) == 8 and got["fps"] == 12 and got["size"] == (96, 64)
    assert got["audio"] == ["aac"] and abs(got["audio_seconds"] - want["audio_seconds"]) < 0.1
    assert "8 frames, 96x64, 12 fps, audio kept" in stdout and "flicker" in stdout
    assert not work_folder(out).exists()
    out2 = tmp_path / "small.mkv"
    code, _, err = run_cli("video", clip, "-o", out2, "--method", "johnson", "--model", tiny_model, "--size", "48",
                           "--no-audio", "-q")
    assert code == 0, err
    got = probe(out2)
    assert len(got["frames"]) == 8 and got["size"] == (48, 32) and got["audio"] == []


def test_temporal_consistency_cuts_flicker(clip, tiny_model, tmp_path):
    """The warping error of the output with temporal blending is well below frame-by-frame stylisation's."""
    args = dict(method="johnson", model=str(tiny_model), note=quiet, device="cpu")
    plain = stylize_video(clip, (), tmp_path / "plain", temporal=False, **args)
    steady = stylize_video(clip, (), tmp_path / "steady", **args)
    assert plain.frames == steady.frames == 8
    assert steady.flicker < 0.6 * plain.flicker, (steady.flicker, plain.flicker)
    frames = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "steady").glob("frame_*.png"))]
    assert len(frames) == 8 and abs(flicker(views(), frames, fl.estimator("dis")) - steady.flicker) < 0.5 * steady.flicker


class StopAt:
    """Ctrl-C in the middle of frame number AT (counting from 0)."""

    name = "stop_at"

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def nst_postprocess(self, image):
        self.calls += 1
        if self.calls > self.at:
            raise KeyboardInterrupt
        return None


StopAt.nst_postprocess = __import__("nst").hookimpl(StopAt.nst_postprocess)


def test_resume_after_an_interruption_equals_an_uninterrupted_run(clip, tiny_model, tmp_path, run_cli):
    args = dict(method="johnson", model=str(tiny_model), note=quiet, device="cpu")
    whole = stylize_video(clip, (), tmp_path / "whole.mp4", **args)
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        stylize_video(clip, (), out, plugins=[StopAt(3)], **args)
    assert not out.exists() and len(list(work_folder(out).glob("frame_*.png"))) == 3
    code, _, err = run_cli("video", clip, "-o", out, "--method", "johnson", "--model", tiny_model, "-q")
    assert code == 2 and "--resume" in one_error_line(err)
    code, _, err = run_cli("video", clip, "-o", out, "--method", "johnson", "--model", tiny_model, "--size", "48",
                           "--resume", "-q")
    assert code == 2 and "other options" in one_error_line(err)
    resumed = stylize_video(clip, (), out, resume=True, **args)
    assert resumed.resumed_at == 3 and resumed.frames == 8 and resumed.flicker == whole.flicker
    a, b = probe(whole.output)["frames"], probe(out)["frames"]
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b) == 8


def shots(folder: Path, frames: int) -> Path:
    """FOLDER holding FRAMES views as s00.png, s01.png, ..."""
    folder.mkdir()
    for i, frame in enumerate(views(frames=frames)):
        Image.fromarray(frame).save(folder / f"s{i:02d}.png")
    return folder


def test_frames_folder_in_and_out(tmp_path, tiny_model, run_cli):
    src = shots(tmp_path / "shots", 4)
    out = tmp_path / "styled"
    code, stdout, err = run_cli("video", str(src / "*.png"), "-o", out, "--method", "johnson", "--model", tiny_model,
                                "--fps", "30", "-q")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [".nst-written.jsonl", *[f"frame_{i:06d}.png" for i in range(4)]]
    assert Image.open(out / "frame_000000.png").size == (96, 64) and "30 fps" in stdout
    code, _, err = run_cli("video", src, "-o", src, "--method", "johnson", "--model", tiny_model, "-q")
    assert code == 2 and "input" in one_error_line(err)
    code, _, err = run_cli("video", src, "-o", out, "--method", "johnson", "--model", tiny_model, "-q")
    assert code == 2 and "--overwrite" in one_error_line(err)


def test_output_is_never_an_input_and_a_named_file_is_replaced(clip, tiny_model, tmp_path, run_cli):
    code, _, err = run_cli("video", clip, "-o", clip, "--method", "johnson", "--model", tiny_model, "-q")
    assert code == 2 and "input" in one_error_line(err)
    existing = tmp_path / "taken.mp4"
    existing.write_bytes(b"mine")
    code, _, err = run_cli("video", clip, "-o", existing, "--method", "johnson", "--model", tiny_model, "-q")
    assert code == 0 and probe(existing)["frames"], err  # the file the user named is replaced, as cp does


def test_bad_inputs_give_one_line(tmp_path, tiny_model, run_cli):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    empty = tmp_path / "empty"
    empty.mkdir()
    for source, word in [(text, "not a video"), (tmp_path / "missing.mp4", "no such file"), (empty, "no frames")]:
        code, _, err = run_cli("video", source, "-o", tmp_path / "o.mp4", "--method", "johnson", "--model", tiny_model, "-q")
        assert code == 1 and word in one_error_line(err), err
    code, _, err = run_cli("video", text, "-o", tmp_path / "o.gif", "--method", "johnson", "--model", tiny_model, "-q")
    assert code == 2 and "unknown video format" in one_error_line(err)


def test_a_failure_before_the_first_frame_leaves_no_work_folder(clip, tmp_path, run_cli):
    bad = tmp_path / "bad.safetensors"
    bad.write_text("not a model")
    out = tmp_path / "o.mp4"
    code, _, err = run_cli("video", clip, "-o", out, "--method", "johnson", "--model", bad, "-q")
    assert code == 1 and "bad.safetensors" in one_error_line(err)
    assert not out.exists() and not work_folder(out).exists()


def test_gatys_frames_start_from_the_warped_previous_output(tmp_path, tiny_weights):
    """With --init noise every frame on its own starts from fresh noise and flickers; with temporal consistency
    frames after the first start from the warped previous result and carry the temporal loss."""
    frames = views(64, 48, frames=3, noise=0)
    clip = make_video(tmp_path / "c.mp4", frames, audio=False)
    style = tmp_path / "s.png"
    gradient_image(48, 48, seed=9).save(style)
    args = dict(method="gatys", weights=str(tiny_weights), steps=4, init="noise", note=quiet, device="cpu")
    plain = stylize_video(clip, [style], tmp_path / "plain", temporal=False, **args)
    steady = stylize_video(clip, [style], tmp_path / "steady", **args)
    assert steady.flicker < 0.5 * plain.flicker, (steady.flicker, plain.flicker)


# --- RAFT (a small random network saved to a file; nothing is downloaded) -------------------------------

@pytest.fixture(scope="module")
def random_raft(tmp_path_factory) -> Path:
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("raft") / "raft_small_random.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    return path


def test_raft_loads_a_local_file(random_raft, tiny_model):
    frames = views(frames=2)
    flow = fl.estimator("raft", None, str(random_raft))(frames[1], frames[0])
    assert flow.shape == (64, 96, 2) and torch.isfinite(flow).all()
    from nst.errors import NSTError

    with pytest.raises(NSTError, match="not the weights of torchvision's RAFT"):
        fl.estimator("raft", None, str(tiny_model))


@pytest.mark.slow
def test_raft_video_through_the_cli(tmp_path, tiny_model, random_raft, run_cli):
    clip = make_video(tmp_path / "c.mp4", views(frames=3), audio=False)
    out = tmp_path / "o"
    code, stdout, err = run_cli("video", clip, "-o", out, "--method", "johnson", "--model", tiny_model, "--flow", "raft",
                                "--flow-weights", random_raft, "-q")
    assert code == 0, err
    assert len(list(out.glob("frame_*.png"))) == 3 and "3 frames" in stdout


def test_raft_weights_not_cached_and_unreachable_is_one_line(tmp_path):
    from nst.core.weights import Registry, WeightSource
    from nst.errors import NSTError

    registry = Registry()
    registry.add(WeightSource(name="raft-test", kind="url", filename="raft_test_unreachable.pth", sha256="00",
                              url="http://127.0.0.1:9/raft.pth", local_hint="--flow-weights PATH", description="test"))
    with pytest.raises(NSTError) as caught:
        fl.estimator("raft", registry, "raft-test")
    assert "--flow-weights PATH" in str(caught.value) and "\n" not in str(caught.value)


# --- torchrun: two gloo processes share the frames ----------------------------------------------------

@pytest.mark.slow
def test_torchrun_two_ranks_split_the_frames(clip, tiny_model, tmp_path):
    """Process 1 takes frames 4-7 after warming up on frames 1-3 (blend 0.1: 3 warm-up frames); frames 0-3 equal
    a one-process run exactly, frames 4-7 within one 8-bit level (the history before frame 1 is missing)."""
    import os
    import subprocess
    import sys

    from nst.plugins.video.engine import warmup_frames

    assert warmup_frames(True, False, 0.1) == 3 and warmup_frames(False, False, 0.5) == 0
    args = ["--method", "johnson", "--model", str(tiny_model), "--temporal-blend", "0.1", "--device", "cpu", "-q"]
    single = tmp_path / "single"
    stylize_video(clip, (), single, method="johnson", model=str(tiny_model), blend_weight=0.1, note=quiet, device="cpu")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
                           "-m", "nst.cli", "video", str(clip), "-o", str(out), *args],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1 and "8 frames" in proc.stdout
    a = [np.asarray(Image.open(single / f"frame_{i:06d}.png")).astype(int) for i in range(8)]
    b = [np.asarray(Image.open(out / f"frame_{i:06d}.png")).astype(int) for i in range(8)]
    assert all(np.array_equal(x, y) for x, y in zip(a[:4], b[:4]))
    assert max(np.abs(x - y).max() for x, y in zip(a[4:], b[4:])) <= 1
    assert not work_folder(out).exists()


# --- what nst reads back or finds in place: checked, never taken for its own ---------------------------------------------

def digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_work_folder_and_a_video_read_back_are_checked(clip, tiny_model, tmp_path, run_cli):
    args = ["--method", "johnson", "--model", tiny_model, "-q"]
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        stylize_video(clip, (), out, method="johnson", model=str(tiny_model), note=quiet, plugins=[StopAt(3)])
    work = work_folder(out)
    Image.new("RGB", (20, 10)).save(work / "frame_000002.png")  # a frame of another size
    code, _, err = run_cli("video", clip, "-o", out, "--resume", *args)
    assert code == 1 and "frame_000002.png: is 20x10 px, the video's frames are 96x64" in error_after_notes(err)
    (work / "job.json").write_text('{"world": ' * 30_000)  # a job file that is not one
    code, _, err = run_cli("video", clip, "-o", out, "--resume", *args)
    assert code == 1 and "has no job.json that nst wrote" in error_after_notes(err)
    (work / "mine.txt").write_text("the user's")  # --overwrite clears only what nst wrote there
    code, _, err = run_cli("video", clip, "-o", out, "--overwrite", *args)
    assert code == 1 and "holds files nst did not write" in error_after_notes(err)
    assert (work / "mine.txt").read_text() == "the user's" and not out.exists()

    damaged = tmp_path / "damaged.mp4"
    data = clip.read_bytes()
    damaged.write_bytes(data[:len(data) // 2] + bytes(4096) + data[len(data) // 2 + 4096:])  # frames cut mid-stream
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    for source in (damaged, cut):
        code, _, err = run_cli("video", source, "-o", tmp_path / f"s-{source.name}", *args)
        assert code == 1 and error_after_notes(err).startswith(f"error: {source}: "), err
        assert "damaged" in err or "not a video PyAV can read" in err

    dot = make_video(tmp_path / "dot.mp4", [np.full((2, 2, 3), 90, np.uint8)] * 2, audio=False)
    code, _, err = run_cli("video", dot, "-o", tmp_path / "dot-out.mp4", *args)
    assert code == 1 and "its 2x2 px frames are, under the 16 px minimum on each side; give --size" in error_after_notes(err)


def test_a_frames_folder_replaces_only_frames_nst_wrote(tmp_path, tiny_model, run_cli):
    src = shots(tmp_path / "shots", 3)
    out = tmp_path / "styled"
    out.mkdir()
    (out / "frame_000001.png").write_bytes(b"the user's frame")
    (out / "notes.txt").write_text("the user's notes")
    before = digest(out)
    args = ["video", src, "-o", out, "--method", "johnson", "--model", tiny_model, "-q"]
    for flags, fragment in (([], "exists; add --overwrite"), (["--overwrite"], "was not written there by nst")):
        code, _, err = run_cli(*args, *flags)
        assert code == 2 and fragment in error_after_notes(err) and digest(out) == before
    (out / "frame_000001.png").unlink()
    assert run_cli(*args)[0] == 0 and len(list(out.glob("frame_*.png"))) == 3
    from nst.core.files import Manifest

    for i in range(3, 5):  # frames of a longer earlier run, one nst's, one the user's
        (out / f"frame_00000{i}.png").write_bytes(b"stale")
    Manifest(out).record([out / "frame_000003.png"])
    code, _, err = run_cli(*args, "--overwrite")
    assert code == 2 and "frame_000004.png exists and was not written there by nst" in error_after_notes(err)
    (out / "frame_000004.png").unlink()
    assert run_cli(*args, "--overwrite")[0] == 0  # nst's stale frame goes, its frames are replaced
    assert sorted(p.name for p in out.glob("frame_*.png")) == [f"frame_00000{i}.png" for i in range(3)]
    assert (out / "notes.txt").read_text() == "the user's notes"
