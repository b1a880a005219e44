"""Operation cuts of the power-loss layer: freeze after the Nth write/unlink/rename/symlink of a name.

Kept apart from the FUSE code so the host side (campaigns, the leak probe) never imports mfusepy/libfuse.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Operations a cut can follow: the Nth write to a file, or the Nth unlink/rename/symlink of a name.
CUT_OPS = ("write", "unlink", "rename", "symlink")


@dataclass(frozen=True)
class WriteCut:
    """Freeze the file system after the ``nth`` ``op`` on ``path`` (relative to the mount point).

    In journal mode the metadata so far is committed first: the cut lands right after this operation
    reached the journal, the adversarial moment a real commit timer can hit.
    """

    path: str
    nth: int
    op: str = "write"

    def label(self) -> str:
        return f"{self.op}:{self.path}@{self.nth}"

    @classmethod
    def parse(cls, text: str) -> WriteCut:
        """``write:config/config.tlog@3`` / ``unlink:alts/current@1``."""
        op, sep, rest = text.partition(":")
        path, at, nth = rest.rpartition("@")
        if not sep or op not in CUT_OPS or not at or not path or not nth.isdigit() or int(nth) < 1:
            raise ValueError(
                f"cut {text!r}: expected <op>:<path>@<N> with op one of {', '.join(CUT_OPS)} and N >= 1"
            )
        return cls(path.strip("/"), int(nth), op)
