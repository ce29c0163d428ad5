"""The media pipeline: capture -> convert -> encode -> (encrypt, publish), and what schedules it."""
