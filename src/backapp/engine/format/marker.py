"""The commit marker of format 2, ``{backup-id}/backup.json``.

Plain JSON whose readable part is only what needs no key (ids, times, sizes):

    {"formatVersion": 2, "backupId": …, "createdAt": …, "completedAt": …,
     "encrypted": true, "storedBytes": …, "keyCheck": …, "sealed": base64(envelope)}

The rest — config name and folder, sources, counts, compression, and the blocks of
the manifest it commits to — is the backup's full description (the ``info``
object), sealed by the envelope (role ``marker``, bound to the config folder and the
backup id). Not encrypted, ``info`` is given as it is, with ``check``: the hex
SHA-256 of the envelope's associated data and the canonical JSON of ``info``.
The sealed description repeats the readable fields; a reader refuses a marker whose
two halves disagree, that was moved to another backup's folder or config, or edited.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from backapp.engine.format.envelope import associated_data, open_sealed, seal
from backapp.engine.format.keys import FolderKeys
from backapp.errors import ArchiveError, EncryptionKeyError, TamperedError, WrongKeyError

PUBLIC = ("formatVersion", "backupId", "createdAt", "completedAt", "encrypted", "storedBytes")


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def marker_bytes(keys: FolderKeys, backup_id: str, info: dict[str, Any]) -> bytes:
    """Given a folder's keys, a backup id and its full description (camelCase JSON, with
    the PUBLIC fields), return the bytes of its ``backup.json``."""
    doc: dict[str, Any] = {k: info[k] for k in PUBLIC}
    if keys.encrypted:
        sealed = seal(keys, "marker", backup_id, _canonical(info))
        doc["keyCheck"] = keys.key_check
        doc["sealed"] = base64.b64encode(sealed).decode()
    else:
        aad = associated_data(keys, "marker", backup_id)
        doc["info"] = info
        doc["check"] = hashlib.sha256(aad + _canonical(info)).hexdigest()
    return (json.dumps(doc, indent=2) + "\n").encode()


def public_part(doc: dict[str, Any]) -> dict[str, Any]:
    """Given a parsed format-2 marker, return its readable fields."""
    return {k: doc.get(k) for k in PUBLIC}


def open_marker(keys: FolderKeys | None, backup_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Given the folder's keys (None: no key given), the folder's backup id and the parsed
    marker, return the backup's full description, checked. Raise EncryptionKeyError (sealed
    and no key), TamperedError (edited, moved or another config's), ArchiveError."""
    label = f"backup {backup_id}: backup.json"
    if doc.get("encrypted") is True:
        if keys is None or not keys.encrypted:
            raise EncryptionKeyError(
                f"backup {backup_id} is encrypted: its details need BACKUP_ENCRYPTION_KEY"
            )
        check = doc.get("keyCheck")
        if isinstance(check, str) and not hmac.compare_digest(check, keys.key_check or ""):
            raise WrongKeyError(
                f"backup {backup_id} was encrypted with a different key: check "
                "BACKUP_ENCRYPTION_KEY"
            )
        try:
            sealed = base64.b64decode(str(doc.get("sealed", "")), validate=True)
        except (binascii.Error, ValueError):
            raise ArchiveError(f"{label} is damaged (sealed part is not base64)") from None
        raw = open_sealed(keys, "marker", backup_id, sealed, label)
        try:
            info = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ArchiveError(f"{label} is damaged (sealed part is not JSON)") from None
    else:
        info = doc.get("info")
        check = doc.get("check")
        if not isinstance(info, dict) or not isinstance(check, str):
            raise ArchiveError(f"{label} is damaged (no info or check)")
        slug = keys.slug if keys is not None else str(info.get("configSlug", ""))
        aad = associated_data(FolderKeys(slug), "marker", backup_id)
        if not hmac.compare_digest(hashlib.sha256(aad + _canonical(info)).hexdigest(), check):
            raise TamperedError(f"{label} was edited or moved from elsewhere (check)")
    if not isinstance(info, dict):
        raise ArchiveError(f"{label} is damaged (info is not an object)")
    for k in PUBLIC:
        if info.get(k) != doc.get(k):
            raise TamperedError(f"{label}: its readable {k} differs from its sealed one (edited)")
    return info
