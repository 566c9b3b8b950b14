"""story.wav + sfx.wav (+ a music bed) -> final.wav: ducked, loudness-normalised, streamed.

Every step is an ffmpeg filter graph reading the files as streams, so a two-hour story mixes
in the memory of one ffmpeg process (tens of MB), never as whole-file arrays. The passes:

1. measure the speech (and the music file) once with ebur128, so the ducking threshold and the
   music level are relative to the speech whatever level the TTS produced;
2. run the mix graph into loudnorm with print_format=json, to measure the mix (I, LRA,
   threshold, true peak);
3. run the same graph again into loudnorm given those measurements: linear (a constant gain,
   the programme's dynamics untouched) whenever that gain keeps the true peak under the limit,
   else loudnorm's dynamic mode (its look-ahead limiter and gain riding), re-measured and, if
   it missed the target, run again with loudnorm's `offset` set to the miss;
4. measure the written file with `common.media.ffmpeg.measure_loudness` before it replaces final.wav:
   a file outside the targets never appears.

Output is 48 kHz stereo 16-bit by default: 48 kHz is the native rate of the video
deliverables (AAC in MP4, YouTube), so 11.video.py muxes without resampling again, and
loudnorm's dynamic mode runs at 192 kHz, an exact 4x of 48 kHz. The 44.1 kHz speech is
resampled once, with soxr, and the output is padded/trimmed to round(n * 48000 / 44100)
samples, so its length equals story.wav's to within half an output sample (~10 us).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from common.state.atomic import atomic_path
from common.run.errors import ConfigError, InputError, PipelineError
from common.state.checkpoints import read_entries, state_file
from common.media.ffmpeg import FFmpegError, Loudness, audio_duration, ff_path, ffmpeg_log, log_tail, measure_loudness

MIX_VERSION = 1  # bump when the graph changes what comes out, so checkpoints redo the mix
SPEECH_REFERENCE_LUFS = -20.0  # the level the ducking key is brought to before the threshold applies
TRUE_PEAK_MARGIN = 0.5  # dB kept below the true-peak target: 192 -> 48 kHz resampling adds ~0.2 dB
LOUDNESS_TOLERANCE = 1.0  # LU either side of the target that the written file may measure (SPEC 8)
# loudnorm's dynamic mode rides the gain on a running estimate of the whole, so on short or
# very uneven programmes it can land a few LU off: re-measured, it is run again with loudnorm's
# `offset` set to the miss (its own two-pass mechanism), until within this, at most this often.
DYNAMIC_TOLERANCE = 0.5
DYNAMIC_ATTEMPTS = 3
SFX_LENGTH_TOLERANCE = 0.1  # seconds sfx.wav may differ from story.wav before we say so (the seed's 100 ms)
MUSIC_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac")

Say = Callable[[str], None]
# Setting -> (MixSettings field, lowest, highest): read and range-checked in this order.
_RANGES = {
    "DUCK_THRESHOLD": ("duck_threshold_db", -40.0, 0.0),
    "DUCK_RATIO": ("duck_ratio", 1.0, 20.0),
    "DUCK_ATTACK": ("duck_attack_ms", 0.01, 2000.0),
    "DUCK_RELEASE": ("duck_release_ms", 0.01, 9000.0),
    "FINAL_LOUDNESS": ("target_lufs", -40.0, -5.0),
    "FINAL_TRUE_PEAK": ("true_peak_dbtp", -9.0 + TRUE_PEAK_MARGIN, 0.0),
    "MUSIC_FADE": ("music_fade", 0.0, 600.0),
    "SFX_VOLUME": ("sfx_volume_db", -60.0, 24.0),
    "MUSIC_VOLUME": ("music_volume_db", -60.0, 24.0),
}


@dataclass(frozen=True)
class MixSettings:
    """Everything that changes final.wav apart from the input files; part of its fingerprint."""

    sfx_volume_db: float = -6.0
    music_volume_db: float = -18.0
    music_fade: float = 3.0
    duck_threshold_db: float = -12.0
    duck_ratio: float = 8.0
    duck_attack_ms: float = 20.0
    duck_release_ms: float = 400.0
    target_lufs: float = -14.0
    true_peak_dbtp: float = -1.0
    sample_rate: int = 48000

    def __post_init__(self) -> None:
        for name, (attribute, low, high) in _RANGES.items():
            value = getattr(self, attribute)
            if not (low <= value <= high):
                raise ConfigError(f"{name} is {value:g}, outside {low:g}..{high:g}; set it within that range.")
        if self.sample_rate not in (44100, 48000):
            raise ConfigError(f"FINAL_SAMPLE_RATE is {self.sample_rate}; use 48000 or 44100.")

    @classmethod
    def from_settings(cls, settings: Any) -> "MixSettings":
        levels = {attribute: float(getattr(settings, name)) for name, (attribute, _, _) in _RANGES.items()}
        return cls(**levels, sample_rate=int(settings.FINAL_SAMPLE_RATE))

    def identity(self) -> dict[str, Any]:
        return {"version": MIX_VERSION, **asdict(self)}


@dataclass(frozen=True)
class MixResult:
    path: Path
    duration: float
    samples: int
    loudness: Loudness
    normalization: str  # "linear" or "dynamic"
    speech_lufs: float
    sfx: Path | None
    music: Path | None

    def summary(self) -> dict[str, Any]:
        """What the checkpoint remembers about the mix (JSON-able)."""
        return {
            "duration": round(self.duration, 6), "samples": self.samples,
            "integrated_lufs": self.loudness.integrated_lufs, "true_peak_dbtp": self.loudness.true_peak_dbtp,
            "normalization": self.normalization, "speech_lufs": round(self.speech_lufs, 2),
            "sfx": self.sfx.name if self.sfx else None, "music": self.music.name if self.music else None,
        }


# --------------------------------------------------------------------------- music


def list_music(music_dir: Path) -> list[Path]:
    """Audio files directly in `music_dir`, by name; hidden files are not offered."""
    if not music_dir.is_dir():
        return []
    return sorted(p for p in music_dir.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in MUSIC_EXTENSIONS)


def music_dir_for(pipeline_dir: Path, music_dir: str) -> Path:
    """MUSIC_DIR as a folder: empty means <pipeline>/music, a relative path is from the pipeline folder."""
    if not music_dir.strip():
        return pipeline_dir / "music"
    folder = Path(music_dir.strip()).expanduser()
    return folder if folder.is_absolute() else pipeline_dir / folder


def find_music(music_dir: Path, music_file: str) -> Path | None:
    """The bed MUSIC_FILE names (a file in `music_dir`, or a path), or None when it is empty.

    No file is picked implicitly: music changes the feel of a story, so it is a choice.
    """
    name = music_file.strip()
    if not name:
        return None
    candidate = Path(name).expanduser()
    if not candidate.is_absolute():
        candidate = music_dir / candidate
    if candidate.is_file() and candidate.stat().st_size > 0:
        return candidate
    offered = ", ".join(p.name for p in list_music(music_dir)) or "none"
    raise ConfigError(
        f"MUSIC_FILE is {name!r} but {candidate} is not a non-empty file (files in {music_dir}: {offered}); "
        "put the file there, pick one of those, or set MUSIC_FILE empty for no music."
    )


def upstream_preview(pipeline_dir: Path, scripts: tuple[str, ...] = ("2.story", "7.sfx")) -> bool:
    """Whether the speech or the effects were made by the offline engine (a preview, SPEC 7).

    Read from those scripts' checkpoint files without loading them as stores, so a corrupt
    file of another step is left for that step to deal with; unreadable counts as not preview.
    """
    return any(e.get("preview") for name in scripts for e in read_entries(state_file(pipeline_dir, name)).values())


# --------------------------------------------------------------------------- measuring

_LOUDNORM_JSON = re.compile(r"\{[^{}]*\"input_i\"[^{}]*\}", re.S)


def _loudnorm_stats(log: str, what: str) -> dict[str, Any]:
    blocks = _LOUDNORM_JSON.findall(log)
    if not blocks:
        raise FFmpegError(f"ffmpeg failed while {what}: loudnorm printed no measurements.",
                          what=what, stderr_tail=log_tail(log))
    raw = json.loads(blocks[-1])
    stats: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            stats[key] = float(value)
        except ValueError:
            stats[key] = value  # normalization_type; "-inf" parses as a float already
    return stats


# --------------------------------------------------------------------------- the graph


@dataclass(frozen=True)
class Levels:
    """Gains worked out from the measurements, in dB, and the compressor threshold (linear)."""

    key_gain_db: float
    sfx_gain_db: float
    music_gain_db: float
    threshold: float


def levels_for(settings: MixSettings, speech_lufs: float, music_lufs: float | None) -> Levels:
    """SFX keep the seed's meaning (SFX_VOLUME on sfx.wav as made); music sits MUSIC_VOLUME below the speech."""
    key_gain = SPEECH_REFERENCE_LUFS - speech_lufs
    music_gain = 0.0 if music_lufs is None else speech_lufs + settings.music_volume_db - music_lufs
    threshold = 10 ** ((SPEECH_REFERENCE_LUFS + settings.duck_threshold_db) / 20)
    return Levels(key_gain, settings.sfx_volume_db, music_gain, threshold)


