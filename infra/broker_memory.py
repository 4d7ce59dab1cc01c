"""The embedded broker's memory, watched: Tansu's memory storage never gives any back.

Tansu 0.6 with ``memory://`` storage keeps every record for as long as the process
lives: it records each topic's ``retention.ms`` but never applies it, and its
DeleteRecords handler is ``todo!()`` (the request panics the connection's task and
deletes nothing). So nothing the supervisor can ask the broker frees memory, and the
only thing that does, a broker restart, loses what consumers have not handled yet; the
supervisor does that by itself only when told to (``roll_mb``, off by default). It warns
instead: ``BrokerMemoryWatch`` turns readings of the broker's resident memory into a log
line when it passes a threshold (and again at each further half of it), and a note for
``hats status``. What an operator then does is in docs/architecture.md, "Retention on the
embedded broker".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil

#: How often the supervisor reads the broker's memory. Cheap (one /proc read); growth
#: is driven by traffic, so minutes would do, but a warning should not wait for them.
CHECK_INTERVAL_S = 30.0
#: After a warning, the next one comes when memory has grown by this share of the threshold.
REWARN_STEP = 0.5
_MB = 1024 * 1024
DOCS = 'docs/architecture.md, "Retention on the embedded broker"'


def resident_bytes(pid: int) -> int | None:
    """The resident set size of process ``pid``, or None if it cannot be read (gone, or not ours to read)."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


@dataclass
class BrokerMemoryWatch:
    """Readings of one broker's resident memory against a warning threshold (0 = never warn).

    Growth-triggered, not time-triggered: the first reading at or above the threshold
    warns, then each reading a further ``REWARN_STEP`` of the threshold above the last
    warning. A reading of another pid (the broker was restarted) starts afresh.
    """

    threshold_mb: int
    #: Past this the broker is to be restarted (``HATS_BROKER_RSS_ROLL_MB``); 0 = never.
    roll_mb: int = 0
    pid: int | None = None
    rss_bytes: int | None = None
    _warned_at: int | None = field(default=None, repr=False)

    def observe(self, pid: int, rss_bytes: int) -> str | None:
        """Record a reading; return the warning to log when one is due."""
        if pid != self.pid:
            self.pid, self._warned_at = pid, None
        self.rss_bytes = rss_bytes
        threshold = self.threshold_mb * _MB
        if threshold <= 0 or rss_bytes < threshold:
            return None
        if self._warned_at is not None and rss_bytes < self._warned_at + REWARN_STEP * threshold:
            return None
        self._warned_at = rss_bytes
        return (
            f"the embedded broker (pid {pid}) holds {rss_bytes // _MB} MB, over HATS_BROKER_RSS_WARN_MB "
            f"({self.threshold_mb} MB): its memory storage never deletes records (retention is not enforced), "
            f"so it grows with every tick until the broker restarts; see {DOCS}"
        )

    def roll(self, pid: int, rss_bytes: int) -> str | None:
        """The message to log when a reading has reached the roll threshold, else None."""
        if not self.roll_mb or rss_bytes < self.roll_mb * _MB:
            return None
        return (
            f"the embedded broker (pid {pid}) holds {rss_bytes // _MB} MB, at HATS_BROKER_RSS_ROLL_MB "
            f"({self.roll_mb} MB): rolling it; its new log starts empty and clients send again every "
            "tick not yet confirmed"
        )

    def note(self) -> str | None:
        """The memory as ``hats status`` shows it (None before the first reading)."""
        if self.rss_bytes is None:
            return None
        text = f"memory {self.rss_bytes // _MB} MB"
        if 0 < self.threshold_mb * _MB <= self.rss_bytes:
            text += f", over the {self.threshold_mb} MB warning (retention is not enforced: see {DOCS})"
        return text
