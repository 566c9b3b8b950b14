"""The one place that runs ffmpeg and reads or writes WAV files.

Everything audio/video goes through here so that the binary is found one way, every ffmpeg
failure reads the same ("ffmpeg failed while <what>: <its last words>"), and every output
appears atomically. There is no ffprobe in the pip-only set-up (SPEC 7), so `probe` uses PyAV.

WAV handling is the stdlib `wave` module plus numpy: 16-bit PCM is all the pipeline writes,
and reading it without a subprocess keeps sample counts exact (timings are sample-exact).
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from common.state.atomic import atomic_path
from common.run.errors import ConfigError, InputError, PipelineError

PathLike = str | os.PathLike[str]

_BLOCK_FRAMES = 1 << 16  # frames per read while streaming WAVs: ~1.5 s at 44.1 kHz, 128 KiB
_STDERR_TAIL_LINES = 40
# x264's threaded lookahead (on whenever it encodes with several threads) decides frame types and
# macroblock-tree weights from however many frames happen to be queued when it looks: the same
# frames encoded twice could differ in a few frames' bits (seen on a Short cut from final_sd.mp4,
# about one encode in three). With it off the frame threads stay and the encode is repeatable, so
# a redone item is byte for byte the one a run without a kill makes. Every libx264 encode passes it.
X264_REPEATABLE = "sync-lookahead=0"

# ffmpeg's closing lines that restate an earlier, more specific one.
_GENERIC_LINE = re.compile(
    r"^(Conversion failed!?|Error opening (input|output) files?:.*|To ignore this.*"
    r"|Error parsing options for .*|Exiting normally.*)$"
)
_LOG_PREFIX = re.compile(r"^\[[^\]]+ @ 0x[0-9a-f]+\]\s*")


class FFmpegError(PipelineError):
    """ffmpeg exited non-zero; `stderr_tail` keeps its last lines for the log."""

    def __init__(self, message: str, *, what: str, stderr_tail: str = "", returncode: int | None = None):
        super().__init__(message)
        self.what = what
        self.stderr_tail = stderr_tail
        self.returncode = returncode


# --------------------------------------------------------------------------- ffmpeg


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: $FFMPEG_BINARY, else the imageio-ffmpeg wheel's, else the system's.

    The wheel's binary comes first because it is the one whose filters SPEC 7 checked
    (loudnorm, ebur128, zoompan, subtitles...); a distribution's ffmpeg may lack some.
    """
    override = os.environ.get("FFMPEG_BINARY", "").strip()
    if override:
        if Path(override).is_file() and os.access(override, os.X_OK):
            return override
        found = shutil.which(override)
        if found:
            return found
        raise ConfigError(f"FFMPEG_BINARY is set to {override!r}, which is not an executable file: fix or unset it.")
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        if exe and Path(exe).is_file():
            return exe
    except (ImportError, RuntimeError, OSError):
        pass
    found = shutil.which("ffmpeg")
    if found:
        return found
    raise ConfigError("ffmpeg was not found: run pip install -r requirements.txt")


def ff_path(path: PathLike) -> str:
    """A path as an ffmpeg argument that can never be read as an option or a protocol.

    A file named "-x.wav" or "clip:1.mp4" would otherwise be an option or a URL scheme.
    """
    return "file:" + str(Path(path).absolute())


def filter_value(text: PathLike) -> str:
    """`text` as an option value inside an ffmpeg filtergraph, whatever characters it holds.

    Two levels of escaping (ffmpeg-filters "Notes on filtergraph escaping"): first the
    option value (`\\`, `'`, `:`), then the graph (`\\`, `'`, `[`, `]`, `,`, `;`). Needed
    for file names such as C:\\Users\\... or a folder with a comma in it.
    """
    value = "".join("\\" + ch if ch in "\\':" else ch for ch in str(text))
    return "".join("\\" + ch if ch in "\\'[],;" else ch for ch in value)


def _last_words(stderr: str) -> str:
    lines = [_LOG_PREFIX.sub("", line).strip() for line in stderr.replace("\r", "\n").splitlines()]
    lines = [line for line in lines if line]
    specific = [line for line in lines if not _GENERIC_LINE.match(line)]
    chosen = specific or lines
    return chosen[-1] if chosen else "no error message"


def log_tail(log: str) -> str:
    return "\n".join(log.splitlines()[-_STDERR_TAIL_LINES:])


def _run(args: Sequence[str], what: str, loglevel: str, timeout: float | None) -> str:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-y", "-loglevel", loglevel, *map(str, args)]
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"").decode("utf-8", "replace")
        raise FFmpegError(
            f"ffmpeg took longer than {timeout:g} s while {what} and was stopped.", what=what, stderr_tail=tail
        ) from None
    except OSError as exc:
        raise ConfigError(f"ffmpeg could not be started ({exc.strerror}): run pip install -r requirements.txt") from exc
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise FFmpegError(
            f"ffmpeg failed while {what}: {_last_words(stderr)}",
            what=what, stderr_tail=log_tail(stderr), returncode=proc.returncode,
        )
    return stderr