def mix_graph(settings: MixSettings, levels: Levels, samples: int, *, sfx: bool, music: bool) -> str:
    """The filter graph from inputs [0]=speech, [1]=sfx (if any), next=music (if any) to [mix].

    Every branch is resampled to the output rate and padded/trimmed to exactly `samples`, so
    the mixers never see a stream end early (amix would re-weight) and the result has the
    story's length. The bed (SFX + music) is compressed by a sidechain keyed on the speech.
    """
    rate = settings.sample_rate
    fit = f"aresample={rate}:resampler=soxr,apad=whole_len={samples},atrim=end_sample={samples}"
    stereo = "aformat=sample_fmts=fltp:channel_layouts=stereo"
    if not (sfx or music):
        return f"[0:a]{fit},{stereo}[mix]"
    fit = f"{fit},aformat=sample_fmts=fltp"
    # The key stays mono: upmixed, each channel would be 3 dB down and the threshold 3 dB off.
    parts = [f"[0:a]{fit},asplit=2[v][k]", f"[v]{stereo}[voice]",
             f"[k]aformat=channel_layouts=mono,volume={levels.key_gain_db:.3f}dB[key]"]
    beds = []
    if sfx:
        parts.append(f"[1:a]{fit},{stereo},volume={levels.sfx_gain_db:.3f}dB[sfx]")
        beds.append("[sfx]")
    if music:
        seconds = samples / rate
        fade = min(settings.music_fade, seconds / 2)
        fades = (f",afade=t=in:d={fade:.3f},afade=t=out:st={seconds - fade:.6f}:d={fade:.3f}" if fade > 0 else "")
        parts.append(f"[{2 if sfx else 1}:a]{fit},{stereo},volume={levels.music_gain_db:.3f}dB{fades}[music]")
        beds.append("[music]")
    if len(beds) == 2:
        parts.append("[sfx][music]amix=inputs=2:normalize=0:duration=first[bed]")
        bed = "[bed]"
    else:
        bed = beds[0]
    parts.append(
        f"{bed}[key]sidechaincompress=threshold={levels.threshold:.6f}:ratio={settings.duck_ratio:g}"
        f":attack={settings.duck_attack_ms:g}:release={settings.duck_release_ms:g}[ducked]"
    )
    parts.append("[voice][ducked]amix=inputs=2:normalize=0:duration=first[mix]")
    return ";".join(parts)


