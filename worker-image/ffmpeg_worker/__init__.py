"""The worker: what a Job's pod runs to turn one FFmpegJob into files in S3."""
