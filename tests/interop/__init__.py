"""Interop suite: runner.e2ee against livekit-client's shipped E2EE worker running in Node."""
