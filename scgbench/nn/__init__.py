"""Neural building blocks: the discrete-continuous component with DropRes."""

from .component import DROPRES_MODES, DiscreteContinuous, TiedEmbedding, components_of

__all__ = ["DROPRES_MODES", "DiscreteContinuous", "TiedEmbedding", "components_of"]
