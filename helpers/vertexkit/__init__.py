"""vertexkit: the shared helpers behind every project rendered from the vertexkit template."""

__version__ = "0.2.0"
