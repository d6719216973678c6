"""Test helpers shared by the test folders (real servers, tiny models, fixtures)."""
