"""Destinations of the connector: Gainsight CS (Companies, People, the NPS object, Timeline)."""
