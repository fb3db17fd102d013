"""The storage format, piece by piece (docs/FORMAT.md).

A config's folder holds content-addressed **blocks** packed into **packs**, an
**index** of where each block lies, and per backup a **commit marker** naming the
blocks of its manifest. Every sealed object is bound to what it is and where it
belongs (role, config folder, name) by the envelope (``envelope.py``), the only
place where encryption is applied.

    keys.py       keys of one config folder, derived from BACKUP_ENCRYPTION_KEY;
                  block ids (HMAC-SHA256 or SHA-256 of the plaintext)
    envelope.py   seal / open one object or block, bound to its role and place
    chunker.py    content-defined cut points (FastCDC) over a file's bytes
    packs.py      blocks packed into objects of ~16 MiB, each with a sealed table
    blockindex.py the known blocks and where they lie, on disk (bounded memory)
    marker.py     the commit marker: its readable part, its sealed description
    manifest.py   every entry of a backup, one JSON line each, and the rules between them
    layout.py     a config's folder (Repository), backup ids, the marker as BackupInfo
    tarstream.py  PAX tar headers (and format 1's tar stream)
    crypto.py     BACKUP_ENCRYPTION_KEY, and format 1's stream encryption of objects
"""