def run_ffmpeg(args: Sequence[str], *, what: str, timeout: float | None = None) -> None:
    """Run ffmpeg with `args`; on failure raise FFmpegError naming `what` (e.g. "rendering part 2").

    Only warnings and errors are captured, so an hours-long render does not fill memory.
    """
    _run(args, what, "warning", timeout)


def ffmpeg_log(args: Sequence[str], *, what: str, timeout: float | None = None) -> str:
    """Run ffmpeg at info level and return its stderr, for analysis filters that report there.

    ebur128, silencedetect and blackdetect print their findings to the log; callers should
    send the output to `-f null -`.
    """
    return _run(args, what, "info", timeout)


# --------------------------------------------------------------------------- probing


def pipe_to_ffmpeg(args: Sequence[str], chunks: Iterable[bytes], *, what: str, timeout: float = 6 * 3600.0) -> int:
    """Stream raw data (video frames) into an ffmpeg reading `pipe:0`; returns the chunks written.

    ffmpeg's stderr goes to a temp file, not a pipe, so a chatty encoder can never block us;
    a failure (a non-zero exit, or ffmpeg closing its input early) carries its last words.
    """
    written = 0
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(list(args), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
        assert process.stdin is not None
        broken = False
        try:
            for chunk in chunks:
                try:
                    process.stdin.write(chunk)
                except BrokenPipeError:
                    broken = True
                    break
                written += 1
            try:
                process.stdin.close()
            except BrokenPipeError:
                broken = True
            code = process.wait(timeout=timeout)
        except BaseException:
            process.kill()
            process.wait()
            raise
        if code != 0 or broken:
            errors.seek(0)
            detail = errors.read().decode("utf-8", "replace").strip().splitlines()
            reason = detail[-1] if detail else f"exit code {code}"
            raise FFmpegError(f"ffmpeg failed while {what}: {reason}. Check free disk space and the inputs.",
                              what=what, stderr_tail="\n".join(detail[-5:]), returncode=code)
    return written


@dataclass(frozen=True)
class StreamInfo:
    """One stream of a media file; fields that do not apply to its kind are None."""

    index: int
    kind: str  # "video", "audio", "subtitle", "data", ...
    codec: str
    duration: float | None
    width: int | None = None
    height: int | None = None
    pix_fmt: str | None = None
    fps: float | None = None
    frames: int | None = None  # from the container's index; None when it would need decoding
    sample_rate: int | None = None
    channels: int | None = None


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    format: str
    duration: float
    streams: tuple[StreamInfo, ...]

    @property
    def video(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "video"), None)

    @property
    def audio(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "audio"), None)


