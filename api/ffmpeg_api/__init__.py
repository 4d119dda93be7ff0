"""The REST front door: both seed API surfaces ("FFmpeg API", "Very Good FFmpeg") on FastAPI.

Stateless: jobs are FFmpegJob objects, keys live in a Secret, files in S3."""
