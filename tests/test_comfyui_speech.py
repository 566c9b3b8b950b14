"""A speech chunk becomes exactly the OmniVoice job SPEC 7 describes, and the fake ComfyUI voices it."""
from __future__ import annotations

import math
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import av
import pytest

from common.services.comfyui.client import ComfyClient
from common.engines.comfy_speech import MAX_SPEAKERS, build_speech_prompt, find_tts_node
from common.services.comfyui.workflow import Workflow
from common.run.errors import InputError
from tests.fakes import start_fake_comfyui

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class V:
    wav: Path
    reference_text: str


def make_voice(folder: Path, stem: str, freq: float) -> V:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / 16000))) for i in range(8000)))
    return V(path, f"This is the voice called {stem}.")


def story_workflow(fixtures_dir: Path) -> Workflow:
    return Workflow.load(fixtures_dir / "gen.audio/workflow/story.json")


LINES = [
    ("male_doctor_watson", "Holmes, a lady is here to see you."),
    ("male_sherlock_holmes", "Show her in, Watson."),
    ("female_violet_smith", "Mr. Holmes, I am followed\nby a cyclist every Saturday."),
    ("male_sherlock_holmes", "Pray, tell me more."),
]


def test_three_speaker_job_sent_to_comfyui(fixtures_dir: Path, tmp_path: Path) -> None:
    voices = {
        "male_doctor_watson": make_voice(tmp_path / "voices", "watson_en", 180),
        "male_sherlock_holmes": make_voice(tmp_path / "voices", "holmes_en", 140),
        "female_violet_smith": make_voice(tmp_path / "voices", "violet_en", 260),
    }
    with start_fake_comfyui(tmp_path, job_seconds=0.1) as fake:
        client = ComfyClient(fake.url)
        template = story_workflow(fixtures_dir)
        prompt = build_speech_prompt(template, LINES, voices, client.upload_image, filename_prefix="audio/chunk_1")
        assert template.to_prompt() == story_workflow(fixtures_dir).to_prompt()  # the template is not touched
        files = client.run(prompt, tmp_path / "out", timeout=30)
        sent = fake.prompts()[-1]
        uploads = [e["name"] for e in fake.record_events("upload")]

    tts = sent["70"]["inputs"]
    assert tts["num_speakers"] == "3"
    assert tts["text"].split("\n") == [
        "[Speaker_1]: Holmes, a lady is here to see you.",
        "[Speaker_2]: Show her in, Watson.",
        "[Speaker_3]: Mr. Holmes, I am followed by a cyclist every Saturday.",
        "[Speaker_2]: Pray, tell me more.",
    ]
    order = ["male_doctor_watson", "male_sherlock_holmes", "female_violet_smith"]
    for slot, tag in enumerate(order, start=1):
        loader_id, out_slot = tts[f"num_speakers.speaker_{slot}_audio"]
        assert out_slot == 0
        loader = sent[loader_id]
        assert loader["class_type"] == "LoadAudio"
        assert loader["inputs"]["audio"] == voices[tag].wav.name and loader["inputs"]["audio"] in uploads
        assert tts[f"num_speakers.speaker_{slot}_ref_text"] == voices[tag].reference_text
    assert "num_speakers.speaker_4_audio" not in tts
    assert len([n for n in sent.values() if n["class_type"] == "LoadAudio"]) == 3
    assert isinstance(tts["seed"], int) and 0 < tts["seed"] < 2**31
    assert sent["73"]["inputs"]["filename_prefix"] == "audio/chunk_1"

    assert [f.suffix for f in files] == [".mp3"]
    with av.open(str(files[0])) as container:
        seconds = float(container.duration) / av.time_base
    spoken = sum(len(" ".join(text.split())) for _, text in LINES)
    assert seconds == pytest.approx(spoken * 0.06 + 3 * 0.3, rel=0.2)  # length follows the text


def test_one_speaker_still_fills_the_two_slots_omnivoice_requires(fixtures_dir: Path, tmp_path: Path) -> None:
    voice = make_voice(tmp_path, "narrator", 200)
    prompt = build_speech_prompt(story_workflow(fixtures_dir), [("narrator", "Once upon a time.")],
                                 {"narrator": voice}, lambda p: p.name, seed=5)
    tts = prompt["70"]["inputs"]
    assert tts["num_speakers"] == "2"
    assert tts["num_speakers.speaker_1_audio"] == tts["num_speakers.speaker_2_audio"]
    assert tts["text"] == "[Speaker_1]: Once upon a time."
    assert tts["seed"] == 5


def test_too_many_speakers_names_them_and_suggests_chunk_size(fixtures_dir: Path, tmp_path: Path) -> None:
    tags = [f"male_speaker_{i}" for i in range(MAX_SPEAKERS + 1)]
    voices = {t: V(tmp_path / f"{t}.wav", "x") for t in tags}
    with pytest.raises(InputError) as err:
        build_speech_prompt(story_workflow(fixtures_dir), [(t, "hello") for t in tags], voices, lambda p: p.name)
    assert "11 speakers" in str(err.value) and "male_speaker_10" in str(err.value) and "--chunk-size" in str(err.value)


def test_speaker_missing_from_the_voice_map(fixtures_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"female_mrs_hudson is not in input/1.story.speakers.txt"):
        build_speech_prompt(story_workflow(fixtures_dir), [("female_mrs_hudson", "Tea?")], {}, lambda p: p.name,
                            voice_map="input/1.story.speakers.txt")


def test_other_tts_packs_plug_in_by_their_num_speakers_input(tmp_path: Path) -> None:
    graph = {
        "5": {"class_type": "SomeOtherMultiSpeakerTTS",
              "inputs": {"text": "", "seed": 0, "num_speakers": "4", "num_speakers.speaker_4_audio": ["99", 0]}},
        "6": {"class_type": "SaveAudio", "inputs": {"audio": ["5", 0], "filename_prefix": "a"}},
    }
    wf = Workflow.from_data(graph, "workflow/other.json")
    assert find_tts_node(wf) == "5"
    voices = {"a": make_voice(tmp_path, "a", 150), "b": make_voice(tmp_path, "b", 250)}
    prompt = build_speech_prompt(wf, [("a", "Hi."), ("b", "Hello."), ("a", "Bye.")], voices, lambda p: "up_" + p.name)
    tts = prompt["5"]["inputs"]
    assert tts["num_speakers"] == "2" and "num_speakers.speaker_4_audio" not in tts  # template slots cleared
    assert prompt[tts["num_speakers.speaker_2_audio"][0]]["inputs"]["audio"] == "up_b.wav"
    with pytest.raises(InputError, match="workflow/sfx.json has no multi-speaker TTS node"):
        find_tts_node(Workflow.from_data({"1": {"class_type": "SaveAudio", "inputs": {}}}, "workflow/sfx.json"))
