"""ThinkRoute workers: router, inference, the embedded stack and the CLI."""
