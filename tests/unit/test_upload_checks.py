"""What an upload must be before it is stored: its bytes of its type, a safe name (#14 item 7)."""

from __future__ import annotations

import pytest

from emp_queue.errors import JobFailedError
from emp_queue.storage.uploads import (
    CONTENT_CHECKS,
    UnsupportedUploadTypeError,
    UploadRef,
    UploadRefusedError,
    checked_type,
    upload_name,
    upload_owner,
)

SAMPLES = {
    "image/png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF",
    "image/gif": b"GIF89a\x01\x00\x01\x00",
    "image/webp": b"RIFF\x24\x00\x00\x00WEBPVP8 ",
    "audio/wav": b"RIFF\x24\x00\x00\x00WAVEfmt ",
    "audio/mpeg": b"ID3\x04\x00\x00\x00\x00\x00\x00",
    "audio/flac": b"fLaC\x00\x00\x00\x22",
    "audio/ogg": b"OggS\x00\x02\x00\x00",
    "video/mp4": b"\x00\x00\x00\x20ftypisom",
    "video/webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81",
    "application/pdf": b"%PDF-1.7\n",
    "application/json": b'{"prompt": "a fox"}',
    "text/plain": "héllo\n".encode(),
}
ALL = frozenset(CONTENT_CHECKS)


def test_every_accepted_type_has_a_sample_and_only_its_own_passes() -> None:
    assert SAMPLES.keys() == CONTENT_CHECKS.keys()
    for media_type, check in CONTENT_CHECKS.items():
        passing = {name for name, sample in SAMPLES.items() if check(sample)}
        if media_type == "text/plain":  # any UTF-8 is plain text; binary signatures are not
            assert "text/plain" in passing
            assert not {"image/png", "image/jpeg"} & passing
        else:
            assert passing == {media_type}, media_type


def test_the_type_is_read_from_the_header_and_checked_against_the_bytes() -> None:
    assert checked_type("Image/PNG; charset=binary", SAMPLES["image/png"], ALL) == "image/png"
    with pytest.raises(UnsupportedUploadTypeError, match="not accepted"):
        checked_type("image/png", SAMPLES["image/png"], frozenset({"image/jpeg"}))
    with pytest.raises(UploadRefusedError, match="not image/jpeg"):
        checked_type("image/jpeg", SAMPLES["image/png"], ALL)


def test_the_stored_name_implies_the_type() -> None:
    assert upload_name("in.png", "image/png") == "in.png"
    assert upload_name("in", "image/png") == "in.png"
    assert upload_name(None, "application/json") == "input.json"
    assert upload_name("photo.jpg", "image/jpeg") == "photo.jpg"
    with pytest.raises(UploadRefusedError, match="not allowed"):
        upload_name(".hidden", "image/png")


def test_a_reference_names_its_owner_and_refuses_anyone_else() -> None:
    ref = UploadRef.parse("gcs://inputs/uploads/acme/up-0123456789abcdef01234567/in.png")

    assert (ref.provider, ref.bucket, ref.customer_id) == ("gcs", "inputs", "acme")
    assert ref.content_type == "image/png"
    assert upload_owner(ref.key) == "acme"
    assert upload_owner("renders/job-1/out.png") is None
    ref.check_owner("acme")
    with pytest.raises(JobFailedError, match="no upload"):
        ref.check_owner("globex")
    for bad in ("gcs://inputs/renders/job-1/out.png", "ftp://x/uploads/acme/up-1/in.png"):
        with pytest.raises(JobFailedError, match="not an upload reference"):
            UploadRef.parse(bad)