def _inputs(story: Path, sfx: Path | None, music: Path | None) -> list[str]:
    args = ["-i", ff_path(story)]
    if sfx is not None:
        args += ["-i", ff_path(sfx)]
    if music is not None:
        args += ["-stream_loop", "-1", "-i", ff_path(music)]  # looped; the graph trims it to the story
    return args


# The first pass: loudnorm at 192 kHz told the programme is already at its target, so it takes
# linear mode with a gain of 0. It measures exactly what its dynamic mode would (input_tp is
# the 192 kHz sample peak, i.e. the true peak), at half the cost: the discarded output needs
# no gain riding or limiting.
MEASURE_FILTER = ("aresample=192000:resampler=soxr,loudnorm=I=-24:LRA=50:TP=0:measured_I=-24:measured_LRA=1"
                  ":measured_TP=-99:measured_thresh=-99:linear=true:print_format=json")


@dataclass(frozen=True)
class Normalisation:
    """The second pass's loudnorm set-up: the first pass's measurements and the mode they allow."""

    target_lufs: float
    tp_limit: float
    target_lra: float
    measured_i: float
    measured_tp: float
    measured_lra: float
    measured_thresh: float
    linear: bool

    def loudnorm(self, offset: float = 0.0) -> str:
        """loudnorm's options; `offset` (dynamic mode only) adds gain after a re-measured miss."""
        return (
            f"loudnorm=I={self.target_lufs:g}:TP={self.tp_limit:g}:LRA={self.target_lra:g}"
            f":measured_I={self.measured_i:.2f}:measured_TP={self.measured_tp:.2f}"
            f":measured_LRA={self.measured_lra:.2f}:measured_thresh={self.measured_thresh:.2f}"
            f":offset={0.0 if self.linear else offset:.2f}:linear={'true' if self.linear else 'false'}"
            ":print_format=json"
        )


