"""docs/FORMAT.md is a promise: its standalone decrypt recipe must really decrypt."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

from backapp.engine.crypto import MasterKey, encrypt_stream

DOC = Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"


def _recipe() -> str:
    text = DOC.read_text()
    section = text.split("### Decrypt without BackApp", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "FORMAT.md lost its standalone decrypt recipe"
    return match.group(1)


def test_standalone_decrypt_recipe_in_format_doc_decrypts_an_object(tmp_path: Path) -> None:
    key_text = base64.b64encode(os.urandom(32)).decode()
    plain = os.urandom(3 * 1024 * 1024 + 123)
    enc = tmp_path / "data.tar.gz.enc"
    enc.write_bytes(b"".join(encrypt_stream([plain], MasterKey.from_base64(key_text))))
    script = tmp_path / "decrypt.py"
    script.write_text(_recipe())
    run = subprocess.run(
        [sys.executable, str(script), str(enc)],
        capture_output=True,
        env={**os.environ, "BACKUP_ENCRYPTION_KEY": key_text},
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout == plain


def test_standalone_recipe_rejects_a_tampered_object(tmp_path: Path) -> None:
    key_text = base64.b64encode(os.urandom(32)).decode()
    raw = bytearray(b"".join(encrypt_stream([b"x" * 5000], MasterKey.from_base64(key_text))))
    raw[100] ^= 1
    enc = tmp_path / "bad.enc"
    enc.write_bytes(bytes(raw))
    script = tmp_path / "decrypt.py"
    script.write_text(_recipe())
    run = subprocess.run(
        [sys.executable, str(script), str(enc)],
        capture_output=True,
        env={**os.environ, "BACKUP_ENCRYPTION_KEY": key_text},
        check=False,
    )
    assert run.returncode != 0
    assert b"InvalidTag" in run.stderr
