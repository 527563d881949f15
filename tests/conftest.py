"""Fixtures shared by the test modules."""

pytest_plugins = ["tests.recording_server", "tests.gcs_emulator", "tests.fixture_project"]
