"""Gainsight CS destination (Companies, People, NPS custom object, Timeline): the next issue."""
