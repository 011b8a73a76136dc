"""Reading and writing frames: videos through PyAV (FFmpeg in its wheel), folders / globs of images, PNG folders.

Frames are numpy arrays (H, W, 3) uint8 RGB. A video keeps its frame rate and its audio: the audio packets
are copied as they are when the output container takes their codec, re-encoded otherwise.
"""
from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from nst.errors import NSTError, UsageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
# output container -> (FFmpeg format, video encoders to try, audio codecs copied as they are, audio encoder otherwise)
CONTAINERS = {
    ".mp4": ("mp4", ("libx264", "mpeg4"), {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}, "aac"),
    ".m4v": ("mp4", ("libx264", "mpeg4"), {"aac", "mp3", "alac", "ac3", "eac3"}, "aac"),
    ".mov": ("mov", ("libx264", "mpeg4"), {"aac", "mp3", "alac", "ac3", "pcm_s16le", "pcm_s24le"}, "aac"),
    ".mkv": ("matroska", ("libx264", "mpeg4"), None, "aac"),  # None: Matroska takes any codec
    ".webm": ("webm", ("libvpx-vp9", "libvpx"), {"opus", "vorbis"}, "libopus"),
    ".avi": ("avi", ("mpeg4",), {"mp3", "ac3", "pcm_s16le"}, "mp3"),
}
DEFAULT_FPS = Fraction(25)


def _av():
    try:
        import av
    except ImportError:
        raise NSTError("nst video needs PyAV and OpenCV: pip install 'nst-suite[video]'") from None
    return av


@dataclass
class FrameSource:
    """Frames to stylise: a video file, or image files in order. COUNT may be an estimate for a video whose
    header does not say (the frames decoded are what counts)."""

    path: Path
    files: list[Path] | None  # image frames; None for a video
    fps: Fraction
    width: int
    height: int
    count: int
    has_audio: bool

    @property
    def is_video(self) -> bool:
        return self.files is None

    def exact_count(self) -> int:
        """The number of frames, decoding a video through to count them."""
        if self.files is not None:
            return len(self.files)
        av = _av()
        with av.open(str(self.path)) as container:
            return sum(1 for _ in _decoded(av, self.path, container, container.streams.video[0]))

    def frames(self, start: int = 0) -> Iterator[np.ndarray]:
        """(H, W, 3) uint8 frames from index START on, all at the first frame's size."""
        if self.files is not None:
            for path in self.files[start:]:
                yield read_image_frame(path, (self.width, self.height))
            return
        av = _av()
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(_decoded(av, self.path, container, stream)):
                if index >= start:
                    yield fit(frame.to_ndarray(format="rgb24"), (self.width, self.height))


def _decoded(av, path: Path, container, stream) -> Iterator:
    """The frames of STREAM; a damaged stream ends in one NSTError naming PATH and the frame."""
    index = 0
    try:
        for frame in container.decode(stream):
            yield frame
            index += 1
    except (av.error.FFmpegError, ValueError, OSError, EOFError) as exc:
        raise NSTError(f"{path}: cannot decode frame {index} ({getattr(exc, 'strerror', None) or type(exc).__name__}); "
                       "the video is damaged") from None


def fit(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) ARRAY resized to SIZE (w, h) (bicubic) unless it has that size."""
    if (array.shape[1], array.shape[0]) == size:
        return array
    return np.asarray(Image.fromarray(array).resize(size, Image.Resampling.BICUBIC))


def read_image_frame(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image file as (H, W, 3) uint8 RGB, resized to SIZE (w, h) when given."""
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise NSTError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    return fit(array, size) if size else array