def _existing(path: PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file.")
    return path


def _stream_info(stream) -> StreamInfo:  # stream: av.stream.Stream
    ctx = stream.codec_context
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    info = dict(
        index=stream.index, kind=stream.type, codec=(ctx.name if ctx is not None else "unknown"),
        duration=duration, frames=(stream.frames or None),
    )
    if stream.type == "video":
        rate = stream.average_rate or stream.guessed_rate
        info.update(width=ctx.width or None, height=ctx.height or None, pix_fmt=ctx.pix_fmt,
                    fps=(float(rate) if rate else None))
    elif stream.type == "audio":
        layout = getattr(ctx, "layout", None)
        info.update(sample_rate=ctx.sample_rate or None,
                    channels=(layout.nb_channels if layout is not None else None) or None)
    return StreamInfo(**info)


def probe(path: PathLike) -> MediaInfo:
    """Describe a media file (format, duration, streams) without decoding it."""
    import av  # imported here: only probing needs PyAV, and it is slow to import

    path = _existing(path)
    try:
        with av.open(str(path), mode="r") as container:
            streams = tuple(_stream_info(s) for s in container.streams)
            if container.duration is not None:
                duration = container.duration / 1_000_000  # AV_TIME_BASE
            else:
                duration = max((s.duration or 0.0 for s in streams), default=0.0)
            return MediaInfo(path=path, format=container.format.name, duration=duration, streams=streams)
    except av.FFmpegError as exc:
        raise InputError(f"{path} is not a media file ffmpeg can read ({exc.strerror or exc}).") from exc


def _wav_params(path: Path) -> wave._wave_params | None:
    """The header of a PCM WAV the `wave` module can read, else None (mp3, float WAV, ...)."""
    try:
        with wave.open(str(path), "rb") as handle:
            return handle.getparams()
    except (wave.Error, EOFError):
        return None


def audio_duration(path: PathLike) -> float:
    """Seconds of audio; exact to the sample for PCM WAV, the container's estimate otherwise."""
    path = _existing(path)
    params = _wav_params(path)
    if params is not None:
        return params.nframes / params.framerate
    info = probe(path)
    if info.audio is None:
        raise InputError(f"{path} has no audio stream.")
    return info.audio.duration if info.audio.duration is not None else info.duration


# --------------------------------------------------------------------------- WAV


def to_wav(src: PathLike, dst: PathLike, *, sample_rate: int = 44100, channels: int = 1) -> Path:
    """Decode the first audio stream of anything ffmpeg reads into 16-bit PCM WAV, atomically.

    The soxr resampler is used because it is the cleanest ffmpeg has; -bitexact and no
    metadata keep the header minimal, so the `wave` module reads it and reruns are identical.
    """
    src, dst = _existing(src), Path(dst)
    with atomic_path(dst) as tmp:
        run_ffmpeg(
            ["-i", ff_path(src), "-map", "0:a:0", "-map_metadata", "-1",
             "-af", f"aresample={sample_rate}:resampler=soxr", "-ar", str(sample_rate), "-ac", str(channels),
             "-c:a", "pcm_s16le", "-bitexact", "-f", "wav", ff_path(tmp)],
            what=f"converting {src.name} to WAV",
        )
    return dst


def read_wav(path: PathLike, *, dtype: str = "int16") -> tuple[np.ndarray, int]:
    """Samples and sample rate of a 16-bit PCM WAV: shape (n,) if mono, (n, channels) otherwise.

    dtype "float32" scales to [-1, 1). Other sample formats are refused with a hint, because
    silently guessing a scale would corrupt levels downstream.
    """
    path = _existing(path)
    try:
        with wave.open(str(path), "rb") as handle:
            params = handle.getparams()
            raw = handle.readframes(params.nframes)
    except (wave.Error, EOFError) as exc:
        raise InputError(f"{path} is not a PCM WAV file ({exc}); convert it first (common.media.ffmpeg.to_wav).") from exc
    if params.sampwidth != 2:
        raise InputError(f"{path} has {8 * params.sampwidth}-bit samples, not 16-bit; convert it first (common.media.ffmpeg.to_wav).")
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if params.nchannels > 1:
        samples = samples.reshape(-1, params.nchannels)
    if dtype == "float32":
        return samples.astype(np.float32) / 32768.0, params.framerate
    if dtype != "int16":
        raise ValueError(f"dtype must be 'int16' or 'float32', not {dtype!r}")
    return samples, params.framerate


def _as_int16(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        return samples
    if np.issubdtype(samples.dtype, np.floating):
        return np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    raise ValueError(f"samples must be int16 or floating point, not {samples.dtype}")


def wav_writer(path: PathLike, sample_rate: int, channels: int = 1) -> wave.Wave_write:
    """A 16-bit PCM WAV open for writing (use it in a `with`), for writers that stream blocks into it."""
    handle = wave.open(str(path), "wb")
    handle.setnchannels(channels)
    handle.setsampwidth(2)
    handle.setframerate(int(sample_rate))
    return handle


def write_wav(path: PathLike, samples: np.ndarray, sample_rate: int) -> Path:
    """Write int16 (or float in [-1, 1]) samples, shape (n,) or (n, channels), as 16-bit WAV atomically."""
    data = _as_int16(samples)
    with atomic_path(path) as tmp, wav_writer(tmp, sample_rate, 1 if data.ndim == 1 else data.shape[1]) as handle:
        handle.writeframes(data.astype("<i2", copy=False).tobytes())
    return Path(path)


def silence(seconds: float, sample_rate: int = 44100) -> np.ndarray:
    return np.zeros(max(0, int(round(seconds * sample_rate))), dtype=np.int16)


def fade_gains(length: int) -> np.ndarray:
    # Raised-cosine ramp rising from ~0 to ~1: smooth in slope too, so no click at either end.
    k = np.arange(length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(np.pi * (k + 0.5) / length)


def _blocks(handle: wave.Wave_read, nframes: int) -> Iterator[tuple[int, np.ndarray]]:
    start = 0
    while start < nframes:
        raw = handle.readframes(min(_BLOCK_FRAMES, nframes - start))
        if not raw:
            break
        block = np.frombuffer(raw, dtype="<i2").astype(np.int16)
        yield start, block
        start += len(block)


def _faded(block: np.ndarray, start: int, nframes: int, ramp: np.ndarray) -> np.ndarray:
    fade = len(ramp)
    end = start + len(block)
    if fade == 0 or (start >= fade and end <= nframes - fade):
        return block
    out = block.astype(np.float64)
    if start < fade:  # overlaps the fade-in
        stop = min(end, fade)
        out[: stop - start] *= ramp[start:stop]
    tail_from = nframes - fade
    if end > tail_from:  # overlaps the fade-out
        first = max(start, tail_from)
        positions = np.arange(first, end) - tail_from  # 0 .. fade-1 along the fade-out
        out[first - start:] *= ramp[::-1][positions]
    return np.round(out).astype(np.int16)


def concat_wavs(
    inputs: Sequence[PathLike], dst: PathLike, *, sample_rate: int = 44100,
    gap_seconds: float = 0.0, fade_ms: float = 8.0,
) -> list[tuple[float, float]]:
    """Join audio files into one mono 16-bit WAV and return each piece's (start, end) in seconds.

    Streaming: one block of one input is in memory at a time, so a two-hour story joins in a
    few megabytes. Each piece gets a short raised-cosine fade at both edges so a join never
    clicks, and `gap_seconds` of silence goes between pieces (not before the first or after
    the last). Inputs that are not mono 16-bit WAV at `sample_rate` are converted with
    `to_wav` first, one at a time. Times are frame counts divided by the rate, so they are
    exact to the sample and a caller can turn them back into frames losslessly.
    """
    if not inputs:
        raise ValueError("concat_wavs needs at least one input")
    dst = Path(dst)
    sources = [_existing(p) for p in inputs]
    gap = silence(gap_seconds, sample_rate).tobytes()
    gap_frames = len(gap) // 2
    spans: list[tuple[float, float]] = []
    with atomic_path(dst) as tmp, tempfile.TemporaryDirectory(prefix=".concat.", dir=dst.parent) as scratch:
        with wav_writer(tmp, sample_rate) as out:
            position = 0
            for number, source in enumerate(sources):
                params = _wav_params(source)
                if params is None or (params.nchannels, params.sampwidth, params.framerate) != (1, 2, sample_rate):
                    converted = Path(scratch) / f"{number}.wav"
                    source = to_wav(source, converted, sample_rate=sample_rate, channels=1)
                if number and gap_frames:
                    out.writeframes(gap)
                    position += gap_frames
                with wave.open(str(source), "rb") as handle:
                    nframes = handle.getnframes()
                    fade = min(int(round(fade_ms * sample_rate / 1000.0)), nframes // 2)
                    ramp = fade_gains(fade) if fade > 0 else np.zeros(0)
                    written = 0
                    for start, block in _blocks(handle, nframes):
                        out.writeframes(_faded(block, start, nframes, ramp).astype("<i2", copy=False).tobytes())
                        written += len(block)
                spans.append((position / sample_rate, (position + written) / sample_rate))
                position += written
                if source.parent == Path(scratch):
                    source.unlink()
    return spans


# --------------------------------------------------------------------------- loudness


class Loudness(NamedTuple):
    integrated_lufs: float
    true_peak_dbtp: float


_SUMMARY = re.compile(r"Summary:(?P<body>.*)", re.S)
_INTEGRATED = re.compile(r"Integrated loudness:\s*I:\s*(?P<v>-?inf|-?\d+(?:\.\d+)?)\s*LUFS", re.S)
_TRUE_PEAK = re.compile(r"True peak:\s*Peak:\s*(?P<v>-?inf|-?\d+(?:\.\d+)?)\s*dBFS", re.S)


def measure_loudness(path: PathLike, *, true_peak: bool = True) -> Loudness:
    """Integrated loudness (LUFS) and true peak (dBTP) of the first audio stream, per EBU R128.

    ffmpeg's ebur128 filter prints these in its closing summary; silence reads as -70 LUFS
    (the gate's floor) and -inf dBTP. Without `true_peak` (NaN then) ebur128 skips its 4x
    oversampling, which reads story.wav about three times faster.
    """
    path = _existing(path)
    log = ffmpeg_log(
        ["-i", ff_path(path), "-map", "0:a:0", "-af", f"ebur128={'peak=true:' if true_peak else ''}framelog=quiet",
         "-f", "null", "-"],
        what=f"measuring the loudness of {path.name}",
    )
    summary = _SUMMARY.search(log)
    body = summary.group("body") if summary else ""
    integrated, peak = _INTEGRATED.search(body), _TRUE_PEAK.search(body)
    if not integrated or (true_peak and not peak):
        raise FFmpegError(
            f"ffmpeg failed while measuring the loudness of {path.name}: its ebur128 summary was missing.",
            what="measuring loudness", stderr_tail=log_tail(log),
        )
    # float() reads "-inf" and "inf" itself.
    return Loudness(float(integrated.group("v")), float(peak.group("v")) if true_peak else math.nan)
