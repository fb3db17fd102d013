"""The engine: backup, restore, verify and prune over a config's folder in a storage;
no SQL, no HTTP (the CLI, the worker and the tests drive it).

    format/     what docs/FORMAT.md describes: keys and the envelope (the one place
                encryption is applied), blocks (chunker, packs, index), the manifest,
                the commit marker and the folder's layout, tar headers; format 1's
                stream encryption
    backup/     scan, the parent, entries into blocks, run_backup
    restore/    one reading of a backup, its file data, the plan, the target writer,
                run_restore
    verify.py, prune.py, lock.py       the other operations on a folder
    blockstore.py, compress.py, streams.py, progress.py, objects.py, fsmeta.py
                plumbing: blocks to and from storage on threads, compression on a
                pool, streams, progress, whole objects, file-system metadata
"""
