"""The shared-memory file the client creates in the slot (`boinc_mmap_file`, lib/app_ipc.h).

Eight channels of 1024 bytes. Byte 0 of a channel is non-zero while a message is pending;
the NUL-terminated text starts at byte 1. A sender writes only into an empty channel and
sets byte 0 last; the reader copies the text, then clears byte 0. `replace` writes over a
pending message, as the API's MSG_CHANNEL::send_msg_overwrite does.
"""
from __future__ import annotations

import mmap
import os
from pathlib import Path

MMAP_FILE = "boinc_mmap_file"
CHANNEL_SIZE = 1024
CHANNEL_COUNT = 8
SHMEM_SIZE = CHANNEL_SIZE * CHANNEL_COUNT

PROCESS_CONTROL_REQUEST = 0
PROCESS_CONTROL_REPLY = 1
GRAPHICS_REQUEST = 2
GRAPHICS_REPLY = 3
HEARTBEAT = 4
APP_STATUS = 5
TRICKLE_UP = 6
TRICKLE_DOWN = 7


class SharedMemory:
    """The channels of one `boinc_mmap_file`, seen from either side."""

    def __init__(self, path: Path):
        fd = os.open(path, os.O_RDWR)
        try:
            if os.fstat(fd).st_size < SHMEM_SIZE:
                raise ValueError(f"{path}: shorter than {SHMEM_SIZE} bytes")
            self._map = mmap.mmap(fd, SHMEM_SIZE)
        finally:
            os.close(fd)

    def close(self) -> None:
        self._map.close()

    def has_message(self, channel: int) -> bool:
        return self._map[channel * CHANNEL_SIZE] != 0

    def send(self, channel: int, text: str) -> bool:
        """Queues `text`; False (nothing written) while the previous message is unread."""
        if self.has_message(channel):
            return False
        self._write(channel, text)
        return True

    def replace(self, channel: int, text: str) -> None:
        """Queues `text` in place of any unread message. A reader copying the old one at
        that very moment may take it and miss this one, so use it only where the newest
        message supersedes the others."""
        self._write(channel, text)

    def _write(self, channel: int, text: str) -> None:
        base = channel * CHANNEL_SIZE
        payload = text.encode("utf-8")[:CHANNEL_SIZE - 2] + b"\0"
        self._map[base + 1:base + 1 + len(payload)] = payload
        self._map[base] = 1

    def receive(self, channel: int) -> str | None:
        """Takes the pending message off the channel, or None when there is none."""
        base = channel * CHANNEL_SIZE
        if self._map[base] == 0:
            return None
        raw = self._map[base + 1:base + CHANNEL_SIZE]
        self._map[base] = 0
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