def plan_normalisation(settings: MixSettings, measured: dict[str, Any]) -> Normalisation:
    """Linear when the constant gain keeps the true peak below the limit, else dynamic.

    loudnorm itself takes linear only if measured LRA <= target LRA, so the target LRA is the
    programme's own (at least loudnorm's default 7): the LRA never forces dynamic mode. The
    values are used as printed (2 decimals) so this decision and loudnorm's agree.
    """
    tp_limit = round(settings.true_peak_dbtp - TRUE_PEAK_MARGIN, 2)
    measured_i, measured_tp = round(measured["input_i"], 2), round(measured["input_tp"], 2)
    # 0 is loudnorm's "not given" for LRA: a programme shorter than 3 s measures 0 LU.
    measured_lra = max(round(measured["input_lra"], 2), 0.01)
    target_lra = min(50.0, max(7.0, math.ceil(measured_lra * 10) / 10))
    linear = measured_tp + (settings.target_lufs - measured_i) <= tp_limit and measured_lra <= target_lra
    return Normalisation(settings.target_lufs, tp_limit, target_lra, measured_i, measured_tp, measured_lra,
                         round(measured["input_thresh"], 2), linear)


# --------------------------------------------------------------------------- mixing


def _check_sfx_length(sfx: Path, story_seconds: float, say: Say) -> None:
    sfx_seconds = audio_duration(sfx)
    if abs(sfx_seconds - story_seconds) > SFX_LENGTH_TOLERANCE:
        say(f"warning: {sfx.name} is {sfx_seconds:.3f} s but story.wav is {story_seconds:.3f} s; "
            f"the effects are padded or cut to the story (run 7.sfx.py again if the story changed).")