def open_source(path: Path, fps: Fraction | None = None) -> FrameSource:
    """A video file, a folder of images (sorted by name) or a glob pattern; FPS for images (default 25)."""
    text = str(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise NSTError(f"{path}: no frames in this folder (images: {', '.join(sorted(IMAGE_SUFFIXES))})")
        return _image_source(path, files, fps)
    if any(ch in text for ch in "*?[") and not path.exists():
        files = sorted(Path(p) for p in glob.glob(text, recursive=True)
                       if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise NSTError(f"{path}: no image files match this pattern")
        return _image_source(path, files, fps)
    if not path.exists():
        raise NSTError(f"{path}: no such file or folder")
    if not path.is_file():
        raise NSTError(f"{path}: not a file")
    return _video_source(path)


def _image_source(path: Path, files: list[Path], fps: Fraction | None) -> FrameSource:
    first = read_image_frame(files[0])
    return FrameSource(path, files, fps or DEFAULT_FPS, first.shape[1], first.shape[0], len(files), False)


def _video_source(path: Path) -> FrameSource:
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise NSTError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            first = next(container.decode(stream), None)
            if first is None:
                raise NSTError(f"{path}: the video has no frames")
            count = stream.frames or (round(float(stream.duration * stream.time_base) * rate)
                                      if stream.duration and rate else 0)
            has_audio = bool(container.streams.audio)
            width, height = first.width, first.height
    except (av.error.FFmpegError, ValueError, OSError, EOFError) as exc:
        raise NSTError(f"{path}: not a video PyAV can read ({getattr(exc, 'strerror', None) or type(exc).__name__})") \
            from None
    if not rate or rate <= 0:
        raise NSTError(f"{path}: the video has no frame rate")
    return FrameSource(path, None, Fraction(rate), width, height, max(count, 1), has_audio)


def check_output(path: Path) -> str:
    """'video' for a known container suffix, 'frames' for a folder (no suffix, or an existing folder)."""
    if path.is_dir() or not path.suffix:
        return "frames"
    if path.suffix.lower() not in CONTAINERS:
        raise UsageError(f"{path}: unknown video format '{path.suffix}' (use one of {', '.join(sorted(CONTAINERS))}, "
                         "or a folder name for PNG frames)")
    return "video"


def _encoder(av, names: tuple[str, ...]) -> str:
    for name in names:
        if name in av.codecs_available:
            try:
                av.Codec(name, "w")
                return name
            except Exception:  # listed but not built as an encoder
                continue
    raise NSTError(f"this FFmpeg build has none of the encoders {', '.join(names)}; write a folder of PNG frames "
                   "instead")


def write_video(target: Path, suffix: str, frames: Iterator[np.ndarray], source: FrameSource, size: tuple[int, int],
                audio: bool = True) -> int:
    """Encode FRAMES ((h, w, 3) uint8 of SIZE (w, h)) at SOURCE's frame rate into TARGET (a container chosen by
    SUFFIX), with SOURCE's first audio stream when AUDIO; returns the frames written."""
    av = _av()
    fmt, encoders, copyable, audio_encoder = CONTAINERS[suffix.lower()]
    width, height = size
    written = 0
    with av.open(str(target), "w", format=fmt) as out:
        stream = out.add_stream(_encoder(av, encoders), rate=source.fps)
        stream.width, stream.height = width, height
        odd = width % 2 or height % 2
        stream.pix_fmt = "yuv444p" if odd and stream.codec_context.name == "libx264" else "yuv420p"
        if stream.codec_context.name == "libx264":
            stream.options = {"crf": "17", "preset": "medium"}
        audio_in = _AudioCopy(av, out, source, copyable, audio_encoder) if audio and source.has_audio else None
        try:
            for array in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
                for packet in stream.encode(frame):
                    out.mux(packet)
                written += 1
                if audio_in:
                    audio_in.until(written / source.fps)
            for packet in stream.encode(None):
                out.mux(packet)
            if audio_in:
                audio_in.until(None)
        finally:
            if audio_in:
                audio_in.close()
    return written


class _AudioCopy:
    """The source's first audio stream into OUT, in step with the video: packets copied when the container
    takes the codec, decoded and re-encoded otherwise."""

    def __init__(self, av, out, source: FrameSource, copyable: set[str] | None, encoder: str) -> None:
        self._in = av.open(str(source.path))
        self._src = self._in.streams.audio[0]
        self._copy = copyable is None or self._src.codec_context.name in copyable
        if self._copy:
            self._out_stream = out.add_stream_from_template(self._src)
        else:
            rate = self._src.codec_context.sample_rate or 48000
            mono = self._src.codec_context.channels == 1  # more channels: stereo (a named order every encoder takes)
            self._out_stream = out.add_stream(encoder, rate=48000 if encoder == "libopus" else rate,
                                              layout="mono" if mono else "stereo")
        self._out, self._packets = out, self._in.demux(self._src)
        self._pending, self._done = None, False

    def until(self, seconds: float | None) -> None:
        """Mux the audio up to SECONDS of the video (all of it when None)."""
        while not self._done:
            packet = self._pending if self._pending is not None else next(self._packets, None)
            self._pending = None
            if packet is None:  # end of the audio
                self._done = True
                if not self._copy:
                    for encoded in self._out_stream.encode(None):
                        self._out.mux(encoded)
                return
            if packet.dts is None:  # the demuxer's empty flush packet
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if seconds is not None and float(stamp * packet.time_base) > seconds:
                self._pending = packet
                return
            if self._copy:
                packet.stream = self._out_stream
                self._out.mux(packet)
            else:
                for frame in packet.decode():
                    frame.pts = None
                    for encoded in self._out_stream.encode(frame):
                        self._out.mux(encoded)

    def close(self) -> None:
        self._in.close()


def frame_name(index: int) -> str:
    return f"frame_{index:06d}.png"
