"""The argument-safety validator: every hostile case is refused with a message naming the problem,
and ordinary FFmpeg commands pass."""

from __future__ import annotations

from typing import Any

import pytest
from ffmpegjob_model.model import FFmpegJobSpec
from ffmpegjob_model.safety import UnsafeCommand, validate_spec
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.urls import URLRules

NO_S3 = S3Settings(endpoint_url=None, public_endpoint_url=None)


def _public_dns(host: str, port: int) -> list[str]:
    return {"evil-rebind.example": ["10.0.0.7"], "cdn.example": ["93.184.216.34"]}.get(host, ["93.184.216.34"])


def spec(commands: list[str] | None = None, **extra: Any) -> FFmpegJobSpec:
    base: dict[str, Any] = {
        "inputs": [{"name": "in", "source": "dir_a/in.mp4"}, {"name": "logo", "source": "dir_a/logo.png"}],
        "outputs": [{"name": "out.mp4"}, {"name": "thumb.jpg"}],
        "output": {"dirId": "dir_a"},
    }
    if commands is not None:
        base["commands"] = commands
    base.update(extra)
    return FFmpegJobSpec.model_validate(base)


def check(s: FFmpegJobSpec) -> list[list[str]]:
    return validate_spec(s, url_rules=URLRules(), s3=NO_S3, resolve=_public_dns)


# (command, words the refusal must contain)
HOSTILE_COMMANDS: list[tuple[str, str]] = [
    ("-i /etc/passwd {{out.mp4}}", "absolute path"),
    ("-i file:/etc/passwd {{out.mp4}}", "'file:'"),
    ("-i FILE:/etc/passwd {{out.mp4}}", "'file:'"),
    ("-i concat:{{in}}|/etc/passwd {{out.mp4}}", "'concat:'"),
    ("-i 'concat:a.mp4|b.mp4' {{out.mp4}}", "'concat:'"),
    ("-i subfile,,start,0,end,100,,:{{in}} {{out.mp4}}", "'subfile:'"),
    ("-i pipe:0 {{out.mp4}}", "'pipe:'"),
    ("-i {{in}} -f mp4 pipe:1", "'pipe:'"),
    ("-i {{in}} -", "standard input"),
    ("-i http://169.254.169.254/latest/meta-data {{out.mp4}}", "URL"),
    ("-i https://example.com/a.mp4 {{out.mp4}}", "URL"),
    ("-i tcp:127.0.0.1:22 {{out.mp4}}", "'tcp:'"),
    ("-i {{in}} -f mpegts udp:10.0.0.1:1234", "'udp:'"),
    ("-i {{in}} -f rtsp {{out.mp4}}", "device or network format"),
    ("-i ../secret.mp4 {{out.mp4}}", "'..'"),
    ("-i {{in}} ../../out.mp4", "'..'"),
    ("-i {{in}} /tmp/out.mp4", "absolute path"),
    ("-i {{in}} ~/out.mp4", "absolute path"),
    ("-f lavfi -i movie=/etc/passwd {{out.mp4}}", "absolute path"),
    ("-i {{in}} -vf subtitles=/etc/passwd {{out.mp4}}", "absolute path"),
    ("-i {{in}} -vf \"subtitles='/etc/passwd'\" {{out.mp4}}", "absolute path"),
    ("-i {{in}} -vf subtitles=f=sub/dir/x.srt {{out.mp4}}", "file of filter 'subtitles'"),
    ("-i {{in}} -vf drawtext=textfile=/proc/self/environ {{out.mp4}}", "absolute path"),
    ("-i {{in}} -vf drawtext=textfile=\\/etc\\/passwd {{out.mp4}}", "absolute path"),
    ("-i {{in}} -af ladspa=file=evil.so:p=x {{out.mp4}}", "plugin"),
    ("-i {{in}} -vf frei0r=filter_name=distort0r {{out.mp4}}", "plugin"),
    ("-i {{in}} -vf zmq,scale=2:2 {{out.mp4}}", "network socket"),
    ("-i {{in}} -filter_complex '[0:v]sendcmd=f=/etc/cmds[v]' -map [v] {{out.mp4}}", "absolute path"),
    ("-f concat -safe 0 -i {{in}} {{out.mp4}}", "concat demuxer"),
    ("-dump_attachment:t '' -i {{in}} {{out.mp4}}", "attachments"),
    ("-protocol_whitelist file,http -i {{in}} {{out.mp4}}", "protocols"),
    ("-protocol_blacklist none -i {{in}} {{out.mp4}}", "protocols"),
    ("-i {{in}} -filter_complex_script graph.txt {{out.mp4}}", "from a file"),
    ("-i {{in}} -/vf graph.txt {{out.mp4}}", "from a file"),
    ("-i {{unknown}} {{out.mp4}}", "unknown placeholder {{unknown}}"),
    ("-i <<nope>> {{out.mp4}}", "unknown placeholder {{nope}}"),
    ("-i {{../etc/passwd}} {{out.mp4}}", "malformed placeholder"),
    ("-i {{in}} {{in}}", "overwrite an input"),
    ("-i {{in}} -c copy <<in>>", "overwrite an input"),
    ("-f v4l2 -i video0 {{out.mp4}}", "device"),
    ("-f x11grab -i :0.0 {{out.mp4}}", "device"),
    ("-i {{in}} -passlogfile /tmp/x {{out.mp4}}", "absolute path"),
    ("-i {{in}} -attach /etc/shadow {{out.mp4}}", "absolute path"),
    ("-i {{in}} -vstats_file sub/x.log {{out.mp4}}", "vstats_file"),
    ("-i {{in}} -x264-params stats=/etc/x {{out.mp4}}", "absolute path"),
    ("-i {{in}} -metadata comment=http://internal/ {{out.mp4}}", "URL"),
    ("-i {{in}} -progress stats.txt {{out.mp4}}", "set by the worker"),
    ("-enable_drefs 1 -i {{in}} {{out.mp4}}", "references"),
    ("-allowed_extensions ALL -i {{in}} {{out.mp4}}", "HLS"),
    ("-init_hw_device cuda=gpu:1 -i {{in}} {{out.mp4}}", "device"),
    ("-i {{in}} -c:v libx264 'unterminated {{out.mp4}}", "cannot parse"),
    ("-i {{in}} -vf lut3d=sub/x.cube {{out.mp4}}", "file of filter 'lut3d'"),
    ("-i {{in}} -af arnndn=m=model.rnnn {{out.mp4}}", "model"),
]


