"""Split-and-stitch rules (ffmpegjob_model.split): which work can be split, with the reason when it
cannot; where the cuts go; what the chunks and the stitch run; the operator's view of the graph."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import pytest
from ffmpeg_operator.settings import OperatorSettings
from ffmpeg_operator.split import chunk_job, grant_split_identity, observe_split, stitch_job
from ffmpegjob_model.model import FFmpegJobSpec
from ffmpegjob_model.pools import NodePool
from ffmpegjob_model.split import (
    NotSplittable,
    Probe,
    analyze,
    chunk_count,
    parse_probe,
    plan_chunks,
    segment_list,
    splittable,
)


def spec(command: str | None = None, **extra: Any) -> FFmpegJobSpec:
    base: dict[str, Any] = {
        "inputs": [{"name": "in", "source": "dir_a/in.mp4"}],
        "outputs": [{"name": "out.mp4"}],
        "output": {"dirId": "dir_a"},
        "parallel": {"chunks": 4},
    }
    if command is not None:
        base["commands"] = [command]
    base.update(extra)
    return FFmpegJobSpec.model_validate(base)


# (command, words the refusal must name)
UNSPLITTABLE: list[tuple[str, str]] = [
    ("-ss 10 -i {{in}} -c:v libx264 {{out.mp4}}", "-ss"),
    ("-i {{in}} -ss 10 -c:v libx264 {{out.mp4}}", "-ss"),
    ("-i {{in}} -t 30 -c:v libx264 {{out.mp4}}", "-t"),
    ("-i {{in}} -to 30 -c:v libx264 {{out.mp4}}", "-to"),
    ("-sseof -10 -i {{in}} {{out.mp4}}", "-sseof"),
    ("-i {{in}} -vf fade=t=in:st=0:d=2 {{out.mp4}}", "fade"),
    ("-i {{in}} -vf scale=640:-2,fade=out:st=50:d=1 {{out.mp4}}", "fade"),
    ("-i {{in}} -vf \"select='not(mod(n,10))'\" {{out.mp4}}", "select"),
    ("-i {{in}} -vf reverse {{out.mp4}}", "reverse"),
    ("-i {{in}} -vf loop=loop=3:size=30 {{out.mp4}}", "loop"),
    ("-stream_loop 2 -i {{in}} {{out.mp4}}", "-stream_loop"),
    ("-i {{in}} -c:v libx264 -pass 1 {{out.mp4}}", "-pass"),
    ("-i {{in}} -c:v libx264 -x264-params pass=2 {{out.mp4}}", "multi-pass"),
    ("-i {{in}} -shortest {{out.mp4}}", "-shortest"),
    ("-i {{in}} -frames:v 100 {{out.mp4}}", "-frames:v"),
    ("-i {{in}} -r 24 {{out.mp4}}", "-r"),
    ("-i {{in}} -vf fps=24 {{out.mp4}}", "fps"),
    ("-i {{in}} -vf setpts=0.5*PTS {{out.mp4}}", "setpts"),
    ("-i {{in}} -vf \"crop=640:360:'t*10':0\" {{out.mp4}}", "'t'"),
    ("-i {{in}} -vf \"drawtext=text='%{pts}'\" {{out.mp4}}", "drawtext"),
    ("-i {{in}} -vf \"hue=s=0:enable='between(t,1,2)'\" {{out.mp4}}", "enable="),
    ("-i {{in}} -filter_complex '[0:v]split[a][b];[a][b]hstack' {{out.mp4}}", "-filter_complex"),
    ("-i {{in}} -c:v copy {{out.mp4}}", "copy"),
    ("-i {{in}} -vn -c:a aac {{out.mp4}}", "-vn"),
    ("-i {{in}} -map 0:0 {{out.mp4}}", "-map 0:0"),
    ("-i {{in}} -force_key_frames 0,10,20 {{out.mp4}}", "-force_key_frames"),
    ("-f lavfi -i testsrc {{out.mp4}}", "lavfi"),
    ("-i {{in}} -c:v libx264 -f hls {{out.mp4}}", "HLS"),
    ("-i {{in}} -c:v libx264 -hls_time 4 {{out.mp4}}", "-hls_time"),
]


@pytest.mark.parametrize(("command", "named"), UNSPLITTABLE)
def test_unsplittable_commands_are_refused_naming_the_option(command: str, named: str) -> None:
    with pytest.raises(NotSplittable) as err:
        analyze(spec(command))
    assert named.lower() in str(err.value).lower(), str(err.value)


def test_unsplittable_job_shapes() -> None:
    two_inputs = spec("-i {{in}} -i {{b}} {{out.mp4}}", inputs=[{"name": "in", "source": "dir_a/in.mp4"},
                                                                 {"name": "b", "source": "dir_a/b.mp4"}])
    assert "exactly one input" in (splittable(two_inputs) or "")
    two_outputs = spec("-i {{in}} {{out.mp4}} {{b.mp4}}", outputs=[{"name": "out.mp4"}, {"name": "b.mp4"}])
    assert "exactly one output" in (splittable(two_outputs) or "")
    chained = spec(commands=["-i {{in}} a.mp4", "-i a.mp4 {{out.mp4}}"])
    assert "chains 2" in (splittable(chained) or "")
    hls = spec("-i {{in}} {{out.m3u8}}", outputs=[{"name": "out.m3u8"}])
    assert ".m3u8" in (splittable(hls) or "")
    gif = spec("-i {{in}} {{out.gif}}", outputs=[{"name": "out.gif"}])
    assert ".gif" in (splittable(gif) or "")
    image = spec("-i {{in}} {{out.mp4}}", inputs=[{"name": "in", "source": "dir_a/frame.png"}])
    assert "image" in (splittable(image) or "")
    structured_graph = spec(None, filterComplex="[0:v]reverse[v]")
    assert "filterComplex" in (splittable(structured_graph) or "")


SPLITTABLE: list[str] = [
    "-i {{in}} {{out.mp4}}",
    "-i {{in}} -c:v libx264 -preset medium -crf 23 -c:a aac -b:a 128k {{out.mp4}}",
    "-hwaccel auto -i {{in}} -vf scale=-2:720,format=yuv420p -c:v libx264 -tune film -movflags +faststart {{out.mp4}}",
    "-i {{in}} -map 0:v:0 -map 0:a? -c:v libx265 -x265-params log-level=error -tag:v hvc1 {{out.mp4}}",
    "-i {{in}} -map 0 -c:v libx264 -c:a copy -c:s mov_text {{out.mp4}}",
    "-i {{in}} -vf \"drawtext=text='Preview':x=10:y=10,crop=iw/2:ih/2\" -af afade=t=in:d=2 {{out.mp4}}",
    "-i {{in}} -an -vf hqdn3d -c:v libx264 {{out.mp4}}",
    "-i {{in}} -vf yadif -c:v libx264 -g 48 -bf 2 -metadata title=x {{out.mp4}}",
]


@pytest.mark.parametrize("command", SPLITTABLE)
def test_splittable_commands(command: str) -> None:
    assert splittable(spec(command)) is None


def test_the_structured_form_splits() -> None:
    s = spec(None, inputs=[{"name": "in", "source": "dir_a/in.mp4"}],
             outputs=[{"name": "out.mp4", "options": ["-c:v", "libx264", "-crf", "28", "-c:a", "aac"]}])
    cmd = analyze(s)
    assert cmd.video_options == ["-c:v", "libx264", "-crf", "28"]
    assert cmd.stitch_options == ["-c:a", "aac"]


def test_options_go_where_they_belong() -> None:
    cmd = analyze(spec("-i {{in}} -map 0:v:0 -map 0:a:1 -c:v libx264 -crf 20 -vf scale=-2:720 -c:a aac -b:a 96k "
                       "-af loudnorm -movflags +faststart -threads 2 {{out.mp4}}"))
    assert cmd.video_options == ["-map", "0:v:0", "-c:v", "libx264", "-crf", "20", "-vf", "scale=-2:720",
                                 "-threads", "2"]
    assert cmd.stitch_options == ["-c:a", "aac", "-b:a", "96k", "-af", "loudnorm", "-movflags", "+faststart",
                                  "-threads", "2"]
    assert cmd.stitch_maps == ["-map", "1:v", "-map", "0:a:1"]
    stitch = cmd.stitch_args()
    assert stitch[:6] == ["-i", "{{in}}", "-f", "concat", "-i", "segments.txt"]
    assert stitch[-3:] == ["-c:v", "copy", "{{out.mp4}}"]


def test_map_all_streams_keeps_audio_and_subtitles_from_the_input() -> None:
    cmd = analyze(spec("-i {{in}} -map 0 -c:v libx264 -c:a copy {{out.mp4}}"))
    assert cmd.video_options[:2] == ["-map", "0:V"]
    assert cmd.stitch_maps == ["-map", "1:v", "-map", "0", "-map", "-0:v"]


def probe(seconds: int = 20, fps: int = 30, gop: int = 60, start: Fraction = Fraction(0)) -> Probe:
    times = [start + Fraction(i, fps) for i in range(seconds * fps)]
    return Probe(times=times, keyframes=times[::gop], start_us=int(start * 1_000_000))


def test_plan_cuts_at_keyframes_without_overlap_or_gap() -> None:
    p = probe()
    for n in (2, 3, 4, 7):
        plan = plan_chunks(p, n)
        assert sum(c.frames for c in plan) == 600
        assert plan[0].seek is None and plan[-1].length is None
        for a, b in itertools.pairwise(plan):
            assert a.end == b.start and Fraction(b.seek or "x") <= Fraction(str(b.start))
            assert Fraction(str(b.start)) * 30 % 60 == 0  # a keyframe
            # -t stops between the chunk's last frame and the next chunk's first frame
            span = Fraction(str(b.start)) - Fraction(str(a.start))
            assert span - Fraction(1, 30) < Fraction(a.length or "0") < span


def test_plan_balances_by_duration_and_caps_at_keyframes() -> None:
    plan = plan_chunks(probe(), 2)
    assert [c.frames for c in plan] == [300, 300]
    few = plan_chunks(probe(seconds=4), 8)  # keyframes at 0 and 2 s only
    assert len(few) == 2


def test_seek_is_relative_to_the_file_start_and_never_after_the_keyframe() -> None:
    # a 29.97 fps MPEG-TS style timeline starting at 1.4 s
    times = [Fraction(7, 5) + Fraction(1001 * i, 30000) for i in range(900)]
    p = Probe(times=times, keyframes=times[::48], start_us=1_400_000)
    plan = plan_chunks(p, 3)
    assert sum(c.frames for c in plan) == 900
    for c in plan[1:]:
        key = Fraction(7, 5) + Fraction(str(c.start)).limit_denominator(10**6)
        assert Fraction(c.seek or "x") + Fraction(7, 5) <= key + Fraction(1, 10**6)


def test_parse_probe() -> None:
    data = {"streams": [{"codec_type": "video", "time_base": "1/15360"}],
            "format": {"start_time": "0.000000", "duration": "2.0", "format_name": "mov,mp4,m4a,3gp,3g2,mj2"},
            "packets": [{"pts": 512 * i, "flags": "K_" if i % 30 == 0 else "__"} for i in range(60)]}
    p = parse_probe(data)
    assert len(p.times) == 60 and p.keyframes == [Fraction(0), Fraction(1)]
    assert p.duration == pytest.approx(2.0)
    with pytest.raises(NotSplittable, match="no video"):
        parse_probe({"streams": [], "format": {}})


def test_chunk_count() -> None:
    assert chunk_count(120, chunks=4, chunk_seconds=None, auto_max=8, min_chunk_seconds=30) == 4
    assert chunk_count(125, chunks=None, chunk_seconds=30, auto_max=8, min_chunk_seconds=30) == 5
    assert chunk_count(3600, chunks=None, chunk_seconds=None, auto_max=8, min_chunk_seconds=30) == 8
    assert chunk_count(90, chunks=None, chunk_seconds=None, auto_max=8, min_chunk_seconds=30) == 3


def test_segment_list_names_plain_files() -> None:
    assert segment_list(["seg-00000.mp4", "seg-00001.mp4"]) == "file 'seg-00000.mp4'\nfile 'seg-00001.mp4'\n"


# ------------------------------------------------------------------------------------ operator
def test_chunk_job_is_indexed_and_retries_each_chunk_alone() -> None:
    s = spec("-i {{in}} -c:v libx264 {{out.mp4}}")
    body = {"metadata": {"name": "j", "namespace": "ns", "uid": "u1"}}
    plan = {"chunks": 4, "parallelism": 2, "scratchPrefix": "scratch/default/u1/"}
    ranges = [r.to_k8s() for r in plan_chunks(probe(), 4)]
    job = chunk_job(body, s, "cpu", NodePool(), OperatorSettings(), ranges, plan)
    js = job["spec"]
    assert js["completionMode"] == "Indexed" and js["completions"] == 4 and js["parallelism"] == 2
    assert js["backoffLimitPerIndex"] >= 1 and "backoffLimit" not in js
    assert js["podFailurePolicy"]["rules"][0]["onPodConditions"] == [{"type": "DisruptionTarget"}]
    env = {e["name"]: e["value"] for e in js["template"]["spec"]["containers"][0]["env"]}
    assert env["FFMPEG_WORKER_MODE"] == "chunk" and "scratch/default/u1/" in env["FFMPEG_SPLIT_PLAN"]


def _pod(role: str, phase: str, index: int | None = None) -> dict[str, Any]:
    ann = {"batch.kubernetes.io/job-completion-index": str(index)} if index is not None else {}
    return {"metadata": {"name": f"{role}-{index}", "labels": {"kubeffmpeg.io/split-role": role},
                         "annotations": ann},
            "status": {"phase": phase}}


def _status(stage: str = "Chunks", **extra: Any) -> dict[str, Any]:
    ranges = [{"index": i, "start": 5.0 * i, "end": 5.0 * (i + 1) if i < 3 else None, "frames": 150,
               "seek": f"{5 * i}.000000"} for i in range(4)]
    return {"phase": "Running", "split": {"chunks": 4, "parallelism": 4, "stage": stage,
                                          "scratchPrefix": "scratch/x/"},
            "chunkRanges": ranges, **extra}


T = datetime(2026, 1, 1, tzinfo=UTC)


def test_observe_progress_and_the_stitch_after_the_last_chunk() -> None:
    st = _status(chunkReports={"1": {"percent": 50}})
    pods = [_pod("chunk", "Succeeded", 0), _pod("chunk", "Running", 1), _pod("chunk", "Pending", 2)]
    out = observe_split(st, {"status": {}}, None, pods, T, 1)
    assert [c["phase"] for c in out.patch["chunks"]] == ["Succeeded", "Running", "Pending", "Pending"]
    assert out.patch["progress"]["percent"] == pytest.approx(95 * 1.5 / 4, abs=0.1)
    assert not out.create_stitch
    pods = [_pod("chunk", "Succeeded", i) for i in range(4)]
    out = observe_split(st, {"status": {}}, None, pods, T, 1)
    assert out.create_stitch and out.patch["split"]["stage"] == "Stitch"


def test_observe_a_retried_chunk_and_the_end() -> None:
    st = _status()
    pods = [_pod("chunk", "Failed", 2), _pod("chunk", "Running", 2)]
    out = observe_split(st, {"status": {}}, None, pods, T, 1)
    assert out.patch["chunks"][2]["attempts"] == 2 and out.patch["chunks"][2]["phase"] == "Running"
    failed_job = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "FailedIndexes"}]}}
    out = observe_split({**st, "error": "command 1 of 1 failed"}, failed_job, None,
                        [_pod("chunk", "Failed", 2)] * 3, T, 1)
    assert out.patch["phase"] == "Failed" and out.stop and out.cleanup
    assert "chunk 2 of 4 failed" in out.patch["message"]
    done = _status("Stitch", result=[{"fileName": "out.mp4", "sizeBytes": 1, "storagePath": "d/out.mp4"}])
    pods = [_pod("chunk", "Succeeded", i) for i in range(4)] + [_pod("stitch", "Succeeded")]
    out = observe_split(done, {"status": {}}, {"spec": {"backoffLimit": 1}, "status": {}}, pods, T, 1)
    assert out.patch["phase"] == "Succeeded" and out.cleanup and not out.stop
    assert out.patch["progress"]["percent"] == 100


def test_the_example_is_valid_and_splittable() -> None:
    from pathlib import Path

    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "parallel-job.yaml").read_text())
    s = FFmpegJobSpec.model_validate(doc["spec"])
    assert s.parallel is not None and s.parallel.chunks == 8
    assert splittable(s) is None


def test_observe_a_chunk_pod_that_cannot_start_fails_the_job() -> None:
    pod = _pod("chunk", "Pending", 0)
    pod["metadata"]["creationTimestamp"] = "2025-12-31T23:00:00Z"
    pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "message": "0/2 nodes are available"}]
    out = observe_split(_status(), {"status": {}}, None, [pod], T, 1, pod_start_timeout=600)
    assert out.patch["phase"] == "Failed" and out.patch["reason"] == "Unschedulable" and out.stop
    assert "did not start within 600s" in out.patch["message"]


def test_chunk_and_stitch_pods_share_the_jobs_identity_and_grants() -> None:
    s = spec("-i {{in}} -c:v libx264 {{out.mp4}}")
    body = {"metadata": {"name": "j", "namespace": "ns", "uid": "u1"}}
    plan = {"chunks": 2, "parallelism": 2, "scratchPrefix": "scratch/default/u1/"}
    ranges = [r.to_k8s() for r in plan_chunks(probe(), 2)]
    for job in (chunk_job(body, s, "cpu", NodePool(), OperatorSettings(), ranges, plan),
                stitch_job(body, s, "cpu", NodePool(), OperatorSettings(), ranges, plan)):
        pod = job["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "ffj-u1"
        assert [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v] == ["ffj-u1-grants"]
        assert "envFrom" not in pod["containers"][0]


def test_split_grants_cover_the_segments_the_input_and_the_output() -> None:
    from types import SimpleNamespace

    from ffmpeg_operator.grants import Signer
    from ffmpegjob_model.grants import Grants
    from ffmpegjob_model.s3client import s3_client
    from ffmpegjob_model.settings import S3Settings

    s3 = S3Settings.model_validate({"endpoint_url": "http://minio:9000", "bucket": "media",
                                    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t"})
    created: dict[str, Any] = {}
    def record(kind: str) -> Any:
        def create(ns: str, b: dict[str, Any], **_: Any) -> Any:
            created[kind] = b
            return SimpleNamespace(data=b"{}")  # an unparsed answer (_preload_content=False)
        return create
    kube = SimpleNamespace(
        core=SimpleNamespace(create_namespaced_service_account=record("ServiceAccount"),
                             create_namespaced_secret=record("Secret")),
        rbac=SimpleNamespace(create_namespaced_role=record("Role"),
                             create_namespaced_role_binding=record("RoleBinding")))
    settings = OperatorSettings().model_copy(update={"grant_multipart_parts": 0})  # no upload to initiate
    c = SimpleNamespace(signer=Signer(s3, s3_client(s3)), s3=s3, settings=settings, kube=kube, io=None)
    s = FFmpegJobSpec.model_validate({
        "inputs": [{"name": "in", "source": "d/in.mp4"}], "outputs": [{"name": "out.mp4"}],
        "commands": ["-i {{in}} -c:v libx264 {{out.mp4}}"], "output": {"dirId": "o"}})
    body = {"metadata": {"name": "j", "namespace": "ns", "uid": "u1"}}
    grant_split_identity(c, body, s, "cpu", NodePool(), "scratch/default/u1/", 3, ".mp4")  # type: ignore[arg-type]
    assert set(created) == {"ServiceAccount", "Role", "RoleBinding", "Secret"}
    assert created["Secret"]["metadata"]["name"] == "ffj-u1-grants"
    g = Grants.model_validate_json(created["Secret"]["stringData"]["grants.json"])
    assert set(g.scratch) == {"seg-00000.mp4", "seg-00001.mp4", "seg-00002.mp4"}
    seg = g.scratch["seg-00001.mp4"]
    assert seg.key == "scratch/default/u1/seg-00001.mp4" and seg.get_url and seg.put_url and not seg.delete_url
    assert g.inputs["in"].get_url and g.outputs["out.mp4"].put_url
    assert created["Role"]["rules"][1]["resources"] == ["ffmpegjobs/status"]
    assert created["Role"]["rules"][1]["verbs"] == ["get", "patch"]