def mix_story(
    story: Path, out: Path, *, sfx: Path | None, music: Path | None,
    settings: MixSettings = MixSettings(), say: Say = print,
) -> MixResult:
    """Mix speech (+ SFX, + looped music bed) into `out`, atomically, at the loudness targets.

    Raises InputError for a silent story or music file, PipelineError if the written file
    somehow measures outside the targets (it is then not kept).
    """
    story_seconds = audio_duration(story)
    samples = int(round(story_seconds * settings.sample_rate))
    speech_lufs = measure_loudness(story, true_peak=False).integrated_lufs
    if speech_lufs <= -70.0:
        raise InputError(f"{story} is silent or shorter than half a second (it measures {speech_lufs:g} LUFS); "
                         "run 2.story.py again.")
    music_lufs = None
    if music is not None:
        music_lufs = measure_loudness(music, true_peak=False).integrated_lufs
        if music_lufs <= -70.0:
            raise InputError(f"the music file {music} is silent; pick another MUSIC_FILE or set it empty.")
    if sfx is not None:
        _check_sfx_length(sfx, story_seconds, say)
    levels = levels_for(settings, speech_lufs, music_lufs)
    graph = mix_graph(settings, levels, samples, sfx=sfx is not None, music=music is not None)
    inputs = _inputs(story, sfx, music)

    say(f"measuring the mix ({story_seconds:.1f} s; speech at {speech_lufs:.1f} LUFS)")
    log = ffmpeg_log([*inputs, "-filter_complex", f"{graph};[mix]{MEASURE_FILTER}[out]",
                      "-map", "[out]", "-f", "null", "-"], what="measuring the mix")
    plan = plan_normalisation(settings, _loudnorm_stats(log, "measuring the mix"))
    say(f"normalising to {settings.target_lufs:g} LUFS ({'linear' if plan.linear else 'dynamic'}; "
        f"mix measured {plan.measured_i:.1f} LUFS, {plan.measured_tp:.1f} dBTP)")
    with atomic_path(out) as tmp:
        offset = 0.0
        for attempt in range(1, DYNAMIC_ATTEMPTS + 1):
            mode = _render(inputs, graph, plan.loudnorm(offset), samples, settings, tmp, out.name)
            loudness = measure_loudness(tmp)  # the check below, and after dynamic mode its re-measurement
            miss = settings.target_lufs - loudness.integrated_lufs
            if mode == "linear" or abs(miss) <= DYNAMIC_TOLERANCE or attempt == DYNAMIC_ATTEMPTS:
                break
            offset += miss
            say(f"dynamic normalisation landed at {loudness.integrated_lufs:g} LUFS: again with {offset:+.1f} LU")
        _verify(loudness, settings, out, mode)
    return MixResult(out, samples / settings.sample_rate, samples, loudness, mode, speech_lufs, sfx, music)


def _render(inputs: list[str], graph: str, loudnorm: str, samples: int, settings: MixSettings,
            tmp: Path, name: str) -> str:
    """The mix through `loudnorm` into a 16-bit stereo WAV of exactly `samples`; returns loudnorm's mode."""
    rate = settings.sample_rate
    # Dynamic mode works at 192 kHz: back to the output rate, then exactly the story's length.
    tail = (f"{loudnorm},aresample={rate}:resampler=soxr,apad=whole_len={samples},atrim=end_sample={samples},"
            "aformat=sample_fmts=s16:channel_layouts=stereo")
    log = ffmpeg_log([*inputs, "-filter_complex", f"{graph};[mix]{tail}[out]", "-map", "[out]",
                      "-map_metadata", "-1", "-c:a", "pcm_s16le", "-ar", str(rate), "-ac", "2",
                      "-bitexact", "-rf64", "auto", "-f", "wav", ff_path(tmp)], what=f"writing {name}")
    return str(_loudnorm_stats(log, f"writing {name}").get("normalization_type", "dynamic"))


def _verify(loudness: Loudness, settings: MixSettings, out: Path, mode: str) -> None:
    integrated, peak = loudness
    if abs(integrated - settings.target_lufs) <= LOUDNESS_TOLERANCE and peak <= settings.true_peak_dbtp:
        return
    raise PipelineError(
        f"{out.name} came out at {integrated:g} LUFS and {peak:g} dBTP after {mode} normalisation, outside "
        f"{settings.target_lufs:g} +-{LOUDNESS_TOLERANCE:g} LUFS / {settings.true_peak_dbtp:g} dBTP; it was not "
        "kept: please report this with the story's output/story.wav."
    )