@pytest.mark.parametrize(("command", "why"), HOSTILE_COMMANDS, ids=lambda v: str(v)[:50])
def test_hostile_command_is_refused_with_a_reason(command: str, why: str) -> None:
    with pytest.raises(UnsafeCommand) as err:
        check(spec([command]))
    msg = str(err.value)
    assert why in msg, msg
    assert msg.startswith("command 1: ") or msg.startswith("cannot parse")


def test_refusal_names_the_failing_command_of_a_chain() -> None:
    with pytest.raises(UnsafeCommand, match=r"^command 2: argument '/etc/passwd'"):
        check(spec(["-i {{in}} -t 1 tmp.mp4", "-i /etc/passwd {{out.mp4}}"]))


HOSTILE_SOURCES = [
    ("https://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://169.254.169.254/latest/meta-data/", "https"),
    ("https://127.0.0.1/a.mp4", "loopback"),
    ("https://[::1]/a.mp4", "loopback"),
    ("https://[::ffff:10.0.0.1]/a.mp4", "private"),
    ("https://10.1.2.3/a.mp4", "private"),
    ("https://192.168.0.1/a.mp4", "private"),
    ("https://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("https://evil-rebind.example/a.mp4", "private"),
    ("ftp://cdn.example/a.mp4", "https"),
    ("file:///etc/passwd", "https"),
    ("/etc/passwd", "storage path"),
    ("dir_a/../../etc/passwd", "storage path"),
]


@pytest.mark.parametrize(("source", "why"), HOSTILE_SOURCES)
def test_hostile_input_source_is_refused(source: str, why: str) -> None:
    s = spec(["-i {{in}} {{out.mp4}}"], inputs=[{"name": "in", "source": source}])
    with pytest.raises(UnsafeCommand) as err:
        check(s)
    assert "input 'in'" in str(err.value) and why in str(err.value), str(err.value)


def test_hostile_structured_task_is_refused() -> None:
    s = spec(
        None,
        inputs=[{"name": "in", "source": "dir_a/in.mp4", "options": ["-f", "concat", "-safe", "0"]}],
        outputs=[{"name": "out.mp4", "options": ["-vf", "movie=x.mp4"]}],
    )
    with pytest.raises(UnsafeCommand, match="concat demuxer"):
        check(s)
    s = spec(None, outputs=[{"name": "out.mp4"}], filterComplex="[0:v]subtitles=/etc/passwd[v]")
    with pytest.raises(UnsafeCommand, match="absolute path"):
        check(s)


BENIGN = [
    "-i {{in}} -t 5 {{out.mp4}}",
    "ffmpeg -i {{in}} -c:v libx264 -preset veryfast -crf 23 -c:a aac -b:a 128k {{out.mp4}}",
    "-ss 00:00:01.5 -i <<in>> -frames:v 1 -q:v 2 {{thumb.jpg}}",
    "-i {{in}} -i {{logo}} -filter_complex '[0:v][1:v]overlay=x=(W-w)/2:y=10[v]' -map [v] -map 0:a? {{out.mp4}}",
    "-i {{in}} -vf scale=iw/2:-2,fps=30000/1001 -r 30000/1001 {{out.mp4}}",
    "-i {{in}} -vf \"drawtext=text='Loading...':x=10:y=10\" {{out.mp4}}",
    "-i {{in}} -vf subtitles={{logo}} {{out.mp4}}",
    "-i {{in}} -vf movie=secret.txt,scale=2:2 {{out.mp4}}",
    "-f lavfi -i testsrc=duration=5:size=320x240:rate=25 -f lavfi -i sine=frequency=440:duration=5 -shortest "
    "{{out.mp4}}",
    "-i {{in}} -map 0:v:0 -map 0:a -c copy -movflags +faststart -metadata title='My: Movie' {{out.mp4}}",
    "-i {{in}} -force_key_frames 'expr:gte(t,n_forced*2)' -c:v libx264 {{out.mp4}}",
    "-i {{in}} -t 2 part1.mp4",
    "-i part1.mp4 -vf scale=160:-2 {{out.mp4}}",
    "-f concat -i {{in}} -c copy {{out.mp4}}",
    "-i {{in}} -f segment -segment_time 2 seg_%03d.ts",
    "-y -hide_banner -nostdin -stream_loop -1 -i {{in}} -t 3 -an -sn {{out.mp4}}",
    "-i {{in}} -af 'pan=stereo|c0=c0|c1=c0,volume=0.5' {{out.mp4}}",
    "-i {{in}} -vf \"select='eq(pict_type\\,I)'\" -vsync vfr {{thumb.jpg}}",
]


@pytest.mark.parametrize("command", BENIGN)
def test_benign_command_passes(command: str) -> None:
    commands = check(spec([command]))
    assert commands and commands[0][0] != "ffmpeg"


def test_structured_task_compiles_and_passes() -> None:
    s = spec(
        None,
        inputs=[{"name": "in", "source": "https://cdn.example/in.mp4", "options": ["-ss", "1", "-t", "3"]}],
        outputs=[{"name": "out.mp4", "options": ["-crf", "23"], "maps": ["[v]"]}],
        filterComplex="[0:v]scale=1280:720[v]",
    )
    assert check(s) == [
        [
            "-ss",
            "1",
            "-t",
            "3",
            "-i",
            "{{in}}",
            "-filter_complex",
            "[0:v]scale=1280:720[v]",
            "-crf",
            "23",
            "-map",
            "[v]",
            "{{out.mp4}}",
        ]
    ]


def test_presigned_url_of_our_own_bucket_passes_even_on_plain_http() -> None:
    own = S3Settings(endpoint_url="http://127.0.0.1:19000", bucket="ffmpeg")
    url = "http://127.0.0.1:19000/ffmpeg/files/default/d/in.mp4?X-Amz-Signature=x"
    s = spec(["-i {{in}} {{out.mp4}}"], inputs=[{"name": "in", "source": url}])
    with pytest.raises(UnsafeCommand, match="https"):
        check(s)
    assert validate_spec(s, url_rules=URLRules(), resolve=_public_dns, s3=own)
