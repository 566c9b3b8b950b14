"""Step 12's metadata checks: the limits of common.publish.metadata applied to files a person may have edited."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from common.run.errors import ConfigError, InputError
from common.publish.metadata import tags_length
from common.publish.snippet import (
    VideoMetadata, chapters_note, parse_publish_at, read_description, read_tags, read_title, short_title,
    validate_description, validate_tags, validate_title,
)


def test_tags_over_500_are_refused_with_the_count_youtube_uses():
    tags = [f"tag number {i:03d}" for i in range(40)]  # 14 + 2 quotes each, 39 commas = 679
    assert tags_length(tags) == 679
    with pytest.raises(InputError, match=r"count 679 characters .* allows 500"):
        validate_tags(tags, "tags.txt")
    fits = [f"t{i:03d}" for i in range(100)]  # 4 * 100 + 99 = 499
    assert validate_tags(fits, "tags.txt") == fits


def test_tags_are_read_one_per_line_or_comma_separated(tmp_path: Path):
    path = tmp_path / "tags.txt"
    path.write_text("sherlock holmes\nmystery, audio drama\n\n Mystery \n", encoding="utf-8")
    assert read_tags(path) == ["sherlock holmes", "mystery", "audio drama"]  # duplicate (any case) dropped
    with pytest.raises(InputError, match="YouTube rejects"):
        validate_tags(["<b>"], "tags.txt")
    with pytest.raises(InputError, match="tags file .* is missing; run 9.media.py"):
        read_tags(tmp_path / "none.txt")


def test_title_rules(tmp_path: Path):
    assert validate_title("  A title ", "t") == "A title"
    with pytest.raises(InputError, match="101 characters; YouTube allows 100"):
        validate_title("x" * 101, "t")
    assert validate_title("\u00e9" * 100, "t")  # characters, not bytes
    for bad in ("a < b", "a > b", "  "):
        with pytest.raises(InputError, match="cannot be used"):
            validate_title(bad, "t")
    path = tmp_path / "10.title.txt"
    path.write_text("\ufeffThe Crimson Rose", encoding="utf-8")  # the seed writes no final newline
    assert read_title(path) == "The Crimson Rose"
    path.write_text("One\nTwo\n", encoding="utf-8")
    with pytest.raises(InputError, match="more than one line"):
        read_title(path)


def test_description_is_limited_in_bytes_not_characters(tmp_path: Path):
    assert validate_description("\u00e9" * 2500, "d")  # 5000 bytes
    with pytest.raises(InputError, match="5002 bytes"):
        validate_description("\u00e9" * 2501, "d")
    path = tmp_path / "description.txt"
    path.write_text("A <b>bold</b> story.\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"description from .*description.txt cannot be used: it contains <"):
        read_description(path)


def test_the_chapter_list_is_reported_the_way_youtube_will_read_it():
    good = "A story.\n\nChapters:\n0:00 Start\n0:30 Middle\n1:00 End\n"
    assert chapters_note(good, 100.0) == "the description lists 3 chapters"
    assert chapters_note("A story.", 100.0) == "the description lists no chapters"
    late = "0:00 Start\n0:30 Middle\n1:35 End\n"
    assert chapters_note(late, 100.0).startswith("warning: YouTube will not show the description's chapters")


def test_publish_at_forces_private_until_then():
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    when = parse_publish_at("2025-06-01T18:00:00+02:00", now=now)
    assert when == datetime(2025, 6, 1, 16, 0, tzinfo=timezone.utc)
    meta = VideoMetadata("T", "D", ("a",), "22", "en", "public", publish_at=when)
    assert meta.body()["status"] == {"privacyStatus": "private", "selfDeclaredMadeForKids": False,
                                     "containsSyntheticMedia": True, "publishAt": "2025-06-01T16:00:00Z"}
    with pytest.raises(ConfigError, match="not in the future"):
        parse_publish_at("2024-01-01T00:00Z", now=now)
    with pytest.raises(ConfigError, match="not an ISO time"):
        parse_publish_at("tomorrow", now=now)


def test_metadata_body_and_its_settings():
    body = VideoMetadata("T", "D", ("a", "b"), "22", "en-GB", "unlisted").body()
    assert body["snippet"] == {"title": "T", "description": "D", "tags": ["a", "b"], "categoryId": "22",
                               "defaultLanguage": "en-GB", "defaultAudioLanguage": "en-GB"}
    assert body["status"]["privacyStatus"] == "unlisted" and "publishAt" not in body["status"]
    with pytest.raises(ConfigError, match="YOUTUBE_CATEGORY_ID"):
        VideoMetadata("T", "D", (), "People", "en", "private")
    with pytest.raises(ConfigError, match="YOUTUBE_PRIVACY_STATUS"):
        VideoMetadata("T", "D", (), "22", "en", "secret")


def test_a_short_title_fits_even_for_a_long_main_title():
    assert short_title("The Crimson Rose", 2) == "The Crimson Rose (Part 2) #Shorts"
    long = short_title("x" * 100, 3)
    assert len(long) == 100 and long.endswith("\u2026 (Part 3) #Shorts")
