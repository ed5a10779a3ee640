"""The virtual-time simulator: the real runtime, hours of traffic in seconds."""

__all__: list[str] = []
