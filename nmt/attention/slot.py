"""Slot: where an attention map comes from, typed once instead of parsed from strings everywhere.

A model's maps are keyed by Slot: the encoder's layer i self-attention ("enc.<i>.self"), the decoder's layer i
self- or cross-attention ("dec.<i>.self", "dec.<i>.cross"), and the RNN decoder's one attention over the
source ("cross", layer None). A Slot *is* its name (a str subclass), so it serves as a dict key, a TensorBoard
tag and a key of the saved probes.pt unchanged, and `Slot(name)` reads a name back (a bad name raises).
"""
from __future__ import annotations

SIDES = ("enc", "dec")
KINDS = ("self", "cross")


class Slot(str):
    """side: "enc" | "dec"; layer: int, or None for the RNN decoder's single attention; kind: "self" | "cross"."""

    side: str
    layer: int | None
    kind: str

    def __new__(cls, name: str) -> Slot:
        if isinstance(name, Slot):
            return name
        parts = str(name).split(".")
        if parts == ["cross"]:
            side, layer, kind = "dec", None, "cross"
        elif (len(parts) == 3 and parts[0] in SIDES and parts[1].isdigit() and parts[2] in KINDS
              and (parts[0], parts[2]) != ("enc", "cross")):
            side, layer, kind = parts[0], int(parts[1]), parts[2]
        else:
            raise ValueError(f"{name!r} is not an attention slot: enc.<i>.self, dec.<i>.self, dec.<i>.cross "
                             "or cross (the RNN decoder)")
        slot = super().__new__(cls, name)
        slot.side, slot.layer, slot.kind = side, layer, kind
        return slot

    @classmethod
    def of(cls, side: str, layer: int | None, kind: str) -> Slot:
        """Slot.of("dec", 1, "cross") == "dec.1.cross"; layer None is the RNN decoder's "cross"."""
        return cls("cross" if layer is None else f"{side}.{layer}.{kind}")

    @property
    def is_cross(self) -> bool:
        """Queries on the target, keys on the source: what word alignment reads."""
        return self.kind == "cross"

    @property
    def keys_are_source(self) -> bool:
        """Cross-attention and encoder self-attention attend source tokens; decoder self-attention attends
        the decoder inputs <s> y_1 .. y_{T-1}."""
        return self.side == "enc" or self.kind == "cross"

    @property
    def queries_are_source(self) -> bool:
        return self.side == "enc"

    @property
    def depth(self) -> int:
        """The layer, -1 for the RNN decoder's slot: the last layer is the deepest."""
        return -1 if self.layer is None else self.layer
