"""Prefect flows: they wire the stages of transforms/ together and hold no logic of their own."""
